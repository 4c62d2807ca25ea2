"""Thin Twisted transports for SIP over UDP and TCP that feed a :class:`UserAgent`."""

from __future__ import annotations

from typing import Callable

from twisted.internet import protocol
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IReactorTCP, IReactorUDP
from twisted.logger import Logger

from voxlab.sip.message import MessageTooLarge, SipMessage, SipParseError, StreamFramer, parse_message
from voxlab.sip.useragent import Target, UserAgent

log = Logger()


class SipDatagramProtocol(protocol.DatagramProtocol):
    """SIP over UDP: every datagram is one message."""

    noisy = False

    def __init__(self, deliver: Callable[[bytes, Target], None]) -> None:
        self.deliver = deliver

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.deliver(data, Target("udp", addr[0], addr[1]))

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is not None:
            try:
                self.transport.write(data, (host, port))
            except Exception as exc:
                log.warn("SIP UDP send to {host}:{port} failed: {error}", host=host, port=port, error=exc)


class SipStreamProtocol(protocol.Protocol):
    """SIP over one TCP connection: frames the stream by Content-Length."""

    def __init__(self, layer: "SipTransportLayer") -> None:
        self.layer = layer
        self.framer = StreamFramer()
        self.target: Target | None = None
        self.pending: list[bytes] = []
        self.closing = False

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.target = Target("tcp", peer.host, peer.port)
        self.layer.connections[(peer.host, peer.port)] = self
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return             # after a framing error the rest of the stream is meaningless
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            # The messages before the bad one were whole and are handled first.
            for message in getattr(exc, "messages", ()):
                self.layer.ua.datagram_received(message, self.target)
            log.info("closing SIP TCP connection from {target}: {error}", target=str(self.target), error=exc)
            head = exc.head if isinstance(exc, MessageTooLarge) else None
            if head is not None:
                # The whole header section arrived: the user agent answers it 513
                # (the parser reports the declared size) on this connection,
                # which is written out before the close below takes effect.
                self.layer.ua.datagram_received(head, self.target)
            self.closing = True
            self.transport.loseConnection()
            return
        for message in messages:
            self.layer.ua.datagram_received(message, self.target)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self.target is not None:
            key = (self.target.host, self.target.port)
            if self.layer.connections.get(key) is self:
                del self.layer.connections[key]

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)


class _StreamFactory(protocol.Factory):
    noisy = False
    def __init__(self, layer: "SipTransportLayer") -> None:
        self.layer = layer

    def buildProtocol(self, addr) -> SipStreamProtocol:
        return SipStreamProtocol(self.layer)


class _ClientStreamFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, proto: SipStreamProtocol, layer: "SipTransportLayer", key: tuple[str, int]) -> None:
        self.proto = proto
        self.layer = layer
        self.key = key

    def buildProtocol(self, addr) -> SipStreamProtocol:
        return self.proto

    def clientConnectionFailed(self, connector, reason) -> None:
        # Forget the would-be connection, or every later send there is lost.
        if self.layer.connections.get(self.key) is self.proto:
            del self.layer.connections[self.key]
        log.warn("SIP TCP connect to {dest} failed: {reason}", dest=connector.getDestination(),
                 reason=reason.getErrorMessage())


class SipTransportLayer:
    """Owns the UDP socket and TCP connections of one SIP address and the UserAgent they feed."""

    def __init__(self, reactor, host: str, port: int, handler, transports: tuple[str, ...] = ("udp", "tcp")) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.transports = transports
        self.connections: dict[tuple[str, int], SipStreamProtocol] = {}
        self.udp = SipDatagramProtocol(self._deliver)
        self.ua = UserAgent(reactor, self.send, handler, host, port)
        self.listeners: list = []

    def _deliver(self, data: bytes, source: Target) -> None:
        self.ua.datagram_received(data, source)

    def listen(self) -> None:
        if "udp" in self.transports:
            udp: IReactorUDP = self.reactor
            port = udp.listenUDP(self.port, self.udp, interface=self.host, maxPacketSize=65535)
            self.listeners.append(port)
            # Port 0 means "any free port"; the UA must advertise the real one.
            self.port = port.getHost().port
            self.ua.port = self.port
        if "tcp" in self.transports:
            tcp: IReactorTCP = self.reactor
            self.listeners.append(tcp.listenTCP(self.port, _StreamFactory(self), interface=self.host))

    def stop(self):
        from twisted.internet import defer
        for conn in list(self.connections.values()):
            conn.transport.loseConnection()
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.listeners])

    def send(self, message: SipMessage, target: Target) -> None:
        data = message.to_bytes()
        if not (isIPAddress(target.host) or isIPv6Address(target.host)):
            # A host name (a proxy's Record-Route, a Contact): resolve, then send.
            # A name that does not resolve loses the message; the transaction's
            # timers then fail it like any other unanswered request.
            d = self.reactor.resolve(target.host)
            d.addCallback(lambda ip: self._send_bytes(data, Target(target.transport, ip, target.port)))
            d.addErrback(lambda f: log.warn("cannot resolve SIP target {host}: {error}",
                                            host=target.host, error=f.getErrorMessage()))
            return
        self._send_bytes(data, target)

    def _send_bytes(self, data: bytes, target: Target) -> None:
        if target.transport == "udp":
            self.udp.send(data, target.host, target.port)
            return
        conn = self.connections.get((target.host, target.port))
        if conn is None and data.startswith(b"SIP/2.0 "):
            # A response whose connection has closed: the client's port was an
            # ephemeral one, so open a connection to its Via's sent-by port
            # instead (RFC 3261 18.2.2).
            target = Target("tcp", target.host, _sent_by_port(data))
            conn = self.connections.get((target.host, target.port))
        if conn is None:
            conn = SipStreamProtocol(self)
            self.connections[(target.host, target.port)] = conn
            key = (target.host, target.port)
            self.reactor.connectTCP(target.host, target.port, _ClientStreamFactory(conn, self, key))
        conn.send(data)


def _sent_by_port(response: bytes) -> int:
    """The port of the top Via's sent-by (5060 when it has none or cannot be read)."""
    try:
        via = parse_message(response).top_via
    except SipParseError:
        return 5060
    return via.port or 5060
