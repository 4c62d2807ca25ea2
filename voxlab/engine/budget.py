"""A CPU-time budget for scenario handlers and console code.

Twisted runs everything in one thread, so an accidental ``while True`` in a
handler would freeze every call. The budget arms SIGALRM (main thread only)
and turns its expiry into an exception raised inside the runaway code.
:func:`run_steps` extends it to coroutines: each step between two awaits
gets its own budget (Twisted's own driver would run those steps unguarded).
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Coroutine, Generator, Iterator, TypeVar

T = TypeVar("T")

# After the first expiry the alarm repeats this often until the body exits,
# so code that swallows one BudgetExceeded still gets interrupted again.
REPEAT = 0.05

# The signal handler runs between two bytecodes only: one long call into C code
# (``sum(range(10**9))``, a huge ``sorted``) is not stopped before it returns. When
# the interruption comes this much later than the budget, its message says so.
LATE = 0.5

_clock = time.monotonic


class BudgetExceeded(BaseException):
    """Raised inside code that ran longer than its time budget.

    A BaseException, like KeyboardInterrupt, so that scenario code's
    ``except Exception`` does not swallow it."""


_depth = 0
_shield_depth = 0
_deferred_expiry: list[tuple[float, float]] = []     # (budget, start) of an expiry held by a shield


def expiry_message(seconds: float, started: float) -> str:
    """What BudgetExceeded says: the budget, and how long the code really ran when that was much longer."""
    elapsed = _clock() - started
    if elapsed - seconds > max(LATE, 0.25 * seconds):
        return (f"code ran past its budget of {seconds:g} s and was interrupted only after "
                f"{elapsed:.1f} s: the server was blocked meanwhile (a long call into C code, "
                "such as sum(range(10**9)), cannot be stopped before it returns)")
    return f"code ran longer than its budget of {seconds:g} s and was interrupted"


def shielded(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` (framework code called by a handler, e.g. ``call.answer()``)
    without being interrupted half-way: an expiry that lands inside is raised
    when ``fn`` returns, so SIP and media state are never left torn."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        global _shield_depth
        _shield_depth += 1
        try:
            result = fn(*args, **kwargs)
        finally:
            _shield_depth -= 1
        if _shield_depth == 0 and _deferred_expiry:
            seconds, started = _deferred_expiry.pop()
            _deferred_expiry.clear()
            raise BudgetExceeded(expiry_message(seconds, started))
        return result

    return wrapper


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
    started = _clock()

    def expired(signum, frame):
        # An alarm that lands after the body returned (between its last
        # bytecode and the disarm below) is not an overrun.
        if running[0]:
            if _shield_depth:
                _deferred_expiry.append((seconds, started))
                return
            raise BudgetExceeded(expiry_message(seconds, started))

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT)
    _depth += 1
    try:
        yield
    finally:
        running[0] = False
        _deferred_expiry.clear()
        _depth -= 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_steps(coro: Coroutine[Any, Any, T], seconds: float,
              enter: Callable[[], Any] | None = None,
              leave: Callable[[Any], None] | None = None) -> Generator[Any, Any, T]:
    """Drive the coroutine ``coro`` one step at a time; give the result to ``defer.ensureDeferred``.

    A step is the code between two awaits. Each one runs under ``time_budget(seconds)``
    and between ``token = enter()`` and ``leave(token)`` (the caller's context: mark a
    session as the one running, capture printed output...). Handed to Twisted as is, a
    coroutine's steps after its first await would run with no budget and no context, so
    a ``while True`` there would freeze every call for good. Async scenario handlers and
    console cells both go through here, so they get the same guarantees."""
    value: Any = None
    error: BaseException | None = None
    while True:
        token = enter() if enter is not None else None
        try:
            with time_budget(seconds):
                if error is None:
                    step = coro.send(value)
                else:
                    step, error = coro.throw(error), None
        except StopIteration as done:
            return done.value
        finally:
            if leave is not None:
                leave(token)
        try:
            value, error = (yield step), None
        except GeneratorExit:
            # Dropped unfinished (garbage collected, or the reactor stops): close the
            # coroutine right here, not as a budgeted step at whatever moment that is.
            coro.close()
            raise
        except BaseException as exc:      # the awaited Deferred failed: into the coroutine
            value, error = None, exc
