"""The WebSocket streaming unit: a call's audio to a far WebSocket server and the
server's audio back, the way voice bots are built (VoxEngine's WebSocket, Twilio
Media Streams, jambonz ``listen``).

An autobahn client in the media worker's reactor. What is routed into the unit
goes out as one ``media`` message per 20 ms frame (after a ``start`` message
that says the format); ``media`` messages from the server go into a playout
buffer that the unit produces from, one frame per tick, so
``ws.send_media_to(call)`` plays them. The wire format is in
docs/units/websocket.md.
"""

from __future__ import annotations

import base64
import collections
import json
import uuid
from typing import Any

import numpy as np
import txaio

txaio.use_twisted()

from autobahn.twisted.websocket import (  # noqa: E402  (txaio must choose Twisted first)
    WebSocketClientFactory, WebSocketClientProtocol, connectWS,
)

from voxlab.media.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from voxlab.media.graph import FRAME_SAMPLES, Frame  # noqa: E402
from voxlab.media.units import UnitContext, UnitError, WorkerUnit  # noqa: E402

ENCODINGS = {"PCM16": "audio/l16", "ULAW": "audio/x-mulaw"}
RATES = (8000, 16000)
# The server may send its audio in a burst (a whole TTS answer at once): keep up to
# a minute of it, drop beyond (and say so once).
MAX_BUFFER_FRAMES = 3000


def upsample(pcm: np.ndarray) -> np.ndarray:
    """8 kHz -> 16 kHz by linear interpolation (one frame at a time; good enough for ASR bots)."""
    x = pcm.astype(np.float32)
    nxt = np.append(x[1:], x[-1])
    out = np.empty(len(x) * 2, np.float32)
    out[0::2] = x
    out[1::2] = (x + nxt) / 2
    return out.astype(np.int16)


def downsample(pcm: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz by averaging pairs (a crude low-pass, then decimation)."""
    n = len(pcm) // 2 * 2
    return ((pcm[:n:2].astype(np.int32) + pcm[1:n:2]) // 2).astype(np.int16)


class _Client(WebSocketClientProtocol):
    unit: "WebSocketStream"

    def onOpen(self) -> None:
        self.factory.unit._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.factory.unit._message(payload.decode("utf-8", "replace"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.unit._closed(code, reason or "")


class _Factory(WebSocketClientFactory):
    protocol = _Client
    noisy = False       # no "Starting factory" line per connection

    def clientConnectionFailed(self, connector, reason) -> None:
        self.unit._failed(f"cannot connect to {self.url}: {reason.getErrorMessage()}")


class WebSocketStream(WorkerUnit):
    """A WebSocket client that is a media unit: audio in is streamed out, audio back is played."""

    kind = "websocket"

    def __init__(self, ctx: UnitContext, name: str, url: str, protocols: list[str] | None = None,
                 encoding: str = "PCM16", rate: int = 8000) -> None:
        super().__init__(ctx, name)
        if not url.startswith(("ws://", "wss://")):
            raise UnitError(f"not a WebSocket URL: {url!r}")
        self.url = url
        self.encoding, self.rate = self._check(encoding, rate)
        self.stream_id = uuid.uuid4().hex
        self.proto: _Client | None = None
        self.state = "connecting"
        self.started = False            # our `start` message is out
        self.chunk = 0
        self.sent = 0
        self.received = 0
        self.playout: collections.deque[tuple[str, Any]] = collections.deque()  # ("pcm", a) / ("mark", n)
        self.playing = False
        self.dropped = 0
        factory = _Factory(url, protocols=protocols or None)
        factory.unit = self
        factory.setProtocolOptions(openHandshakeTimeout=10)
        try:
            self._connector = connectWS(factory)
        except Exception as exc:
            raise UnitError(f"cannot connect to {url}: {exc}") from None

    @staticmethod
    def _check(encoding: str, rate: int) -> tuple[str, int]:
        if encoding not in ENCODINGS:
            raise UnitError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if int(rate) not in RATES:
            raise UnitError(f"rate must be 8000 or 16000, got {rate!r}")
        if encoding == "ULAW" and int(rate) != 8000:
            raise UnitError("ULAW is 8000 Hz only")
        return encoding, int(rate)

    # -- the connection
    def _opened(self, proto: _Client) -> None:
        self.proto = proto
        self.state = "open"
        self.emit("OPEN")

    def _message(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        event = message.get("event") if isinstance(message, dict) else None
        if event == "media":
            self._media_in(message.get("media") or {})
        elif event == "mark":
            self.playout.append(("mark", (message.get("mark") or {}).get("name")))
        elif event == "clear":
            self.op_clear()
        else:
            self.emit("MESSAGE", text=text)

    def _media_in(self, media: dict) -> None:
        try:
            raw = base64.b64decode(media.get("payload", ""))
        except (ValueError, TypeError):
            return
        if self.encoding == "ULAW":
            pcm = ulaw_decode(raw)
        else:
            pcm = np.frombuffer(raw[:len(raw) // 2 * 2], "<i2").astype(np.int16)
            if self.rate == 16000:
                pcm = downsample(pcm)
        self.received += 1
        # Into 20 ms frames; a partial frame waits for the next message.
        if self.playout and self.playout[-1][0] == "pcm" and len(self.playout[-1][1]) < FRAME_SAMPLES:
            _, head = self.playout.pop()
            pcm = np.concatenate([head, pcm])
        for i in range(0, len(pcm), FRAME_SAMPLES):
            if sum(1 for kind, _ in self.playout if kind == "pcm") >= MAX_BUFFER_FRAMES:
                self.dropped += 1
                break
            self.playout.append(("pcm", pcm[i:i + FRAME_SAMPLES]))

    def _closed(self, code: int | None, reason: str) -> None:
        was = self.state
        self.state = "closed"
        self.proto = None
        if was != "closed":
            self.emit("CLOSE", code=code, reason=reason)

    def _failed(self, error: str) -> None:
        if self.state == "closed":
            return
        self.emit("ERROR", error=error)
        self._closed(1006, error)

    def _send(self, message: dict) -> None:
        if self.proto is not None and self.state == "open":
            self.proto.sendMessage(json.dumps(message, separators=(",", ":")).encode())

    # -- the tick
    def consume(self, frame: Frame | None) -> None:
        if self.state != "open" or self.source is None:
            return
        if not self.started:
            self.started = True
            self._send({"event": "start", "sequenceNumber": 0, "streamSid": self.stream_id,
                        "start": {"streamSid": self.stream_id, "mediaFormat": {
                            "encoding": ENCODINGS[self.encoding], "sampleRate": self.rate, "channels": 1}}})
        pcm = frame.pcm if frame is not None else np.zeros(FRAME_SAMPLES, np.int16)
        if self.encoding == "ULAW":
            raw = ulaw_encode(pcm)
        else:
            raw = (upsample(pcm) if self.rate == 16000 else pcm).astype("<i2").tobytes()
        self.chunk += 1
        self.sent += 1
        self._send({"event": "media", "streamSid": self.stream_id, "media": {
            "chunk": self.chunk, "timestamp": (self.chunk - 1) * 20,
            "payload": base64.b64encode(raw).decode("ascii")}})

    def produce(self) -> Frame | None:
        playout = self.playout
        while playout and playout[0][0] == "mark":
            # Reached in playout order: the server learns its audio up to here was heard.
            name = playout.popleft()[1]
            self._send({"event": "mark", "streamSid": self.stream_id, "mark": {"name": name}})
            self.emit("MARK", mark=name)
        if not playout:
            if self.playing:
                self.playing = False
                self.emit("MEDIA_ENDED")
            return None
        _, pcm = playout.popleft()
        if len(pcm) < FRAME_SAMPLES:
            pcm = np.concatenate([pcm, np.zeros(FRAME_SAMPLES - len(pcm), np.int16)])
        if not self.playing:
            self.playing = True
            self.emit("MEDIA_STARTED")
        return Frame(pcm=pcm)

    # -- operations
    def op_configure(self, encoding: str = "PCM16", rate: int = 8000) -> None:
        encoding, rate = self._check(encoding, rate)
        if (encoding, rate) != (self.encoding, self.rate) and self.started:
            # A new format is a new stream for the server.
            self._send({"event": "stop", "streamSid": self.stream_id})
            self.started = False
            self.chunk = 0
        self.encoding, self.rate = encoding, rate

    def op_send(self, text: str) -> None:
        if self.proto is None or self.state != "open":
            raise UnitError("the WebSocket is not open")
        self.proto.sendMessage(text.encode("utf-8"))

    def op_clear(self) -> None:
        self.playout.clear()

    def op_close(self, code: int = 1000, reason: str = "") -> None:
        if self.proto is not None and self.state == "open":
            if self.started:
                self._send({"event": "stop", "streamSid": self.stream_id})
            self.state = "closing"
            self.proto.sendClose(code, reason or None)
        elif self.state == "connecting":
            self._connector.disconnect()

    def close(self) -> None:
        if self.state in ("open", "connecting"):
            try:
                self.op_close(1000, "unit closed")
            except Exception:
                pass

    def stats_row(self) -> list:
        return [self.state, self.sent, self.received, sum(1 for k, _ in self.playout if k == "pcm"),
                self.encoding, self.rate]
