"""Sessions: one live copy of a scenario, its namespace, its calls and its event queue."""

from __future__ import annotations

import builtins
import collections
import inspect
import itertools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import defer
from twisted.logger import Logger as TwistedLogger

from voxlab.engine import current
from voxlab.engine.budget import BudgetExceeded, run_steps, shielded, time_budget
from voxlab.engine.call import Call, CallState
from voxlab.engine.events import (
    AppEvents, ASREvents, CallEvents, ConferenceEvents, Event, EventTarget, PlayerEvents,
    RecorderEvents, WebSocketEvents,
)
from voxlab.engine.player import Player, segment_for, tts_segment, url_segment
from voxlab.engine.units import media_unit_of
from voxlab.engine.tracebacks import format_full, format_traceback

if TYPE_CHECKING:
    from voxlab.engine.manager import Engine

log = TwistedLogger()

_ids = itertools.count(1)


class VoxEngineApi(EventTarget):
    """The ``VoxEngine`` object of one session: app-level listeners and session control."""

    def __init__(self, session: "Session") -> None:
        super().__init__()
        self._session = session

    @shielded
    def terminate(self) -> None:
        """``VoxEngine.terminate()``: end the session (hangs up its calls)."""
        self._session.terminate("scenario")

    def custom_data(self) -> str:
        """``VoxEngine.customData()``: the data the session was started with."""
        return self._session.custom_data

    # -- media units (each lives in the session's media worker; see docs/scenario-api.md)
    @shielded
    def create_url_player(self, url: str, loop: bool = False, progress_playback: bool = True,
                          name: str | None = None) -> Player:
        """``VoxEngine.createURLPlayer``: a WAV file (path or ``http(s)://`` URL)."""
        return Player(self._session, [url_segment(self._session, url)], loop=loop,
                      progress_playback=progress_playback, name=name)

    @shielded
    def create_tts_player(self, text: str, voice: str | None = None, rate: int | None = None,
                          loop: bool = False, name: str | None = None) -> Player:
        """``VoxEngine.createTTSPlayer``: speech synthesised by espeak-ng."""
        return Player(self._session, [tts_segment(text, voice, rate)], loop=loop, name=name)

    @shielded
    def create_tone_script_player(self, script: str, loop: bool = False, name: str | None = None) -> Player:
        """``VoxEngine.createToneScriptPlayer``: tones from a ToneScript (``350@-19,440@-19;10(*/0/1+2)``)."""
        from voxlab.media.tonescript import parse
        parse(str(script))      # a bad script is a ValueError here, in the handler that wrote it
        return Player(self._session, [{"type": "tone", "script": str(script)}], loop=loop, name=name)

    @shielded
    def create_sequence_player(self, segments: list, loop: bool = False, name: str | None = None) -> Player:
        """``VoxEngine.createSequencePlayer``: segments played in order; each a dict
        (``{"type": "tts", "text": ...}``), ``"tone:<script>"``, a URL or a WAV path."""
        if not segments:
            raise ValueError("a sequence player needs at least one segment")
        return Player(self._session, [segment_for(self._session, s) for s in segments], loop=loop,
                      name=name)

    @shielded
    def create_recorder(self, name: str | None = None, stereo: bool = False) -> Any:
        """``VoxEngine.createRecorder``: a WAV recording of what is sent to it."""
        from voxlab.engine.recorder import Recorder
        return Recorder(self._session, name=name, stereo=stereo)

    @shielded
    def create_conference(self, name: str | None = None) -> Any:
        """``VoxEngine.createConference``: a room that mixes its participants (N-1)."""
        from voxlab.engine.conference import Conference
        return Conference(self._session, name=name)

    @shielded
    def create_asr(self, language: str = "en-US", phrases: list[str] | None = None,
                   single_utterance: bool = False, interim_results: bool = False,
                   name: str | None = None) -> Any:
        """``VoxEngine.createASR``: speech recognition (pocketsphinx) of what is sent to it."""
        from voxlab.engine.asr import Asr
        return Asr(self._session, language=language, phrases=phrases, single_utterance=single_utterance,
                   interim_results=interim_results, name=name)

    @shielded
    def create_websocket(self, url: str, protocols: list[str] | str | None = None,
                         name: str | None = None) -> Any:
        """``VoxEngine.createWebSocket``: a WebSocket client that can stream audio both ways."""
        from voxlab.engine.websocket import WebSocket
        return WebSocket(self._session, url, protocols=protocols, name=name)

    @shielded
    def call_conference(self, room: str, callerid: str | None = None, display_name: str | None = None,
                        headers: dict[str, str] | None = None) -> Call:
        """``VoxEngine.callConference``: a call into the session that owns conference ``room``
        (started by the routing rule for ``room`` on first use; it sees an incoming call).
        Route it like any call: ``VoxEngine.send_media_between(call, conf_call)``."""
        from voxlab.engine.internal import call_conference
        return call_conference(self._session, str(room), callerid, display_name, headers)

    @shielded
    def call_sip(self, uri: str, callerid: str | None = None, display_name: str | None = None,
                 headers: dict[str, str] | None = None, auth_user: str | None = None,
                 password: str | None = None, out_proxy: str | None = None) -> Call:
        """``VoxEngine.callSIP``: an outgoing SIP call (``sip:bob@127.0.0.1:5090``,
        ``;transport=tcp`` for TCP); ``Ringing``, ``AudioStarted``, ``Connected``, ``Failed``
        (``code``, ``reason``), ``Disconnected`` follow. ``password`` answers a 401/407."""
        from voxlab.engine.outbound import call_sip
        return call_sip(self._session, str(uri), callerid, display_name, headers, auth_user,
                        password, out_proxy)

    @shielded
    def call_user(self, name: str, callerid: str | None = None, display_name: str | None = None,
                  headers: dict[str, str] | None = None) -> Call:
        """``VoxEngine.callUser``: ring every registered contact of user ``name`` at once; the
        first to answer wins, the others get CANCEL. LookupError when none is registered."""
        from voxlab.engine.outbound import call_user
        return call_user(self._session, str(name), callerid, display_name, headers)

    @shielded
    def easy_process(self, call1: Call, call2: Call, on_established: Any = None,
                     transfers: bool = True) -> Any:
        """``VoxEngine.easyProcess``: bridge an incoming call and the call placed for it:
        ringing, early media, answer and hang-ups are copied between them, media flows both
        ways, ``on_established(call1, call2)`` once both are up. With ``transfers``, a REFER
        from either party moves the other one to the Refer-To target (blind transfer)."""
        from voxlab.engine.outbound import easy_process
        return easy_process(self._session, call1, call2, on_established, transfers)

    @shielded
    def forward_call_to_sip(self, e: Any, uri: str, headers: dict[str, str] | None = None) -> Call:
        """``VoxEngine.forwardCallToSIP``: ``call_sip(uri)`` as the caller of ``e.call``, then
        ``easy_process`` between the two."""
        from voxlab.engine.outbound import forward_call_to_sip
        return forward_call_to_sip(self._session, e, str(uri), headers)

    @shielded
    def forward_call_to_user(self, e: Any, user: str | None = None,
                             headers: dict[str, str] | None = None) -> Call:
        """``VoxEngine.forwardCallToUser``: ``call_user`` (the dialled name by default) as the
        caller of ``e.call``, then ``easy_process``. LookupError when nobody is registered."""
        from voxlab.engine.outbound import forward_call_to_user
        return forward_call_to_user(self._session, e, user, headers)

    def calls(self) -> list[Call]:
        """The session's calls that have not ended yet (voxlab's addition): a scenario that
        bridges and transfers ends itself when this is empty."""
        return [c for c in self._session.calls if not c.ended]

    @shielded
    def send_media_between(self, a: Any, b: Any) -> None:
        """``VoxEngine.sendMediaBetween``: ``a.send_media_to(b)`` and ``b.send_media_to(a)``."""
        a.send_media_to(b)
        b.send_media_to(a)

    @shielded
    def stop_media_between(self, a: Any, b: Any) -> None:
        """``VoxEngine.stopMediaBetween``: undo ``send_media_between``."""
        a.stop_media_to(b)
        b.stop_media_to(a)

    def __repr__(self) -> str:
        return f"<VoxEngine of session {self._session.id}>"


class SessionLogger:
    """The ``Logger`` of one session: ``Logger.write(text)`` goes to the session log and the feed."""

    def __init__(self, session: "Session") -> None:
        self._session = session

    def write(self, *parts: Any) -> None:
        """``Logger.write``."""
        self._session.log(" ".join(str(p) for p in parts))

    def __repr__(self) -> str:
        return f"<Logger of session {self._session.id}>"


FeedListener = Callable[[dict], None]


class Session:
    """Runs one copy of a scenario: its namespace is the scenario's globals plus
    ``session``, ``calls`` and ``units``; events are queued and handled in order."""

    def __init__(self, engine: "Engine", scenario_path: Path, custom_data: str = "") -> None:
        self.engine = engine
        self.id = f"s{next(_ids)}-{os.urandom(2).hex()}"
        self.scenario_path = Path(scenario_path)
        self.custom_data = custom_data
        self.state = "running"
        self.created = time.time()
        self.ended: float | None = None
        self.end_reason: str | None = None
        self.calls: list[Call] = []
        self.units: dict[str, Any] = {}
        self.voxengine = VoxEngineApi(self)
        self.logger = SessionLogger(self)
        self.log_lines: collections.deque[str] = collections.deque(maxlen=2000)
        self.feed_listeners: list[FeedListener] = []
        self.feed_history: collections.deque[dict] = collections.deque(maxlen=500)
        self._queue: collections.deque[tuple[EventTarget, Event]] = collections.deque()
        self._draining = False
        self._media_worker: Any = None
        self.namespace: dict[str, Any] = self._fresh_namespace()

    def _fresh_namespace(self) -> dict[str, Any]:
        return {
            "__name__": "__scenario__",
            "__file__": str(self.scenario_path),
            "__builtins__": builtins,
            "VoxEngine": self.voxengine,
            "AppEvents": AppEvents,
            "CallEvents": CallEvents,
            "CallState": CallState,
            "PlayerEvents": PlayerEvents,
            "RecorderEvents": RecorderEvents,
            "ConferenceEvents": ConferenceEvents,
            "ASREvents": ASREvents,
            "WebSocketEvents": WebSocketEvents,
            "Logger": self.logger,
            "session": self,
            "calls": self.calls,
            "units": self.units,
        }

    # -- running scenario code
    def run_scenario(self, code) -> bool:
        """Execute the compiled scenario file into the namespace; False if it raised."""
        return self._guarded(lambda: exec(code, self.namespace), "loading the scenario")

    def _guarded(self, fn: Callable[[], Any], what: str) -> bool:
        token = current.enter(self)
        try:
            with time_budget(self.engine.handler_budget):
                result = fn()
            if inspect.iscoroutine(result):
                result = defer.ensureDeferred(self._budgeted_steps(result))
            if isinstance(result, defer.Deferred):
                result.addErrback(self._async_failure, what)
            return True
        except BudgetExceeded as exc:
            self.fail(f"{what}: {exc}", exc)
        except Exception as exc:
            self.fail(f"{what} raised", exc)
        finally:
            current.leave(token)
        return False

    def _budgeted_steps(self, coro):
        """Drive an ``async def`` handler so each step between awaits runs under
        the time budget and as this session's code, like a plain handler."""
        # The same driver runs console cells, so both get the same guarantees.
        return run_steps(coro, self.engine.handler_budget,
                         enter=lambda: current.enter(self), leave=current.leave)

    def _async_failure(self, failure, what: str) -> None:
        self.fail(f"{what} (async) raised", failure.value, failure.getTracebackObject())

    def fail(self, message: str, exc: BaseException, tb: Any = None) -> None:
        """A handler raised: its traceback goes to this session's log and the session ends.

        The log shows the scenario's own frames and the error; the full traceback,
        voxlab's and Twisted's frames included, is logged at debug level."""
        log.debug("[{session}] {message}, full traceback:\n{tb}", session=self.id, message=message,
                  tb=format_full(exc, tb).rstrip())
        self.log(f"ERROR {message}\n{format_traceback(exc, tb).rstrip()}")
        self.feed("error", message)
        self.terminate("error")

    def post(self, target: EventTarget, event: Event) -> None:
        """Queue an event; handlers run in order, after the code that caused the event returns."""
        if self.state == "terminated":
            return
        if self.state == "terminating":
            # The hang-ups terminate() itself makes: shown, never handled.
            self._feed_undelivered(event)
            return
        self._queue.append((target, event))
        if not self._draining:
            self._draining = True
            self.engine.reactor.callLater(0, self._drain)

    @staticmethod
    def _event_text(event: Event) -> str:
        return f"{event.name}" + (f" {event.call.id}" if hasattr(event, "call") else "")

    def _feed_undelivered(self, event: Event) -> None:
        self.feed("event", f"{self._event_text(event)} (not delivered: the session is ending)")

    def _drain(self) -> None:
        try:
            while self._queue:
                target, event = self._queue.popleft()
                self.feed("event", self._event_text(event))
                for handler in target.listeners(event.name):
                    if self.state == "terminated" and event.name != AppEvents.Terminated:
                        return
                    self._guarded(lambda h=handler: h(event), f"handler {_name(handler)} for {event.name}")
        finally:
            self._draining = False
            if self._queue:
                self._draining = True
                self.engine.reactor.callLater(0, self._drain)

    # -- lifecycle
    def start(self, leg) -> Call:
        """Begin with an incoming call: AppEvents.Started, then AppEvents.CallAlerting."""
        call = self.add_call(leg)
        self.post(self.voxengine, Event(AppEvents.Started, session=self))
        self.alerting(call)
        return call

    def alerting(self, call: Call) -> None:
        """An incoming call for the scenario: AppEvents.CallAlerting (and 180 Ringing unless it answers)."""
        self.post(self.voxengine, Event(
            AppEvents.CallAlerting, call=call, callerid=call.callerid, destination=call.destination,
            display_name=call.display_name, headers=call.headers()))
        # Phones expect to hear progress; the scenario may still decline or answer.
        self.engine.reactor.callLater(0, self._auto_ring, call)

    def _auto_ring(self, call: Call) -> None:
        if call.state == CallState.ALERTING:
            call.ring()

    def add_call(self, leg) -> Call:
        call = Call(self, leg)
        self.calls.append(call)
        self.feed("sip", f"{call.id} INVITE from {call.callerid or '?'} to {call.destination}")
        return call

    def media_worker(self) -> Any:
        """The media worker this session's units live in (picked with its first unit), so
        its calls, players and routes stay inside one process."""
        worker = self._media_worker
        if worker is None or not worker.alive:
            worker = self._media_worker = self.engine.media.pick()
        return worker

    def call_ended(self, call: Call) -> None:
        self.engine.call_ended(call)

    def terminate(self, reason: str = "scenario") -> None:
        """End the session: Terminating, hang up every call, release media, Terminated."""
        if self.state != "running":
            return
        self.state = "terminating"
        self.end_reason = reason
        # Events already queued (the Disconnected of a call the scenario just
        # hung up, say) are what led here: the feed shows them first, cause
        # before effect, though no handler will run for them.
        while self._queue:
            self._feed_undelivered(self._queue.popleft()[1])
        self.feed("session", f"terminating ({reason})")
        for handler in self.voxengine.listeners(AppEvents.Terminating):
            self._guarded(lambda h=handler: h(Event(AppEvents.Terminating, session=self)),
                          "Terminating handler")
        for call in list(self.calls):
            if call.state in (CallState.ALERTING,):
                call.leg.reject(500 if reason == "error" else 480)
            elif call.state in (CallState.CONNECTING, CallState.CONNECTED):
                call.hangup()
        for unit in list(self.units.values()):
            if not unit.closed and unit.kind != "rtp":
                self.engine.graph.remove(media_unit_of(unit))
        self.state = "terminated"
        self.ended = time.time()
        for handler in self.voxengine.listeners(AppEvents.Terminated):
            self._guarded(lambda h=handler: h(Event(AppEvents.Terminated, session=self)),
                          "Terminated handler")
        self.feed("session", "terminated")
        self.engine.session_ended(self)

    def dispose(self) -> None:
        """Break the reference cycles of an ended session (namespace <-> handlers <->
        calls <-> legs) so plain reference counting frees it, not the cyclic GC,
        whose full passes over a busy server's heap stall every call."""
        for call in self.calls:
            # A BYE or ACK still pending would otherwise never release these.
            call._release_media()
            call._listeners.clear()
            call.leg.listener = None
        self.calls.clear()
        self.voxengine._listeners.clear()
        self.namespace.clear()
        self.units.clear()
        self.feed_listeners.clear()
        self._queue.clear()

    # -- observability
    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        for line in text.splitlines() or [""]:
            self.log_lines.append(f"{stamp} {line}")
        log.info("[{session}] {text}", session=self.id, text=text)
        self.feed("log", text)

    def feed(self, kind: str, text: str) -> None:
        entry = {"t": time.time(), "session": self.id, "kind": kind, "text": text}
        self.feed_history.append(entry)
        for listener in list(self.feed_listeners):
            try:
                listener(entry)
            except Exception:
                log.failure("feed listener failed")

    def resolve(self, path: str) -> Path:
        """A path relative to the scenario file's folder (bundled prompts live beside scenarios)."""
        p = Path(path)
        return p if p.is_absolute() else self.scenario_path.parent / p

    def summary(self) -> str:
        age = time.time() - self.created
        calls = ", ".join(f"{c.id} {c.state} {c.duration:.0f}s" for c in self.calls) or "no calls"
        return f"{self.id} {self.scenario_path.name} {self.state} {age:.0f}s: {calls}"

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.scenario_path.name} {self.state} calls={len(self.calls)}>"


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
