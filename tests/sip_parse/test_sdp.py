"""SDP parsing, offer/answer negotiation and answer/offer building."""

from __future__ import annotations

import pytest

from voxlab.sip.sdp import (
    PTIME, Codec, Negotiated, SdpError, SessionDescription, build_answer, build_offer,
    negotiate_answer,
)


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# sipp's built-in uac scenario offer
SIPP = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

# what baresip sends with opus, G.722 and G.711 enabled
BARESIP = crlf("""
v=0
o=- 3012591216 1718830917 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 10170 RTP/AVP 96 9 0 8 101
b=AS:74
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:1495463532 cname:4a0f0b2a-1c29-4b5e-a3f4-6d1c2b1f0e99
a=ptime:20
""")

# a WebRTC offer as Chrome writes it (DTLS-SRTP, ICE, BUNDLE, many attributes)
CHROME = crlf("""
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS 6a5b3c1d-7e8f-4a9b-8c7d-6e5f4a3b2c1d
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Xk3p
a=ice-pwd:1dN6O0d+Cq8jO2b3bJ3kyXEk
a=ice-options:trickle
a=fingerprint:sha-256 4F:2A:8B:11:9C:3D:7E:55:0A:66:C1:9F:2E:D4:8B:73:5A:1C:E0:42:6B:97:3F:18:AD:5E:C2:09:71:B6:E3:44
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=msid:6a5b3c1d-7e8f-4a9b-8c7d-6e5f4a3b2c1d 0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:3735928559 cname:vXkz3L9qPq0aB1cD
a=ssrc:3735928559 msid:6a5b3c1d-7e8f-4a9b-8c7d-6e5f4a3b2c1d 0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f
""")


def offer(media: str, session_extra: str = "", connection: str | None = "c=IN IP4 198.51.100.7") -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-"]
    if connection:
        lines.append(connection)
    lines.append("t=0 0")
    if session_extra:
        lines.append(session_extra)
    return crlf("\n".join(lines) + "\n" + media)


# -- parsing

def test_parse_sipp_offer():
    sdp = SessionDescription.parse(SIPP)
    assert sdp.version == 0
    assert sdp.origin.username == "user1" and sdp.origin.sess_id == "53655765"
    assert sdp.origin.address == "127.0.0.1"
    assert sdp.connection == "127.0.0.1" and sdp.session_name == "-" and sdp.timing == "0 0"
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == ("audio", 6000, "RTP/AVP", [0])
    assert audio.codecs == [Codec(0, "PCMU", 8000)]
    assert audio.direction == "sendrecv" and audio.ptime is None
    assert sdp.to_bytes() == SIPP


def test_parse_baresip_offer():
    sdp = SessionDescription.parse(BARESIP)
    audio = sdp.media[0]
    assert audio.formats == [96, 9, 0, 8, 101]
    assert [(c.payload_type, c.name, c.clock_rate, c.channels) for c in audio.codecs] == [
        (96, "opus", 48000, 2), (9, "G722", 8000, 1), (0, "PCMU", 8000, 1), (8, "PCMA", 8000, 1),
        (101, "telephone-event", 8000, 1)]
    assert audio.codecs[0].fmtp == "stereo=1;sprop-stereo=1"
    assert audio.codecs[-1].fmtp == "0-15"
    assert audio.bandwidths == ["AS:74"] and audio.ptime == 20
    assert audio.attribute("rtcp-rsize") == "" and audio.attribute("label") == "1"
    assert audio.attribute("nope") is None
    assert SessionDescription.parse(sdp.to_bytes()) == sdp


def test_parse_chrome_offer():
    sdp = SessionDescription.parse(CHROME)
    assert sdp.connection is None
    assert ("group", "BUNDLE 0") in sdp.attributes
    audio = sdp.media[0]
    assert audio.proto == "UDP/TLS/RTP/SAVPF" and audio.port == 9 and audio.connection == "0.0.0.0"
    assert [c.name for c in audio.codecs] == [
        "opus", "red", "G722", "PCMU", "PCMA", "CN", "telephone-event", "telephone-event"]
    assert audio.attribute("setup") == "actpass"
    assert audio.attribute("fingerprint").startswith("sha-256 4F:2A")
    assert len(audio.attributes) == 27
    assert SessionDescription.parse(sdp.to_bytes()) == sdp
    # DTLS-SRTP is not something we can answer: the caller sends 488.
    assert negotiate_answer(sdp) is None


def test_lf_line_endings_and_blank_lines():
    sdp = SessionDescription.parse(SIPP.replace(b"\r\n", b"\n") + b"\n\n")
    assert sdp.media[0].codecs[0].name == "PCMU"
    assert SessionDescription.parse(SIPP.decode()).media[0].port == 6000


def test_rfc4475_style_sdp_is_tolerated():
    body = offer("m=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC")
    sdp = SessionDescription.parse(body)
    assert [m.media for m in sdp.media] == ["audio", "video"]
    assert [c.name for c in sdp.media[0].codecs] == ["PCMU", "QCELP"]
    # "a=rtpmap:31 LPC" has no clock rate: ignored, and 31 (H261) is not an audio PT we know.
    assert sdp.media[1].codecs == []


def test_multicast_port_count_and_non_rtp_formats():
    body = offer("m=audio 49170/2 RTP/AVP 0\nc=IN IP4 224.2.1.1/127/3\n"
                 "m=application 9 UDP/DTLS/SCTP webrtc-datachannel")
    sdp = SessionDescription.parse(body)
    assert sdp.media[0].port == 49170 and sdp.media[0].port_count == 2
    assert sdp.media[0].connection == "224.2.1.1"
    assert sdp.media[1].formats == [] and sdp.media[1].other_formats == ["webrtc-datachannel"]
    text = sdp.to_text()
    assert "m=audio 49170/2 RTP/AVP 0\r\n" in text
    assert "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" in text


def test_session_extra_lines_keep_rfc_order():
    body = crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=x\ni=info\nc=IN IP4 1.2.3.4\nb=AS:64\nt=0 0\n"
                "a=tool:x\nm=audio 5 RTP/AVP 0")
    sdp = SessionDescription.parse(body)
    assert sdp.extra == [("i", "info"), ("b", "AS:64")]
    assert sdp.to_bytes() == body


@pytest.mark.parametrize("bad", [
    b"", b"\r\n", b"o=- 1 1 IN IP4 1.2.3.4\r\n", b"v=1\r\n", b"v=0\r\nbogus\r\n",
    b"v=0\r\no=- 1 1 IN IP4\r\n", b"v=0\r\ns=-\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=XX IP4 1.2.3.4\r\n",
    b"v=0\r\nv=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
])
def test_bad_sdp(bad):
    with pytest.raises(SdpError):
        SessionDescription.parse(bad)


# -- negotiation

def test_negotiate_sipp_pcmu():
    neg = negotiate_answer(SessionDescription.parse(SIPP))
    assert neg.codec == Codec(0, "PCMU", 8000)
    assert (neg.remote_host, neg.remote_port) == ("127.0.0.1", 6000)
    assert neg.dtmf_payload_type is None and neg.ptime == 20 and neg.direction == "sendrecv"
    assert neg.proto == "RTP/AVP" and neg.media_index == 0


def test_negotiate_prefers_offer_order():
    neg = negotiate_answer(SessionDescription.parse(BARESIP))
    assert neg.codec.name == "PCMU" and neg.codec.payload_type == 0
    assert neg.dtmf_payload_type == 101
    neg = negotiate_answer(SessionDescription.parse(BARESIP), ("pcma", "G722"))
    assert neg.codec.name == "G722"
    neg = negotiate_answer(SessionDescription.parse(offer("m=audio 4000 RTP/AVP 8 0")))
    assert neg.codec.name == "PCMA"


def test_negotiate_pcma_only():
    neg = negotiate_answer(SessionDescription.parse(offer("m=audio 4000 RTP/AVP 8")))
    assert neg.codec == Codec(8, "PCMA", 8000)
    assert negotiate_answer(SessionDescription.parse(offer("m=audio 4000 RTP/AVP 0")), ("PCMA",)) is None


def test_no_common_codec():
    body = offer("m=audio 4000 RTP/AVP 18 96\na=rtpmap:96 opus/48000/2\na=rtpmap:18 G729/8000")
    assert negotiate_answer(SessionDescription.parse(body)) is None


def test_dynamic_payload_type_for_g711_keeps_offer_number():
    body = offer("m=audio 4000 RTP/AVP 97 98\na=rtpmap:97 pcmu/8000\na=rtpmap:98 telephone-event/8000")
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.codec.payload_type == 97 and neg.codec.name == "pcmu"
    assert neg.dtmf_payload_type == 98


def test_telephone_event_must_be_8000hz():
    body = offer("m=audio 4000 RTP/AVP 0 110 126\na=rtpmap:110 telephone-event/48000\n"
                 "a=rtpmap:126 telephone-event/8000\na=fmtp:126 0-16")
    assert negotiate_answer(SessionDescription.parse(body)).dtmf_payload_type == 126
    body = offer("m=audio 4000 RTP/AVP 0 110\na=rtpmap:110 telephone-event/48000")
    assert negotiate_answer(SessionDescription.parse(body)).dtmf_payload_type is None


@pytest.mark.parametrize("attr,expected", [
    ("", "sendrecv"), ("a=sendrecv", "sendrecv"), ("a=sendonly", "recvonly"),
    ("a=recvonly", "sendonly"), ("a=inactive", "inactive"),
])
def test_answer_direction(attr, expected):
    media = "m=audio 4000 RTP/AVP 0" + (f"\n{attr}" if attr else "")
    assert negotiate_answer(SessionDescription.parse(offer(media))).direction == expected


def test_session_level_direction_and_ptime_apply_to_media():
    body = offer("m=audio 4000 RTP/AVP 0", session_extra="a=sendonly\na=ptime:30")
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.direction == "recvonly" and neg.remote_ptime == 30
    body = offer("m=audio 4000 RTP/AVP 0\na=sendrecv\na=ptime:40", session_extra="a=sendonly\na=ptime:30")
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.direction == "sendrecv" and neg.remote_ptime == 40


@pytest.mark.parametrize("asked", ["a=ptime:30", "a=ptime:10", "a=ptime:60", ""])
def test_answer_ptime_is_what_we_send_not_the_offers(asked):
    """voxlab sends one packet per 20 ms media tick, so the answer says 20 whatever was offered."""
    body = offer("m=audio 4000 RTP/AVP 0" + (f"\n{asked}" if asked else ""))
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.ptime == PTIME == 20
    text = build_answer(neg, "192.0.2.10", 30000, session_id=1).to_text()
    assert text.count("a=ptime:") == 1 and "a=ptime:20\r\n" in text


def test_connection_session_vs_media_level():
    neg = negotiate_answer(SessionDescription.parse(offer("m=audio 4000 RTP/AVP 0")))
    assert neg.remote_host == "198.51.100.7"
    body = offer("m=audio 4000 RTP/AVP 0\nc=IN IP4 203.0.113.9")
    assert negotiate_answer(SessionDescription.parse(body)).remote_host == "203.0.113.9"
    body = offer("m=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::5", connection=None)
    assert negotiate_answer(SessionDescription.parse(body)).remote_host == "2001:db8::5"
    body = offer("m=audio 4000 RTP/AVP 0", connection=None)
    assert negotiate_answer(SessionDescription.parse(body)) is None


def test_first_audio_with_nonzero_port_is_used():
    body = offer("m=video 5000 RTP/AVP 31\nm=audio 0 RTP/AVP 0\nm=audio 4002 RTP/AVP 8 0")
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.media_index == 2 and neg.codec.name == "PCMA" and neg.remote_port == 4002
    assert negotiate_answer(SessionDescription.parse(offer("m=video 5000 RTP/AVP 31"))) is None


def test_srtp_audio_line_first_falls_back_to_a_later_plain_rtp_line():
    """Offers that try SRTP first and plain RTP second (RFC 3264 6: the answer
    keeps one m-line per offered line, port 0 for those we reject)."""
    body = offer("m=audio 4000 RTP/SAVP 0 8\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
                 "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n"
                 "m=audio 4002 RTP/AVP 8 0\na=ptime:30")
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg is not None
    assert neg.media_index == 1 and neg.remote_port == 4002 and neg.codec.name == "PCMA"
    assert neg.proto == "RTP/AVP"
    answer = SessionDescription.parse(build_answer(neg, "192.0.2.10", 30000, 1).to_bytes())
    assert [(m.media, m.port, m.proto) for m in answer.media] == [
        ("audio", 0, "RTP/SAVP"), ("audio", 30000, "RTP/AVP")]
    assert answer.media[0].attribute("crypto") is None
    assert answer.first_audio() is answer.media[1] and answer.media[1].codecs[0].name == "PCMA"


def test_only_srtp_audio_is_still_refused():
    body = offer("m=audio 4000 RTP/SAVP 0\nm=audio 4002 UDP/TLS/RTP/SAVPF 0")
    assert negotiate_answer(SessionDescription.parse(body)) is None
    assert negotiate_answer(SessionDescription.parse(CHROME)) is None


def test_audio_line_without_common_codec_or_address_is_skipped_for_a_later_one():
    body = offer("m=audio 4000 RTP/AVP 18\na=rtpmap:18 G729/8000\nm=audio 4002 RTP/AVP 0")
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.media_index == 1 and neg.codec.name == "PCMU"
    body = offer("m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\nc=IN IP4 203.0.113.9", connection=None)
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.media_index == 1 and neg.remote_host == "203.0.113.9"


@pytest.mark.parametrize("rtpmap", ["PCMU/16000", "PCMU/48000", "PCMU/8000/2"])
def test_codec_with_a_clock_rate_or_channels_we_cannot_carry_is_not_chosen(rtpmap):
    body = offer(f"m=audio 4000 RTP/AVP 97\na=rtpmap:97 {rtpmap}")
    assert negotiate_answer(SessionDescription.parse(body)) is None
    # ... and the offer's next choice is taken instead.
    body = offer(f"m=audio 4000 RTP/AVP 97 8\na=rtpmap:97 {rtpmap}")
    neg = negotiate_answer(SessionDescription.parse(body))
    assert neg.codec == Codec(8, "PCMA", 8000)


def test_g722_keeps_its_8000_rtp_clock_rate():
    """RFC 3551 4.5.2: G.722 is signalled at 8000 though it samples at 16 kHz."""
    body = offer("m=audio 4000 RTP/AVP 9 109\na=rtpmap:109 G722/16000")
    neg = negotiate_answer(SessionDescription.parse(body), ("G722",))
    assert neg.codec == Codec(9, "G722", 8000)
    body = offer("m=audio 4000 RTP/AVP 109\na=rtpmap:109 G722/16000")
    assert negotiate_answer(SessionDescription.parse(body), ("G722",)) is None


# -- building

def test_build_answer_round_trip():
    neg = negotiate_answer(SessionDescription.parse(BARESIP))
    answer = build_answer(neg, "192.0.2.10", 30000, session_id=42)
    text = answer.to_text()
    assert text.startswith("v=0\r\no=voxlab 42 1 IN IP4 192.0.2.10\r\ns=voxlab\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n")
    assert "m=audio 30000 RTP/AVP 0 101\r\n" in text
    assert "a=rtpmap:0 PCMU/8000\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" in text
    assert "a=ptime:20\r\n" in text and text.endswith("a=sendrecv\r\n")
    again = SessionDescription.parse(answer.to_bytes())
    assert again == answer
    audio = again.media[0]
    assert audio.codecs == [Codec(0, "PCMU", 8000), Codec(101, "telephone-event", 8000, 1, "0-16")]
    assert audio.ptime == 20 and audio.direction == "sendrecv"
    # The answer is itself acceptable as an offer, to the same codec.
    back = negotiate_answer(again)
    assert back.codec == Codec(0, "PCMU", 8000)
    assert (back.remote_host, back.remote_port, back.dtmf_payload_type) == ("192.0.2.10", 30000, 101)


def test_build_answer_rejects_other_media_lines():
    body = offer("m=video 5000 RTP/AVP 31 34\nm=audio 4000 RTP/AVP 0\na=sendonly\na=ptime:30\n"
                 "m=application 9 UDP/DTLS/SCTP webrtc-datachannel")
    neg = negotiate_answer(SessionDescription.parse(body))
    answer = SessionDescription.parse(build_answer(neg, "192.0.2.10", 30000, 7, 3).to_bytes())
    assert [(m.media, m.port) for m in answer.media] == [("video", 0), ("audio", 30000),
                                                         ("application", 0)]
    assert answer.media[0].formats == [31, 34]
    assert answer.media[2].other_formats == ["webrtc-datachannel"]
    assert answer.media[1].direction == "recvonly" and answer.media[1].ptime == 20   # offer said 30
    assert answer.origin.sess_version == "3"
    assert negotiate_answer(answer).direction == "sendonly"


def test_build_answer_without_offer_and_ipv6():
    neg = Negotiated(Codec(8, "PCMA", 8000), None, "2001:db8::1", 4000)
    answer = build_answer(neg, "2001:db8::2", 30002, session_id=5)
    text = answer.to_text()
    assert "o=voxlab 5 1 IN IP6 2001:db8::2\r\n" in text and "c=IN IP6 2001:db8::2\r\n" in text
    assert "m=audio 30002 RTP/AVP 8\r\n" in text and "telephone-event" not in text


def test_build_offer():
    sdp = build_offer("192.0.2.10", 30004, session_id=99)
    again = SessionDescription.parse(sdp.to_bytes())
    audio = again.media[0]
    assert audio.formats == [0, 8, 101]
    assert [c.name for c in audio.codecs] == ["PCMU", "PCMA", "telephone-event"]
    assert audio.codecs[2].fmtp == "0-16"
    assert audio.ptime == 20 and audio.direction == "sendrecv"
    assert again.connection == "192.0.2.10" and again.origin.sess_id == "99"
    neg = negotiate_answer(again, ("PCMA",))
    assert neg.codec.payload_type == 8 and neg.dtmf_payload_type == 101
    plain = build_offer("192.0.2.10", 30004, 1, codecs=("PCMA", "G722"), dtmf_payload_type=None, ptime=30)
    assert "m=audio 30004 RTP/AVP 8 9\r\n" in plain.to_text() and "a=ptime:30" in plain.to_text()
    with pytest.raises(ValueError):
        build_offer("192.0.2.10", 30004, 1, codecs=("opus",))


def test_absurd_ptime_is_ignored_not_raised():
    from voxlab.sip.sdp import SessionDescription
    text = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0\r\na=ptime:" + "9" * 400 + "\r\n")
    assert SessionDescription.parse(text).first_audio().ptime is None
