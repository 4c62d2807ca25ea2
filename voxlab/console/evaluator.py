"""Running console input in a session's namespace (in the reactor thread).

Input may be several lines and several statements. When the last statement
is an expression its value is shown with ``repr`` (like the interactive
interpreter, but for a whole cell like IPython). Printed output and the
traceback of an exception are captured and returned. Top-level ``await`` is
allowed: the cell then runs as a coroutine and its value arrives later, like
a Deferred's. The synchronous part runs under a time budget, so an
accidental ``while True:`` is interrupted instead of freezing every call.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import itertools
import linecache
import traceback
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from voxlab.engine import current
from voxlab.engine.budget import BudgetExceeded, time_budget

_VALUE = "__console_value__"
_cells = itertools.count(1)
MAX_REPR = 20000
MAX_OUTPUT = 1_000_000


@dataclass
class Outcome:
    """What one evaluation produced."""

    output: str = ""                 # everything printed (stdout and stderr)
    value: Any = None                # the last expression's value (None when there is none)
    has_value: bool = False
    error: str | None = None         # formatted traceback
    deferred: defer.Deferred | None = None   # set when the value is a Deferred / the cell awaits
    interrupted: bool = False        # the time budget expired


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


def _format_exception(exc: BaseException, skip_frames: int = 1) -> str:
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    if isinstance(exc, BudgetExceeded):
        # the last frame is the budget's signal handler: not the user's business
        summary = traceback.extract_tb(tb)
        summary = [f for f in summary if not f.filename.endswith(("budget.py", "contextlib.py"))]
        return ("Traceback (most recent call last):\n" + "".join(traceback.format_list(summary))
                + f"BudgetExceeded: {exc}\n")
    return "".join(traceback.format_exception(type(exc), exc, tb))


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

    buffer = io.StringIO()
    token = current.enter(session) if session is not None else None
    namespace.pop(_VALUE, None)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                with time_budget(budget):
                    result = eval(code, namespace)
                    if inspect.iscoroutine(result):
                        # a cell with top-level await: runs until its first await here, the rest later
                        outcome.deferred = defer.ensureDeferred(result)
                        outcome.deferred.addCallback(lambda _: namespace.pop(_VALUE, None))
                        has_value = True
                    elif has_value:
                        value = namespace.pop(_VALUE, None)
                        if inspect.iscoroutine(value):
                            value = defer.ensureDeferred(value)
                        if isinstance(value, defer.Deferred):
                            outcome.deferred = value
                        outcome.value = value
                        outcome.has_value = value is not None
            except BudgetExceeded as exc:
                outcome.interrupted = True
                outcome.error = _format_exception(exc)
            except SystemExit as exc:
                outcome.error = (f"SystemExit({exc.code!r}) ignored: the console does not stop the "
                                 "server. Press Ctrl-D to detach (the session keeps running).\n")
            except Exception as exc:
                outcome.error = _format_exception(exc)
    finally:
        if token is not None:
            current.leave(token)
    output = buffer.getvalue()
    if len(output) > MAX_OUTPUT:
        output = (output[:MAX_OUTPUT] + f"\n... output cut: {len(output) - MAX_OUTPUT} more characters "
                  "(write big results to a file)\n")
    outcome.output = output
    return outcome
