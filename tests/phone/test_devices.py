"""The sound-card path: PyAudio opening real PortAudio streams on ALSA devices that need
no sound card (configured in an ~/.asoundrc of a temporary HOME), and the phone without
PyAudio or without any device."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.peers.server import REPO_ROOT
from tests.phone.helpers import phone_env, read_output, tone_file, tone_of
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e


def _pyaudio_reason() -> str | None:
    try:
        import pyaudio  # noqa: F401
    except ImportError:
        return ("PyAudio is not installed (the 'phone' extra: pip install '.[phone]', which "
                "needs portaudio19-dev; scripts/setup.sh installs both)")
    return None


requires_pyaudio = pytest.mark.skipif(_pyaudio_reason() is not None,
                                      reason=_pyaudio_reason() or "")

ASOUNDRC = """
# A microphone that reads a raw 8 kHz 16-bit file and a speaker that writes one,
# both on ALSA's null plugin (no sound card, no clock of its own).
pcm.phonein {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{infile}"
  format "raw"
}}
pcm.phoneout {{
  type file
  slave.pcm "null"
  file "{outfile}"
  format "raw"
}}
pcm.!default {{ type plug slave.pcm "null" }}
"""


@pytest.fixture
def alsa_home(tmp_path):
    """A HOME whose .asoundrc defines phonein (a 900 Hz tone), phoneout and a null default."""
    home = tmp_path / "home"
    home.mkdir()
    infile, outfile = home / "mic.raw", home / "speaker.raw"
    infile.write_bytes(sine(900.0, 60.0, amplitude=0.5).astype("<i2").tobytes())
    (home / ".asoundrc").write_text(ASOUNDRC.format(infile=infile, outfile=outfile))
    return home, outfile


def device_numbers(home) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "phone", "--list-devices"],
                         cwd=str(REPO_ROOT), env=phone_env(home), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+(\S+)\s+\(", out.stdout, re.M)}


def wait_bytes(path, size: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= size:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {size} bytes in {timeout} s")


@requires_pyaudio
def test_list_devices_shows_the_configured_ones(alsa_home):
    home, _ = alsa_home
    devices = device_numbers(home)
    assert {"phonein", "phoneout", "default"} <= set(devices), devices


@requires_pyaudio
def test_pyaudio_streams_carry_audio_both_ways(server, phone, alsa_home):
    """Microphone and speaker are PortAudio streams (--device IN,OUT): the mic's tone goes
    to the echo as RTP and comes back out of the speaker."""
    home, speaker = alsa_home
    devices = device_numbers(home)
    ph = phone(["--server", f"{server.host}:{server.sip_port}", "--dial", "echo",
                "--device", f"{devices['phonein']},{devices['phoneout']}"], env=phone_env(home))
    assert ph.wait_for(r"audio: audio device: mic \d+ phonein, speaker \d+ phoneout", 15), ph.describe()
    assert ph.wait_for(r"connected: ", 15), ph.describe()
    wait_bytes(speaker, 2 * 8000 * 3)             # 3 s played
    ph.signal(signal.SIGTERM)
    assert ph.wait(10) == 0, ph.describe()
    m = ph.wait_for(r"ended: hung up after .*RTP sent (\d+)\s+received (\d+)", 0)
    assert m, ph.describe()
    assert int(m.group(1)) >= 100 and int(m.group(2)) >= 100, m.group(0)
    assert ph.wait_for(r"audio: device ran \d+ periods", 0), ph.describe()
    pcm = np.frombuffer(speaker.read_bytes(), "<i2")
    freq, level = tone_of(pcm, skip=0.5)
    assert abs(freq - 900.0) < 10, f"the speaker played {freq:.1f} Hz\n" + ph.describe()
    assert level > -15, f"the speaker played at {level:.1f} dBFS"


@requires_pyaudio
def test_pyaudio_default_null_device_sends_rtp(server, phone, alsa_home, tmp_path):
    """ALSA's null device as the default: the streams open, the phone sends and receives
    RTP at 50 packets a second (the device thread paces a device without a clock)."""
    home, _ = alsa_home
    ph = phone(["--server", f"{server.host}:{server.sip_port}", "--dial", "echo"],
               env=phone_env(home))
    assert ph.wait_for(r"audio: audio device: mic \d+ default, speaker \d+ default", 15), ph.describe()
    assert ph.wait_for(r"connected: ", 15), ph.describe()
    started = time.monotonic()
    assert ph.wait_for(r"stats: .*RTP sent (\d+)", 10), ph.describe()
    ph.signal(signal.SIGTERM)
    assert ph.wait(10) == 0, ph.describe()
    elapsed = time.monotonic() - started
    m = ph.wait_for(r"ended: .*RTP sent (\d+)\s+received (\d+)", 0)
    assert m, ph.describe()
    sent = int(m.group(1))
    assert sent >= 200, m.group(0)
    m = ph.wait_for(r"audio: device ran (\d+) periods \((\d+) paced\)", 0)
    assert m, ph.describe()
    periods, paced = int(m.group(1)), int(m.group(2))
    # Real time, not the null device's thousands of periods a second.
    assert periods <= 50 * (elapsed + 8), f"{periods} periods in about {elapsed + 5:.0f} s"
    assert paced > 0


def test_without_pyaudio_a_clear_message_and_files_still_work(server, phone, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pyaudio.py").write_text("raise ImportError('no PyAudio in this test')\n")
    env = phone_env()
    env["PYTHONPATH"] = f"{shim}:{env['PYTHONPATH']}"
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "phone", "--list-devices"],
                         cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "PyAudio is not installed" in out.stderr, out
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr

    heard = tmp_path / "heard.wav"
    ph = phone(["--server", f"{server.host}:{server.sip_port}", "--dial", "echo",
                "--audio-out", str(heard)], env=env)
    assert ph.wait_for(r"audio: PyAudio is not installed .*files still work", 10), ph.describe()
    assert ph.wait_for(r"connected: ", 15), ph.describe()
    wait_bytes(heard, 44 + 2 * 8000)
    ph.signal(signal.SIGTERM)
    assert ph.wait(10) == 0, ph.describe()
    assert len(read_output(heard)) >= 8000


def test_without_any_device_a_clear_message(server, phone, tmp_path):
    """No sound card and no ~/.asoundrc (an empty HOME): one line says so, and --audio-in
    works on its own."""
    home = tmp_path / "empty-home"
    home.mkdir()
    if _pyaudio_reason() is None and device_numbers(home):
        pytest.skip("this machine has a sound card: PortAudio lists devices without any ~/.asoundrc")
    tone = tone_file(tmp_path / "t.wav", 1000.0, 2.0)
    ph = phone(["--server", f"{server.host}:{server.sip_port}", "--dial", "echo",
                "--audio-in", str(tone)], env=phone_env(home))
    assert ph.wait(20) == 0, ph.describe()
    if _pyaudio_reason() is None:
        assert ph.wait_for(r"audio: no audio device found", 0), ph.describe()
    else:
        assert ph.wait_for(r"audio: PyAudio is not installed", 0), ph.describe()
    assert ph.wait_for(r"ended: hung up after", 0), ph.describe()
