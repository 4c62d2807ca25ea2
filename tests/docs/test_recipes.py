"""The shell commands of README.md and docs/getting-started.md, run as written.

Every command of their indented code blocks is taken from the files
themselves and run against a real server, so the recipes cannot rot:

- ``.venv/bin/twistd -n voxlab`` starts the server (on free ports: the test
  adds ``--sip``/``--rtp-ports``, never the default 5060);
- the sipp commands run with the docs' 127.0.0.1:5060 replaced by that port
  (and their own local SIP/media/control ports added), and each call is
  checked on the server's side (scenario, codec, RTP counters, digits, who
  hung up);
- the attach recipe: the background (``-bg``) call, then ``voxlab attach
  --last`` with each input its comment lists piped in;
- baresip (the shipped ``docs/baresip`` folder and ``scripts/baresip-config.sh``):
  the digit is typed on its stdin and the echo is checked in what it recorded.

The commands run from a sandbox that looks like the checkout (``docs/sipp``,
``scripts`` and ``.venv/bin`` linked, ``docs/baresip`` copied, so the tone and
recordings do not land in the working tree), with ``HOME`` and
``XDG_DATA_HOME`` inside it: the docs' ``voxlab attach --last`` finds the
server's console by the default data dir, as a user's would.

A command that none of the tests here knows how to run fails
``test_every_doc_command_is_run_here``: add its check when adding it to the docs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from tests.interop.baresip import BARESIP, Baresip
from tests.interop.test_baresip import hang_up, heard
from tests.peers.server import REPO_ROOT, VoxlabServer, free_sip_port, rtp_block
from tests.peers.sipp import SIPP, sipp_ports
from voxlab.console.client import ConsoleClient, Endpoint
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.wav import read_wav

pytestmark = pytest.mark.e2e

DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "getting-started.md"]
DOC_ADDRESS = "127.0.0.1:5060"
BIN = Path(sys.executable).parent            # the venv the tests run in: the docs' .venv/bin
RATE = 8000
# Ports: the server's RTP up high, sipp's own ports low (tests.peers.sipp.sipp_ports,
# 10000-15000), the shipped baresip config's 30000-30999 in between: no recipe can take
# another one's port.
SERVER_RTP = (20000, 32000)

requires_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (Debian package sip-tester) is not on PATH")
requires_baresip = pytest.mark.skipif(
    BARESIP is None or shutil.which("sox") is None,
    reason="baresip and sox (Debian packages baresip-core, sox) are needed")


# ---------------------------------------------------------------- the docs' commands

@dataclass(frozen=True)
class DocCommand:
    doc: str          # file name
    line: int
    block: int        # index of its code block in the file
    text: str         # the command, without its comment
    comment: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def split_comment(line: str) -> tuple[str, str]:
    """``cmd args   # comment`` -> (cmd args, comment); a # inside quotes or
    not after a blank is part of the command."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def doc_commands(path: Path) -> list[DocCommand]:
    """The lines of the indented (4-space) code blocks of a Markdown file,
    outside ``` fences (those hold Python and TOML examples)."""
    out: list[DocCommand] = []
    in_fence = in_block = False
    prev_blank = True
    block = -1
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence, in_block, prev_blank = not in_fence, False, False
            continue
        if in_fence:
            continue
        if not line.strip():
            prev_blank = True
            continue
        if line.startswith("    ") and (in_block or prev_blank):
            if not in_block:
                block += 1
            in_block = True
            text, comment = split_comment(line.strip())
            out.append(DocCommand(path.name, n, block, text, comment))
        else:
            in_block = False
        prev_blank = False
    return out


def kind(text: str) -> str | None:
    """What a command is, i.e. which test here runs it."""
    if text == ".venv/bin/twistd -n voxlab":
        return "server"
    if text.startswith(".venv/bin/python -m pytest"):
        return "pytest"
    if text.startswith("sipp "):
        return "sipp-bg" if " -bg" in f" {text} " else "sipp"
    if text == ".venv/bin/voxlab attach --last":
        return "attach"
    if text.startswith(".venv/bin/voxlab "):
        return "voxlab"
    if text.startswith("sox -n "):
        return "tone"
    if text.startswith('sox "$(ls -t '):
        return "sox-stat"
    if text.startswith("baresip "):
        return "baresip"
    if text.startswith("./scripts/baresip-config.sh "):
        return "baresip-config"
    return None


SETUP = "./scripts/setup.sh && "


def all_commands() -> list[tuple[DocCommand, str | None]]:
    """(command, kind) for every command of the docs; ``./scripts/setup.sh && X``
    counts as X (setup.sh is what made the venv these tests run in)."""
    out = []
    for doc in DOCS:
        for c in doc_commands(doc):
            text = c.text[len(SETUP):] if c.text.startswith(SETUP) else c.text
            out.append((c, kind(text)))
    return out


def commands_of(*kinds: str) -> list[DocCommand]:
    return [c for c, k in all_commands() if k in kinds]


def blocks_with(k: str) -> list[list[DocCommand]]:
    """The code blocks (as lists of commands) that contain a command of kind ``k``."""
    blocks: dict[tuple[str, int], list[DocCommand]] = {}
    for c, _ in all_commands():
        blocks.setdefault((c.doc, c.block), []).append(c)
    return [b for b in blocks.values() if any(kind(c.text) == k for c in b)]


def test_every_doc_command_is_run_here():
    cmds = all_commands()
    unknown = [f"{c.where}: {c.text}" for c, k in cmds if k is None]
    assert not unknown, ("commands in the docs that tests/docs/test_recipes.py does not run "
                         "(add a check for them):\n" + "\n".join(unknown))
    kinds = {k for _, k in cmds}
    for k in ("server", "sipp", "sipp-bg", "attach", "baresip", "tone", "sox-stat", "baresip-config"):
        assert k in kinds, f"no {k!r} command found in the docs: has the extraction broken?"
    setup = REPO_ROOT / "scripts" / "setup.sh"
    assert setup.is_file() and os.access(setup, os.X_OK)
    # every user-facing sipp scenario is used by a documented command
    used = {m for c, _ in cmds for m in re.findall(r"docs/sipp/[\w.-]+", c.text)}
    shipped = {f"docs/sipp/{p.name}" for p in (REPO_ROOT / "docs" / "sipp").glob("*.xml")}
    assert used <= shipped, f"the docs use sipp scenarios that do not exist: {used - shipped}"
    assert shipped <= used, f"docs/sipp scenarios no documented command uses: {shipped - used}"


# ---------------------------------------------------------------- sandbox and server

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A folder that looks like the checkout to the docs' commands."""
    for tool in ("twistd", "voxlab"):
        if not (BIN / tool).exists():
            pytest.skip(f"{BIN / tool} is missing: run the tests with the venv's python "
                        "(.venv/bin/python -m pytest)")
    root = tmp_path_factory.mktemp("checkout")
    (root / ".venv").mkdir()
    (root / ".venv" / "bin").symlink_to(BIN)
    (root / "docs").mkdir()
    (root / "docs" / "sipp").symlink_to(REPO_ROOT / "docs" / "sipp")
    shutil.copytree(REPO_ROOT / "docs" / "baresip", root / "docs" / "baresip",
                    ignore=shutil.ignore_patterns("tone.wav", "dump-*.wav"))
    (root / "scripts").symlink_to(REPO_ROOT / "scripts")
    (root / "home").mkdir()
    (root / "xdg").mkdir()
    return root


def shell_env(sandbox: Path) -> dict:
    env = dict(os.environ)
    env.update(HOME=str(sandbox / "home"), XDG_DATA_HOME=str(sandbox / "xdg"))
    return env


class DocServer(VoxlabServer):
    """The server as the docs start it (``.venv/bin/twistd -n voxlab``), on free
    ports, with its default data dir ($XDG_DATA_HOME/voxlab)."""

    def __init__(self, sandbox: Path, doc_command: str) -> None:
        xdg = sandbox / "xdg"
        super().__init__(data_dir=xdg / "voxlab", env={"XDG_DATA_HOME": str(xdg)},
                         log_path=sandbox / "server.log")
        self.rtp_range = rtp_block(200, *SERVER_RTP)
        self.sip_port = free_sip_port(avoid=range(self.rtp_range[0], self.rtp_range[1] + 2))
        argv = shlex.split(doc_command)
        assert argv == [".venv/bin/twistd", "-n", "voxlab"], argv
        # twistd writes a pid file to the current directory unless told where
        self.doc_argv = [str(BIN / "twistd"), "-n", f"--pidfile={sandbox / 'twistd.pid'}", "voxlab"]

    @property
    def command(self) -> list[str]:
        return self.doc_argv + ["--sip", f"{self.host}:{self.sip_port}",
                                "--rtp-ports", f"{self.rtp_range[0]}-{self.rtp_range[1]}",
                                "--http", f"{self.host}:{self.http_port}"]


@pytest.fixture(scope="module")
def server(sandbox):
    server_cmds = [c for c, k in all_commands() if k == "server"]
    texts = {c.text[len(SETUP):] if c.text.startswith(SETUP) else c.text for c in server_cmds}
    assert len(texts) == 1, f"the docs start the server in different ways: {texts}"
    srv = DocServer(sandbox, texts.pop())
    srv.start()
    yield srv
    died = not srv.alive()
    srv.stop()
    if died:
        pytest.fail("voxlab server died during the docs' recipes\n" + srv.describe(), pytrace=False)


def test_server_starts_as_documented(server, sandbox):
    """getting-started: bundled scenarios from scenarios/, data in $XDG_DATA_HOME/voxlab."""
    m = server.wait_for_log(r"voxlab \S+ ready: .* scenarios (\S+), data (\S+)$")
    assert m, server.describe()
    assert Path(m.group(1)) == REPO_ROOT / "scenarios", server.describe()
    assert Path(m.group(2)) == sandbox / "xdg" / "voxlab", server.describe()
    for name in ("echo", "hello", "menu"):
        assert re.search(rf"route {name} -> {name}\.py$", server.log_text(), re.M), server.describe()


# ---------------------------------------------------------------- running commands

@dataclass
class Ran:
    rc: int
    out: str
    text: str         # what was run


def run_shell(text: str, sandbox: Path, log: Path, timeout: float = 60.0) -> Ran:
    """Run one command line with bash from the sandbox; its output goes to a
    file (a backgrounded sipp keeps a pipe open long after the shell exits)."""
    with open(log, "wb") as f:
        proc = subprocess.Popen(["bash", "-c", text], cwd=str(sandbox), env=shell_env(sandbox),
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError(f"`{text}` did not finish within {timeout} s\n"
                                 + log.read_text(errors="replace")[-4000:])
    return Ran(rc, log.read_text(errors="replace"), text)


class Terminal:
    """An interactive bash on a pseudo-terminal (pexpect), as a user types into
    it: job control is on, so a background job that touches the terminal is
    stopped (which a plain ``bash -c`` would never show)."""

    def __init__(self, cwd: Path, env: dict) -> None:
        self.shell = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], cwd=str(cwd),
                                   env=dict(env, PS1="$ ", TERM="dumb"), encoding="utf-8",
                                   codec_errors="replace", dimensions=(50, 160))
        self._n = 0

    def run(self, line: str, timeout: float = 30.0) -> tuple[str, int]:
        """Type ``line`` (then an echo of its status); its output and status."""
        self._n += 1
        self.shell.sendline(line)
        # the quotes keep the typed (echoed) line from matching the marker
        self.shell.sendline(f"echo __E''ND{self._n}__ rc=$?")
        try:
            self.shell.expect(rf"__END{self._n}__ rc=(\d+)", timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF):
            raise AssertionError(f"terminal: `{line}` did not finish within {timeout} s:\n"
                                 + str(self.shell.before)[-3000:]) from None
        return self.shell.before, int(self.shell.match.group(1))

    def close(self) -> None:
        if self.shell.isalive():
            self.shell.sendline("kill -9 %1 %2 %3 2>/dev/null; exit")
            self.shell.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=5)
        self.shell.close(force=True)


def for_server(text: str, srv) -> str:
    assert DOC_ADDRESS in text or "5060" not in text, text
    return text.replace(DOC_ADDRESS, f"{srv.host}:{srv.sip_port}")


def sipp_line(c: DocCommand, srv, workdir: Path) -> str:
    """The docs' sipp command for the test server, with local ports of its own
    (sipp would take 5060, 6000 and 8888 when free) and an error log."""
    assert c.text.startswith("sipp ")
    p, mp, cp = sipp_ports()
    extra = f"-p {p} -mp {mp} -cp {cp} -trace_err -error_file {workdir / 'sipp_errors.log'}"
    return "sipp " + extra + " " + for_server(c.text, srv)[len("sipp "):]


def console(srv) -> ConsoleClient:
    return ConsoleClient.connect(Endpoint(socket_path=srv.data_dir / "console.sock"), timeout=20)


def session_table(srv) -> dict:
    with console(srv) as c:
        return c.request("sessions", ended_limit=200)


def wait_until(what: str, fn, timeout: float = 15.0, explain=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{explain()}")
        time.sleep(0.1)


def ended_since(srv, seen: set[str], count: int = 1, timeout: float = 15.0) -> list[dict]:
    """The sessions that ended since ``seen`` (ids) was taken, oldest first."""
    def new():
        ended = [s for s in session_table(srv)["ended"] if s["id"] not in seen]
        return ended[::-1] if len(ended) >= count else None
    return wait_until(f"{count} newly ended session(s)", new, timeout, lambda: srv.describe(40))


def ids(table: dict) -> set[str]:
    return {s["id"] for s in table["sessions"]} | {s["id"] for s in table["ended"]}


def only_call(session: dict) -> dict:
    assert len(session["calls"]) == 1, session
    return session["calls"][0]


def sipp_scenario(text: str) -> str:
    m = re.search(r"-sf docs/sipp/([\w.-]+)", text) or re.search(r"-sn (\w+)", text)
    assert m, text
    return m.group(1)


HELLO_SECONDS = len(read_wav(REPO_ROOT / "scenarios" / "hello.wav")) / RATE
PCAP_PACKETS = 236          # /usr/share/sip-tester/g711a.pcap: 7.1 s of PCMA


def check_sipp_call(scenario: str, session: dict, srv) -> None:
    """What each documented sipp call must have done, seen from the server."""
    call = only_call(session)
    info = f"{session}\n{srv.describe(40)}"
    rtp = call["rtp"] or {}
    if scenario == "uac":                         # sipp's built-in call: it hangs up at once
        assert session["scenario"] == "echo.py" and call["end_reason"] == "remote-bye", info
    elif scenario == "wait-bye.xml":              # hello: the server hangs up after the greeting
        assert session["scenario"] == "hello.py", info
        assert call["end_reason"] == "local-bye", info
        assert HELLO_SECONDS - 0.5 <= call["duration"] <= HELLO_SECONDS + 2.0, info
    elif scenario == "echo.xml":                  # the speech reached echo and went back
        assert session["scenario"] == "echo.py" and call["codec"] == "PCMA", info
        assert call["end_reason"] == "remote-bye", info
        assert PCAP_PACKETS - 6 <= rtp["rx_packets"] <= PCAP_PACKETS, info
        assert rtp["rx_other_pt"] == 0 and rtp["rx_invalid"] == 0, info
        assert rtp["tx_packets"] >= rtp["rx_packets"] - 6, info
    elif scenario == "menu.xml":                  # 1, speech, #: the server hung up
        assert session["scenario"] == "menu.py" and call["codec"] == "PCMA", info
        assert call["end_reason"] == "local-bye", info
        assert rtp["rx_dtmf"] > 0 and rtp["rx_other_pt"] == 0, info
        assert rtp["rx_packets"] >= PCAP_PACKETS, info
        pressed = re.findall(rf"\[{re.escape(session['id'])}\] menu: caller pressed (\S+)$",
                             srv.log_text(), re.M)
        assert pressed == ["1", "#"], info
    else:
        raise AssertionError(f"no check for the sipp scenario {scenario!r}: add one here")


# ---------------------------------------------------------------- sipp

_SIPP_DONE: dict[str, tuple[Ran, dict]] = {}     # the same command in two docs runs once


def sipp_blocks():
    return [pytest.param(b, id=b[0].where) for b in blocks_with("sipp")]


@requires_sipp
@pytest.mark.parametrize("block", sipp_blocks())
def test_sipp_recipes(block, server, sandbox, tmp_path):
    dialled = []
    for i, c in enumerate(block):
        k = kind(c.text)
        if k == "sipp":
            if c.text in _SIPP_DONE:
                ran, session = _SIPP_DONE[c.text]
            else:
                seen = ids(session_table(server))
                work = tmp_path / f"cmd{i}"
                work.mkdir()
                ran = run_shell(sipp_line(c, server, work), sandbox, work / "out.log")
                errors = work / "sipp_errors.log"
                assert ran.rc == 0, (
                    f"{c.where}: `{c.text}` exited {ran.rc}\n{ran.out[-3000:]}\n"
                    + (errors.read_text(errors="replace")[-3000:] if errors.exists() else "")
                    + "\n" + server.describe(40))
                (session,) = ended_since(server, seen)
                _SIPP_DONE[c.text] = (ran, session)
            check_sipp_call(sipp_scenario(c.text), session, server)
            dialled.append(session["scenario"])
        elif k == "voxlab":
            assert c.text == ".venv/bin/voxlab sessions --ended", f"{c.where}: no check for {c.text}"
            ran = run_shell(for_server(c.text, server), sandbox, tmp_path / f"cmd{i}.log")
            assert ran.rc == 0, ran.out
            for name in dialled:
                assert re.search(rf"^\S+\s+{re.escape(name)}\s+terminated", ran.out, re.M), ran.out
            if "echo.py" in dialled and any("echo.xml" in x.text for x in block):
                # the docs' word for echo.xml: PCMA, 236 packets in, as many back
                assert re.search(r"echo\.py\s+terminated.*PCMA.*\s23[0-6]/\d+", ran.out), ran.out
        else:
            raise AssertionError(f"{c.where}: `{c.text}` in a sipp block: no check for it here")


# ---------------------------------------------------------------- attach

def sipp_pid(out: str) -> int:
    m = re.search(r"Background mode - PID=\[(\d+)\]", out)
    assert m, f"sipp -bg did not print its PID:\n{out}"
    return int(m.group(1))


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"      # a zombie has ended (nobody reaped it yet)


def kill_if_sipp(pid: int) -> None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return
    if b"sipp" in cmdline and running(pid):
        os.kill(pid, signal.SIGKILL)


ATTACH_CHECKS = {
    "call.state": lambda out: "'CONNECTED'" in out,
    "show()": lambda out: re.search(r"CONNECTED\s+PCMA", out) and "echo.py" in out,
    "call.hangup()": lambda out: True,
}


def attach_blocks():
    return [pytest.param(b, id=b[0].where) for b in blocks_with("sipp-bg")]


@requires_sipp
@pytest.mark.parametrize("block", attach_blocks())
def test_attach_recipe(block, server, sandbox, tmp_path):
    """The background call, then `voxlab attach --last` fed each input the
    comment lists ("then: call.state, show(), call.hangup()")."""
    assert not session_table(server)["sessions"], "a call of another recipe is still up"
    seen = ids(session_table(server))
    pid = term = None
    try:
        for i, c in enumerate(block):
            k = kind(c.text)
            if k == "sipp-bg":
                # typed into an interactive shell, where a plain `&` would get sipp stopped
                term = Terminal(sandbox, shell_env(sandbox))
                out, rc = term.run(sipp_line(c, server, tmp_path))
                ran = Ran(rc, out, c.text)
                pid = sipp_pid(ran.out)
                assert ran.rc == 99, f"sipp -bg: exit status {ran.rc}, not 99 as the README says"

                def live():
                    s = session_table(server)["sessions"]
                    return s if s and s[0]["calls"] and s[0]["calls"][0]["state"] == "CONNECTED" else None
                (session,) = wait_until("the background call is up", live, 15,
                                        lambda: ran.out + server.describe(40))
                assert session["scenario"] == "echo.py", session
            elif k == "voxlab":
                assert c.text == ".venv/bin/voxlab sessions", f"{c.where}: no check for {c.text}"
                ran = run_shell(c.text, sandbox, tmp_path / f"cmd{i}.log")
                assert ran.rc == 0 and re.search(r"echo\.py\s+running.*CONNECTED", ran.out), ran.out
            elif k == "attach":
                m = re.match(r"then: (.*)$", c.comment)
                assert m, f"{c.where}: the attach comment no longer says what to type: {c.comment!r}"
                inputs = [x.strip() for x in m.group(1).split(", ")]
                assert inputs[-1] == "call.hangup()", inputs
                for j, source in enumerate(inputs):
                    assert source in ATTACH_CHECKS, f"{c.where}: no check for {source!r}"
                    ran = run_shell(f"echo {shlex.quote(source)} | {c.text}", sandbox,
                                    tmp_path / f"attach{j}.log", timeout=30)
                    assert ran.rc == 0, f"{ran.text}: exit {ran.rc}\n{ran.out}"
                    assert ATTACH_CHECKS[source](ran.out), f"{ran.text}:\n{ran.out}"
                # call.hangup(): the server's BYE, sipp answers it and ends (well before its 60 s)
                wait_until("sipp exits after call.hangup()", lambda: not running(pid), 15,
                           lambda: ran.out + server.describe(40))
                (ended,) = ended_since(server, seen)
                assert only_call(ended)["end_reason"] == "local-bye", ended
                with console(server) as cc:
                    cc.request("attach", target=ended["id"])
                    ladder = cc.request("eval", source="ladder()")["output"]
                assert re.search(r"\|<-+ BYE .*\n.*\|-+ 200 OK -+>\|", ladder), ladder
            else:
                raise AssertionError(f"{c.where}: `{c.text}` in the attach recipe: no check for it here")
        assert pid is not None, "no background sipp call in the attach recipe"
    finally:
        if pid is not None:
            kill_if_sipp(pid)
        if term is not None:
            term.close()


@requires_sipp
def test_plain_ampersand_is_stopped_but_nostdin_with_redirect_works(server, sandbox, tmp_path):
    """README: with a plain `&` the shell stops sipp before it dials (it draws on
    the terminal); `-nostdin ... >sipp.log 2>&1 &` works."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert "A plain `&` does not" in readme and "`-nostdin ... >sipp.log 2>&1 &` works" in readme
    seen = ids(session_table(server))
    line = sipp_line(DocCommand("-", 0, 0, f"sipp -sn uac -s echo {DOC_ADDRESS} -m 1 -d 60000", ""),
                     server, tmp_path)
    term = Terminal(sandbox, shell_env(sandbox))
    try:
        term.run(line + " &")
        out, _ = term.run("for i in $(seq 100); do jobs -l | grep -q Stopped && break; sleep 0.1; done; "
                          "jobs -l")
        assert re.search(r"Stopped \(tty (output|input)\)", out), out
        assert ids(session_table(server)) == seen, "the stopped sipp has dialled after all"
        term.run("kill -9 %1; wait")
        log = tmp_path / "sipp.log"
        out, rc = term.run(line.replace(" -d 60000", "") + f" -nostdin >{log} 2>&1 &\nwait $!",
                           timeout=30)
        assert rc == 0, out + log.read_text(errors="replace")[-3000:]
        (session,) = ended_since(server, seen)
        assert session["scenario"] == "echo.py", session
    finally:
        term.close()


# ---------------------------------------------------------------- baresip

class DocBaresip(Baresip):
    """baresip run as the docs run it: their config folder (-f) and dial command
    (-e), from the sandbox; the helper adds only its SIP trace (-s) and -t."""

    def __init__(self, sandbox: Path, confdir: str, srv) -> None:
        super().__init__(sandbox / "unused", source=sandbox / "unused.wav",
                         avoid=[srv.rtp_range], host=srv.host)
        self.workdir = sandbox
        self.confdir = Path(confdir)
        config = (sandbox / confdir / "config").read_text()
        snd = re.search(r"^snd_path\s+(\S+)", config, re.M)
        assert snd, f"no snd_path in {confdir}/config"
        self.snd_dir = sandbox / snd.group(1)          # relative to the sandbox, or absolute
        source = re.search(r"^audio_source\s+aufile,(\S+)", config, re.M)
        assert source, f"no aufile audio_source in {confdir}/config"
        self.source = sandbox / source.group(1)

    def write_config(self) -> None:          # the docs' folder, as it is
        pass


def live_call(srv) -> dict:
    live = session_table(srv)["sessions"]
    assert len(live) == 1 and len(live[0]["calls"]) == 1, live
    return live[0]["calls"][0]


def wait_tx(srv, at_least: int, what: str) -> int:
    return wait_until(what, lambda: (lambda n: n if n >= at_least else None)(
        live_call(srv)["rtp"]["tx_packets"]), 15, lambda: srv.describe(40))


def run_baresip(c: DocCommand, srv, sandbox: Path) -> None:
    """Dial as the docs say; in menu type 1; hear the echo; hang up (b)."""
    argv = shlex.split(for_server(c.text, srv))
    assert len(argv) == 5 and argv[0] == "baresip" and argv[1] == "-f" and argv[3] == "-e", argv
    confdir = argv[2].replace("~", str(sandbox / "home"), 1) if argv[2].startswith("~") else argv[2]
    m = re.fullmatch(r"dsip:(\w+)@" + re.escape(f"{srv.host}:{srv.sip_port}"), argv[4])
    assert m, argv
    user = m.group(1)
    assert user in ("echo", "menu"), f"{c.where}: no check for baresip calling {user!r}"
    bs = DocBaresip(sandbox, confdir, srv)
    for old in bs.dumps("dec") + bs.dumps("enc"):
        old.unlink()
    try:
        bs.start(argv[4], quit_after=60)
        m = bs.wait_for(r"Call established|ua_connect failed|Call with .* terminated|"
                        r"No SIP accounts found", timeout=15)
        assert m and m.group(0) == "Call established", bs.describe() + "\n" + srv.describe(40)
        t_up = time.monotonic()
        wait_tx(srv, 50, "a second of the server's audio")     # the prompt (menu) or echo plays
        t_key = time.monotonic()
        if user == "menu":
            mark = len(bs.lines)
            bs.send_keys("1")                                   # typed digits go out as DTMF
            assert bs.wait_for(r"send DTMF digit end: '1'", start=mark), bs.describe()
            assert srv.wait_for_log(r"\] menu: caller pressed 1$"), srv.describe(40)
        start = live_call(srv)["rtp"]["tx_packets"]
        wait_tx(srv, start + 75, "1.5 s of echo")
        hang_up(bs, srv)                                        # b: baresip's BYE, answered 200
    finally:
        bs.stop()
    got = heard(bs)
    tone = read_wav(bs.source)
    tail = got[-RATE:]
    assert abs(dominant_frequency(tail) - 1000.0) <= 20.0, (
        f"{c.where}: baresip did not hear its 1 kHz tone echoed at the end "
        f"({dominant_frequency(tail):.0f} Hz)")
    assert abs(rms_dbfs(tail) - rms_dbfs(tone)) <= 3.0, (rms_dbfs(tail), rms_dbfs(tone))
    if user == "menu":
        before = got[int(0.3 * RATE):int((t_key - t_up - 0.3) * RATE)]
        assert len(before) >= 0.4 * RATE and rms_dbfs(before) > -40.0, (
            f"{c.where}: baresip heard no prompt before the key ({rms_dbfs(before):.1f} dBFS)")


@requires_baresip
def test_baresip_recipes(server, sandbox, tmp_path):
    """getting-started's baresip blocks in order: the tone, calls to menu (type
    1) and echo with docs/baresip, the look at the recording, and the same with
    a folder from scripts/baresip-config.sh."""
    cmds = commands_of("tone", "baresip", "sox-stat", "baresip-config")
    assert [kind(c.text) for c in cmds][0] == "tone", "the tone must be made before dialling"
    dialled = 0
    for i, c in enumerate(cmds):
        k = kind(c.text)
        if k in ("tone", "baresip-config"):
            ran = run_shell(c.text, sandbox, tmp_path / f"cmd{i}.log")
            assert ran.rc == 0, f"{c.where}: `{c.text}` exited {ran.rc}\n{ran.out}"
        elif k == "baresip":
            run_baresip(c, server, sandbox)
            dialled += 1
        elif k == "sox-stat":
            ran = run_shell(c.text, sandbox, tmp_path / f"cmd{i}.log")
            assert ran.rc == 0, ran.out
            freq = re.search(r"Rough\s+frequency:\s+(\d+)", ran.out)
            assert freq and abs(int(freq.group(1)) - 1000) <= 60, ran.out
    assert dialled >= 2


def test_baresip_config_script_usage(tmp_path):
    script = REPO_ROOT / "scripts" / "baresip-config.sh"
    assert os.access(script, os.X_OK)
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "baresip -f DIR" in r.stderr, r
    r = subprocess.run([str(script), str(tmp_path / "x"), "--rtp-ports", "nope"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "LO-HI" in r.stderr, r


@requires_sipp
def test_builtin_uac_counts_the_servers_bye_as_a_failure(server, sandbox, tmp_path):
    """Why hello needs docs/sipp/wait-bye.xml (README, getting-started): sipp's
    built-in uac with -d takes the server's BYE as an unexpected message and
    exits with status 1."""
    text = (REPO_ROOT / "docs" / "getting-started.md").read_text()
    assert "reports a failed call and exits with status 1" in text
    line = sipp_line(DocCommand("-", 0, 0, f"sipp -sn uac -s hello {DOC_ADDRESS} -m 1 -d 20000", ""),
                     server, tmp_path)
    ran = run_shell(line + " -nostdin", sandbox, tmp_path / "out.log")
    assert ran.rc == 1, ran.out[-3000:]
    assert "unexpected BYE" in (tmp_path / "sipp_errors.log").read_text(errors="replace")
