"""The real `voxlab attach` client driven through a pseudo-terminal (pexpect)."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.console.conftest import VOXLAB, attach_next, requires_sipp, wait_feed

pexpect = pytest.importorskip("pexpect")

pytestmark = [requires_sipp, pytest.mark.e2e,
              pytest.mark.skipif(VOXLAB is None, reason="the voxlab console script is not installed")]

CPR_REQUEST = "\x1b[6n"


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>78]|\r")


class Terminal:
    """A pty running the client. Answers prompt_toolkit's cursor-position requests like a real
    terminal does (so it knows the screen height and shows the bottom toolbar); ``expect`` matches
    the output with the escape sequences (colours, cursor moves) removed."""

    def __init__(self, args: list[str], home: str) -> None:
        env = {"TERM": "xterm-256color", "HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8"}
        self.child = pexpect.spawn(VOXLAB, args, env=env, encoding="utf-8", timeout=20,
                                   dimensions=(40, 160), codec_errors="replace")
        self.raw = ""
        self.pos = 0
        self.answered = 0

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)

    def _read(self, timeout: float) -> None:
        try:
            self.raw += self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            pass
        pending = self.raw.count(CPR_REQUEST) - self.answered
        if pending > 0:
            self.child.send("\x1b[1;1R" * pending)
            self.answered += pending

    def expect(self, pattern: str, timeout: float = 20) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timeout waiting for {pattern!r}; the terminal showed:\n"
                                     + self.text[-6000:])
            try:
                self._read(min(left, 0.2))
            except pexpect.EOF:
                m = rx.search(self.text, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                raise AssertionError(f"the client exited while waiting for {pattern!r}:\n"
                                     + self.text[-6000:]) from None

    def wait_exit(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            try:
                self._read(0.2)
            except pexpect.EOF:
                break
        self.child.close()
        return self.child.exitstatus

    def send(self, text: str) -> None:
        self.child.send(text)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


def test_attach_client_in_a_terminal(vx, console, sipp_call, tmp_path):
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml"))
    sipp = reply["started"]
    sid, cid = reply["session"]["id"], reply["call"]
    wait_feed(console, f"{cid} connected", kind="sip")
    data = str(vx.data_dir)

    term = Terminal(["attach", "--data-dir", data, "--last"], str(tmp_path))
    try:
        term.expect(f"attached to session {re.escape(sid)}")
        term.expect("voxlab>")
        term.expect(re.escape(cid) + " CONNECTED PCMU")          # the bottom toolbar

        term.send("call.state\r")
        term.expect("'CONNECTED'")

        term.send("call.se\t")                                     # completion from the server
        term.expect("send_media_to")
        term.send("\x03")                                          # Ctrl-C clears the line
        term.expect("voxlab>")

        # the feed is printed above the prompt; the line being typed is not broken
        term.send("x = 4")
        term.expect("x = 4")
        console.request("eval", source="Logger.write('feed-marker from another client')")
        term.expect("feed-marker from another client")
        term.send("0\r")
        term.send("x + 2\r")
        term.expect(r"\b42\b")

        # what a cell prints after an await is shown too (the input line reads 'late-' + 'print')
        term.send("from twisted.internet import task, reactor\r")
        term.send("await task.deferLater(reactor, 0.1, lambda: None); print('late-' + 'print')\r")
        term.expect("late-print")
        term.expect(r"Deferred #\d+ fired: None")

        # multi-line input: a block ends with an empty line
        term.send("def triple(a):\r")
        term.send("return a * 3\r")
        term.send("\r")
        term.send("triple(111)\r")
        term.expect(r"\b333\b")

        term.send("\x04")                                          # Ctrl-D detaches
        term.expect(f"detached from {re.escape(sid)} \\(it keeps running\\)")
        assert term.wait_exit() == 0
    finally:
        term.close()

    # the session is still running, and history was kept in the data dir
    live = [s["id"] for s in console.request("sessions")["sessions"]]
    assert sid in live
    history = (vx.data_dir / "console_history").read_text()
    assert "call.state" in history and "triple(111)" in history

    # attach again: history is there (Up), and the session ending under us is announced
    term = Terminal(["attach", "--data-dir", data, cid], str(tmp_path))
    try:
        term.expect("voxlab>")
        term.send("\x1b[A")                                        # Up: the last input comes back
        term.expect(re.escape("triple(111)"))
        term.send("\x03")
        term.expect("voxlab>")
        console.request("hangup", call=cid)
        term.expect(f"session {re.escape(sid)} has ended")
        term.send("call.state\r")                                  # still inspectable
        term.expect("'DISCONNECTED'")
        term.send("\x04")
        term.expect("it has ended")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert sipp.wait(30) == 0, sipp.explain()


def test_attach_without_sessions_or_server(vx, console, tmp_path):
    if console.request("sessions")["sessions"]:
        pytest.skip("a session from another test is still live")
    term = Terminal(["attach", "--data-dir", str(vx.data_dir), "--last"], str(tmp_path))
    try:
        term.expect("no live sessions")            # a clear message, exit status 2
        assert term.wait_exit() == 2
    finally:
        term.close()
    term = Terminal(["attach", "--data-dir", str(tmp_path / "nowhere")], str(tmp_path))
    try:
        term.expect("no voxlab console at")
        assert term.wait_exit() == 2
    finally:
        term.close()


# A cell that holds the server until the test says so, inside a shielded call: the budget cannot
# interrupt it (as it cannot interrupt one long call into C code), so only the release ends it.
HOLD = '''
def _hold(started, release):
    import os, time
    from voxlab.engine.budget import shielded

    @shielded
    def held():
        open(started, "w").close()
        while not os.path.exists(release):
            time.sleep(0.01)
    held()
    return "released"
'''


def _wait_file(path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_ctrl_c_while_a_cell_runs_waits_then_detaches(vx, console, sipp_call, tmp_path):
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml"))
    sipp = reply["started"]
    sid, cid = reply["session"]["id"], reply["call"]
    wait_feed(console, f"{cid} connected", kind="sip")
    assert console.request("eval", source=HOLD)["error"] is None
    started, release = tmp_path / "started", tmp_path / "release"
    hold = f"_hold({str(started)!r}, {str(release)!r})\r"

    term = Terminal(["attach", "--data-dir", str(vx.data_dir), cid], str(tmp_path))
    try:
        term.expect("voxlab>")
        # one Ctrl-C: the client says the cell still runs, and keeps waiting for it
        term.send(hold)
        _wait_file(started)
        term.send("\x03")
        term.expect(r"still running on the server \(its budget is 1 s.*Ctrl-C again to detach\)")
        release.touch()
        # its reply: the value, or (when it was held past its budget) BudgetExceeded
        term.expect(r"'released'|BudgetExceeded")
        term.expect("voxlab>")
        term.send("call.state\r")                  # still attached
        term.expect("'CONNECTED'")

        # two Ctrl-C: the client detaches (the session keeps running), exit status 0
        started.unlink()
        release.unlink()
        term.send(hold)
        _wait_file(started)
        term.send("\x03")
        term.expect("still running on the server")
        term.send("\x03")
        term.expect(f"detached from {re.escape(sid)} \\(it keeps running; the cell goes on running")
        assert term.wait_exit() == 0
    finally:
        release.touch()                            # never leave the server held
        term.close()
    assert console.request("eval", source="1 + 1", timeout=30)["result"] == "2"
    assert sid in [s["id"] for s in console.request("sessions")["sessions"]]
    console.request("hangup", call=cid)
    assert sipp.wait(30) == 0, sipp.explain()
