"""Audio through a real voxlab process, measured by the independent peer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.peers.server import REPO_ROOT
from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.g711 import ulaw_decode, ulaw_encode
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

FRAME = 160           # 20 ms at 8 kHz


def _frame_levels(pcm: np.ndarray) -> np.ndarray:
    n = len(pcm) // FRAME
    if n == 0:
        return np.zeros(0)
    f = pcm[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(f * f, axis=1)) / 32768 + 1e-10)


@pytest.mark.parametrize("codecs", [("PCMU", "PCMA"), ("PCMA",)], ids=["pcmu", "pcma"])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_echo_returns_the_tone(server, codecs, transport):
    tone = sine(1000.0, 2.0, amplitude=0.5)
    with SipUA(server.host, server.sip_port, transport) as ua:
        call = ua.call("echo", codecs=codecs)
        rtp = call.rtp
        assert rtp.codec == codecs[0], f"answer chose {rtp.codec}, offered {codecs}"
        sent = rtp.send_audio(tone)
        rtp.wait_quiet(0.4, timeout=5)
        call.bye()

    pkts = rtp.audio_packets()
    assert pkts, "no audio came back from echo\n" + server.describe(60)
    pts = {rp.packet.payload_type for rp in pkts}
    assert pts == {rtp.payload_type}, f"echo came back as PT {pts}, negotiated {rtp.payload_type}"
    assert len(pkts) >= 0.9 * sent, f"sent {sent} packets, {len(pkts)} came back"

    heard = rtp.received_audio()
    levels = _frame_levels(heard)
    active = np.nonzero(levels > -40)[0]
    assert active.size, f"only silence came back (max frame level {levels.max():.1f} dBFS)"
    # skip the first 200 ms of the echo, measure the next 1.5 s
    start = (active[0] + 10) * FRAME
    seg = heard[start: start + 12000]
    assert len(seg) >= 8000, f"echo too short: {len(heard) / 8000:.2f} s in all"
    freq = dominant_frequency(seg)
    assert abs(freq - 1000.0) <= 20, f"echoed tone at {freq:.1f} Hz"
    sent_db, got_db = rms_dbfs(tone), rms_dbfs(seg)
    assert abs(got_db - sent_db) <= 3.0, f"sent {sent_db:.1f} dBFS, echo {got_db:.1f} dBFS"

    # the echo should start promptly after our first packet
    first_loud = min(t for t, lvl in rtp.packet_levels() if lvl > -40)
    assert first_loud - rtp.send_started < 1.0, (
        f"echo started {first_loud - rtp.send_started:.2f} s after our first packet")


def test_hello_plays_speech_then_hangs_up(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("hello")
        rtp = call.rtp
        stop = threading.Event()
        # a phone keeps sending (silence) while it listens
        sender = rtp.send_audio_async(np.zeros(8000 * 20, np.int16), stop=stop)
        try:
            got_bye = call.wait_bye(20)
        finally:
            stop.set()
            sender.join(2)
        assert got_bye, "hello never sent BYE\n" + server.describe(60)
        bye_at = call.bye_request.received_at
        time.sleep(0.2)   # nothing should follow the BYE; give stragglers a chance

    heard = rtp.received_audio()
    levels = _frame_levels(heard)
    voiced = levels > -45
    assert voiced.sum() * 0.02 >= 0.3, (
        f"expected speech: only {voiced.sum() * 20} ms above -45 dBFS in "
        f"{len(heard) / 8000:.2f} s (max {levels.max() if levels.size else -200:.1f} dBFS)")
    assert rms_dbfs(heard[np.repeat(voiced, FRAME)]) > -35

    # it is the greeting: correlate with the prompt file after a mu-law round trip
    ref = _read_wav_8k(REPO_ROOT / "scenarios" / "hello.wav")
    if ref is not None:
        ref = ulaw_decode(ulaw_encode(ref)).astype(np.float64)
        x = heard.astype(np.float64)
        n = len(ref) + len(x)
        nfft = 1 << int(np.ceil(np.log2(n)))
        xc = np.fft.irfft(np.fft.rfft(x, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
        lag = int(np.argmax(np.abs(xc)))
        if lag > nfft // 2:
            lag -= nfft
        a = x[max(0, lag): max(0, lag) + len(ref)]
        b = ref[max(0, -lag): max(0, -lag) + len(a)]
        a = a[: len(b)]
        corr = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
        assert corr > 0.8, f"received audio does not match hello.wav (corr {corr:.2f})"

    # the BYE came after the greeting, not in the middle of it
    loud = [t for t, lvl in rtp.packet_levels() if lvl > -45]
    assert loud and loud[-1] <= bye_at + 0.1, (
        f"speech still arriving {loud[-1] - bye_at:.2f} s after the BYE")


def _read_wav_8k(path: Path) -> np.ndarray | None:
    import wave
    try:
        with wave.open(str(path)) as w:
            if w.getframerate() != 8000 or w.getsampwidth() != 2 or w.getnchannels() != 1:
                return None
            return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy()
    except (FileNotFoundError, wave.Error):
        return None
