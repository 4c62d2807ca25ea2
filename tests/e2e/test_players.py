"""Players heard by a real caller: a tone script's cadence and frequency, speech from
call.say(), a WAV fetched over HTTP (and a 404 that is an Error while the call goes on),
and a second player replacing the first. Audio is judged as audio (FFT, levels); the
phases of a call are found in the signal itself, never by timing."""

from __future__ import annotations

import functools
import http.server
import io
import subprocess
import threading
import time
import wave

import numpy as np
import pytest

from tests.peers.sipua import RtpStream, SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.g711 import ulaw_decode
from voxlab.media.tones import sine
from voxlab.media.wav import read_wav

pytestmark = pytest.mark.e2e

SAY_TEXT = "Hello, this is a test of the speech synthesiser."
TONE_SCRIPT = "400@-10;2(.2/.2/1)"

SCENARIOS = {
    "tone": f"""
def on_alerting(e):
    call = e.call
    def connected(ev):
        player = VoxEngine.create_tone_script_player({TONE_SCRIPT!r})
        player.add_event_listener(PlayerEvents.PlaybackFinished, lambda ev: Logger.write("tone finished"))
        player.send_media_to(call)
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    "say": f"""
def on_alerting(e):
    call = e.call
    call.add_event_listener(CallEvents.Connected, lambda ev: call.say({SAY_TEXT!r}))
    call.add_event_listener(CallEvents.PlaybackFinished, lambda ev: Logger.write("said it"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # First a URL that is not there: its Error makes the scenario play the one that is.
    "url": """
def on_alerting(e):
    call = e.call
    def failed(ev):
        Logger.write(f"player error: {ev.error}")
        VoxEngine.create_url_player(BASE + "/a700.wav", loop=True).send_media_to(call)
    def connected(ev):
        missing = VoxEngine.create_url_player(BASE + "/missing.wav")
        missing.add_event_listener(PlayerEvents.Error, failed)
        missing.send_media_to(call)
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    # P1 (500 Hz, looping) to the call; digit 1 sends P2 (900 Hz) to it; digit 2 stops P2.
    "replace": """
players = {}

def on_alerting(e):
    call = e.call
    call.handle_tones(True)
    def connected(ev):
        players["p1"] = VoxEngine.create_tone_script_player("500@-10;1(*/0/1)", loop=True)
        players["p1"].send_media_to(call)
    def tone(ev):
        Logger.write(f"digit {ev.tone}")
        if ev.tone == "1":
            players["p2"] = VoxEngine.create_tone_script_player("900@-10;*(*/0/1)")
            players["p2"].send_media_to(call)
        elif ev.tone == "2":
            players["p2"].stop()
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A local HTTP server (in a thread, on a free port) with a 700 Hz WAV at 16 kHz stereo."""
    root = tmp_path_factory.mktemp("www")
    pcm = sine(700.0, 2.0, rate=16000)
    with wave.open(str(root / "a700.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat(pcm, 2).astype("<i2").tobytes())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="test-http")
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, web):
    from tests.conftest import _finish, _start

    scenarios = dict(SCENARIOS)
    scenarios["url"] = f"BASE = {web!r}\n" + scenarios["url"]
    server = _start(tmp_path_factory.mktemp("players"), scenarios)
    yield server
    problem = _finish(server)
    assert problem is None, problem


# ---------------------------------------------------------------- helpers

def frames_since(rtp: RtpStream, mark: int) -> list[np.ndarray]:
    return [ulaw_decode(p.packet.payload).astype(np.float64) for p in rtp.received()[mark:]
            if p.packet.payload_type == 0 and len(p.packet.payload) == 160]


def wait_hearing(rtp: RtpStream, freq: float | None, timeout: float = 10.0, frames: int = 15) -> np.ndarray:
    """Wait until the last ``frames`` frames are a tone at ``freq`` (None: silence); returns them."""
    mark = len(rtp.received())
    deadline = time.monotonic() + timeout
    last = "nothing"
    while time.monotonic() < deadline:
        got = frames_since(rtp, mark)[-frames:]
        if len(got) == frames:
            pcm = np.concatenate(got)
            level = rms_dbfs(pcm)
            if freq is None:
                if level < -50:
                    return pcm
                last = f"level {level:.1f} dBFS"
            else:
                heard = dominant_frequency(pcm)
                if level > -25 and abs(heard - freq) < 15:
                    return pcm
                last = f"{heard:.0f} Hz at {level:.1f} dBFS"
        time.sleep(0.05)
    raise AssertionError(f"never heard {freq or 'silence'}; last: {last}")


def bursts(pcm: np.ndarray, threshold: float = 300.0, bridge: int = 40) -> list[tuple[int, int]]:
    """[start, stop) of the stretches where a tone is on: samples above ``threshold``,
    joined across gaps shorter than ``bridge`` (the sine's own zero crossings)."""
    loud = np.flatnonzero(np.abs(pcm) > threshold)
    if not len(loud):
        return []
    breaks = np.flatnonzero(np.diff(loud) > bridge)
    starts = [loud[0], *loud[breaks + 1].tolist()]
    stops = [*(loud[breaks] + 1).tolist(), loud[-1] + 1]
    return list(zip(starts, stops))


def band_fraction(pcm: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    return float(spec[(freqs >= lo) & (freqs <= hi)].sum() / spec.sum())


def active_span(pcm: np.ndarray, floor_dbfs: float = -45.0) -> float:
    """Seconds from the first to the last 20 ms frame above ``floor_dbfs``."""
    n = len(pcm) // 160
    levels = [rms_dbfs(pcm[i * 160:(i + 1) * 160]) for i in range(n)]
    loud = [i for i, lv in enumerate(levels) if lv > floor_dbfs]
    return (loud[-1] - loud[0] + 1) * 0.02 if loud else 0.0


def spectrum_db(pcm: np.ndarray, freq: float) -> float:
    """Level (dB, relative) of the spectrum around ``freq`` (±10 Hz), Hann window."""
    spec = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)), 8192))
    freqs = np.fft.rfftfreq(8192, 1 / 8000)
    return 20 * np.log10(spec[np.abs(freqs - freq) <= 10].max() + 1e-9)


# ---------------------------------------------------------------- tests

def test_tone_script_cadence_and_frequency_as_heard(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("tone", codecs=("PCMU",))
        assert srv.wait_for_log(r"tone finished", timeout=10), srv.describe(40)
        wait_hearing(call.rtp, None, frames=10)        # the call's silence after the tone
        pcm = call.rtp.received_audio()
        call.bye()
    on = bursts(pcm)
    # 2 s of 0.2 s on / 0.2 s off: five bursts of 1600 samples, 1600 apart; one frame's slack
    assert len(on) == 5, on
    for a, b in on:
        assert abs((b - a) - 1600) <= 160, on
        assert abs(dominant_frequency(pcm[a:b]) - 400.0) < 3
    for (_, b), (a, _) in zip(on, on[1:]):
        assert abs((a - b) - 1600) <= 160, on
        assert not np.abs(pcm[b + 20:a - 20]).max() > 30     # off is silence
    assert rms_dbfs(pcm[on[0][0]:on[0][1]]) == pytest.approx(-10 - 6.18, abs=0.6)


def test_say_reaches_the_caller_as_speech(srv, tmp_path):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("say", codecs=("PCMU",))
        assert srv.wait_for_log(r"said it", timeout=15), srv.describe(40)
        wait_hearing(call.rtp, None, frames=10)
        pcm = call.rtp.received_audio()
        call.bye()
    heard = active_span(pcm)
    wav = subprocess.run(["espeak-ng", "--stdout", SAY_TEXT], capture_output=True, check=True).stdout
    own = active_span(read_wav(io.BytesIO(wav), 8000))
    assert own > 1.5
    assert abs(heard - own) <= 0.1 * own + 0.1, (heard, own)
    loud = np.concatenate([pcm[i:i + 160] for i in range(0, len(pcm) - 160, 160)
                           if rms_dbfs(pcm[i:i + 160]) > -45])
    assert rms_dbfs(loud) > -35                               # not silence
    assert band_fraction(loud, 300, 3400) > 0.6               # speech band
    assert band_fraction(loud, 3600, 4000) < 0.05


def test_url_player_404_is_an_error_and_a_wav_url_plays(srv, web):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("url", codecs=("PCMU",))
        m = srv.wait_for_log(r"player error: (.*)", timeout=15)
        assert m, srv.describe(40)
        assert m.group(1).strip() == f"cannot play {web}/missing.wav: 404 Not Found"
        pcm = wait_hearing(call.rtp, 700.0)                   # the call went on: the WAV plays
        assert abs(dominant_frequency(pcm) - 700.0) < 3
        assert rms_dbfs(pcm) == pytest.approx(-9.0, abs=1.0)  # half-scale sine, resampled
        call.bye()


def test_a_second_player_replaces_the_first_and_stop_leaves_silence(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("replace", codecs=("PCMU",))
        rtp = call.rtp
        first = wait_hearing(rtp, 500.0)
        assert spectrum_db(first, 500) - spectrum_db(first, 900) > 40
        rtp.send_dtmf("1")
        assert srv.wait_for_log(r"digit 1", timeout=5)
        second = wait_hearing(rtp, 900.0, frames=25)
        assert spectrum_db(second, 900) - spectrum_db(second, 500) > 40   # 500 Hz is gone
        rtp.send_dtmf("2")
        assert srv.wait_for_log(r"digit 2", timeout=5)
        wait_hearing(rtp, None, frames=25)       # P2 stopped: the call has no input, silence
        mark = len(rtp.received())
        assert rtp.wait_packets(mark + 25, timeout=5)    # still connected, still RTP ...
        after = np.concatenate(frames_since(rtp, mark))
        assert rms_dbfs(after) < -50                     # ... and P1 does not come back
        call.bye()
    assert "ERROR" not in srv.log_text(), srv.describe(40)
