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
from voxlab.sip.useragent import Target

if TYPE_CHECKING:
    from voxlab.engine.session import Session


class SipCall(Call):
    """A Call this session placed (``call_sip``): the scenario controls it like any call."""

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
        self._release_media()
        self.state = CallState.FAILED
        self.session.feed("sip", f"{self.id} failed: {code} {reason}")
        self.session.post(self, Event(CallEvents.Failed, call=self, code=code, reason=reason))
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
    endpoint.on_digit = call._digit_received
    endpoint.on_failure = call._media_failed
    call.media = endpoint
    call.codec = endpoint.codec_name
    session.units[endpoint.name] = endpoint
    offer = build_offer(engine.media_host, endpoint.port, call._sdp_id, engine.codecs).to_bytes()
    session.calls.append(call)
    for leg in legs:
        leg.invite.body = leg.answer_body = offer
        leg.invite.headers.add("Content-Type", "application/sdp")
        session.feed("sip", f"{call.id} INVITE to {leg.invite.uri} via {leg.source}")
        leg.start()
    return call


def easy_process(session: "Session", incoming: Call, outgoing: Call, on_established: Any = None) -> None:
    """``VoxEngine.easyProcess``: bridge two legs. Ringing is passed to the caller, the
    caller is answered when the callee answers, audio goes both ways, and a hang-up or a
    failure on either side ends the other (a failure's code reaches the caller)."""
    from voxlab.engine.units import send_media

    def ringing(e: Event) -> None:
        if incoming.state == CallState.ALERTING:
            incoming.ring()

    def connected(e: Event) -> None:
        if incoming.state == CallState.ALERTING:
            incoming.add_event_listener(CallEvents.Connected, bridge)
            incoming.answer()
        else:
            bridge(e)

    def bridge(e: Event) -> None:
        if incoming.ended or outgoing.ended:
            return
        send_media(session, incoming, outgoing, {})
        send_media(session, outgoing, incoming, {})
        if on_established is not None:
            on_established(incoming, outgoing)

    def failed(e: Event) -> None:
        if not incoming.ended:
            code = getattr(e, "code", None) or 480
            if incoming.state == CallState.ALERTING and 400 <= code <= 699:
                incoming.decline(code, getattr(e, "reason", None))
            else:
                incoming.hangup()

    def gone(other: Call):
        def hang(e: Event) -> None:
            if not other.ended:
                other.hangup()
        return hang

    outgoing.add_event_listener(CallEvents.Ringing, ringing)
    outgoing.add_event_listener(CallEvents.Connected, connected)
    outgoing.add_event_listener(CallEvents.Failed, failed)
    outgoing.add_event_listener(CallEvents.Disconnected, gone(incoming))
    incoming.add_event_listener(CallEvents.Disconnected, gone(outgoing))
    incoming.add_event_listener(CallEvents.Failed, gone(outgoing))


