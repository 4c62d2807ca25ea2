"""The media plane in worker processes (issue 7): a runaway handler or console
cell in the main process is not heard on anyone's call; a worker killed with
SIGKILL ends only its own calls and is replaced; routes across two workers
carry audio both ways."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.engine.test_session_behaviour import echo_works
from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

SCENARIOS = {
    "echo": """
def on_alerting(e):
    e.call.answer()
    e.call.send_media_to(e.call)
    e.call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Loops in its Connected handler until the budget (1 s) interrupts it.
    "spin": """
def on_connected(ev):
    while True:
        pass

def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, on_connected)
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Answers and hangs up in the same handler: its RTP socket is handed to the
    # worker and released again before the reactor has written anything.
    "quick": """
def on_alerting(e):
    e.call.answer()
    e.call.hangup()
    VoxEngine.terminate()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Plays a short prompt, then starts it again (looping) while the main process
    # is busy, so the first one's PlayerFinished arrives after the second started.
    "replay": """
import time
from twisted.internet import reactor

def again(call):
    t = time.time()
    while time.time() - t < 0.4:
        pass
    call.start_playback("blip.wav", loop=True)

def on_connected(ev):
    ev.call.start_playback("blip.wav")
    reactor.callLater(0.05, again, ev.call)

def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Connected, on_connected)
    e.call.add_event_listener(CallEvents.PlaybackFinished, lambda ev: Logger.write("replay: finished"))
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Answers and waits: the console decides where its media goes.
    "hold": """
def on_alerting(e):
    e.call.answer()
    e.call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("workers"), SCENARIOS, extra_args=("--media-workers", "2"),
                    tones={"blip": (900.0, 0.1)})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def _console(server, code: str, status: int = 0) -> str:
    """Run ``code`` in the latest session with a live call, as `voxlab attach --last` does."""
    args = [sys.executable, "-m", "voxlab.cli", "attach", "--last", "--data-dir", str(server.data_dir)]
    out = subprocess.run(args, input=code, capture_output=True, text=True, timeout=30)
    assert out.returncode == status, out.stdout + out.stderr
    return out.stdout + out.stderr


def _live_calls(server) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "sessions", "--json", "--data-dir",
                          str(server.data_dir)], capture_output=True, text=True, timeout=30)
    return [c for s in json.loads(out.stdout)["sessions"] for c in s["calls"] if c["state"] == "CONNECTED"]


def _gaps_ms(call, until: float) -> list[float]:
    """Inter-arrival gaps of the packets that came back while we were sending
    (after that, the echo's own silence starts RELAY_QUIET_TICKS later)."""
    arrivals = [p.arrival for p in call.rtp.audio_packets() if p.arrival <= until]
    return [1000 * (b - a) for a, b in zip(arrivals, arrivals[1:])]


def _sent_all_came_back(call, sent_packets: int) -> None:
    got = len(call.rtp.audio_packets())
    assert got >= sent_packets, f"echo lost packets: sent {sent_packets}, got back {got}"


@pytest.mark.parametrize("stall", ["handler", "console"])
def test_a_busy_main_process_is_not_heard_on_another_call(srv, stall):
    with SipUA(srv.host, srv.sip_port) as ua:
        echo = ua.call("echo")
        echo.rtp.send_silence(0.3)
        tone = sine(1000.0, 3.0)
        sender = echo.rtp.send_audio_async(tone)
        time.sleep(0.4)
        if stall == "handler":
            spinner = ua.call("spin")        # its Connected handler runs for the whole budget
            assert spinner.wait_bye(10), "the runaway session never ended\n" + srv.describe(30)
        else:
            started = time.monotonic()
            out = _console(srv, "while True:\n    pass\n", status=1)
            assert "BudgetExceeded" in out, out
            assert time.monotonic() - started > 0.9, out      # the cell really held the reactor
        sender.join()
        sent_until = time.perf_counter()
        echo.rtp.wait_quiet(0.3, timeout=5)
        echo.bye()
    gaps = _gaps_ms(echo, sent_until)
    assert max(gaps) < 60, f"largest RTP gap {max(gaps):.0f} ms while the main process was busy"
    _sent_all_came_back(echo, 15 + len(tone) // 160)
    heard = echo.rtp.received_audio()
    assert abs(dominant_frequency(heard[4000:-2000]) - 1000.0) < 15


def _worker_of_last_call(server) -> tuple[int, int]:
    out = _console(server, "print(call.media.worker.index, call.media.worker.pid)")
    index, pid = out.split()[-2:]
    return int(index), int(pid)


def test_killing_a_worker_ends_only_its_calls_and_it_is_replaced(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        first = ua.call("echo")
        first_worker = _worker_of_last_call(srv)
        second = ua.call("echo")
        second_worker = _worker_of_last_call(srv)
        assert first_worker[0] != second_worker[0], "two calls should be spread over the two workers"
        first.rtp.send_silence(0.2)
        sender = second.rtp.send_audio_async(sine(700.0, 4.0))
        time.sleep(0.5)
        killed_at = time.monotonic()
        os.kill(first_worker[1], signal.SIGKILL)
        assert first.wait_bye(3), "the caller of the killed worker got no BYE within 3 s\n" + srv.describe(30)
        assert time.monotonic() - killed_at < 3
        sender.join()
        sent_until = time.perf_counter()
        second.rtp.wait_quiet(0.3, timeout=5)
        assert not second.bye_received.is_set(), "a call in the other worker was hung up"
        gaps = _gaps_ms(second, sent_until)
        assert max(gaps) < 60, f"the other worker's call had a {max(gaps):.0f} ms gap"
        _sent_all_came_back(second, 200)
        second.bye()
    assert srv.wait_for_log(r"media worker %d \(pid %d\) ended" % first_worker, timeout=5)
    assert srv.wait_for_log(r"call .* ended: media-failure", timeout=5), srv.describe(30)
    assert srv.wait_for_log(r"media worker %d started \(pid (?!%d\b)\d+" % first_worker, timeout=10)
    # The pool is whole again: calls work, whichever worker takes them.
    for _ in range(3):
        echo_works(srv)


def test_a_route_across_two_workers_carries_audio_both_ways(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        a = ua.call("hold")
        a_worker, _ = _worker_of_last_call(srv)
        b = ua.call("hold")
        b_worker, _ = _worker_of_last_call(srv)
        assert a_worker != b_worker
        # From b's session (the latest): bridge it with a's call, both ways.
        _console(srv, "other = next(c for s in session.engine.sessions.values() if s is not session "
                      "for c in s.calls if not c.ended)\n"
                      "call.send_media_to(other)\nother.send_media_to(call)\n")
        ta = a.rtp.send_audio_async(sine(600.0, 2.0))
        tb = b.rtp.send_audio_async(sine(1400.0, 2.0))
        ta.join()
        tb.join()
        time.sleep(0.3)        # the tail through the pipes (bridged calls never go quiet: silence)
        a.bye()
        b.bye()
    heard_by_a = a.rtp.received_audio()
    heard_by_b = b.rtp.received_audio()
    assert abs(dominant_frequency(heard_by_a[-12000:-2000]) - 1400.0) < 15
    assert abs(dominant_frequency(heard_by_b[-12000:-2000]) - 600.0) < 15


def test_a_wedged_worker_is_killed_and_its_calls_end(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("echo")
        index, pid = _worker_of_last_call(srv)
        stopped_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)       # alive, but its clock no longer ticks
        try:
            assert call.wait_bye(6), "no BYE after the worker stopped ticking\n" + srv.describe(30)
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        assert 1.5 < time.monotonic() - stopped_at < 6
    assert srv.wait_for_log(r"media worker %d \(pid %d\) is wedged \(no heartbeat" % (index, pid), timeout=5)
    assert srv.wait_for_log(r"media worker %d started \(pid (?!%d\b)\d+" % (index, pid), timeout=10)
    echo_works(srv)


def test_media_released_before_it_reached_the_worker_breaks_nothing(srv):
    before = srv.log_text().count(") ended (")
    for _ in range(20):
        with SipUA(srv.host, srv.sip_port) as ua:
            call = ua.call("quick", timeout=10)
            assert call.wait_bye(5)
    echo_works(srv)
    assert srv.log_text().count(") ended (") == before, srv.describe(30)


def test_a_prompt_started_again_is_not_ended_by_the_first_ones_finish(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("replay")
        call.rtp.send_silence(1.5)
        out = _console(srv, "print('playing' if call.player is not None and not call.player.closed else 'stopped')")
        call.bye()
    assert "playing" in out, out + srv.describe(30)
    heard = call.rtp.received_audio()
    assert abs(dominant_frequency(heard[-4000:]) - 900.0) < 20      # the loop still plays
    assert "replay: finished" not in srv.log_text()
