"""The HTTP port against live servers over real sockets: the management API (sessions,
history, logs, recordings, users), the sessions' access URLs and /metrics.

The callback scenario calls sipp's UAS (``-sn uas -rtp_echo``), so those calls are real
SIP and RTP. State is awaited by polling with deadlines, never by sleeping. Every JSON
answer is also checked against the schema openapi.json documents for its route and
status, so the document and the code cannot drift apart unnoticed.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import requires_sipp
from tests.e2e.test_peers_vs_sipp import sipp_uas  # noqa: F401  (a fixture, used by name)
from tests.peers.sipua import SipUA
from voxlab.http.api import OPENAPI_PATH
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

DOC = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
# Long enough (well over 10 s of espeak-ng) that a call which ends early was ended on purpose.
LONG_TEXT = " ".join(["This is the voxlab callback speaking, and it has a great deal to say."] * 6)
NO_TOKEN = object()


# ---------------------------------------------------------------- HTTP helpers

class Reply:
    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.headers.get('Content-Type')} {self.body[:300]!r}>"


def http(method: str, url: str, body=None, headers: dict | None = None, timeout: float = 10.0) -> Reply:
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.headers, exc.read())


class Client:
    """The API of one server, with its token unless told otherwise."""

    def __init__(self, srv) -> None:
        self.srv = srv
        self.base = srv.http_url
        self.token = srv.api_token()

    def __call__(self, method: str, path: str, body=None, token=None, headers=None,
                 timeout: float = 10.0) -> Reply:
        h = dict(headers or {})
        token = self.token if token is None else token
        if token is not NO_TOKEN:
            h["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("http") else self.base + path
        return http(method, url, body, h, timeout)

    def ok(self, method: str, path: str, body=None, status: int = 200, route: str | None = None):
        """The JSON of an answer that must have ``status`` (and its documented shape)."""
        reply = self(method, path, body)
        assert reply.status == status, f"{method} {path}: {reply}\n" + self.srv.describe(40)
        value = reply.json()
        conforms(value, method, route or path.split("?")[0], status)
        return value

    def history(self, **params) -> list[dict]:
        return self.ok("GET", "/api/history?" + urllib.parse.urlencode(params),
                       route="/api/history")["sessions"]

    def start(self, scenario: str, custom_data="") -> dict:
        return self.ok("POST", "/api/sessions", {"scenario": scenario, "custom_data": custom_data},
                       status=201)

    def session(self, sid: str) -> dict:
        return self.ok("GET", f"/api/sessions/{sid}", route="/api/sessions/{session_id}")

    def ended(self, sid: str, timeout: float = 15.0) -> dict:
        """The history's record of session ``sid`` once it has ended."""
        return poll(lambda: (lambda s: s if not s["live"] and s["finish_reason"] else None)(
            self.session(sid)), f"session {sid} to end", timeout, self.srv)

    def metrics(self) -> dict:
        reply = http("GET", self.base + "/metrics")
        assert reply.status == 200, reply
        assert reply.headers["Content-Type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(reply.body.decode())}


def poll(fn, what: str, timeout: float = 10.0, srv=None, step: float = 0.05):
    """``fn()`` until it is truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + ("\n" + srv.describe(60) if srv is not None else ""))
        time.sleep(step)


def error_of(reply: Reply, status: int) -> str:
    """The message of a JSON error answer (never an HTML page or a traceback)."""
    assert reply.status == status, reply
    assert reply.headers["Content-Type"] == "application/json", reply
    assert b"<html" not in reply.body.lower() and b"Traceback" not in reply.body, reply
    value = reply.json()
    assert set(value) == {"error"} and isinstance(value["error"], str) and value["error"], value
    return value["error"]


def sample(families: dict, family: str, sample_name: str | None = None, **labels) -> float:
    fam = families.get(family)
    if fam is None:
        return 0.0
    for s in fam.samples:
        if s.name == (sample_name or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


# ---------------------------------------------------------------- openapi.json conformance

def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        target = DOC
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = target
    return schema


def _problems(value, schema: dict, where: str) -> list[str]:
    """What in ``value`` does not fit ``schema`` (the OpenAPI 3.0 subset openapi.json uses)."""
    schema = _resolve(schema)
    if value is None:
        return [] if schema.get("nullable") or not schema else [f"{where}: null"]
    if "oneOf" in schema:
        fits = [s for s in schema["oneOf"] if not _problems(value, s, where)]
        return [] if len(fits) == 1 else [f"{where}: fits {len(fits)} of oneOf"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    checks = {"object": dict, "array": list, "string": str, "boolean": bool}
    if kind in checks and not isinstance(value, checks[kind]):
        return [f"{where}: {value!r} is not {kind}"]
    if kind in ("number", "integer") and (isinstance(value, bool) or not isinstance(
            value, int if kind == "integer" else (int, float))):
        return [f"{where}: {value!r} is not {kind}"]
    out = []
    if kind == "object":
        props = schema.get("properties", {})
        out += [f"{where}: no {k!r}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            out += [f"{where}: unexpected {k!r}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                out += _problems(v, props[k], f"{where}.{k}")
    if kind == "array" and "items" in schema:
        for i, v in enumerate(value):
            out += _problems(v, schema["items"], f"{where}[{i}]")
    return out


def _template(method: str, path: str) -> str:
    for template, item in DOC["paths"].items():
        rx = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if method.lower() in item and re.match(rx, path):
            return template
    raise AssertionError(f"{method} {path} is not in openapi.json")


def conforms(value, method: str, path: str, status: int) -> None:
    """``value`` (an answer's JSON) has the shape openapi.json gives it."""
    template = path if path in DOC["paths"] else _template(method, path)
    answers = DOC["paths"][template][method.lower()]["responses"]
    answer = answers.get(str(status))
    assert answer is not None, f"{method} {template}: status {status} is not documented"
    if "$ref" in answer:
        answer = _resolve(answer)
    schema = answer["content"]["application/json"]["schema"]
    problems = _problems(value, schema, f"{method} {template} {status}")
    assert not problems, "\n".join(problems) + "\n" + json.dumps(value, indent=1)[:3000]


# ---------------------------------------------------------------- servers

@pytest.fixture(scope="module")
def api(server) -> Client:
    return Client(server)


WEB = """\
    # The access URL, every way a handler can answer.
    def on_request(e):
        if e.path.startswith("/text"):
            return "hello " + e.method
        if e.path.startswith("/bytes"):
            return bytes(range(5))
        if e.path.startswith("/reply"):
            e.reply(202, {"X-Voxlab": "yes", "Content-Type": "text/plain"}, "accepted")
            return "ignored: it replied already"
        if e.path.startswith("/none"):
            return None
        if e.path.startswith("/end"):
            VoxEngine.terminate()
            return {"ended": True}
        return {"method": e.method, "path": e.path, "headers": e.headers,
                "content": e.content.decode(), "custom_data": VoxEngine.custom_data()}

    VoxEngine.add_event_listener(AppEvents.HttpRequest, on_request)
"""

LATER = """\
    # An async handler that answers after a while.
    from twisted.internet import reactor, task

    async def on_request(e):
        await task.deferLater(reactor, 0.2, lambda: None)
        e.reply(200, {"Content-Type": "application/json"}, b'{"later": true}')

    VoxEngine.add_event_listener(AppEvents.HttpRequest, on_request)
"""

QUICK = "VoxEngine.add_event_listener(AppEvents.Started, lambda e: VoxEngine.terminate())\n"
STAY = "VoxEngine.add_event_listener(AppEvents.HttpRequest, lambda e: 'still here')\n"
BROKEN = """\
    def on_started(e):
        Logger.write("about to fail")
        raise RuntimeError("boom on purpose")

    VoxEngine.add_event_listener(AppEvents.Started, on_started)
"""


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """A server of small scenarios of this module's own."""
    from tests.conftest import _finish, _start

    srv = _start(tmp_path_factory.mktemp("http-custom"),
                 {"web": WEB, "later": LATER, "quick": QUICK, "stay": STAY, "broken": BROKEN})
    yield Client(srv)
    problem = _finish(srv)
    assert problem is None, problem


def _connected(api: Client, access_url: str, srv) -> dict:
    """Poll the access URL until the scenario says its call is CONNECTED."""
    def state():
        reply = http("GET", access_url)
        assert reply.status == 200, f"{reply}\n" + srv.describe(40)
        value = reply.json()
        return value if value["state"] == "CONNECTED" else None
    return poll(state, "the callback's call to be CONNECTED", 15, srv)


def _sipp_done(uas, srv, timeout: float = 20.0) -> None:
    """sipp's UAS (``-m 1``) has ended its one call, successfully."""
    try:
        rc = uas.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"sipp's UAS still runs after {timeout} s (no BYE?)\n"
                             + srv.describe(60)) from None
    assert rc == 0, f"sipp UAS exited {rc}: {uas.proc.stderr.read().decode(errors='replace')}\n" \
        + srv.describe(60)


def _wrong_secret(access_url: str) -> str:
    head, secret = access_url.rsplit("/", 1)
    return f"{head}/{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"


# ---------------------------------------------------------------- sessions and the access URL

@requires_sipp
def test_callback_calls_plays_the_greeting_and_hangs_up(api, server, sipp_uas):
    uas = sipp_uas(calls=1)
    target = f"sip:bob@127.0.0.1:{uas.port}"
    started = api.start("callback", target)
    sid = started["session_id"]
    assert started["access_url"].startswith(f"{server.http_url}/request/{sid}/")
    assert started["log_url"] == f"{server.http_url}/api/sessions/{sid}/log"

    status = _connected(api, started["access_url"], server)
    assert status["to"] == target and status["codec"] == "PCMU" and status["call"].startswith(sid)
    # A wrong secret, or a session id that does not exist, gets the same 404 as an ended session.
    assert http("GET", _wrong_secret(started["access_url"])).status == 404
    assert http("GET", started["access_url"].replace(f"/{sid}/", "/s999999-0000/")).status == 404

    live = api.session(sid)
    assert live["live"] is True and live["scenario"] == "callback.py" and live["rule"] == "api"
    assert live["custom_data"] == target and live["access_url"] == started["access_url"]
    assert [c["state"] for c in live["calls"]] == ["CONNECTED"]
    poll(lambda: any(u["kind"] == "player" for u in api.session(sid)["units"]),
         "the greeting's player", 5, server)
    listed = api.ok("GET", "/api/sessions")["sessions"]
    assert sid in [s["id"] for s in listed]
    assert "units" not in [s for s in listed if s["id"] == sid][0]
    log = api.ok("GET", started["log_url"], route="/api/sessions/{session_id}/log")
    assert any(line.endswith(f"calling {target}") for line in log["lines"]), log

    # hello.wav (3.7 s), then voxlab's BYE: sipp's UAS ends its one call successfully.
    _sipp_done(uas, server)
    poll(lambda: http("GET", started["access_url"]).status == 404,
         "the access URL to answer 404 once the session has ended", 10, server)
    assert http("GET", _wrong_secret(started["access_url"])).status == 404

    ended = api.ended(sid)
    assert ended["finish_reason"] == "normal" and ended["scenario"] == "callback.py"
    assert ended["custom_data"] == target and ended["ended"] >= ended["started"]
    [call] = ended["calls"]
    assert call["direction"] == "out" and call["final_code"] == 200, call
    assert call["to_uri"] == target and call["codec"] == "PCMU" and call["connected"] is not None
    assert call["duration"] >= 3.0, f"the greeting is 3.7 s long: {call}"
    assert sid not in [s["id"] for s in api.ok("GET", "/api/sessions")["sessions"]]
    log = api.ok("GET", f"/api/sessions/{sid}/log")       # from the history now
    assert any(line.endswith(f"calling {target}") for line in log["lines"]), log


@requires_sipp
def test_post_hangup_to_the_access_url_ends_the_call_early(api, server, sipp_uas):
    uas = sipp_uas(calls=1)
    target = f"sip:bob@127.0.0.1:{uas.port}"
    started = api.start("callback", {"to": target, "text": LONG_TEXT})
    _connected(api, started["access_url"], server)
    reply = http("POST", started["access_url"], b"hangup")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json", reply
    assert reply.json()["state"] in ("DISCONNECTED", "CONNECTED"), reply

    _sipp_done(uas, server, timeout=10)       # long before the speech would have ended
    poll(lambda: http("GET", started["access_url"]).status == 404,
         "the access URL to answer 404 once the session has ended", 10, server)
    ended = api.ended(started["session_id"])
    assert ended["finish_reason"] == "normal"
    [call] = ended["calls"]
    assert call["final_code"] == 200 and call["end_reason"] == "local-bye", call
    assert call["duration"] < 8.0, f"the speech ran on: {call}"


@requires_sipp
def test_delete_ends_a_live_session_with_reason_api(api, server, sipp_uas):
    uas = sipp_uas(calls=1)
    tag = uuid.uuid4().hex
    target = f"sip:bob@127.0.0.1:{uas.port}"
    started = api.start("callback", {"to": target, "text": LONG_TEXT, "tag": tag})
    sid = started["session_id"]
    _connected(api, started["access_url"], server)

    done = api.ok("DELETE", f"/api/sessions/{sid}", route="/api/sessions/{session_id}")
    assert done["session_id"] == sid and done["finish_reason"] == "api", done
    _sipp_done(uas, server, timeout=10)       # it got voxlab's BYE
    assert error_of(api("DELETE", f"/api/sessions/{sid}"), 404)

    ended = api.ended(sid)
    assert ended["finish_reason"] == "api"
    assert ended["calls"][0]["direction"] == "out" and ended["calls"][0]["final_code"] == 200
    [row] = api.history(custom_data=tag)
    assert row["id"] == sid and row["finish_reason"] == "api" and row["calls"] == 1


def test_start_by_rule_and_the_start_errors(api, server):
    marker = uuid.uuid4().hex
    started = api.ok("POST", "/api/sessions", {"rule": "echo", "custom_data": marker}, status=201)
    sid = started["session_id"]
    assert api.session(sid)["scenario"] == "echo.py"
    api.ok("DELETE", f"/api/sessions/{sid}", route="/api/sessions/{session_id}")
    assert api.ended(sid)["finish_reason"] == "api"

    cases = [
        ({"scenario": "no-such-scenario"}, 404),
        ({"rule": "no such rule"}, 404),
        ({"scenario": "../hello"}, 400),
        ({"scenario": "callback", "rule": "echo"}, 400),
        ({"custom_data": marker}, 400),
        ({"scenario": 5}, 400),
        ({"rule": ["echo"]}, 400),
    ]
    for body, status in cases:
        reply = api("POST", "/api/sessions", {**body, "custom_data": marker})
        error_of(reply, status)
        conforms(reply.json(), "POST", "/api/sessions", status)
    assert [r["id"] for r in api.history(custom_data=marker)] == [sid]


# ---------------------------------------------------------------- the access URL mechanism

def test_the_access_url_passes_the_request_and_the_handlers_answer(custom):
    started = custom.start("web", {"who": "tester"})
    url = started["access_url"]
    assert url.startswith(custom.base + "/request/" + started["session_id"] + "/")

    reply = http("PUT", url + "/some/path?x=1&y=two", b"the body", {"X-Custom": "Value"})
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json", reply
    seen = reply.json()
    assert seen["method"] == "PUT" and seen["path"] == "/some/path?x=1&y=two"
    assert seen["content"] == "the body" and seen["headers"]["x-custom"] == "Value"
    assert seen["custom_data"] == '{"who": "tester"}'
    assert http("GET", url).json()["path"] == "/"

    reply = http("GET", url + "/text")
    assert (reply.status, reply.body) == (200, b"hello GET")
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    reply = http("POST", url + "/bytes", b"")
    assert (reply.status, reply.body) == (200, bytes(range(5)))
    reply = http("GET", url + "/reply")
    assert (reply.status, reply.body, reply.headers["X-Voxlab"]) == (202, b"accepted", "yes")
    reply = http("GET", url + "/none")
    assert (reply.status, reply.body) == (204, b"")
    assert http("GET", _wrong_secret(url)).status == 404

    reply = http("GET", url + "/end")           # the handler ends the session, and answers
    assert (reply.status, reply.json()) == (200, {"ended": True})
    poll(lambda: http("GET", url + "/text").status == 404, "404 once the session ended", 10, custom.srv)
    assert custom.ended(started["session_id"])["finish_reason"] == "normal"


def test_an_async_handler_answers_later(custom):
    started = custom.start("later")
    began = time.monotonic()
    reply = http("GET", started["access_url"] + "/x")
    assert (reply.status, reply.json()) == (200, {"later": True}), reply
    assert time.monotonic() - began >= 0.2
    custom.ok("DELETE", f"/api/sessions/{started['session_id']}", route="/api/sessions/{session_id}")
    assert http("GET", started["access_url"]).status == 404


def test_a_session_without_an_http_handler_answers_404(custom):
    started = custom.start("quick")           # ends itself at once; no HttpRequest listener
    assert http("GET", started["access_url"]).status == 404
    assert custom.ended(started["session_id"])["finish_reason"] == "normal"


# ---------------------------------------------------------------- history

def test_history_filters(custom):
    tag = uuid.uuid4().hex[:8]
    ids = {}
    ids["A"] = custom.start("quick", f"{tag}-A alpha")["session_id"]
    ids["B"] = custom.start("stay", f"{tag}-B beta")["session_id"]
    custom.ok("DELETE", f"/api/sessions/{ids['B']}", route="/api/sessions/{session_id}")
    ids["C"] = custom.start("broken", f"{tag}-C alpha")["session_id"]
    ids["D"] = custom.start("quick", f"{tag}-D")["session_id"]
    name = {v: k for k, v in ids.items()}

    rows = poll(lambda: (lambda r: r if len(r) == 4 and all(x["finish_reason"] for x in r) else None)(
        custom.history(custom_data=tag)), "the four sessions to end", 15, custom.srv)
    assert [name[r["id"]] for r in rows] == ["D", "C", "B", "A"]       # newest first
    assert {name[r["id"]]: r["finish_reason"] for r in rows} == {
        "A": "normal", "B": "api", "C": "error", "D": "normal"}
    assert all(r["calls"] == 0 and r["rule"] == "api" for r in rows)
    started = {name[r["id"]]: r["started"] for r in rows}

    def names(**params) -> list[str]:
        return [name.get(r["id"], r["id"]) for r in custom.history(**params)]

    assert names(custom_data=tag, scenario="quick.py") == ["D", "A"]
    assert names(custom_data=tag, scenario="broken.py") == ["C"]
    assert names(custom_data=tag, reason="api") == ["B"]
    assert names(custom_data=tag, reason="error") == ["C"]
    assert names(custom_data=tag, reason="normal") == ["D", "A"]
    assert names(custom_data=f"{tag}-B") == ["B"]
    assert names(custom_data="alpha", scenario="broken.py", reason="error")[:1] == ["C"]
    assert names(custom_data=f"{tag}-C alpha") == ["C"]
    assert names(custom_data=f"{tag}-A ALPHA") == []                   # case-sensitive

    # since is inclusive, until exclusive; epoch seconds or ISO 8601 (offset, Z, local).
    assert names(custom_data=tag, since=repr(started["B"])) == ["D", "C", "B"]
    assert names(custom_data=tag, until=repr(started["B"])) == ["A"]
    assert names(custom_data=tag, since=repr(started["B"]), until=repr(started["D"])) == ["C", "B"]
    # ISO times have microseconds at best: halfway between two starts (HTTP round trips apart).
    a_b, b_c = (started["A"] + started["B"]) / 2, (started["B"] + started["C"]) / 2
    assert started["B"] - started["A"] > 1e-4 and started["C"] - started["B"] > 1e-4, started
    utc = datetime.fromtimestamp(a_b, timezone.utc).isoformat()
    assert utc.endswith("+00:00")
    assert names(custom_data=tag, since=utc) == ["D", "C", "B"]
    assert names(custom_data=tag, until=utc.replace("+00:00", "Z")) == ["A"]
    local = datetime.fromtimestamp(b_c)
    assert names(custom_data=tag, since=local.isoformat()) == ["D", "C"]
    assert names(custom_data=tag, until=local.isoformat(timespec="microseconds")) == ["B", "A"]
    assert {"C", "D"} <= set(names(custom_data=tag, since=local.date().isoformat()))

    assert names(custom_data=tag, limit=2) == ["D", "C"]
    assert names(custom_data=tag, limit=2, offset=2) == ["B", "A"]
    assert names(custom_data=tag, limit=0) == []
    assert names(custom_data=tag, offset=4) == []

    for params in ({"limit": "abc"}, {"limit": "-1"}, {"limit": "1001"}, {"limit": "2.5"},
                   {"offset": "x"}, {"since": "yesterday"}, {"until": "2026-13-45"}):
        reply = custom("GET", "/api/history?" + urllib.parse.urlencode(params))
        assert params.popitem()[0] in error_of(reply, 400)
        conforms(reply.json(), "GET", "/api/history", 400)

    # The failed session's log, from the history: its line and the error with the traceback.
    log = custom.ok("GET", f"/api/sessions/{ids['C']}/log")["lines"]
    text = "\n".join(log)
    assert "about to fail" in text and "boom on purpose" in text and "ERROR" in text, log


# ---------------------------------------------------------------- /metrics

@requires_sipp
def test_metrics_count_the_calls_and_show_the_live_ones(api, server, sipp_uas):
    before = api.metrics()
    calls = sample(before, "voxlab_calls", "voxlab_calls_total", direction="out", code="200")
    normal = sample(before, "voxlab_sessions", "voxlab_sessions_total", reason="normal")
    active = sample(before, "voxlab_active_calls")
    assert before["voxlab_calls"].type == "counter" or calls == 0
    assert before["voxlab_active_calls"].type == "gauge"
    assert before["voxlab_active_sessions"].type == "gauge"
    for name in ("voxlab_call_setup_seconds", "voxlab_handler_seconds"):
        assert before[name].type == "histogram"
    for name in ("voxlab_rtp_rx_packets", "voxlab_rtp_tx_packets", "voxlab_rtp_lost",
                 "voxlab_rtp_late", "voxlab_rtp_rx_invalid", "voxlab_handler_budget_overruns"):
        assert before[name].type == "counter", name
    assert before["voxlab_rtp_jitter_max_ms"].type == "gauge"
    # Every metric the server has is documented, in docs/http-api.md and openapi.json.
    docs = (Path(__file__).resolve().parents[2] / "docs" / "http-api.md").read_text()
    described = DOC["paths"]["/metrics"]["get"]["description"]
    for name, family in before.items():
        if name.endswith("_created"):
            continue
        shown = name + "_total" if family.type == "counter" else name
        assert f"`{shown}`" in docs or f"`{name}_" in docs, f"{shown} is not in docs/http-api.md"
        assert shown in described, f"{shown} is not in openapi.json"

    uas = sipp_uas(calls=1)
    started = api.start("callback", {"to": f"sip:bob@127.0.0.1:{uas.port}", "text": LONG_TEXT})
    _connected(api, started["access_url"], server)
    during = api.metrics()
    assert sample(during, "voxlab_active_calls") >= active + 1
    assert sample(during, "voxlab_active_sessions") >= 1
    assert sample(during, "voxlab_http_requests", "voxlab_http_requests_total",
                  route="/api/sessions", status="201") >= 1

    assert http("POST", started["access_url"], b"hangup").status == 200
    _sipp_done(uas, server, timeout=10)
    after = poll(lambda: (lambda m: m if sample(m, "voxlab_calls", "voxlab_calls_total", direction="out",
                                                code="200") == calls + 1 else None)(api.metrics()),
                 "voxlab_calls_total{direction=out,code=200} to count the call", 10, server)
    assert after["voxlab_calls"].type == "counter"
    poll(lambda: sample(api.metrics(), "voxlab_active_calls") == active, "the call to leave the gauge",
         10, server)
    poll(lambda: sample(api.metrics(), "voxlab_sessions", "voxlab_sessions_total",
                        reason="normal") == normal + 1, "the session to be counted", 10, server)
    assert sample(after, "voxlab_call_setup_seconds", "voxlab_call_setup_seconds_count") >= 1
    for name in ("voxlab_rtp_rx_packets", "voxlab_rtp_tx_packets"):     # counters never go down
        assert sample(after, name, name + "_total") >= sample(before, name, name + "_total")


# ---------------------------------------------------------------- errors and the token

def _documented_routes():
    """(method, example path) of every documented route that needs the token."""
    for template, item in DOC["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch") and operation.get("security"):
                yield method.upper(), re.sub(r"\{(\w+)\}", lambda m: {"name": "x.wav"}.get(
                    m.group(1), "x"), template)


def test_without_the_right_token_nothing_happens(api, server):
    marker = uuid.uuid4().hex
    user = f"nobody{marker[:8]}"
    for token in (NO_TOKEN, "wrong", "", api.token + "x", api.token[:-1]):
        reply = api("POST", "/api/sessions", {"scenario": "callback", "custom_data": marker}, token=token)
        assert "token" in error_of(reply, 401)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        conforms(reply.json(), "POST", "/api/sessions", 401)
        error_of(api("PUT", f"/api/users/{user}", {"password": "x"}, token=token), 401)
    # Not a bearer token at all.
    for header in (f"Basic {api.token}", api.token, f"Token {api.token}"):
        error_of(http("GET", server.http_url + "/api/sessions", headers={"Authorization": header}), 401)
    # Every documented route that needs it, even for things that do not exist.
    routes = list(_documented_routes())
    assert len(routes) == 11, routes
    for method, path in routes:
        reply = api(method, path, {} if method in ("POST", "PUT") else None, token=NO_TOKEN)
        error_of(reply, 401)

    assert marker not in json.dumps(api.ok("GET", "/api/sessions"))
    assert api.history(custom_data=marker) == []
    assert user not in [u["name"] for u in api.ok("GET", "/api/users")["users"]]
    # The bearer scheme's name is case-insensitive; the token itself is not.
    assert api("GET", "/api/sessions", token=NO_TOKEN,
               headers={"Authorization": f"bearer {api.token}"}).status == 200
    assert http("GET", server.http_url + "/api/openapi.json").status == 200
    assert http("GET", server.http_url + "/metrics").status == 200


def test_a_malformed_body_is_400_and_changes_nothing(api):
    marker = uuid.uuid4().hex
    user = f"mal{marker[:8]}"
    for body in (b'{"scenario": "callback", "custom_data": "' + marker.encode() + b'"',
                 b'{"scenario": "callback", "custom_data": "' + marker.encode() + b'",}',
                 b"[\"callback\"]", b'"' + marker.encode() + b'"', b"", b"   ", b"\xff\xfe{}"):
        reply = api("POST", "/api/sessions", body, headers={"Content-Type": "application/json"})
        error_of(reply, 400)
        conforms(reply.json(), "POST", "/api/sessions", 400)
    for body in (b'{"password": "x"', b"{}", b'{"password": ""}', b'{"password": 5}', b"null"):
        reply = api("PUT", f"/api/users/{user}", body)
        error_of(reply, 400)
        conforms(reply.json(), "PUT", "/api/users/{name}", 400)
    assert "malformed JSON" in error_of(api("POST", "/api/sessions", b"{nope"), 400)

    assert marker not in json.dumps(api.ok("GET", "/api/sessions"))
    assert api.history(custom_data=marker) == []
    assert user not in [u["name"] for u in api.ok("GET", "/api/users")["users"]]


def test_unknown_paths_are_404_and_wrong_methods_405_in_json(api, server):
    for path in ("/api/nothing", "/api/sessions/x/y/z", "/api/", "/api/users/", "/api/history/1"):
        assert "no such resource" in error_of(api("GET", path), 404)
    cases = [("DELETE", "/api/history", "GET"), ("PATCH", "/api/sessions", "GET, POST"),
             ("POST", "/api/users/alice", "DELETE, PUT"), ("PUT", "/api/sessions/x", "DELETE, GET"),
             ("POST", "/api/openapi.json", "GET"), ("DELETE", "/api/recordings/a.wav", "GET")]
    for method, path, allow in cases:
        for token in (None, NO_TOKEN):       # the method is checked before the token
            reply = api(method, path, b"{}" if method in ("POST", "PUT", "PATCH") else None, token=token)
            assert "not allowed" in error_of(reply, 405)
            assert reply.headers["Allow"] == allow, (method, path, reply.headers["Allow"])
    # HEAD is GET without the body.
    reply = api("HEAD", "/api/sessions")
    assert (reply.status, reply.body) == (200, b"")


# ---------------------------------------------------------------- users

def test_users_are_created_listed_changed_and_removed(voxlab_factory):
    srv = voxlab_factory(config='[users]\nbob = "pw"\n')
    api = Client(srv)

    def users() -> dict:
        return {u["name"]: u for u in api.ok("GET", "/api/users")["users"]}

    assert users()["bob"]["source"] == "config"
    assert api.ok("PUT", "/api/users/alice", {"password": "x"}, status=201) == {
        "name": "alice", "created": True}
    assert api.ok("PUT", "/api/users/alice", {"password": "y"}, status=200) == {
        "name": "alice", "created": False}
    assert users()["alice"] == {"name": "alice", "source": "store", "bindings": []}
    assert api.ok("DELETE", "/api/users/alice") == {"name": "alice", "removed": True}
    assert "no user" in error_of(api("DELETE", "/api/users/alice"), 404)
    assert "alice" not in users()

    # The config file's user is read-only here.
    assert "config" in error_of(api("PUT", "/api/users/bob", {"password": "new"}), 400)
    assert "config" in error_of(api("DELETE", "/api/users/bob"), 400)
    assert users()["bob"]["source"] == "config"
    # A name the registrar cannot have.
    error_of(api("PUT", "/api/users/a;b", {"password": "x"}), 400)
    assert set(users()) == {"bob"}


# ---------------------------------------------------------------- recordings

def _recording_session(api: Client, before: set[str]) -> str:
    def find():
        for s in api.ok("GET", "/api/sessions")["sessions"]:
            if s["scenario"] == "record.py" and s["id"] not in before:
                return s["id"]
    return poll(find, "the record session", 10, api.srv)


def test_a_recording_is_listed_downloaded_and_ranged(api, server):
    before = {s["id"] for s in api.ok("GET", "/api/sessions")["sessions"]}
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("record")
        stop = threading.Event()

        def keep_sending() -> None:            # RTP flows while the prompt and the beep play
            while not stop.is_set():
                call.rtp.send_silence(0.1)
        quiet = threading.Thread(target=keep_sending, daemon=True)
        quiet.start()
        try:
            sid = _recording_session(api, before)
            poll(lambda: any(u["kind"] == "recorder" for u in api.session(sid).get("units", [])),
                 "the recorder to start (after the prompt and the beep)", 30, server, step=0.1)
        finally:
            stop.set()
            quiet.join(5)
        call.rtp.send_audio(sine(800.0, 1.5, amplitude=0.3))
        call.rtp.send_dtmf("#")
        line = poll(lambda: [ln for ln in api.ok("GET", f"/api/sessions/{sid}/log")["lines"]
                             if "record: " in ln], "the recording to be written", 15, server)[0]
        path = Path(re.search(r"record: \d+\.\d s in (\S+\.wav)", line).group(1))
        assert path.parent == server.data_dir / "recordings" and path.is_file(), line
        call.wait_bye(20)                      # it plays the message back, then hangs up
        call.bye()
    ended = api.ended(sid)
    assert str(path) in [r["path"] for r in ended["recordings"]], ended["recordings"]

    listed = {r["name"]: r for r in api.ok("GET", "/api/recordings")["recordings"]}
    entry = listed[path.name]
    size = path.stat().st_size
    assert entry["size"] == size and entry["url"] == f"/api/recordings/{path.name}"

    reply = api("GET", entry["url"])
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("audio/"), reply
    assert len(reply.body) == size and reply.body == path.read_bytes()
    assert reply.body[:4] == b"RIFF" and reply.body[8:12] == b"WAVE"
    with wave.open(io.BytesIO(reply.body)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 8000, 2)
        assert w.getnframes() >= 8000 * 1.0, "at least the second and a half of tone sent"

    reply = api("GET", entry["url"], headers={"Range": "bytes=0-43"})
    assert reply.status == 206 and reply.body == path.read_bytes()[:44], reply
    assert reply.headers["Content-Range"] == f"bytes 0-43/{size}"
    reply = api("GET", entry["url"], headers={"Range": f"bytes={size + 10}-"})
    assert reply.status == 416, reply
    assert error_of(api("GET", "/api/recordings/no-such-recording.wav"), 404)


def test_a_recording_name_cannot_reach_outside_the_folder(api, server):
    secret = uuid.uuid4().hex.encode()
    (server.data_dir / "recordings").mkdir(exist_ok=True)
    (server.data_dir / "outside.wav").write_bytes(b"RIFF" + secret)
    (server.data_dir / "recordings" / "inside.wav").write_bytes(b"RIFF" + secret[::-1])
    for name in ("../outside.wav", "..%2Foutside.wav", "%2E%2E%2Foutside.wav", "..%2foutside.wav",
                 "..\\outside.wav", "%2e%2e/outside.wav", "recordings%2F..%2F..%2Foutside.wav",
                 "inside.txt", ".wav%00", "inside.wav%2F"):
        reply = api("GET", f"/api/recordings/{name}")
        assert reply.status in (400, 404), (name, reply)
        error_of(reply, reply.status)
        assert secret not in reply.body
    assert api("GET", "/api/recordings/inside.wav").body == b"RIFF" + secret[::-1]
