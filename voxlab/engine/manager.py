"""The engine: routes incoming calls to new sessions and owns what sessions share
(the media plane and its mirror graph, compiled scenarios, loaded audio)."""

from __future__ import annotations

import collections
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from voxlab.engine.limits import SessionLimits
from voxlab.engine.scenarios import ScenarioCatalog
from voxlab.engine.session import Session
from voxlab.engine.mediaplane import MediaPlane

log = Logger()

SCENARIO_POLL_SECONDS = 1.0


class Engine:
    """Creates a session per incoming call and keeps the live and recently ended ones."""

    def __init__(self, reactor, scenarios: ScenarioCatalog, media_host: str,
                 rtp_low: int, rtp_high: int, codecs: tuple[str, ...] = ("PCMU", "PCMA"),
                 handler_budget: float | None = None, media_workers: int = 1,
                 data_dir: Path | None = None, limits: SessionLimits | None = None) -> None:
        self.reactor = reactor
        self.sip_ua = None             # the UserAgent outgoing calls are placed from (set by the service)
        self.media_host = media_host
        self.codecs = codecs
        self.limits = limits or SessionLimits()
        if handler_budget is not None:
            self.limits = replace(self.limits, handler_budget=handler_budget)
        self.handler_budget = self.limits.handler_budget
        self.http_base = "http://127.0.0.1:8088"   # where access URLs point (set by the service)
        self.history: Any = None       # a voxlab.store.history.History (set by the service)
        self.storage_db: Any = None    # the DatabaseThread of ApplicationStorage (set by the service)
        self.metrics: Any = None       # hooks call_ended / session_ended / handler_ran (voxlab.http.metrics)
        self._storages: dict[str, Any] = {}
        self.accepting = True          # False while stopping: new calls get 503
        self._all_ended: defer.Deferred | None = None   # fires when stop() has no session left
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.media = MediaPlane(reactor, media_host, rtp_low, rtp_high, media_workers,
                                data_dir=self.data_dir)
        self.graph = self.media.graph
        self.scenarios = scenarios
        self._watch: LoopingCall | None = None
        self.sessions: dict[str, Session] = {}
        self.rooms: dict[str, Session] = {}     # conference room -> the session that owns it
        self.ended: collections.deque[Session] = collections.deque(maxlen=200)
        self.session_listeners: list[Callable[[str, Session], None]] = []
        self.stats = {"sessions": 0, "calls": 0, "not_found": 0, "failed_sessions": 0}

    @property
    def routing(self):
        """The routing rules in force (they change when the scenarios folder does)."""
        return self.scenarios.rules

    def start(self) -> None:
        self.media.start()
        # New, removed and edited scenario files and routes.toml are picked up
        # within a second, without a restart.
        self._watch = LoopingCall(self._refresh_scenarios)
        self._watch.clock = self.reactor
        self._watch.start(SCENARIO_POLL_SECONDS, now=False)

    def _refresh_scenarios(self) -> None:
        try:
            self.scenarios.refresh()
        except Exception:
            log.failure("reading the scenarios folder failed")

    def stop(self):
        """End every session, then the media workers; a Deferred that fires when they are gone."""
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self.accepting = False
        for session in list(self.sessions.values()):
            session.terminate("shutdown")
        # Sessions still finishing (a Terminating handler's HTTP request) keep their media
        # until they are done, within their grace.
        waiting: defer.Deferred = defer.Deferred()
        self._all_ended = waiting
        grace = self.reactor.callLater(self.limits.terminating_grace + 1.0,
                                       lambda: waiting.called or waiting.callback(None))
        self._maybe_all_ended()
        waiting.addCallback(lambda _: grace.cancel() if grace.active() else None)
        waiting.addCallback(lambda _: self.media.stop())
        return waiting

    def _maybe_all_ended(self) -> None:
        waiting = self._all_ended
        if waiting is not None and not waiting.called and not self.sessions:
            waiting.callback(None)

    def end_calls_with(self, peers: set[tuple[str, int]], reason: str) -> list[str]:
        """End every live call whose SIP peer is at one of ``peers`` (host, port), now, with
        ``reason``: the peers are gone (a WebRTC gateway worker died with its phones), so
        waiting for their BYE or an RTP timeout would leave the calls up for nothing. Their
        registrations go too, so that ``call_user`` no longer rings them. The ids ended."""
        registrar = getattr(self.sip_ua, "registrar", None)
        if registrar is not None:
            for b in registrar.directory.all_bindings():
                if (b.host, b.port) in peers:
                    registrar.directory.remove_binding(b.user, b.contact)
        ended = []
        for session in list(self.sessions.values()):
            for call in list(session.calls):
                source = getattr(getattr(call, "leg", None), "source", None)
                if source is None or call.ended or (source.host, source.port) not in peers:
                    continue
                try:
                    call.peer_lost(reason)
                except Exception:      # one call's trouble must not keep the others up
                    log.failure("ending {call} after its peer was lost", call=call.id)
                ended.append(call.id)
        return ended

    # -- IncomingCallHandler (from the SIP user agent)
    def incoming_call(self, leg) -> None:
        self.stats["calls"] += 1
        destination = leg.destination
        if not self.accepting:
            leg.reject(503, "Service Unavailable (shutting down)", headers=[("Retry-After", "30")])
            return
        rule = self.scenarios.rule_for(destination)
        if rule is None and self._is_user(destination):
            # A registered user's name that no rule claims: ring their phones (user.py).
            rule = self.scenarios.rule_for("user")
        if rule is None:
            self.stats["not_found"] += 1
            log.info("no routing rule matches {user!r}: 404", user=destination)
            leg.reject(404, "Not Found")
            return
        if rule.auth and not self._authenticated(leg):
            return
        path = rule.scenario
        try:
            code = self.scenarios.get(path)
        except Exception:       # unreadable, not UTF-8, syntax error ... (logged by the catalog)
            log.info("call to {user!r}: scenario {path} is broken: 500", user=destination, path=str(path))
            leg.reject(500, "Scenario Error")
            return
        session = self._run_session(path, code, rule=rule.pattern.pattern)
        if session is None:
            leg.reject(500, "Scenario Error")
            return
        session.start(leg)

    def _run_session(self, path: Path, code: Any, **kw: Any) -> Session | None:
        """A new session of scenario ``path`` (compiled ``code``), listed and announced, its
        file executed; None when that raised (the session has ended itself)."""
        session = Session(self, path, **kw)
        self.sessions[session.id] = session
        self.stats["sessions"] += 1
        self._notify("started", session)
        return session if session.run_scenario(code) else None

    def _authenticated(self, leg) -> bool:
        """A route with ``auth = true``: the INVITE must carry a digest of a registered user
        (RFC 3261 22.3, a proxy-style 407 so that it works through proxies too). False when
        it was answered with the challenge or a 403."""
        registrar = getattr(self.sip_ua, "registrar", None)
        if registrar is None:
            leg.reject(403, "Forbidden (this route needs a registered user; no users are set up)")
            return False
        outcome = registrar.authenticate(leg.invite, "Proxy-Authorization")
        if outcome.status:
            if outcome.status == 403:
                log.info("call to {user!r} refused: {reason}", user=leg.destination, reason=outcome.reason)
            leg.reject(outcome.status, outcome.reason, headers=outcome.headers)
            return False
        leg.user = outcome.user
        return True

    def _is_user(self, name: str) -> bool:
        registrar = getattr(self.sip_ua, "registrar", None)
        return bool(name) and registrar is not None and registrar.directory.password(name) is not None

    def start_room(self, room: str) -> Session:
        """A session for conference ``room`` (``VoxEngine.call_conference``), by the routing rule
        for the room's name; LookupError when none routes it or its scenario is broken."""
        path = self.scenarios.match(room)
        if path is None:
            raise LookupError(f"no routing rule matches conference room {room!r}")
        try:
            code = self.scenarios.get(path)
        except Exception:
            raise LookupError(f"the scenario of conference room {room!r} ({path.name}) is broken") from None
        session = self._run_session(path, code, custom_data=room, rule="room")
        if session is None:
            raise LookupError(f"the scenario of conference room {room!r} ({path.name}) failed to start")
        self.rooms[room] = session
        log.info("conference room {room!r}: session {session} ({scenario})", room=room,
                 session=session.id, scenario=path.name)
        session.started()
        return session

    def start_session(self, rule: str | None = None, scenario: str | None = None,
                      custom_data: str = "") -> Session:
        """A session started over the API: by the routing rule matching ``rule`` (a dialled
        name) or by ``scenario``, a file in the scenarios folder. It has no call of its own
        (it may place some); LookupError / ValueError say why it cannot start."""
        if not self.accepting:
            raise RuntimeError("the server is shutting down")
        if (rule is None) == (scenario is None):
            raise ValueError("give either 'rule' (a dialled name) or 'scenario' (a file name)")
        if rule is not None:
            path = self.scenarios.match(str(rule))
            if path is None:
                raise LookupError(f"no routing rule matches {rule!r}")
        else:
            name = str(scenario)
            if "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"a scenario is a file name in the scenarios folder, not {name!r}")
            path = self.scenarios.scenarios_dir / (name if name.endswith(".py") else name + ".py")
            if not path.is_file():
                raise LookupError(f"no scenario file {path.name} in {self.scenarios.scenarios_dir}")
        try:
            code = self.scenarios.get(path)
        except Exception as exc:
            raise ValueError(f"scenario {path.name} is broken: {exc}") from None
        session = self._run_session(path, code, custom_data=str(custom_data), rule="api")
        if session is None:
            raise ValueError(f"scenario {path.name} failed to start (see the session log)")
        session.started()
        return session

    def app_storage(self, app: str) -> Any:
        """The ApplicationStorage of application ``app`` (None without a data directory)."""
        if self.storage_db is None:
            return None
        store = self._storages.get(app)
        if store is None:
            from voxlab.store.appstorage import ApplicationStorage

            store = self._storages[app] = ApplicationStorage(self.storage_db, app)
        return store

    def call_ended(self, call) -> None:
        if self.metrics is not None:
            self.metrics.call_ended(call)
        history = self.history
        if history is None:
            return
        invite = call.leg.invite
        history.call_ended(call.session.id, call.id, call.direction, str(invite.from_addr.uri),
                           str(invite.uri), call.codec or "", call.created, call.connected_at,
                           call.ended_at or call.created, call.final_code, call.end_reason or "",
                           call.duration)

    def session_ended(self, session: Session) -> None:
        for room in [r for r, owner in self.rooms.items() if owner is session]:
            del self.rooms[room]
        if self.sessions.pop(session.id, None) is not None:
            if self.metrics is not None:
                self.metrics.session_ended(session)
            if session.end_reason == "error":
                self.stats["failed_sessions"] += 1
            if len(self.ended) == self.ended.maxlen:
                self.ended[0].dispose()
            self.ended.append(session)
            self._notify("ended", session)
            self._maybe_all_ended()

    def _notify(self, what: str, session: Session) -> None:
        for listener in list(self.session_listeners):
            try:
                listener(what, session)
            except Exception:
                log.failure("session listener failed")

    # -- lookups
    def find(self, ident: str) -> tuple[Session | None, Any]:
        """A live session by id, or the session of a call id (with that call)."""
        if ident in self.sessions:
            return self.sessions[ident], None
        for session in self.sessions.values():
            for call in session.calls:
                if call.id == ident:
                    return session, call
        return None, None
