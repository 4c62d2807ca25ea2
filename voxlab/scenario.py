"""Names a scenario sees, importable for editors and type checkers.

A scenario normally uses the names its session puts in its namespace. Writing
``from voxlab.scenario import VoxEngine, AppEvents, CallEvents, Logger`` works
too: ``VoxEngine`` and ``Logger`` here stand for those of the session whose
code is running.
"""

from __future__ import annotations

from typing import Any

from voxlab.engine import current
from voxlab.engine.call import Call, CallState
from voxlab.engine.events import (
    AppEvents, ASREvents, CallEvents, ConferenceEvents, Event, PlayerEvents, RecorderEvents,
    WebSocketEvents,
)

__all__ = ["VoxEngine", "Logger", "AppEvents", "CallEvents", "CallState", "Call", "Event",
           "PlayerEvents", "RecorderEvents", "ConferenceEvents", "ASREvents", "WebSocketEvents"]


class _SessionAttribute:
    """Forwards attribute access to an object of the session that is running code now."""

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(current.session(), self._attribute), name)

    def __repr__(self) -> str:
        return f"<{self._attribute} of the running session>"


VoxEngine: Any = _SessionAttribute("voxengine")
Logger: Any = _SessionAttribute("logger")
