"""Drive linphonec (Debian ``linphone-cli`` 5.1, liblinphone/belle-sip) as an independent
SIP phone.

Each :class:`Linphone` gets its own work dir with a fresh ``linphonerc`` and its own
``HOME`` (linphonec keeps databases in ``$HOME/.local/share/linphone/`` and fails every
call with "No listening point matching" when that folder is missing), and a block of
free UDP ports in 32000-32700 (sipp uses 10000-15000, baresip 15000-20000, voxlab's RTP
20000-32000, the kernel's ephemeral ports start at 32768). With ``user``/``password``/
``registrar`` it registers by itself at start-up (``[proxy_0]``, ``[auth_info_0]``);
``auto_answer`` is linphonec's ``-a``.

linphonec is driven through stdin (:meth:`command`) and observed through its debug log
(``-d 6 -l FILE``), which has every SIP message sent and received
(:meth:`sip_messages`) and the account's registration states
(:meth:`registration_states`). Waits poll that file until a deadline, never sleep.

    lp = Linphone(tmp_path / "lp", user="alice", password="secret",
                  registrar=(srv.host, srv.sip_port))
    try:
        lp.start()
        assert lp.wait_registration() == "LinphoneRegistrationOk", lp.describe()
        ...
    finally:
        lp.stop()                 # "quit" (it unregisters), then SIGTERM, then SIGKILL

Note: linphonec rewrites its config file as it runs (the password becomes ``ha1`` with
its ``algorithm``), so every start writes ``linphonerc`` afresh.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from tests.peers.process import end_process

LINPHONEC = shutil.which("linphonec")
PORT_RANGE = (32000, 32700)
PORTS_PER_PHONE = 8          # SIP, audio RTP+RTCP, video RTP+RTCP, text RTP+RTCP, one spare

__all__ = ["LINPHONEC", "Linphone", "LinphoneSip", "free_udp_block", "sip_messages"]

_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} ", re.M)
_SENT = re.compile(r"message sent to \[(\w+)://(.*?)\], size: \[\d+\] bytes$")
_RECEIVED = re.compile(r"received \[\d+\] new bytes from \[(\w+)://(.*?)\]:$")
_REG_STATE = re.compile(r"Account \[\w+\] for identity \[(.*?)\] moving from state \[(\w+)\] to \[(\w+)\]")
_FINAL_REG = ("LinphoneRegistrationOk", "LinphoneRegistrationFailed")


def _families() -> list[tuple[int, str]]:
    families = [(socket.AF_INET, "0.0.0.0")]
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
        families.append((socket.AF_INET6, "::"))
    except OSError:                 # no IPv6 here: linphonec listens on IPv4 alone
        pass
    return families


_FAMILIES = _families()


def free_udp_block(count: int = PORTS_PER_PHONE, lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1],
                   avoid=()) -> int:
    """The first of ``count`` consecutive UDP ports (an even first one) that are free on the
    IPv4 and IPv6 wildcard addresses (linphonec binds ``[::0]``), outside every
    (first, last) range in ``avoid``. Checked by binding; a port stays free until someone
    binds it, so start one phone before picking the next one's ports."""
    for _ in range(500):
        base = random.randrange(lo, hi - count, 2)
        last = base + count - 1
        if any(not (last < a or base > b) for a, b in avoid):
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, last + 1):
                for family, addr in _FAMILIES:
                    s = socket.socket(family, socket.SOCK_DGRAM)
                    socks.append(s)
                    if family == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind((addr, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError(f"no {count} free UDP ports in {lo}-{hi}")


@dataclass
class LinphoneSip:
    """One SIP message from linphonec's debug log, as sent or received."""

    direction: str            # "out" (linphonec sent it) or "in"
    peer: str                 # "host:port" it went to / came from
    start: str                # request or status line
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.start)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        return None if self.start.startswith("SIP/2.0") else self.start.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("CSeq")
        if not value:
            return None
        number, _, method = value.partition(" ")
        return int(number), method.strip()

    def text(self) -> str:
        arrow = "->" if self.direction == "out" else "<-"
        return "\n".join([f"linphonec {arrow} {self.peer}", self.start,
                          *(f"{k}: {v}" for k, v in self.headers)])


def sip_messages(log: str) -> list[LinphoneSip]:
    """The SIP messages in a linphonec ``-d 6`` log, in order. belle-sip logs each one
    after a "message sent to [UDP://h:p]" or "received [n] new bytes from [UDP://h:p]:"
    line, up to the next time-stamped line."""
    out: list[LinphoneSip] = []
    stamps = list(_STAMP.finditer(log))
    for i, m in enumerate(stamps):
        line_end = log.find("\n", m.end())
        if line_end < 0:
            break
        line = log[m.end():line_end].rstrip("\r")
        sent, received = _SENT.search(line), _RECEIVED.search(line)
        if not (sent or received):
            continue
        end = stamps[i + 1].start() if i + 1 < len(stamps) else len(log)
        raw = log[line_end + 1:end].replace("\r\n", "\n")
        head, _, body = raw.partition("\n\n")
        lines = head.split("\n")
        if not lines or not lines[0].strip():
            continue
        headers = []
        for h in lines[1:]:
            k, sep, v = h.partition(":")
            if sep:
                headers.append((k.strip(), v.strip()))
        match = sent or received
        out.append(LinphoneSip("out" if sent else "in", match.group(2), lines[0].strip(), headers,
                               body.strip("\n")))
    return out


class Linphone:
    """One linphonec process with its own config, HOME and ports under ``workdir``."""

    def __init__(self, workdir: Path, *, user: str | None = None, password: str | None = None,
                 registrar: tuple[str, int] | None = None, auto_answer: bool = True,
                 reg_expires: int = 3600, host: str = "127.0.0.1", avoid=()) -> None:
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"
        self.rc_path = self.workdir / "linphonerc"
        self.log_path = self.workdir / "linphonec.log"
        self.stdout_path = self.workdir / "stdout.txt"
        self.user, self.password, self.registrar = user, password, registrar
        self.auto_answer = auto_answer
        self.reg_expires = reg_expires
        self.host = host
        self.avoid = list(avoid)
        self.base_port = 0
        self.proc: subprocess.Popen | None = None
        self.command_line: list[str] = []
        self._stdout = None

    @property
    def sip_port(self) -> int:
        return self.base_port

    @property
    def audio_rtp_port(self) -> int:
        return self.base_port + 2

    @property
    def port_range(self) -> tuple[int, int]:
        return self.base_port, self.base_port + PORTS_PER_PHONE - 1

    def write_config(self) -> None:
        b = self.base_port
        lines = ["[sip]", f"sip_port={b}", "sip_tcp_port=0", "sip_tls_port=0",
                 "", "[rtp]", f"audio_rtp_port={b + 2}", f"video_rtp_port={b + 4}",
                 f"text_rtp_port={b + 6}", "", "[video]", "capture=0", "display=0", ""]
        if self.registrar is not None:
            rhost, rport = self.registrar
            lines[1:1] = ["default_proxy=0"]
            lines += ["[proxy_0]", f"reg_proxy=<sip:{rhost}:{rport};transport=udp>",
                      f"reg_identity=sip:{self.user}@{rhost}:{rport}", f"reg_expires={self.reg_expires}",
                      "reg_sendregister=1", "",
                      "[auth_info_0]", f"username={self.user}", f"passwd={self.password}",
                      f"domain={rhost}", ""]
        self.rc_path.write_text("\n".join(lines))

    # -- lifecycle
    def start(self, timeout: float = 10.0, tries: int = 3) -> "Linphone":
        """Start linphonec and wait until it listens on its SIP port (new ports and another
        try when someone took them since they were picked)."""
        assert self.proc is None, "already started"
        (self.home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        for attempt in range(tries):
            self.base_port = free_udp_block(avoid=self.avoid)
            self.write_config()
            self.log_path.unlink(missing_ok=True)
            cmd = [LINPHONEC or "linphonec", "-c", str(self.rc_path), "-d", "6", "-l", str(self.log_path)]
            if self.auto_answer:
                cmd.append("-a")
            self.command_line = cmd
            env = {**os.environ, "HOME": str(self.home)}
            self._stdout = open(self.stdout_path, "ab")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=self._stdout,
                                         stderr=subprocess.STDOUT, cwd=str(self.workdir), env=env,
                                         start_new_session=True)
            listening = self._wait_listening(timeout)
            if listening:
                return self
            if listening is None or attempt == tries - 1:
                problem = self.describe()
                self.stop()
                raise RuntimeError("linphonec did not start listening\n" + problem)
            self.stop()
            self.proc = None
        raise AssertionError("unreachable")

    def _wait_listening(self, timeout: float) -> bool | None:
        """True once linphonec holds its SIP port, False if its bind() failed (someone took
        the port), None at the deadline or when it exited."""
        failed = re.compile(rf"udp bind\(\) failed for \S+ port {self.sip_port}\b")
        if not self.wait_for(rf"Creating listening point \[\w+\] on \[sip:\S+:{self.sip_port};", timeout):
            return None
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            if failed.search(self.log_text()):
                return False
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind(("0.0.0.0", self.sip_port))
            except OSError:                          # taken: by linphonec, unless it says otherwise
                return not failed.search(self.log_text())
            finally:
                probe.close()
            time.sleep(0.05)
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, text: str) -> None:
        """Type one linphonec command (``call sip:...``, ``answer``, ``terminate``...)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self, grace: float = 5.0) -> int | None:
        """``quit`` (linphonec unregisters first), then SIGTERM, then SIGKILL."""
        if self.proc is None:
            return None
        end_process(self.proc, grace, ask=lambda: self.command("quit"))
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        return self.proc.returncode

    # -- observing
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        """What linphonec printed on stdout (its console: "Call 1 ... connected." etc.)."""
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float = 15.0, stdout: bool = False) -> re.Match | None:
        """Poll the debug log (or stdout) until ``pattern`` (a multi-line regex) matches; the
        match, or None at the deadline or once linphonec has exited without it."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc is not None and self.proc.poll() is not None
            m = rx.search(self.output() if stdout else self.log_text())
            if m or exited or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    def sip_messages(self) -> list[LinphoneSip]:
        return sip_messages(self.log_text())

    def registration_states(self) -> list[str]:
        """The account's registration states so far, e.g. ``[..."Progress", "Ok"]``."""
        return [m.group(3) for m in _REG_STATE.finditer(self.log_text())]

    def wait_registration(self, timeout: float = 15.0) -> str | None:
        """Wait for the first final registration state (``LinphoneRegistrationOk`` or
        ``LinphoneRegistrationFailed``); None at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            final = [s for s in self.registration_states() if s in _FINAL_REG]
            if final or time.monotonic() > deadline or not self.alive():
                return final[0] if final else None
            time.sleep(0.05)

    def describe(self, tail: int = 150) -> str:
        rc = self.proc.poll() if self.proc else None
        trace = "\n\n".join(m.text() for m in self.sip_messages()) or "(none)"
        return (f"linphonec pid={self.proc.pid if self.proc else -1} sip={self.host}:{self.sip_port} "
                f"ports={self.port_range[0]}-{self.port_range[1]} exit={rc}\n"
                f"command: HOME={self.home} {' '.join(self.command_line)}\n"
                f"---- stdout ----\n{self.output()[-3000:]}\n"
                f"---- SIP messages in {self.log_path} ----\n{trace[-12000:]}\n"
                f"---- log (last {tail} lines) ----\n"
                + "\n".join(self.log_text().splitlines()[-tail:]))
