"""The console's protocol logic, sans-IO: requests in, replies and pushed events out.

A :class:`ConsoleHub` belongs to one engine and is shared by every client
connection; a :class:`ConsoleConnection` is one client. The transport (Unix
socket, TCP, later WebSocket) decodes lines into dicts, calls
``connection.request(message)`` and writes whatever the connection hands to
its ``send`` callable. Nothing here touches sockets or the reactor, so the
web console reuses it as it is. Every op and event is listed in docs/console.md.
"""

from __future__ import annotations

import hmac
import itertools
import time
import traceback
from typing import Any, Callable

from twisted.logger import Logger

from voxlab import __version__
from voxlab.console import views
from voxlab.console.completion import complete
from voxlab.console.evaluator import describe_failure, evaluate, exit_info, safe_repr
from voxlab.console.protocol import PROTOCOL_VERSION
from voxlab.console.reloader import reload_scenario
from voxlab.engine import current
from voxlab.engine.call import Call

log = Logger(namespace="voxlab.console")

Send = Callable[[dict], None]

HELPER_NAMES = ("show", "ladder", "reload")

# Console code runs in the reactor thread: while it runs, every call of the server stalls
# (no media ticks, no SIP). So the console's default budget is shorter than the handlers'
# one; an eval may ask for more, up to the server's handler budget, never for no limit.
CONSOLE_BUDGET = 1.0

# show() lists at most this many of a call's digits (the most recent), and their count.
SHOW_DIGITS = 32


def _feed_lines(entry: dict) -> list[str]:
    """A feed entry as ``logs --feed`` prints it: ``HH:MM:SS kind    text`` (a line per text line)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(entry.get("t", time.time())))
    kind = entry.get("kind", "?")
    return [f"{stamp} {kind:<7} {line}" for line in (entry.get("text", "").splitlines() or [""])]


class ConsoleError(Exception):
    """A request that cannot be served; its message goes back as ``{"ok": false, "error": ...}``."""


class _Refused(ConsoleError):
    """Authentication failed: reply, then close the connection."""


class SessionHelpers:
    """The console helpers of one session (also reachable as ``__console__`` when a scenario
    defines a name such as ``show`` itself)."""

    def __init__(self, session: Any, digits: dict[str, tuple[int, str]] | None = None) -> None:
        self._session = session
        self._digits = digits if digits is not None else {}

    def show(self) -> None:
        """Print the session: calls (state, codec, duration, RTP stats, digits), media units and routes."""
        print(views.format_show(self._session, digits=self._digits))

    def ladder(self, call: Any = None) -> None:
        """Print a call's SIP message flow as a ladder (default: ``call``, else the first call).
        ``call`` is a call of this session or a call id."""
        session = self._session
        if call is None:
            call = session.namespace.get("call")
            if call not in session.calls:
                call = session.calls[0] if session.calls else None
            if call is None:
                print("this session has no calls")
                return
        elif isinstance(call, str):
            ident = call
            call = next((c for c in session.calls if c.id == ident), None)
            if call is None:
                known = ", ".join(c.id for c in session.calls)
                print(f"no call {ident!r} in this session "
                      + (f"(calls: {known})" if known else "(it has no calls)"))
                return
        elif not (call in session.calls or isinstance(call, Call)):
            raise TypeError(f"ladder() takes a call (e.g. calls[0]) or a call id (a str), "
                            f"not {type(call).__name__}")
        print(views.format_ladder(call))

    def reload(self) -> None:
        """Re-run the scenario file's current code in this live session (see docs/console.md)."""
        session = self._session
        if session.state != "running":
            raise RuntimeError(
                f"reload(): session {session.id} "
                + ("has ended" if session.state == "terminated" else f"is {session.state}")
                + ": there is no live code to update (new sessions run the file's current code anyway)")
        report = reload_scenario(session)
        session.feed("console", f"reloaded {session.scenario_path.name}")
        print(report)

    def __repr__(self) -> str:
        return f"<console helpers of session {self._session.id}: show(), ladder(call=None), reload()>"


class _SessionConsoleState:
    """What the console added to one session's namespace (so it never clobbers scenario names)."""

    def __init__(self, session: Any) -> None:
        # DTMF digits received per call id, for show(). The call counts RTP event packets
        # only (several per digit, none for SIP INFO), so the digits are taken from the
        # session's feed: what it already holds, then every new entry.
        self.digits: dict[str, tuple[int, str]] = {}      # call id -> (count, most recent digits)
        for entry in list(session.feed_history):
            self._on_feed(entry)
        session.feed_listeners.append(self._on_feed)
        self.helpers = SessionHelpers(session, self.digits)
        self.owned: dict[str, Any] = {}      # name -> the object the console put there

    def _on_feed(self, entry: dict) -> None:
        if entry.get("kind") != "dtmf":
            return
        call_id, sep, digit = entry.get("text", "").partition(" DTMF ")
        if sep and digit:
            count, recent = self.digits.get(call_id, (0, ""))
            self.digits[call_id] = (count + 1, (recent + digit)[-SHOW_DIGITS:])

    def install(self, namespace: dict[str, Any]) -> None:
        namespace.setdefault("__console__", self.helpers)
        for name in HELPER_NAMES:
            if name not in namespace:
                namespace[name] = getattr(self.helpers, name)
                self.owned[name] = namespace[name]

    def set_call(self, namespace: dict[str, Any], call: Any) -> None:
        """Bind ``call`` for one connection unless the scenario owns a global of that name."""
        if "call" not in namespace or ("call" in self.owned and namespace["call"] is self.owned["call"]):
            namespace["call"] = call
            self.owned["call"] = call


class ConsoleHub:
    """Per-engine console state: finds sessions, feeds media route changes to sessions, fans out session ends."""

    def __init__(self, engine: Any, budget: float | None = None, token: str | None = None) -> None:
        self.engine = engine
        # The most an eval may ask for: the handlers' budget (console code always has one,
        # even on a server whose handlers run unlimited).
        self.max_budget = budget if budget is not None else (getattr(engine, "handler_budget", 0) or 5.0)
        self.budget = min(CONSOLE_BUDGET, self.max_budget)      # an eval's budget by default
        self.token = token
        self.connections: set[ConsoleConnection] = set()
        self._states: dict[str, _SessionConsoleState] = {}
        self._deferreds = itertools.count(1)
        engine.graph.listeners.append(self._route_changed)
        engine.session_listeners.append(self._session_event)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()

    def close(self) -> None:
        """Forget every connection and unhook from the engine."""
        self.close_connections()
        if self._route_changed in self.engine.graph.listeners:
            self.engine.graph.listeners.remove(self._route_changed)
        if self._session_event in self.engine.session_listeners:
            self.engine.session_listeners.remove(self._session_event)

    def next_deferred_number(self) -> int:
        return next(self._deferreds)

    # -- engine hooks
    def _route_changed(self, kind: str, src: Any, dst: Any) -> None:
        """Media graph route changes become 'media' entries in the feed of the session(s) they touch."""
        for session in list(self.engine.sessions.values()):
            units = session.units.values()
            if any(u is src or u is dst for u in units):
                session.feed("media", f"{kind} {src.name} -> {dst.name}")

    def _session_event(self, what: str, session: Any) -> None:
        if what == "started":
            self.state_of(session)          # from the start: it counts the session's DTMF digits
        if what == "ended":
            # keep the console state of sessions still inspectable (engine.ended), drop older ones
            keep = {s.id for s in self.engine.ended} | set(self.engine.sessions)
            for sid in [sid for sid in self._states if sid not in keep]:
                del self._states[sid]
        for conn in list(self.connections):
            conn.session_event(what, session)
        if what == "started":
            # the engine adds the first call right after announcing the session: attach after that
            self.engine.reactor.callLater(0, self._announce_started, session)

    def _announce_started(self, session: Any) -> None:
        for conn in list(self.connections):
            if not conn.closed:
                conn.session_started(session)

    # -- lookups
    def all_sessions(self) -> list[Any]:
        return list(self.engine.sessions.values()) + [s for s in reversed(self.engine.ended)]

    def find(self, ident: str | None) -> tuple[Any, Any]:
        """A session and optional call from a session id, a call id, a unique 'sN' prefix or 'last'."""
        if ident in (None, "", "last", "--last"):
            live = sorted(self.engine.sessions.values(), key=lambda s: s.created)
            if not live:
                raise ConsoleError("no live sessions (make a call first, or attach to an ended one by id)")
            # A session whose scenario never terminates outlives its calls: prefer
            # the latest one that still has a call up, which is what a user means.
            with_calls = [s for s in live if any(not c.ended for c in s.calls)]
            return (with_calls or live)[-1], None
        ident = str(ident)
        candidates = self.all_sessions()
        for session in candidates:
            if session.id == ident:
                return session, None
        for session in candidates:
            for call in session.calls:
                if call.id == ident:
                    return session, call
        prefixed = [s for s in candidates if s.id.startswith(ident + "-")]
        if len(prefixed) == 1:
            return prefixed[0], None
        if len(prefixed) > 1:
            raise ConsoleError(f"{ident!r} is ambiguous: {', '.join(s.id for s in prefixed)}")
        raise ConsoleError(f"no session or call {ident!r} (see: voxlab sessions)")

    def state_of(self, session: Any) -> _SessionConsoleState:
        state = self._states.get(session.id)
        if state is None:
            state = self._states[session.id] = _SessionConsoleState(session)
        return state


class ConsoleConnection:
    """One console client: handles its requests, pushes its events through ``send``."""

    def __init__(self, hub: ConsoleHub, send: Send, close: Callable[[], None] | None = None,
                 authenticated: bool = False, peer: str = "?") -> None:
        self.hub = hub
        self._send = send
        self._close = close
        self.authenticated = authenticated
        self.peer = peer
        self.session: Any = None
        self.call: Any = None
        self.watching = False
        self._watched: Any = None
        self._followed: dict[str, Any] = {}        # session id -> session, for logs --follow
        self._follow_feed: dict[str, bool] = {}    # session id -> follow its whole feed (logs --feed)
        self._pending_attach: tuple[dict, Any] | None = None
        self.closed = False
        hub.connections.add(self)

    # -- output
    def send(self, message: dict) -> None:
        if not self.closed:
            self._send(message)

    def push(self, event: str, **fields: Any) -> None:
        self.send({"event": event, **fields})

    def close(self) -> None:
        """Forget this connection (the transport calls this when the client goes away)."""
        if self.closed:
            return
        if self.session is not None:
            log.info("console: {peer} detached from {session} (connection closed)", peer=self.peer,
                     session=self.session.id)
            self.session = None
        self._unwatch()
        self._cancel_pending_attach()
        for session in self._followed.values():
            if self._on_log in session.feed_listeners:
                session.feed_listeners.remove(self._on_log)
        self._followed.clear()
        self._follow_feed.clear()
        self.closed = True
        self.hub.connections.discard(self)

    def _drop(self) -> None:
        self.close()
        if self._close is not None:
            self._close()

    # -- input
    def request(self, message: dict) -> None:
        """Handle one decoded request; the reply (same ``id``) goes out through ``send``."""
        rid = message.get("id")
        op = message.get("op")
        if not self.authenticated and op not in ("hello", "auth"):
            log.warn("console: refused unauthenticated {op!r} request from {peer}", op=op, peer=self.peer)
            self.send({"id": rid, "ok": False, "error": "authentication required: send "
                                                        '{"op": "hello", "token": ...} first'})
            self._drop()
            return
        if not isinstance(op, str):
            self.send({"id": rid, "ok": False, "error": "missing 'op'"})
            return
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            self.send({"id": rid, "ok": False, "error": f"unknown op {op!r}"})
            return
        try:
            reply = handler(message)
        except _Refused as exc:
            self.send({"id": rid, "ok": False, "error": str(exc)})
            self._drop()
            return
        except ConsoleError as exc:
            self.send({"id": rid, "ok": False, "error": str(exc)})
            return
        except Exception as exc:
            log.failure("console op {op} failed", op=op)
            self.send({"id": rid, "ok": False, "error": f"internal error: {exc!r}",
                       "traceback": traceback.format_exc()})
            return
        if reply is None:
            return          # answered later (attach waiting for the next session)
        after = reply.pop("_after", None)
        self.send({"id": rid, "ok": True, **reply})
        if after is not None:
            after()

    # -- ops
    def op_hello(self, m: dict) -> dict:
        if not self.authenticated:
            token = m.get("token")
            expected = self.hub.token
            if not expected or not isinstance(token, str) or not hmac.compare_digest(
                    token.encode(), expected.encode()):
                log.warn("console: refused connection from {peer}: {why}", peer=self.peer,
                         why="no token" if not token else "wrong token")
                raise _Refused("authentication failed: wrong or missing token")
            self.authenticated = True
            log.info("console: {peer} authenticated with the token", peer=self.peer)
        return {"server": f"voxlab {__version__}", "protocol": PROTOCOL_VERSION,
                "sessions": len(self.hub.engine.sessions)}

    op_auth = op_hello

    def op_ping(self, m: dict) -> dict:
        return {"t": time.time()}

    def op_sessions(self, m: dict) -> dict:
        live = sorted(self.hub.engine.sessions.values(), key=lambda s: s.created)
        limit = int(m.get("ended_limit", 20))
        ended = list(self.hub.engine.ended)[-limit:] if limit > 0 else []
        return {"sessions": [views.session_info(s, detail=bool(m.get("detail", True))) for s in live],
                "ended": [views.session_info(s, detail=False) for s in reversed(ended)],
                "scenario_errors": self._scenario_errors()}

    def _scenario_errors(self) -> dict[str, str]:
        catalog = getattr(self.hub.engine, "scenarios", None)
        return {str(p): e for p, e in getattr(catalog, "errors", {}).items()}

    def op_routes(self, m: dict) -> dict:
        """The routing table in force, with the scenario files that do not compile."""
        return self.hub.engine.scenarios.summary()

    def op_attach(self, m: dict) -> dict | None:
        target = m.get("target")
        wait = float(m.get("wait") or 0)
        if m.get("next") or (wait > 0 and target in (None, "", "last", "--last")
                             and not self.hub.engine.sessions):
            # Reply when the next session starts (e.g. attach first, then place the call).
            self._cancel_pending_attach()
            timer = None
            if wait > 0:
                timer = self.hub.engine.reactor.callLater(wait, self._attach_timeout, m)
            self._pending_attach = (m, timer)
            return None
        session, call = self.hub.find(target)
        return self._attach(m, session, call)

    def _attach(self, m: dict, session: Any, call: Any) -> dict:
        self._unwatch()
        self.session = session
        self.call = call if call is not None else (session.calls[0] if session.calls else None)
        state = self.hub.state_of(session)
        state.install(session.namespace)
        state.set_call(session.namespace, self.call)
        if m.get("watch"):
            self._watch(int(m.get("history", 0)))
        log.info("console: {peer} attached to {session}", peer=self.peer, session=session.id)
        return {"session": views.session_info(session), "call": self.call.id if self.call else None,
                "banner": self._banner(), "budget": self.hub.budget}

    def _cancel_pending_attach(self) -> None:
        pending, self._pending_attach = self._pending_attach, None
        if pending is not None and pending[1] is not None and pending[1].active():
            pending[1].cancel()

    def _attach_timeout(self, m: dict) -> None:
        if self._pending_attach is not None and self._pending_attach[0] is m:
            self._pending_attach = None
            self.send({"id": m.get("id"), "ok": False,
                       "error": f"no session started within {float(m.get('wait')):g} s"})

    def session_started(self, session: Any) -> None:
        """A new session began: complete a waiting attach (once the call is in place)."""
        if self._pending_attach is None:
            return
        m, timer = self._pending_attach
        self._cancel_pending_attach()
        try:
            reply = self._attach(m, session, None)
        except Exception as exc:
            log.failure("console attach failed")
            self.send({"id": m.get("id"), "ok": False, "error": f"internal error: {exc!r}"})
            return
        self.send({"id": m.get("id"), "ok": True, **reply})

    def _banner(self) -> str:
        s = self.session
        ns = s.namespace
        ended = s.state == "terminated"
        helpers = [f"{n}()" if ns.get(n) == getattr(self.hub.state_of(s).helpers, n, None) else
                   f"__console__.{n}()" for n in HELPER_NAMES
                   if not (ended and n == "reload")]      # nothing live to reload into
        where = (f"attached to session {s.id} ({s.scenario_path.name}, {s.state}"
                 + (f": {s.end_reason}" if s.end_reason else "") + ")")
        if self.call is not None:
            call_line = f"call = {self.call.id} ({self.call.state})"
            if ns.get("call") is not self.call:
                call_line += " [the scenario defines its own global 'call': use calls[...]]"
        else:
            call_line = "call = None (the session has no calls yet)"
        lines = [where, call_line,
                 f"names: session, calls, units, call; helpers: {', '.join(helpers).replace('ladder()', 'ladder(call)')}"]
        if ended:
            lines.insert(1, "this session has ended: you can inspect it, its calls are gone.")
            lines.append("Ctrl-D leaves.")
        else:
            lines.append("Ctrl-D detaches (the session keeps running).")
        return "\n".join(lines)

    def op_detach(self, m: dict) -> dict:
        detached = self.session.id if self.session is not None else None
        if detached:
            log.info("console: {peer} detached from {session}", peer=self.peer, session=detached)
        self._unwatch()
        self.session = None
        self.call = None
        return {"session": detached}

    def _require_session(self) -> Any:
        if self.session is None:
            raise ConsoleError("not attached: send {\"op\": \"attach\"} first")
        return self.session

    def _prepare(self) -> None:
        session = self.session
        state = self.hub.state_of(session)
        state.install(session.namespace)
        state.set_call(session.namespace, self.call)

    def op_eval(self, m: dict) -> dict:
        session = self._require_session()
        source = m.get("source")
        if not isinstance(source, str):
            raise ConsoleError("eval needs 'source' (a string)")
        budget = self._budget(m.get("budget"))
        self._prepare()
        ns = session.namespace
        outcome = evaluate(source, ns, session=session, budget=budget)
        # `call = calls[1]` at the prompt re-targets this connection.
        bound = ns.get("call")
        state = self.hub.state_of(session)
        if bound is not self.call and state.owned.get("call") is not bound and bound in session.calls:
            self.call = bound
            state.owned["call"] = bound
        reply: dict[str, Any] = {"output": outcome.output, "error": outcome.error,
                                 "interrupted": outcome.interrupted, "result": None, "deferred": None,
                                 "budget": budget, "exit": outcome.exit}
        if outcome.deferred is not None:
            number = self.hub.next_deferred_number()
            reply["result"] = f"<Deferred #{number}>"
            reply["deferred"] = number
            d = outcome.deferred
            sid = session.id

            def deliver() -> None:
                # After the reply: what the cell prints after an await, then how it ended.
                if outcome.later is not None:
                    outcome.later.listen(lambda text: self.push("output", n=number, session=sid, text=text))
                d.addCallbacks(self._deferred_result, self._deferred_failure,
                               callbackArgs=(number, sid), errbackArgs=(number, sid))
                if outcome.owned:
                    # The console's own Deferred (the cell's coroutine): nobody else can see it, and
                    # its failure was just reported, so it is handled (no "Unhandled error" later).
                    d.addErrback(lambda failure: None)
            reply["_after"] = deliver
        elif outcome.has_value:
            reply["result"] = safe_repr(outcome.value)
        return reply

    def _budget(self, requested: Any) -> float:
        """The budget of one eval: the console's default, or what the client asks for up to the
        server's maximum. Asking for no limit (0, negative) is an error, not a way around it."""
        if requested is None:
            return self.hub.budget
        if isinstance(requested, bool) or not isinstance(requested, (int, float)):
            raise ConsoleError("'budget' must be a number of seconds")
        if not requested > 0:          # also NaN
            raise ConsoleError(f"'budget' must be more than 0 s (at most {self.hub.max_budget:g} s)")
        return min(float(requested), self.hub.max_budget)

    def _deferred_result(self, result: Any, number: int, session_id: str) -> Any:
        self.push("deferred", n=number, session=session_id, result=safe_repr(result), error=None,
                  interrupted=False)
        return result

    def _deferred_failure(self, failure: Any, number: int, session_id: str) -> Any:
        error, interrupted = describe_failure(failure)
        self.push("deferred", n=number, session=session_id, result=None, error=error,
                  interrupted=interrupted,
                  exit=exit_info(failure.value) if isinstance(failure.value, SystemExit) else None)
        # Only observed: a Deferred of the user's code goes on failing for its own callbacks
        # (like Twisted's manhole); the console's own ones are consumed by the caller.
        return failure

    def op_complete(self, m: dict) -> dict:
        source = m.get("source", "")
        cursor = m.get("cursor")
        if self.session is not None:
            self._prepare()
            token = current.enter(self.session)
            try:
                items = complete(source, cursor, self.session.namespace)
            finally:
                current.leave(token)
        else:
            items = complete(source, cursor, {})
        return {"completions": items}

    def op_summary(self, m: dict) -> dict:
        session = self._require_session()
        return {"session": views.session_info(session, detail=False),
                "call": self.call.id if self.call else None}

    def op_watch(self, m: dict) -> dict:
        self._require_session()
        if m.get("on", True):
            self._watch(int(m.get("history", 0)))
        else:
            self._unwatch()
        return {"watching": self.watching}

    def _watch(self, history: int) -> None:
        session = self.session
        if self._watched is not session:
            self._unwatch()
            session.feed_listeners.append(self._on_feed)
            self._watched = session
        self.watching = True
        if history > 0:
            for entry in list(session.feed_history)[-history:]:
                self.push("feed", entry=entry, history=True)

    def _unwatch(self) -> None:
        watched, self._watched = self._watched, None
        self.watching = False
        if watched is not None and self._on_feed in watched.feed_listeners:
            watched.feed_listeners.remove(self._on_feed)

    def _on_feed(self, entry: dict) -> None:
        self.push("feed", entry=entry)

    def session_event(self, what: str, session: Any) -> None:
        if what == "ended" and self.session is session:
            self.push("session_ended", session=session.id, reason=session.end_reason,
                      summary=views.session_info(session, detail=False))
        if what == "ended" and session.id in self._followed:
            self._followed.pop(session.id)
            self._follow_feed.pop(session.id, None)
            if self._on_log in session.feed_listeners:
                session.feed_listeners.remove(self._on_log)
            self.push("log_end", session=session.id, reason=session.end_reason)

    def op_hangup(self, m: dict) -> dict:
        ident = m.get("call") or m.get("target")
        if not ident:
            raise ConsoleError("hangup needs 'call' (a call id, or a session id for all its calls)")
        session, call = self.hub.find(ident)
        if session.state == "terminated":
            raise ConsoleError(f"session {session.id} has already ended")
        calls = [call] if call is not None else [c for c in session.calls
                                                 if c.state not in ("DISCONNECTED", "FAILED")]
        if not calls:
            raise ConsoleError(f"{ident}: no call to hang up")
        token = current.enter(session)
        try:
            for c in calls:
                if c.state in ("DISCONNECTED", "FAILED"):
                    raise ConsoleError(f"call {c.id} has already ended ({c.state})")
                c.hangup()
        finally:
            current.leave(token)
        ids = ", ".join(c.id for c in calls)
        session.feed("console", f"hangup requested from the console: {ids}")
        log.info("console: {peer} hung up {calls}", peer=self.peer, calls=ids)
        return {"calls": [c.id for c in calls]}

    def op_ladder(self, m: dict) -> dict:
        """A call's SIP message flow as data (the web console draws it; ``ladder()`` in the
        REPL prints the same as text): ``entries`` of ``{at, direction, summary, target}``."""
        ident = m.get("call")
        if not ident:
            raise ConsoleError("ladder needs 'call' (a call id)")
        session, call = self.hub.find(ident)
        if call is None:
            raise ConsoleError(f"{ident} is a session, not a call")
        entries = list(getattr(getattr(call, "leg", None), "ladder", []) or [])
        return {"call": call.id, "entries": [{"at": e.at, "direction": e.direction,
                                              "summary": e.summary, "target": e.target}
                                             for e in entries]}

    def op_logs(self, m: dict) -> dict:
        ident = m.get("session") or m.get("target")
        session, _ = self.hub.find(ident) if ident else (self._require_session(), None)
        feed = bool(m.get("feed"))
        if feed:
            lines = [line for entry in list(session.feed_history) for line in _feed_lines(entry)]
        else:
            lines = list(session.log_lines)
        count = m.get("lines")
        if isinstance(count, int) and count >= 0:
            lines = lines[-count:] if count else []
        following = False
        if m.get("follow"):
            if session.state == "terminated":
                following = False
            else:
                if session.id not in self._followed:
                    self._followed[session.id] = session
                    session.feed_listeners.append(self._on_log)
                self._follow_feed[session.id] = feed
                following = True
        return {"session": session.id, "state": session.state, "lines": lines, "following": following}

    def _on_log(self, entry: dict) -> None:
        if entry.get("kind") != "log" and not self._follow_feed.get(entry.get("session")):
            return
        if self._follow_feed.get(entry.get("session")):
            lines = _feed_lines(entry)
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(entry.get("t", time.time())))
            lines = [f"{stamp} {line}" for line in (entry.get("text", "").splitlines() or [""])]
        self.push("log", session=entry.get("session"), lines=lines)
