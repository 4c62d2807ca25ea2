"""The routing graph of media units and the per-tick step that moves audio along it.

Every media unit has at most ONE input (a new route into it replaces the old
one) and any number of outputs; a mixer-type unit (``accepts_many``) is the
exception and receives many. Once per media tick (20 ms) the graph asks each
unit for the frame it produces, then gives each unit the frame of its input.
Frames carry the encoded payload when they came off the wire, so a call whose
only input is another call with the same codec relays the payload without
decoding (the fast path); PCM is decoded lazily for whoever needs it.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable

import numpy as np

from voxlab.media.g711 import codec_for

FRAME_SAMPLES = 160
SAMPLE_RATE = 8000
# Levels are sampled on one tick in this many (every 100 ms): enough for a
# meter, and a fifth of the cost of measuring every frame of every unit.
LEVEL_TICKS = 5
NO_LEVEL = -100.0     # dBFS shown for silence or no audio at all


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level of a frame in dBFS, rounded to 0.1 dB (NO_LEVEL for silence)."""
    power = float(np.dot(pcm.astype(np.float32), pcm.astype(np.float32))) / max(1, len(pcm))
    if power < 1.0:
        return NO_LEVEL
    return max(NO_LEVEL, round(10.0 * np.log10(power / (32768.0 * 32768.0)), 1))


class Frame:
    """One 20 ms frame: an encoded payload with its codec name, and/or 16-bit PCM."""

    __slots__ = ("payload", "codec", "_pcm")

    def __init__(self, payload: bytes | None = None, codec: str | None = None,
                 pcm: np.ndarray | None = None) -> None:
        self.payload = payload
        self.codec = codec
        self._pcm = pcm

    @property
    def pcm(self) -> np.ndarray:
        if self._pcm is None:
            self._pcm = codec_for(self.codec).decode(self.payload)
        return self._pcm


RouteListener = Callable[[str, "MediaUnit", "MediaUnit"], None]

_ids = itertools.count(1)


class MediaUnit:
    """Anything with an audio stream: a call's RTP endpoint, a player, a recorder, a mixer.

    Subclasses override :meth:`produce` (their output for this tick) and/or
    :meth:`consume` (what to do with the input frame for this tick).
    """

    kind = "unit"
    accepts_many = False
    relaying = False    # an RTP endpoint whose audio goes out on arrival keeps its own level_out

    def __init__(self, name: str | None = None) -> None:
        self.id = f"{self.kind}-{next(_ids)}"
        self.name = name or self.id
        self.source: MediaUnit | None = None
        self.sources: list[MediaUnit] = []   # only for accepts_many units
        self.sinks: list[MediaUnit] = []
        self.out: Frame | None = None
        self.graph: MediaGraph | None = None
        self.closed = False
        self.level_in = NO_LEVEL     # dBFS of what it received / produced, sampled every LEVEL_TICKS
        self.level_out = NO_LEVEL

    def produce(self) -> Frame | None:
        return None

    def consume(self, frame: Frame | None) -> None:
        pass

    def consume_many(self, frames: list[tuple["MediaUnit", Frame | None]]) -> None:
        pass

    def frame_for(self, sink: "MediaUnit") -> Frame | None:
        """What this unit sends to ``sink`` this tick (a mixer excludes the sink's own voice)."""
        return self.out

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class MediaGraph:
    """All media units of the process and the routes between them; ticked by the media clock."""

    def __init__(self) -> None:
        self.units: dict[str, MediaUnit] = {}
        self.listeners: list[RouteListener] = []
        self.after_tick: list[Callable[[], None]] = []
        self.ticks = 0

    def add(self, unit: MediaUnit) -> MediaUnit:
        unit.graph = self
        self.units[unit.id] = unit
        return unit

    def remove(self, unit: MediaUnit) -> None:
        """Take a unit out with every route into and out of it."""
        if unit.source is not None:
            self.unroute(unit.source, unit)
        for src in list(unit.sources):
            self.unroute(src, unit)
        for sink in list(unit.sinks):
            self.unroute(unit, sink)
        unit.closed = True
        self.units.pop(unit.id, None)

    def route(self, src: MediaUnit, dst: MediaUnit) -> None:
        """``src.send_media_to(dst)``: dst's single input becomes src (a mixer adds it)."""
        if src.closed or dst.closed:
            raise ValueError(f"cannot route {src!r} -> {dst!r}: unit is closed")
        if dst.accepts_many:
            if src not in dst.sources:
                dst.sources.append(src)
                src.sinks.append(dst)
                self._notify("route", src, dst)
            return
        if dst.source is src:
            return
        if dst.source is not None:
            self.unroute(dst.source, dst)
        dst.source = src
        src.sinks.append(dst)
        self._notify("route", src, dst)

    def unroute(self, src: MediaUnit, dst: MediaUnit) -> None:
        """``src.stop_media_to(dst)``; nothing happens when that route does not exist."""
        if dst.accepts_many:
            if src not in dst.sources:
                return
            dst.sources.remove(src)
        else:
            if dst.source is not src:
                return
            dst.source = None
        if dst in src.sinks:
            src.sinks.remove(dst)
        self._notify("unroute", src, dst)

    def routes(self) -> list[tuple[MediaUnit, MediaUnit]]:
        return [(src, dst) for src in self.units.values() for dst in src.sinks]

    def _notify(self, kind: str, src: MediaUnit, dst: MediaUnit) -> None:
        for listener in self.listeners:
            listener(kind, src, dst)

    @staticmethod
    def _measure(units: Iterable[MediaUnit]) -> None:
        for unit in units:
            out = unit.out
            if out is not None:
                unit.level_out = level_dbfs(out.pcm)
            elif not unit.relaying:
                unit.level_out = NO_LEVEL
            if unit.accepts_many:
                levels = [s.level_out for s in unit.sources]
                unit.level_in = max(levels) if levels else NO_LEVEL
            else:
                unit.level_in = unit.source.level_out if unit.source is not None else NO_LEVEL

    def tick(self) -> None:
        """Move one 20 ms frame along every route."""
        self.ticks += 1
        units: Iterable[MediaUnit] = tuple(self.units.values())
        for unit in units:
            unit.out = unit.produce()
        for unit in units:
            if unit.accepts_many:
                unit.consume_many([(src, src.frame_for(unit)) for src in unit.sources])
            else:
                src = unit.source
                unit.consume(src.frame_for(unit) if src is not None else None)
        if self.ticks % LEVEL_TICKS == 0:
            self._measure(units)
        if self.after_tick:
            # Events (playback finished, ...) run after the tick so handlers
            # may change routes without disturbing the loop above.
            pending, self.after_tick = self.after_tick, []
            for fn in pending:
                fn()
