"""The console wire format: one JSON object per line (UTF-8, ``\\n``-terminated).

Sans-IO: :class:`LineDecoder` turns received bytes into decoded messages and
:func:`encode` turns a message into the bytes of one line. Transports (the
Unix/TCP console service, the WebSocket of the web console, the clients) only
move those bytes. See docs/console.md for every op and event.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

PROTOCOL_VERSION = 1
MAX_LINE = 4 * 1024 * 1024      # a request line longer than this is refused (and the connection closed)


class ProtocolError(Exception):
    """A line that is not a JSON object, or one that is too long."""


class LineTooLong(ProtocolError):
    """A line longer than the limit. The rest of it would arrive as garbage lines, so the
    transport answers once and closes the connection (whoever sent it)."""


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line of JSON (non-ASCII kept as UTF-8; never contains a raw newline)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=repr).encode() + b"\n"


def decode(line: bytes | str) -> dict[str, Any]:
    """One line back into a message; raises ProtocolError if it is not a JSON object."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("each line must be a JSON object")
    return message


class LineDecoder:
    """Accumulates bytes; yields one message (or ProtocolError instance) per complete line."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self.max_line = max_line

    def feed(self, data: bytes) -> Iterator[dict[str, Any] | ProtocolError]:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line:
                    self._buffer.clear()
                    yield LineTooLong(f"line longer than {self.max_line} bytes")
                return
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if not line.strip():
                continue
            try:
                yield decode(line)
            except ProtocolError as exc:
                yield exc
