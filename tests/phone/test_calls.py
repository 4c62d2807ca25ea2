"""``voxlab phone`` as a process against a live voxlab: files as microphone and speaker,
the exit paths, registration and calls to the registered phone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.peers.server import REPO_ROOT
from tests.peers.sipua import SipUA
from tests.phone.helpers import phone_env, read_output, tone_file, tone_of
from voxlab.media.analysis import rms_dbfs
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

USERS = """
[users]
alice = "pw"
"""

# Started over the HTTP API: rings alice's phone, plays a 700 Hz tone to it, records what
# the phone sends, logs the level of that recording's start when the phone hangs up.
CALL_ALICE = """
def started(e):
    call = VoxEngine.call_user("alice", callerid="robot")

    def connected(ev):
        Logger.write("CONNECTED")
        call.start_playback("tone700.wav")
        call.record(stereo=True)

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Failed, lambda ev: (Logger.write(f"FAILED {ev.code}"),
                                                           VoxEngine.terminate()))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: (Logger.write("GONE"),
                                                                 VoxEngine.terminate()))


VoxEngine.add_event_listener(AppEvents.Started, started)
"""


def server_addr(srv) -> str:
    return f"{srv.host}:{srv.sip_port}"


def wait_recorded(path, seconds: float, timeout: float = 15.0) -> None:
    """Until the phone's output WAV holds ``seconds`` of audio (it grows 20 ms a tick)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= 44 + 2 * int(8000 * seconds):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {seconds} s within {timeout} s")


def test_dial_echo_with_files(server, phone, tmp_path):
    """--dial echo --audio-in tone.wav --audio-out out.wav: exits 0 when the input ends,
    and out.wav holds the tone (a 16 kHz input, resampled)."""
    tone = tone_file(tmp_path / "tone.wav", 1000.0, 3.0, rate=16000)
    out = tmp_path / "out.wav"
    ph = phone(["--server", server_addr(server), "--dial", "echo", "--audio-in", str(tone),
                "--audio-out", str(out)])
    rc = ph.wait(20)
    assert rc == 0, ph.describe() + "\n" + server.describe(40)
    assert ph.wait_for(r"connected: connected to sip:echo@", 0), ph.describe()
    assert ph.wait_for(r"ended: hung up after", 0), ph.describe()
    heard = read_output(out)
    assert 2.5 * 8000 <= len(heard) <= 5 * 8000, f"{len(heard) / 8000:.2f} s recorded"
    freq, level = tone_of(heard)
    assert abs(freq - 1000.0) < 10, f"heard {freq:.1f} Hz\n" + ph.describe()
    assert abs(level - rms_dbfs(sine(1000.0, 1.0))) < 3, f"heard at {level:.1f} dBFS"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_call_leaves_a_complete_wav(server, phone, tmp_path, sig):
    tone = tone_file(tmp_path / "long.wav", 800.0, 30.0)
    out = tmp_path / "out.wav"
    ph = phone(["--server", server_addr(server), "--dial", "echo", "--audio-in", str(tone),
                "--audio-out", str(out)])
    assert ph.wait_for(r"connected: ", 15), ph.describe()
    wait_recorded(out, 2.0)
    ph.signal(sig)
    rc = ph.wait(10)
    assert rc == 0, f"exit {rc} after {sig.name}\n" + ph.describe()
    assert ph.wait_for(rf"info: {sig.name}: stopping", 0), ph.describe()
    assert ph.wait_for(r"ended: hung up after", 0), ph.describe()     # BYE sent
    heard = read_output(out)
    assert len(heard) >= 16000
    freq, _ = tone_of(heard)
    assert abs(freq - 800.0) < 10, f"heard {freq:.1f} Hz"


def test_dial_unknown_fails_with_status_1(server, phone, tmp_path):
    ph = phone(["--server", server_addr(server), "--dial", "no-such-scenario-here"])
    rc = ph.wait(20)
    assert rc == 1, ph.describe()
    assert ph.wait_for(r"failed: sip:no-such-scenario-here@\S+: 404", 0), ph.describe()


def users_list(srv) -> list:
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "users", "list", "--json",
                          "--data-dir", str(srv.data_dir), "--config", str(srv.config)], cwd=str(REPO_ROOT), env=phone_env(),
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def contacts_of(srv, user: str) -> list[str]:
    for row in users_list(srv)["users"]:
        if row["user"] == user:
            return [b["contact"] for b in row["bindings"]]
    return []


def test_registered_phone_takes_a_call_audio_both_ways(voxlab_factory, phone, tmp_path):
    """--user alice --auto-answer registers; dialling alice (the bundled user.py: a
    scenario's call_user) rings it; the caller's tone reaches out.wav and the phone's
    tone reaches the caller. SIGTERM unregisters."""
    srv = voxlab_factory(config=USERS)
    tone = tone_file(tmp_path / "phone-tone.wav", 1000.0, 30.0)
    out = tmp_path / "heard.wav"
    ph = phone(["--server", server_addr(srv), "--user", "alice", "--password", "pw",
                "--auto-answer", "--audio-in", str(tone), "--audio-out", str(out)])
    assert ph.wait_for(r"registered: registered as alice@", 15), ph.describe() + srv.describe(40)
    port = int(ph.wait_for(r"listening: SIP on udp [\d.]+:(\d+)", 0).group(1))
    assert any(f":{port}" in c for c in contacts_of(srv, "alice")), users_list(srv)

    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("alice", timeout=15)
        call.rtp.send_audio(sine(600.0, 3.0))
        call.bye()
    assert ph.wait_for(r"incoming: call from .*answering", 0), ph.describe()
    assert ph.wait_for(r"ended: the far end hung up", 10), ph.describe()
    caller_heard = call.rtp.received_audio()
    freq, level = tone_of(caller_heard)
    assert abs(freq - 1000.0) < 10, f"the caller heard {freq:.1f} Hz\n" + ph.describe()
    freq, level = tone_of(read_output(out))
    assert abs(freq - 600.0) < 10, f"the phone heard {freq:.1f} Hz\n" + ph.describe()

    ph.signal(signal.SIGTERM)
    assert ph.wait(10) == 0, ph.describe()
    assert ph.wait_for(r"unregistered: unregistered alice@", 0), ph.describe()
    assert not any(f":{port}" in c for c in contacts_of(srv, "alice")), users_list(srv)


def test_scenario_call_user_reaches_the_phone(voxlab_factory, phone, tmp_path):
    """A scenario started over the HTTP API calls VoxEngine.call_user("alice"): the phone
    (auto-answering) hears the scenario's tone, the scenario records the phone's."""
    import urllib.request

    srv = voxlab_factory(scenarios={"robot": CALL_ALICE}, config=USERS,
                         tones={"tone700": (700.0, 10.0)})
    tone = tone_file(tmp_path / "phone-tone.wav", 1200.0, 3.0)
    out = tmp_path / "heard.wav"
    ph = phone(["--server", server_addr(srv), "--user", "alice", "--password", "pw",
                "--auto-answer", "--audio-in", str(tone), "--audio-out", str(out)])
    assert ph.wait_for(r"registered: registered as alice@", 15), ph.describe()
    request = urllib.request.Request(
        f"{srv.http_url}/api/sessions", method="POST",
        data=json.dumps({"scenario": "robot"}).encode(),
        headers={"Authorization": f"Bearer {srv.api_token()}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status in (200, 201, 202)
    assert ph.wait_for(r"connected: connected to .*robot", 15), ph.describe() + srv.describe(60)
    assert srv.wait_for_log(r"\] CONNECTED$", 10), srv.describe(60)
    # The phone's file lasts 3 s (then silence): hang up from the phone with SIGTERM once
    # 3 s are recorded.
    wait_recorded(out, 3.0)
    ph.signal(signal.SIGTERM)
    assert ph.wait(10) == 0, ph.describe()
    assert srv.wait_for_log(r"\] GONE$", 10), srv.describe(60)
    freq, _ = tone_of(read_output(out))
    assert abs(freq - 700.0) < 10, f"the phone heard {freq:.1f} Hz\n" + ph.describe()
    recordings = sorted(srv.data_dir.rglob("*.wav"))
    assert recordings, "the scenario's recording is missing\n" + srv.describe(60)
    freq, _ = tone_of(left_channel(recordings[-1]))
    assert abs(freq - 1200.0) < 15, f"the scenario recorded {freq:.1f} Hz from the phone"


def left_channel(path):
    """What the caller (here: the phone) said, in a stereo recording."""
    import wave

    import numpy as np

    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return pcm[0::2].astype(np.int16)


EARLY = """
def on_alerting(e):
    call = e.call
    call.start_early_media()
    call.start_playback("tone500.wav")
    Logger.write("EARLY")

    def answer():
        call.stop_playback()
        call.answer()
        call.send_media_to(call)
        Logger.write("ANSWERED")

    set_timeout(answer, 1500)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_early_media_is_heard_before_the_answer(voxlab_factory, phone, tmp_path):
    """A 183 with SDP: the phone plays what comes before the answer (a 500 Hz prompt), and
    sends only silence then; after the answer its own tone (echoed) is heard."""
    srv = voxlab_factory(scenarios={"early": EARLY}, tones={"tone500": (500.0, 5.0)})
    heard = tmp_path / "heard.wav"
    ph = phone(["--server", server_addr(srv), "--dial", "early",
                "--audio-in", str(tone_file(tmp_path / "t.wav", 1000.0, 3.0)),
                "--audio-out", str(heard)])
    assert ph.wait(20) == 0, ph.describe() + srv.describe(40)
    assert ph.wait_for(r"ringing: sip:early@\S+ is ringing \(183\)", 0), ph.describe()
    assert srv.wait_for_log(r"\] ANSWERED$", 0), srv.describe(40)
    pcm = read_output(heard)
    early, late = pcm[:int(1.2 * 8000)], pcm[int(2.0 * 8000):]
    freq, level = tone_of(early, skip=0.1)
    assert abs(freq - 500.0) < 10 and level > -20, f"before the answer: {freq:.1f} Hz {level:.1f} dBFS"
    freq, level = tone_of(late, skip=0.1)
    assert abs(freq - 1000.0) < 10, f"after the answer: {freq:.1f} Hz"


def test_dial_hello_records_the_greeting(server, phone, tmp_path):
    """docs/phone.md's recipe: --dial hello --audio-out (no input file, no sound card):
    the server hangs up after its greeting, the phone exits 0, the file holds the speech."""
    from voxlab.media.wav import read_wav

    heard = tmp_path / "hello-heard.wav"
    ph = phone(["--server", server_addr(server), "--dial", "hello", "--audio-out", str(heard)])
    assert ph.wait(30) == 0, ph.describe()
    assert ph.wait_for(r"ended: the far end hung up", 0), ph.describe()
    pcm = read_output(heard)
    greeting = read_wav(REPO_ROOT / "scenarios" / "hello.wav")
    assert abs(len(pcm) - len(greeting)) < 8000, f"{len(pcm) / 8000:.2f} s recorded"
    assert rms_dbfs(pcm) > -40, "silence, not the greeting"
