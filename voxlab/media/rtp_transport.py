"""Twisted side of RTP: a UDP socket per endpoint, bound from a configured port range.

RTP sockets are plain non-blocking sockets registered with the reactor as
readers rather than ``listenUDP`` ports: a call opens and closes one per leg,
and ``udp.Port`` logs two lines for each, which at hundreds of calls per
second costs more than the media itself.
"""

from __future__ import annotations

import errno
import socket

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from voxlab.media.endpoint import RtpEndpoint

log = Logger()

# Read at most this many datagrams per readiness event so one busy stream
# cannot starve the others.
READ_BATCH = 32


@implementer(IReadDescriptor)
class RtpSocket:
    """One bound UDP socket feeding one RtpEndpoint and carrying its writes."""

    def __init__(self, reactor, sock: socket.socket) -> None:
        self.reactor = reactor
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.endpoint: RtpEndpoint | None = None
        self.open = True
        reactor.addReader(self)

    def fileno(self) -> int:
        return self.sock.fileno() if self.open else -1

    def logPrefix(self) -> str:
        return f"RTP:{self.port}"

    def doRead(self) -> None:
        recv = self.sock.recvfrom
        for _ in range(READ_BATCH):
            try:
                data, addr = recv(2048)
            except BlockingIOError:
                return
            except OSError:
                # ICMP port unreachable from a peer that went away, and the like.
                return
            endpoint = self.endpoint
            if endpoint is not None:
                try:
                    endpoint.datagram_received(data, addr)
                except Exception:
                    # Escaping doRead would make the reactor drop this socket
                    # and with it the call's media.
                    log.failure("RTP packet on {port} could not be handled", port=self.port)

    def write(self, data: bytes, addr) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:
            # RTP is best-effort: a full buffer or an unreachable peer loses a packet.
            if exc.errno not in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOBUFS):
                log.debug("RTP send on {port} failed: {error}", port=self.port, error=exc)

    def connectionLost(self, reason) -> None:
        self.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.reactor.removeReader(self)
            self.sock.close()
            self.endpoint = None


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
        self.in_use: dict[int, RtpSocket] = {}

    def bind(self) -> RtpSocket:
        """A bound socket; raises RuntimeError when the range is exhausted."""
        span = (self.high - self.low) // 2 + 1
        for _ in range(span):
            port = self.next
            self.next = port + 2 if port + 2 <= self.high else self.low
            if port in self.in_use:
                continue
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            rtp = RtpSocket(self.reactor, sock)
            self.in_use[port] = rtp
            return rtp
        raise RuntimeError(f"no free RTP port in {self.low}-{self.high}")

    def release(self, rtp: RtpSocket) -> None:
        self.in_use.pop(rtp.port, None)
        rtp.close()
