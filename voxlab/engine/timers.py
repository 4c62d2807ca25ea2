"""Scenario timers: ``set_timeout``, ``set_interval``, ``clear_timeout`` on the reactor.

Each session has one :class:`SessionTimers`; its callbacks run like event handlers (as the
session's code, under the handler budget), it holds at most ``limit`` pending timers
(VoxEngine's 100), and everything still pending is cancelled when the session ends.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from voxlab.engine.limits import LimitExceeded


class SessionTimers:
    """The pending timers of one session, by id."""

    def __init__(self, reactor: Any, run: Callable[[Callable[[], Any], str], Any], limit: int) -> None:
        self._reactor = reactor
        self._run = run                 # runs a callback as the session's code
        self.limit = limit
        self._pending: dict[int, Any] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._pending)

    def set_timeout(self, fn: Callable[..., Any], ms: float, *args: Any) -> int:
        """Call ``fn(*args)`` once, ``ms`` milliseconds from now; returns the timer's id."""
        return self._start(fn, ms, args, repeat=False)

    def set_interval(self, fn: Callable[..., Any], ms: float, *args: Any) -> int:
        """Call ``fn(*args)`` every ``ms`` milliseconds until ``clear_interval(id)``."""
        return self._start(fn, ms, args, repeat=True)

    def clear(self, timer_id: Any) -> None:
        """``clear_timeout`` / ``clear_interval``: an unknown or fired id is ignored (as in JS)."""
        call = self._pending.pop(timer_id, None) if isinstance(timer_id, int) else None
        if call is not None and call.active():
            call.cancel()

    def cancel_all(self) -> None:
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()

    def _start(self, fn: Callable[..., Any], ms: float, args: tuple, repeat: bool) -> int:
        if not callable(fn):
            raise TypeError(f"a timer needs a function, got {fn!r}")
        try:
            delay = max(0.0, float(ms)) / 1000.0
        except (TypeError, ValueError):
            raise TypeError(f"a timer's delay is milliseconds, got {ms!r}") from None
        if repeat and delay < 0.01:
            raise ValueError("an interval must be at least 10 ms")
        if len(self._pending) >= self.limit:
            raise LimitExceeded(f"at most {self.limit} timers may be pending in one session")
        timer_id = next(self._ids)
        name = getattr(fn, "__qualname__", None) or repr(fn)

        def fire() -> None:
            if repeat:
                self._pending[timer_id] = self._reactor.callLater(delay, fire)
            else:
                self._pending.pop(timer_id, None)
            self._run(lambda: fn(*args), f"timer {name}")

        self._pending[timer_id] = self._reactor.callLater(delay, fire)
        return timer_id
