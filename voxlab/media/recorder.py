"""Recorders: media units that write what they are sent to a WAV file, one 20 ms frame
per tick, in the data directory (``recordings/<name>.wav``).

The file is a valid WAV at every moment: the header is written when it is
opened and its sizes are rewritten after each write (data first, then the
header, so the header never claims more than is there). Frames are gathered
for up to :data:`FLUSH_FRAMES` ticks (0.5 s) and written in one go, so a
``kill -9`` of the worker loses at most that much (plus what was still in a
jitter buffer), never the file.

A tick with no frame (nothing routed in, a lost packet, a player that has
ended) is written as silence, as is every tick while muted: the recording is
as long as the wall time it ran.

Mono: the recorder's one input. Stereo: left is the input (for a call, what
the caller says), right is what a call hears: the frame the call's own input
gives it this tick (``call.source.frame_for(call)``), the call being named by
the wire name of its RTP endpoint (``call`` in the spec or the ``listen``
operation).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np

from voxlab.media.endpoint import RtpEndpoint
from voxlab.media.graph import FRAME_SAMPLES, SAMPLE_RATE, Frame, MediaUnit
from voxlab.media.units import UnitContext, UnitError, WorkerUnit
from voxlab.media.wav import WavWriter

#: frames gathered before one write (0.5 s): what a kill -9 may lose, at most
FLUSH_FRAMES = 25

_SILENCE = np.zeros(FRAME_SAMPLES, np.int16)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_U32 = struct.Struct("<I")
_MAX_DATA = 0xFFFFFFFF - 36


class StereoWavWriter:
    """16-bit PCM stereo WAV writer whose file is valid at every moment (as
    :class:`~voxlab.media.wav.WavWriter`, which is mono): data first, then the
    RIFF and data sizes are rewritten in place."""

    __slots__ = ("path", "rate", "_f", "_fd", "_bytes")

    channels = 2

    def __init__(self, path, rate: int = SAMPLE_RATE) -> None:
        self.path = os.fspath(path)
        self.rate = int(rate)
        self._bytes = 0
        self._f = open(self.path, "wb", buffering=0)
        self._fd = self._f.fileno()
        self._f.write(_HEADER.pack(b"RIFF", 36, b"WAVE", b"fmt ", 16, 1, 2, self.rate,
                                   self.rate * 4, 4, 16, b"data", 0))

    def write(self, frames: np.ndarray) -> None:
        """Write ``frames``: int16 of shape (n, 2), left then right."""
        f = self._f
        if f is None:
            raise ValueError("write to a closed StereoWavWriter")
        data = np.ascontiguousarray(frames, dtype="<i2").tobytes()
        if not data:
            return
        size = self._bytes + len(data)
        if size > _MAX_DATA:
            raise OverflowError("WAV data chunk would exceed 4 GiB")
        f.write(data)
        self._bytes = size
        os.pwrite(self._fd, _U32.pack(36 + size), 4)
        os.pwrite(self._fd, _U32.pack(size), 40)

    @property
    def samples(self) -> int:
        return self._bytes // 4

    @property
    def closed(self) -> bool:
        return self._f is None

    def close(self) -> None:
        f = self._f
        if f is not None:
            self._f = None
            f.close()


def _fit(pcm: np.ndarray) -> np.ndarray:
    """Exactly one frame of samples (a 30 ms packet is cut, a short one padded)."""
    n = len(pcm)
    if n == FRAME_SAMPLES:
        return pcm
    if n > FRAME_SAMPLES:
        return pcm[:FRAME_SAMPLES]
    return np.concatenate([pcm, np.zeros(FRAME_SAMPLES - n, np.int16)])


class _Ear(MediaUnit):
    """A silent extra sink of the unit a recorded call hears, when that unit is a
    same-codec RTP endpoint whose packets are relayed to the call on arrival: an
    endpoint with a non-RTP sink also puts its packets in its jitter buffer, so its
    tick produces a frame the recorder can take. Never ticked (not in the graph's
    units); it only sits in the source's ``sinks``."""

    kind = "recorder-ear"


class Recorder(WorkerUnit):
    """Writes its input (mono), or its input and what a call hears (stereo), to a WAV file.

    Spec: ``file`` (the file's name without ``.wav``, made unique in
    ``<data dir>/recordings``), ``stereo``, ``call`` (wire name of the RTP
    endpoint whose heard audio is the right channel), ``stop_with`` (wire
    name of an RTP endpoint: when it is closed, the call has ended, the
    recorder stops). Operations: ``stop``, ``mute(on)``, ``listen(call)``.
    Events: ``Started`` (path, url), ``Stopped`` (duration, path), ``Error`` (error)."""

    kind = "recorder"

    def __init__(self, ctx: UnitContext, name: str, file: str | None = None, stereo: bool = False,
                 call: str | None = None, stop_with: str | None = None) -> None:
        super().__init__(ctx, name)
        if ctx.data_dir is None:
            raise UnitError("no data directory to record into")
        self.stereo = bool(stereo)
        self.muted = False
        self.stopped = False
        self.call_name = call
        self.stop_with = stop_with
        self._stop_endpoint: MediaUnit | None = None
        self._ear: _Ear | None = None
        self._pending = 0
        self._buf = np.zeros((FLUSH_FRAMES * FRAME_SAMPLES, 2) if self.stereo else FLUSH_FRAMES * FRAME_SAMPLES,
                             np.int16)
        self.path = self._open(file or name)
        self.emit("Started", path=str(self.path), url=None)

    def _open(self, stem: str) -> Path:
        folder = self.ctx.data_dir / "recordings"
        stem = _SAFE.sub("_", Path(stem).name).strip("._") or "recording"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(1, 1000):
                path = folder / (f"{stem}.wav" if n == 1 else f"{stem}-{n}.wav")
                if not path.exists():
                    break
            else:
                raise UnitError(f"too many recordings named {stem!r}")
            self.writer = StereoWavWriter(path) if self.stereo else WavWriter(path, SAMPLE_RATE)
        except OSError as exc:
            raise UnitError(f"cannot create the recording in {folder}: {exc.strerror or exc}") from None
        return path

    # -- the tick
    def consume(self, frame: Frame | None) -> None:
        if self.stopped:
            return
        if self.stop_with is not None and self._call_ended():
            self._stop()
            return
        i = self._pending * FRAME_SAMPLES
        buf = self._buf
        if self.stereo:
            heard = self._heard()
            if self.muted:
                buf[i:i + FRAME_SAMPLES] = 0
            else:
                buf[i:i + FRAME_SAMPLES, 0] = _fit(frame.pcm) if frame is not None else _SILENCE
                buf[i:i + FRAME_SAMPLES, 1] = _fit(heard.pcm) if heard is not None else _SILENCE
        elif frame is None or self.muted:
            buf[i:i + FRAME_SAMPLES] = 0
        else:
            buf[i:i + FRAME_SAMPLES] = _fit(frame.pcm)
        self._pending += 1
        if self._pending >= FLUSH_FRAMES:
            self._flush()

    def _call_ended(self) -> bool:
        endpoint = self._stop_endpoint
        if endpoint is None:
            endpoint = self._stop_endpoint = self.ctx.units.get(self.stop_with)
            if endpoint is None:
                return False        # not in this worker: the facade stops us when the call ends
        return endpoint.closed

    def _heard(self) -> Frame | None:
        """What the recorded call hears this tick (None: silence)."""
        endpoint = self.ctx.units.get(self.call_name) if self.call_name is not None else None
        if endpoint is None or endpoint.closed:
            self._deafen()
            return None
        src = endpoint.source
        if src is not None and isinstance(src, RtpEndpoint) and src is not self.source:
            # Relayed to the call on arrival: make it buffer too (see _Ear).
            ear = self._ear
            if ear is None or ear.source is not src:
                self._deafen()
                if not src.closed and self.graph is not None:
                    self._ear = _Ear(f"{self.name}:ear")
                    self.graph.route(src, self._ear)
        elif self._ear is not None:
            self._deafen()
        return src.frame_for(endpoint) if src is not None else None

    def _deafen(self) -> None:
        ear, self._ear = self._ear, None
        if ear is not None and ear.source is not None and self.graph is not None:
            self.graph.unroute(ear.source, ear)

    def _flush(self) -> None:
        n = self._pending
        self._pending = 0
        if not n or self.writer.closed:
            return
        try:
            self.writer.write(self._buf[:n * FRAME_SAMPLES])
        except (OSError, OverflowError, ValueError) as exc:
            self.emit("Error", error=f"recording to {self.path} failed: "
                                     f"{getattr(exc, 'strerror', None) or exc}")
            self._stop()

    def _stop(self) -> None:
        if self.stopped:
            return
        self._flush()
        self.stopped = True
        self._deafen()
        self._stop_endpoint = None
        self.writer.close()
        self.emit("Stopped", duration=round(self.duration, 3), path=str(self.path))

    @property
    def duration(self) -> float:
        """Seconds recorded so far (written and still gathered)."""
        return (self.writer.samples + self._pending * FRAME_SAMPLES) / SAMPLE_RATE

    # -- operations
    def op_stop(self) -> None:
        self._stop()

    def op_mute(self, on: bool = True) -> None:
        self.muted = bool(on)

    def op_listen(self, call: str | None = None) -> None:
        """The right channel (stereo) becomes what the call with this wire name hears."""
        if call != self.call_name:
            self._deafen()
            self.call_name = call

    def close(self) -> None:
        # Removed (the session ended, the worker is going): keep what was recorded.
        if not self.stopped:
            self._flush()
            self.stopped = True
            self._deafen()
            self.writer.close()

    def stats_row(self) -> list:
        return [round(self.duration, 2), self.muted, str(self.path), self.stopped]

    def describe(self) -> str:
        state = "stopped" if self.stopped else "muted" if self.muted else "recording"
        return f"{self.name} {state} {self.duration:.1f}s{' stereo' if self.stereo else ''} {self.path.name}"
