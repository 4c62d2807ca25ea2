"""Signal generators (int16 numpy arrays) and framing."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .dtmf import DTMF_FREQUENCIES

__all__ = ["sine", "dual_tone", "dtmf_tone", "dtmf_sequence", "silence", "white_noise", "frames"]


def _n(duration_s: float, rate: int) -> int:
    return max(0, int(round(duration_s * rate)))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16)


def sine(freq: float, duration_s: float, rate: int = 8000, amplitude: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    """A sine tone; ``amplitude`` is relative to full scale (1.0)."""
    t = np.arange(_n(duration_s, rate)) / rate
    return _to_int16(amplitude * np.sin(2 * np.pi * freq * t + phase))


def dual_tone(f1: float, f2: float, duration_s: float, rate: int = 8000,
              amplitude: float = 0.25) -> np.ndarray:
    """Two sines of ``amplitude`` each."""
    t = np.arange(_n(duration_s, rate)) / rate
    return _to_int16(amplitude * (np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t)))


def dtmf_tone(digit: str, duration_s: float, rate: int = 8000, amplitude: float = 0.25) -> np.ndarray:
    """The DTMF dual tone of ``digit`` (0-9, *, #, A-D)."""
    try:
        lo, hi = DTMF_FREQUENCIES[str(digit).upper()]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r}") from None
    return dual_tone(lo, hi, duration_s, rate, amplitude)


def dtmf_sequence(digits: str, tone_s: float = 0.1, gap_s: float = 0.05, rate: int = 8000,
                  amplitude: float = 0.25) -> np.ndarray:
    """Digits as tones separated by silence (with a gap before and after)."""
    parts = [silence(gap_s, rate)]
    for d in digits:
        parts.append(dtmf_tone(d, tone_s, rate, amplitude))
        parts.append(silence(gap_s, rate))
    return np.concatenate(parts)


def silence(duration_s: float, rate: int = 8000) -> np.ndarray:
    return np.zeros(_n(duration_s, rate), dtype=np.int16)


def white_noise(duration_s: float, rate: int = 8000, amplitude: float = 0.1, seed: int | None = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _to_int16(rng.uniform(-amplitude, amplitude, _n(duration_s, rate)))


def frames(pcm: np.ndarray, size: int = 160) -> Iterator[np.ndarray]:
    """Split into frames of ``size`` samples; the last one is zero-padded."""
    pcm = np.asarray(pcm)
    n = len(pcm)
    full = n - n % size
    for i in range(0, full, size):
        yield pcm[i:i + size]
    if full < n:
        last = np.zeros(size, dtype=pcm.dtype)
        last[:n - full] = pcm[full:]
        yield last
