"""The queue of 20 ms frames between two clocks that never quite agree.

A sound card runs on its own crystal: its "20 ms" is 20 ms give or take a few hundred
parts per million, and the network side (the RTP stream of the far end, paced by the
far end's clock, and our 20 ms LoopingCall) is another clock. Between them a plain FIFO
either grows without bound (latency creeps up, a few seconds per hour) or runs dry
(clicks). :class:`DriftBuffer` keeps it bounded:

- it is *primed*: the consumer gets silence until ``target`` frames are queued, so
  small bursts on either side are absorbed;
- when the consumer is faster and the queue runs dry, the last frame is played again,
  attenuated (one "stretch" of 20 ms; counted in ``repeated``), then silence until the
  queue is primed again (``underruns``);
- when the producer is faster, frames pile up: every ``window`` gets (half a second)
  the smallest depth seen in that window is the latency no burst needed, and what it
  has beyond ``target`` frames is dropped, oldest first (``dropped``). Latency goes back
  to about ``target`` frames in 20 ms steps the ear barely notices (one every few
  seconds for a real card's drift, of a few hundred parts per million); a burst over
  ``high`` frames drops the oldest at once (hard bound).

A device without a clock of its own (ALSA's ``null`` plugin returns at once) is the
extreme case of a fast producer/consumer; :mod:`voxlab.phone.devices` paces it.

Thread-safe: the sound card side runs in the device thread, the network side in the
reactor thread.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

FRAME = 160              # samples per 20 ms frame at 8 kHz

__all__ = ["DriftBuffer", "FRAME"]


class DriftBuffer:
    """A bounded, primed FIFO of equal-sized int16 frames between two clocks."""

    def __init__(self, target: int = 3, high: int = 8, frame: int = FRAME,
                 window: int = 25) -> None:
        if not 1 <= target < high:
            raise ValueError("need 1 <= target < high")
        self.target = target
        self.high = high
        self.frame = frame
        self.window = window            # gets over which the excess depth is judged (0.5 s)
        self._silence = np.zeros(frame, np.int16)
        self._queue: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self._primed = False
        self._last: np.ndarray | None = None
        self._min = high + 1             # the smallest depth seen in this window
        self._seen = 0                   # gets in this window
        self.put_count = 0
        self.got = 0
        self.dropped = 0
        self.repeated = 0
        self.underruns = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, frame: np.ndarray) -> None:
        """Queue one frame (the producer's clock)."""
        with self._lock:
            self.put_count += 1
            self._queue.append(frame)
            if len(self._queue) > self.high:
                self._queue.popleft()
                self.dropped += 1

    def get(self) -> np.ndarray:
        """One frame for the consumer's clock: never None (silence or a repeat when dry)."""
        with self._lock:
            self.got += 1
            q = self._queue
            if not self._primed:
                if len(q) < self.target:
                    return self._silence
                self._primed = True
                self._min, self._seen = self.high + 1, 0
            if not q:
                self._primed = False
                self.underruns += 1
                last, self._last = self._last, None
                if last is not None:
                    # Stretch: the same 20 ms again, softer, rather than a click of silence.
                    self.repeated += 1
                    return (last // 2).astype(np.int16)
                return self._silence
            # Slow drift: drop what the whole window did not need.
            depth = len(q)
            if depth < self._min:
                self._min = depth
            self._seen += 1
            if self._seen >= self.window:
                for _ in range(min(self._min - self.target, depth - 1)):
                    q.popleft()
                    self.dropped += 1
                self._seen = 0
                self._min = self.high + 1
            frame = q.popleft()
            self._last = frame
            return frame

    def clear(self) -> None:
        """Forget the queued frames (a new call); counters stay."""
        with self._lock:
            self._queue.clear()
            self._primed = False
            self._last = None

    def stats(self) -> dict[str, int]:
        return {"depth": len(self._queue), "dropped": self.dropped, "repeated": self.repeated,
                "underruns": self.underruns}
