"""Calls between sessions (VoxEngine.call_conference): the room's session is started by
the routing rule for the room's name, sees an ordinary incoming call, and audio goes
both ways through the link between the two sessions."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.test_call_media_api import wait_hearing
from tests.peers.sipua import SipUA
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

SCENARIOS = {
    # The caller's session: on to room-echo, routed both ways.
    "bridge": """
def on_alerting(e):
    call = e.call
    def connected(_):
        into = VoxEngine.call_conference("room-echo", callerid="alice")
        VoxEngine.send_media_between(call, into)
        into.add_event_listener(CallEvents.Connected, lambda ev: Logger.write("room answered"))
        into.add_event_listener(CallEvents.Disconnected, lambda ev: call.hangup())
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # The room: answers each arrival and echoes it back through the link.
    "room-echo": """
def on_alerting(e):
    Logger.write(f"room {VoxEngine.custom_data()}: call from {e.callerid}")
    call = e.call
    call.add_event_listener(CallEvents.Connected, lambda ev: call.send_media_to(call))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    "nowhere": """
def on_alerting(e):
    call = e.call
    def connected(_):
        try:
            VoxEngine.call_conference("no-such-room")
        except LookupError as exc:
            Logger.write(f"refused: {exc}")
            call.hangup()
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("rooms"), SCENARIOS)
    yield server
    problem = _finish(server)
    assert problem is None, problem


def _sessions(server) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "sessions", "--json", "--ended", "--data-dir",
                          str(server.data_dir)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    return reply["sessions"] + reply["ended"]


def _wait(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_caller_is_heard_back_through_the_room_session(srv):
    ua = SipUA("127.0.0.1", srv.sip_port)
    call = ua.call("bridge")
    stop = threading.Event()
    try:
        sender = call.rtp.send_audio_async(sine(700, 6.0, amplitude=0.3), stop=stop)
        wait_hearing(call.rtp, 700.0)
        sessions = _wait(lambda: [s for s in _sessions(srv) if s["scenario"] == "room-echo.py"])
        room = sessions[-1]
        assert room["state"] == "running"
        assert [c["callerid"] for c in room["calls"]] == ["alice"]
        assert room["calls"][0]["destination"] == "room-echo"
    finally:
        stop.set()
        sender.join(5)
        call.bye()
    # The caller's BYE ends its session, that hangs up the internal call, and the room ends.
    _wait(lambda: all(s["state"] == "terminated" for s in _sessions(srv)
                      if s["scenario"] in ("room-echo.py", "bridge.py")))
    ua.close()


def test_unrouted_room_is_a_lookup_error_in_the_handler(srv):
    ua = SipUA("127.0.0.1", srv.sip_port)
    call = ua.call("nowhere")
    call.wait_bye(timeout=10)
    ua.close()
