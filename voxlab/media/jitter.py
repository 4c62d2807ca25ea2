"""Jitter buffer: reorders incoming RTP and plays out one packet per tick.

Sans-IO: the caller ``put()``s packets as they arrive (optionally with the
arrival time in seconds, for RFC 3550 interarrival jitter) and ``pop()``s
once per 20 ms media tick.

Sequence numbers are unwrapped to an unbounded "extended" sequence so the
16-bit wrap (65535 -> 0) needs no special cases.  Playout is slot based: a
packet missing at its playout tick yields ``None`` (the caller conceals it)
and the next tick plays the following packet, so timing is preserved and a
loss never adds latency.
"""

from __future__ import annotations

from .rtp import RtpPacket

__all__ = ["JitterBuffer", "JitterStats"]

_MAX_DROPOUT = 3000      # sequence jump treated as a stream restart (RFC 3550 A.1)
_MAX_MISORDER = 100
_HISTORY_BITS = 64
_HISTORY_MASK = (1 << _HISTORY_BITS) - 1


class JitterStats:
    """Counters of one :class:`JitterBuffer` (also readable as a mapping)."""

    __slots__ = ("received", "played", "lost", "late", "duplicate", "overflow",
                 "discarded", "underruns", "resets", "depth", "jitter_ms", "max_depth_seen")

    def __init__(self) -> None:
        self.received = 0      # packets handed to put()
        self.played = 0        # packets returned by pop()
        self.lost = 0          # sequence numbers never played (skipped gaps)
        self.late = 0          # arrived after their slot had been played/skipped
        self.duplicate = 0     # already buffered or already played
        self.overflow = 0      # dropped because the buffer exceeded max_depth
        self.discarded = 0     # dropped to shrink a persistently over-full buffer / probation
        self.underruns = 0     # ticks where playing stopped because nothing was there
        self.resets = 0        # SSRC changes / sequence restarts
        self.depth = 0         # packets currently buffered
        self.jitter_ms = 0.0   # RFC 3550 interarrival jitter estimate
        self.max_depth_seen = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    def __getitem__(self, key: str):
        if key in self.__slots__:
            return getattr(self, key)
        raise KeyError(key)

    def keys(self):
        return self.__slots__

    def get(self, key: str, default=None):
        return getattr(self, key) if key in self.__slots__ else default

    def __repr__(self) -> str:
        return "JitterStats(%s)" % ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)


class JitterBuffer:
    """Reorders incoming RTP by sequence number and plays out one packet per 20 ms media tick."""

    __slots__ = ("target_depth", "max_depth", "clock_rate", "shrink_after", "stats",
                 "_buf", "_ssrc", "_max_ext", "_next", "_playing", "_history",
                 "_transit", "_jitter", "_bad_seq", "_pending", "_excess_ticks")

    def __init__(self, target_depth: int = 1, max_depth: int = 10, clock_rate: int = 8000,
                 shrink_after: int = 25) -> None:
        if target_depth < 1:
            raise ValueError("target_depth must be >= 1")
        if max_depth < target_depth:
            raise ValueError("max_depth must be >= target_depth")
        self.target_depth = target_depth
        self.max_depth = max_depth
        self.clock_rate = clock_rate
        # After this many consecutive ticks with more than target_depth packets
        # waiting, drop one to bring latency back down (0 disables).
        self.shrink_after = shrink_after
        self.stats = JitterStats()
        self._ssrc: int | None = None
        self._reset_stream()

    # -- internals -------------------------------------------------------
    def _reset_stream(self) -> None:
        self._buf: dict[int, RtpPacket] = {}
        self._max_ext: int | None = None   # highest extended seq seen
        self._next: int | None = None      # extended seq of the next slot to play
        self._playing = False
        self._history = 0                  # bit i: seq _next-1-i was played
        self._transit: int | None = None
        self._jitter = 0.0
        self._bad_seq: int | None = None
        self._pending: RtpPacket | None = None
        self._excess_ticks = 0
        self.stats.depth = 0

    def reset(self) -> None:
        """Forget the stream (buffered packets and numbering); keep counters."""
        self._ssrc = None
        self._reset_stream()

    @property
    def depth(self) -> int:
        return len(self._buf)

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def jitter_ms(self) -> float:
        return self.stats.jitter_ms

    def __len__(self) -> int:
        return len(self._buf)

    # -- input -----------------------------------------------------------
    def put(self, packet: RtpPacket, arrival: float | None = None) -> None:
        stats = self.stats
        stats.received += 1
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                stats.resets += 1
            self._ssrc = packet.ssrc
            self._reset_stream()

        if arrival is not None:
            rate = self.clock_rate
            transit = int(arrival * rate) - packet.timestamp
            last = self._transit
            self._transit = transit
            if last is not None:
                d = (transit - last) & 0xFFFFFFFF
                if d >= 0x80000000:
                    d = 0x100000000 - d
                self._jitter += (d - self._jitter) / 16.0
                stats.jitter_ms = self._jitter * 1000.0 / rate
        self._insert(packet)

    def _insert(self, packet: RtpPacket) -> None:
        stats = self.stats
        seq = packet.sequence
        max_ext = self._max_ext
        if max_ext is None:
            ext = self._max_ext = seq
        else:
            delta = (seq - max_ext) & 0xFFFF
            if delta >= 0x8000:
                delta -= 0x10000
            ext = max_ext + delta
            nxt = self._next
            if delta > 0:
                if delta > _MAX_DROPOUT or (nxt is not None and ext - nxt > _MAX_DROPOUT):
                    self._probation(packet)
                    return
                self._max_ext = ext
                self._bad_seq = None
            elif delta < -_MAX_MISORDER and (nxt is None or ext < nxt - _MAX_MISORDER):
                # far in the past: a very old straggler, or the sender restarted
                self._probation(packet)
                return

        buf = self._buf
        nxt = self._next
        if nxt is not None and ext < nxt:
            back = nxt - 1 - ext
            if back < _HISTORY_BITS and (self._history >> back) & 1:
                stats.duplicate += 1
            else:
                stats.late += 1
            return
        if ext in buf:
            stats.duplicate += 1
            return
        buf[ext] = packet
        n = len(buf)
        if n > self.max_depth:
            oldest = min(buf)
            del buf[oldest]
            stats.overflow += 1
            n -= 1
            if nxt is not None and oldest >= nxt:
                # that slot is gone for good; don't also count it as lost
                self._advance_history(oldest + 1 - nxt, played=False)
                self._next = oldest + 1
        stats.depth = n
        if n > stats.max_depth_seen:
            stats.max_depth_seen = n

    def _probation(self, packet: RtpPacket) -> None:
        """RFC 3550 A.1-style restart detection: a huge sequence jump is
        accepted as a new numbering only when the next packet continues it."""
        seq = packet.sequence
        pending = self._pending
        if self._bad_seq is not None and seq == self._bad_seq and pending is not None:
            self.stats.resets += 1
            self.stats.discarded -= 1          # the stashed packet is kept after all
            self._reset_stream()
            self._insert(pending)
            self._insert(packet)
            return
        self._bad_seq = (seq + 1) & 0xFFFF
        self._pending = packet
        self.stats.discarded += 1

    # -- output ----------------------------------------------------------
    def _advance_history(self, steps: int, played: bool) -> None:
        # move the played-history window on by `steps` slots; the newest slot
        # (the one just consumed) is marked if it was played
        h = (self._history << steps) & _HISTORY_MASK if steps < _HISTORY_BITS else 0
        self._history = h | 1 if played else h

    def pop(self) -> RtpPacket | None:
        """The packet for this tick, or None (lost, underrun or priming)."""
        buf = self._buf
        stats = self.stats
        if not self._playing:
            if not buf or len(buf) < self.target_depth:
                return None
            first = min(buf)
            nxt = self._next
            if nxt is not None and first > nxt:
                stats.lost += first - nxt
                self._advance_history(first - nxt, played=False)
            self._next = first
            self._playing = True
            self._excess_ticks = 0

        nxt = self._next
        pkt = buf.pop(nxt, None)
        if pkt is None:
            if not buf:
                # underrun: nothing to play; re-prime before playing again
                self._playing = False
                stats.underruns += 1
                return None
            if len(buf) < self.target_depth:
                # the missing packet's slot is consumed (the caller conceals it)
                self._next = nxt + 1
                self._advance_history(1, played=False)
                stats.lost += 1
                stats.depth = len(buf)
                return None
            # later packets are waiting: skip the gap rather than stall
            first = min(buf)
            stats.lost += first - nxt
            self._advance_history(first - nxt, played=False)
            nxt = first
            pkt = buf.pop(nxt)

        if self.shrink_after:
            if len(buf) >= self.target_depth:      # more than target before this pop
                self._excess_ticks += 1
                if self._excess_ticks >= self.shrink_after and (nxt + 1) in buf:
                    # persistently over-full: drop one packet to cut latency
                    self._excess_ticks = 0
                    stats.discarded += 1
                    self._advance_history(1, played=False)
                    nxt += 1
                    pkt = buf.pop(nxt)
            else:
                self._excess_ticks = 0
        self._next = nxt + 1
        self._advance_history(1, played=True)
        stats.played += 1
        stats.depth = len(buf)
        return pkt
