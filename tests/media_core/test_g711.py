import subprocess
import wave

import numpy as np
import pytest

from voxlab.media import g711
from voxlab.media.g711 import (CODECS, SILENCE_PAYLOAD, G711Codec, alaw_decode, alaw_encode,
                               codec_for, ulaw_decode, ulaw_encode)
from voxlab.media.analysis import snr_db
from voxlab.media.tones import sine

from .conftest import requires_sox

ALL16 = np.arange(-32768, 32768, dtype=np.int16)
CODES = bytes(range(256))


# ------------------------------------------------------------- reference values

@pytest.mark.parametrize("code,value", [
    (0x00, -32124), (0x80, 32124), (0xFF, 0), (0x7F, 0), (0xFE, 8), (0x7E, -8),
    (0xF0, 120), (0xEF, 132), (0x8F, 16764), (0x0F, -16764),
])
def test_ulaw_decode_reference(code, value):
    assert ulaw_decode(bytes([code]))[0] == value


@pytest.mark.parametrize("code,value", [
    (0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0x54, -24),
    (0xC5, 264), (0xA5, 16896),
])
def test_alaw_decode_reference(code, value):
    assert alaw_decode(bytes([code]))[0] == value


@pytest.mark.parametrize("sample,ulaw,alaw", [
    (0, 0xFF, 0xD5), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A), (8, 0xFE, 0xD5),
    (-8, 0x7E, 0x55), (1000, 0xCE, 0xFA), (-1000, 0x4E, 0x7A),
])
def test_encode_reference(sample, ulaw, alaw):
    pcm = np.array([sample], dtype=np.int16)
    assert ulaw_encode(pcm) == bytes([ulaw])
    assert alaw_encode(pcm) == bytes([alaw])


def test_decode_dtype_and_symmetry():
    for dec in (ulaw_decode, alaw_decode):
        out = dec(CODES)
        assert out.dtype == np.int16 and out.shape == (256,)
        # sign bit flips the sign, magnitudes are shared
        assert np.array_equal(np.sort(np.abs(out[:128])), np.sort(np.abs(out[128:])))
    assert ulaw_decode(CODES).max() == 32124 and ulaw_decode(CODES).min() == -32124
    assert alaw_decode(CODES).max() == 32256 and alaw_decode(CODES).min() == -32256


def test_decode_levels_are_monotonic():
    # μ-law: 0x80..0xFF positive descending, 0x00..0x7F negative ascending
    u = ulaw_decode(CODES).astype(int)
    assert np.all(np.diff(u[0x80:]) < 0) and np.all(np.diff(u[:0x80]) > 0)
    # A-law (even bits inverted): decoded positive values sorted must be 128 distinct
    a = alaw_decode(CODES).astype(int)
    assert len(set(a[a > 0])) == 128 and len(set(a[a < 0])) == 128


# ------------------------------------------------------------- round trips

def test_codes_round_trip_exactly():
    # every code decodes to a level that encodes back to the same code
    # (except μ-law "negative zero" 0x7F, which becomes 0xFF)
    u = ulaw_encode(ulaw_decode(CODES))
    expected = bytearray(CODES)
    expected[0x7F] = 0xFF
    assert u == bytes(expected)
    assert alaw_encode(alaw_decode(CODES)) == CODES


def test_round_trip_error_bounds_all_samples():
    x = ALL16.astype(np.int64)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        y = dec(enc(ALL16)).astype(np.int64)
        err = np.abs(y - x)
        inside = np.abs(x) <= 32000
        # logarithmic quantiser: error proportional to the magnitude
        assert np.all(err[inside] <= np.abs(x[inside]) / 16 + 8), enc.__name__
        # small signals are quantised finely
        small = np.abs(x) < 64
        assert err[small].max() <= 8
        # clipping region stays at the largest level
        assert np.abs(y).max() <= 32256
        # encoding is monotonic in the input
        assert np.all(np.diff(y) >= 0)


def test_sine_snr():
    for amp in (0.5, 0.05):
        s = sine(1000, 1.0, amplitude=amp)
        assert snr_db(s, ulaw_decode(ulaw_encode(s))) > 33
        assert snr_db(s, alaw_decode(alaw_encode(s))) > 33


def test_encode_accepts_other_dtypes():
    f = np.array([0.0, 1000.4, -1000.6, 1e6, -1e6])
    assert ulaw_encode(f) == ulaw_encode(np.array([0, 1000, -1001, 32767, -32768], np.int16))
    assert alaw_encode([0, 100]) == alaw_encode(np.array([0, 100], np.int16))


def test_frame_sizes_and_types():
    pcm = sine(440, 0.02)
    assert len(pcm) == 160
    enc = ulaw_encode(pcm)
    assert isinstance(enc, bytes) and len(enc) == 160
    assert len(ulaw_decode(enc)) == 160
    assert ulaw_decode(memoryview(enc)).shape == (160,)
    assert ulaw_encode(np.zeros(0, np.int16)) == b""


# ------------------------------------------------------------- codec objects

def test_codec_objects():
    assert set(CODECS) == {"PCMU", "PCMA"}
    pcmu, pcma = CODECS["PCMU"], CODECS["PCMA"]
    assert isinstance(pcmu, G711Codec)
    assert (pcmu.name, pcmu.payload_type, pcmu.clock_rate) == ("PCMU", 0, 8000)
    assert (pcma.name, pcma.payload_type, pcma.clock_rate) == ("PCMA", 8, 8000)
    assert codec_for("pcmu") is pcmu and codec_for("PcMa") is pcma
    assert codec_for("opus") is None and codec_for("") is None
    assert g711.codec_for_payload_type(8) is pcma and g711.codec_for_payload_type(3) is None
    pcm = sine(300, 0.02, amplitude=0.3)
    assert pcmu.encode(pcm) == ulaw_encode(pcm)
    assert pcma.encode(pcm) == alaw_encode(pcm)
    assert np.array_equal(pcmu.decode(pcmu.encode(pcm)), ulaw_decode(ulaw_encode(pcm)))


def test_silence_payload():
    assert SILENCE_PAYLOAD["PCMU"] == b"\xff" * 160
    assert SILENCE_PAYLOAD["PCMA"] == b"\xd5" * 160
    for name, payload in SILENCE_PAYLOAD.items():
        assert np.abs(CODECS[name].decode(payload)).max() <= 8
        assert CODECS[name].encode(np.zeros(160, np.int16)) == payload


# ------------------------------------------------------------- cross-check with sox

def _sox_encode(tmp_path, pcm: np.ndarray, encoding: str) -> np.ndarray:
    src = tmp_path / "in.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())
    out = tmp_path / f"out-{encoding}.raw"
    # -D: no dither, so sox quantises exactly
    subprocess.run(["sox", "-D", str(src), "-t", "raw", "-e", encoding, "-b", "8", str(out)],
                   check=True, capture_output=True)
    return np.fromfile(out, np.uint8)


def _sox_decode(tmp_path, codes: bytes, encoding: str) -> np.ndarray:
    src = tmp_path / "codes.raw"
    src.write_bytes(codes)
    out = tmp_path / "dec.raw"
    subprocess.run(["sox", "-t", "raw", "-r", "8000", "-c", "1", "-e", encoding, "-b", "8", str(src),
                    "-t", "raw", "-e", "signed", "-b", "16", str(out)], check=True, capture_output=True)
    return np.fromfile(out, "<i2")


@requires_sox
@pytest.mark.parametrize("encoding,enc,dec,grid", [
    ("u-law", ulaw_encode, ulaw_decode, 4),   # G.711 μ-law is defined on 14-bit PCM
    ("a-law", alaw_encode, alaw_decode, 8),   # A-law on 13-bit PCM
])
def test_matches_sox(tmp_path, encoding, enc, dec, grid):
    # decoding: all 256 codes identical
    assert np.array_equal(_sox_decode(tmp_path, CODES, encoding), dec(CODES))
    # encoding: every value of the codec's uniform PCM grid, identical
    on_grid = ALL16[ALL16.astype(np.int32) % grid == 0]
    assert np.array_equal(_sox_encode(tmp_path, on_grid, encoding),
                          np.frombuffer(enc(on_grid), np.uint8))
    # between grid points sox rounds where the reference truncates: the codes
    # may differ by one quantisation step at decision boundaries only
    sox_all = _sox_encode(tmp_path, ALL16, encoding)
    mine = np.frombuffer(enc(ALL16), np.uint8)
    diff = sox_all != mine
    assert diff.mean() < 0.02
    a = dec(sox_all.tobytes()).astype(int)
    b = dec(mine.tobytes()).astype(int)
    step = np.abs(np.diff(np.unique(dec(CODES).astype(int))))
    assert np.all(np.abs(a - b)[diff] <= step.max())
    # and a real signal (a sine) encodes identically in >= 98 % of samples
    s = sine(1234, 0.5, amplitude=0.7)
    assert np.mean(_sox_encode(tmp_path, s, encoding) == np.frombuffer(enc(s), np.uint8)) > 0.98
