"""Outgoing SIP calls: ``VoxEngine.call_sip(uri, ...)`` and the Call on their UAC leg.

The call's RTP endpoint is opened in the session's media worker before the INVITE goes
out (its port is in our offer) and starts sending once the answer (or a 183's early
media SDP) says where to. Events: ``Ringing`` (180/183), ``AudioStarted`` (early media),
``Connected``, ``Failed`` (``code``, ``reason``), ``Disconnected``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from voxlab.engine.budget import shielded
from voxlab.engine.call import Call, CallState, x_headers
from voxlab.engine.events import CallEvents, Event
from voxlab.sip.digest import DigestError, answer_challenge, choose_challenge
from voxlab.sip.sdp import SdpError, build_offer
from voxlab.sip.uac import OutgoingCall
from voxlab.sip.uri import NameAddr, SipParseError, SipUri
from voxlab.engine.units import send_media
from voxlab.sip.useragent import Target

if TYPE_CHECKING:
    from voxlab.engine.session import Session


class SipCall(Call):
    """A Call this session placed (``call_sip``): the scenario controls it like any call."""

    direction = "out"

    def __init__(self, session: "Session", leg: OutgoingCall, auth: tuple[str, str] | None) -> None:
        super().__init__(session, leg)
        self.state = CallState.CONNECTING
        self._auth = auth
        self._early = False

    @property
    def callerid(self) -> str:
        return self.leg.invite.from_addr.uri.user or ""

    @shielded
    def answer(self) -> None:
        """An outgoing call is answered by the far end: nothing to do."""

    # -- from the UAC leg
    def leg_progress(self, leg: OutgoingCall, status: int, sdp: bytes) -> None:
        self.session.feed("sip", f"{self.id} {status} from the far end")
        if status in (180, 183):
            self.session.post(self, Event(CallEvents.Ringing, call=self, code=status))
        if sdp and not self._early and self._use_answer(sdp):
            self._early = True
            self.session.post(self, Event(CallEvents.AudioStarted, call=self))

    def leg_answered(self, leg: OutgoingCall, sdp: bytes) -> bool:
        if not sdp:
            return self._early            # the early media SDP stays the answer
        return self._use_answer(sdp)

    def leg_challenged(self, leg: OutgoingCall, response) -> bool:
        if self._auth is None:
            return False
        header, answer_header = (("WWW-Authenticate", "Authorization") if response.status == 401
                                 else ("Proxy-Authenticate", "Proxy-Authorization"))
        try:
            challenge = choose_challenge(response.headers.get_all(header))
        except DigestError as exc:
            self.session.log(f"{self.id}: cannot answer the challenge: {exc}")
            return False
        user, password = self._auth
        cred = answer_challenge(challenge, "INVITE", str(leg.invite.uri), user, password)
        self.session.feed("sip", f"{self.id} {response.status}: answering with {challenge.algorithm} digest")
        leg.resend_with(answer_header, cred.to_header())
        return True

    def _use_answer(self, sdp: bytes) -> bool:
        if self.media is None or self.media.closed:
            return False
        negotiated = self._negotiate(sdp)
        if negotiated is None:
            return False
        self._apply(negotiated)
        return True

    def leg_terminated(self, leg: OutgoingCall, reason: str, code: int | None) -> None:
        if reason in ("rejected", "timeout", "cancelled") and self.state != CallState.CONNECTED:
            self._end_failed(code, leg.final_reason or reason)
            return
        super().leg_terminated(leg, reason, code)

    def _end_failed(self, code: int | None, reason: str) -> None:
        self.ended_at = time.time()
        self.end_reason = "failed"
        self.final_code = code
        self._release_media()
        self._failed(code, reason, f"failed: {code} {reason}")
        self.session.call_ended(self)


class UserCall(SipCall):
    """``VoxEngine.callUser(name)``: one Call ringing every registered contact of a user at
    once. The first contact to answer wins; the others get CANCEL (or a BYE, if their 2xx
    crossed it). It fails only when every contact has failed (with the best final code)."""

    def __init__(self, session: "Session", legs: list[OutgoingCall]) -> None:
        super().__init__(session, legs[0], None)
        self.forks = list(legs)
        self._pending = list(legs)
        self._winner: OutgoingCall | None = None
        self._codes: list[int] = []
        for leg in legs:
            leg.listener = self

    def leg_progress(self, leg: OutgoingCall, status: int, sdp: bytes) -> None:
        if self._winner is None and leg in self._pending:
            super().leg_progress(leg, status, sdp)

    def leg_answered(self, leg: OutgoingCall, sdp: bytes) -> bool:
        if self._winner is not None:
            return False                       # a second answer: that leg hangs up
        self._winner = self.leg = leg
        for other in self._pending:
            if other is not leg:
                other.hangup()                 # CANCEL: the first to answer wins
        return super().leg_answered(leg, sdp)

    def leg_confirmed(self, leg: OutgoingCall) -> None:
        if leg is self._winner:
            super().leg_confirmed(leg)

    def leg_challenged(self, leg: OutgoingCall, response) -> bool:
        return False

    def leg_terminated(self, leg: OutgoingCall, reason: str, code: int | None) -> None:
        if leg in self._pending:
            self._pending.remove(leg)
        if self._winner is not None:
            if leg is self._winner:
                super().leg_terminated(leg, reason, code)
            return
        if code:
            self._codes.append(code)
        if not self._pending and not self.ended:
            # RFC 3261 16.7's spirit: a 6xx, else the lowest class seen
            six = [c for c in self._codes if c >= 600]
            best = six[0] if six else min(self._codes or [480])
            self._end_failed(best, reason if reason != "rejected" else leg.final_reason or reason)

    @shielded
    def hangup(self) -> None:
        """``hangup()``: CANCEL every ringing contact, or BYE the one that answered."""
        if self._winner is not None:
            self._winner.hangup()
            return
        for leg in list(self._pending):
            leg.hangup()


def call_user(session: "Session", name: str, callerid: str | None = None,
              display_name: str | None = None, headers: dict[str, str] | None = None) -> SipCall:
    """``VoxEngine.callUser``: ring every binding of registered user ``name`` in parallel.
    LookupError when the user has no registered contact."""
    engine = session.engine
    registrar = getattr(engine.sip_ua, "registrar", None)
    bindings = registrar.directory.bindings(str(name)) if registrar is not None else []
    if not bindings:
        raise LookupError(f"user {name!r} has no registered contact")
    routes = []
    for b in bindings:
        uri, _ = _parse_target(b.contact)
        routes.append((uri, Target(b.transport, b.host, b.port)))   # the flow it registered from
    return _place(session, routes, callerid, display_name, headers, None, user_call=True)


def _parse_target(uri: str) -> tuple[SipUri, Target]:
    try:
        parsed = SipUri.parse(uri if ":" in uri.split("@")[0] or uri.startswith("sip") else f"sip:{uri}")
    except SipParseError as exc:
        raise ValueError(f"bad SIP URI {uri!r}: {exc}") from None
    if parsed.scheme != "sip":
        raise ValueError(f"only sip: URIs can be called, not {uri!r}")
    host, port = parsed.host_port(5060)
    transport = (parsed.params.get("transport") or "udp").lower()
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport {transport!r} is not supported (udp, tcp)")
    return parsed, Target(transport, host.strip("[]"), port)


def call_sip(session: "Session", uri: str, callerid: str | None = None, display_name: str | None = None,
             headers: dict[str, str] | None = None, auth_user: str | None = None,
             password: str | None = None, out_proxy: str | None = None) -> SipCall:
    """``VoxEngine.callSIP``: place a SIP call to ``uri`` (``sip:bob@127.0.0.1:5090``;
    ``;transport=tcp`` for TCP). ValueError for a URI that cannot be called."""
    engine = session.engine
    ua = engine.sip_ua
    if ua is None:
        raise RuntimeError("this server has no SIP listener to place calls from")
    request_uri, target = _parse_target(str(uri))
    if out_proxy:
        _, target = _parse_target(str(out_proxy))
    auth = (auth_user, password) if password is not None else None
    return _place(session, [(request_uri, target)], callerid, display_name, headers, auth)


def _place(session: "Session", routes: list[tuple[SipUri, Target]], callerid: str | None,
           display_name: str | None, headers: dict[str, str] | None,
           auth: tuple[str | None, str] | None, user_call: bool = False) -> SipCall:
    session.check_running("call_sip")
    engine = session.engine
    ua = engine.sip_ua
    extra = x_headers(headers)
    first = next((c for c in session.calls if not isinstance(c, SipCall)), None)
    user = callerid if callerid is not None else (first.callerid if first is not None else "voxlab")
    name = display_name if display_name is not None else ""
    text = f'"{name}" <sip:{user}@{ua.host}:{ua.port}>' if name else f"<sip:{user}@{ua.host}:{ua.port}>"
    from_addr = NameAddr.parse(text)
    legs = [OutgoingCall(ua, target, request_uri, from_addr, b"", extra) for request_uri, target in routes]
    if user_call:
        call: SipCall = UserCall(session, legs)
    else:
        call = SipCall(session, legs[0], (auth[0] or user, auth[1]) if auth is not None else None)
    try:
        # Until the answer says otherwise: our first codec, nowhere to send.
        first = build_offer(engine.media_host, 0, call._sdp_id, engine.codecs).media[0].codecs[0]
        endpoint = engine.media.open_rtp(session.media_worker(), call.id, first.name,
                                         first.payload_type, 101, ("0.0.0.0", 0), False)
    except (RuntimeError, SdpError) as exc:
        raise RuntimeError(f"no media port for the call: {exc}") from None
    call._attach(endpoint)
    offer = build_offer(engine.media_host, endpoint.port, call._sdp_id, engine.codecs).to_bytes()
    session.call_added(call)
    for leg in legs:
        leg.invite.body = leg.answer_body = offer
        leg.invite.headers.add("Content-Type", "application/sdp")
        session.feed("sip", f"{call.id} INVITE to {leg.invite.uri} via {leg.source}")
        leg.start()
    return call


def easy_process(session: "Session", incoming: Call, outgoing: Call, on_established: Any = None,
                 transfers: bool = True) -> "Bridge":
    """``VoxEngine.easyProcess``: bridge two legs (see :class:`Bridge`)."""
    return Bridge(session, incoming, outgoing, on_established, transfers)


def forward_call_to_sip(session: "Session", e: Event, uri: str,
                        headers: dict[str, str] | None = None) -> SipCall:
    """``VoxEngine.forwardCallToSIP``: call ``uri`` as the caller of ``e.call`` and bridge."""
    out = call_sip(session, uri, callerid=e.call.callerid, display_name=e.call.display_name,
                   headers=headers)
    easy_process(session, e.call, out)
    return out


def forward_call_to_user(session: "Session", e: Event, user: str | None = None,
                         headers: dict[str, str] | None = None) -> SipCall:
    """``VoxEngine.forwardCallToUser``: ring the registered user (the dialled one by default)
    and bridge the first phone to answer."""
    out = call_user(session, user if user is not None else e.call.destination,
                    callerid=e.call.callerid, display_name=e.call.display_name, headers=headers)
    easy_process(session, e.call, out)
    return out


class Bridge:
    """What ``easy_process`` sets up between an incoming call and the call placed for it.

    The outgoing call's ringing and early media reach the caller (180; 183 with our SDP,
    the far end's audio relayed at once), its answer answers the caller, audio flows both
    ways, a hang-up or a failure on either side ends the other (a failure's code reaches
    an unanswered caller). With ``transfers``, a blind transfer (REFER) from either party
    places a call to the Refer-To target and, once it answers, bridges the other party to
    it; the transferor is told through NOTIFYs and then hung up. The transferor may leave
    as soon as its REFER is accepted: the other party waits for the new call.

    As with VoxEngine's easyProcess, the session ends with the bridge: once every call it
    involved has ended, and the session has no other call left."""

    def __init__(self, session: "Session", incoming: Call, outgoing: Call,
                 on_established: Any = None, transfers: bool = True) -> None:
        self.session = session
        self.incoming = incoming
        self.outgoing = outgoing
        self.pair: tuple[Call, Call] = (incoming, outgoing)
        self.on_established = on_established
        self.transfers = transfers
        self._linked = False
        self._pending: dict[Call, tuple[Call, Call]] = {}    # new call: (transferor, other party)
        outgoing.add_event_listener(CallEvents.Ringing, self._ringing)
        outgoing.add_event_listener(CallEvents.AudioStarted, self._early_media)
        outgoing.add_event_listener(CallEvents.Connected, self._connected)
        outgoing.add_event_listener(CallEvents.Failed, self._failed)
        outgoing.add_event_listener(CallEvents.Disconnected, self._gone)
        incoming.add_event_listener(CallEvents.Disconnected, self._gone)
        incoming.add_event_listener(CallEvents.Failed, self._gone)
        if transfers:
            for call in self.pair:
                call.add_event_listener(CallEvents.BlindTransferRequested, self._transfer)

    # -- setting up
    def _ringing(self, e: Event) -> None:
        if self.incoming.state == CallState.ALERTING:
            self.incoming.ring()

    def _early_media(self, e: Event) -> None:
        if self.incoming.state == CallState.ALERTING and self.incoming.leg.offer.strip():
            self.incoming.start_early_media()
            self._link()

    def _connected(self, e: Event) -> None:
        if self.incoming.state == CallState.ALERTING:
            self.incoming.add_event_listener(CallEvents.Connected, self._established)
            self.incoming.answer()
        else:
            self._established(e)

    def _established(self, e: Event) -> None:
        if self.incoming.ended or self.outgoing.ended:
            return
        self._link()
        if self.on_established is not None:
            self.on_established(self.incoming, self.outgoing)

    def _link(self) -> None:
        a, b = self.pair
        if self._linked or a.ended or b.ended or a.media is None or b.media is None:
            return
        self._linked = True
        send_media(self.session, a, b, {})
        send_media(self.session, b, a, {})

    # -- ending
    def _failed(self, e: Event) -> None:
        incoming = self.incoming
        if not incoming.ended:
            code = getattr(e, "code", None) or 480
            if incoming.state == CallState.ALERTING and 400 <= code <= 699:
                incoming.decline(code, getattr(e, "reason", None))
            else:
                incoming.hangup()
        self._end_when_over()

    def _gone(self, e: Event) -> None:
        call = e.call
        for new, (transferor, other) in list(self._pending.items()):
            if call is transferor:
                return
            if call is other:
                del self._pending[new]
                new.hangup()
        if call in self.pair:
            peer = self.pair[1] if call is self.pair[0] else self.pair[0]
            if not peer.ended:
                peer.hangup()
        self._end_when_over()

    def _end_when_over(self) -> None:
        # Checked once the events queued now are handled: the scenario's own listeners of
        # the last hang-up still run, and may place another call.
        self.session.engine.reactor.callLater(0, self._terminate_if_over)

    def _terminate_if_over(self) -> None:
        if not self._pending and all(c.ended for c in self.session.calls):
            self.session.terminate()

    # -- blind transfer
    def _transfer(self, e: Event) -> None:
        transferor = e.call
        if transferor not in self.pair or any(t is transferor for t, _ in self._pending.values()):
            transferor.notify_blind_transfer_failed(491, "Request Pending")
            return
        other = self.pair[1] if transferor is self.pair[0] else self.pair[0]
        # The new party sees who is being transferred to it.
        shown = other.destination if isinstance(other, SipCall) else other.callerid
        try:
            new = call_sip(self.session, e.transfer_to, callerid=shown or None)
        except (ValueError, RuntimeError) as exc:
            self.session.log(f"transfer of {other.id} to {e.transfer_to} failed: {exc}")
            transferor.notify_blind_transfer_failed(400 if isinstance(exc, ValueError) else 503,
                                                    "Bad Transfer Target")
            return
        self.session.log(f"transferring {other.id} to {e.transfer_to} ({new.id}) for {transferor.id}")
        self._pending[new] = (transferor, other)
        new.add_event_listener(CallEvents.Ringing, self._transfer_ringing)
        new.add_event_listener(CallEvents.Connected, self._transfer_answered)
        new.add_event_listener(CallEvents.Failed, self._transfer_failed)

    def _transfer_ringing(self, e: Event) -> None:
        if e.call in self._pending:
            transferor = self._pending[e.call][0]
            transferor.notify_blind_transfer_progress(e.code, "Ringing" if e.code == 180
                                                      else "Session Progress")

    def _transfer_answered(self, e: Event) -> None:
        new = e.call
        if new not in self._pending:
            new.hangup()                   # the party to transfer left meanwhile
            return
        transferor, other = self._pending.pop(new)
        if other.ended:
            new.hangup()
            return
        self.pair = (other, new)
        self._linked = False
        self._link()
        new.add_event_listener(CallEvents.Disconnected, self._gone)
        if self.transfers:
            new.add_event_listener(CallEvents.BlindTransferRequested, self._transfer)
        transferor.notify_blind_transfer_success()
        if not transferor.ended:
            transferor.hangup()

    def _transfer_failed(self, e: Event) -> None:
        new = e.call
        if new not in self._pending:
            return
        transferor, other = self._pending.pop(new)
        transferor.notify_blind_transfer_failed(getattr(e, "code", None) or 480,
                                                getattr(e, "reason", None) or "Failed")
        if transferor.ended and not other.ended:
            other.hangup()                  # nobody left to talk to
        self._end_when_over()
