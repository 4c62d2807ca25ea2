"""The parsers never raise anything but their own error type, whatever the bytes.

Seeded, so failures reproduce: random bytes, truncations and byte-level
mutations of real messages (the RFC 4475 set and a few hand-made ones),
plus token-level splices that keep messages mostly well-formed so that the
deeper parsers (URI, name-addr, Via, CSeq, SDP) get exercised too.
"""

from __future__ import annotations

import random
from pathlib import Path

from voxlab.sip.message import SipParseError, StreamFramer, parse_message
from voxlab.sip.sdp import SdpError, SessionDescription, negotiate_answer
from voxlab.sip.uri import NameAddr, SipUri, Via

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rfc4475"
SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("*.sip"))]
SEEDS.append(
    b"INVITE sip:bob@[2001:db8::1]:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::2]:5062;branch=z9hG4bKx;rport, SIP/2.0/TCP p:1;branch=z9hG4bKy\r\n"
    b'From: "A \\"q\\"" <sip:a@b;user=phone>;tag=1\r\nTo: <tel:+123;phone-context=x>\r\n'
    b"Call-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:a@h?Subject=x>;expires=5\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 120\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n")
INTERESTING = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"@",
               b"=", b"?", b"[", b"]", b"/", b"\x00", b"\xff", b"\xc3", b"%", b"SIP/2.0", b"0",
               b"99999999999999999999", b"-1", b"\r\n ", b"\r\n\r\n"]


def _check(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert not str(exc).startswith("unexpected parser failure"), (str(exc), data)
        if exc.request is not None:
            exc.request.to_bytes()   # the best-effort request must be serialisable
        return
    # A message that parsed serialises and parses again to the same thing.
    again = parse_message(msg.to_bytes())
    assert again.call_id == msg.call_id and again.cseq == msg.cseq and again.body == msg.body


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randrange(len(buf) + 1)
        if op < 0.25 and buf:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op < 0.5:
            buf[pos:pos] = rng.choice(INTERESTING)
        elif op < 0.7 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op < 0.85:
            other = rng.choice(SEEDS)
            start = rng.randrange(len(other))
            buf[pos:pos] = other[start:start + rng.randint(1, 40)]
        else:
            buf = buf[:pos]
    return bytes(buf)


def test_random_bytes():
    rng = random.Random(1)
    for _ in range(1500):
        _check(bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))))
        _check(bytes(rng.choice(b"INVITE sip:@;<>\":,\r\n \tSIP/2.0") for _ in range(rng.randint(0, 200))))


def test_truncated_messages():
    for seed in SEEDS:
        for cut in range(0, len(seed), 7):
            _check(seed[:cut])


def test_mutated_messages():
    rng = random.Random(4475)
    for _ in range(4000):
        _check(_mutate(rng, rng.choice(SEEDS)))


def test_header_value_parsers():
    rng = random.Random(7)
    samples = [
        "sip:alice@example.com:5060;transport=tcp;lr?Subject=x&h=y", '"A \\"B\\"" <sip:a@b>;tag=x',
        "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKa;rport;received=1.2.3.4", "tel:+1-555;ext=1",
        "sip:user;par=u%40x@host", "<sips:[2001:db8::1]>;q=0.5",
    ]
    alphabet = ':;@<>"\\?&=,[]/ \t%.abcSIP02\x00\x7f\u00e9'
    for _ in range(3000):
        text = rng.choice(samples)
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5 and chars:
                del chars[min(pos, len(chars) - 1)]
            else:
                chars.insert(pos, rng.choice(alphabet))
        mutated = "".join(chars)
        for parser in (SipUri.parse, NameAddr.parse, Via.parse):
            try:
                result = parser(mutated)
            except SipParseError:
                continue
            assert parser(str(result)) == result, (mutated, str(result))


def test_stream_framer_never_crashes():
    rng = random.Random(99)
    for _ in range(500):
        framer = StreamFramer(max_size=4096)
        stream = b"".join(_mutate(rng, rng.choice(SEEDS)) if rng.random() < 0.3 else rng.choice(SEEDS)
                          for _ in range(3))
        pos = 0
        try:
            while pos < len(stream):
                step = rng.randint(1, 300)
                for chunk in framer.feed(stream[pos:pos + step]):
                    _check(chunk)
                pos += step
        except SipParseError:
            pass


def test_sdp_parser_never_crashes():
    rng = random.Random(3264)
    bodies = [s.split(b"\r\n\r\n", 1)[1] for s in SEEDS if b"v=0" in s]
    for _ in range(3000):
        data = _mutate(rng, rng.choice(bodies))
        try:
            sdp = SessionDescription.parse(data)
        except SdpError:
            continue
        negotiate_answer(sdp)
        SessionDescription.parse(sdp.to_bytes())
