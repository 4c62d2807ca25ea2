"""Offer/answer beyond the plain INVITE-with-SDP: delayed offer, re-INVITE that
moves the media or changes the codec, an offer with nothing in common.
Checked as audio: the tone must come back where the SDP says."""

from __future__ import annotations

import numpy as np
import pytest

from tests.peers.sipua import RtpStream, SipError, SipUA, parse_sdp, sdp_offer
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.g711 import alaw_decode, ulaw_decode
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e


def echoed_frequency(rtp: RtpStream, seconds: float = 1.0, freq: float = 1000.0) -> float:
    """Send a tone and return the dominant frequency of the loud part of what came
    back meanwhile (each packet decoded by its own payload type: the codec may
    just have changed)."""
    start = len(rtp.packets)
    sent = rtp.send_audio(sine(freq, seconds, amplitude=0.5))
    # The echo leg sends 50 packets/s whatever it gets: the tone is back once
    # a few more packets than were sent have arrived.
    assert rtp.wait_packets(start + sent + 15, timeout=10), f"{len(rtp.packets) - start} came back"
    frames = []
    for received in rtp.packets[start:]:
        packet = received.packet
        if packet.payload_type in (0, 8) and len(packet.payload) == 160:
            decode = ulaw_decode if packet.payload_type == 0 else alaw_decode
            frames.append(decode(packet.payload).astype(np.float64))
    loud = [f for f in frames if rms_dbfs(f) > -30]
    assert len(loud) > 0.5 * seconds * 50, f"{len(loud)} loud frames of {len(frames)}"
    return dominant_frequency(np.concatenate(loud))


def test_delayed_offer_gets_our_offer_and_takes_the_answer_from_the_ack(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.start_call("echo", body=b"")
        ok = call.wait_answer(ack=False)
        offer = parse_sdp(ok.body)
        assert offer is not None and {0, 8} <= set(offer.payload_types), ok.body
        # We answer with PCMA only: voxlab must switch to it.
        answer = sdp_offer(ua.local_ip, call.rtp.local[1], ("PCMA",), 101)
        call.rtp.configure((offer.ip, offer.port), "PCMA", 101)
        call.send_ack(body=answer)
        assert abs(echoed_frequency(call.rtp) - 1000.0) < 20
        assert {p.packet.payload_type for p in call.rtp.audio_packets()} == {8}
        call.bye()


def test_delayed_offer_with_an_ack_without_answer_is_hung_up(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.start_call("echo", body=b"")
        call.wait_answer(ack=False)
        call.send_ack()                       # no SDP: the call cannot have media
        assert call.wait_bye(10), server.describe(40)


def test_reinvite_moves_the_media_to_a_new_port(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo")
        assert abs(echoed_frequency(call.rtp) - 1000.0) < 20
        moved = RtpStream(ua.local_ip)
        try:
            ok = call.request("INVITE", body=sdp_offer(ua.local_ip, moved.local[1], ("PCMU",), 101))
            call.send_ack(cseq=call.local_cseq)
            answer = parse_sdp(ok.body)
            moved.configure((answer.ip, answer.port), "PCMU", answer.telephone_event_pt)
            assert abs(echoed_frequency(moved, freq=600.0) - 600.0) < 20, server.describe(40)
        finally:
            moved.close()
        call.bye()


def test_reinvite_changes_the_codec(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo", codecs=("PCMU",))
        ok = call.request("INVITE", body=sdp_offer(ua.local_ip, call.rtp.local[1], ("PCMA",), 101))
        call.send_ack(cseq=call.local_cseq)
        answer = parse_sdp(ok.body)
        assert answer.codec == "PCMA", ok.body
        call.rtp.configure((answer.ip, answer.port), "PCMA", answer.telephone_event_pt)
        before = len(call.rtp.audio_packets())
        assert abs(echoed_frequency(call.rtp) - 1000.0) < 20
        assert {p.packet.payload_type for p in call.rtp.audio_packets()[before + 10:]} == {8}
        call.bye()


def test_reinvite_with_nothing_in_common_gets_488_and_the_call_goes_on(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo")
        g729 = sdp_offer(ua.local_ip, call.rtp.local[1], ("PCMU",), None).replace(
            b"RTP/AVP 0", b"RTP/AVP 18").replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:18 G729/8000")
        with pytest.raises(SipError) as refused:
            call.request("INVITE", body=g729)
        assert refused.value.status == 488
        assert abs(echoed_frequency(call.rtp) - 1000.0) < 20
        call.bye()


def test_initial_offer_with_nothing_in_common_gets_488(server):
    with SipUA(server.host, server.sip_port) as ua:
        g729 = (b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                b"m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")
        with pytest.raises(SipError) as refused:
            ua.call("echo", body=g729, with_rtp=False)
        assert refused.value.status == 488
        # The echo scenario routes media right after answer(): on a refused call
        # that is ignored, not a scenario error. The OPTIONS round trip comes
        # after the reactor turn that handled the INVITE, so its log is written.
        assert ua.options().status == 200
    assert "ERROR" not in server.log_text(), server.describe(40)


@pytest.mark.parametrize("hold", ["sendonly", "zero-address"])
def test_hold_stops_our_rtp_and_resume_brings_the_echo_back(server, hold):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo", codecs=("PCMU",))
        rtp = call.rtp
        assert rtp.wait_packets(10, timeout=5)
        if hold == "sendonly":
            offer = sdp_offer(ua.local_ip, rtp.local[1], ("PCMU",), 101, direction="sendonly")
        else:       # RFC 2543 style
            offer = sdp_offer(ua.local_ip, rtp.local[1], ("PCMU",), 101).replace(
                b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
        ok = call.request("INVITE", body=offer)
        call.send_ack(cseq=call.local_cseq)
        if hold == "sendonly":
            assert b"a=recvonly" in ok.body, ok.body
        rtp.wait_quiet(0.5, timeout=5)
        held = len(rtp.packets)
        rtp.wait_quiet(1.0, timeout=5)
        assert len(rtp.packets) == held, "voxlab kept sending RTP to a held call"
        ok = call.request("INVITE", body=sdp_offer(ua.local_ip, rtp.local[1], ("PCMU",), 101))
        call.send_ack(cseq=call.local_cseq)
        assert b"a=sendrecv" in ok.body, ok.body
        assert abs(echoed_frequency(rtp) - 1000.0) < 20
        call.bye()
