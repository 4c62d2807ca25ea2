"""Twisted side of RTP: a UDP socket per endpoint, bound from a configured port range.

RTP sockets are plain non-blocking sockets registered with the reactor as
readers rather than ``listenUDP`` ports: a call opens and closes one per leg,
and ``udp.Port`` logs two lines for each, which at hundreds of calls per
second costs more than the media itself.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer


log = Logger()

# Read at most this many datagrams per readiness event so one busy stream
# cannot starve the others.
READ_BATCH = 32


@implementer(IReadDescriptor)
class RtpSocket:
    """One bound UDP socket feeding one unit (an RtpEndpoint, a pipe's receiving
    end: anything with ``datagram_received``) and carrying its writes."""

    def __init__(self, reactor, sock: socket.socket) -> None:
        self.reactor = reactor
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.endpoint: Any = None
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
    """Hands out even UDP ports from [low, high] on one interface, skipping ports in use.

    It binds the sockets (so a port in use elsewhere is skipped at once) but
    reads none of them: the main process passes each to the media worker that
    owns the call, and keeps its copy only until the call's media is released."""

    def __init__(self, host: str, low: int, high: int) -> None:
        if low > high:
            raise ValueError(f"empty RTP port range {low}-{high}")
        self.host = host
        self.low = low + (low % 2)
        self.high = high
        self.next = self.low
        self.in_use: dict[int, socket.socket] = {}

    def bind(self) -> socket.socket:
        """A bound non-blocking socket; raises RuntimeError when the range is exhausted."""
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
            self.in_use[port] = sock
            return sock
        raise RuntimeError(f"no free RTP port in {self.low}-{self.high}")

    def release(self, sock: socket.socket) -> None:
        try:
            port = sock.getsockname()[1]
        except OSError:
            port = None
        if port is not None and self.in_use.get(port) is sock:
            del self.in_use[port]
        sock.close()


def split_range(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """[low, high] cut into ``parts`` ranges of (nearly) equal numbers of even ports."""
    low += low % 2
    count = (high - low) // 2 + 1
    if parts < 1 or count < parts:
        raise ValueError(f"RTP port range {low}-{high} is too small for {parts} media worker(s)")
    out, start = [], low
    for i in range(parts):
        n = count // parts + (1 if i < count % parts else 0)
        out.append((start, start + 2 * (n - 1) + 1 if i < parts - 1 else high))
        start += 2 * n
    return out
