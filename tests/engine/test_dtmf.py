"""DTMF both ways: a digit from sipp's RFC 2833 capture reaches the scenario as
ToneReceived; digits the scenario sends reach the peer as RFC 4733 events."""

from __future__ import annotations

import pytest

from tests.conftest import requires_sipp
from tests.peers.sipp import run_sipp
from tests.peers.sipua import SipUA

pytestmark = pytest.mark.e2e

SCENARIOS = {
    "tones": """
def on_alerting(e):
    call = e.call
    call.answer()
    call.handle_tones(True)
    call.add_event_listener(CallEvents.ToneReceived, lambda ev: Logger.write(f"TONE {ev.tone}"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    "notones": """
def on_alerting(e):
    call = e.call
    call.answer()
    call.add_event_listener(CallEvents.ToneReceived, lambda ev: Logger.write(f"TONE {ev.tone}"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: Logger.write("CALL OVER"))
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    "dialer": """
def on_alerting(e):
    call = e.call
    call.answer()
    call.add_event_listener(CallEvents.Connected, lambda ev: call.send_digits("159#"))
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}


@requires_sipp
def test_rfc2833_digit_from_sipp_becomes_tone_received(voxlab_factory, sipp_workdir):
    srv = voxlab_factory(scenarios=SCENARIOS)
    result = run_sipp(srv.host, srv.sip_port, "uac_dtmf.xml", service="tones", workdir=sipp_workdir)
    assert result.ok, result.explain(srv)
    assert srv.wait_for_log(r"TONE 1", timeout=5), srv.describe(60)


@requires_sipp
def test_tones_not_delivered_without_handle_tones(voxlab_factory, sipp_workdir):
    srv = voxlab_factory(scenarios=SCENARIOS)
    result = run_sipp(srv.host, srv.sip_port, "uac_dtmf.xml", service="notones", workdir=sipp_workdir)
    assert result.ok, result.explain(srv)
    # The digit arrived before the BYE, so once the call is over no TONE means none was delivered.
    assert srv.wait_for_log(r"CALL OVER", timeout=5), srv.describe(60)
    assert "TONE" not in srv.log_text()


def test_send_digits_reach_the_peer(voxlab_factory):
    srv = voxlab_factory(scenarios=SCENARIOS)
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("dialer")
        call.rtp.send_silence(1.5)
        call.bye()
    assert call.rtp.received_digits() == "159#"
