"""What a new user meets in the first hour (issue 6): scenario files picked up
without a restart, broken ones reported at once, `attach --last` finding the
live call, a taken port in one clear line, tracebacks of the scenario's own
frames with the feed in cause-then-effect order, PlaybackFinished only for a
playback still heard, and one log line per call."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.console.conftest import run_cli
from tests.peers.server import free_sip_port, rtp_block
from tests.peers.sipua import SipError, SipUA
from voxlab.media.analysis import dominant_frequency
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

ECHO = """
def on_alerting(e):
    e.call.answer()
    e.call.send_media_to(e.call)
    e.call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

SCENARIOS = {
    "echo": ECHO,
    # Never terminates: the session outlives its call.
    "linger": """
def on_alerting(e):
    e.call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    "broken": "def on_alerting(e)\n    pass\n",
    # The error is two frames deep in the scenario's own code.
    "deepfail": """
def helper(x):
    return 1 / x

def on_connected(ev):
    helper(0)

def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, on_connected)
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Hangs up and terminates in one handler: Disconnected is queued, never handled.
    "byeterm": """
def on_connected(ev):
    ev.call.hangup()
    VoxEngine.terminate()

def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, on_connected)
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # A playback displaced by send_media_to: no PlaybackFinished (which would hang up).
    "displace": """
from twisted.internet import reactor

def on_connected(ev):
    call = ev.call
    call.start_playback("beep.wav")
    reactor.callLater(0.3, call.send_media_to, call)

def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, on_connected)
    e.call.add_event_listener(CallEvents.PlaybackFinished, lambda ev: (Logger.write("finished"), ev.call.hangup()))
    e.call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("firsthour"), SCENARIOS, tones={"beep": (700.0, 1.0)})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def _status(server, user: str) -> int:
    with SipUA(server.host, server.sip_port) as ua:
        try:
            ua.call(user).bye()
        except SipError as exc:
            return exc.status
    return 200


def _wait_status(server, user: str, expected: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = _status(server, user)
        if got == expected:
            return
        assert time.monotonic() < deadline, f"{user}: still {got}, not {expected}\n" + server.describe(30)
        time.sleep(0.3)


def _cli(server, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, "--data-dir", str(server.data_dir))


def test_added_renamed_and_removed_scenarios_and_routes_toml_apply_without_restart(srv):
    folder = srv.scenarios
    assert _status(srv, "lazy") == 404
    (folder / "lazy.py").write_text(ECHO)
    _wait_status(srv, "lazy", 200)
    assert srv.wait_for_log(r"routing changed", timeout=5)
    assert srv.wait_for_log(r"route lazy -> lazy\.py", timeout=5)
    (folder / "lazy.py").rename(folder / "lazier.py")
    _wait_status(srv, "lazy", 404)
    _wait_status(srv, "lazier", 200)
    (folder / "routes.toml").write_text('[[routes]]\npattern = "ext-[0-9]+"\nscenario = "lazier.py"\n')
    _wait_status(srv, "ext-42", 200)
    assert "ext-[0-9]+" in _cli(srv, "routes").stdout
    # A routes.toml that cannot be applied keeps the rules in force, and says why.
    (folder / "routes.toml").write_text('[[routes]]\npattern = "x"\nscenario = "nosuch.py"\n')
    assert srv.wait_for_log(r"routing not changed: .*nosuch\.py", timeout=10), srv.describe(20)
    assert _status(srv, "ext-42") == 200
    (folder / "routes.toml").unlink()
    (folder / "lazier.py").unlink()
    _wait_status(srv, "lazier", 404)
    _wait_status(srv, "ext-42", 404)


def test_broken_scenario_is_reported_at_start_and_when_it_changes(srv):
    # Logged at start-up, before any call, with file and line.
    assert srv.wait_for_log(r"broken\.py is broken, calls to it get 500: .*broken\.py:1: expected ':'",
                            timeout=5), srv.describe(30)
    routes = _cli(srv, "routes")
    assert routes.returncode == 0, routes.stderr
    assert re.search(r"broken\s+-> broken\.py\s+BROKEN", routes.stdout), routes.stdout
    assert "broken.py:1: expected ':'" in routes.stdout
    assert "broken.py:1" in _cli(srv, "sessions").stdout
    assert _status(srv, "broken") == 500
    # An edit that breaks a working file is noticed without a call; fixing it too.
    path = srv.scenarios / "tobreak.py"
    path.write_text(ECHO)
    _wait_status(srv, "tobreak", 200)
    path.write_text(ECHO + "\nif True\n")
    assert srv.wait_for_log(r"tobreak\.py is broken, calls to it get 500: .*tobreak\.py:8", timeout=10), \
        srv.describe(20)
    path.write_text(ECHO)
    assert srv.wait_for_log(r"tobreak\.py compiles again", timeout=10)
    path.unlink()


def test_attach_last_prefers_the_session_with_a_live_call(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        live = ua.call("echo")
        lingering = ua.call("linger")
        lingering.bye()          # its session goes on (it never terminates), without a call
        out = subprocess.run(
            [sys.executable, "-m", "voxlab.cli", "attach", "--last", "--data-dir", str(srv.data_dir)],
            input="print(session.scenario_path.name, [c.state for c in calls])\n",
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "echo.py ['CONNECTED']" in out.stdout, out.stdout
        live.bye()


def test_traceback_shows_the_scenario_frames_and_the_feed_keeps_cause_before_effect(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("deepfail")
        assert call.wait_bye(10)
    match = srv.wait_for_log(r"ERROR handler on_connected for CallEvents.Connected raised\n"
                             r"((?:.*\n)*?).*ZeroDivisionError: division by zero", timeout=10)
    assert match, srv.describe(40)
    block = match.group(0)
    assert "in on_connected" in block and "in helper" in block and "deepfail.py" in block, block
    for machinery in ("session.py", "budget.py", "_guarded", "twisted"):
        assert machinery not in block, block

    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("byeterm")
        assert call.wait_bye(10)
    sessions = _cli(srv, "sessions", "--ended", "--json")
    ended = [s for s in json.loads(sessions.stdout)["ended"] if s["scenario"].startswith("byeterm")]
    assert ended, sessions.stdout
    feed = _cli(srv, "logs", ended[0]["id"], "--feed").stdout.splitlines()
    texts = [line.split(" ", 1)[1] for line in feed]
    disconnected = [i for i, t in enumerate(texts) if "Disconnected" in t and t.startswith("event")]
    terminated = [i for i, t in enumerate(texts) if t.startswith("session terminated")]
    assert disconnected and terminated and disconnected[0] < terminated[0], feed


def test_playback_displaced_by_send_media_to_gives_no_playback_finished(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("displace")
        call.rtp.send_silence(0.6)
        call.rtp.send_audio(sine(1000.0, 1.2))     # the beep would have ended meanwhile
        assert not call.wait_bye(0.5), "PlaybackFinished fired for a playback no longer heard"
        call.bye()
    heard = call.rtp.received_audio()
    assert abs(dominant_frequency(heard[-6400:-800]) - 1000.0) < 20     # the echo, not the beep
    assert "finished" not in srv.log_text()


def test_one_log_line_per_call_start_answer_and_end(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        ua.call("echo").bye()
    started = srv.wait_for_log(r"call (s\d+-[0-9a-f]+-c\d+) from '[^']*' to 'echo': session", timeout=5)
    assert started, srv.describe(20)
    cid = re.escape(started.group(1))
    assert srv.wait_for_log(cid + r" connected \(PCMU\)", timeout=5)
    assert srv.wait_for_log(cid + r" ended: remote-bye, [0-9.]+ s connected", timeout=5), srv.describe(20)


def _twistd(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    twistd = Path(sys.executable).with_name("twistd")
    return subprocess.run([str(twistd), "-n", "voxlab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_second_server_on_a_taken_port_or_data_dir_says_so_in_one_line(srv, tmp_path):
    lo, hi = rtp_block(20)
    taken = _twistd("--sip", f"127.0.0.1:{srv.sip_port}", "--rtp-ports", f"{lo}-{hi}",
                    "--http", f"127.0.0.1:{free_sip_port()}",
                    "--data-dir", str(tmp_path / "other"), cwd=tmp_path)
    out = taken.stdout + taken.stderr
    assert taken.returncode != 0, out
    assert "Traceback" not in out and "CannotListenError" not in out, out
    lines = [line for line in out.splitlines() if f"127.0.0.1:{srv.sip_port}" in line]
    assert len(lines) == 1 and "Address already in use" in lines[0] and "--sip" in lines[0], out
    assert not (tmp_path / "twistd.pid").exists() and not (tmp_path / "other" / "twistd.pid").exists()

    # A server run by twistd keeps its pid file in the data dir, not the current directory.
    data = tmp_path / "data"
    port = free_sip_port()
    first = subprocess.Popen([str(Path(sys.executable).with_name("twistd")), "-n", "voxlab",
                              "--sip", f"127.0.0.1:{port}", "--rtp-ports", f"{lo}-{hi}",
                              "--http", f"127.0.0.1:{free_sip_port()}",
                              "--data-dir", str(data)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (data / "console.sock").exists():
            assert first.poll() is None and time.monotonic() < deadline, "first server did not start"
            time.sleep(0.1)
        assert (data / "twistd.pid").read_text().strip() == str(first.pid)
        assert not (tmp_path / "twistd.pid").exists()
        same_dir = _twistd("--sip", f"127.0.0.1:{free_sip_port()}", "--data-dir", str(data), cwd=tmp_path)
        assert same_dir.returncode != 0
        assert same_dir.stderr.strip().count("\n") == 0, same_dir.stderr
        assert f"another voxlab server (PID {first.pid}) is running with the data dir {data}" \
            in same_dir.stderr, same_dir.stderr
    finally:
        first.terminate()
        first.wait(10)
    assert not (data / "twistd.pid").exists()
