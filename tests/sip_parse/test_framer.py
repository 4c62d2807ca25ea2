"""StreamFramer: SIP over TCP, framed by Content-Length."""

from __future__ import annotations

import pytest

from voxlab.sip.message import SipParseError, StreamFramer, parse_message


def message(n: int, body: bytes = b"") -> bytes:
    return (f"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{n}\r\n"
            f"From: <sip:x@y>;tag={n}\r\nTo: <sip:a@b>\r\nCall-ID: c{n}\r\nCSeq: {n} OPTIONS\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_whole_and_concatenated_messages():
    framer = StreamFramer()
    m1, m2, m3 = message(1, b"hello"), message(2), message(3, b"\r\n\r\nx")
    assert framer.feed(m1) == [m1]
    assert framer.feed(m2 + m3) == [m2, m3]
    assert framer.buffered == 0
    assert [parse_message(m).cseq[0] for m in (m1, m2, m3)] == [1, 2, 3]


def test_byte_by_byte():
    framer = StreamFramer()
    stream = message(1, b"body one") + message(2, b"") + message(3, b"three")
    out = []
    for i in range(len(stream)):
        out.extend(framer.feed(stream[i:i + 1]))
    assert out == [message(1, b"body one"), message(2, b""), message(3, b"three")]


def test_split_inside_headers_and_body():
    framer = StreamFramer()
    m = message(7, b"0123456789")
    assert framer.feed(m[:30]) == []
    assert framer.feed(m[30:-4]) == []
    assert framer.buffered == len(m) - 4
    assert framer.feed(m[-4:] + m[:10]) == [m]
    assert framer.buffered == 10


def test_keepalives_between_messages():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.feed(b"\r\n" + message(1) + b"\r\n\r\n\r\n" + message(2)) == [message(1), message(2)]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n" + message(3)) == [message(3)]


def test_compact_content_length():
    m = message(1, b"xyz").replace(b"Content-Length: 3", b"l :  3")
    assert StreamFramer().feed(m) == [m]


def test_missing_content_length_is_fatal():
    m = message(1).replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError, match="missing Content-Length"):
        StreamFramer().feed(m)


def test_bad_content_length_is_fatal():
    with pytest.raises(SipParseError, match="bad Content-Length"):
        StreamFramer().feed(message(1).replace(b"Content-Length: 0", b"Content-Length: -5"))
    with pytest.raises(SipParseError, match="bad Content-Length"):
        StreamFramer().feed(message(1).replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 4"))


def test_size_limits():
    framer = StreamFramer(max_size=500)
    with pytest.raises(SipParseError, match="header block exceeds"):
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX-Junk: " + b"a" * 600)
    with pytest.raises(SipParseError, match="exceeds"):
        StreamFramer(max_size=500).feed(message(1).replace(b"Content-Length: 0", b"Content-Length: 100000"))
