"""The Conference facade (VoxEngine's ``Conference``) and its endpoints: a room that
mixes its participants, each hearing everyone but itself (the mixer is
:mod:`voxlab.media.conference`, in the session's media worker)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from voxlab.engine.budget import shielded
from voxlab.engine.events import CallEvents, ConferenceEvents
from voxlab.engine.units import MediaFacade, media_unit_of, send_media, stop_media

if TYPE_CHECKING:
    from voxlab.engine.session import Session

DIRECTIONS = ("BOTH", "SEND", "RECEIVE")
_ids = itertools.count(1)


class Endpoint:
    """One participant of a conference (VoxEngine's ``Endpoint``): a call, a player, a recorder."""

    def __init__(self, conference: "Conference", party: Any, direction: str, mode: str,
                 display_name: str | None) -> None:
        self.id = f"{conference.name}-e{next(_ids)}"
        self.conference = conference
        self.party = party
        self.direction = direction
        self.mode = mode
        self.display_name = display_name or getattr(party, "callerid", None) or getattr(party, "name", "")
        self.muted = False
        self.deaf = False

    def get_call(self) -> Any:
        """``getCall()``: the call (or unit) of this endpoint."""
        return self.party

    def get_direction(self) -> str:
        """``getDirection()``: BOTH, SEND (heard only) or RECEIVE (hears only)."""
        return self.direction

    def get_mode(self) -> str:
        """``getMode()``: MIX (the only mode here)."""
        return self.mode

    @shielded
    def manage_endpoint(self, direction: str | None = None, mute: bool | None = None,
                        deaf: bool | None = None) -> None:
        """``manageEndpoint``: change the direction, or mute (not heard) / deafen (hears silence)."""
        self.conference._update(self, direction, mute, deaf)

    @property
    def level(self) -> float:
        unit = media_unit_of(self.party)
        return unit.level_out

    def __repr__(self) -> str:
        flags = "".join(f" {f}" for f in ("muted", "deaf") if getattr(self, f))
        return f"<Endpoint {self.id} {self.display_name!r} {self.direction}{flags}>"


class Conference(MediaFacade):
    """``VoxEngine.createConference()``: participants added with ``add`` (or
    ``send_media_between(call, conf)``) hear everyone but themselves."""

    kind = "conference"

    def __init__(self, session: "Session", name: str | None = None) -> None:
        super().__init__(session, name, {})
        self.endpoints: dict[str, Endpoint] = {}
        self.state = "running"
        self._adding: Endpoint | None = None
        self._post(ConferenceEvents.Started)

    # -- participants
    @shielded
    def add(self, call: Any, mode: str = "MIX", direction: str = "BOTH",
            display_name: str | None = None) -> Endpoint | None:
        """``add({call, mode, direction, displayName})``: a participant; returns its Endpoint."""
        direction = str(direction).upper()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction is one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if str(mode).upper() != "MIX":
            raise ValueError("mode MIX is the only one supported")
        if self._ignored(f"{self.name}.add", call):
            return None
        existing = self._endpoint_of(call)
        if existing is not None:
            self._update(existing, direction, None, None)
            return existing
        endpoint = Endpoint(self, call, direction, "MIX", display_name)
        self.endpoints[endpoint.id] = endpoint
        self._adding = endpoint
        try:
            self._route(endpoint)
        finally:
            self._adding = None
        if hasattr(call, "add_event_listener") and hasattr(call, "hangup"):
            call.add_event_listener(CallEvents.Disconnected, lambda e, ep=endpoint: self._gone(ep))
        self._post(ConferenceEvents.EndpointAdded, endpoint=endpoint)
        return endpoint

    def _route(self, endpoint: Endpoint) -> None:
        party = endpoint.party
        if endpoint.direction in ("BOTH", "SEND"):
            send_media(self.session, party, self)
        else:
            stop_media(self.session, party, self)
        if endpoint.direction in ("BOTH", "RECEIVE"):
            send_media(self.session, self, party)
        elif media_unit_of(party).source is self.media:
            stop_media(self.session, self, party)

    def _input_options(self, source: Any, options: dict) -> None:
        """Something was sent to the room (``send_media_between(call, conf)``): it is a participant."""
        if options:
            raise TypeError(f"a conference takes no media options ({', '.join(options)})")
        if self._adding is None and self._endpoint_of(source) is None:
            endpoint = Endpoint(self, source, "SEND", "MIX", None)
            self.endpoints[endpoint.id] = endpoint
            if hasattr(source, "add_event_listener") and hasattr(source, "hangup"):
                source.add_event_listener(CallEvents.Disconnected, lambda e, ep=endpoint: self._gone(ep))
            self._post(ConferenceEvents.EndpointAdded, endpoint=endpoint)

    @shielded
    def send_media_to(self, target: Any, **options: Any) -> None:
        """``sendMediaTo``: ``target`` hears the room (a participant that sends too hears
        everyone but itself)."""
        super().send_media_to(target, **options)
        endpoint = self._endpoint_of(target)
        if endpoint is not None and endpoint.direction == "SEND":
            endpoint.direction = "BOTH"
            self._post(ConferenceEvents.EndpointUpdated, endpoint=endpoint)
        elif endpoint is None and self._adding is None:
            endpoint = Endpoint(self, target, "RECEIVE", "MIX", None)
            self.endpoints[endpoint.id] = endpoint
            self._post(ConferenceEvents.EndpointAdded, endpoint=endpoint)

    def _update(self, endpoint: Endpoint, direction: str | None, mute: bool | None,
                deaf: bool | None) -> None:
        if endpoint.id not in self.endpoints:
            return
        if direction is not None:
            direction = str(direction).upper()
            if direction not in DIRECTIONS:
                raise ValueError(f"direction is one of {', '.join(DIRECTIONS)}, got {direction!r}")
            if direction != endpoint.direction:
                endpoint.direction = direction
                self._adding = endpoint
                try:
                    self._route(endpoint)
                finally:
                    self._adding = None
        if mute is not None:
            endpoint.muted = bool(mute)
        if deaf is not None:
            endpoint.deaf = bool(deaf)
        self.media.command("set_endpoint", unit=media_unit_of(endpoint.party).wire,
                           mute=endpoint.muted, deaf=endpoint.deaf)
        self._post(ConferenceEvents.EndpointUpdated, endpoint=endpoint)

    @shielded
    def remove(self, endpoint_or_call: Any) -> None:
        """Take a participant out (its routes to and from the room end)."""
        endpoint = endpoint_or_call if isinstance(endpoint_or_call, Endpoint) else \
            self._endpoint_of(endpoint_or_call)
        if endpoint is None or endpoint.id not in self.endpoints:
            return
        party = endpoint.party
        if not getattr(party, "ended", False):
            stop_media(self.session, party, self)
            if media_unit_of(party).source is self.media:
                stop_media(self.session, self, party)
        self._gone(endpoint)

    def _gone(self, endpoint: Endpoint) -> None:
        if self.endpoints.pop(endpoint.id, None) is not None:
            self._post(ConferenceEvents.EndpointRemoved, endpoint=endpoint)

    def _endpoint_of(self, party: Any) -> Endpoint | None:
        for endpoint in self.endpoints.values():
            if endpoint.party is party:
                return endpoint
        return None

    def get_list(self) -> list[Endpoint]:
        """``getList()``: the endpoints."""
        return list(self.endpoints.values())

    def get(self, endpoint_id: str) -> Endpoint | None:
        """``get(id)``: an endpoint by id."""
        return self.endpoints.get(endpoint_id)

    @shielded
    def stop(self) -> None:
        """``stop()``: end the conference (its participants stay up, with silence)."""
        if self.state == "stopped":
            return
        self.state = "stopped"
        for endpoint in list(self.endpoints.values()):
            self._gone(endpoint)
        self._close()
        self._post(ConferenceEvents.Stopped)

    def describe(self) -> str:
        parts = [f"{e.display_name or e.id}({e.direction}{' muted' if e.muted else ''}"
                 f"{' deaf' if e.deaf else ''} {e.level:.0f}dB)" for e in self.endpoints.values()]
        return f"{self.name} {self.state} {len(parts)} endpoint(s): " + ", ".join(parts)
