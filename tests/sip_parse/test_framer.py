"""StreamFramer: SIP over TCP, framed by Content-Length."""

from __future__ import annotations

import pytest

from voxlab.sip.message import MessageTooLarge, SipParseError, StreamFramer, parse_message


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


@pytest.mark.parametrize("header", [
    b"Content-Length:\r\n 3",              # value folded onto a continuation line
    b"Content-Length:\r\n\t  3",
    b"Content-Length: \r\n \r\n 3",        # folded twice
    b"l:\r\n 3",                           # compact form, folded
    b"L:3",
    b"content-LENGTH   :\t3",
])
def test_content_length_spellings_the_parser_accepts(header):
    """Whatever parse_message reads as Content-Length, the framer must read the same way,
    or it closes a connection over a legal message (RFC 3261 7.3.1 folding, 7.3.3 compact)."""
    m = message(1, b"xyz").replace(b"Content-Length: 3", header)
    assert parse_message(m).body == b"xyz"
    follow = message(2)
    framer = StreamFramer()
    assert framer.feed(m + follow) == [m, follow]
    # Split right inside the folded header, too.
    framer = StreamFramer()
    cut = m.index(header) + len(header) - 1
    assert framer.feed(m[:cut]) == [] and framer.feed(m[cut:]) == [m]


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
    with pytest.raises(MessageTooLarge, match="header block exceeds") as info:
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX-Junk: " + b"a" * 600)
    assert info.value.head is None and info.value.status == 513     # nothing to answer
    with pytest.raises(MessageTooLarge, match="exceeds"):
        StreamFramer(max_size=500).feed(message(1).replace(b"Content-Length: 0", b"Content-Length: 100000"))


def test_oversized_message_hands_over_its_header_section_for_a_513():
    big = message(1).replace(b"Content-Length: 0", b"Content-Length: 100000")
    framer = StreamFramer(max_size=500)
    with pytest.raises(MessageTooLarge) as info:
        framer.feed(big[:len(big) // 2])
        framer.feed(big[len(big) // 2:] + b"x" * 300)
    head = info.value.head
    assert head == big                                   # the header section, up to the empty line
    # parse_message reads it as the oversized request it is: 513, with a request to answer.
    with pytest.raises(SipParseError) as parsed:
        parse_message(head, max_size=500)
    assert parsed.value.status == 513 and parsed.value.request is not None
    assert parsed.value.request.call_id == "c1"
    # At the default limit too (the transport feeds the user agent, which uses the default).
    huge = message(1).replace(b"Content-Length: 0", b"Content-Length: 70000")
    with pytest.raises(MessageTooLarge) as info:
        StreamFramer().feed(huge)
    with pytest.raises(SipParseError) as parsed:
        parse_message(info.value.head)
    assert parsed.value.status == 513 and parsed.value.request.cseq == (1, "OPTIONS")


def test_messages_before_a_framing_error_are_kept():
    good, bad = message(1, b"ok"), message(2).replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(good + message(3) + bad)
    assert info.value.messages == [good, message(3)]
    with pytest.raises(MessageTooLarge) as info:
        StreamFramer(max_size=500).feed(good + message(4, b"x" * 600))
    assert info.value.messages == [good]
