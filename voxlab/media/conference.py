"""The conference: a media unit that takes many inputs and gives each participant
the mix of everyone but itself (N-1), in one vectorised numpy step per tick.

Participants are the graph's routes: a unit routed into the conference is
heard; a unit the conference is routed to hears. Both make a BOTH
participant; only the first a SEND one (a player announcing into the room);
only the second a RECEIVE one (a listener, a recorder of the room), which
gets the whole mix. ``mute`` takes a participant's voice out of the mix,
``deaf`` gives it silence.
"""

from __future__ import annotations

import numpy as np

from voxlab.media.graph import FRAME_SAMPLES, Frame, MediaUnit
from voxlab.media.units import UnitContext, WorkerUnit

_SILENCE = np.zeros(FRAME_SAMPLES, np.int16)


def mix_minus(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an (N, samples) int16 stack: every row's N-1 mix and the full mix, saturated
    to int16 (no wrap-around), from one sum."""
    wide = frames.astype(np.int32)
    total = wide.sum(axis=0)
    minus = np.clip(total[None, :] - wide, -32768, 32767).astype(np.int16)
    return minus, np.clip(total, -32768, 32767).astype(np.int16)


class Conference(WorkerUnit):
    """Mixes its inputs; each sink gets the mix without its own voice."""

    kind = "conference"
    accepts_many = True

    def __init__(self, ctx: UnitContext, name: str) -> None:
        super().__init__(ctx, name)
        self.muted: set[str] = set()      # wire names whose voice is left out
        self.deaf: set[str] = set()       # wire names that get silence
        self._rows: dict[int, int] = {}   # id(source unit) -> its row in this tick's mix
        self._minus: np.ndarray | None = None
        self._full = _SILENCE
        self.speaking = 0

    def consume_many(self, frames: list[tuple[MediaUnit, Frame | None]]) -> None:
        # A source without a frame this tick (a lost packet, a player between
        # segments) adds nothing: no repeated or half frame, so no click.
        rows: dict[int, int] = {}
        stack = []
        for src, frame in frames:
            if frame is None or src.name in self.muted:
                continue
            rows[id(src)] = len(stack)
            stack.append(frame.pcm)
        self._rows = rows
        self.speaking = len(stack)
        if not stack:
            self._minus, self._full = None, _SILENCE
            return
        self._minus, self._full = mix_minus(np.stack(stack))

    def frame_for(self, sink: MediaUnit) -> Frame | None:
        if sink.name in self.deaf:
            return Frame(pcm=_SILENCE)
        row = self._rows.get(id(sink))
        if row is None:
            return Frame(pcm=self._full)
        return Frame(pcm=self._minus[row])

    def produce(self) -> Frame | None:
        # What the graph measures as this unit's output level: the whole room.
        return Frame(pcm=self._full)

    def op_set_endpoint(self, unit: str, mute: bool = False, deaf: bool = False) -> None:
        (self.muted.add if mute else self.muted.discard)(unit)
        (self.deaf.add if deaf else self.deaf.discard)(unit)

    def stats_row(self) -> list:
        return [len(self.sources), len(self.sinks), self.speaking]

    def describe(self) -> str:
        return f"{self.name} in={len(self.sources)} out={len(self.sinks)}"
