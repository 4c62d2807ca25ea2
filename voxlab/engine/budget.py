"""A CPU-time budget for scenario handlers and console code.

Twisted runs everything in one thread, so an accidental ``while True`` in a
handler would freeze every call. The budget arms SIGALRM (main thread only)
and turns its expiry into an exception raised inside the runaway code.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

# After the first expiry the alarm repeats this often until the body exits,
# so code that swallows one BudgetExceeded still gets interrupted again.
REPEAT = 0.05


class BudgetExceeded(BaseException):
    """Raised inside code that ran longer than its time budget.

    A BaseException, like KeyboardInterrupt, so that scenario code's
    ``except Exception`` does not swallow it."""


_depth = 0


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Interrupt the body with BudgetExceeded after ``seconds`` (nested budgets share the outer one)."""
    global _depth
    if (seconds <= 0 or _depth > 0 or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return

    running = [True]

    def expired(signum, frame):
        # An alarm that lands after the body returned (between its last
        # bytecode and the disarm below) is not an overrun.
        if running[0]:
            raise BudgetExceeded(f"code ran longer than its budget of {seconds:g} s and was interrupted")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT)
    _depth += 1
    try:
        yield
    finally:
        running[0] = False
        _depth -= 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
