"""ASR on a real call: the caller says espeak-ng "yes" or "no"; pocketsphinx with the
phrases ["yes", "no"] recognises it and the scenario answers with a tone per word."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.e2e.test_call_media_api import wait_hearing
from tests.peers.sipua import SipUA
from voxlab.media.wav import read_wav

pytestmark = pytest.mark.e2e

SCENARIO = """
TONES = {"yes": "600@-10;5(*/0/1)", "no": "1000@-10;5(*/0/1)"}

def on_alerting(e):
    call = e.call
    def connected(_):
        asr = VoxEngine.create_asr(phrases=["yes", "no"], single_utterance=True)
        asr.add_event_listener(ASREvents.Started, lambda ev: Logger.write("asr ready"))
        asr.add_event_listener(ASREvents.CaptureStarted, lambda ev: Logger.write("asr capture"))
        def result(ev):
            Logger.write(f"asr heard {ev.text!r} {ev.confidence}")
            if ev.text in TONES:
                VoxEngine.create_tone_script_player(TONES[ev.text]).send_media_to(call)
        asr.add_event_listener(ASREvents.Result, result)
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


def spoken(word: str, tmp_path) -> np.ndarray:
    path = tmp_path / f"{word}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), word], check=True)
    pcm = read_wav(path, 8000).astype(np.float64)
    return (pcm * 0.5).astype(np.int16)


@pytest.mark.parametrize("word, tone", [("yes", 600.0), ("no", 1000.0)])
def test_spoken_word_is_recognised(srv, tmp_path, word, tone):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("asr")
        call.rtp.send_silence(0.3)
        call.rtp.send_audio(spoken(word, tmp_path))
        call.rtp.send_silence(1.0)
        heard = srv.wait_for_log(rf"asr heard '{word}'", timeout=10)
        assert heard, srv.describe(40)
        wait_hearing(call.rtp, tone)
        call.bye()
