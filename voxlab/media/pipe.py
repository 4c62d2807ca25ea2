"""Routes between media workers: a unit in one worker sending to a unit in another.

The sending worker has a :class:`PipeOut` that takes its source's frame each
tick and sends it at once as one datagram on loopback; the receiving worker
has a :class:`PipeIn` whose output, on its next tick, is the oldest frame
received and not yet played (at most MAX_QUEUED are kept). That costs one tick
of latency when the two clocks keep step, and at most MAX_QUEUED ticks when
one lags. Encoded frames travel
encoded (no transcoding when both ends share a codec); PCM travels as int16.
"""

from __future__ import annotations

import collections
import errno
import socket
from typing import Callable

import numpy as np

from voxlab.media.graph import FRAME_SAMPLES, Frame, MediaUnit

_CODECS = {"PCMU": 1, "PCMA": 2}
_NAMES = {v: k for k, v in _CODECS.items()}
_PCM = 0
# Frames kept when the receiver's tick lags the sender's: enough for a late
# tick, few enough that a backlog never adds up to audible delay.
MAX_QUEUED = 3


def encode_frame(frame: Frame) -> bytes:
    if frame.payload is not None and frame.codec in _CODECS:
        return bytes([_CODECS[frame.codec]]) + frame.payload
    return bytes([_PCM]) + np.asarray(frame.pcm, dtype="<i2").tobytes()


def decode_frame(data: bytes) -> Frame | None:
    if not data:
        return None
    kind, body = data[0], data[1:]
    if kind == _PCM:
        if len(body) != 2 * FRAME_SAMPLES:
            return None
        return Frame(pcm=np.frombuffer(body, dtype="<i2").astype(np.int16))
    codec = _NAMES.get(kind)
    if codec is None or len(body) != FRAME_SAMPLES:
        return None
    return Frame(payload=body, codec=codec)


class PipeOut(MediaUnit):
    """Sends its input frame, each tick, to the PipeIn of another worker."""

    kind = "pipe-out"

    def __init__(self, send: Callable[[bytes], None], name: str | None = None) -> None:
        super().__init__(name)
        self.send = send
        self.sent = 0

    def consume(self, frame: Frame | None) -> None:
        if frame is None:
            return
        self.send(encode_frame(frame))
        self.sent += 1


class PipeIn(MediaUnit):
    """Produces, each tick, the oldest frame received from a PipeOut (None when there is none)."""

    kind = "pipe-in"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.queue: collections.deque[Frame] = collections.deque(maxlen=MAX_QUEUED)
        self.received = 0

    def datagram_received(self, data: bytes, addr) -> None:
        frame = decode_frame(data)
        if frame is not None:
            self.received += 1
            self.queue.append(frame)

    def produce(self) -> Frame | None:
        return self.queue.popleft() if self.queue else None


def loopback_sender(host: str, port: int) -> tuple[socket.socket, Callable[[bytes], None]]:
    """A UDP socket and a ``send(data)`` to host:port that drops on a full buffer (media is best-effort)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect((host, port))

    def send(data: bytes) -> None:
        try:
            sock.send(data)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOBUFS):
                raise
    return sock, send
