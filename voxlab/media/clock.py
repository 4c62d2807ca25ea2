"""The process's single media clock: one 20 ms tick drives every media unit."""

from __future__ import annotations

from typing import Callable

from twisted.internet import task
from twisted.logger import Logger

log = Logger()

TICK = 0.020
# After a stall (GC, a slow handler) catch up at most this many ticks at once;
# beyond that, audio is dropped rather than played in a burst.
MAX_CATCH_UP = 5


class MediaClock:
    """Calls ``tick()`` every 20 ms on the given reactor-like clock (task.Clock in tests)."""

    def __init__(self, tick: Callable[[], None], clock=None, interval: float = TICK) -> None:
        self._tick = tick
        self.interval = interval
        self.loop = task.LoopingCall.withCount(self._run)
        if clock is not None:
            self.loop.clock = clock
        self.late_ticks = 0
        self.dropped_ticks = 0

    def start(self) -> None:
        if not self.loop.running:
            self.loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def _run(self, count: int) -> None:
        if count > 1:
            self.late_ticks += count - 1
        if count > MAX_CATCH_UP:
            self.dropped_ticks += count - MAX_CATCH_UP
            count = MAX_CATCH_UP
        for _ in range(count):
            try:
                self._tick()
            except Exception:
                log.failure("media tick failed")
