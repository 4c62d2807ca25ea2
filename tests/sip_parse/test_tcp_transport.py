"""SipStreamProtocol on a fake TCP connection: framing errors, oversized messages (513)."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from voxlab.sip.message import MAX_MESSAGE_SIZE
from voxlab.sip.transport import SipStreamProtocol, SipTransportLayer


class NoCalls:
    def incoming_call(self, leg):
        raise AssertionError("no call expected")


def options(n: int, extra: bytes = b"", content_length: int | None = None, body: bytes = b"") -> bytes:
    cl = len(body) if content_length is None else content_length
    return (f"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-t{n}\r\n"
            f"From: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:echo@127.0.0.1>\r\n"
            f"Call-ID: tcp-{n}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\n").encode() + extra + (
            f"Content-Length: {cl}\r\n\r\n").encode() + body


def connect():
    layer = SipTransportLayer(Clock(), "127.0.0.1", 5060, NoCalls())
    proto = SipStreamProtocol(layer)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5999))
    proto.makeConnection(transport)
    return layer, proto, transport


def statuses(transport) -> list[int]:
    return [int(line.split()[1]) for line in transport.value().split(b"\r\n")
            if line.startswith(b"SIP/2.0 ")]


def test_folded_content_length_is_served_not_closed():
    layer, proto, transport = connect()
    proto.dataReceived(options(1).replace(b"Content-Length: 0", b"Content-Length:\r\n 0"))
    proto.dataReceived(options(2).replace(b"Content-Length: 0", b"l:\r\n\t0"))
    assert statuses(transport) == [200, 200]
    assert not transport.disconnecting


def test_message_over_the_limit_gets_513_then_the_connection_closes():
    layer, proto, transport = connect()
    proto.dataReceived(options(1) + options(2, content_length=MAX_MESSAGE_SIZE))
    # The OPTIONS before it is answered, then 513 for the oversized one, then the close.
    assert statuses(transport) == [200, 513]
    assert b"Call-ID: tcp-2\r\n" in transport.value().split(b"SIP/2.0 513")[1]
    assert transport.disconnecting
    assert layer.ua.stats["malformed"] == 1
    # Whatever else the peer still sends is ignored, not answered again.
    proto.dataReceived(b"x" * 1000 + options(3))
    assert statuses(transport) == [200, 513]


def test_endless_header_section_closes_without_an_answer():
    layer, proto, transport = connect()
    proto.dataReceived(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n")
    for _ in range(3):
        proto.dataReceived(b"X-Junk: " + b"a" * 30000 + b"\r\n")
    assert transport.value() == b"" and transport.disconnecting


def test_missing_content_length_closes_after_answering_what_came_before():
    layer, proto, transport = connect()
    proto.dataReceived(options(1) + options(2).replace(b"Content-Length: 0\r\n", b""))
    assert statuses(transport) == [200]
    assert transport.disconnecting
