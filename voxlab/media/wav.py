"""WAV files: read anything common into 8 kHz mono int16, write recordings.

``read_wav`` accepts PCM 8/16/24/32-bit, IEEE float 32/64, μ-law (format
tag 7), A-law (tag 6) and WAVE_FORMAT_EXTENSIBLE, any channel count (mixed
down) and any sample rate (resampled with a windowed-sinc polyphase filter).

``WavWriter`` keeps the file a valid WAV at every moment: the header is
written at open, and the RIFF and data chunk sizes are rewritten after each
``write()``, so a crash never leaves an unreadable recording.
"""

from __future__ import annotations

import math
import os
import struct
import wave
from functools import lru_cache

import numpy as np

from .g711 import ALAW_DECODE_TABLE, ULAW_DECODE_TABLE

__all__ = ["read_wav", "read_wav_info", "WavInfo", "resample", "WavWriter", "WAVE_FORMATS"]

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
WAVE_FORMATS = {
    WAVE_FORMAT_PCM: "pcm",
    WAVE_FORMAT_IEEE_FLOAT: "float",
    WAVE_FORMAT_ALAW: "alaw",
    WAVE_FORMAT_MULAW: "ulaw",
}


class WavInfo:
    __slots__ = ("format", "channels", "rate", "bits", "block_align", "frames")

    def __init__(self, format: str, channels: int, rate: int, bits: int, block_align: int,
                 frames: int) -> None:
        self.format = format
        self.channels = channels
        self.rate = rate
        self.bits = bits
        self.block_align = block_align
        self.frames = frames

    @property
    def duration(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    def __repr__(self) -> str:
        return (f"WavInfo(format={self.format!r}, channels={self.channels}, rate={self.rate}, "
                f"bits={self.bits}, frames={self.frames})")


# ---------------------------------------------------------------- decoding

def _decode_samples(fmt: str, bits: int, data: bytes, channels: int) -> np.ndarray:
    """Raw sample bytes -> float64 (frames, channels) in int16 units."""
    width = bits // 8
    usable = len(data) - len(data) % (width * channels)
    data = data[:usable]
    if fmt == "pcm":
        if bits == 8:
            x = (np.frombuffer(data, np.uint8).astype(np.float64) - 128.0) * 256.0
        elif bits == 16:
            x = np.frombuffer(data, "<i2").astype(np.float64)
        elif bits == 24:
            raw = np.frombuffer(data, np.uint8).reshape(-1, 3)
            wide = np.zeros((raw.shape[0], 4), np.uint8)
            wide[:, 1:] = raw
            x = (wide.view("<i4").ravel() >> 8).astype(np.float64) / 256.0
        elif bits == 32:
            x = np.frombuffer(data, "<i4").astype(np.float64) / 65536.0
        else:
            raise ValueError(f"unsupported PCM sample size: {bits} bits")
    elif fmt == "float":
        if bits == 32:
            x = np.frombuffer(data, "<f4").astype(np.float64)
        elif bits == 64:
            x = np.frombuffer(data, "<f8").astype(np.float64)
        else:
            raise ValueError(f"unsupported float sample size: {bits} bits")
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0) * 32768.0
    elif fmt in ("ulaw", "alaw"):
        if bits != 8:
            raise ValueError(f"unsupported {fmt} sample size: {bits} bits")
        table = ULAW_DECODE_TABLE if fmt == "ulaw" else ALAW_DECODE_TABLE
        x = table[np.frombuffer(data, np.uint8)].astype(np.float64)
    else:  # pragma: no cover - guarded by the parser
        raise ValueError(f"unsupported WAV format {fmt}")
    return x.reshape(-1, channels)


def _parse_chunks(path) -> tuple[WavInfo, bytes]:
    """Own RIFF/WAVE parser (formats the stdlib ``wave`` module rejects)."""
    try:
        if hasattr(path, "read"):
            path.seek(0)
            blob = path.read()
        else:
            with open(path, "rb") as f:
                blob = f.read()
    except OSError as e:
        raise ValueError(f"cannot read WAV file {path!r}: {e}") from e
    if len(blob) < 12 or blob[:4] not in (b"RIFF", b"RF64") or blob[8:12] != b"WAVE":
        raise ValueError(f"not a RIFF/WAVE file: {path!r}")
    pos = 12
    fmt_chunk = None
    data = None
    n = len(blob)
    while pos + 8 <= n:
        cid = blob[pos:pos + 4]
        size = struct.unpack_from("<I", blob, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt_chunk = blob[body:body + size]
        elif cid == b"data":
            end = n if size in (0, 0xFFFFFFFF) or body + size > n else body + size
            if size == 0 and fmt_chunk is not None:
                # a writer that never got to patch its header: take what's there
                end = n
            data = blob[body:end]
            if fmt_chunk is not None and (size == 0 or size == 0xFFFFFFFF or body + size > n):
                break
        pos = body + size + (size & 1)
    if fmt_chunk is None or len(fmt_chunk) < 16:
        raise ValueError(f"WAV file without a valid fmt chunk: {path!r}")
    if data is None:
        raise ValueError(f"WAV file without a data chunk: {path!r}")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt_chunk)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt_chunk) < 40:
            raise ValueError(f"truncated WAVE_FORMAT_EXTENSIBLE fmt chunk: {path!r}")
        tag = struct.unpack_from("<H", fmt_chunk, 24)[0]   # first bytes of SubFormat GUID
    fmt = WAVE_FORMATS.get(tag)
    if fmt is None:
        raise ValueError(f"unsupported WAV format tag {tag:#06x} in {path!r}")
    if channels < 1 or rate < 1 or bits < 1:
        raise ValueError(f"bad WAV fmt chunk (channels={channels}, rate={rate}, bits={bits})")
    if bits % 8:
        bits = (bits + 7) // 8 * 8
    if block_align != channels * bits // 8:
        # containers (e.g. 24 valid bits in 32) are described by block_align
        if block_align and block_align % channels == 0:
            bits = block_align // channels * 8
    frames = len(data) // (channels * bits // 8)
    return WavInfo(fmt, channels, rate, bits, channels * bits // 8, frames), data


def _read_any(path) -> tuple[WavInfo, np.ndarray]:
    try:
        with wave.open(os.fspath(path) if not hasattr(path, "read") else path, "rb") as w:
            channels = w.getnchannels()
            rate = w.getframerate()
            width = w.getsampwidth()
            frames = w.readframes(w.getnframes())
        if frames:
            info = WavInfo("pcm", channels, rate, width * 8, channels * width,
                           len(frames) // (channels * width))
            return info, _decode_samples("pcm", width * 8, frames, channels)
        # no frames: maybe a streaming writer's unpatched size; let our parser look
    except (wave.Error, EOFError, struct.error, ValueError):
        pass
    except OSError as e:
        raise ValueError(f"cannot read WAV file {path!r}: {e}") from e
    info, data = _parse_chunks(path)
    return info, _decode_samples(info.format, info.bits, data, info.channels)


def read_wav_info(path) -> WavInfo:
    """Format, channels, rate, bits and length of a WAV file."""
    return _read_any(path)[0]


def read_wav(path, rate: int = 8000) -> np.ndarray:
    """Read a WAV file as mono int16 at ``rate`` Hz (mixed down, resampled)."""
    info, x = _read_any(path)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if rate != info.rate:
        mono = resample(mono, info.rate, rate)
    return np.clip(np.rint(mono), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------- resampling

_ZERO_CROSSINGS = 16       # sinc zero crossings per side of the kernel
_ROLLOFF = 0.92            # cutoff as a fraction of the lower Nyquist frequency
_KAISER_BETA = 8.6         # ~ -80 dB stop band
_MAX_PHASES = 1024
_CHUNK = 8192             # output rows per matrix product (bounds memory)


@lru_cache(maxsize=16)
def _kernel(phases: int, fc: float) -> tuple[np.ndarray, int]:
    """Polyphase windowed-sinc table: (phases, taps) and the half width."""
    half = int(math.ceil(_ZERO_CROSSINGS / fc))
    k = np.arange(-half + 1, half + 1)                         # tap offsets from base
    frac = np.arange(phases)[:, None] / phases                 # fractional position
    d = frac - k[None, :]                                      # distance to each tap
    # Kaiser window evaluated at the exact (fractional) distance
    w = np.i0(_KAISER_BETA * np.sqrt(np.clip(1 - (d / half) ** 2, 0, 1))) / np.i0(_KAISER_BETA)
    h = fc * np.sinc(fc * d) * w
    h /= h.sum(axis=1, keepdims=True)                          # unity DC gain per phase
    h.flags.writeable = False
    return h, half


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling (windowed-sinc polyphase filter) of a 1-D signal.

    Returns float64.  Downsampling low-passes at 0.92 x the new Nyquist
    frequency (stop band ~80 dB down), so no aliasing folds into the band.
    """
    x = np.asarray(x, dtype=np.float64)
    src_rate = int(src_rate)
    dst_rate = int(dst_rate)
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError("sample rates must be positive")
    if src_rate == dst_rate or len(x) == 0:
        return x.copy()
    g = math.gcd(src_rate, dst_rate)
    up = dst_rate // g           # L
    down = src_rate // g         # M
    fc = min(1.0, dst_rate / src_rate) * _ROLLOFF
    phases = up if up <= _MAX_PHASES else _MAX_PHASES
    h, half = _kernel(phases, round(fc, 12))
    n_in = len(x)
    n_out = -(-n_in * up // down)                               # ceil
    n = np.arange(n_out, dtype=np.int64)
    pos = n * down                                              # position * up
    base = pos // up
    q = ((pos % up) * phases + up // 2) // up                   # nearest phase
    carry = q >= phases
    base = base + carry
    q = np.where(carry, 0, q)
    taps = 2 * half
    xp = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps)   # windows[b] = x[b-half+1 .. b+half]
    y = np.empty(n_out)
    if phases == up:
        # the phase repeats every `up` outputs and the base advances by `down`:
        # each phase is a strided view of the input windows (no gather copy)
        for p in range(min(up, n_out)):
            count = len(range(p, n_out, up))
            start = int(base[p]) + 1
            hp = h[q[p]]
            for j in range(0, count, _CHUNK):
                m = min(_CHUNK, count - j)
                s = start + j * down
                y[p + j * up:p + (j + m) * up:up] = windows[s:s + (m - 1) * down + 1:down] @ hp
    else:
        order = np.argsort(q, kind="stable")
        qs = q[order]
        bounds = np.flatnonzero(np.diff(qs)) + 1
        for grp in np.split(order, bounds):
            hp = h[q[grp[0]]]
            for j in range(0, len(grp), _CHUNK):
                g = grp[j:j + _CHUNK]
                y[g] = windows[base[g] + 1] @ hp
    return y


# ---------------------------------------------------------------- writing

_RIFF_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_U32 = struct.Struct("<I")
_MAX_DATA = 0xFFFFFFFF - 36


class WavWriter:
    """16-bit PCM mono WAV writer whose file is valid at every moment."""

    __slots__ = ("path", "rate", "_f", "_fd", "_bytes", "_fsync", "_pwrite")

    def __init__(self, path, rate: int = 8000, fsync: bool = False) -> None:
        self.path = os.fspath(path)
        self.rate = int(rate)
        self._fsync = fsync
        self._bytes = 0
        self._f = open(self.path, "wb", buffering=0)
        self._fd = self._f.fileno()
        self._pwrite = getattr(os, "pwrite", None)
        self._f.write(_RIFF_HEADER.pack(b"RIFF", 36, b"WAVE", b"fmt ", 16, 1, 1, self.rate,
                                        self.rate * 2, 2, 16, b"data", 0))

    def write(self, pcm: np.ndarray) -> None:
        f = self._f
        if f is None:
            raise ValueError("write to a closed WavWriter")
        a = np.asarray(pcm)
        if a.dtype != np.int16:
            if a.dtype.kind == "f":
                a = np.clip(np.rint(a), -32768, 32767)
            a = a.astype(np.int16)
        data = a.astype("<i2", copy=False).tobytes()
        if not data:
            return
        size = self._bytes + len(data)
        if size > _MAX_DATA:
            raise OverflowError("WAV data chunk would exceed 4 GiB")
        f.write(data)            # data first: header never claims more than is there
        self._bytes = size
        riff = _U32.pack(36 + size)
        dsz = _U32.pack(size)
        pw = self._pwrite
        if pw is not None:
            pw(self._fd, riff, 4)
            pw(self._fd, dsz, 40)
        else:  # pragma: no cover - non-POSIX
            end = f.tell()
            f.seek(4)
            f.write(riff)
            f.seek(40)
            f.write(dsz)
            f.seek(end)
        if self._fsync:
            os.fsync(self._fd)

    @property
    def samples(self) -> int:
        return self._bytes // 2

    @property
    def duration(self) -> float:
        return self._bytes / 2 / self.rate

    @property
    def closed(self) -> bool:
        return self._f is None

    def close(self) -> None:
        f = self._f
        if f is not None:
            self._f = None
            f.close()

    def __enter__(self) -> "WavWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
