import numpy as np
import pytest

from voxlab.media.analysis import (cross_correlation_delay, detect_dtmf_digits, dominant_frequency,
                                   is_silent, level_difference_db, rms, rms_dbfs, snr_db)
from voxlab.media.tones import dtmf_sequence, dtmf_tone, dual_tone, frames, silence, sine, white_noise


def test_sine_shape():
    s = sine(1000, 0.5)
    assert s.dtype == np.int16 and len(s) == 4000
    assert abs(int(s.max()) - 16384) <= 2 and abs(int(s.min()) + 16384) <= 2
    assert len(sine(1000, 0.5, rate=16000)) == 8000
    full = sine(500, 0.1, amplitude=1.0)
    assert full.max() == 32767 and full.min() >= -32767
    assert len(sine(440, 0)) == 0


@pytest.mark.parametrize("freq", [300.0, 697.0, 1000.0, 1234.5, 3400.0])
@pytest.mark.parametrize("duration", [0.02, 0.1, 1.0])
def test_dominant_frequency_accuracy(freq, duration):
    assert dominant_frequency(sine(freq, duration)) == pytest.approx(freq, abs=2)


def test_dominant_frequency_interpolates_between_bins():
    # far finer than the FFT bin spacing (~1 Hz): the peak is interpolated
    for duration in (0.02, 0.1, 1.0):
        for freq in np.arange(200.0, 3800.0, 37.3):
            assert dominant_frequency(sine(freq, duration)) == pytest.approx(freq, abs=0.25)


def test_dominant_frequency_other_rates_and_edges():
    assert dominant_frequency(sine(1000, 0.5, rate=16000), rate=16000) == pytest.approx(1000, abs=2)
    assert dominant_frequency(sine(6000, 0.5, rate=16000), rate=16000) == pytest.approx(6000, abs=2)
    assert dominant_frequency(silence(0.1)) == 0.0
    assert dominant_frequency(np.zeros(0, np.int16)) == 0.0
    # the stronger of two tones wins; a DC offset does not
    x = sine(800, 0.5, amplitude=0.4).astype(np.int32) + sine(1900, 0.5, amplitude=0.1) + 5000
    assert dominant_frequency(x) == pytest.approx(800, abs=2)
    # a noisy tone still reads right
    noisy = sine(1000, 1.0, amplitude=0.3).astype(np.int32) + white_noise(1.0, amplitude=0.2)
    assert dominant_frequency(noisy) == pytest.approx(1000, abs=2)


def test_levels():
    assert rms_dbfs(sine(1000, 1.0, amplitude=1.0)) == pytest.approx(-3.01, abs=0.02)
    assert rms_dbfs(sine(1000, 1.0, amplitude=0.5)) == pytest.approx(-9.03, abs=0.02)
    assert rms_dbfs(silence(0.1)) < -150 and np.isfinite(rms_dbfs(silence(0.1)))
    assert rms_dbfs(np.zeros(0, np.int16)) < -150
    a, b = sine(1000, 1.0, amplitude=0.5), sine(1000, 1.0, amplitude=0.25)
    assert level_difference_db(a, b) == pytest.approx(6.02, abs=0.02)
    assert level_difference_db(b, a) == pytest.approx(-6.02, abs=0.02)
    assert rms(np.full(100, 1000, np.int16)) == pytest.approx(1000)
    assert is_silent(silence(0.1)) and not is_silent(sine(1000, 0.1, amplitude=0.01))


def test_snr_and_delay():
    s = sine(1000, 0.5)
    assert snr_db(s, s) == float("inf")
    noisy = s.astype(np.int32) + white_noise(0.5, amplitude=0.005)
    assert 30 < snr_db(s, noisy) < 45
    x = white_noise(0.5, amplitude=0.3, seed=3)
    delayed = np.concatenate([np.zeros(160, np.int16), x])
    assert cross_correlation_delay(x, delayed) == 160
    assert cross_correlation_delay(delayed, x) == -160


def test_dtmf_generators():
    t = dtmf_tone("#", 0.1)
    assert len(t) == 800 and t.dtype == np.int16
    assert np.abs(t).max() <= 16384
    with pytest.raises(ValueError):
        dtmf_tone("x", 0.1)
    seq = dtmf_sequence("123", tone_s=0.1, gap_s=0.05)
    assert len(seq) == 400 + 3 * (800 + 400)
    assert detect_dtmf_digits(seq) == "123"
    assert dominant_frequency(dual_tone(350, 440, 1.0, amplitude=0.2), fmin=400) == pytest.approx(440, abs=2)


def test_frames():
    x = np.arange(350, dtype=np.int16)
    fs = list(frames(x))
    assert [len(f) for f in fs] == [160, 160, 160]
    assert np.array_equal(np.concatenate(fs)[:350], x)
    assert not np.any(fs[-1][30:])
    assert len(list(frames(np.zeros(320, np.int16)))) == 2
    assert list(frames(np.zeros(0, np.int16))) == []
    assert [len(f) for f in frames(np.zeros(500, np.int16), size=240)] == [240, 240, 240]


def test_white_noise_reproducible():
    assert np.array_equal(white_noise(0.1, seed=1), white_noise(0.1, seed=1))
    assert not np.array_equal(white_noise(0.1, seed=1), white_noise(0.1, seed=2))
