"""Outgoing calls and bridging (issue 9): a caller dials ``out-<target>``; voxlab calls the
target (sipp's UAS with ``-rtp_echo``) and bridges the legs with ``easy_process``. The
caller's tone comes back through both legs (FFT); the target's hang-up or a refusal
reaches the caller."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest

from tests.conftest import requires_sipp
from tests.e2e.test_call_media_api import wait_hearing
from tests.e2e.test_peers_vs_sipp import sipp_uas  # noqa: F401  (a fixture, used by name)
from tests.peers.sipua import SipError, SipUA, parse_sdp
from voxlab.media.tones import sine

pytestmark = [pytest.mark.e2e, requires_sipp]


def hears_own_tone(call, freq: float) -> None:
    """Send a tone until it is heard back (through both legs and the far end's echo)."""
    stop = threading.Event()
    sender = call.rtp.send_audio_async(sine(freq, 20.0, amplitude=0.3), stop=stop)
    try:
        wait_hearing(call.rtp, freq)
    finally:
        stop.set()
        sender.join(5)


def out_to(port: int, user: str = "bob", transport: str | None = None) -> str:
    uri = f"{user}@127.0.0.1:{port}" + (f";transport={transport}" if transport else "")
    return "out-" + quote(uri, safe="")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_tone_comes_back_through_both_legs(server, sipp_uas, transport):
    uas = sipp_uas(transport={"udp": "u1", "tcp": "t1"}[transport])
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call(out_to(uas.port, transport=transport if transport == "tcp" else None),
                       codecs=("PCMU",))
        assert server.wait_for_log(r"forwarding .* to sip:bob@127\.0\.0\.1"), server.describe(40)
        hears_own_tone(call, 700.0)
        assert call.bye().status == 200
    assert server.wait_for_log(r"call \S+ ended: local-bye"), server.describe(40)


def test_a_refusal_reaches_the_caller_with_its_code(server, sipp_uas):
    uas = sipp_uas(scenario="uas_busy.xml", calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        with pytest.raises(SipError) as info:
            ua.call(out_to(uas.port))
    assert info.value.status == 486, info.value
    assert uas.proc.wait(10) == 0                      # sipp got its ACK
    assert server.wait_for_log(r"failed: 486 Busy Here"), server.describe(40)


def test_the_callee_hanging_up_ends_the_caller(server, sipp_uas):
    uas = sipp_uas(scenario="selftest_uas_bye.xml", calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call(out_to(uas.port))
        assert call.wait_bye(10), server.describe(40)
    assert uas.proc.wait(10) == 0


def test_the_caller_cancelling_cancels_the_callee(server, sipp_uas):
    uas = sipp_uas(scenario="selftest_uas_cancel.xml", calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.start_call(out_to(uas.port))
        final = call.cancel()
        assert final.status == 487
    assert uas.proc.wait(10) == 0, "sipp's UAS did not see the CANCEL"


DIAL_WITH_AUTH = """
def on_alerting(e):
    target = e.call.headers().get("X-Target")
    out = VoxEngine.call_sip(target, auth_user="alice", password=e.call.headers().get("X-Password"))
    out.add_event_listener(CallEvents.Connected, lambda ev: (Logger.write("out connected"), out.hangup()))
    out.add_event_listener(CallEvents.Failed, lambda ev: Logger.write(f"out failed {ev.code}"))
    e.call.answer()

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


@pytest.mark.parametrize("password, outcome", [("wonder-land", "out connected"), ("guess", "out failed 403")])
def test_call_sip_answers_a_digest_challenge(voxlab_factory, sipp_uas, password, outcome):
    srv = voxlab_factory(scenarios={"dial": DIAL_WITH_AUTH})
    uas = sipp_uas(scenario="uas_digest.xml", calls=1)
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("dial", headers={"X-Target": f"sip:bob@127.0.0.1:{uas.port}", "X-Password": password})
        assert srv.wait_for_log(outcome), srv.describe(40)
        call.bye()
    if password == "wonder-land":
        assert uas.proc.wait(10) == 0


def test_a_pcma_callee_and_a_pcmu_caller_are_transcoded_both_ways(server, sipp_uas):
    uas = sipp_uas(scenario="uas_pcma.xml", calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call(out_to(uas.port), codecs=("PCMU",))
        hears_own_tone(call, 800.0)
        assert {p.packet.payload_type for p in call.rtp.audio_packets()} == {0}
        shown = server.describe(60)
        call.bye()
    assert uas.proc.wait(10) == 0
    assert server.wait_for_log(r"call \S+ connected \(PCMA\)"), shown


def test_early_media_from_the_callee_is_heard_before_the_answer(server, sipp_uas):
    """The callee's 183 makes voxlab send the caller a 183 with its own SDP and relay the
    audio at once: the caller's tone, echoed by the never-answering callee, comes back; the
    caller's CANCEL then reaches the callee."""
    uas = sipp_uas(scenario="uas_early_cancel.xml", calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.start_call(out_to(uas.port), codecs=("PCMU",))
        progress = call.wait_early_media()
        assert progress.status == 183, progress
        hears_own_tone(call, 600.0)
        assert call.cancel().status == 487
    assert uas.proc.wait(10) == 0, "sipp's UAS did not see the CANCEL"


def test_early_media_then_the_answer_keeps_the_audio(server, sipp_uas):
    uas = sipp_uas(scenario="uas_early_answer.xml", calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.start_call(out_to(uas.port), codecs=("PCMU",))
        early = call.wait_early_media()
        answer = call.wait_answer()
        assert parse_sdp(answer.body).port == parse_sdp(early.body).port   # the 200 repeats the 183
        hears_own_tone(call, 900.0)
        assert call.bye().status == 200
    assert uas.proc.wait(10) == 0


EARLY_ANNOUNCEMENT = """
def on_alerting(e):
    call = e.call
    call.handle_tones(True)
    call.start_early_media()
    call.start_playback("ringback.wav", loop=True)
    call.add_event_listener(CallEvents.ToneReceived, lambda ev: call.answer())
    call.add_event_listener(CallEvents.Connected, lambda ev: call.start_playback("answered.wav", loop=True))

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_a_scenario_plays_to_an_unanswered_call_with_start_early_media(voxlab_factory):
    """``start_early_media()``: the caller hears the scenario's prompt before any answer,
    and a digit pressed meanwhile (RFC 4733 in the early media) makes it answer."""
    srv = voxlab_factory(scenarios={"early": EARLY_ANNOUNCEMENT},
                         tones={"ringback": (425.0, 1.0), "answered": (1200.0, 1.0)})
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.start_call("early", codecs=("PCMU",))
        assert call.wait_early_media().status == 183
        wait_hearing(call.rtp, 425.0)
        call.rtp.send_dtmf("1")
        assert call.wait_answer().status == 200
        wait_hearing(call.rtp, 1200.0)
        assert call.bye().status == 200


def test_same_codec_legs_relay_the_payload_bytes_unchanged(server, sipp_uas):
    """PCMU to PCMU through the bridge is a payload relay: every byte the caller sends comes
    back as it was, through both legs and the far end's echo (decoding and encoding again
    would change some: mu-law 0x7F, negative zero, comes back 0xFF)."""
    import random
    import time

    uas = sipp_uas()
    rng = random.Random(9)
    payloads = [bytes(rng.randrange(256) for _ in range(160)) for _ in range(60)]
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call(out_to(uas.port), codecs=("PCMU",))
        hears_own_tone(call, 700.0)            # both legs are up and the echo runs
        call.rtp.wait_quiet(0.3)
        mark = len(call.rtp.packets)
        call.rtp.sender.samples_per_frame = 160
        t0 = time.perf_counter()
        for i, payload in enumerate(payloads):
            delay = t0 + i * 0.02 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            call.rtp._send(call.rtp.sender.packet(payload))
        call.rtp.wait_quiet(0.3)
        back = {p.packet.payload for p in call.rtp.packets[mark:]}
        call.bye()
    missing = [i for i, p in enumerate(payloads) if p not in back]
    assert not missing, f"{len(missing)} of {len(payloads)} payloads did not come back as sent: {missing[:10]}"
