"""The console's sans-IO pieces in-process: framing, evaluation, completion, input rules,
reload semantics and the connection's authentication. (The e2e tests cover the same
through real sockets; these pin down the edge cases quickly.)"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import os
import textwrap
import time
import types
from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from voxlab.console.attach import AttachSession, input_is_complete, next_indent
from voxlab.console.completion import complete
from voxlab.console.core import ConsoleConnection, ConsoleHub
from voxlab.console.evaluator import evaluate
from voxlab.console.protocol import LineDecoder, ProtocolError, decode, encode
from voxlab.console.reloader import FAILED_NOTE
from voxlab.console.service import ConsoleProtocol
from voxlab.engine.events import AppEvents, Event, EventTarget
from voxlab.engine.limits import SessionLimits
from voxlab.engine.scenarios import ScenarioCatalog
from voxlab.engine.session import Session
from voxlab.media.graph import MediaGraph


# -- framing
def test_line_decoder_splits_and_reports_bad_lines():
    d = LineDecoder(max_line=64)
    out = list(d.feed(b'{"a": 1}\n{"b"'))
    assert out == [{"a": 1}]
    out = list(d.feed(b': "\xc3\xa9"}\n\nnot json\n[1]\n'))
    assert out[0] == {"b": "é"}
    assert isinstance(out[1], ProtocolError) and isinstance(out[2], ProtocolError)
    assert isinstance(next(iter(d.feed(b"x" * 100))), ProtocolError)     # too long, no newline
    assert decode(encode({"s": "line\nbreak"})) == {"s": "line\nbreak"}
    assert encode({"x": object()}).count(b"\n") == 1                      # unserialisable -> repr


# -- evaluation
def test_evaluate_statements_values_output_and_errors():
    ns: dict = {}
    r = evaluate("a = 2\nprint('a is', a)\na * 21", ns)
    assert (r.output, r.value, r.has_value, r.error) == ("a is 2\n", 42, True, None)
    assert ns["a"] == 2 and "__console_value__" not in ns
    assert evaluate("None", ns).has_value is False
    assert evaluate("", ns).error is None
    r = evaluate("def f():\n    raise KeyError('k')\nf()", ns)
    assert "KeyError: 'k'" in r.error and "raise KeyError('k')" in r.error   # the source line is shown
    assert "evaluator.py" not in r.error
    assert "SyntaxError" in evaluate("def (", ns).error
    assert "SystemExit" in evaluate("raise SystemExit(3)", ns).error


def test_evaluate_budget_interrupts_a_loop():
    r = evaluate("n = 0\nwhile True:\n    n += 1", {}, budget=0.2)
    assert r.interrupted and "BudgetExceeded" in r.error
    assert "budget.py" not in r.error


def test_evaluate_deferreds_and_await():
    ns: dict = {"defer": defer}
    d = defer.Deferred()
    ns["d"] = d
    r = evaluate("d", ns)
    assert r.deferred is d
    clock = task.Clock()
    ns["clock"] = clock
    ns["task"] = task
    r = evaluate("x = await task.deferLater(clock, 1, lambda: 20)\nx + 1", ns)
    assert r.deferred is not None and not r.deferred.called
    results = []
    r.deferred.addCallback(results.append)
    clock.advance(1)
    assert results == [21] and ns["x"] == 20


# -- completion
class Thing:
    """A thing."""

    @property
    def boom(self):
        raise AssertionError("completion must not run properties")

    def send_media_to(self, target):
        """Route audio."""

    def send_digits(self, digits):
        pass

    def _private(self):
        pass


def test_completion_attributes_names_and_safety():
    calls_made = []
    ns = {"call": Thing(), "calls": [Thing()], "callback": 1,
          "f": lambda: calls_made.append(1) or Thing()}
    items = {c["text"]: c for c in complete("x = call.se", None, ns)}
    assert set(items) == {"send_media_to", "send_digits"}
    assert items["send_media_to"]["start"] == -2
    assert items["send_media_to"]["display"] == "send_media_to(target)"
    assert items["send_media_to"]["meta"] == "Route audio."
    assert [c["text"] for c in complete("call.bo", None, ns)] == ["boom"]       # property not run
    assert "_private" not in [c["text"] for c in complete("call.", None, ns)]
    assert "_private" in [c["text"] for c in complete("call._", None, ns)]
    assert {c["text"] for c in complete("calls[0].send_m", None, ns)} == {"send_media_to"}
    assert complete("f().se", None, ns) == [] and calls_made == []              # no calls evaluated
    names = [c["text"] for c in complete("cal", None, ns)]
    assert names[:3] == ["call", "callback", "calls"] and "callable" in names
    assert "while" in [c["text"] for c in complete("whi", None, ns)]
    # cursor in the middle of a multi-line source
    src = "if True:\n    call.sen\nmore"
    assert {c["text"] for c in complete(src, src.index("\nmore"), ns)} == {"send_media_to", "send_digits"}


# -- terminal input rules
@pytest.mark.parametrize("text, done", [
    ("call.state", True),
    ("x = (1,", False),
    ("if x:", False),
    ("def f():\n    return 1", False),
    ("def f():\n    return 1\n", True),
    ("x = 1\ny = 2", True),
    ("await d", True),
    ("1 +* 2", True),          # a syntax error: let the server say so
    ("", True),
])
def test_input_is_complete(text, done):
    assert input_is_complete(text) is done


def test_next_indent():
    assert next_indent("def f():") == "    "
    assert next_indent("    x = 1") == "    "
    assert next_indent("    if y:") == "        "


# -- a session and connection without a server
class FakeEngine:
    def __init__(self) -> None:
        self.reactor = task.Clock()
        self.handler_budget = 2.0
        self.limits = SessionLimits(handler_budget=2.0)
        self.history = None
        self.http_base = "http://127.0.0.1:8088"
        self.graph = MediaGraph()
        self.sessions: dict = {}
        self.ended: collections.deque = collections.deque(maxlen=10)
        self.session_listeners: list = []
        self.scenarios = ScenarioCatalog(Path("/nonexistent-scenarios"))

    def session_ended(self, session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.ended.append(session)
            for listener in list(self.session_listeners):
                listener("ended", session)


RELOAD_V1 = '''
LABEL = "v1"
seen = []


def on_tone(e):
    seen.append(f"top {LABEL} {e.tone}")


def on_alerting(e):
    target = e.call
    prefix = "nested"

    def tone(ev):
        seen.append(f"{prefix} v1 {ev.tone}")

    target.add_event_listener("CallEvents.ToneReceived", on_tone)
    target.add_event_listener("CallEvents.ToneReceived", tone)
    target.add_event_listener("CallEvents.ToneReceived", lambda ev: seen.append(f"lambda-a v1 {ev.tone}"))
    target.add_event_listener("CallEvents.ToneReceived", lambda ev: seen.append(f"lambda-b v1 {ev.tone}"))


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
'''


def _fire(target: EventTarget, tone: str) -> None:
    for handler in target.listeners("CallEvents.ToneReceived"):
        handler(Event("CallEvents.ToneReceived", tone=tone))


def _session(tmp_path: Path, source: str) -> tuple[Session, Path]:
    path = tmp_path / "scn.py"
    path.write_text(textwrap.dedent(source))
    engine = FakeEngine()
    session = Session(engine, path)
    engine.sessions[session.id] = session
    assert session.run_scenario(engine.scenarios.get(path))
    return session, path


def test_reload_swaps_top_level_nested_and_lambda_code(tmp_path):
    session, path = _session(tmp_path, RELOAD_V1)
    ns = session.namespace
    target = EventTarget()
    session.units["fake"] = target
    for handler in session.voxengine.listeners(AppEvents.CallAlerting):
        handler(Event(AppEvents.CallAlerting, call=target))
    old_on_tone = ns["on_tone"]
    _fire(target, "1")
    seen = ns["seen"]                                        # the scenario's list object

    path.write_text(textwrap.dedent(RELOAD_V1).replace("v1", "v2").replace(
        "seen = []", "seen = globals().get('seen', [])"))
    from voxlab.console.reloader import reload_scenario
    report = reload_scenario(session)
    # on_tone's code did not change (it reads LABEL): only on_alerting counts as updated
    assert report.startswith("reloaded scn.py: 1 function(s) updated (on_alerting), 1 unchanged"), report
    assert ns["on_tone"] is old_on_tone                     # same object, new code
    assert len(session.voxengine.listeners(AppEvents.CallAlerting)) == 1
    assert ns["LABEL"] == "v2"
    _fire(target, "2")
    assert seen == ["top v1 1", "nested v1 1", "lambda-a v1 1", "lambda-b v1 1",
                    "top v2 2", "nested v2 2", "lambda-a v2 2", "lambda-b v2 2"]

    # the nested handler now captures another variable: it keeps its old code, and says so
    path.write_text(path.read_text().replace('seen.append(f"{prefix} v2 {ev.tone}")',
                                             'seen.append(f"{LABEL} {target} {ev.tone}")'))
    report = reload_scenario(session)
    assert "kept old code: on_alerting.<locals>.tone" in report
    seen.clear()
    _fire(target, "3")
    assert "nested v2 3" in seen


def test_reload_failure_restores_app_listeners(tmp_path):
    session, path = _session(tmp_path, RELOAD_V1)
    before = session.voxengine.listeners(AppEvents.CallAlerting)
    names_before = dict(session.namespace)
    path.write_text(textwrap.dedent(RELOAD_V1).replace("v1", "v2")
                    + "\nADDED = 1\nraise RuntimeError('half way')\n")
    from voxlab.console.reloader import reload_scenario
    with pytest.raises(RuntimeError):
        reload_scenario(session)
    assert session.voxengine.listeners(AppEvents.CallAlerting) == before
    # the namespace is as it was: the old objects, the old values, nothing added
    assert session.namespace == names_before
    assert all(session.namespace[k] is v for k, v in names_before.items())
    path.write_text("def broken(:\n")
    with pytest.raises(SyntaxError):
        reload_scenario(session)
    assert session.voxengine.listeners(AppEvents.CallAlerting) == before


def test_connection_requires_token_when_not_authenticated(tmp_path):
    engine = FakeEngine()
    hub = ConsoleHub(engine, token="s3cret")
    sent: list[dict] = []
    closed: list[bool] = []
    conn = ConsoleConnection(hub, sent.append, close=lambda: closed.append(True), peer="test")
    conn.request({"id": 1, "op": "sessions"})
    assert sent[-1]["ok"] is False and closed and conn.closed
    sent.clear(), closed.clear()
    conn = ConsoleConnection(hub, sent.append, close=lambda: closed.append(True), peer="test")
    conn.request({"id": 1, "op": "hello", "token": "wrong"})
    assert sent == [{"id": 1, "ok": False, "error": "authentication failed: wrong or missing token"}]
    assert closed
    sent.clear()
    conn = ConsoleConnection(hub, sent.append, peer="test")
    conn.request({"id": 1, "op": "hello", "token": "s3cret"})
    conn.request({"id": 2, "op": "sessions"})
    assert [m["ok"] for m in sent] == [True, True] and sent[1]["sessions"] == []
    hub_without_token = ConsoleHub(FakeEngine(), token=None)
    conn = ConsoleConnection(hub_without_token, sent.append, peer="test")
    conn.request({"id": 3, "op": "hello", "token": ""})
    assert sent[-1]["ok"] is False                          # no token configured: nobody gets in


def test_attach_next_waits_for_the_next_session(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    engine = session.engine
    hub = ConsoleHub(engine)
    sent: list[dict] = []
    conn = ConsoleConnection(hub, sent.append, authenticated=True)
    conn.request({"id": 1, "op": "attach", "next": True, "wait": 5, "watch": True})
    assert sent == []
    for listener in engine.session_listeners:
        listener("started", session)
    engine.reactor.advance(0)
    assert sent[0]["id"] == 1 and sent[0]["ok"] and sent[0]["session"]["id"] == session.id
    conn.request({"id": 2, "op": "eval", "source": "x + 1"})
    assert sent[-1]["result"] == "2"
    session.feed("log", "hello")
    assert sent[-1] == {"event": "feed", "entry": session.feed_history[-1]}
    # and a wait that times out
    conn.request({"id": 3, "op": "attach", "next": True, "wait": 5})
    engine.reactor.advance(5)
    assert sent[-1]["id"] == 3 and sent[-1]["ok"] is False and "no session started" in sent[-1]["error"]



# -- helpers for a session with an attached connection (no server)
def _attached(session: Session, hub: ConsoleHub | None = None) -> tuple[ConsoleConnection, list[dict]]:
    hub = hub or ConsoleHub(session.engine)
    sent: list[dict] = []
    conn = ConsoleConnection(hub, sent.append, authenticated=True, peer="test")
    conn.request({"id": 0, "op": "attach", "target": session.id})
    assert sent[-1]["ok"], sent[-1]
    return conn, sent


def _events(sent: list[dict], kind: str) -> list[dict]:
    return [m for m in sent if m.get("event") == kind]


class _LogEvents:
    """Twisted log events published while it is open (formatted text)."""

    def __enter__(self) -> list[str]:
        self.events: list[str] = []
        self._observer = lambda event: self.events.append(formatEvent(event) or "")
        globalLogPublisher.addObserver(self._observer)
        return self.events

    def __exit__(self, *exc) -> None:
        globalLogPublisher.removeObserver(self._observer)


# -- code after a top-level await (finding: it ran with no budget, no session, no capture)
def test_code_after_an_await_runs_under_the_budget(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    session.namespace["clock"] = clock = session.engine.reactor
    conn, sent = _attached(session)
    # a loop that would end by itself after 10 s: the budget (0.2 s) must cut it first
    conn.request({"id": 1, "op": "eval", "budget": 0.2, "source": (
        "import time\nfrom twisted.internet import task\n"
        "await task.deferLater(clock, 1, lambda: None)\n"
        "t0 = time.monotonic()\nwhile time.monotonic() - t0 < 10:\n    pass\n'finished'")})
    reply = sent[-1]
    assert reply["ok"] and reply["deferred"] and reply["error"] is None
    clock.advance(1)
    [event] = _events(sent, "deferred")
    assert event["n"] == reply["deferred"] and event["result"] is None
    assert event["interrupted"] is True and "BudgetExceeded" in event["error"]
    assert "while time.monotonic()" in event["error"]          # the user's line is shown
    assert "budget.py" not in event["error"] and "defer.py" not in event["error"]
    conn.request({"id": 2, "op": "eval", "source": "x + 1"})    # and the console goes on
    assert sent[-1]["result"] == "2"


def test_print_and_session_names_after_an_await(tmp_path, capsys):
    session, _ = _session(tmp_path, "x = 1\n")
    session.custom_data = "custom-marker"
    session.namespace["clock"] = clock = session.engine.reactor
    conn, sent = _attached(session)
    conn.request({"id": 1, "op": "eval", "source": (
        "from twisted.internet import task\nfrom voxlab.scenario import VoxEngine as V\n"
        "print('before the await')\n"
        "await task.deferLater(clock, 1, lambda: None)\n"
        "print('after the await')\n"
        "V.custom_data()")})
    reply = sent[-1]
    assert reply["output"] == "before the await\n" and reply["deferred"]
    n = len(sent)
    clock.advance(1)
    later = sent[n:]
    # the output of the step after the await reaches the client, before the result
    assert later == [
        {"event": "output", "n": reply["deferred"], "session": session.id, "text": "after the await\n"},
        {"event": "deferred", "n": reply["deferred"], "session": session.id, "result": "'custom-marker'",
         "error": None, "interrupted": False}]
    assert "after the await" not in capsys.readouterr().out     # not the server's stdout


def test_coroutine_values_and_ready_awaits(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    session.namespace["clock"] = clock = session.engine.reactor
    conn, sent = _attached(session)
    # all it awaits is ready: shown like a plain cell
    conn.request({"id": 1, "op": "eval", "source": "from twisted.internet import defer\n"
                                                   "await defer.succeed(20) + 22"})
    assert (sent[-1]["result"], sent[-1]["deferred"]) == ("42", None)
    # interrupted before its first await: the reply says so
    conn.request({"id": 2, "op": "eval", "budget": 0.2, "source": "while True:\n    pass\nawait defer.succeed(1)"})
    assert sent[-1]["interrupted"] is True and "BudgetExceeded" in sent[-1]["error"]
    # a coroutine returned as the value is driven the same way (session, output, budget)
    conn.request({"id": 3, "op": "eval", "source": (
        "from twisted.internet import task\nfrom voxlab.scenario import Logger as L\n"
        "async def later():\n    await task.deferLater(clock, 1, lambda: None)\n"
        "    print('from later')\n    L.write('logged later')\n    return 7\n\nlater()")})
    n = sent[-1]["deferred"]
    clock.advance(1)
    assert [e.get("text") for e in _events(sent, "output")] == ["from later\n"]
    assert _events(sent, "deferred")[-1] == {"event": "deferred", "n": n, "session": session.id,
                                             "result": "7", "error": None, "interrupted": False}
    assert session.log_lines[-1].endswith("logged later")


def test_session_async_handlers_use_the_shared_driver(tmp_path):
    # the session's own async handlers: after an await, still this session's code and budgeted
    session, _ = _session(tmp_path, (
        "from twisted.internet import task\nfrom voxlab.scenario import Logger as L\n"
        "async def on_started(e):\n"
        "    await task.deferLater(session.engine.reactor, 1, lambda: None)\n"
        "    L.write('after the await')\n"
        "VoxEngine.add_event_listener(AppEvents.Started, on_started)\n"))
    session.post(session.voxengine, Event(AppEvents.Started, session=session))
    session.engine.reactor.advance(0)
    session.engine.reactor.advance(1)
    assert session.state == "running", list(session.log_lines)
    assert session.log_lines[-1].endswith("after the await")


# -- Deferreds shown at the console are only observed
def test_a_shown_deferred_still_fails_for_its_own_callbacks(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    conn, sent = _attached(session)
    d = defer.Deferred()
    session.namespace["d"] = d
    conn.request({"id": 1, "op": "eval", "source": "d"})
    n = sent[-1]["deferred"]
    d.errback(ValueError("boom"))
    [event] = _events(sent, "deferred")
    assert event["n"] == n and "ValueError: boom" in event["error"] and event["interrupted"] is False
    later: list = []
    d.addErrback(later.append)                 # a callback added after the console's
    assert len(later) == 1 and later[0].check(ValueError)


def test_a_failing_console_coroutine_is_not_logged_as_unhandled(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    session.namespace["clock"] = clock = session.engine.reactor
    conn, sent = _attached(session)
    with _LogEvents() as logged:
        conn.request({"id": 1, "op": "eval", "source": (
            "from twisted.internet import task\nawait task.deferLater(clock, 1, lambda: 1 / 0)")})
        clock.advance(1)
        assert "ZeroDivisionError" in _events(sent, "deferred")[0]["error"]
        sent.clear()
        gc.collect()
    assert not [e for e in logged if "Unhandled error" in e], logged


# -- budget requests
def test_a_client_cannot_lift_the_budget(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    session.engine.handler_budget = 0.3
    conn, sent = _attached(session)
    for bad in (-1, 0, "forever", [], True, float("nan")):
        conn.request({"id": 1, "op": "eval", "source": "x", "budget": bad})
        assert sent[-1]["ok"] is False and "budget" in sent[-1]["error"], (bad, sent[-1])
    conn.request({"id": 2, "op": "eval", "source": "x"})
    assert sent[-1]["budget"] == 0.3                          # the default, capped by the server's
    # asking for more than the server's budget gets the server's budget
    conn.request({"id": 3, "op": "eval", "budget": 1000, "source": (
        "import time\nt0 = time.monotonic()\nwhile time.monotonic() - t0 < 10:\n    pass\n'finished'")})
    assert sent[-1]["budget"] == 0.3 and sent[-1]["interrupted"] is True and sent[-1]["result"] is None


def test_console_default_budget_is_shorter_than_handlers():
    engine = FakeEngine()
    hub = ConsoleHub(engine)
    assert (hub.budget, hub.max_budget) == (1.0, 2.0)


# -- banner, detach logging
def test_banner_of_an_ended_session(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    conn, sent = _attached(session)
    assert "Ctrl-D detaches (the session keeps running)." in sent[-1]["banner"]
    session.terminate("scenario")
    conn.request({"id": 1, "op": "attach", "target": session.id})
    banner = sent[-1]["banner"]
    assert "this session has ended" in banner and "keeps running" not in banner
    assert banner.endswith("Ctrl-D leaves.")


def test_a_closed_connection_is_logged_as_a_detach(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    conn, sent = _attached(session)
    with _LogEvents() as logged:
        conn.close()
    assert any(f"test detached from {session.id}" in e for e in logged), logged
    conn2, _ = _attached(session)
    conn2.request({"id": 1, "op": "detach"})
    with _LogEvents() as logged:
        conn2.close()                      # detached already: nothing more to log
    assert not [e for e in logged if "detached" in e], logged


# -- reload failures
def test_a_failed_reload_does_not_break_later_reloads(tmp_path):
    session, path = _session(tmp_path, RELOAD_V1)
    target = EventTarget()
    session.units["fake"] = target
    for handler in session.voxengine.listeners(AppEvents.CallAlerting):
        handler(Event(AppEvents.CallAlerting, call=target))
    from voxlab.console.reloader import reload_scenario
    path.write_text(textwrap.dedent(RELOAD_V1).replace("v1", "v2") + "\nraise RuntimeError('half way')\n")
    with pytest.raises(RuntimeError):
        reload_scenario(session)
    path.write_text(textwrap.dedent(RELOAD_V1).replace("v1", "v3").replace(
        "seen = []", "seen = globals().get('seen', [])"))
    reload_scenario(session)
    seen = session.namespace["seen"]
    seen.clear()
    _fire(target, "5")
    assert "top v3 5" in seen and "nested v3 5" in seen, seen      # the live call runs the new code
    assert not [s for s in seen if "v1" in s or "v2" in s], seen


def test_a_failed_reload_says_nothing_changed_without_console_frames(tmp_path):
    session, path = _session(tmp_path, RELOAD_V1)
    conn, sent = _attached(session)
    path.write_text(textwrap.dedent(RELOAD_V1) + "\nraise RuntimeError('half way')\n")
    conn.request({"id": 1, "op": "eval", "source": "reload()"})
    error = sent[-1]["error"]
    assert "RuntimeError: half way" in error and str(path) in error and "reload()" in error
    assert error.rstrip().endswith(FAILED_NOTE)
    for internal in ("core.py", "reloader.py", "manager.py", "evaluator.py"):
        assert internal not in error, error
    path.write_text("def broken(:\n")
    conn.request({"id": 2, "op": "eval", "source": "reload()"})
    error = sent[-1]["error"]
    assert "SyntaxError" in error and FAILED_NOTE in error
    for internal in ("core.py", "reloader.py", "manager.py", "evaluator.py"):
        assert internal not in error, error


# -- show(): digits
def _fake_call(call_id: str):
    media = types.SimpleNamespace(stats={"rx_packets": 50, "tx_packets": 50, "rx_dtmf": 20}, jitter=None,
                                  remote=("127.0.0.1", 6000), latched=True)
    return types.SimpleNamespace(id=call_id, state="CONNECTED", codec="PCMU", duration=3.0, callerid="alice",
                                 destination="echo", end_reason=None, media=media)


def test_show_lists_the_digits_received(tmp_path):
    path = tmp_path / "scn.py"
    path.write_text("x = 1\n")
    engine = FakeEngine()
    hub = ConsoleHub(engine)                  # the server's console exists before any session
    session = Session(engine, path)
    engine.sessions[session.id] = session
    for listener in engine.session_listeners:
        listener("started", session)
    assert session.run_scenario(engine.scenarios.get(path))
    cid = f"{session.id}-c1"
    session.calls.append(_fake_call(cid))
    for digit in "15":                         # 20 RTP event packets made these two digits
        session.feed("dtmf", f"{cid} DTMF {digit}")
    conn, sent = _attached(session, hub)
    conn.request({"id": 1, "op": "eval", "source": "show()"})
    out = sent[-1]["output"]
    assert "digits 2 (15)" in out and "dtmf=20" not in out, out
    # a console attached later (or a state made late) still finds them in the feed history
    late = ConsoleHub(engine)
    conn2, sent2 = _attached(session, late)
    conn2.request({"id": 1, "op": "eval", "source": "__console__.show()"})
    assert "digits 2 (15)" in sent2[-1]["output"]


# -- completion has no side effects
class Lazy:
    """Attributes that run code when read."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.plain = Thing()

    @property
    def child(self):
        """A child thing."""
        self.runs.append("child")
        return Thing()

    @functools.cached_property
    def cached(self):
        """Computed once."""
        self.runs.append("cached")
        return 1

    def __getattr__(self, name):
        self.runs.append(f"getattr {name}")
        return Thing()


def test_completion_never_runs_properties_or_getattr():
    obj = Lazy()
    ns = {"obj": obj, "calls": [Thing(), Thing()], "units": {"u": Thing()}, "os": os}
    assert complete("obj.child.se", None, ns) == []           # would need the getter: not completed
    assert complete("obj.dynamic.se", None, ns) == []         # would need __getattr__
    items = {c["text"]: c for c in complete("obj.c", None, ns)}
    assert set(items) == {"cached", "child"}
    assert items["cached"]["kind"] == "property" and items["cached"]["meta"] == "Computed once."
    assert items["child"]["meta"] == "A child thing."
    assert obj.runs == []
    # what needs no code still works
    assert {c["text"] for c in complete("obj.plain.send_m", None, ns)} == {"send_media_to"}
    assert {c["text"] for c in complete('units["u"].send_m', None, ns)} == {"send_media_to"}
    assert {c["text"] for c in complete("calls[-1].send_m", None, ns)} == {"send_media_to"}
    assert "path" in {c["text"] for c in complete("os.pa", None, ns)}
    assert complete('units["nope"].se', None, ns) == [] and complete("calls[5].se", None, ns) == []
    d = collections.defaultdict(Thing)
    assert complete('d["new"].se', None, {"d": d}) == [] and "new" not in d


def test_completion_descriptions_are_plain_text():
    def documented():
        """``VoxEngine.terminate()``: end the session (see :func:`hangup`)."""

    [item] = complete("documen", None, {"documented": documented})
    assert item["meta"] == "VoxEngine.terminate(): end the session (see hangup)."


# -- framing: an over-long line closes even an authenticated connection
def test_an_over_long_line_closes_the_connection():
    hub = ConsoleHub(FakeEngine())
    proto = ConsoleProtocol(hub, "unix", frozenset({os.getuid()}))
    proto.decoder = LineDecoder(max_line=64)
    transport = StringTransport()
    proto.makeConnection(transport)              # no peer credentials here: an authenticated unix peer
    assert proto.connection.authenticated
    proto.dataReceived(b'{"id": 1, "op": "ping"}\nnot json\n')
    assert b'"ok":true' in transport.value() and b"bad request" in transport.value()
    assert not transport.disconnecting           # a malformed line is only answered
    proto.dataReceived(b"x" * 100)
    assert b"longer than 64 bytes" in transport.value()
    assert transport.disconnecting and proto.connection.closed


# -- the attach client's toolbar when the server does not answer
def test_toolbar_says_when_the_server_stops_answering():
    now = [100.0]

    class Silent:
        """A console whose summary requests are never answered (a frozen server)."""

        closed = False

        def __init__(self) -> None:
            self.asked = asyncio.Event()

        async def request(self, op, **fields):
            self.asked.set()
            await asyncio.get_running_loop().create_future()

    def text(ui) -> str:
        return "".join(fragment for _, fragment in ui.toolbar())

    async def run() -> tuple[str, str]:
        client = Silent()
        ui = AttachSession(client, color=False, clock=lambda: now[0])
        ui.info = {"id": "s1-ab12", "scenario": "echo.py", "state": "running", "age": 3.0, "calls": []}
        refresher = asyncio.ensure_future(ui.refresh_summary())
        await asyncio.wait_for(client.asked.wait(), 10)
        fresh = text(ui)
        now[0] += 10
        stale = text(ui)
        refresher.cancel()
        return fresh, stale

    fresh, stale = asyncio.run(run())
    assert "s1-ab12 echo.py running" in fresh and "STALE" not in fresh
    assert "STALE: no answer from the server for 10 s" in stale


# -- the step driver shared by async handlers and console cells
def test_run_steps_wraps_every_step_and_closes_when_dropped():
    from voxlab.engine.budget import run_steps
    trail: list[str] = []
    first, second = defer.Deferred(), defer.Deferred()

    async def body():
        trail.append("step 1")
        try:
            got = await first
            trail.append(f"step 2 got {got}")
            await second
        finally:
            trail.append("finally")

    def enter():
        trail.append("enter")
        return len(trail)

    d = defer.ensureDeferred(run_steps(body(), 5.0, enter, lambda token: trail.append(f"leave {token}")))
    assert trail == ["enter", "step 1", "leave 1"]
    first.callback("x")
    assert trail[3:] == ["enter", "step 2 got x", "leave 4"]
    # dropped while waiting (e.g. the reactor stops): the coroutine is closed, not run as a step
    del trail[:]
    d.cancel()                                 # cancelling throws CancelledError in: a step
    assert trail == ["enter", "finally", "leave 1"]
    failures: list = []
    d.addErrback(failures.append)
    assert failures[0].check(defer.CancelledError)

    trail.clear()
    third = defer.Deferred()

    async def waits():
        try:
            await third
        finally:
            trail.append("closed")

    gen = run_steps(waits(), 5.0, lambda: trail.append("enter"), lambda token: trail.append("leave"))
    next(gen)
    gen.close()
    assert trail == ["enter", "leave", "closed"]


def test_run_steps_budgets_each_step():
    from voxlab.engine.budget import BudgetExceeded, run_steps
    clock = task.Clock()

    async def spins_after_an_await():
        await task.deferLater(clock, 1, lambda: None)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:     # ends by itself after 10 s: the budget must cut it
            pass
        return "finished"

    results: list = []
    defer.ensureDeferred(run_steps(spins_after_an_await(), 0.2)).addBoth(results.append)
    clock.advance(1)
    assert results and isinstance(results[0], Failure) and results[0].check(BudgetExceeded)


def test_completion_runs_under_the_budget():
    class SlowDir:
        def __dir__(self):
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:     # would end by itself after 10 s
                pass
            return ["send_media_to"]

    assert complete("slow.se", None, {"slow": SlowDir()}, budget=0.2) == []


# -- reload: nested listeners across several reloads, and what the report counts
RELOAD_LAMBDA = '''
LABEL = "a"
seen = globals().get("seen", [])


def on_alerting(e):
    target = e.call
    target.add_event_listener("CallEvents.ToneReceived", lambda ev: seen.append(f"lambda v1 {LABEL} {ev.tone}"))


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
'''


def _alerted(session: Session, count: int = 1) -> list[EventTarget]:
    targets = []
    for i in range(count):
        target = EventTarget()
        session.units[f"fake{i}"] = target
        for handler in session.voxengine.listeners(AppEvents.CallAlerting):
            handler(Event(AppEvents.CallAlerting, call=target))
        targets.append(target)
    return targets


def test_a_nested_listener_follows_every_reload_also_after_one_that_left_it_unchanged(tmp_path):
    from voxlab.console.reloader import reload_scenario
    session, path = _session(tmp_path, RELOAD_LAMBDA)
    [target] = _alerted(session)
    seen = session.namespace["seen"]
    source = textwrap.dedent(RELOAD_LAMBDA)

    path.write_text(source := source.replace("lambda v1", "lambda v2"))        # 1: the lambda changes
    report = reload_scenario(session)
    assert "live nested handlers updated: on_alerting.<locals>.<lambda>" in report, report
    _fire(target, "1")

    path.write_text(source := source.replace('LABEL = "a"', 'LABEL = "b"'))    # 2: only a constant
    report = reload_scenario(session)
    assert "kept old code" not in report and "nested handlers updated" not in report, report
    _fire(target, "2")

    path.write_text(source := source.replace("lambda v2", "lambda v3"))        # 3: the lambda again
    report = reload_scenario(session)
    assert "kept old code" not in report, report
    assert "live nested handlers updated: on_alerting.<locals>.<lambda>" in report, report
    _fire(target, "3")
    assert seen == ["lambda v2 a 1", "lambda v2 b 2", "lambda v3 b 3"]


def test_the_reload_report_counts_only_changed_code_and_collapses_repeats(tmp_path):
    from voxlab.console.reloader import reload_scenario
    session, path = _session(tmp_path, RELOAD_V1)
    _alerted(session, 2)                   # two live "calls", each with its own nested listeners
    report = reload_scenario(session)      # the very same file
    assert report.splitlines()[0] == "reloaded scn.py: 0 function(s) updated, 2 unchanged", report
    assert "nested handlers updated" not in report and "kept old code" not in report, report

    # lines moved (a comment on top), nothing else: still unchanged
    path.write_text("# a comment\n\n" + path.read_text())
    report = reload_scenario(session)
    assert report.splitlines()[0] == "reloaded scn.py: 0 function(s) updated, 2 unchanged", report

    # another lambda ahead of the two: they cannot be matched on either call -- one line, counted
    path.write_text(path.read_text().replace(
        '    target.add_event_listener("CallEvents.ToneReceived", on_tone)\n',
        '    target.add_event_listener("CallEvents.ToneReceived", on_tone)\n'
        '    target.add_event_listener("CallEvents.ToneReceived", lambda ev: None)\n').replace(
        "lambda-a v1", "lambda-a v9").replace("lambda-b v1", "lambda-b v9"))
    report = reload_scenario(session)
    kept = next(line for line in report.splitlines() if "kept old code" in line)
    assert kept.count("on_alerting.<locals>.<lambda>") == 1, report
    assert "on_alerting.<locals>.<lambda> (not found at the same place in the new file) [4 listeners]" in kept
    assert report.splitlines()[0] == "reloaded scn.py: 1 function(s) updated (on_alerting), 1 unchanged"


# -- the attach client: Ctrl-C while a cell is still running on the server
class _PendingClient:
    """Answers nothing until the test says so: each request's reply is a future in ``replies``."""

    def __init__(self) -> None:
        self.replies: list[asyncio.Future] = []

    async def request(self, op: str, **fields) -> dict:
        future = asyncio.get_running_loop().create_future()
        self.replies.append(future)
        return await future


async def _until(condition, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


def test_ctrl_c_while_a_cell_runs_keeps_waiting_and_a_second_one_detaches():
    import signal

    async def scenario() -> None:
        before = signal.getsignal(signal.SIGINT)             # asyncio.run's own handler
        client = _PendingClient()
        ui = AttachSession(client, color=False)
        ui.budget = 1000.0
        said: list[str] = []
        ui.out = said.append

        cell = asyncio.ensure_future(ui.run_cell("sum(range(10**9))"))
        await _until(lambda: client.replies)                 # the eval request is out
        os.kill(os.getpid(), signal.SIGINT)                  # Ctrl-C
        await _until(lambda: said)
        assert "still running on the server (its budget is 1000 s" in said[0], said
        assert "Ctrl-C again to detach" in said[0]
        assert not cell.done()                               # still waiting for the reply
        client.replies[0].set_result({"ok": True, "result": "42", "output": "", "error": None})
        assert (await cell)["result"] == "42"
        assert signal.getsignal(signal.SIGINT) is before    # Ctrl-C is the client's again

        said.clear()
        cell = asyncio.ensure_future(ui.run_cell("sum(range(10**9))"))
        await _until(lambda: len(client.replies) == 2)
        os.kill(os.getpid(), signal.SIGINT)
        await _until(lambda: said)
        os.kill(os.getpid(), signal.SIGINT)                  # a second Ctrl-C: give up waiting
        assert await asyncio.wait_for(cell, 10) is None
        assert client.replies[1].cancelled()
        assert signal.getsignal(signal.SIGINT) is before

    asyncio.run(scenario())


# -- ladder(): what it accepts
def test_ladder_with_an_unknown_call_or_a_wrong_type(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    conn, sent = _attached(session)
    conn.request({"id": 1, "op": "eval", "source": "ladder('nope')"})
    assert sent[-1]["output"] == "no call 'nope' in this session (it has no calls)\n", sent[-1]
    session.calls.append(_fake_call(f"{session.id}-c1"))
    session.calls.append(_fake_call(f"{session.id}-c2"))
    conn.request({"id": 2, "op": "eval", "source": "ladder('nope')"})
    assert sent[-1]["output"] == (f"no call 'nope' in this session (calls: {session.id}-c1, "
                                  f"{session.id}-c2)\n"), sent[-1]
    conn.request({"id": 3, "op": "eval", "source": "ladder(5)"})
    error = sent[-1]["error"]
    assert "TypeError: ladder() takes a call (e.g. calls[0]) or a call id (a str), not int" in error, error
    conn.request({"id": 4, "op": "eval", "source": f"ladder({session.id + '-c2'!r})"})
    assert sent[-1]["output"].startswith(f"SIP ladder of {session.id}-c2"), sent[-1]
    conn.request({"id": 5, "op": "eval", "source": "ladder(calls[0])"})
    assert sent[-1]["output"].startswith(f"SIP ladder of {session.id}-c1"), sent[-1]


# -- reload() of an ended session
def test_reload_after_the_session_ended_is_refused(tmp_path):
    session, path = _session(tmp_path, RELOAD_V1)
    conn, sent = _attached(session)
    assert "reload()" in sent[-1]["banner"]
    session.terminate("scenario")
    path.write_text(textwrap.dedent(RELOAD_V1) + "\nRERUN = True\n")
    conn.request({"id": 1, "op": "eval", "source": "reload()"})
    reply = sent[-1]
    assert reply["output"] == "" and "reloaded" not in (reply["output"] + (reply["error"] or ""))
    assert f"reload(): session {session.id} has ended: there is no live code to update" in reply["error"]
    assert "RERUN" not in session.namespace                   # the file did not run again
    conn.request({"id": 2, "op": "attach", "target": session.id})
    banner = sent[-1]["banner"]
    assert "reload()" not in banner and "show(), ladder(call)" in banner, banner


# -- the budget's message when the interruption comes late
def test_the_budget_message_says_how_late_an_interruption_came(monkeypatch):
    import voxlab.engine.budget as budget
    from voxlab.engine.budget import BudgetExceeded, shielded, time_budget
    now = [100.0]
    monkeypatch.setattr(budget, "_clock", lambda: now[0])

    with pytest.raises(BudgetExceeded) as info:          # on time: the plain message
        with time_budget(0.05):
            while True:
                pass
    assert str(info.value) == "code ran longer than its budget of 0.05 s and was interrupted"

    with pytest.raises(BudgetExceeded) as info:          # the handler only ran 13.2 s in
        with time_budget(0.05):
            now[0] += 13.2                               # (as after one long call into C code)
            while True:
                pass
    message = str(info.value)
    assert "budget of 0.05 s" in message and "interrupted only after 13.2 s" in message, message
    assert "the server was blocked meanwhile" in message

    @shielded
    def framework_call() -> None:                        # an expiry held back, raised when it returns
        while not budget._deferred_expiry:
            time.sleep(0.001)
        now[0] += 7.5

    with pytest.raises(BudgetExceeded) as info:
        with time_budget(0.05):
            framework_call()
    assert "interrupted only after 7.5 s" in str(info.value), str(info.value)


# -- exit() in a cell: reported, with the status a script's run should end with
def test_exit_in_a_cell_reports_the_status(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    conn, sent = _attached(session)
    cases = {"exit()": (0, None), "import sys; sys.exit(3)": (3, None), "quit('bye')": (1, "bye"),
             "from twisted.internet import defer\nawait defer.succeed(1)\nexit(4)": (4, None)}
    for source, (status, message) in cases.items():
        conn.request({"id": 1, "op": "eval", "source": source})
        reply = sent[-1]
        assert reply["exit"]["status"] == status and reply["exit"]["message"] == message, (source, reply)
        assert "SystemExit" in reply["error"]
    conn.request({"id": 2, "op": "eval", "source": "x"})
    assert sent[-1]["exit"] is None


# -- logs --feed
def test_logs_with_the_feed_include_every_kind(tmp_path):
    session, _ = _session(tmp_path, "x = 1\n")
    session.feed("sip", "c1 INVITE from alice to echo")
    session.log("a log line")
    conn, sent = _attached(session)
    conn.request({"id": 1, "op": "logs", "session": session.id})
    assert [line.split(" ", 1)[1] for line in sent[-1]["lines"]] == ["a log line"]
    conn.request({"id": 2, "op": "logs", "session": session.id, "feed": True, "follow": True})
    lines = [line.split(" ", 1)[1] for line in sent[-1]["lines"]]
    assert "sip     c1 INVITE from alice to echo" in lines and "log     a log line" in lines, lines
    session.feed("dtmf", "c1 DTMF 5")
    assert _events(sent, "log")[-1]["lines"][0].endswith(" dtmf    c1 DTMF 5")
    # a plain follow (another connection) still gets only the log lines
    other, other_sent = _attached(session, conn.hub)
    other.request({"id": 3, "op": "logs", "session": session.id, "follow": True})
    session.feed("dtmf", "c1 DTMF 6")
    session.log("second line")
    assert [e["lines"] for e in _events(other_sent, "log")] == [[_events(other_sent, "log")[0]["lines"][0]]]
    assert _events(other_sent, "log")[0]["lines"][0].endswith(" second line")
