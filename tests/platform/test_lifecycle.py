"""The session platform through real servers (issue 10): the lifecycle's event order, the
Terminating handler's HTTP request, every timeout with its finish reason, a runaway
handler stopped within its budget while another call's echo loses no frame, timers and
caps, custom data, ApplicationStorage and the history across a restart, ``voxlab history``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.peers.server import VoxlabServer
from tests.peers.sipua import SipError, SipUA
from voxlab.media.tones import sine
from voxlab.store.history import query_sessions

pytestmark = pytest.mark.e2e


@pytest.fixture
def web():
    """A local HTTP server: GET answers 200 with "pong <path>"."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"pong {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def history_of(srv, session_id: str | None = None, timeout: float = 10.0, **filters) -> list[dict]:
    """Rows of the server's history (written off the reactor: poll until they are there)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query_sessions(srv.data_dir / "history.sqlite", with_calls=True, **filters)
        if session_id is not None:
            rows = [r for r in rows if r["id"] == session_id and r["finish_reason"]]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def session_id_in_log(srv, pattern: str) -> str:
    m = srv.wait_for_log(pattern)
    assert m, srv.describe(40)
    return m.group(1)


LIFECYCLE = """
seen = []

def started(e):
    seen.append("Started")
    Logger.write(f"started {e.session_id} access={e.access_url} log={e.log_url}")

def alerting(e):
    seen.append("CallAlerting")
    url = e.headers["X-Url"]
    e.call.add_event_listener(CallEvents.Connected, lambda ev: seen.append("Connected"))
    e.call.add_event_listener(CallEvents.Disconnected, lambda ev: (seen.append("Disconnected"),
                                                                  VoxEngine.terminate()))

    def terminating(ev):
        seen.append("Terminating")
        Net.http_request(url + "/last", lambda r: seen.append(f"http {r.code} {r.text}"))

    VoxEngine.add_event_listener(AppEvents.Terminating, terminating)
    e.call.answer()

def terminated(e):
    seen.append("Terminated")
    Logger.write("order: " + ", ".join(seen))
    try:
        VoxEngine.create_tts_player("too late")
    except RuntimeError as exc:
        Logger.write(f"after Terminated: {exc}")

VoxEngine.add_event_listener(AppEvents.Started, started)
VoxEngine.add_event_listener(AppEvents.CallAlerting, alerting)
VoxEngine.add_event_listener(AppEvents.Terminated, terminated)
"""


def test_events_come_in_voxengine_order_and_terminating_still_gets_its_request(voxlab_factory, web):
    srv = voxlab_factory(scenarios={"life": LIFECYCLE})
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("life", headers={"X-Url": web})
        assert call.bye().status == 200
    m = srv.wait_for_log(r"started (\S+) access=(\S+) log=(\S+)")
    assert m, srv.describe(40)
    sid, access, log_url = m.groups()
    assert access.startswith(f"{srv.http_url}/request/{sid}/") and log_url == f"{srv.http_url}/api/sessions/{sid}/log"
    assert srv.wait_for_log(r"order: Started, CallAlerting, Connected, Disconnected, Terminating, "
                            r"http 200 pong /last, Terminated$"), srv.describe(40)
    assert srv.wait_for_log(r"after Terminated: .*only Logger works"), srv.describe(40)
    row = history_of(srv, sid)[0]
    assert row["finish_reason"] == "normal" and row["rule"] == "life" and row["scenario"] == "life.py"
    (leg,) = row["call_rows"]
    assert leg["direction"] == "in" and leg["final_code"] == 200 and leg["end_reason"] == "remote-bye"


IDLE = """
VoxEngine.add_event_listener(AppEvents.Started, lambda e: Logger.write(f"idle session {e.session_id}"))
"""

ECHO = """
def on_alerting(e):
    Logger.write(f"echo session {VoxEngine.custom_data() or 'x'} {e.call.id}")
    e.call.answer()
    e.call.send_media_to(e.call)
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

SILENT = """
VoxEngine.add_event_listener(AppEvents.CallAlerting, lambda e: Logger.write(f"not answering {e.call.id}"))
"""


def api(srv, method: str, path: str, body=None):
    req = urllib.request.Request(srv.http_url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {srv.api_token()}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_each_timeout_ends_the_session_with_reason_timeout(voxlab_factory):
    srv = voxlab_factory(scenarios={"idle": IDLE, "echo": ECHO, "silent": SILENT},
                         config="[session]\nidle_timeout = 1\nmax_duration = 3\nalerting_timeout = 1\n")
    # No call at all (started over the API): the idle timeout.
    idle = api(srv, "POST", "/api/sessions", {"scenario": "idle"})["session_id"]
    # A call that goes on: the maximum session length hangs it up.
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("echo")
        assert call.wait_bye(15), srv.describe(40)
        # An incoming call nobody answers: 480 after the alerting timeout, then idle.
        with pytest.raises(SipError) as unanswered:
            ua.call("silent", timeout=15)
        assert unanswered.value.status == 480
    echo_sid = session_id_in_log(srv, r"\[(s\S+)\] echo session")
    silent_sid = session_id_in_log(srv, r"\[(s\S+)\] not answering")
    for sid in (idle, echo_sid, silent_sid):
        rows = history_of(srv, sid)
        assert rows and rows[0]["finish_reason"] == "timeout", (sid, rows, srv.describe(40))
    assert srv.wait_for_log(r"maximum length of 3 s")
    assert srv.wait_for_log(r"no call for 1 s")
    (leg,) = history_of(srv, silent_sid)[0]["call_rows"]
    assert leg["final_code"] == 480 and leg["end_reason"] == "no-answer"


RUNAWAY = """
def on_alerting(e):
    def spin(ev):
        Logger.write("spinning")
        while True:
            pass
    e.call.add_event_listener(CallEvents.Connected, spin)
    e.call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_a_runaway_handler_ends_its_session_as_limit_while_another_echo_loses_nothing(voxlab_factory):
    srv = voxlab_factory(scenarios={"echo": ECHO, "spin": RUNAWAY})
    tone = sine(900.0, 4.0, amplitude=0.3)
    with SipUA(srv.host, srv.sip_port) as ua:
        echo = ua.call("echo", codecs=("PCMU",))
        sender = echo.rtp.send_audio_async(tone)
        time.sleep(0.5)              # the echo is flowing before the runaway starts
        spin = ua.call("spin")
        assert spin.wait_bye(10), srv.describe(40)
        sender.join(10)
        echo.rtp.wait_quiet(0.5, timeout=5)
        echoed = echo.rtp.audio_packets()
        echo.bye()
    sent = len(tone) // 160
    # The echo sends all the time (silence when nothing comes in): the tone's frames are
    # the loud ones, and every one of them must come back, in one unbroken run.
    loud = [p for p, (_, level) in zip(echoed, echo.rtp.packet_levels()) if level > -30]
    first = loud[0].packet.sequence
    offsets = sorted((p.packet.sequence - first) % 65536 for p in loud)
    assert len(loud) == sent, f"sent {sent} tone frames, {len(loud)} came back"
    assert offsets == list(range(sent)), "a gap in the echoed tone"
    sid = session_id_in_log(srv, r"\[(s\S+)\] spinning")
    row = history_of(srv, sid)[0]
    assert row["finish_reason"] == "limit", row


TIMERS = """
import itertools
ticks = itertools.count(1)

def on_alerting(e):
    call = e.call
    call.answer()
    VoxEngine.custom_data("set by the scenario")

    def tick():
        n = next(ticks)
        Logger.write(f"tick {n}")
        if n == 3:
            clear_interval(every)
            set_timeout(call.hangup, 100)

    every = set_interval(tick, 50)
    never = set_timeout(lambda: Logger.write("must not run"), 200)
    clear_timeout(never)
    try:
        for _ in range(200):
            set_timeout(lambda: None, 60000)
    except Exception as exc:
        Logger.write(f"cap: {type(exc).__name__}: {exc}")

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_timers_run_as_handlers_and_are_capped(voxlab_factory):
    srv = voxlab_factory(scenarios={"timers": TIMERS})
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("timers")
        assert call.wait_bye(10), srv.describe(40)
    assert srv.wait_for_log(r"tick 3"), srv.describe(40)
    assert srv.wait_for_log(r"cap: LimitExceeded: at most 100 timers"), srv.describe(40)
    assert "tick 4" not in srv.log_text() and "must not run" not in srv.log_text()


COUNTER = """
async def on_alerting(e):
    n = int(await ApplicationStorage.get("visits") or 0) + 1
    await ApplicationStorage.put("visits", str(n))
    Logger.write(f"visit {n}; keys {await ApplicationStorage.keys()}")
    e.call.decline(486)
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_storage_and_history_survive_a_restart_and_voxlab_history_shows_them(tmp_path):
    scn = tmp_path / "scenarios"
    scn.mkdir()
    (scn / "counter.py").write_text(COUNTER)
    data = tmp_path / "data"

    def visit(srv, expected: int):
        with SipUA(srv.host, srv.sip_port) as ua:
            with pytest.raises(SipError):
                ua.call("counter")
        assert srv.wait_for_log(rf"visit {expected}; keys \['visits'\]"), srv.describe(30)

    first = VoxlabServer(data_dir=data, scenarios=scn, log_path=tmp_path / "one.log")
    first.start()
    try:
        visit(first, 1)
        visit(first, 2)
    finally:
        first.stop()
    second = VoxlabServer(data_dir=data, scenarios=scn, log_path=tmp_path / "two.log")
    second.start()
    try:
        visit(second, 3)
        rows = history_of(second, None, scenario="counter.py")
        deadline = time.monotonic() + 10
        while len([r for r in rows if r["finish_reason"]]) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = history_of(second, None, scenario="counter.py")
    finally:
        second.stop()
    assert len(rows) == 3, rows
    assert all(r["call_rows"][0]["final_code"] == 486 for r in rows), rows
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "history", "-d", str(data),
                          "--scenario", "counter"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["SESSION", "STARTED", "DURATION", "SCENARIO"], out.stdout
    assert len(lines) == 4 and all("counter.py" in line for line in lines[1:]), out.stdout
    as_json = subprocess.run([sys.executable, "-m", "voxlab.cli", "history", "-d", str(data), "--json",
                              "--reason", "shutdown", "--since", "1h"], capture_output=True, text=True, timeout=30)
    assert as_json.returncode == 0, as_json.stderr
    assert len(json.loads(as_json.stdout)["sessions"]) == 3
    bad = subprocess.run([sys.executable, "-m", "voxlab.cli", "history", "-d", str(data), "--reason", "odd"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--reason is one of" in bad.stderr


CAPS = """
def on_alerting(e):
    e.call.answer()
    players = []
    try:
        for i in range(20):
            players.append(VoxEngine.create_tone_script_player("440@-20;1(1/0/1)"))
    except Exception as exc:
        Logger.write(f"players: {len(players)}, then {type(exc).__name__}: {exc}")
    players[0].stop()
    VoxEngine.create_tone_script_player("440@-20;1(1/0/1)")
    Logger.write("one more after a stop")
    Logger.write("x" * 10000)
    e.call.hangup()

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_the_player_cap_and_the_log_line_limit(voxlab_factory):
    srv = voxlab_factory(scenarios={"caps": CAPS})
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("caps")
        assert call.wait_bye(10), srv.describe(40)
    assert srv.wait_for_log(r"players: 10, then LimitExceeded: at most 10 players"), srv.describe(40)
    assert srv.wait_for_log(r"one more after a stop"), srv.describe(40)
    assert srv.wait_for_log(r"x{4096}\.\.\. \(5904 more characters cut\)"), srv.describe(40)
