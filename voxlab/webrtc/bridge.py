"""Audio between a browser's WebRTC stream (aiortc) and the gateway's SIP phone.

The phone (:class:`voxlab.phone.agent.PhoneAgent`) ticks every 20 ms: it reads one
8 kHz frame from its source and sends it to voxlab as RTP, and writes what voxlab sent to
its sink. Here the source is what the browser's microphone track delivers (decoded and
resampled by aiortc/PyAV), and the sink feeds the track aiortc sends to the browser.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import time

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler

RATE = 8000
FRAME = 160                  # 20 ms at 8 kHz, the phone's frame
MAX_BACKLOG = 10             # frames (200 ms): more waiting means we are late; drop the oldest

__all__ = ["BrowserMic", "BrowserSpeaker"]


class BrowserMic:
    """The phone's source: the browser's microphone track, as 20 ms frames of 8 kHz int16.

    ``feed`` runs the track (an asyncio task, started once the remote track arrives);
    ``read`` (the phone's tick) takes what has arrived, or silence when nothing has: the
    two ends run on separate clocks, so a short backlog is kept and trimmed."""

    def __init__(self) -> None:
        self._samples: collections.deque[np.ndarray] = collections.deque()
        self._pending = np.zeros(0, np.int16)
        self._silence = np.zeros(FRAME, np.int16)
        self._task: asyncio.Task | None = None
        self.frames_in = 0

    def attach(self, track: MediaStreamTrack) -> None:
        self.detach()
        self._task = asyncio.ensure_future(self._run(track))

    def detach(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._samples.clear()
        self._pending = np.zeros(0, np.int16)

    async def _run(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        try:
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    self._take(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def _take(self, pcm: np.ndarray) -> None:
        self.frames_in += 1
        data = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        whole = len(data) // FRAME * FRAME
        for i in range(0, whole, FRAME):
            self._samples.append(data[i:i + FRAME].copy())
        self._pending = data[whole:].copy()
        while len(self._samples) > MAX_BACKLOG:
            self._samples.popleft()

    # -- voxlab.phone.sources.Source
    def start(self) -> None:
        pass

    def read(self) -> np.ndarray:
        return self._samples.popleft() if self._samples else self._silence

    def stop(self) -> None:
        pass


class BrowserSpeaker(MediaStreamTrack):
    """The phone's sink and the audio track sent to the browser: what voxlab sends, paced
    at real time (aiortc pulls ``recv`` as fast as it returns), silence while nothing comes."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._silence = np.zeros(FRAME, np.int16)
        self._started: float | None = None
        self._pts = 0
        self._time_base = fractions.Fraction(1, RATE)

    # -- voxlab.phone.sources.Sink
    def start(self) -> None:
        pass

    def write(self, frame: np.ndarray) -> None:
        self._frames.append(frame)
        while len(self._frames) > MAX_BACKLOG:
            self._frames.popleft()

    def stop(self) -> None:
        pass

    # -- aiortc.MediaStreamTrack
    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = now
        else:
            self._pts += FRAME
            due = self._started + self._pts / RATE
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.5:
                # The loop stalled: move the clock on (timestamps keep going forwards, so
                # the browser's jitter buffer sees a gap, not a stream gone back in time).
                self._started = now - self._pts / RATE
        pcm = self._frames.popleft() if self._frames else self._silence
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = self._time_base
        return frame
