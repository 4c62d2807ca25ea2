"""Measure audio as audio: frequency, level, DTMF content.

Used by tests and benchmarks to check what actually came out of a call.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "dominant_frequency",
    "rms",
    "rms_dbfs",
    "level_difference_db",
    "snr_db",
    "detect_dtmf_digits",
    "is_silent",
    "cross_correlation_delay",
]

FULL_SCALE = 32768.0
_FLOOR_DB = -200.0


def dominant_frequency(pcm: np.ndarray, rate: int = 8000, fmin: float = 20.0,
                       fmax: float | None = None) -> float:
    """Frequency (Hz) of the strongest spectral peak.

    Hann-windowed FFT (zero-padded to at least 8192 points), then quadratic
    interpolation of the log magnitude around the peak bin, so a clean tone
    reads within a fraction of a Hz.  Returns 0.0 for silence / empty input.
    """
    x = np.asarray(pcm, dtype=np.float64)
    n = len(x)
    if n < 4:
        return 0.0
    x = x - x.mean()
    if not np.any(x):
        return 0.0
    nfft = 1 << max(13, int(math.ceil(math.log2(n))))
    spec = np.abs(np.fft.rfft(x * np.hanning(n), nfft))
    freqs_per_bin = rate / nfft
    lo = max(1, int(fmin / freqs_per_bin))
    hi = len(spec) - 1 if fmax is None else min(len(spec) - 1, int(fmax / freqs_per_bin) + 1)
    if hi <= lo:
        return 0.0
    k = lo + int(np.argmax(spec[lo:hi]))
    if 0 < k < len(spec) - 1:
        a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
        denom = a - 2 * b + c
        p = 0.5 * (a - c) / denom if denom != 0 else 0.0
        p = max(-0.5, min(0.5, p))
    else:
        p = 0.0
    return float((k + p) * freqs_per_bin)


def rms(pcm: np.ndarray) -> float:
    x = np.asarray(pcm, dtype=np.float64)
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(x * x)))


def rms_dbfs(pcm: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS).

    Silence gives a large negative number (-200), never -inf.
    """
    r = rms(pcm)
    if r <= 0:
        return _FLOOR_DB
    return max(_FLOOR_DB, 20.0 * math.log10(r / FULL_SCALE))


def level_difference_db(a: np.ndarray, b: np.ndarray) -> float:
    """Level of ``a`` minus level of ``b`` in dB (RMS)."""
    return rms_dbfs(a) - rms_dbfs(b)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of ``test`` against an aligned ``reference``."""
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    n = min(len(ref), len(tst))
    ref, tst = ref[:n], tst[:n]
    noise = np.sum((tst - ref) ** 2)
    sig = np.sum(ref ** 2)
    if noise == 0:
        return float("inf")
    if sig == 0:
        return float("-inf")
    return float(10 * math.log10(sig / noise))


def is_silent(pcm: np.ndarray, threshold_dbfs: float = -60.0) -> bool:
    return rms_dbfs(pcm) < threshold_dbfs


def cross_correlation_delay(reference: np.ndarray, delayed: np.ndarray) -> int:
    """Lag (samples) by which ``delayed`` trails ``reference`` (FFT xcorr)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(delayed, dtype=np.float64)
    n = len(a) + len(b) - 1
    nfft = 1 << int(math.ceil(math.log2(max(n, 2))))
    xc = np.fft.irfft(np.fft.rfft(b, nfft) * np.conj(np.fft.rfft(a, nfft)), nfft)
    lag = int(np.argmax(xc))
    if lag > nfft // 2:
        lag -= nfft
    return lag


def detect_dtmf_digits(pcm: np.ndarray, rate: int = 8000) -> str:
    """All DTMF digits present in-band, in order (InbandDtmfDetector)."""
    from .dtmf import InbandDtmfDetector

    return InbandDtmfDetector(rate=rate).feed_many(pcm)
