"""The WebSocket facade (VoxEngine's ``WebSocket``): a client to a far server that is also
a media unit, for voice bots (the unit itself is :mod:`voxlab.media.wsstream`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voxlab.engine.budget import shielded
from voxlab.engine.events import WebSocketEvents
from voxlab.engine.units import MediaFacade

if TYPE_CHECKING:
    from voxlab.engine.session import Session

_EVENTS = {
    "OPEN": WebSocketEvents.OPEN,
    "MESSAGE": WebSocketEvents.MESSAGE,
    "CLOSE": WebSocketEvents.CLOSE,
    "ERROR": WebSocketEvents.ERROR,
    "Error": WebSocketEvents.ERROR,
    "MEDIA_STARTED": WebSocketEvents.MEDIA_STARTED,
    "MEDIA_ENDED": WebSocketEvents.MEDIA_ENDED,
    "MARK": WebSocketEvents.MARK,
}


class WebSocket(MediaFacade):
    """``VoxEngine.createWebSocket(url)``: text messages both ways, and audio: what is sent to
    it (``call.send_media_to(ws, encoding=..., rate=...)``) streams to the server, and what the
    server sends back plays into whatever ``ws.send_media_to(...)`` targets."""

    kind = "websocket"

    def __init__(self, session: "Session", url: str, protocols: list[str] | str | None = None,
                 name: str | None = None) -> None:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"not a WebSocket URL: {url!r} (ws:// or wss://)")
        if isinstance(protocols, str):
            protocols = [protocols]
        self.url = url
        self.state = "connecting"
        super().__init__(session, name, {"url": url, "protocols": list(protocols or [])})

    def _event_name(self, event: str) -> str | None:
        if event == "OPEN":
            self.state = "open"
        elif event == "CLOSE":
            self.state = "closed"
        return _EVENTS.get(event)

    def _worker_event(self, event: str, data: dict) -> None:
        if event == "ERROR":
            self.error = data.get("error")
            self.session.log(f"{self.name}: {self.error}")
        super()._worker_event(event, data)

    def _input_options(self, source: Any, options: dict) -> None:
        encoding = str(options.get("encoding", "PCM16")).upper()
        rate = int(options.get("rate", 8000))
        if encoding not in ("PCM16", "ULAW"):
            raise ValueError(f"encoding is PCM16 or ULAW, got {encoding!r}")
        if rate not in (8000, 16000) or (encoding == "ULAW" and rate != 8000):
            raise ValueError(f"rate is 8000 or 16000 (ULAW: 8000), got {rate!r}")
        unknown = set(options) - {"encoding", "rate"}
        if unknown:
            raise TypeError(f"a WebSocket takes encoding and rate, not {', '.join(sorted(unknown))}")
        self.media.command("configure", encoding=encoding, rate=rate)

    @shielded
    def send(self, text: str) -> None:
        """``send(data)``: a text message to the server."""
        self.media.command("send", text=str(text))

    @shielded
    def close(self, code: int = 1000, reason: str = "") -> None:
        """``close()``: a clean close (``CLOSE`` follows)."""
        self.media.command("close", code=int(code), reason=str(reason))

    @shielded
    def clear_media_buffer(self) -> None:
        """``clearMediaBuffer()``: drop the server's audio not yet played (barge-in)."""
        self.media.command("clear")

    def describe(self) -> str:
        row = self.media.row
        if len(row) >= 6:
            state, sent, received, buffered, encoding, rate = row[:6]
            return (f"{self.name} {self.url} {state} sent={sent} received={received} "
                    f"buffered={buffered * 20} ms {encoding}/{rate}")
        return f"{self.name} {self.url} {self.state}"
