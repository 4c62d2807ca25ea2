"""DTMF: RFC 4733 telephone-events (send/receive) and in-band detection.

* :func:`parse_event` / :func:`build_event` -- the 4-byte event payload.
* :class:`DtmfReceiver` -- reports each digit of an RTP event stream once.
* :class:`DtmfSender` -- turns queued digits into per-tick event payloads.
* :class:`InbandDtmfDetector` -- Goertzel detector for tones in the audio.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from typing import NamedTuple

import numpy as np

from .rtp import RtpPacket

__all__ = [
    "EVENT_CODES",
    "CODE_EVENTS",
    "DTMF_DIGITS",
    "DTMF_FREQUENCIES",
    "TelephoneEvent",
    "parse_event",
    "build_event",
    "DtmfReceiver",
    "DtmfSender",
    "InbandDtmfDetector",
]

DTMF_DIGITS = "0123456789*#ABCD"
#: digit -> RFC 4733 event code
EVENT_CODES: dict[str, int] = {d: i for i, d in enumerate(DTMF_DIGITS)}
#: RFC 4733 event code -> digit
CODE_EVENTS: dict[int, str] = {i: d for i, d in enumerate(DTMF_DIGITS)}

ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
#: digit -> (row Hz, column Hz)
DTMF_FREQUENCIES: dict[str, tuple[float, float]] = {
    _KEYPAD[r][c]: (ROW_FREQS[r], COL_FREQS[c]) for r in range(4) for c in range(4)
}

_EVENT = struct.Struct("!BBH")


class TelephoneEvent(NamedTuple):
    event: str        # "0"-"9", "*", "#", "A"-"D"; other codes as "E<code>"
    end: bool
    volume: int       # 0..63, in -dBm0
    duration: int     # in RTP timestamp units

    @property
    def code(self) -> int:
        return EVENT_CODES[self.event] if self.event in EVENT_CODES else int(self.event[1:])


def parse_event(payload: bytes) -> TelephoneEvent:
    """Parse an RFC 4733 telephone-event payload (only the first 4 bytes)."""
    if len(payload) < 4:
        raise ValueError(f"telephone-event payload too short ({len(payload)} bytes)")
    code, flags, duration = _EVENT.unpack_from(payload)
    name = CODE_EVENTS.get(code)
    if name is None:
        name = f"E{code}"
    return TelephoneEvent(name, bool(flags & 0x80), flags & 0x3F, duration)


def build_event(digit: str, end: bool, volume: int, duration: int) -> bytes:
    """Serialise one telephone-event payload."""
    code = EVENT_CODES[digit]
    return _EVENT.pack(code, (0x80 if end else 0) | (volume & 0x3F), min(duration, 0xFFFF))


class DtmfReceiver:
    """Reports each RFC 4733 digit exactly once.

    An event is identified by its RTP timestamp (all packets of one event
    share it), so retransmitted end packets and lost start packets cannot
    double-report: the digit is reported by the first packet of a new event
    that arrives, whichever that is.
    """

    __slots__ = ("_seen", "_last_key", "digits_received")

    def __init__(self, remember: int = 32) -> None:
        self._seen: deque = deque(maxlen=remember)
        self._last_key: tuple | None = None
        self.digits_received = 0

    def feed(self, packet: RtpPacket) -> str | None:
        """Feed a telephone-event RTP packet; returns a digit once per event."""
        try:
            ev = parse_event(packet.payload)
        except ValueError:
            return None
        if ev.event not in EVENT_CODES:
            return None
        key = (packet.ssrc, packet.timestamp)
        if key == self._last_key or key in self._seen:
            return None
        self._last_key = key
        self._seen.append(key)
        self.digits_received += 1
        return ev.event

    def reset(self) -> None:
        self._seen.clear()
        self._last_key = None


class DtmfSender:
    """Queue of digits to send as RFC 4733 events, one payload per media tick.

    ``next_payload()`` returns ``(payload, marker, new_event)`` while a digit
    is being sent, ``None`` otherwise (including the gap between digits, so
    the caller sends its audio / silence then).  The caller keeps one RTP
    timestamp for all packets of an event and starts a new one when
    ``new_event`` is true (see :meth:`RtpSender.event_packet`).
    """

    __slots__ = ("clock_rate", "samples_per_frame", "_queue", "_cur", "_gap_ticks")

    def __init__(self, clock_rate: int = 8000, samples_per_frame: int = 160) -> None:
        self.clock_rate = clock_rate
        self.samples_per_frame = samples_per_frame
        self._queue: deque = deque()
        self._cur: list | None = None   # [digit, ticks, tick, volume, end_sent, gap_ticks]
        self._gap_ticks = 0

    def send(self, digits: str, duration_ms: int = 100, gap_ms: int = 50, volume: int = 10) -> None:
        digits = str(digits).upper()
        bad = [c for c in digits if c not in EVENT_CODES]
        if bad:
            raise ValueError(f"invalid DTMF digit(s): {''.join(bad)!r}")
        if duration_ms <= 0:
            raise ValueError("duration_ms must be positive")
        if gap_ms < 0:
            raise ValueError("gap_ms must be >= 0")
        if not 0 <= volume <= 63:
            raise ValueError("volume must be 0..63")
        ms_per_tick = self.samples_per_frame * 1000.0 / self.clock_rate
        ticks = max(1, int(round(duration_ms / ms_per_tick)))
        gap = int(round(gap_ms / ms_per_tick))
        for d in digits:
            self._queue.append((d, ticks, gap, volume))

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._cur is not None or self._gap_ticks > 0

    @property
    def pending(self) -> str:
        return "".join(q[0] for q in self._queue)

    def cancel(self) -> None:
        self._queue.clear()
        self._cur = None
        self._gap_ticks = 0

    def next_payload(self) -> tuple[bytes, bool, bool] | None:
        cur = self._cur
        if cur is None:
            if self._gap_ticks > 0:
                self._gap_ticks -= 1
                return None
            if not self._queue:
                return None
            digit, ticks, gap, volume = self._queue.popleft()
            cur = self._cur = [digit, ticks, 0, volume, 0, gap]
        digit, ticks, tick, volume, end_sent, gap = cur
        spf = self.samples_per_frame
        if tick < ticks - 1:
            cur[2] = tick + 1
            return build_event(digit, False, volume, (tick + 1) * spf), tick == 0, tick == 0
        # the end packet, sent three times with the final duration
        cur[4] = end_sent + 1
        first = tick == 0 and end_sent == 0
        payload = build_event(digit, True, volume, ticks * spf)
        if end_sent + 1 >= 3:
            self._cur = None
            self._gap_ticks = gap
        return payload, first, first


class InbandDtmfDetector:
    """Goertzel DTMF detector fed with 20 ms frames (8 kHz: 160 samples).

    Each frame is analysed as two frame-long windows at half-frame hops (the
    second half of the previous frame + the first half of this one, then
    this frame), so the timing resolution is 10 ms while the frequency
    resolution stays that of 20 ms.  The eight tone amplitudes of both
    windows come from one (2 x n/2) @ (n/2 x 8) product of half-frame
    partial DFTs (each half frame is transformed once, used twice).

    A window is a candidate digit when the strongest row and column tones
    are above ``threshold_dbfs``, each beats the other tones of its group by
    ``dominance_db``, their twist is within limits, and together they carry
    at least ``energy_ratio`` of the window's energy (which is what rejects
    speech and music).  A digit is reported once after it has been seen for
    ``min_on_ms`` (consecutive windows spanning that time) and released after
    ``min_off_ms`` without it.  Tones of >= 40 ms are detected at any
    alignment, tones < 28 ms never; a gap of >= 23 ms between repeats of
    the same digit separates them, a 10 ms dropout inside a tone does not.
    """

    __slots__ = ("rate", "frame_size", "hop", "min_on", "min_off", "threshold",
                 "normal_twist", "reverse_twist", "dominance", "energy_ratio",
                 "_half_basis", "_shift", "_energy_scale", "_prev_p", "_prev_e",
                 "_current", "_on", "_off", "_candidate")

    def __init__(self, rate: int = 8000, frame_size: int | None = None, min_on_ms: float = 40,
                 min_off_ms: float = 40, threshold_dbfs: float = -42.0,
                 normal_twist_db: float = 8.0, reverse_twist_db: float = 6.0,
                 dominance_db: float = 9.0, energy_ratio: float = 0.7) -> None:
        self.rate = rate
        n = self.frame_size = frame_size or rate // 50
        if n % 2:
            raise ValueError("frame_size must be even")
        h = self.hop = n // 2
        win_ms = n * 1000.0 / rate
        hop_ms = h * 1000.0 / rate
        # number of consecutive windows whose span (window + hops) covers the time
        self.min_on = max(1, int(math.ceil((min_on_ms - win_ms) / hop_ms - 1e-9)) + 1)
        self.min_off = max(1, int(math.ceil((min_off_ms - win_ms) / hop_ms - 1e-9)) + 1)
        self.threshold = 10 ** (threshold_dbfs / 20.0)   # per-tone amplitude, full scale = 1
        self.normal_twist = 10 ** (normal_twist_db / 20.0)    # row louder than column
        self.reverse_twist = 10 ** (reverse_twist_db / 20.0)  # column louder than row
        self.dominance = 10 ** (dominance_db / 20.0)
        self.energy_ratio = energy_ratio
        freqs = np.array(ROW_FREQS + COL_FREQS)
        t = np.arange(h)
        # Complex single-bin DFT at the exact tone frequencies -- the numbers
        # a bank of Goertzel filters gives over a rectangular window -- split
        # into half-window partial sums: window = first half + shift * second
        # half.  Each half is transformed once and used by two windows.
        # Scaled so a full-scale sine over a whole window reads 1.0.
        self._half_basis = np.ascontiguousarray(
            (np.exp(-2j * np.pi * freqs[:, None] * t[None, :] / rate) / (n / 2.0) / 32768.0).T)
        self._shift = np.exp(-2j * np.pi * freqs * h / rate)
        self._energy_scale = 1.0 / (n * 1073741824.0)   # sum of squares -> mean square / fs^2
        self.reset()

    def reset(self) -> None:
        self._prev_p = np.zeros(8, dtype=np.complex128)   # partial DFT of the last half frame
        self._prev_e = 0.0
        self._current: int = -1      # keypad index of the digit being held, -1 none
        self._candidate: int = -1
        self._on = 0
        self._off = 0

    def _decide(self, amps: list, energy: float) -> int:
        """Keypad index (row*4+col) for one window's 8 tone amplitudes, or -1."""
        rows = amps[:4]
        cols = amps[4:]
        ra = max(rows)
        ca = max(cols)
        th = self.threshold
        if ra < th or ca < th:
            return -1
        if ra > ca * self.normal_twist or ca > ra * self.reverse_twist:
            return -1
        if (ra * ra + ca * ca) * 0.5 < self.energy_ratio * energy * self._energy_scale:
            return -1
        rows_s = sorted(rows)
        cols_s = sorted(cols)
        dom = self.dominance
        if ra < rows_s[2] * dom or ca < cols_s[2] * dom:
            return -1
        return rows.index(ra) * 4 + cols.index(ca)

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        n = self.frame_size
        x = np.asarray(frame, dtype=np.float64)
        if x.shape[0] != n:
            x = x[:n] if x.shape[0] > n else np.concatenate([x, np.zeros(n - x.shape[0])])
        return x.reshape(2, self.hop)

    def classify(self, frame: np.ndarray) -> str | None:
        """Digit present in this single frame (no debouncing, no state)."""
        halves = self._frame(frame)
        p = halves @ self._half_basis
        amps = np.abs(p[0] + self._shift * p[1]).tolist()
        k = self._decide(amps, float(np.vdot(halves, halves)))
        return None if k < 0 else _KEYPAD[k >> 2][k & 3]

    def _step(self, k: int) -> int:
        """Advance the debouncer by one window; returns a newly detected index or -1."""
        cur = self._current
        if cur >= 0:
            if k == cur:
                self._off = 0
                return -1
            self._off += 1
            if self._off < self.min_off:
                return -1
            self._current = -1      # released
            self._off = 0
            self._candidate = -1
            self._on = 0
        if k < 0:
            self._candidate = -1
            self._on = 0
            return -1
        if k == self._candidate:
            self._on += 1
        else:
            self._candidate = k
            self._on = 1
        if self._on >= self.min_on:
            self._current = k
            self._candidate = -1
            self._on = 0
            return k
        return -1

    def feed(self, frame: np.ndarray) -> str | None:
        """Feed one frame; returns a digit once, when it has lasted ``min_on_ms``."""
        halves = self._frame(frame)
        p = halves @ self._half_basis                    # (2, 8) half-frame partial DFTs
        e = (halves * halves).sum(axis=1).tolist()
        shift = self._shift
        both = np.abs(np.stack((self._prev_p + shift * p[0], p[0] + shift * p[1]))).tolist()
        e0 = self._prev_e
        self._prev_p = p[1]
        self._prev_e = e[1]
        found = -1
        d = self._step(self._decide(both[0], e0 + e[0]))
        if d >= 0:
            found = d
        d = self._step(self._decide(both[1], e[0] + e[1]))
        if d >= 0:
            found = d
        return None if found < 0 else _KEYPAD[found >> 2][found & 3]

    @property
    def current(self) -> str | None:
        """The digit currently held (reported and not yet released)."""
        k = self._current
        return None if k < 0 else _KEYPAD[k >> 2][k & 3]

    def feed_many(self, pcm: np.ndarray) -> str:
        """Run over a whole signal frame by frame; the digits detected, in order."""
        pcm = np.asarray(pcm)
        n = self.frame_size
        out = []
        for i in range(0, len(pcm), n):
            d = self.feed(pcm[i:i + n])
            if d is not None:
                out.append(d)
        return "".join(out)
