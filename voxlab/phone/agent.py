"""The phone: a SIP user agent on voxlab's own SIP code, with one call at a time.

:class:`PhoneAgent` listens on its own UDP port (voxlab.sip.transport), registers when
given a user (:mod:`voxlab.phone.register`), places calls (voxlab.sip.uac.OutgoingCall,
answering a 401/407 with Digest), takes calls (voxlab.sip.useragent.IncomingCall: ring,
answer, reject; a second call while one is up gets 486), hangs up, holds (re-INVITE with
sendonly) and sends DTMF. What happens is told to a listener as :class:`PhoneEvent`
values; the UI and the headless logger read the rest (state, duration, levels, stats)
from the agent when they draw.

Media runs in the same reactor: a 20 ms LoopingCall (voxlab.media.clock.MediaClock)
ticks the call's :class:`~voxlab.phone.audio.CallAudio`.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from voxlab.media.clock import MediaClock
from voxlab.phone.audio import CallAudio
from voxlab.phone.call import PhoneCall, format_duration
from voxlab.phone.offer import codec_order, make_offer
from voxlab.phone.register import Registration
from voxlab.phone.sources import NullSink, SilentSource, Sink, Source
from voxlab.sip.transport import SipTransportLayer
from voxlab.sip.uac import OutgoingCall
from voxlab.sip.uri import NameAddr, SipParseError, SipUri
from voxlab.sip.useragent import IncomingCall, Target

log = Logger()

# After the --audio-in file ends, keep the call this long before hanging up, so the far
# end's answer to the last words (an echo's last 100 ms) is still heard and recorded.
INPUT_END_TAIL = 0.5

__all__ = ["PhoneAgent", "PhoneCall", "PhoneConfig", "PhoneEvent", "parse_hostport",
           "dial_target", "local_address_for", "format_duration"]


def parse_hostport(text: str, default_port: int = 5060, what: str = "address") -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:port`` too) as (host, port); ValueError when unreadable."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port_text = rest[1:]
            if not port_text.isdigit():
                raise ValueError(f"{what} {text!r}: the port is not a number")
            port = int(port_text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text.isdigit():
            raise ValueError(f"{what} {text!r}: the port is not a number")
        port = int(port_text)
    if not host or not 0 <= port <= 65535:
        raise ValueError(f"{what} {text!r}: want HOST:PORT")
    return host, port


def local_address_for(host: str) -> str:
    """The local address the system would send to ``host`` from (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def dial_target(destination: str, server: tuple[str, int]) -> tuple[SipUri, Target]:
    """What ``destination`` means: a plain name or number is that user at the server
    (``echo`` -> sip:echo@server); a SIP URI (``sip:bob@host:port``, or ``bob@host``) is
    called directly at its host. ValueError for anything else."""
    dest = destination.strip()
    if not dest:
        raise ValueError("nothing to dial")
    if dest.startswith("sips:"):
        raise ValueError("sips: (TLS) is not supported")
    if not dest.startswith("sip:"):
        if "@" not in dest:
            host, port = server
            hostpart = f"[{host}]" if ":" in host else host
            dest = f"sip:{dest}@{hostpart}:{port}"
        else:
            dest = f"sip:{dest}"
    try:
        uri = SipUri.parse(dest)
    except SipParseError as exc:
        raise ValueError(f"cannot dial {destination!r}: {exc}") from None
    transport = (uri.params.get("transport") or "udp").lower()
    if transport != "udp":
        raise ValueError(f"cannot dial {destination!r}: the phone speaks SIP over UDP only")
    host, port = uri.host_port(5060)
    return uri, Target("udp", host.strip("[]"), port)


@dataclass
class PhoneConfig:
    """What ``voxlab phone``'s options say about SIP and media."""

    server: tuple[str, int] = ("127.0.0.1", 5060)
    user: str | None = None
    password: str | None = None
    local: tuple[str, int] | None = None      # None: the address towards the server, any port
    codec: str = "PCMU"
    auto_answer: bool = False
    expires: int = 600
    hangup_on_input_end: bool = False         # --dial with --audio-in


@dataclass
class PhoneEvent:
    """Something the user should see: ``kind`` is a word (listening, registered,
    registration-failed, unregistered, calling, ringing, incoming, connected, held, resumed,
    dtmf-sent, dtmf-received, ended, failed (an outgoing call that never connected), missed
    (an incoming one), error, info, audio, log), ``text`` a line for people."""

    kind: str
    text: str
    at: float = 0.0


class PhoneAgent:
    """The softphone's user agent: SIP, registration, the current call and its media."""

    def __init__(self, reactor, config: PhoneConfig, source: Source | None = None,
                 sink: Sink | None = None,
                 listener: Callable[[PhoneEvent], None] | None = None) -> None:
        self.reactor = reactor
        self.config = config
        self.codecs = codec_order(config.codec)
        self.source: Source = source or SilentSource()
        self.sink: Sink = sink or NullSink()
        self.listeners: list[Callable[[PhoneEvent], None]] = [listener] if listener else []
        server_host = config.server[0]
        if config.local is not None:
            self.host, port = config.local
        else:
            self.host, port = local_address_for(server_host), 0
        self.sip = SipTransportLayer(reactor, self.host, port, self, transports=("udp",))
        self.registration: Registration | None = None
        self.call: PhoneCall | None = None
        self.last_call: PhoneCall | None = None
        self.calls_made = 0
        self.clock = MediaClock(self._tick, clock=reactor)
        self.events: list[PhoneEvent] = []
        self.stopping = False
        self._input_end_call = None

    # -- events
    def emit(self, kind: str, text: str) -> None:
        event = PhoneEvent(kind, text, time.time())
        self.events.append(event)
        del self.events[:-200]
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.failure("phone listener failed")

    # -- lifecycle
    @property
    def ua(self):
        return self.sip.ua

    @property
    def port(self) -> int:
        return self.sip.port

    def start(self) -> None:
        """Listen (CannotListenError when the --local address is taken) and register."""
        self.sip.listen()
        self.emit("listening", f"SIP on udp {self.host}:{self.sip.port}")
        if self.config.user:
            host, port = self.config.server
            domain = f"{host}:{port}" if port != 5060 else host
            contact = f"sip:{self.config.user}@{self.host}:{self.sip.port}"
            self.registration = Registration(self.ua, Target("udp", host, port), domain,
                                             self.config.user, self.config.password, contact,
                                             self.config.expires, self._registration_changed)
            self.registration.start()

    def stop(self) -> defer.Deferred:
        """Hang up, unregister, close the socket; fires when done (a few seconds at most)."""
        if self.stopping:
            return defer.succeed(None)
        self.stopping = True
        call = self.call
        if call is not None:
            call.hangup()
        waits = []
        if call is not None and call.leg is not None:
            waits.append(self._sleep(0.3))       # the BYE/CANCEL out, and usually its answer
        if self.registration is not None:
            waits.append(self.registration.stop())
        d = defer.DeferredList(waits) if waits else defer.succeed(None)

        def close(_):
            self.clock.stop()
            return self.sip.stop()
        d.addCallback(close)
        d.addErrback(lambda f: log.failure("phone stop", f))
        return d

    def _sleep(self, seconds: float) -> defer.Deferred:
        d = defer.Deferred()
        self.reactor.callLater(seconds, d.callback, None)
        return d

    def _registration_changed(self, state: str, detail: str) -> None:
        reg = self.registration
        who = f"{self.config.user}@{reg.domain}" if reg else self.config.user
        if state == "registered":
            self.emit("registered", f"registered as {who} (expires in {detail} s)")
        elif state == "failed":
            self.emit("registration-failed", f"registration of {who} failed: {detail}")
        elif state == "unregistered":
            self.emit("unregistered", f"unregistered {who}" + (f" ({detail})" if detail else ""))

    # -- calls
    def dial(self, destination: str) -> PhoneCall:
        """Call ``destination`` (see :func:`dial_target`); ValueError or RuntimeError when
        that cannot be done now."""
        if self.call is not None:
            raise RuntimeError("a call is already in progress: hang it up first")
        if self.stopping:
            raise RuntimeError("the phone is stopping")
        uri, target = dial_target(destination, self.config.server)
        audio = CallAudio(self.reactor, self.host)
        if self.config.user:
            # Our address of record: who we are at the server (what a challenged route and
            # the callee see), not the address we happen to listen on.
            host, port = self.config.server
            hostpart = f"[{host}]" if ":" in host else host
            suffix = f":{port}" if port != 5060 else ""
            from_addr = NameAddr.parse(f"<sip:{self.config.user}@{hostpart}{suffix}>")
        else:
            from_addr = NameAddr.parse(f"<sip:phone@{self.host}:{self.sip.port}>")
        session_id = random.randint(1, 2**31)
        offer = make_offer(self.host, audio.port, session_id, codecs=self.codecs)
        leg = OutgoingCall(self.ua, target, uri, from_addr, offer)
        call = PhoneCall(self, "out", leg, str(uri), audio)
        call.session_id = session_id
        leg.listener = call
        self.call = call
        self.calls_made += 1
        self.emit("calling", f"calling {uri}")
        leg.start()
        return call

    def incoming_call(self, leg: IncomingCall) -> None:
        """voxlab.sip.useragent's handler: a new INVITE."""
        caller = str(leg.invite.from_addr.uri)
        name = leg.invite.from_addr.display_name
        who = f'"{name}" {caller}' if name else caller
        if self.call is not None or self.stopping:
            self.emit("info", f"call from {who} refused: busy")
            leg.reject(486, "Busy Here")
            return
        try:
            audio = CallAudio(self.reactor, self.host)
        except RuntimeError as exc:
            self.emit("error", f"call from {who} refused: {exc}")
            leg.reject(503, "Service Unavailable")
            return
        call = PhoneCall(self, "in", leg, who, audio)
        leg.listener = call
        self.call = call
        self.calls_made += 1
        leg.ring()
        if self.config.auto_answer:
            self.emit("incoming", f"call from {who}: answering (--auto-answer)")
            self.reactor.callLater(0, call.answer)
        else:
            self.emit("incoming", f"call from {who}: a to answer, r to reject")

    def answer(self) -> None:
        if self.call is not None:
            self.call.answer()

    def reject(self) -> None:
        if self.call is not None:
            self.call.reject()

    def hangup(self) -> None:
        if self.call is not None:
            self.call.hangup()

    def send_digits(self, digits: str) -> None:
        if self.call is not None:
            self.call.send_digits(digits)

    def toggle_mute(self) -> bool:
        """Mute or unmute the microphone; the new state."""
        call = self.call
        if call is None:
            return False
        call.audio.muted = not call.audio.muted
        self.emit("info", "microphone muted" if call.audio.muted else "microphone on")
        return call.audio.muted

    def toggle_hold(self) -> None:
        if self.call is not None:
            self.call.toggle_hold()

    # -- from calls
    def source_for_early(self) -> Source:
        # Before the answer the far end hears nothing from us (our file must not be
        # half-played into a ring-back): silence.
        return SilentSource()

    def media_started(self, call: PhoneCall) -> None:
        self.clock.start()

    def input_ended(self) -> None:
        if self.config.hangup_on_input_end and self._input_end_call is None:
            self.emit("info", "the --audio-in file has ended: hanging up")
            self._input_end_call = self.reactor.callLater(INPUT_END_TAIL, self.hangup)

    def call_ended(self, call: PhoneCall) -> None:
        if self.call is call:
            self.call = None
        self.last_call = call
        self.clock.stop()
        if self._input_end_call is not None and self._input_end_call.active():
            self._input_end_call.cancel()
        self._input_end_call = None

    def _tick(self) -> None:
        call = self.call
        if call is not None:
            call.audio.tick()
