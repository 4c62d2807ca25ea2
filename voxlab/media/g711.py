"""G.711 μ-law / A-law codecs built on numpy lookup tables.

Decoding is a 256-entry table lookup; encoding is a 65536-entry table lookup
indexed by the uint16 view of the int16 samples.  Both are one vectorised
numpy operation per frame (no per-sample Python, no ``audioop``).

The tables follow ITU-T G.711 (segment/mantissa layout, even-bit inversion
for A-law, bit inversion for μ-law) with the rounding of the classic
reference implementation (Sun / ITU-T G.191 ``g711.c``) that sox also uses.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ulaw_decode",
    "ulaw_encode",
    "alaw_decode",
    "alaw_encode",
    "G711Codec",
    "CODECS",
    "codec_for",
    "SILENCE_PAYLOAD",
    "PCMU",
    "PCMA",
    "CODECS_BY_PT",
    "codec_for_payload_type",
    "ULAW_DECODE_TABLE",
    "ALAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "ALAW_ENCODE_TABLE",
]


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t = t << ((u & 0x70) >> 4)
    out = np.where(u & 0x80, 0x84 - t, t - 0x84)
    return out.astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    out = np.where(a & 0x80, t, -t)
    return out.astype(np.int16)


def _segment(mag: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Index of the first segment end >= mag (len(ends) if beyond all)."""
    return np.searchsorted(ends, mag, side="left")


def _build_ulaw_encode() -> np.ndarray:
    # index i is the uint16 view of int16 sample (i - 65536 if i >= 32768)
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm)
    v = pcm >> 2  # 14-bit
    neg = v < 0
    mag = np.where(neg, -v, v)
    mask = np.where(neg, 0x7F, 0xFF)
    mag = np.minimum(mag, 8159) + 0x21  # clip + bias (0x84 >> 2)
    ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = _segment(mag, ends)
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    out = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask)
    return out.astype(np.uint8)


def _build_alaw_encode() -> np.ndarray:
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm)
    v = pcm >> 3  # 13-bit
    neg = v < 0
    mask = np.where(neg, 0x55, 0xD5)
    mag = np.where(neg, -v - 1, v)
    ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = _segment(mag, ends)
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << 4) | ((mag >> shift) & 0x0F)
    out = np.where(seg >= 8, 0x7F ^ mask, aval ^ mask)
    return out.astype(np.uint8)


ULAW_DECODE_TABLE: np.ndarray = _build_ulaw_decode()
ALAW_DECODE_TABLE: np.ndarray = _build_alaw_decode()
ULAW_ENCODE_TABLE: np.ndarray = _build_ulaw_encode()
ALAW_ENCODE_TABLE: np.ndarray = _build_alaw_encode()
for _t in (ULAW_DECODE_TABLE, ALAW_DECODE_TABLE, ULAW_ENCODE_TABLE, ALAW_ENCODE_TABLE):
    _t.flags.writeable = False
del _t

_frombuffer = np.frombuffer
_uint8 = np.uint8
_uint16 = np.uint16
_int16 = np.int16


def _as_int16(pcm) -> np.ndarray:
    if isinstance(pcm, np.ndarray) and pcm.dtype == _int16:
        return pcm
    arr = np.asarray(pcm)
    if arr.dtype.kind == "f":
        arr = np.clip(np.rint(arr), -32768, 32767)
    return arr.astype(_int16)


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes -> int16 samples."""
    return ULAW_DECODE_TABLE[_frombuffer(data, _uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes -> int16 samples."""
    return ALAW_DECODE_TABLE[_frombuffer(data, _uint8)]


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> μ-law bytes."""
    return ULAW_ENCODE_TABLE[_as_int16(pcm).view(_uint16)].tobytes()


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> A-law bytes."""
    return ALAW_ENCODE_TABLE[_as_int16(pcm).view(_uint16)].tobytes()


class G711Codec:
    """One G.711 variant: static RTP payload type, 8 kHz, 1 byte per sample."""

    __slots__ = ("name", "payload_type", "clock_rate", "_enc", "_dec", "silence")

    def __init__(self, name: str, payload_type: int, enc_table: np.ndarray,
                 dec_table: np.ndarray, clock_rate: int = 8000) -> None:
        self.name = name
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self._enc = enc_table
        self._dec = dec_table
        self.silence = bytes([int(enc_table[0])])

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._enc[_as_int16(pcm).view(_uint16)].tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        return self._dec[_frombuffer(data, _uint8)]

    def silence_payload(self, samples: int = 160) -> bytes:
        return self.silence * samples

    def __repr__(self) -> str:
        return f"<G711Codec {self.name} pt={self.payload_type}>"


PCMU = G711Codec("PCMU", 0, ULAW_ENCODE_TABLE, ULAW_DECODE_TABLE)
PCMA = G711Codec("PCMA", 8, ALAW_ENCODE_TABLE, ALAW_DECODE_TABLE)

CODECS: dict[str, G711Codec] = {"PCMU": PCMU, "PCMA": PCMA}
CODECS_BY_PT: dict[int, G711Codec] = {0: PCMU, 8: PCMA}

#: 160 bytes (20 ms at 8 kHz) of encoded silence per codec name.
SILENCE_PAYLOAD: dict[str, bytes] = {n: c.silence_payload(160) for n, c in CODECS.items()}


def codec_for(name: str) -> G711Codec | None:
    """Codec by (case-insensitive) encoding name, e.g. from SDP ``rtpmap``."""
    if not name:
        return None
    return CODECS.get(name.upper())


def codec_for_payload_type(pt: int) -> G711Codec | None:
    """Codec by static RTP payload type (0 = PCMU, 8 = PCMA)."""
    return CODECS_BY_PT.get(pt)
