"""ASR on a real call: the caller says espeak-ng "yes" (or "no") over RTP; the scenario's
recogniser (phrases yes/no) answers with a tone (yes: 600 Hz, no: 1000 Hz) that the
caller must hear (judged by FFT)."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest

from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.g711 import ulaw_decode
from voxlab.media.wav import read_wav

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")]

SCENARIO = """
TONES = {"yes": "600@-10;5(*/0/1)", "no": "1000@-10;5(*/0/1)"}

def on_alerting(e):
    call = e.call
    def result(ev):
        Logger.write(f"asr heard {ev.text!r} {ev.confidence}")
        script = TONES.get(ev.text)
        if script:
            VoxEngine.create_tone_script_player(script).send_media_to(call)
    def connected(ev):
        asr = VoxEngine.create_asr(phrases=["yes", "no"])
        asr.add_event_listener(ASREvents.Result, result)
        asr.add_event_listener(ASREvents.Started, lambda ev: Logger.write("asr started"))
        asr.add_event_listener(ASREvents.ASRError, lambda ev: Logger.write(f"asr error {ev.error}"))
        call.send_media_to(asr)
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("asr"), {"asr": SCENARIO})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def spoken(tmp_path, word: str) -> np.ndarray:
    path = tmp_path / f"{word}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), word], check=True)
    pcm = read_wav(path, 8000)
    silence = np.zeros(4000, np.int16)
    return np.concatenate([silence, pcm, silence, silence, silence])


def wait_tone(rtp, freq: float, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last = "nothing"
    while time.monotonic() < deadline:
        frames = [ulaw_decode(p.packet.payload).astype(np.float64) for p in rtp.received()[-15:]
                  if p.packet.payload_type == 0 and len(p.packet.payload) == 160]
        if len(frames) == 15:
            pcm = np.concatenate(frames)
            heard, level = dominant_frequency(pcm), rms_dbfs(pcm)
            if level > -25 and abs(heard - freq) < 15:
                return
            last = f"{heard:.0f} Hz at {level:.1f} dBFS"
        time.sleep(0.05)
    raise AssertionError(f"never heard {freq} Hz; last: {last}")


@pytest.mark.parametrize("word,freq", [("yes", 600.0), ("no", 1000.0)])
def test_asr_hears_the_word(srv, tmp_path, word, freq):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("asr", codecs=("PCMU",))
        assert srv.wait_for_log(r"asr started", timeout=10), srv.describe(40)
        call.rtp.send_audio(spoken(tmp_path, word))
        assert srv.wait_for_log(rf"asr heard '{word}'", timeout=10), srv.describe(40)
        wait_tone(call.rtp, freq)
        call.bye()
