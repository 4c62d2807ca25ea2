"""Which session's code is running right now (for ``from voxlab.scenario import VoxEngine``)."""

from __future__ import annotations

from typing import Any

_stack: list[Any] = []


def enter(session: Any) -> int:
    _stack.append(session)
    return len(_stack)


def leave(token: int) -> None:
    del _stack[token - 1:]


def session() -> Any:
    if not _stack:
        raise RuntimeError("no voxlab session is running this code (scenario names only work "
                           "inside a scenario, its handlers, or an attached console)")
    return _stack[-1]
