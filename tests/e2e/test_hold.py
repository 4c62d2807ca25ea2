"""Hold and unhold (issue 9). From the phone: a re-INVITE offering ``inactive`` (or
``sendonly``, or c=0.0.0.0) puts the call on hold: ``CallEvents.OnHold``, and voxlab sends
the phone no more RTP; a re-INVITE with ``sendrecv`` takes it off hold: ``OffHold``, and
the echo is heard again. From the scenario: ``call.hold()`` / ``unhold()`` re-INVITE a
sipp callee."""

from __future__ import annotations

import time

import pytest

from tests.conftest import requires_sipp
from tests.e2e.test_offer_answer import echoed_frequency
from tests.e2e.test_call_media_api import wait_hearing
from tests.e2e.test_outbound import hears_own_tone
from tests.e2e.test_peers_vs_sipp import sipp_uas  # noqa: F401  (a fixture, used by name)
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


HOLDER = """
def on_alerting(e):
    out = VoxEngine.forward_call_to_sip(e, e.headers["X-Target"])

    async def hold_and_back(ev):
        held = await out.hold()
        Logger.write(f"hold: {held}, held={out.held}")
        back = await out.unhold()
        Logger.write(f"unhold: {back}, held={out.held}")

    out.add_event_listener(CallEvents.Connected, hold_and_back)

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


@requires_sipp
def test_the_scenario_holds_and_unholds_a_sipp_callee(voxlab_factory, sipp_uas):
    """``call.hold()`` / ``unhold()`` send re-INVITEs offering sendonly, then sendrecv; sipp
    checks both offers and answers recvonly / sendrecv; the bridge still carries audio."""
    srv = voxlab_factory(scenarios={"holder": HOLDER})
    bob = sipp_uas(scenario="uas_hold.xml", calls=1)
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("holder", codecs=("PCMU",),
                       headers={"X-Target": f"sip:bob@127.0.0.1:{bob.port}"})
        assert srv.wait_for_log(r"hold: True, held=True"), srv.describe(40)
        assert srv.wait_for_log(r"unhold: True, held=False"), srv.describe(40)
        hears_own_tone(call, 750.0)
        assert call.bye().status == 200
    assert bob.proc.wait(10) == 0, "sipp did not see the sendonly and sendrecv re-INVITEs and the BYE"


MUSIC_ON_HOLD = """
def on_alerting(e):
    call = e.call

    async def connected(ev):
        call.start_playback("moh.wav", loop=True)
        held = await call.hold()
        Logger.write(f"caller held: {held}")

    call.add_event_listener(CallEvents.Connected, connected)
    call.answer()

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_a_held_caller_still_hears_the_music_on_hold(voxlab_factory):
    srv = voxlab_factory(scenarios={"moh": MUSIC_ON_HOLD}, tones={"moh": (520.0, 1.0)})
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("moh", codecs=("PCMU",))
        assert srv.wait_for_log(r"caller held: True"), srv.describe(40)
        reinvite = next(r for r in call.requests if r.method == "INVITE")
        assert b"a=sendonly" in reinvite.body, reinvite
        assert reinvite.get("Contact") and reinvite.tag("To") == call.local_tag
        wait_hearing(call.rtp, 520.0)
        assert call.bye().status == 200
