"""Interop with baresip 1.0 (an independent phone): ``voxlab phone`` calls baresip, and
baresip calls ``voxlab phone``, directly (no voxlab server between them); the audio of
each side is checked in the other's recording."""

from __future__ import annotations

import signal

import pytest

from tests.interop.baresip import BARESIP, Baresip
from tests.peers.server import free_sip_port
from tests.phone.helpers import read_output, tone_file, tone_of
from voxlab.media.wav import read_wav

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(BARESIP is None,
                                 reason="baresip (Debian package baresip-core) is not on PATH")]


@pytest.fixture
def baresip(tmp_path):
    peers: list[Baresip] = []

    def make(source, **kw) -> Baresip:
        kw.setdefault("avoid", [p.ports for p in peers])
        bs = Baresip(tmp_path / f"baresip{len(peers)}", source=source, **kw)
        peers.append(bs)
        return bs

    yield make
    for bs in peers:
        bs.stop()


def heard_by(bs: Baresip):
    dumps = bs.dumps("dec")
    assert len(dumps) == 1, f"expected one sndfile decode dump, got {dumps}\n" + bs.describe()
    return read_wav(dumps[0])


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_phone_calls_baresip(baresip, phone, tmp_path, codec):
    bs = baresip(tone_file(tmp_path / "bs-tone.wav", 600.0, 20.0), codecs=codec)
    bs.start()
    assert bs.wait_for(r"baresip is ready", 10), bs.describe()
    heard = tmp_path / "heard.wav"
    ph = phone(["--dial", f"sip:bs@127.0.0.1:{bs.sip_port}", "--codec", codec,
                "--audio-in", str(tone_file(tmp_path / "mine.wav", 1000.0, 3.0)),
                "--audio-out", str(heard)])
    assert ph.wait(20) == 0, ph.describe() + "\n" + bs.describe()
    assert ph.wait_for(rf"connected: connected to sip:bs@127\.0\.0\.1:\d+ \({codec}", 0), ph.describe()
    assert bs.wait_for(r"Call with .* terminated", 10), bs.describe()
    freq, _ = tone_of(read_output(heard))
    assert abs(freq - 600.0) < 10, f"the phone heard {freq:.1f} Hz from baresip\n" + ph.describe()
    freq, _ = tone_of(heard_by(bs))
    assert abs(freq - 1000.0) < 10, f"baresip heard {freq:.1f} Hz from the phone\n" + bs.describe()


def test_baresip_calls_the_phone(baresip, phone, tmp_path):
    port = free_sip_port()
    heard = tmp_path / "heard.wav"
    ph = phone(["--local", f"127.0.0.1:{port}", "--auto-answer",
                "--audio-in", str(tone_file(tmp_path / "mine.wav", 1000.0, 20.0)),
                "--audio-out", str(heard)])
    assert ph.wait_for(rf"listening: SIP on udp 127\.0\.0\.1:{port}", 10), ph.describe()
    # baresip hangs up by itself when its 3 s source file ends.
    bs = baresip(tone_file(tmp_path / "bs-tone.wav", 600.0, 3.0), avoid=[(port, port)])
    bs.start(f"dsip:phone@127.0.0.1:{port}")
    assert bs.wait_for(r"Call established", 15), bs.describe() + "\n" + ph.describe()
    assert ph.wait_for(r"incoming: call from sip:bs@127\.0\.0\.1.*answering", 0), ph.describe()
    assert ph.wait_for(r"ended: the far end hung up", 15), ph.describe() + "\n" + bs.describe()
    ph.signal(signal.SIGTERM)
    assert ph.wait(10) == 0, ph.describe()
    freq, _ = tone_of(read_output(heard))
    assert abs(freq - 600.0) < 10, f"the phone heard {freq:.1f} Hz from baresip\n" + ph.describe()
    assert bs.stop() == 0, bs.describe()
    freq, _ = tone_of(heard_by(bs))
    assert abs(freq - 1000.0) < 10, f"baresip heard {freq:.1f} Hz from the phone\n" + bs.describe()
