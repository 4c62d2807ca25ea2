"""Hold and unhold from the phone (issue 9): a re-INVITE offering ``inactive`` (or
``sendonly``, or c=0.0.0.0) puts the call on hold: ``CallEvents.OnHold``, and voxlab sends
the phone no more RTP; a re-INVITE with ``sendrecv`` takes it off hold: ``OffHold``, and
the echo is heard again."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_offer_answer import echoed_frequency
from tests.peers.sipua import SipUA, sdp_offer
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

ECHO_WITH_HOLD = """
def on_alerting(e):
    call = e.call
    call.add_event_listener(CallEvents.Connected, lambda ev: call.send_media_to(call))
    call.add_event_listener(CallEvents.OnHold, lambda ev: Logger.write(f"on hold {call.on_hold}"))
    call.add_event_listener(CallEvents.OffHold, lambda ev: Logger.write(f"off hold {call.on_hold}"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


@pytest.fixture
def srv(voxlab_factory):
    return voxlab_factory(scenarios={"holdecho": ECHO_WITH_HOLD})


def reinvite(ua, call, direction: str) -> None:
    ok = call.request("INVITE", body=sdp_offer(ua.local_ip, call.rtp.local[1], ("PCMU",), 101,
                                               direction=direction))
    call.send_ack(cseq=call.local_cseq)
    assert ok.status == 200
    expected = {"inactive": "inactive", "sendonly": "recvonly", "sendrecv": "sendrecv"}[direction]
    assert f"a={expected}" in ok.body.decode(), ok.body


@pytest.mark.parametrize("direction", ["inactive", "sendonly"])
def test_hold_and_unhold(srv, direction):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("holdecho", codecs=("PCMU",))
        assert abs(echoed_frequency(call.rtp) - 1000.0) < 20
        reinvite(ua, call, direction)
        assert srv.wait_for_log(r"on hold True"), srv.describe(40)
        time.sleep(0.3)                                   # packets already in flight
        before = len(call.rtp.packets)
        call.rtp.send_audio(sine(1000.0, 1.0))
        call.rtp.wait_quiet(0.3)
        assert len(call.rtp.packets) - before < 3, "voxlab kept sending RTP to a phone on hold"
        reinvite(ua, call, "sendrecv")
        assert srv.wait_for_log(r"off hold False"), srv.describe(40)
        assert abs(echoed_frequency(call.rtp) - 1000.0) < 20
        call.bye()
