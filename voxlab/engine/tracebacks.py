"""Tracebacks as a scenario's author needs them: their own frames and the error,
without the machinery that called them (voxlab, Twisted, contextlib)."""

from __future__ import annotations

import contextlib
import os
import traceback
from typing import Any, Callable

import twisted

import voxlab

_FRAMEWORK_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (voxlab, twisted))
_FRAMEWORK_FILES = {os.path.abspath(contextlib.__file__)}

FrameFilter = Callable[[traceback.FrameSummary], bool]


def framework_frame(frame: traceback.FrameSummary) -> bool:
    """True for a frame of voxlab itself, Twisted or contextlib (not the user's code)."""
    name = frame.filename or ""
    if name.startswith("<"):
        return False
    path = os.path.abspath(name)
    return path.startswith(_FRAMEWORK_DIRS) or path in _FRAMEWORK_FILES


def _prune(te: traceback.TracebackException, hidden: FrameFilter, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not hidden(f)])
    for linked in (te.__cause__, te.__context__):
        if linked is not None:
            _prune(linked, hidden, seen)


def format_traceback(exc: BaseException, tb: Any = None, hidden: FrameFilter = framework_frame) -> str:
    """The traceback of ``exc`` (from ``tb``, default its own) without the frames ``hidden`` picks."""
    te = traceback.TracebackException(type(exc), exc, tb if tb is not None else exc.__traceback__)
    _prune(te, hidden, set())
    return "".join(te.format())


def format_full(exc: BaseException, tb: Any = None) -> str:
    return "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))
