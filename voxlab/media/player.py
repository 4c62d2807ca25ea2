"""Players: media units that play segments of audio (a file, a URL, speech, a tone
script) in order, one 20 ms frame per tick.

Each segment is a :class:`Source` whose audio arrives in its own time: a
file is decoded in a thread, a URL is fetched, speech is synthesised, a tone
script is generated. All of them start at once when the player is made, so
the next segment is ready when the one before it ends; a segment whose audio
has not arrived yet is silence (the player is "buffering"), never a stall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from voxlab.media.graph import FRAME_SAMPLES, SAMPLE_RATE, Frame
from voxlab.media.units import UnitContext, UnitError, WorkerUnit, make_by_name
from voxlab.media.wav import read_wav


class Source:
    """The audio of one segment as it arrives: ``feed`` appends, ``finish`` or ``fail`` ends it.

    Subclasses start their work in :meth:`start` (called once, when the player
    is made) and must never block the reactor."""

    def __init__(self, ctx: UnitContext) -> None:
        self.ctx = ctx
        self.pcm = np.zeros(0, np.int16)
        self.complete = False
        self.error: str | None = None
        self.on_change: Callable[[], None] | None = None

    def start(self) -> None:
        pass

    def feed(self, pcm: np.ndarray) -> None:
        self.pcm = np.concatenate([self.pcm, np.asarray(pcm, np.int16)]) if len(self.pcm) else \
            np.asarray(pcm, np.int16)
        self._changed()

    def finish(self) -> None:
        self.complete = True
        self._changed()

    def fail(self, error: str) -> None:
        self.error = error
        self.complete = True
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def stop(self) -> None:
        """The player is gone: stop fetching / synthesising."""

    def describe(self) -> str:
        return type(self).__name__


class PcmSource(Source):
    """Audio already in memory (tests, and sources made from other sources)."""

    def __init__(self, ctx: UnitContext, pcm: np.ndarray) -> None:
        super().__init__(ctx)
        self._initial = np.asarray(pcm, np.int16)

    def start(self) -> None:
        self.feed(self._initial)
        self.finish()


class FileSource(Source):
    """A WAV file (any PCM / G.711 rate and channel count, mixed down and resampled), decoded
    in a thread once per file version and kept in the worker's cache."""

    def __init__(self, ctx: UnitContext, path: str) -> None:
        super().__init__(ctx)
        self.path = Path(path)

    def start(self) -> None:
        try:
            key = ("file", str(self.path), self.path.stat().st_mtime_ns)
        except OSError as exc:
            self.fail(f"cannot play {self.path}: {exc.strerror or exc}")
            return
        cached = self.ctx.cache.get(key)
        if cached is not None:
            self.feed(cached)
            self.finish()
            return
        d = self.ctx.in_thread(read_wav, self.path, SAMPLE_RATE)

        def done(pcm: np.ndarray) -> None:
            self.ctx.cache[key] = pcm
            self.feed(pcm)
            self.finish()

        d.addCallbacks(done, lambda f: self.fail(f"cannot play {self.path}: {f.getErrorMessage()}"))

    def describe(self) -> str:
        return self.path.name


#: segment type -> "module:Class" of its Source (imported when first used)
SOURCES: dict[str, str] = {
    "file": "voxlab.media.player:FileSource",
    "url": "voxlab.media.fetch:UrlSource",
    "tts": "voxlab.media.tts:TtsSource",
    "tone": "voxlab.media.tonescript:ToneSource",
}


def make_source(ctx: UnitContext, segment: dict) -> Source:
    spec = dict(segment)
    return make_by_name(SOURCES, spec.pop("type", None), "player segment type", ctx, **spec)


class Player(WorkerUnit):
    """Plays its segments in order (looping, if asked), with pause, resume, stop and markers.

    Events: ``Started`` (its first frame is out), ``PlaybackMarkerReached``
    (``offset`` ms of audio played), ``PlaybackFinished`` (its last frame is
    out; never while looping), ``Stopped`` (``stop()``), ``Error`` (a segment
    could not be had: the player goes on with the next one, and finishes
    after the last)."""

    kind = "player"

    def __init__(self, ctx: UnitContext, name: str, segments: list[dict] | None = None,
                 loop: bool = False, progress: bool = True, sources: list[Source] | None = None) -> None:
        super().__init__(ctx, name)
        self.sources = sources if sources is not None else [make_source(ctx, s) for s in segments or ()]
        if not self.sources:
            raise UnitError("a player needs at least one segment")
        self.loop = loop
        # progress=False: a segment starts only once all of its audio is there
        # (VoxEngine's progressivePlayback off), so a slow download is no stutter.
        self.progress = progress
        self.index = 0          # the segment playing
        self.offset = 0         # samples played of that segment
        self.played = 0         # samples played in all (markers count these)
        self.paused = False
        self.started = False
        self.finished = False
        self.markers: list[int] = []
        self.on_finished: Callable[["Player"], None] | None = None
        self._reported: set[int] = set()
        for source in self.sources:
            source.on_change = lambda s=source: self._source_changed(s)
            source.start()

    def _source_changed(self, source: Source) -> None:
        if source.error is not None and id(source) not in self._reported:
            self._reported.add(id(source))
            self.emit("Error", error=source.error)

    # -- the tick
    def produce(self) -> Frame | None:
        if self.finished or self.paused:
            return None
        chunk = self._take(FRAME_SAMPLES)
        if chunk is None:
            return None
        if not self.started:
            self.started = True
            self.emit("Started", duration=self.duration)
        self.played += FRAME_SAMPLES
        while self.markers and self.markers[0] <= self.played * 1000 // SAMPLE_RATE:
            self.emit("PlaybackMarkerReached", offset=self.markers.pop(0))
        return Frame(pcm=chunk)

    def _take(self, n: int) -> np.ndarray | None:
        """The next ``n`` samples (segments joined), or None while waiting for audio."""
        parts: list[np.ndarray] = []
        need = n
        while need:
            if self.index >= len(self.sources):
                if self.loop and any(len(s.pcm) for s in self.sources):
                    self.index = self.offset = 0
                    continue
                self._finish()
                break
            source = self.sources[self.index]
            ready = source.complete or self.progress
            available = len(source.pcm) - self.offset if ready else 0
            if available <= 0:
                if source.complete:
                    # Done (or failed: reported when it failed): on with the next segment.
                    self.index += 1
                    self.offset = 0
                    continue
                # Still arriving: silence for what is missing (never when nothing came yet).
                if not parts:
                    return None
                break
            take = min(need, available)
            parts.append(source.pcm[self.offset:self.offset + take])
            self.offset += take
            need -= take
        if not parts:
            return None
        # The last frame: finished now, not a tick later.
        while (self.index < len(self.sources) and self.sources[self.index].complete
               and self.offset >= len(self.sources[self.index].pcm)):
            self.index += 1
            self.offset = 0
        if self.index >= len(self.sources) and not self.loop:
            self._finish()
        chunk = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.int16)])
        return chunk

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.graph is not None:
            # After the tick, so the last frame is out first and handlers may reroute.
            self.graph.after_tick.append(self._finished_event)
        else:
            self._finished_event()

    def _finished_event(self) -> None:
        self.emit("PlaybackFinished")
        if self.on_finished is not None:
            self.on_finished(self)

    @property
    def duration(self) -> float | None:
        """Seconds of audio in all, once every segment is complete (None before)."""
        if not all(s.complete for s in self.sources):
            return None
        return sum(len(s.pcm) for s in self.sources) / SAMPLE_RATE

    @property
    def position(self) -> float:
        return self.played / SAMPLE_RATE

    # -- operations
    def op_pause(self) -> None:
        self.paused = True

    def op_resume(self) -> None:
        self.paused = False

    def op_stop(self) -> None:
        if not self.finished:
            self.finished = True
            self.emit("Stopped")

    def op_add_marker(self, offset: int) -> None:
        self.markers.append(int(offset))
        self.markers.sort()

    def close(self) -> None:
        for source in self.sources:
            source.stop()

    def stats_row(self) -> list:
        d = self.duration
        return [round(self.position, 2), None if d is None else round(d, 2), self.paused, self.finished]

    def describe(self) -> str:
        d = self.duration
        return f"{self.name} {self.position:.1f}/{'?' if d is None else f'{d:.1f}'}s"

    @classmethod
    def of_pcm(cls, ctx: UnitContext, pcm: np.ndarray, name: str | None = None, loop: bool = False) -> "Player":
        """A player of audio in memory (tests, benchmarks)."""
        return cls(ctx, name or "player", loop=loop, sources=[PcmSource(ctx, pcm)])


def null_context(reactor: Any = None) -> UnitContext:
    """A context for units outside a worker (tests of one unit): events go nowhere."""
    return UnitContext(reactor, lambda name, event, data: None)
