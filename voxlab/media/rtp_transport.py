"""Twisted side of RTP: a UDP socket per endpoint, bound from a configured port range."""

from __future__ import annotations

from twisted.internet import error, protocol
from twisted.logger import Logger

from voxlab.media.endpoint import RtpEndpoint

log = Logger()


class RtpSocket(protocol.DatagramProtocol):
    """Feeds one RtpEndpoint and carries its writes."""

    def __init__(self) -> None:
        self.endpoint: RtpEndpoint | None = None

    def datagramReceived(self, data: bytes, addr) -> None:
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.datagram_received(data, addr)

    def write(self, data: bytes, addr) -> None:
        if self.transport is not None:
            try:
                self.transport.write(data, addr)
            except OSError:
                # ICMP unreachable from a peer that went away, full buffers:
                # RTP is best-effort, losing a packet is the right outcome.
                pass


class RtpPortPool:
    """Hands out even UDP ports from [low, high] on one interface, skipping ports in use."""

    def __init__(self, reactor, host: str, low: int, high: int) -> None:
        if low > high:
            raise ValueError(f"empty RTP port range {low}-{high}")
        self.reactor = reactor
        self.host = host
        self.low = low + (low % 2)
        self.high = high
        self.next = self.low
        self.in_use: dict[int, object] = {}

    def bind(self) -> tuple[RtpSocket, object]:
        """A bound socket and its listening port; raises RuntimeError when the range is exhausted."""
        span = (self.high - self.low) // 2 + 1
        for _ in range(span):
            port = self.next
            self.next = port + 2 if port + 2 <= self.high else self.low
            if port in self.in_use:
                continue
            sock = RtpSocket()
            try:
                listening = self.reactor.listenUDP(port, sock, interface=self.host)
            except error.CannotListenError:
                continue
            self.in_use[port] = listening
            return sock, listening
        raise RuntimeError(f"no free RTP port in {self.low}-{self.high}")

    def release(self, listening) -> None:
        port = listening.getHost().port
        self.in_use.pop(port, None)
        listening.stopListening()
