"""The console's sans-IO pieces in-process: framing, evaluation, completion, input rules,
reload semantics and the connection's authentication. (The e2e tests cover the same
through real sockets; these pin down the edge cases quickly.)"""

from __future__ import annotations

import collections
import textwrap
from pathlib import Path

import pytest
from twisted.internet import defer, task

from voxlab.console.attach import input_is_complete, next_indent
from voxlab.console.completion import complete
from voxlab.console.core import ConsoleConnection, ConsoleHub
from voxlab.console.evaluator import evaluate
from voxlab.console.protocol import LineDecoder, ProtocolError, decode, encode
from voxlab.engine.events import AppEvents, Event, EventTarget
from voxlab.engine.manager import _CompiledCache
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
        self.graph = MediaGraph()
        self.sessions: dict = {}
        self.ended: collections.deque = collections.deque(maxlen=10)
        self.session_listeners: list = []
        self.scenarios = _CompiledCache()


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
    assert "on_tone" in report and "on_alerting" in report
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
    path.write_text(textwrap.dedent(RELOAD_V1) + "\nraise RuntimeError('half way')\n")
    from voxlab.console.reloader import reload_scenario
    with pytest.raises(RuntimeError):
        reload_scenario(session)
    assert session.voxengine.listeners(AppEvents.CallAlerting) == before
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
