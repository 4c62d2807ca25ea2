"""Console clients: a blocking one (``voxlab sessions``/``hangup``/``logs``, tests, scripts) and an
asyncio one (``voxlab attach``, which runs on prompt_toolkit's event loop)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from voxlab.console.protocol import LineDecoder, ProtocolError, encode


class ConsoleClientError(Exception):
    """The server answered ``ok: false`` (``.reply`` has the whole answer), refused us, or went away."""

    def __init__(self, message: str, reply: dict | None = None) -> None:
        super().__init__(message)
        self.reply = reply or {}


@dataclass
class Endpoint:
    """Where the console is: a Unix socket path, or TCP host/port with a token."""

    socket_path: Path | None = None
    host: str | None = None
    port: int | None = None
    token: str | None = None

    def describe(self) -> str:
        return str(self.socket_path) if self.socket_path else f"tcp:{self.host}:{self.port}"


def _refused_message(endpoint: Endpoint, exc: OSError) -> str:
    where = endpoint.describe()
    if isinstance(exc, PermissionError):
        return (f"permission denied on {where}: the console socket belongs to another user "
                "(run as the server's user)")
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
        return f"no voxlab console at {where} (is the server running with this --data-dir?)"
    return f"cannot connect to {where}: {exc}"


class ConsoleClient:
    """Blocking client: ``request(op, **fields)`` returns the reply; pushed events are queued."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.sock.settimeout(timeout)
        self.decoder = LineDecoder()
        self.events: collections.deque[dict] = collections.deque()
        self.history: list[dict] = []          # every event received, in order (for wait_event)
        self._replies: dict[Any, dict] = {}
        self._ids = itertools.count(1)
        self.closed = False

    @classmethod
    def connect(cls, endpoint: Endpoint, timeout: float = 10.0) -> "ConsoleClient":
        try:
            if endpoint.socket_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(str(endpoint.socket_path))
            else:
                sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        except OSError as exc:
            raise ConsoleClientError(_refused_message(endpoint, exc)) from None
        client = cls(sock, timeout)
        client.request("hello", **({"token": endpoint.token} if endpoint.token is not None else {}),
                       client="voxlab-cli")
        return client

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self) -> "ConsoleClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, message: dict) -> None:
        self.sock.sendall(encode(message))

    def _read(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer from the voxlab console")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no answer from the voxlab console") from None
        except OSError as exc:
            raise ConsoleClientError(f"connection to the console lost: {exc}") from None
        if not data:
            self.closed = True
            raise ConsoleClientError("the console closed the connection")
        for message in self.decoder.feed(data):
            if isinstance(message, ProtocolError):
                continue
            if "event" in message:
                self.history.append(message)
                self.events.append(message)
                if message["event"] == "refused":
                    raise ConsoleClientError(f"refused: {message.get('error')}", message)
            else:
                self._replies[message.get("id")] = message

    def start(self, op: str, **fields: Any) -> int:
        """Send a request without waiting; ``reply(id)`` collects the answer later."""
        rid = next(self._ids)
        try:
            self.send({"id": rid, "op": op, **fields})
        except OSError as exc:
            self._salvage()         # the server may have said why it closed: raise that instead
            raise ConsoleClientError(f"connection to the console lost: {exc}") from None
        return rid

    def _salvage(self) -> None:
        """After a failed send: read what the server sent before closing (e.g. a 'refused' event)."""
        deadline = time.monotonic() + 1.0
        try:
            while True:
                self._read(deadline)
        except (TimeoutError, ConsoleClientError) as exc:
            if isinstance(exc, ConsoleClientError) and exc.reply.get("event") == "refused":
                raise

    def reply(self, rid: int, timeout: float | None = None, check: bool = True) -> dict:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while rid not in self._replies:
            self._read(deadline)
        reply = self._replies.pop(rid)
        if check and not reply.get("ok"):
            raise ConsoleClientError(reply.get("error") or "request failed", reply)
        return reply

    def request(self, op: str, timeout: float | None = None, check: bool = True, **fields: Any) -> dict:
        return self.reply(self.start(op, **fields), timeout=timeout, check=check)

    def wait_event(self, match: Callable[[dict], bool], timeout: float | None = None,
                   since: int = 0) -> dict:
        """The first event (in ``history``, from index ``since``) for which ``match`` is true;
        reads until it arrives or ``timeout`` expires (TimeoutError)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        checked = since
        while True:
            while checked < len(self.history):
                event = self.history[checked]
                checked += 1
                if match(event):
                    return event
            self._read(deadline)

    def next_event(self, timeout: float | None = None,
                   match: Callable[[dict], bool] | None = None) -> dict:
        """The next pushed event (for which ``match`` is true, others are dropped)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            while self.events:
                event = self.events.popleft()
                if match is None or match(event):
                    return event
            self._read(deadline)


class AsyncConsoleClient:
    """asyncio client: ``await request(op, ...)``; events go to ``on_event``; ``on_close`` when it ends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = LineDecoder()
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self.on_event: Callable[[dict], None] = lambda event: None
        self.on_close: Callable[[str], None] = lambda why: None
        self.closed = False
        self._task: asyncio.Task | None = None

    @classmethod
    async def connect(cls, endpoint: Endpoint, timeout: float = 10.0) -> "AsyncConsoleClient":
        try:
            if endpoint.socket_path is not None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(str(endpoint.socket_path), limit=2 ** 24), timeout)
            else:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(endpoint.host, endpoint.port, limit=2 ** 24), timeout)
        except OSError as exc:
            raise ConsoleClientError(_refused_message(endpoint, exc)) from None
        client = cls(reader, writer)
        client._task = asyncio.ensure_future(client._read_loop())
        await asyncio.wait_for(client.request(
            "hello", client="voxlab-attach", **({"token": endpoint.token} if endpoint.token else {})), timeout)
        return client

    async def _read_loop(self) -> None:
        why = "the console closed the connection (did the server stop?)"
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for message in self.decoder.feed(data):
                    if isinstance(message, ProtocolError):
                        continue
                    if "event" in message:
                        if message["event"] == "refused":
                            why = f"refused: {message.get('error')}"
                            continue
                        try:
                            self.on_event(message)
                        except Exception:       # a display bug must not kill the connection
                            pass
                    else:
                        future = self._pending.pop(message.get("id"), None)
                        if future is not None and not future.done():
                            future.set_result(message)
        except (OSError, asyncio.IncompleteReadError) as exc:
            why = f"connection to the console lost: {exc}"
        except asyncio.CancelledError:
            why = "closed"
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConsoleClientError(why))
        self._pending.clear()
        if why != "closed":
            self.on_close(why)

    async def request(self, op: str, check: bool = True, **fields: Any) -> dict:
        if self.closed:
            raise ConsoleClientError("not connected to the console")
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self.writer.write(encode({"id": rid, "op": op, **fields}))
        reply = await future
        if check and not reply.get("ok"):
            raise ConsoleClientError(reply.get("error") or "request failed", reply)
        return reply

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        try:
            self.writer.close()
        except Exception:
            pass


def endpoint_from_args(data_dir: str | os.PathLike | None = None, socket_path: str | None = None,
                       tcp: str | None = None, token: str | None = None) -> Endpoint:
    """The endpoint for the command-line options: --tcp wins, then --socket, then --data-dir."""
    if tcp:
        from voxlab.config import parse_hostport
        from voxlab.console.service import DEFAULT_TCP_PORT
        host, port = parse_hostport(tcp, DEFAULT_TCP_PORT)
        return Endpoint(host=host, port=port, token=token if token is not None
                        else os.environ.get("VOXLAB_CONSOLE_TOKEN"))
    if socket_path:
        return Endpoint(socket_path=Path(socket_path))
    if data_dir is None:
        from voxlab.config import default_data_dir
        data_dir = default_data_dir()
    return Endpoint(socket_path=Path(data_dir) / "console.sock")
