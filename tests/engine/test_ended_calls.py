"""Media requests on a call that has ended are ignored with a log line, not an
error that fails the session (a handler racing the caller's BYE is normal)."""

from __future__ import annotations

import pytest

from tests.peers.sipua import SipUA

pytestmark = pytest.mark.e2e

SCENARIOS = {
    # Every media request after the caller's BYE; then a line that proves the
    # handler ran to its end, and a clean terminate.
    "late": """
def on_alerting(e):
    call = e.call
    call.answer()
    def gone(ev):
        player = call.start_playback("tone.wav")
        call.send_media_to(call)
        call.stop_media_to(call)
        call.send_digits("1")
        Logger.write(f"after the BYE: player={player!r} state={call.state}")
        VoxEngine.terminate()
    call.add_event_listener(CallEvents.Disconnected, gone)
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # The bundled hello's shape: playback on Connected, which a quick BYE may beat.
    "quick": """
def on_alerting(e):
    call = e.call
    call.add_event_listener(CallEvents.Connected, lambda ev: call.start_playback("tone.wav"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("ended"), SCENARIOS, tones={"tone": (700.0, 1.0)})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def test_media_requests_after_the_bye_are_ignored(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("late")
        call.bye()
    assert srv.wait_for_log(r"after the BYE: player=None state=DISCONNECTED", timeout=10), \
        srv.describe(40)
    assert srv.wait_for_log(r"start_playback ignored: call \S+ has ended \(remote-bye\)", timeout=5)
    assert "ERROR" not in srv.log_text(), srv.describe(40)


def test_bye_right_behind_the_ack_is_no_scenario_error(srv):
    for _ in range(5):
        with SipUA(srv.host, srv.sip_port) as ua:
            call = ua.call("quick", ack=False)
            call.send_ack()
            call.bye()               # back to back: Connected's handler may run after the BYE
    with SipUA(srv.host, srv.sip_port) as ua:
        assert ua.options().status == 200    # every earlier turn of the reactor is done
    assert "ERROR" not in srv.log_text(), srv.describe(60)
