"""Recordings of real calls, judged as audio: a caller's tone is in the WAV at the length
and frequency it was sent (an echoed call, relayed on arrival, included); stereo holds
the caller left and what the call hears right; a kill -9 of the server mid-recording
leaves a WAV that the stdlib ``wave`` module opens, missing at most the last second."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

_LOGGING = """
    rec.add_event_listener(RecorderEvents.Started,
                           lambda ev: Logger.write(f"{TAG} started {ev.path} url={ev.url}"))
    def stopped(ev):
        Logger.write(f"{TAG} stopped {ev.duration:.3f} {ev.path}")
        VoxEngine.terminate()
    rec.add_event_listener(RecorderEvents.Stopped, stopped)
"""

SCENARIOS = {
    # An echo (same codec: relayed on arrival) that records the caller until the call ends.
    "rec": """
TAG = "rec"
def connected(ev):
    ev.call.send_media_to(ev.call)
    rec = ev.call.record()
""" + _LOGGING + """
def on_alerting(e):
    e.call.add_event_listener(CallEvents.Connected, connected)
    e.call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # Plays a 900 Hz prompt to the caller and records the call in stereo.
    "stereo": """
TAG = "stereo"
def connected(ev):
    ev.call.start_playback("p900.wav", loop=True)
    rec = ev.call.record(stereo=True)
""" + _LOGGING + """
def on_alerting(e):
    e.call.add_event_listener(CallEvents.Connected, connected)
    e.call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # VoxEngine.create_recorder, fed by the call; digits mute, unmute and stop it.
    "manual": """
TAG = "manual"
def connected(ev):
    call = ev.call
    rec = VoxEngine.create_recorder(name="greeting")
    call.send_media_to(rec)
    call.handle_tones(True)
    def tone(t):
        if t.tone == "1":
            rec.mute()
        elif t.tone == "2":
            rec.unmute()
        elif t.tone == "3":
            rec.stop()
        Logger.write(f"manual digit {t.tone}: {rec.describe()}")
    call.add_event_listener(CallEvents.ToneReceived, tone)
""" + _LOGGING + """
def on_alerting(e):
    e.call.add_event_listener(CallEvents.Connected, connected)
    e.call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("recorder"), SCENARIOS, tones={"p900": (900.0, 1.0)})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def _wait_log(server, pattern: str, timeout: float = 10.0) -> re.Match:
    m = server.wait_for_log(pattern, timeout=timeout)
    assert m, f"no log line matching {pattern!r}\n" + server.describe(40)
    return m


def _read(path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return channels, data.reshape(-1, channels)


def _loud_frames(x: np.ndarray) -> np.ndarray:
    """Indexes of the 20 ms frames of ``x`` that hold sound (above -40 dBFS)."""
    n = len(x) // 160
    return np.array([i for i in range(n) if rms_dbfs(x[i * 160:(i + 1) * 160]) > -40.0])


def _band_db(x: np.ndarray, freq: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(20 * np.log10(spec[(freqs > freq - 20) & (freqs < freq + 20)].max() / len(x) + 1e-9))


def test_a_callers_tone_is_recorded_at_its_length_and_frequency_while_echoed(srv):
    lead, tone_s, tail = 0.3, 2.0, 0.3
    signal_ = np.concatenate([np.zeros(int(lead * 8000), np.int16), sine(600.0, tone_s),
                              np.zeros(int(tail * 8000), np.int16)])
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("rec")
        answered = time.monotonic()
        path = Path(_wait_log(srv, r"rec started (\S+) url=http://127\.0\.0\.1:\d+/api/recordings/\S+\.wav").group(1))
        call.rtp.send_audio(signal_)
        call.bye()
        duration = float(_wait_log(srv, r"rec stopped ([\d.]+) ").group(1))
        stopped_seen = time.monotonic()
    assert path.parent == srv.data_dir / "recordings"
    channels, data = _read(path)
    assert channels == 1
    x = data[:, 0]
    assert abs(len(x) / 8000 - duration) < 0.001          # Stopped's duration is the file's
    loud = _loud_frames(x)
    assert len(loud), "the recording is silent"
    span = (loud[-1] - loud[0] + 1) * 0.02
    assert abs(span - tone_s) <= 0.1, f"the tone lasts {span:.2f} s in the recording, {tone_s} s sent"
    assert abs(dominant_frequency(x[loud[0] * 160:(loud[-1] + 1) * 160]) - 600.0) < 5
    # The rest is silence, as long as the wall time around the tone: the recording began
    # before the first packet (we waited for Started) and ended with the call.
    assert loud[0] * 0.02 >= lead - 0.1
    assert len(x) / 8000 - (loud[-1] + 1) * 0.02 >= tail - 0.1
    assert lead + tone_s + tail - 0.1 <= len(x) / 8000 <= stopped_seen - answered + 0.1
    # Recording it did not stop the echo (payloads relayed as they arrive).
    heard = call.rtp.received_audio()
    assert abs(dominant_frequency(heard) - 600.0) < 5


def test_stereo_holds_the_caller_left_and_what_the_call_hears_right(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("stereo")
        path = _wait_log(srv, r"stereo started (\S+) url=http://127\.0\.0\.1:\d+/api/recordings/\S+\.wav").group(1)
        call.rtp.send_audio(sine(400.0, 2.0))
        call.bye()
        _wait_log(srv, r"stereo stopped ")
    channels, data = _read(path)
    assert channels == 2
    left, right = data[:, 0], data[:, 1]
    loud = _loud_frames(left)
    said = left[loud[0] * 160:(loud[-1] + 1) * 160]
    assert abs(len(said) / 8000 - 2.0) <= 0.1
    assert abs(dominant_frequency(said) - 400.0) < 5
    assert _band_db(said, 900.0) < _band_db(said, 400.0) - 30     # no prompt on the left
    heard = right[loud[0] * 160:(loud[-1] + 1) * 160]
    assert abs(dominant_frequency(heard) - 900.0) < 5
    assert _band_db(heard, 400.0) < _band_db(heard, 900.0) - 30   # no caller on the right
    # The caller heard the prompt that is on the right.
    assert abs(dominant_frequency(call.rtp.received_audio()) - 900.0) < 5


def _runs(frames: np.ndarray) -> list[int]:
    """Lengths of the runs of consecutive frame indexes."""
    runs: list[int] = []
    for i, f in enumerate(frames):
        if i and f == frames[i - 1] + 1:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def test_mute_writes_silence_and_stop_ends_the_recording(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("manual")
        path = _wait_log(srv, r"manual started (\S+greeting\.wav) url=http://127\.0\.0\.1:\d+/api/recordings/\S+\.wav").group(1)
        for digit, shown in (("1", "muted"), ("2", "recording"), ("3", "stopping")):
            call.rtp.send_audio(sine(600.0, 0.6))
            call.rtp.send_dtmf(digit)
            _wait_log(srv, rf"manual digit {digit}: greeting {shown} ")
        call.rtp.send_audio(sine(600.0, 0.6))          # after stop(): not recorded
        duration = float(_wait_log(srv, r"manual stopped ([\d.]+) ").group(1))
        assert call.wait_bye(10)                       # the scenario ends on Stopped
    _, data = _read(path)
    assert abs(len(data) / 8000 - duration) < 0.001
    runs = [n for n in _runs(_loud_frames(data[:, 0])) if n >= 3]
    # Tone, (muted tone), tone: two runs of 0.6 s; the fourth tone came after stop().
    assert len(runs) == 2, runs
    assert all(abs(n * 0.02 - 0.6) <= 0.1 for n in runs), runs


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def test_a_kill_9_mid_recording_leaves_a_wav_missing_at_most_the_last_second(tmp_path):
    from tests.conftest import _start

    srv = _start(tmp_path / "killed", SCENARIOS)
    try:
        with SipUA(srv.host, srv.sip_port) as ua:
            call = ua.call("rec")
            path = Path(_wait_log(srv, r"rec started (\S+) url=http://127\.0\.0\.1:\d+/api/recordings/\S+\.wav").group(1))
            stop = threading.Event()
            sender = call.rtp.send_audio_async(sine(600.0, 20.0), stop=stop)
            # Killed at a moment that has nothing to do with when the recorder writes; until
            # then the file grows, and is a valid WAV each time we look.
            seen = []
            while call.rtp.send_started is None or time.perf_counter() - call.rtp.send_started < 3.7:
                seen.append(_wav_seconds(path))
                time.sleep(0.02)
            assert seen[-1] > 1.0 and seen == sorted(seen), seen
            workers = _children(srv.pid)
            assert workers, "no media worker process found"
            sent = time.perf_counter() - call.rtp.send_started
            for pid in workers:                     # the writer first, then the whole server
                os.kill(pid, signal.SIGKILL)
            os.killpg(srv.pid, signal.SIGKILL)
            srv.proc.wait(10)
            stop.set()
            sender.join(5)
    finally:
        srv.stop()
    channels, data = _read(path)                    # opens, as it is
    assert channels == 1
    x = data[:, 0]
    loud = _loud_frames(x)
    kept = len(loud) * 0.02
    assert kept >= sent - 1.0, f"{sent:.2f} s of tone sent before the kill, {kept:.2f} s in the file"
    assert abs(dominant_frequency(x[loud[0] * 160:(loud[-1] + 1) * 160]) - 600.0) < 5
