"""Sessions: one live copy of a scenario, its namespace, its calls and its event queue."""

from __future__ import annotations

import builtins
import collections
import inspect
import itertools
import os
import secrets
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
from voxlab.engine.limits import LimitExceeded
from voxlab.engine.timers import SessionTimers
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
        self._session.terminate("normal")

    def custom_data(self, value: str | None = None) -> str:
        """``VoxEngine.customData()``: the data the session was started with;
        ``custom_data(text)`` replaces it (kept in the call history)."""
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"custom data is text, got {type(value).__name__}")
            self._session.custom_data = value
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

    def __init__(self, engine: "Engine", scenario_path: Path, custom_data: str = "",
                 rule: str = "") -> None:
        self.engine = engine
        self.id = f"s{next(_ids)}-{os.urandom(2).hex()}"
        self.scenario_path = Path(scenario_path)
        self.custom_data = custom_data
        self.rule = rule                         # the routing pattern (or "api", "room") that started it
        self.secret = secrets.token_urlsafe(16)  # the access URL's
        self.state = "running"
        self.created = time.time()
        self.ended: float | None = None
        self.end_reason: str | None = None
        self.limits = engine.limits
        self.timers = SessionTimers(engine.reactor, self._run_callback, self.limits.timers)
        self._net: Any = None
        self._open_replies: set[defer.Deferred] = set()   # access-URL requests not answered yet
        self._idle_timer: Any = None
        self._life_timer: Any = (engine.reactor.callLater(self.limits.max_duration, self._too_long)
                                 if self.limits.max_duration > 0 else None)
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
            "Net": SessionNet(self),
            "ApplicationStorage": SessionStorage(self),
            "set_timeout": self._while_running(self.timers.set_timeout, "set_timeout"),
            "set_interval": self._while_running(self.timers.set_interval, "set_interval"),
            "clear_timeout": self.timers.clear,
            "clear_interval": self.timers.clear,
            "session": self,
            "calls": self.calls,
            "units": self.units,
        }

    def _while_running(self, fn: Callable[..., Any], what: str) -> Callable[..., Any]:
        def checked(*args: Any, **kwargs: Any) -> Any:
            if self.state != "running":
                raise RuntimeError(f"{what}: the session is ending (no new timers after Terminating)")
            return fn(*args, **kwargs)
        checked.__name__ = checked.__qualname__ = what
        checked.__doc__ = fn.__doc__
        return checked

    # -- running scenario code
    def run_scenario(self, code) -> bool:
        """Execute the compiled scenario file into the namespace; False if it raised."""
        return self._guarded(lambda: exec(code, self.namespace), "loading the scenario")

    def _guarded(self, fn: Callable[[], Any], what: str,
                 on_result: Callable[[Any], Any] | None = None) -> bool:
        """Run scenario code as this session's, under the handler budget; False if it
        raised (the session then ends). ``on_result`` gets what it returned (for an
        ``async def`` handler: when it has finished)."""
        token = current.enter(self)
        began = time.perf_counter()
        metrics = getattr(self.engine, "metrics", None)
        try:
            with time_budget(self.engine.handler_budget):
                result = fn()
            if metrics is not None:
                metrics.handler_ran(time.perf_counter() - began, False)
            if inspect.iscoroutine(result):
                result = defer.ensureDeferred(self._budgeted_steps(result))
            if isinstance(result, defer.Deferred):
                if on_result is not None:
                    result.addCallback(on_result)
                result.addErrback(self._async_failure, what)
            elif on_result is not None:
                on_result(result)
            return True
        except BudgetExceeded as exc:
            if metrics is not None:
                metrics.handler_ran(time.perf_counter() - began, True)
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

    def _run_callback(self, fn: Callable[[], Any], what: str) -> None:
        """A timer's or HTTP request's callback: scenario code like a handler, while the
        session lives (a Terminating handler's request is still delivered)."""
        if self.state != "terminated":
            self._guarded(fn, what)

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
        # Passing a cap or the time budget is a limit; anything else, the scenario's error.
        self.terminate("limit" if isinstance(exc, (BudgetExceeded, LimitExceeded)) else "error")

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
                if event.name == AppEvents.HttpRequest:
                    self._http_request_event(target, event)
                    continue
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
        self.started()
        self.alerting(call)
        return call

    def started(self) -> None:
        """AppEvents.Started (with the session's access and log URLs); a session that has
        no call yet (started over the API, a conference room) may be idle from now on."""
        history = self.engine.history
        if history is not None:
            history.session_started(self.id, self.rule, self.scenario_path.name, self.created,
                                    self.custom_data)
        self.post(self.voxengine, Event(AppEvents.Started, session=self, session_id=self.id,
                                        access_url=self.access_url, log_url=self.log_url))
        self._check_idle()

    @property
    def access_url(self) -> str:
        """Where an HTTP request reaches this live session (``AppEvents.HttpRequest``)."""
        return f"{self.engine.http_base}/request/{self.id}/{self.secret}"

    @property
    def log_url(self) -> str:
        """The session's log over the management API (the API token is needed)."""
        return f"{self.engine.http_base}/api/sessions/{self.id}/log"

    def http_request(self, method: str, path: str, headers: dict[str, str],
                     content: bytes) -> defer.Deferred:
        """A request to the access URL: ``AppEvents.HttpRequest`` in this session. Fires
        with (status, headers, body) once a handler has replied or every handler has
        finished; a session that ends first answers what is still open with 404."""
        reply: defer.Deferred = defer.Deferred()
        if self.state != "running":
            reply.callback(_http_reply(404, None, "this session has ended\n"))
            return reply
        if not self.voxengine.listeners(AppEvents.HttpRequest):
            reply.callback(_http_reply(404, None, "this session does not listen for AppEvents.HttpRequest\n"))
            return reply
        self._open_replies.add(reply)
        reply.addBoth(lambda result: (self._open_replies.discard(reply), result)[1])
        self.post(self.voxengine, Event(AppEvents.HttpRequest, method=method, path=path,
                                        headers=headers, content=content, _reply=reply))
        return reply

    def _answer_open_replies(self) -> None:
        for reply in list(self._open_replies):
            if not reply.called:
                reply.callback(_http_reply(404, None, "this session has ended\n"))
        self._open_replies.clear()

    def _http_request_event(self, target: EventTarget, event: Event) -> None:
        reply: defer.Deferred = event.__dict__.pop("_reply")
        handlers = target.listeners(event.name)
        running = [len(handlers)]          # handlers (async ones included) not finished yet

        def answer(status: int = 200, headers: dict[str, str] | None = None,
                   body: str | bytes = b"") -> None:
            if not reply.called:
                reply.callback(_http_reply(status, headers, body))

        def finished(value: Any) -> None:
            # What a handler returns is the body (text, bytes, or JSON for anything else);
            # e.reply(status, headers, body) says everything. Nothing at all: 204.
            running[0] -= 1
            if value is not None:
                answer(200, None, value)
            elif running[0] == 0:
                answer(204)

        event.reply = answer
        for handler in handlers:
            if self.state != "running":
                break
            if not self._guarded(lambda h=handler: h(event), f"handler {_name(handler)} for {event.name}",
                                 on_result=finished):
                break
        if not reply.called and self.state != "running":
            if self.end_reason in ("error", "limit"):
                answer(500, {"Content-Type": "application/json"},
                       b'{"error": "the scenario failed while handling the request"}')
            else:
                answer(204)

    def alerting(self, call: Call) -> None:
        """An incoming call for the scenario: AppEvents.CallAlerting (and 180 Ringing unless it answers)."""
        self.post(self.voxengine, Event(
            AppEvents.CallAlerting, call=call, callerid=call.callerid, destination=call.destination,
            display_name=call.display_name, headers=call.headers()))
        # Phones expect to hear progress; the scenario may still decline or answer.
        self.engine.reactor.callLater(0, self._auto_ring, call)
        if self.limits.alerting_timeout > 0:
            call.alerting_timer = self.engine.reactor.callLater(self.limits.alerting_timeout,
                                                                self._unanswered, call)

    def _unanswered(self, call: Call) -> None:
        call.alerting_timer = None
        if call.state == CallState.ALERTING:
            self.log(f"{call.id} not answered within {self.limits.alerting_timeout:g} s: 480")
            call._failure = "no-answer"
            call.leg.reject(480, "Temporarily Unavailable")

    def _auto_ring(self, call: Call) -> None:
        if call.state == CallState.ALERTING:
            call.ring()

    def add_call(self, leg) -> Call:
        call = Call(self, leg)
        self.call_added(call)
        self.feed("sip", f"{call.id} INVITE from {call.callerid or '?'} to {call.destination}")
        return call

    def call_added(self, call: Call) -> None:
        """A call of this session, incoming or placed: the session is not idle."""
        self.calls.append(call)
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

    def _check_idle(self) -> None:
        if (self.state == "running" and self._idle_timer is None and self.limits.idle_timeout > 0
                and all(c.ended for c in self.calls)):
            self._idle_timer = self.engine.reactor.callLater(self.limits.idle_timeout, self._idle)

    def _idle(self) -> None:
        self._idle_timer = None
        if self.state == "running" and all(c.ended for c in self.calls):
            self.log(f"no call for {self.limits.idle_timeout:g} s: the session ends")
            self.terminate("timeout")

    def _too_long(self) -> None:
        self._life_timer = None
        if self.state == "running":
            self.log(f"the session reached its maximum length of {self.limits.max_duration:g} s")
            self.terminate("timeout")

    def net(self) -> Any:
        """This session's HTTP client (made on first use)."""
        if self._net is None:
            from voxlab.engine.net import Net

            self._net = Net(self.engine.reactor, max_concurrent=self.limits.http_concurrent,
                            max_total=self.limits.http_total)
            self._net.deliver = lambda fn, result: self._run_callback(
                lambda: fn(result), f"HTTP callback {_name(fn)}")
        return self._net

    def media_worker(self) -> Any:
        """The media worker this session's units live in (picked with its first unit), so
        its calls, players and routes stay inside one process."""
        worker = self._media_worker
        if worker is None or not worker.alive:
            worker = self._media_worker = self.engine.media.pick()
        return worker

    def call_ended(self, call: Call) -> None:
        timer = call.alerting_timer
        if timer is not None and timer.active():
            timer.cancel()
        call.alerting_timer = None
        self.engine.call_ended(call)
        self._check_idle()

    def check_running(self, what: str) -> None:
        """Refuse to start something (a call, a unit, a timer, a request) in a session that
        is ending: after Terminated only Logger works."""
        if self.state == "terminated" or (self.state == "terminating" and what != "Net"):
            raise RuntimeError(f"{what}: the session has ended (after Terminated only Logger works)")

    def terminate(self, reason: str = "normal") -> None:
        """End the session: Terminating (its handlers may still send one HTTP request, whose
        callback is delivered), hang up every call, release media, then Terminated.
        ``reason`` is its finish reason: normal, error, timeout, limit, shutdown or api."""
        if self.state != "running":
            return
        self.state = "terminating"
        self.end_reason = reason
        for timer in (self._idle_timer, self._life_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle_timer = self._life_timer = None
        self.timers.cancel_all()
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
        net = self._net
        if net is not None and net.in_flight:
            # The Terminating handler's request: delivered before Terminated, within a grace.
            waited = defer.DeferredList(net.pending(), consumeErrors=True)
            timer = self.engine.reactor.callLater(self.limits.terminating_grace, waited.cancel)
            waited.addBoth(lambda _: (timer.cancel() if timer.active() else None, self._finish()))
        else:
            self._finish()

    def _finish(self) -> None:
        # Next turn: a handler that ended the session may still return its reply.
        self.engine.reactor.callLater(0, self._answer_open_replies)
        self.state = "terminated"
        self.ended = time.time()
        if self._net is not None:
            self._net.close()
        for handler in self.voxengine.listeners(AppEvents.Terminated):
            self._guarded(lambda h=handler: h(Event(AppEvents.Terminated, session=self)),
                          "Terminated handler")
        self.feed("session", "terminated")
        history = self.engine.history
        if history is not None:
            history.session_ended(self.id, self.ended, self.end_reason or "normal")
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
        limit = self.limits.log_line
        if len(text) > limit:
            text = text[:limit] + f"... ({len(text) - limit} more characters cut)"
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now))
        for line in text.splitlines() or [""]:
            self.log_lines.append(f"{stamp} {line}")
        history = self.engine.history
        if history is not None:
            history.log(self.id, now, text)
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


def _http_reply(status: int, headers: dict[str, str] | None, body: str | bytes) -> tuple:
    if isinstance(body, str):
        body = body.encode("utf-8")
        headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
    elif not isinstance(body, (bytes, bytearray)):
        import json

        body = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", **(headers or {})}
    elif not any(k.lower() == "content-type" for k in (headers or {})):
        headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    return int(status), dict(headers or {}), bytes(body)



class SessionNet:
    """The ``Net`` of a scenario: VoxEngine's HTTP client, capped per session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def http_request_async(self, url: str, method: str = "GET", headers: Any = None,
                           post_data: str | bytes | None = None, timeout: float | None = None):
        """``Net.httpRequestAsync``: a Deferred (``await`` it) of the result: ``code``,
        ``text``, ``headers``, ``error`` (no answer, timeout ...: never an exception)."""
        self._session.check_running("Net")
        return self._session.net().http_request_async(url, method, headers, post_data, timeout)

    def http_request(self, url: str, callback: Callable[[Any], Any], method: str = "GET",
                     headers: Any = None, post_data: str | bytes | None = None,
                     timeout: float | None = None) -> None:
        """``Net.httpRequest(url, callback)``: ``callback(result)`` runs as a handler."""
        self._session.check_running("Net")
        self._session.net().http_request(url, callback, method, headers, post_data, timeout)

    def __repr__(self) -> str:
        return f"<Net of session {self._session.id}>"


class SessionStorage:
    """``ApplicationStorage``: persistent key-value data of this scenario's application
    (its file name), kept across sessions and restarts; every call returns a Deferred."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _store(self) -> Any:
        store = self._session.engine.app_storage(self._session.scenario_path.stem)
        if store is None:
            raise RuntimeError("ApplicationStorage needs the server's data directory")
        return store

    def get(self, key: str):
        """The value of ``key``, or None."""
        return self._store().get(key)

    def put(self, key: str, value: str, ttl: float | None = None):
        """Set ``key`` (``ttl``: seconds until it disappears)."""
        return self._store().put(key, value, ttl)

    def delete(self, key: str):
        """Remove ``key``; fires True when it existed."""
        return self._store().delete(key)

    def keys(self, prefix: str = ""):
        """The keys (those starting with ``prefix``), sorted."""
        return self._store().keys(prefix)

    def __repr__(self) -> str:
        return f"<ApplicationStorage {self._session.scenario_path.stem}>"
