import os
import subprocess
import sys
import wave

import numpy as np
import pytest

from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.tones import sine
from voxlab.media.wav import WavWriter, read_wav, read_wav_info, resample

from .conftest import requires_sox


def sox_make(path, *opts, seconds=1.0, freq=1000, vol=0.5, channels=1):
    """Generate a tone file with sox: opts are output format options."""
    subprocess.run(["sox", "-D", "-n", *opts, "-c", str(channels), str(path), "synth", str(seconds),
                    "sine", str(freq), "vol", str(vol)], check=True, capture_output=True)
    return path


FORMATS = [
    # name, sox output options, expected (format, bits), expected level tolerance (dB)
    ("s16_44k1_stereo", ["-r", "44100", "-b", "16", "-e", "signed"], 2, ("pcm", 16), 0.2),
    ("s16_8k", ["-r", "8000", "-b", "16", "-e", "signed"], 1, ("pcm", 16), 0.2),
    ("ulaw_8k", ["-r", "8000", "-e", "u-law"], 1, ("ulaw", 8), 0.3),
    ("alaw_16k", ["-r", "16000", "-e", "a-law"], 1, ("alaw", 8), 0.3),
    ("ulaw_44k1_stereo", ["-r", "44100", "-e", "u-law"], 2, ("ulaw", 8), 0.3),
    ("u8_22k05", ["-r", "22050", "-b", "8", "-e", "unsigned"], 1, ("pcm", 8), 0.5),
    ("float32_48k", ["-r", "48000", "-b", "32", "-e", "floating-point"], 1, ("float", 32), 0.2),
    ("float64_8k", ["-r", "8000", "-b", "64", "-e", "floating-point"], 1, ("float", 64), 0.2),
    ("s24_96k", ["-r", "96000", "-b", "24", "-e", "signed"], 1, ("pcm", 24), 0.2),
    ("s32_16k", ["-r", "16000", "-b", "32", "-e", "signed"], 1, ("pcm", 32), 0.2),
    ("s16_11k025_6ch", ["-r", "11025", "-b", "16", "-e", "signed"], 6, ("pcm", 16), 0.2),
]


@requires_sox
@pytest.mark.parametrize("name,opts,channels,fmt,tol", FORMATS, ids=[f[0] for f in FORMATS])
def test_read_formats(tmp_path, name, opts, channels, fmt, tol):
    path = sox_make(tmp_path / f"{name}.wav", *opts, channels=channels)
    info = read_wav_info(path)
    assert (info.format, info.bits, info.channels) == (fmt[0], fmt[1], channels)
    pcm = read_wav(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - 8000) <= 1
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=5)
    # sox "vol 0.5" sine: amplitude 0.5 -> -9.03 dBFS rms (same in every channel)
    assert rms_dbfs(pcm[100:-100]) == pytest.approx(-9.03, abs=tol)


@requires_sox
def test_extensible_is_parsed(tmp_path):
    # sox writes WAVE_FORMAT_EXTENSIBLE for > 2 channels / > 16 bits
    path = sox_make(tmp_path / "ext.wav", "-r", "8000", "-b", "24", channels=3)
    with open(path, "rb") as f:
        head = f.read(40)
    assert head[20:22] == b"\xfe\xff"
    assert read_wav_info(path).format == "pcm"
    assert dominant_frequency(read_wav(path)) == pytest.approx(1000, abs=1)


@requires_sox
@pytest.mark.parametrize("src_rate", [11025, 16000, 22050, 32000, 44100, 48000, 96000])
def test_resampled_tone_stays_put(tmp_path, src_rate):
    for freq in (300, 1000, 3000):
        path = sox_make(tmp_path / f"t{src_rate}_{freq}.wav", "-r", str(src_rate), "-b", "16",
                        freq=freq, seconds=0.5)
        pcm = read_wav(path)
        assert abs(len(pcm) - 4000) <= 1
        assert dominant_frequency(pcm) == pytest.approx(freq, abs=5)
        assert rms_dbfs(pcm[200:-200]) == pytest.approx(-9.03, abs=0.3)


@requires_sox
def test_downsampling_removes_out_of_band(tmp_path):
    # a 5 kHz tone cannot exist at 8 kHz: it must be filtered, not aliased to 3 kHz
    path = sox_make(tmp_path / "hi.wav", "-r", "44100", "-b", "16", freq=5000)
    pcm = read_wav(path)
    assert rms_dbfs(pcm[200:-200]) < -9 - 60


def test_read_to_other_rate(tmp_path):
    path = tmp_path / "t.wav"
    with WavWriter(path, rate=8000) as w:
        w.write(sine(1000, 1.0))
    up = read_wav(path, rate=16000)
    assert abs(len(up) - 16000) <= 1
    assert dominant_frequency(up, 16000) == pytest.approx(1000, abs=2)
    same = read_wav(path, rate=8000)
    assert np.array_equal(same, sine(1000, 1.0))


def _write_wave(path, frames: np.ndarray, rate=8000, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())


def test_stereo_mixdown(tmp_path):
    s = sine(1000, 0.5).astype(np.int32)
    _write_wave(tmp_path / "lr.wav", np.stack([s, np.zeros_like(s)], axis=1))
    _write_wave(tmp_path / "anti.wav", np.stack([s, -s], axis=1))
    _write_wave(tmp_path / "same.wav", np.stack([s, s], axis=1))
    assert rms_dbfs(read_wav(tmp_path / "lr.wav")) == pytest.approx(rms_dbfs(s) - 6.02, abs=0.05)
    assert rms_dbfs(read_wav(tmp_path / "anti.wav")) < -100
    assert np.array_equal(read_wav(tmp_path / "same.wav"), s.astype(np.int16))


def test_bad_files(tmp_path):
    cases = {
        "empty.wav": b"",
        "text.wav": b"hello, this is not a wav file at all" * 3,
        "noformat.wav": b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00",
        "nodata.wav": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00"
                      b"\x80>\x00\x00\x02\x00\x10\x00",
        "adpcm.wav": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x02\x00\x01\x00@\x1f\x00\x00"
                     b"\x80>\x00\x00\x02\x00\x04\x00data\x04\x00\x00\x00\x00\x00\x00\x00",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError):
            read_wav(tmp_path / name)
    with pytest.raises(ValueError):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="0x0002"):
        read_wav(tmp_path / "adpcm.wav")


def test_truncated_and_unpatched_data_chunks(tmp_path):
    s = sine(1000, 0.1)
    good = tmp_path / "good.wav"
    with WavWriter(good) as w:
        w.write(s)
    blob = good.read_bytes()
    # data size says more than is there (a copy cut short): read what is there
    cut = tmp_path / "cut.wav"
    cut.write_bytes(blob[:44 + 400])
    assert np.array_equal(read_wav(cut), s[:200])
    # a streaming writer that never patched its sizes (0 / 0xFFFFFFFF)
    for size in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"):
        raw = tmp_path / "stream.wav"
        raw.write_bytes(blob[:4] + size + blob[8:40] + size + blob[44:])
        assert np.array_equal(read_wav(raw), s)
        # only the data size unpatched
        raw.write_bytes(blob[:40] + size + blob[44:])
        assert np.array_equal(read_wav(raw), s)
    # an empty recording is a valid, empty file
    empty = tmp_path / "empty.wav"
    WavWriter(empty).close()
    assert len(read_wav(empty)) == 0 and read_wav_info(empty).frames == 0


def test_read_file_object(tmp_path):
    import io
    path = tmp_path / "t.wav"
    with WavWriter(path) as w:
        w.write(sine(1000, 0.1))
    blob = path.read_bytes()
    assert np.array_equal(read_wav(io.BytesIO(blob)), sine(1000, 0.1))
    import struct
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)          # μ-law, own parser
    ulaw = io.BytesIO(b"RIFF" + struct.pack("<I", 4 + 24 + 8 + 800) + b"WAVEfmt "
                      + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 800)
                      + bytes([0x80, 0x00]) * 400)
    pcm = read_wav(ulaw)
    assert len(pcm) == 800 and pcm[0] == 32124 and pcm[1] == -32124


def test_resample_function():
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 440 * t) * 10000
    y = resample(x, 16000, 8000)
    assert len(y) == 8000 and y.dtype == np.float64
    assert dominant_frequency(y) == pytest.approx(440, abs=1)
    assert np.array_equal(resample(x, 8000, 8000), x)
    assert len(resample(np.zeros(0), 44100, 8000)) == 0
    with pytest.raises(ValueError):
        resample(x, 0, 8000)


# ------------------------------------------------------------------ writer

def test_writer_valid_at_every_moment(tmp_path):
    path = tmp_path / "rec.wav"
    w = WavWriter(path, rate=8000)
    with wave.open(str(path)) as r:            # valid right after open
        assert (r.getnframes(), r.getframerate(), r.getsampwidth(), r.getnchannels()) == (0, 8000, 2, 1)
    tone = sine(440, 0.2)
    written = []
    for i, frame in enumerate(np.split(tone, 10)):
        w.write(frame)
        written.append(frame)
        # read while the writer is still open
        with wave.open(str(path)) as r:
            assert r.getnframes() == 160 * (i + 1)
        assert np.array_equal(read_wav(path), np.concatenate(written))
        assert os.path.getsize(path) == 44 + 320 * (i + 1)
    assert w.duration == pytest.approx(0.2)
    assert w.samples == 1600
    w.close()
    w.close()                                   # idempotent
    with pytest.raises(ValueError):
        w.write(tone)


@requires_sox
def test_writer_readable_by_sox_while_open(tmp_path):
    path = tmp_path / "rec.wav"
    with WavWriter(path, rate=16000) as w:
        for i in range(1, 4):
            w.write(sine(1000, 0.02, rate=16000))
            out = subprocess.run(["sox", "--i", "-s", str(path)], check=True, capture_output=True,
                                 text=True).stdout
            assert int(out.strip()) == 320 * i
            rate = subprocess.run(["sox", "--i", "-r", str(path)], check=True, capture_output=True,
                                  text=True).stdout
            assert int(rate.strip()) == 16000
    assert w.closed


def test_writer_survives_crash(tmp_path):
    path = tmp_path / "crash.wav"
    code = (
        "import os, numpy as np\n"
        "from voxlab.media.wav import WavWriter\n"
        f"w = WavWriter({str(path)!r})\n"
        "for i in range(25):\n"
        "    w.write(np.full(160, i, dtype=np.int16))\n"
        "os._exit(3)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-c", code], env=env)
    assert proc.returncode == 3
    pcm = read_wav(path)
    assert len(pcm) == 25 * 160
    assert np.array_equal(pcm[::160], np.arange(25))


def test_writer_converts_input(tmp_path):
    path = tmp_path / "f.wav"
    with WavWriter(path) as w:
        w.write(np.array([0.4, 40000.0, -40000.0, 1.6]))
        w.write(np.zeros(0, np.int16))
        w.write([1, 2, 3])
    assert read_wav(path).tolist() == [0, 32767, -32768, 2, 1, 2, 3]
