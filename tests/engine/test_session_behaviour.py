"""Session semantics through a real server: failures stay inside their session,
runaway handlers are interrupted, async handlers work, routing rules apply."""

from __future__ import annotations

import pytest

from tests.peers.sipua import SipError, SipUA
from voxlab.media.analysis import dominant_frequency
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

ECHO = """
def on_alerting(e):
    e.call.answer()
    e.call.send_media_to(e.call)
    e.call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

SCENARIOS = {
    "echo": ECHO,
    # Raises while the call is still alerting: the caller gets 500.
    "boom": """
def on_alerting(e):
    Logger.write("about to fail")
    1 / 0
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Raises after the call is up: the session ends and the caller gets BYE.
    "latefail": """
def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, connected)
def connected(e):
    raise RuntimeError("handler bug after connect")
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # A runaway loop: the time budget interrupts it, the session ends.
    "spin": """
def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, spin)
def spin(e):
    while True:
        pass
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Swallowing exceptions does not defeat the budget.
    "swallow": """
def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, spin)
def spin(e):
    while True:
        try:
            while True:
                pass
        except Exception:
            pass
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # A runaway step of an async handler is interrupted too.
    "asyncspin": """
from twisted.internet import reactor, task
def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, spin)
async def spin(e):
    await task.deferLater(reactor, 0.1, lambda: None)
    while True:
        pass
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # async handler awaiting a Deferred, then playing a tone.
    "later": """
from twisted.internet import reactor, task
async def on_alerting(e):
    await task.deferLater(reactor, 0.2, lambda: None)
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, lambda ev: e.call.start_playback("tone.wav", loop=True))
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    "busy": """
VoxEngine.add_event_listener(AppEvents.CallAlerting, lambda e: e.call.decline(486))
""",
    "badsyntax": "def on_alerting(e) oops\n",
}

CONFIG = """
handler_budget = 0.5

[[routes]]
pattern = "greet|hello-.*"
scenario = "echo.py"
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("engine"), SCENARIOS, CONFIG,
                    tones={"tone": (700.0, 1.0)})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def echo_works(server) -> None:
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo")
        call.rtp.send_audio(sine(1000.0, 0.6))
        call.rtp.wait_quiet(0.3, timeout=5)
        call.bye()
    heard = call.rtp.received_audio()
    assert abs(dominant_frequency(heard[1600:]) - 1000.0) < 20


def test_handler_error_while_alerting_gives_500_and_server_lives(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        with pytest.raises(SipError) as info:
            ua.call("boom")
    assert info.value.status == 500
    assert srv.wait_for_log(r"ZeroDivisionError", timeout=5), srv.describe(40)
    echo_works(srv)


def test_handler_error_after_connect_hangs_up_that_call_only(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        other = ua.call("echo")
        failing = ua.call("latefail")
        assert failing.wait_bye(10), "the failing session did not hang up its call\n" + srv.describe(40)
        # The other session's call is untouched: its media still flows.
        other.rtp.send_audio(sine(1000.0, 0.6))
        other.rtp.wait_quiet(0.3, timeout=5)
        heard = other.rtp.received_audio()
        assert abs(dominant_frequency(heard[1600:]) - 1000.0) < 20
        other.bye()
    assert srv.wait_for_log(r"handler bug after connect", timeout=5)


@pytest.mark.parametrize("scenario", ["spin", "swallow", "asyncspin"])
def test_runaway_handler_is_interrupted(srv, scenario):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call(scenario)
        assert call.wait_bye(15), "runaway session never ended\n" + srv.describe(40)
    assert srv.wait_for_log(r"budget", timeout=5)
    echo_works(srv)


def test_async_handler_and_looping_playback(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("later")
        call.rtp.send_silence(1.5)
        call.bye()
    heard = call.rtp.received_audio()
    assert len(heard) > 4000
    assert abs(dominant_frequency(heard[800:]) - 700.0) < 15


def test_decline_code_reaches_caller(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        with pytest.raises(SipError) as info:
            ua.call("busy")
    assert info.value.status == 486


def test_scenario_with_syntax_error_gives_500(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        with pytest.raises(SipError) as info:
            ua.call("badsyntax")
    assert info.value.status == 500


@pytest.mark.parametrize("user,expected", [("greet", 200), ("hello-42", 200), ("hello", 404),
                                           ("greeting", 404)])
def test_routing_rules_match_whole_user_part(srv, user, expected):
    with SipUA(srv.host, srv.sip_port) as ua:
        if expected == 200:
            ua.call(user).bye()
        else:
            with pytest.raises(SipError) as info:
                ua.call(user)
            assert info.value.status == expected
