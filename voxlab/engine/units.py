"""What every media unit facade shares: ``send_media_to`` and ``stop_media_to``,
events from its worker unit turned into session events, and the console view.

A facade (Player, Recorder, Conference, ASR, WebSocket; Call is one too, for
its RTP endpoint) holds ``media``, the engine's stand-in for the unit in a
media worker. Its methods send an operation and return at once; what the unit
does comes back as events, posted to the session's queue in the order the
worker saw them.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from voxlab.engine.budget import shielded
from voxlab.engine.events import Event, EventTarget
from voxlab.media.graph import MediaUnit

if TYPE_CHECKING:
    from voxlab.engine.mediaplane import RemoteKindUnit
    from voxlab.engine.session import Session

_ids = itertools.count(1)


def media_unit_of(target: Any) -> MediaUnit:
    """The media unit behind a facade (Call, Player, ...) or a raw unit."""
    if isinstance(target, MediaUnit):
        return target
    unit = getattr(target, "media", None)
    if isinstance(unit, MediaUnit):
        return unit
    if hasattr(target, "answer") and hasattr(target, "media"):
        raise ValueError(f"{target!r} has no media yet: answer it first")
    raise TypeError(f"not a media unit: {target!r}")


def ended_party(*parties: Any) -> Any:
    """The first of ``parties`` that can no longer take part in media (an ended call, a
    stopped unit), or None."""
    for party in parties:
        if getattr(party, "ended", False):
            return party
    return None


def send_media(session: "Session", source: Any, target: Any, options: dict | None = None) -> None:
    """``source.send_media_to(target)``: target's one input becomes source (a conference,
    which mixes, adds it). A call that was playing a prompt stops it: it is no longer heard."""
    src, dst = media_unit_of(source), media_unit_of(target)
    session.engine.graph.route(src, dst)
    configure = getattr(target, "_input_options", None)
    if configure is not None:
        configure(source, options or {})
    elif options:
        raise TypeError(f"{target!r} takes no media options ({', '.join(options)})")
    for call in session.calls:
        if call.media is dst and call.player is not None and call.player.media is not src:
            call._playback_displaced()


def stop_media(session: "Session", source: Any, target: Any) -> None:
    """``source.stop_media_to(target)``: nothing happens when that route does not exist."""
    session.engine.graph.unroute(media_unit_of(source), media_unit_of(target))


class MediaFacade(EventTarget):
    """Base of the scenario's media unit objects: routes, events, and the view in ``show()``."""

    kind = "unit"

    def __init__(self, session: "Session", name: str | None, spec: dict) -> None:
        super().__init__()
        session.check_running(f"create a {self.kind}")
        self.session = session
        self.name = name or f"{session.id}-{self.kind}{next(_ids)}"
        self.media: RemoteKindUnit = session.engine.media.open_unit(
            session.media_worker(), self.name, self.kind, spec)
        self.media.on_event = self._worker_event
        self.media.describe_row = lambda unit: self.describe()
        self.media.on_failure = self._media_failed
        self.error: str | None = None
        session.units[self.name] = self

    # -- what the console shows (as for raw media units)
    @property
    def id(self) -> str:
        return self.media.id

    @property
    def closed(self) -> bool:
        return self.media.closed

    @property
    def ended(self) -> bool:
        return self.media.closed

    @property
    def level_in(self) -> float:
        return self.media.level_in

    @property
    def level_out(self) -> float:
        return self.media.level_out

    def describe(self) -> str:
        return self.name

    # -- routes
    @shielded
    def send_media_to(self, target: Any, **options: Any) -> None:
        """``sendMediaTo``: route this unit's audio into ``target`` (replaces target's input)."""
        if self._ignored(f"{self.name}.send_media_to", target):
            return
        send_media(self.session, self, target, options)

    @shielded
    def stop_media_to(self, target: Any) -> None:
        """``stopMediaTo``: undo ``send_media_to(target)``."""
        if self._ignored(f"{self.name}.stop_media_to", target):
            return
        stop_media(self.session, self, target)

    def _ignored(self, what: str, *others: Any) -> bool:
        party = ended_party(self, *others)
        if party is not None:
            self.session.log(f"{what} ignored: {getattr(party, 'id', party)!s} has ended")
            return True
        return False

    # -- events from the worker
    def _worker_event(self, event: str, data: dict) -> None:
        if event == "Error":
            self.error = data.get("error")
            self.session.log(f"{self.name}: {self.error}")
        name = self._event_name(event)
        if name is not None:
            self._post(name, **data)

    def _event_name(self, event: str) -> str | None:
        """The session event for a worker event (``Started`` -> ``PlayerEvents.Started``)."""
        return None

    def _post(self, event_name: str, /, **fields: Any) -> None:
        fields.setdefault(self.kind, self)
        self.session.post(self, Event(event_name, **fields))

    def _media_failed(self, reason: str) -> None:
        self._worker_event("Error", {"error": "its media worker failed"})

    def _close(self) -> None:
        """Take the unit out of the media graph (and so out of its worker)."""
        if not self.media.closed:
            self.session.engine.graph.remove(self.media)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{' closed' if self.closed else ''}>"
