"""The bundled scenarios built on media units: `record` (a spoken prompt, a beep, the
caller's message recorded until #, played back), `ivr` (a spoken menu) and
`conf-<room>` (callers from separate sessions meet in one room)."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e


def _tail(rtp, seconds: float) -> np.ndarray:
    return rtp.received_audio()[-int(8000 * seconds):]


def _until(rtp, predicate, what: str, timeout: float = 20.0, step: float = 0.2) -> None:
    """Send silence in steps until ``predicate(received audio)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rtp.send_silence(step)
        if predicate(rtp.received_audio()):
            return
    raise AssertionError(f"never heard {what}")


def _tone(freq: float, seconds: float = 0.2):
    def heard(audio: np.ndarray) -> bool:
        tail = audio[-int(8000 * seconds):]
        return len(tail) and rms_dbfs(tail) > -35 and abs(dominant_frequency(tail) - freq) < 15
    return heard


def _quiet(audio: np.ndarray) -> bool:
    return rms_dbfs(audio[-1600:]) < -50


def test_record_prompts_records_until_hash_and_plays_it_back(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("record")
        rtp = call.rtp
        _until(rtp, lambda a: rms_dbfs(a[-1600:]) > -40, "the spoken prompt")
        _until(rtp, _tone(1000.0, 0.1), "the beep", step=0.1)
        _until(rtp, _quiet, "the end of the beep", step=0.1)
        rtp.send_audio(sine(800.0, 2.0, amplitude=0.3))
        rtp.send_dtmf("#")
        assert server.wait_for_log(r"record: \d+\.\d s in ", timeout=10), server.describe(40)
        line = [ln for ln in server.log_text().splitlines() if "record: " in ln][-1]
        seconds = float(re.search(r"record: (\d+\.\d) s", line).group(1))
        assert 2.0 <= seconds <= 4.0, line
        _until(rtp, _tone(800.0, 0.5), "the message played back", timeout=10)
        assert call.wait_bye(15), "record did not hang up after the playback\n" + server.describe(40)


def test_ivr_says_its_menu_and_1_is_echo_2_is_a_tone(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("ivr")
        rtp = call.rtp
        _until(rtp, lambda a: rms_dbfs(a[-1600:]) > -40, "the spoken menu")
        rtp.send_dtmf("2")          # interrupts the menu: US ringback, 440+480 Hz
        _until(rtp, lambda a: rms_dbfs(a[-1600:]) > -40
               and abs(dominant_frequency(a[-1600:], fmin=300, fmax=600) - 460) < 30,
               "the ringback tone", timeout=10)
        rtp.send_dtmf("1")
        rtp.send_silence(0.5)
        mark = len(rtp.received_audio())
        rtp.send_audio(sine(1000.0, 1.0, amplitude=0.3))
        rtp.send_silence(0.3)
        echoed = rtp.received_audio()[mark + 2400:]
        assert abs(dominant_frequency(echoed) - 1000.0) < 20
        rtp.send_dtmf("#")
        assert call.wait_bye(10)


def test_ivr_3_asks_and_recognises_the_answer(server, tmp_path):
    import subprocess

    from voxlab.media.wav import read_wav

    path = tmp_path / "yes.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "yes"], check=True)
    yes = (read_wav(path, 8000).astype(np.float64) * 0.5).astype(np.int16)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("ivr")
        rtp = call.rtp
        _until(rtp, lambda a: rms_dbfs(a[-1600:]) > -40, "the spoken menu")
        rtp.send_dtmf("3")
        _until(rtp, lambda a: rms_dbfs(a[-1600:]) > -40, "the question")
        _until(rtp, _quiet, "the end of the question", timeout=15)
        rtp.send_audio(yes)
        rtp.send_silence(1.0)
        assert server.wait_for_log(r"ivr: heard 'yes'", timeout=10), server.describe(40)
        rtp.send_dtmf("#")
        assert call.wait_bye(10)
