"""Calls between two sessions of this server: ``VoxEngine.call_conference(room)``.

The calling session gets an outgoing Call; the session that owns the room
(started by the routing rule for the room's name on first use) gets an
ordinary incoming call: ``AppEvents.CallAlerting``, ``answer()``, events, and
a media unit to route. Between them is a link (:mod:`voxlab.media.link`):
two media units in the room session's worker, what goes into one comes out
of the other. No SIP, no RTP, no codec: the legs below are what a Call needs
of a leg, with the other side where the phone would be.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from voxlab.engine.budget import shielded
from voxlab.engine.call import Call, CallState
from voxlab.engine.events import CallEvents, Event

if TYPE_CHECKING:
    from voxlab.engine.session import Session

log = Logger()


class _Party:
    """Who a leg is from, shaped like a SIP From header (``from_addr.uri.user``)."""

    def __init__(self, user: str, display_name: str) -> None:
        self.user = user
        self.display_name = display_name
        self.uri = self

    def __str__(self) -> str:
        return f"internal:{self.user}"


class _Invite:
    def __init__(self, user: str, display_name: str, headers: dict[str, str],
                 destination: str = "") -> None:
        self.from_addr = _Party(user, display_name)
        self.uri = f"internal:{destination}"     # what the call history shows as its "to"
        self.headers = list(headers.items())


class InternalLeg:
    """One side of an internal call, with the interface Call uses of a SIP leg."""

    def __init__(self, destination: str, callerid: str, display_name: str,
                 headers: dict[str, str]) -> None:
        self.destination = destination
        self.invite = _Invite(callerid, display_name, headers, destination)
        self.offer = b""
        self.answer_body = b""
        self.ladder: list = []
        self.listener: Any = None
        self.other: InternalLeg | None = None
        self.state = "incoming"
        self.created = time.time()

    def ring(self) -> None:
        other = self.other
        if other is not None and isinstance(other.listener, Call):
            other.listener.session.post(other.listener, Event(CallEvents.Ringing, call=other.listener))

    def answer(self, sdp: bytes = b"") -> None:
        """The room's side answered: both calls are connected at once (nothing to acknowledge)."""
        if self.state != "incoming":
            return
        for leg in (self, self.other):
            leg.state = "confirmed"
            leg.listener.leg_confirmed(leg)

    def reject(self, status: int, reason: str | None = None) -> None:
        self._end("rejected", status)

    def hangup(self) -> None:
        if self.state == "incoming":
            self._end("rejected", 480)
        else:
            self._end("local-bye", None, other_reason="remote-bye")

    def _end(self, reason: str, code: int | None, other_reason: str | None = None) -> None:
        for leg, why in ((self, reason), (self.other, other_reason or reason)):
            if leg is not None and leg.state != "terminated":
                leg.state = "terminated"
                if leg.listener is not None:
                    leg.listener.leg_terminated(leg, why, code)


class InternalCall(Call):
    """A Call on an internal leg: media is one end of a link, made when the call is
    (so the calling session can route it at once); audio flows once the room answers."""

    def __init__(self, session: "Session", leg: InternalLeg, media: Any) -> None:
        super().__init__(session, leg)
        self.media = media
        self.codec = "L16"
        media.on_failure = self._media_failed
        session.units[media.name] = media

    @shielded
    def answer(self) -> None:
        """``answer()``: the internal call is connected at once, on both sides."""
        if self.state != CallState.ALERTING:
            return
        self.state = CallState.CONNECTING
        self.session.feed("sip", f"{self.id} answered (internal)")
        self.leg.answer()

    @shielded
    def send_digits(self, digits: str, *args: Any, **kw: Any) -> None:
        """``sendDigits``: the other side gets them as ToneReceived (type ``"internal"``)."""
        other = self.leg.other.listener if self.leg.other is not None else None
        if isinstance(other, Call) and not other.ended:
            for digit in str(digits):
                other._digit_received(digit, "internal")


def call_conference(session: "Session", room: str, callerid: str | None = None,
                    display_name: str | None = None, headers: dict[str, str] | None = None) -> Call:
    """``VoxEngine.callConference``: an outgoing call of ``session`` into the session that owns
    ``room``, started by the routing rule for ``room`` on first use. LookupError when no rule
    routes it."""
    engine = session.engine
    owner = engine.rooms.get(room)
    if owner is not None and owner.state != "running":
        owner = None
    first = next((c for c in session.calls if not isinstance(c, InternalCall)), None)
    if callerid is None:
        callerid = first.callerid if first is not None else session.id
    if display_name is None:
        display_name = first.display_name if first is not None else ""
    headers = dict(headers or {})
    outgoing_leg = InternalLeg(room, callerid, display_name, headers)
    incoming_leg = InternalLeg(room, callerid, display_name, headers)
    outgoing_leg.other, incoming_leg.other = incoming_leg, outgoing_leg
    if owner is None:
        owner = engine.start_room(room)
    worker = owner.media_worker()
    far = engine.media.open_unit(worker, f"{session.id}-link-{room}", "link", {})
    near = engine.media.open_unit(worker, f"{owner.id}-link-{session.id}", "link", {"peer": far.wire})
    outgoing = InternalCall(session, outgoing_leg, far)
    outgoing.state = CallState.CONNECTING
    session.calls.append(outgoing)
    session.feed("sip", f"{outgoing.id} call_conference({room!r}) into session {owner.id}")
    incoming = InternalCall(owner, incoming_leg, near)
    owner.calls.append(incoming)
    owner.feed("sip", f"{incoming.id} internal call from session {session.id} ({callerid})")
    owner.alerting(incoming)
    return outgoing
