"""A WebSocket server for tests of the WebSocket unit: it listens on 127.0.0.1 (a free
port, printed on stdout), reports the dominant frequency of the first second of audio it
receives (``{"event": "heard", "hz": ...}``), then streams 3 s of 500 Hz back as media
messages (all at once: voxlab's playout buffer must pace it), then a mark; other text
messages are echoed."""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import txaio

txaio.use_twisted()

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from twisted.internet import reactor  # noqa: E402

from voxlab.media.analysis import dominant_frequency  # noqa: E402
from voxlab.media.tones import sine  # noqa: E402


class ToneServer(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.pcm: list[np.ndarray] = []
        self.format = None
        self.replied = False

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            self.sendMessage(payload)       # plain text: echoed
            return
        event = message.get("event")
        if event == "start":
            self.format = message["start"]["mediaFormat"]
            self.sendMessage(json.dumps({"event": "started", "format": self.format}).encode())
        elif event == "media":
            raw = base64.b64decode(message["media"]["payload"])
            self.pcm.append(np.frombuffer(raw, "<i2"))
            got = np.concatenate(self.pcm)
            if not self.replied and len(got) >= self.format["sampleRate"] * 1.5:
                self.replied = True
                hz = dominant_frequency(got[-self.format["sampleRate"]:], self.format["sampleRate"])
                self.sendMessage(json.dumps({"event": "heard", "hz": round(hz)}).encode())
                tone = sine(500.0, 3.0, amplitude=0.3)
                for i in range(0, len(tone), 160):
                    chunk = tone[i:i + 160].astype("<i2").tobytes()
                    self.sendMessage(json.dumps({"event": "media", "media": {
                        "payload": base64.b64encode(chunk).decode()}}).encode())
                self.sendMessage(json.dumps({"event": "mark", "mark": {"name": "tone-end"}}).encode())
        elif event in ("mark", "stop"):
            self.sendMessage(json.dumps({"event": f"got-{event}", "body": message}).encode())
        else:
            self.sendMessage(payload)


def main() -> None:
    factory = WebSocketServerFactory()
    factory.protocol = ToneServer
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
