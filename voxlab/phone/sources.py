"""Where the phone's audio comes from and goes to, when it is not a sound card.

Every source gives 20 ms frames of 8 kHz mono int16 (``read()``; None once a file has
ended), every sink takes them (``write()``). A device (:mod:`voxlab.phone.devices`) has
the same two methods.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from voxlab.media.wav import WavWriter, read_wav
from voxlab.phone.drift import FRAME

RATE = 8000

__all__ = ["Source", "Sink", "WavSource", "WavSink", "SilentSource", "NullSink", "RATE"]


class Source(Protocol):
    def start(self) -> None: ...
    def read(self) -> np.ndarray | None: ...
    def stop(self) -> None: ...


class Sink(Protocol):
    def start(self) -> None: ...
    def write(self, frame: np.ndarray) -> None: ...
    def stop(self) -> None: ...


class WavSource:
    """A WAV file as the microphone: any rate, channels or sample format (read and
    resampled to 8 kHz mono by :func:`voxlab.media.wav.read_wav`), played from its start
    in each call, once."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        try:
            self.pcm = read_wav(self.path, RATE)
        except ValueError as exc:
            raise ValueError(f"--audio-in {self.path}: {exc}") from None
        self.pos = 0

    @property
    def duration(self) -> float:
        return len(self.pcm) / RATE

    @property
    def ended(self) -> bool:
        return self.pos >= len(self.pcm)

    def start(self) -> None:
        self.pos = 0

    def read(self) -> np.ndarray | None:
        """The next 20 ms (the last one padded with silence); None at the end."""
        if self.pos >= len(self.pcm):
            return None
        frame = self.pcm[self.pos:self.pos + FRAME]
        self.pos += FRAME
        if len(frame) < FRAME:
            frame = np.concatenate([frame, np.zeros(FRAME - len(frame), np.int16)])
        return frame

    def stop(self) -> None:
        pass


class WavSink:
    """A WAV file as the speaker: 8 kHz mono 16-bit, written frame by frame.

    :class:`~voxlab.media.wav.WavWriter` rewrites the RIFF and data sizes after every
    write, so the file is a complete WAV at every moment: a Ctrl-C, a SIGTERM, even a
    SIGKILL leaves a file any player opens. Several calls in one run go into the same
    file, one after the other."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        try:
            self.writer: WavWriter | None = WavWriter(self.path, RATE)
        except OSError as exc:
            raise ValueError(f"--audio-out {self.path}: {exc.strerror or exc}") from None

    def start(self) -> None:
        pass

    def write(self, frame: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.write(frame)

    def stop(self) -> None:
        pass

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class SilentSource:
    """No microphone: silence, forever."""

    def __init__(self) -> None:
        self._frame = np.zeros(FRAME, np.int16)

    def start(self) -> None:
        pass

    def read(self) -> np.ndarray:
        return self._frame

    def stop(self) -> None:
        pass


class NullSink:
    """No speaker: what is heard is only measured (the level meter), not played."""

    def start(self) -> None:
        pass

    def write(self, frame: np.ndarray) -> None:
        pass

    def stop(self) -> None:
        pass
