"""A player: a media unit that plays PCM (a WAV file's audio) one frame per tick."""

from __future__ import annotations

from typing import Callable

import numpy as np

from voxlab.media.graph import FRAME_SAMPLES, Frame, MediaUnit


class Player(MediaUnit):
    """Plays an int16 PCM buffer once (or looping); calls ``on_finished`` after its last frame."""

    kind = "player"

    def __init__(self, pcm: np.ndarray, name: str | None = None, loop: bool = False) -> None:
        super().__init__(name)
        self.pcm = np.asarray(pcm, dtype=np.int16)
        self.position = 0
        self.loop = loop
        self.finished = False
        self.on_finished: Callable[["Player"], None] | None = None

    @property
    def duration(self) -> float:
        return len(self.pcm) / 8000.0

    def produce(self) -> Frame | None:
        if self.finished:
            return None
        start = self.position
        chunk = self.pcm[start:start + FRAME_SAMPLES]
        self.position = start + FRAME_SAMPLES
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
        if self.position >= len(self.pcm):
            if self.loop and len(self.pcm):
                self.position = 0
            else:
                self.finished = True
                if self.graph is not None:
                    self.graph.after_tick.append(self._finish)
        return Frame(pcm=chunk)

    def _finish(self) -> None:
        if self.on_finished is not None:
            self.on_finished(self)

    def describe(self) -> str:
        return f"{self.name} {self.position / 8000.0:.1f}/{self.duration:.1f}s"
