"""The Call facade: one call leg as scenario code sees it (VoxEngine's ``Call``)."""

from __future__ import annotations

import ipaddress
import itertools
import time
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from voxlab.engine.budget import shielded
from voxlab.engine.events import CallEvents, Event, EventTarget
from voxlab.engine.mediaplane import RemoteEndpoint
from voxlab.engine.player import Player, tts_segment, url_segment
from voxlab.engine.units import ended_party, media_unit_of, send_media, stop_media
from voxlab.media.graph import MediaUnit
from voxlab.sip.sdp import (
    Negotiated, SdpError, SessionDescription, build_answer, build_offer, negotiate_answer,
)
from voxlab.sip.useragent import IncomingCall

if TYPE_CHECKING:
    from voxlab.engine.session import Session

log = Logger()

_ids = itertools.count(1)


class CallState:
    """The values of ``call.state``."""

    ALERTING = "ALERTING"        # incoming, not answered yet
    CONNECTING = "CONNECTING"    # answered (200 OK sent), waiting for the ACK
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    FAILED = "FAILED"


def _may_send(negotiated: Negotiated) -> bool:
    """Whether an offer/answer outcome lets us send RTP: c=0.0.0.0 is RFC 2543's
    hold (and Linux would deliver to 0.0.0.0 locally)."""
    return (negotiated.direction in ("sendrecv", "sendonly")
            and negotiated.remote_host not in ("0.0.0.0", "::")
            and negotiated.remote_port != 0)


def x_headers(headers: dict[str, str] | None) -> list[tuple[str, str]]:
    """The headers a scenario adds to a request, as (name, value): ``X-`` headers only
    (as VoxEngine allows), so no scenario can break the SIP it does not see."""
    extra = list((headers or {}).items())
    bad = [name for name, _ in extra if not str(name).lower().startswith("x-")]
    if bad:
        raise ValueError(f"only X- headers may be added, not {', '.join(map(str, bad))}")
    return extra


class Call(EventTarget):
    """One leg of a phone call, controlled by the session's scenario. Nothing blocks:
    methods start an operation and return; outcomes arrive as CallEvents."""

    direction = "in"

    def __init__(self, session: "Session", leg: IncomingCall) -> None:
        super().__init__()
        self.session = session
        self.leg = leg
        self.id = f"{session.id}-c{next(_ids)}"
        self.state = CallState.ALERTING
        self.media: RemoteEndpoint | None = None
        self._failure: str | None = None
        self.handling_tones = False
        self.on_hold = False                   # the far end put the call on hold (re-INVITE)
        self.held = False                      # we put it on hold (call.hold())
        self.player: Player | None = None      # the prompt of say() / start_playback()
        self._before_playback: MediaUnit | None = None
        self.created = time.time()
        self.connected_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.final_code: int | None = None     # the INVITE's final response (200 once answered)
        self.alerting_timer: Any = None        # the session's unanswered-call timeout
        self.codec: str | None = None
        self._sdp_id = int(time.time() * 1000) & 0x7FFFFFFF
        self._sdp_version = 1
        leg.listener = self
        log.info("call {call} from {caller!r} to {to!r}: session {session} ({scenario})", call=self.id,
                 caller=self.callerid, to=self.destination, session=session.id,
                 scenario=session.scenario_path.name)

    # -- facts
    @property
    def callerid(self) -> str:
        """The caller's user part (``callerid()``)."""
        return self.leg.invite.from_addr.uri.user or ""

    @property
    def user(self) -> str | None:
        """The registered user the caller authenticated as (a route with ``auth = true``);
        None when the route does not ask."""
        return getattr(self.leg, "user", None)

    @property
    def display_name(self) -> str:
        """The caller's display name (``displayName()``)."""
        return self.leg.invite.from_addr.display_name or ""

    @property
    def destination(self) -> str:
        """The dialled user part (``number()``)."""
        return self.leg.destination

    def headers(self) -> dict[str, str]:
        """The INVITE's headers (first value of each), ``headers()``."""
        out: dict[str, str] = {}
        for name, value in self.leg.invite.headers:
            out.setdefault(name, value)
        return out

    @property
    def duration(self) -> float:
        if self.connected_at is None:
            return 0.0
        return (self.ended_at or time.time()) - self.connected_at

    # -- call control
    @shielded
    def ring(self) -> None:
        """``ring()``: send 180 Ringing."""
        self.leg.ring()

    @shielded
    def answer(self) -> None:
        """``answer()``: accept the call with an SDP answer; CallEvents.Connected follows the ACK.

        An INVITE without SDP (delayed offer) is answered with our offer; the
        caller's answer arrives in the ACK."""
        if self.state != CallState.ALERTING:
            return
        if self.media is not None:
            sdp = self.leg.answer_body       # early media: the 200 repeats the 183's answer
        else:
            made = self._open_media()
            if made is None:
                return
            sdp = made.to_bytes()
        self.state = CallState.CONNECTING
        self.session.feed("sip", f"{self.id} answered ({self.codec})"
                          + ("" if self.leg.offer.strip() else ", offer in 200"))
        self.leg.answer(sdp)

    @shielded
    def start_early_media(self) -> None:
        """``startEarlyMedia()``: 183 Session Progress with our SDP answer, so the caller hears
        what this call is sent (a ringback, an announcement) before ``answer()``. Needs an
        offer in the INVITE; does nothing once answered or when already started."""
        if self.state != CallState.ALERTING or self.media is not None:
            return
        if not self.leg.offer.strip():
            raise RuntimeError(f"{self.id}: early media needs an SDP offer in the INVITE "
                               "(this one has none, and a 183 offer would need PRACK)")
        made = self._open_media()
        if made is None:
            return
        self.session.feed("sip", f"{self.id} early media ({self.codec})")
        self.leg.progress(made.to_bytes())

    def _open_media(self) -> SessionDescription | None:
        """Open the RTP endpoint for the INVITE's offer (or, for an INVITE without SDP, our
        offer) and return our SDP; None when that failed (the leg is refused)."""
        engine = self.session.engine
        negotiated = None
        if self.leg.offer.strip():
            negotiated = self._negotiate(self.leg.offer)
            if negotiated is None:
                self.leg.reject(488, "Not Acceptable Here")
                return None
        if negotiated is not None:
            codec, pt, dtmf, remote = (negotiated.codec.name, negotiated.codec.payload_type,
                                       negotiated.dtmf_payload_type,
                                       (negotiated.remote_host, negotiated.remote_port))
            sending = _may_send(negotiated)
        else:
            # Until the ACK's answer says otherwise: our first codec, nowhere to send.
            first = build_offer(engine.media_host, 0, self._sdp_id, engine.codecs).media[0].codecs[0]
            codec, pt, dtmf, remote, sending = first.name, first.payload_type, None, ("0.0.0.0", 0), False
        try:
            endpoint = engine.media.open_rtp(self.session.media_worker(), self.id, codec, pt, dtmf,
                                             remote, sending)
        except RuntimeError as exc:
            self.session.log(f"{self.id}: {exc}")
            self.leg.reject(503, "No Media Ports")
            return None
        self._attach(endpoint)
        if negotiated is not None:
            return self._local_sdp(negotiated)
        return build_offer(engine.media_host, endpoint.port, self._sdp_id, engine.codecs)

    def _attach(self, endpoint: RemoteEndpoint) -> None:
        """Make ``endpoint`` this call's media: its digits and failures come here, and the
        session's units list it."""
        endpoint.on_digit = self._digit_received
        endpoint.on_failure = self._media_failed
        self.media = endpoint
        if self.handling_tones:
            self._apply_tones()
        self.codec = endpoint.codec_name
        self.session.units[endpoint.name] = endpoint

    def _negotiate(self, sdp: bytes, supported: tuple[str, ...] | None = None) -> Negotiated | None:
        try:
            negotiated = negotiate_answer(SessionDescription.parse(sdp),
                                          supported or self.session.engine.codecs)
        except SdpError as exc:
            self.session.log(f"{self.id}: bad SDP: {exc}")
            return None
        if negotiated is None:
            self.session.log(f"{self.id}: no common codec or usable audio stream in the SDP")
            return None
        try:
            ipaddress.ip_address(negotiated.remote_host)
        except ValueError:
            # A host name would be looked up, blocking, for every packet sent.
            self.session.log(f"{self.id}: SDP connection address {negotiated.remote_host!r} "
                             "is not an IP address")
            return None
        return negotiated

    def _apply(self, negotiated: Negotiated) -> None:
        """Point the RTP endpoint at an offer/answer outcome."""
        assert self.media is not None
        self.media.renegotiate(negotiated.codec.name, negotiated.codec.payload_type,
                               negotiated.dtmf_payload_type,
                               (negotiated.remote_host, negotiated.remote_port),
                               sending=_may_send(negotiated))
        self.codec = self.media.codec_name

    def _local_sdp(self, negotiated: Negotiated) -> SessionDescription:
        assert self.media is not None
        return build_answer(negotiated, self.session.engine.media_host, self.media.port,
                            session_id=self._sdp_id, session_version=self._sdp_version)

    @shielded
    def decline(self, code: int = 603, reason: str | None = None) -> None:
        """``decline(code)``: refuse an incoming call with a final response (603 Decline by default)."""
        if not 400 <= code <= 699:
            raise ValueError(f"decline code must be 4xx-6xx, got {code}")
        self.leg.reject(code, reason)

    reject = decline

    @shielded
    def hangup(self) -> None:
        """``hangup()``: BYE when connected; an unanswered call is refused with 480."""
        self.leg.hangup()

    @shielded
    def hold(self) -> Any:
        """``hold()``: a re-INVITE offering ``sendonly``: the far end stops sending (what the
        call hears, music on hold say, still reaches it). Returns a Deferred that fires True
        once the far end accepted (``call.held`` is then True), False when it refused."""
        return self._reoffer("sendonly")

    @shielded
    def unhold(self) -> Any:
        """``unhold()``: a re-INVITE offering ``sendrecv`` again; a Deferred like ``hold()``'s."""
        return self._reoffer("sendrecv")

    def _reoffer(self, direction: str) -> Any:
        from twisted.internet.defer import Deferred

        if self.state != CallState.CONNECTED or self.media is None or self.media.closed:
            raise RuntimeError(f"hold/unhold needs a connected call ({self.id} is {self.state})")
        engine = self.session.engine
        self._sdp_version += 1
        # Only the codec in use: the answer cannot switch codecs under a bridge.
        offer = build_offer(engine.media_host, self.media.port, self._sdp_id, (self.codec,),
                            self.media.dtmf_payload_type or 101,
                            session_version=self._sdp_version, direction=direction).to_bytes()
        outcome: Deferred = Deferred()

        def done(response) -> None:
            if self.ended:
                outcome.callback(False)
                return
            if response is None or response.status in (408, 481):
                # RFC 3261 12.2.1.2: the dialog is gone.
                self.session.log(f"{self.id}: re-INVITE got {response.status if response else 'no answer'}: hanging up")
                outcome.callback(False)
                self.leg.hangup()
                return
            if response.status >= 300:
                self.session.log(f"{self.id}: {'hold' if direction != 'sendrecv' else 'unhold'} "
                                 f"refused: {response.status} {response.reason}")
                outcome.callback(False)
                return
            negotiated = self._negotiate(response.body) if response.body else None
            if negotiated is None:
                self.session.log(f"{self.id}: re-INVITE answer unusable: the media stays as it was")
                outcome.callback(False)
                return
            self._apply(negotiated)
            self.leg.answer_body = offer
            self.held = direction != "sendrecv"
            self.session.feed("sip", f"{self.id} {'held' if self.held else 'unheld'} "
                                     f"(answer {negotiated.direction} from our side)")
            outcome.callback(True)

        self.session.feed("sip", f"{self.id} re-INVITE ({direction})")
        self.leg.reinvite(offer, done)
        return outcome

    @shielded
    def send_info(self, mime_type: str, body: str, headers: dict[str, str] | None = None) -> None:
        """``sendInfo(mimeType, body)``: a SIP INFO in the call's dialog (answered calls only)."""
        self._in_dialog("INFO", mime_type, body, headers)

    @shielded
    def send_message(self, text: str, headers: dict[str, str] | None = None) -> None:
        """``sendMessage(text)``: a SIP MESSAGE (``text/plain``) in the call's dialog."""
        self._in_dialog("MESSAGE", "text/plain;charset=utf-8", text, headers)

    def _in_dialog(self, method: str, mime_type: str, body: str, headers: dict[str, str] | None) -> None:
        extra = x_headers(headers)
        if not isinstance(mime_type, str) or "/" not in mime_type:
            raise ValueError(f"a MIME type such as 'application/json', got {mime_type!r}")
        if not isinstance(body, str):
            raise TypeError(f"{method} body is text, got {type(body).__name__}")
        if self.state != CallState.CONNECTED:
            raise RuntimeError(f"send_{method.lower()} needs a connected call ({self.id} is {self.state})")

        def done(response) -> None:
            if response is None or response.status >= 300:
                what = "no answer" if response is None else f"{response.status} {response.reason}"
                self.session.log(f"{self.id}: {method} got {what}")

        self.session.feed("sip", f"{self.id} {method} sent ({mime_type}, {len(body)} chars)")
        self.leg.send_request(method, mime_type, body.encode("utf-8"), done, extra)

    # -- media
    @property
    def ended(self) -> bool:
        """True once the call is DISCONNECTED or FAILED."""
        return self.state in (CallState.DISCONNECTED, CallState.FAILED)

    def _ignored_when_ended(self, what: str, *others: Any) -> bool:
        """Media requests that involve an ended call do nothing but log a line (as in
        VoxEngine): a handler racing the caller's BYE must not fail its session."""
        for call in (self,) + others:
            if isinstance(call, Call) and call.ended:
                self.session.log(f"{what} ignored: call {call.id} has ended ({call.end_reason})")
                return True
        party = ended_party(*others)
        if party is not None:
            self.session.log(f"{what} ignored: {getattr(party, 'name', party)} has ended")
            return True
        return False

    @shielded
    def send_media_to(self, target: Any, **options: Any) -> None:
        """``sendMediaTo``: route this call's audio into ``target`` (replaces target's input;
        a conference mixes it in). Options are the target's (a WebSocket's ``encoding``).

        When ``target`` is a call that was playing a prompt (``say``, ``start_playback``),
        that prompt is stopped: it is no longer heard, so no PlaybackFinished."""
        if self._ignored_when_ended(f"{self.id}.send_media_to", target):
            return
        send_media(self.session, self, target, options)

    @shielded
    def stop_media_to(self, target: Any) -> None:
        """``stopMediaTo``: undo ``send_media_to(target)``."""
        if self._ignored_when_ended(f"{self.id}.stop_media_to", target):
            return
        stop_media(self.session, self, target)

    @shielded
    def start_playback(self, url: str, loop: bool = False, progress_playback: bool = True) -> Player | None:
        """``startPlayback``: play a WAV file (a path, relative to the scenario's folder) or an
        ``http(s)://`` URL to the caller. A second prompt replaces the first; when it ends or is
        stopped the call's previous input comes back. Returns the Player (None when the call
        has already ended)."""
        if self._ignored_when_ended(f"{self.id}.start_playback"):
            return None
        return self._prompt([url_segment(self.session, url)], loop, progress_playback, url)

    @shielded
    def say(self, text: str, voice: str | None = None, rate: int | None = None,
            loop: bool = False) -> Player | None:
        """``say``: speak ``text`` to the caller (espeak-ng; ``voice`` such as ``"en-us"``,
        ``rate`` in words per minute). A prompt like ``start_playback``'s: a second one
        replaces the first, the call's previous input comes back when it ends."""
        if self._ignored_when_ended(f"{self.id}.say"):
            return None
        return self._prompt([tts_segment(text, voice, rate)], loop, True, f"say {text[:40]!r}")

    def _prompt(self, segments: list[dict], loop: bool, progress: bool, what: str) -> Player:
        endpoint = media_unit_of(self)
        if self.player is not None:
            self._drop_player(restore=False)
        else:
            self._before_playback = endpoint.source
        player = Player(self.session, segments, loop=loop, progress_playback=progress,
                        name=f"{self.id}-prompt{next(_ids)}")
        player.on_finished = self._playback_finished
        self.player = player
        send_media(self.session, player, self)
        self.session.post(self, Event(CallEvents.PlaybackStarted, call=self, path=what))
        return player

    @shielded
    def record(self, stereo: bool = False, name: str | None = None) -> Any:
        """``record``: record the call to a WAV file in the data directory (a Recorder; stereo:
        what the caller says left, what the call hears right). ``recorder.stop()`` ends it."""
        if self._ignored_when_ended(f"{self.id}.record"):
            return None
        from voxlab.engine.recorder import record_call
        return record_call(self, stereo=stereo, name=name)

    @shielded
    def stop_playback(self) -> None:
        """``stopPlayback``: stop the current prompt (no PlaybackFinished event)."""
        if self.player is not None:
            self._drop_player(restore=True)

    def _drop_player(self, restore: bool) -> None:
        player, self.player = self.player, None
        player.on_finished = None
        player._close()
        self.session.units.pop(player.name, None)
        if restore and self.media is not None and not self.media.closed:
            previous = self._before_playback
            self._before_playback = None
            if previous is not None and not previous.closed and self.media.source is None:
                self.session.engine.graph.route(previous, self.media)

    def _playback_displaced(self) -> None:
        self.session.feed("media", f"{self.id} playback of {self.player.name} stopped: "
                                   "another unit now sends media to the call")
        self._before_playback = None
        self._drop_player(restore=False)

    def _playback_finished(self, player: Player) -> None:
        if player is self.player:
            self._drop_player(restore=True)
            # As VoxEngine's: a prompt that could not be played (a 404, a bad file) ends at
            # once, with the reason in ``error`` (None when it played out).
            self.session.post(self, Event(CallEvents.PlaybackFinished, call=self, error=player.error))

    @shielded
    def handle_tones(self, enable: bool = True) -> None:
        """``handleTones``: deliver received DTMF digits (RFC 4733, SIP INFO, and tones in the
        audio) as CallEvents.ToneReceived, and strip tones from the audio routed on."""
        self.handling_tones = bool(enable)
        self._apply_tones()

    def _apply_tones(self) -> None:
        if isinstance(self.media, RemoteEndpoint) and not self.media.closed:
            self.media.set_tones(self.handling_tones, self.handling_tones)

    @shielded
    def send_digits(self, digits: str, mode: str | None = None) -> None:
        """``sendDigits``: send DTMF to the caller: ``mode`` "rfc2833" (RFC 4733 events),
        "inband" (tones in the audio), or None: events when the caller offered them, else tones."""
        if self._ignored_when_ended(f"{self.id}.send_digits"):
            return
        media_unit_of(self).send_digits(digits, mode)

    def _digit_received(self, digit: str, kind: str = "rfc2833") -> None:
        self.session.feed("dtmf", f"{self.id} DTMF {digit} ({kind})")
        if self.handling_tones:
            self.session.post(self, Event(CallEvents.ToneReceived, call=self, tone=digit, type=kind))

    # -- LegListener (from the SIP layer)
    def leg_confirmed(self, leg: IncomingCall) -> None:
        self.state = CallState.CONNECTED
        self.connected_at = time.time()
        log.info("call {call} connected ({codec})", call=self.id, codec=self.codec)
        self.session.feed("sip", f"{self.id} connected")
        self.session.post(self, Event(CallEvents.Connected, call=self))

    def leg_offer(self, leg: IncomingCall, offer: bytes) -> bytes | None:
        """A re-INVITE's offer: renegotiate the media and return our answer (None: 488)."""
        if self.media is None or self.media.closed:
            return None
        negotiated = self._negotiate(offer)
        if negotiated is None:
            return None
        self._apply(negotiated)
        self.session.feed("sip", f"{self.id} re-INVITE: {self.codec} to "
                          f"{negotiated.remote_host}:{negotiated.remote_port} {negotiated.direction}")
        held = not _may_send(negotiated)    # sendonly/inactive offered, or c=0.0.0.0 (RFC 2543)
        if held != self.on_hold:
            self.on_hold = held
            self.session.feed("sip", f"{self.id} {'on hold' if held else 'off hold'}")
            self.session.post(self, Event(CallEvents.OnHold if held else CallEvents.OffHold, call=self))
        sdp = self._local_sdp(negotiated).to_bytes()
        if sdp != leg.answer_body:
            # Our SDP changed: it gets a new o= version (RFC 3264 8).
            self._sdp_version += 1
            sdp = self._local_sdp(negotiated).to_bytes()
        return sdp

    def leg_answer(self, leg: IncomingCall, answer: bytes) -> bool:
        """The caller's answer to our offer (in the ACK): apply it, or refuse it."""
        if self.media is None or self.media.closed:
            return False
        # The answer may only pick from what we offered (the SDP in our 200).
        try:
            ours = SessionDescription.parse(leg.answer_body).first_audio()
            ours_names = {c.name.upper() for c in ours.codecs} if ours is not None else set()
            offered = tuple(n for n in self.session.engine.codecs if n.upper() in ours_names)
        except SdpError:
            offered = ()
        negotiated = self._negotiate(answer, offered or None)
        if negotiated is None:
            self.session.log(f"{self.id}: unacceptable SDP answer in the ACK: hanging up")
            return False
        self._apply(negotiated)
        self.session.feed("sip", f"{self.id} answer in ACK: {self.codec}")
        return True

    def leg_terminated(self, leg: IncomingCall, reason: str, code: int | None) -> None:
        was = self.state
        self.ended_at = time.time()
        self.final_code = 200 if self.connected_at is not None else (code or self.final_code)
        reason = self._failure or reason
        self.end_reason = reason
        log.info("call {call} ended: {reason}{code}, {duration:.1f} s connected, {age:.1f} s in all",
                 call=self.id, reason=reason, code=f" ({code})" if code else "",
                 duration=self.duration, age=self.ended_at - self.created)
        self._release_media()
        if reason in ("rejected", "no-answer"):
            self._failed(code, reason, f"rejected with {code}")
        elif reason == "ack-timeout":
            self._failed(408, reason, "failed: no ACK")
        elif reason == "bad-answer":
            self._failed(488, reason, "failed: no acceptable answer in the ACK")
        else:
            self.state = CallState.DISCONNECTED
            self.session.feed("sip", f"{self.id} disconnected ({reason}) after {self.duration:.1f}s")
            self.session.post(self, Event(CallEvents.Disconnected, call=self, reason=reason,
                                          was=was))
        self.session.call_ended(self)

    def _failed(self, code: int | None, reason: str, what: str) -> None:
        """The call could not be set up: FAILED, and CallEvents.Failed with ``code``."""
        self.state = CallState.FAILED
        self.session.feed("sip", f"{self.id} {what}")
        self.session.post(self, Event(CallEvents.Failed, call=self, code=code, reason=reason))

    def leg_info(self, leg: IncomingCall, content_type: str, body: bytes) -> None:
        self.session.post(self, Event(CallEvents.InfoReceived, call=self,
                                      mime_type=content_type, body=body.decode("utf-8", "replace")))
        if content_type.lower().startswith("application/dtmf-relay"):
            for line in body.decode("ascii", "replace").splitlines():
                if line.lower().startswith("signal="):
                    self._digit_received(line.split("=", 1)[1].strip()[:1], "info")

    def leg_message(self, leg: IncomingCall, content_type: str, body: bytes) -> None:
        self.session.post(self, Event(CallEvents.MessageReceived, call=self, mime_type=content_type,
                                      text=body.decode("utf-8", "replace")))

    def leg_refer(self, leg: IncomingCall, refer_to, request) -> bool:
        """A REFER from the far end (blind transfer): taken on (202) only when the scenario
        listens for BlindTransferRequested; it then reports the outcome with
        ``notify_blind_transfer_success`` / ``_failed``."""
        target = refer_to.uri
        if target.headers:
            # Refer-To with ?Replaces= is an attended transfer, which voxlab does not do.
            self.session.log(f"{self.id}: REFER to {target} declined: attended transfer "
                             "(URI headers) is not supported")
            return False
        if not self.listeners(CallEvents.BlindTransferRequested):
            self.session.log(f"{self.id}: REFER to {target} declined: the scenario does not "
                             "listen for CallEvents.BlindTransferRequested")
            return False
        referred_by = request.headers.get("Referred-By")
        self.session.feed("sip", f"{self.id} REFER to {target}")
        self.session.post(self, Event(CallEvents.BlindTransferRequested, call=self,
                                      transfer_to=str(target), referred_by=referred_by))
        return True

    @shielded
    def notify_blind_transfer_progress(self, code: int = 180, reason: str = "Ringing") -> None:
        """Tell the transferor how the transfer's new call is doing (a NOTIFY with the
        provisional status as a sipfrag); the subscription stays open."""
        self.leg.notify_refer(int(code), str(reason), final=False)

    @shielded
    def notify_blind_transfer_success(self) -> None:
        """``notifyBlindTransferSuccess()``: the new call is answered (NOTIFY ``SIP/2.0 200
        OK``, which ends the REFER's subscription)."""
        self.leg.notify_refer(200, "OK", final=True)

    @shielded
    def notify_blind_transfer_failed(self, code: int = 603, reason: str = "Declined") -> None:
        """``notifyBlindTransferFailed(code, reason)``: the transfer did not work out (a final
        NOTIFY with that status); the call goes on as before."""
        if not 300 <= int(code) <= 699:
            raise ValueError(f"a transfer failure is a 3xx-6xx status, got {code}")
        self.leg.notify_refer(int(code), str(reason), final=True)

    def _release_media(self) -> None:
        if self.player is not None:
            self._drop_player(restore=False)
        if self.media is not None:
            self.session.engine.graph.remove(self.media)
            self.session.units.pop(self.media.name, None)

    def _media_failed(self, reason: str) -> None:
        """The media worker holding this call died or wedged: end the call (BYE)."""
        self._end_for(reason, "media failure (its media worker died)")

    def peer_lost(self, reason: str) -> None:
        """The far end is known to be gone (its WebRTC gateway worker died): end the call now
        with ``reason`` rather than at a timeout."""
        self._end_for(reason, "the far end is gone (its WebRTC gateway worker died)")

    def _end_for(self, reason: str, what: str) -> None:
        if self.ended:
            return
        self._failure = reason
        log.error("call {call}: {what}: hanging up", call=self.id, what=what)
        self.session.log(f"{self.id}: {what}: hanging up")
        self.leg.hangup()

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.state} from={self.callerid!r} to={self.destination!r}>"
