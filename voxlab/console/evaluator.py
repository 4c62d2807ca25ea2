"""Running console input in a session's namespace (in the reactor thread).

Input may be several lines and several statements. When the last statement
is an expression its value is shown with ``repr`` (like the interactive
interpreter, but for a whole cell like IPython). Printed output and the
traceback of an exception are captured and returned. Top-level ``await`` is
allowed: the cell then runs as a coroutine and its value arrives later, like
a Deferred's. Every synchronous stretch of a cell -- before its first await
and between any two awaits -- runs under the time budget, as the attached
session's code, with its printed output captured (``Outcome.later`` carries
what is printed after the reply has gone), so an accidental ``while True:``
is interrupted wherever it is instead of freezing every call.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import itertools
import linecache
import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from voxlab.engine import budget as _budget
from voxlab.engine import current
from voxlab.engine import scenarios as _scenarios
from voxlab.engine.budget import BudgetExceeded, run_steps, time_budget
from voxlab.engine.tracebacks import format_traceback

_VALUE = "__console_value__"
_cells = itertools.count(1)
MAX_REPR = 20000
MAX_OUTPUT = 1_000_000


class CellOutput(io.TextIOBase):
    """Where one cell's printed text goes: kept until someone listens, then handed over.

    While ``evaluate`` runs, the text is kept (it becomes ``Outcome.output``); the
    console then calls ``listen`` so that what the cell prints after an await reaches
    the client too (one ``output`` event per step), not the server's log."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._listener: Callable[[str], None] | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            if self._listener is not None:
                self._listener(text)
            else:
                self._pending.append(text)
        return len(text)

    def take(self) -> str:
        """The text kept so far (and forget it)."""
        text, self._pending = "".join(self._pending), []
        return _cut(text)

    def listen(self, listener: Callable[[str], None]) -> None:
        """From now on hand each write to ``listener`` (after the text kept so far, if any)."""
        self._listener = listener
        pending = self.take()
        if pending:
            listener(pending)


@dataclass
class Outcome:
    """What one evaluation produced."""

    output: str = ""                 # everything printed (stdout and stderr) before the reply
    value: Any = None                # the last expression's value (None when there is none)
    has_value: bool = False
    error: str | None = None         # formatted traceback
    deferred: defer.Deferred | None = None   # set when the value is a Deferred / the cell awaits
    # The deferred is the console's own (it drives the cell's coroutine): nobody else
    # can add callbacks to it, so once its failure is reported it may be consumed.
    owned: bool = False
    later: CellOutput | None = None  # with an owned deferred: what its later steps print
    interrupted: bool = False        # the time budget expired
    exit: dict | None = None         # the cell called exit()/sys.exit(): see exit_info


def safe_repr(value: Any, limit: int = MAX_REPR) -> str:
    """``repr(value)`` that never raises and is cut at ``limit`` characters."""
    try:
        text = repr(value)
    except Exception as exc:     # a broken __repr__ must not break the console
        text = f"<repr of {type(value).__name__} failed: {exc!r}>"
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    return text


def _compile_cell(source: str, filename: str):
    """Compile a cell; the last expression statement is assigned to ``__console_value__``."""
    tree = ast.parse(source, filename, "exec")
    has_value = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    if has_value:
        last = tree.body[-1]
        assign = ast.Assign(targets=[ast.Name(id=_VALUE, ctx=ast.Store())], value=last.value)
        ast.copy_location(assign, last)
        tree.body[-1] = assign
        ast.fix_missing_locations(tree)
    code = compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    return code, has_value


def _cut(output: str) -> str:
    if len(output) > MAX_OUTPUT:
        output = (output[:MAX_OUTPUT] + f"\n... output cut: {len(output) - MAX_OUTPUT} more characters "
                  "(write big results to a file)\n")
    return output


# Frames of the machinery between the prompt and the user's code (this module, the console
# helpers, reload(), the budget and its signal handler, Twisted's coroutine driver, the
# scenario compiler) say nothing about the user's error: tracebacks leave them out.
_CONSOLE_DIR = os.path.dirname(os.path.abspath(__file__))
_HIDDEN_FILES = {os.path.abspath(f) for f in (_budget.__file__, contextlib.__file__, defer.__file__)}
_HIDDEN_FUNCTIONS = {(os.path.abspath(_scenarios.__file__), "get")}    # ScenarioCatalog.get


def _hidden(frame: traceback.FrameSummary) -> bool:
    path = os.path.abspath(frame.filename) if frame.filename and not frame.filename.startswith("<") else ""
    return (os.path.dirname(path) == _CONSOLE_DIR or path in _HIDDEN_FILES
            or (path, frame.name) in _HIDDEN_FUNCTIONS)


def format_error(exc: BaseException, tb: Any = None) -> str:
    """The traceback of ``exc`` (from ``tb``, default its own) without the console's frames."""
    if isinstance(exc, SystemExit):
        return (f"SystemExit({exc.code!r}) ignored: the console does not stop the "
                "server. Press Ctrl-D to detach (the session keeps running).\n")
    return format_traceback(exc, tb, _hidden)


def exit_info(exc: SystemExit) -> dict:
    """What ``exit(code)`` in a cell asked for, for a client that runs a script (not obeyed here):
    ``status`` as Python's own exit would give it (None: 0, an int, anything else: 1, its text
    printed) and ``code``, the repr of what was passed."""
    code = exc.code
    if code is None:
        status, message = 0, None
    elif isinstance(code, int):
        status, message = int(code), None
    else:
        status, message = 1, safe_repr(code, 2000) if not isinstance(code, str) else code
    return {"status": status, "code": safe_repr(code, 2000), "message": message}


def describe_failure(failure: Any) -> tuple[str, bool]:
    """(traceback text, interrupted by the budget) of a Twisted Failure from console code."""
    return (format_error(failure.value, failure.getTracebackObject()),
            isinstance(failure.value, BudgetExceeded))


def evaluate(source: str, namespace: dict[str, Any], session: Any = None,
             budget: float = 2.0) -> Outcome:
    """Run ``source`` in ``namespace``; never raises (SystemExit included: ``exit()`` must not stop the server)."""
    outcome = Outcome()
    filename = f"<console#{next(_cells)}>"
    # Tracebacks and inspect.getsource() of functions defined at the console show their lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code, has_value = _compile_cell(source, filename)
    except SyntaxError as exc:
        outcome.error = "".join(traceback.format_exception_only(type(exc), exc))
        return outcome
    except (ValueError, OverflowError, RecursionError) as exc:   # e.g. null bytes, deep nesting
        outcome.error = f"{type(exc).__name__}: {exc}\n"
        return outcome

    sink = CellOutput()

    def enter_step() -> contextlib.ExitStack:
        # One step of a coroutine: this session's code, its output captured and handed to
        # the sink at the end of the step (kept for the reply, or pushed to the client).
        stack = contextlib.ExitStack()
        buffer = io.StringIO()
        stack.callback(lambda: sink.write(_cut(buffer.getvalue())))     # runs last
        if session is not None:
            stack.callback(current.leave, current.enter(session))
        stack.enter_context(contextlib.redirect_stdout(buffer))
        stack.enter_context(contextlib.redirect_stderr(buffer))
        return stack

    def drive(coro: Any) -> defer.Deferred:
        outcome.owned = True
        return defer.ensureDeferred(run_steps(coro, budget, enter_step, contextlib.ExitStack.close))

    token = current.enter(session) if session is not None else None
    namespace.pop(_VALUE, None)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            try:
                with time_budget(budget):
                    result = eval(code, namespace)
                    # (a cell with top-level await is a coroutine that has not started yet)
                    value = namespace.pop(_VALUE, None) if has_value and not inspect.iscoroutine(result) else None
            except BudgetExceeded as exc:
                outcome.interrupted = True
                outcome.error = format_error(exc)
            except SystemExit as exc:          # exit() at the prompt: reported, not obeyed
                outcome.error = format_error(exc)
                outcome.exit = exit_info(exc)
            except Exception as exc:
                outcome.error = format_error(exc)
            else:
                # Coroutines run outside the cell's budget: each of their steps gets its own.
                if inspect.iscoroutine(result):
                    outcome.deferred = drive(result)
                    outcome.deferred.addCallback(lambda _: namespace.pop(_VALUE, None))
                    outcome.has_value = True
                elif has_value:
                    if inspect.iscoroutine(value):
                        value = drive(value)
                    if isinstance(value, defer.Deferred):
                        outcome.deferred = value
                    outcome.value = value
                    outcome.has_value = value is not None
                if outcome.owned:
                    _settle(outcome)
    finally:
        if token is not None:
            current.leave(token)
    outcome.output = sink.take()
    if outcome.owned and outcome.deferred is not None:
        outcome.later = sink
    return outcome


def _settle(outcome: Outcome) -> None:
    """A console coroutine that already finished (all it awaited was ready) is shown like a
    plain cell: its value or its error (interrupted by the budget before any await, say)."""
    d = outcome.deferred
    if d is None or not d.called:
        return
    done: list[Any] = []
    d.addBoth(done.append)
    result = done[0]
    outcome.deferred = None
    outcome.owned = False
    if isinstance(result, Failure):
        outcome.error, outcome.interrupted = describe_failure(result)
        outcome.value, outcome.has_value = None, False
        if isinstance(result.value, SystemExit):
            outcome.exit = exit_info(result.value)
    else:
        outcome.value, outcome.has_value = result, result is not None
