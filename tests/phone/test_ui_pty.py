"""The phone's screen through a pseudo-terminal (pexpect): type a destination and Enter,
a DTMF key reaches the scenario as ToneReceived, mute, hold and resume, ``h`` hangs up,
Ctrl-C quits; an incoming call's notice and ``a``."""

from __future__ import annotations

import re
import sys
import time

import pytest

from tests.peers.server import REPO_ROOT
from tests.phone.helpers import Screen, phone_env

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.e2e

ROWS, COLS = 30, 120
CPR_REQUEST = "\x1b[6n"

DIGITS = """
def on_alerting(e):
    call = e.call

    def tone(ev):
        Logger.write(f"TONE {ev.tone}")

    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.Connected, lambda ev: Logger.write("CONNECTED"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: (Logger.write("GONE"),
                                                                 VoxEngine.terminate()))
    call.handle_tones(True)
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


class Terminal:
    """A pty running the phone; ``wait_screen`` polls the replayed screen for a regex."""

    def __init__(self, args: list[str], home) -> None:
        env = phone_env(home)
        env.update({"TERM": "xterm-256color", "LANG": "C.UTF-8", "COLUMNS": str(COLS),
                    "LINES": str(ROWS)})
        self.child = pexpect.spawn(sys.executable, ["-m", "voxlab.cli", "phone", *args],
                                   cwd=str(REPO_ROOT), env=env, encoding="utf-8", timeout=20,
                                   dimensions=(ROWS, COLS), codec_errors="replace")
        self.screen = Screen(ROWS, COLS)
        self.raw = ""

    def _read(self, timeout: float) -> None:
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return
        self.raw += data
        self.screen.feed(data)
        for _ in range(data.count(CPR_REQUEST)):
            self.child.send(f"\x1b[{self.screen.row + 1};{self.screen.col + 1}R")

    def wait_screen(self, pattern: str, timeout: float = 15.0) -> re.Match:
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.screen.text())
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timeout waiting for {pattern!r} on the screen:\n"
                                     + self.screen.text())
            try:
                self._read(min(left, 0.1))
            except pexpect.EOF:
                raise AssertionError(f"the phone exited while waiting for {pattern!r}:\n"
                                     + self.screen.text()) from None

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def wait_exit(self, timeout: float = 15.0) -> int | None:
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            try:
                self._read(0.1)
            except pexpect.EOF:
                break
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


def test_ui_dial_dtmf_hangup_quit(voxlab_factory, tmp_path):
    srv = voxlab_factory(scenarios={"digits": DIGITS})
    home = tmp_path / "home"
    home.mkdir()
    term = Terminal(["--server", f"{srv.host}:{srv.sip_port}"], home)
    try:
        term.wait_screen(r"^\s*IDLE")
        term.wait_screen(r"^Dial:")
        term.wait_screen(r"listening: SIP on udp 127\.0\.0\.1:\d+")
        term.send("digits")
        term.wait_screen(r"^Dial: digits")
        term.send("\r")
        term.wait_screen(r"CONNECTED\s+sip:digits@127\.0\.0\.1:\d+\s+\d\d:\d\d\s+PCMU")
        assert srv.wait_for_log(r"\] CONNECTED$", 10), srv.describe(40)
        term.send("5")
        assert srv.wait_for_log(r"\] TONE 5$", 10), srv.describe(40) + "\n" + term.screen.text()
        term.wait_screen(r"DTMF sent 1")
        term.send("#")
        assert srv.wait_for_log(r"\] TONE #$", 10), srv.describe(40)
        term.send("m")
        term.wait_screen(r"MUTED")
        term.send("o")                          # hold: a re-INVITE with sendonly
        term.wait_screen(r"ON HOLD")
        term.wait_screen(r"held: call on hold")
        term.send("o")
        term.wait_screen(r"resumed: call resumed")
        term.send("h")
        term.wait_screen(r"^\s*IDLE\s+last call: sip:digits@")
        assert srv.wait_for_log(r"\] GONE$", 10), srv.describe(40)
        assert re.findall(r"\] TONE (\S+)", srv.log_text()) == ["5", "#"], srv.describe(40)
        term.send("\x03")                       # Ctrl-C quits
        assert term.wait_exit() == 0, term.screen.text()
    finally:
        term.close()


def test_ui_shows_and_answers_an_incoming_call(voxlab_factory, tmp_path):
    """A call rings in: the notice shows, ``a`` answers it; the caller hangs up."""
    from tests.peers.server import free_sip_port
    from tests.peers.sipua import SipUA

    srv = voxlab_factory(scenarios={"digits": DIGITS})
    home = tmp_path / "home"
    home.mkdir()
    port = free_sip_port()
    term = Terminal(["--server", f"{srv.host}:{srv.sip_port}", "--local", f"127.0.0.1:{port}"],
                    home)
    try:
        term.wait_screen(rf"listening: SIP on udp 127\.0\.0\.1:{port}")
        with SipUA("127.0.0.1", port) as ua:
            call = ua.start_call("phone")
            term.wait_screen(r"Incoming call from sip:voxpeer@127\.0\.0\.1:\d+:\s+a answer\s+r reject")
            term.send("a")
            call.wait_answer(10)
            term.wait_screen(r"CONNECTED\s+sip:voxpeer@")
            call.bye()
        term.wait_screen(r"^\s*IDLE\s+last call: sip:voxpeer@")
        term.wait_screen(r"ended: the far end hung up")
        term.send("\x03")
        assert term.wait_exit() == 0, term.screen.text()
    finally:
        term.close()
