"""The console service: line-delimited JSON over a Unix socket (and optionally TCP with a token).

Security (docs/console.md): the console is remote code execution by design.

- Unix socket ``DATA_DIR/console.sock``, created with mode 0600 (and a 0177
  umask while it is bound, so it is never reachable by others even briefly);
  each connection's peer uid is checked with SO_PEERCRED and anyone but the
  server's own user (or root) is refused and logged.
- TCP is off unless ``console_tcp`` is set; then every connection must send
  ``{"op": "hello", "token": ...}`` before anything else. The token comes from
  the config or is generated at start, logged, and written to
  ``DATA_DIR/console.token`` (mode 0600). Failed attempts are logged and the
  connection is closed.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import struct
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import protocol
from twisted.logger import Logger

from voxlab.config import parse_hostport
from voxlab.console.core import ConsoleConnection, ConsoleHub
from voxlab.console.protocol import LineDecoder, LineTooLong, ProtocolError, encode

log = Logger(namespace="voxlab.console")

DEFAULT_TCP_PORT = 5039       # next to asterisk's 5038 manager port


def peer_credentials(sock: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket, or None where unsupported."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", raw)


class ConsoleProtocol(protocol.Protocol):
    """Moves lines between a socket and a sans-IO :class:`ConsoleConnection`."""

    def __init__(self, hub: ConsoleHub, kind: str, allowed_uids: frozenset[int]) -> None:
        self.hub = hub
        self.kind = kind                  # "unix" or "tcp"
        self.allowed_uids = allowed_uids
        self.decoder = LineDecoder()
        self.connection: ConsoleConnection | None = None

    def connectionMade(self) -> None:
        if self.kind == "unix":
            creds = peer_credentials(self.transport.socket) if hasattr(self.transport, "socket") else None
            if creds is None:
                peer = "unix:?"
            else:
                pid, uid, gid = creds
                peer = f"unix:pid={pid},uid={uid}"
                if uid not in self.allowed_uids:
                    log.warn("console: refused connection from uid {uid} (pid {pid}): only uid "
                             "{allowed} may use the console", uid=uid, pid=pid,
                             allowed=" or ".join(str(u) for u in sorted(self.allowed_uids)))
                    self.transport.write(encode({"event": "refused", "error": (
                        f"uid {uid} may not use this console (only the server's user)")}))
                    self.transport.loseConnection()
                    return
            authenticated = True
        else:
            addr = self.transport.getPeer()
            peer = f"tcp:{addr.host}:{addr.port}"
            authenticated = False
        self.connection = ConsoleConnection(self.hub, self._send, close=self.transport.loseConnection,
                                            authenticated=authenticated, peer=peer)

    def _send(self, message: dict) -> None:
        self.transport.write(encode(message))

    def dataReceived(self, data: bytes) -> None:
        if self.connection is None:
            return
        for message in self.decoder.feed(data):
            if self.connection is None or self.connection.closed:
                return
            if isinstance(message, ProtocolError):
                self._send({"id": None, "ok": False, "error": f"bad request: {message}"})
                # Before authentication anything malformed ends the connection; after it, a
                # bad line is only answered, except an over-long one (its tail would follow as
                # garbage).
                if not self.connection.authenticated or isinstance(message, LineTooLong):
                    if self.connection.authenticated:
                        log.warn("console: closed the connection of {peer}: {why}",
                                 peer=self.connection.peer, why=str(message))
                    else:
                        log.warn("console: refused malformed request from {peer}", peer=self.connection.peer)
                    self.connection.close()
                    self.transport.loseConnection()
                    return
                continue
            self.connection.request(message)

    def connectionLost(self, reason: Any = None) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class ConsoleFactory(protocol.Factory):
    noisy = False

    def __init__(self, hub: ConsoleHub, kind: str, allowed_uids: frozenset[int]) -> None:
        self.hub = hub
        self.kind = kind
        self.allowed_uids = allowed_uids

    def buildProtocol(self, addr: Any) -> ConsoleProtocol:
        return ConsoleProtocol(self.hub, self.kind, self.allowed_uids)


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (mode 0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class ConsoleService(service.Service):
    """Serves the console protocol for one engine (add it to VoxlabService).

    Other transports of the same protocol (the web console's WebSocket) find it by name
    (``parent.getServiceNamed("console")``) and make a ``ConsoleConnection(service.hub, send,
    authenticated=False, peer=...)`` per client: the client then has to send the token."""

    name = "console"

    def __init__(self, engine: Any, config: Any, reactor: Any = None) -> None:
        if reactor is None:
            reactor = getattr(engine, "reactor", None)
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.engine = engine
        self.config = config
        self.reactor = reactor
        self.hub = ConsoleHub(engine)
        self.unix_port = None
        self.tcp_port = None
        self.token: str | None = None
        self.allowed_uids = frozenset({os.getuid(), 0})

    @property
    def socket_path(self) -> Path:
        return Path(self.config.console_socket)

    @property
    def token_path(self) -> Path:
        return Path(self.config.data_dir) / "console.token"

    def startService(self) -> None:
        super().startService()
        data_dir = Path(self.config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        tcp = getattr(self.config, "console_tcp", None)
        # The token exists whenever something besides the Unix socket may reach the console.
        self.token = getattr(self.config, "console_token", None) or secrets.token_urlsafe(24)
        self.hub.token = self.token
        self._listen_unix()
        if tcp:
            self._listen_tcp(tcp)

    def _listen_unix(self) -> None:
        path = self.socket_path
        if len(os.fsencode(path)) >= 108:
            log.error("console: socket path {path} is too long for a Unix socket (max 107 bytes); "
                      "use a shorter --data-dir", path=str(path))
            return
        if path.exists() or path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                    path.unlink(missing_ok=True)         # stale, from a server that died
                else:
                    log.error("console: cannot check existing {path}: {err}", path=str(path), err=exc)
                    return
            else:
                log.error("console: another voxlab serves {path} (same data dir?); console not started",
                          path=str(path))
                return
            finally:
                probe.close()
        previous = os.umask(0o177)
        try:
            self.unix_port = self.reactor.listenUNIX(
                str(path), ConsoleFactory(self.hub, "unix", self.allowed_uids), mode=0o600, wantPID=False)
        finally:
            os.umask(previous)
        os.chmod(path, 0o600)
        log.info("console: listening on {path} (mode 0600; attach with: voxlab attach --data-dir {data})",
                 path=str(path), data=str(self.config.data_dir))

    def _listen_tcp(self, spec: str) -> None:
        host, port = parse_hostport(spec, DEFAULT_TCP_PORT)
        self.tcp_port = self.reactor.listenTCP(port, ConsoleFactory(self.hub, "tcp", self.allowed_uids),
                                               interface=host)
        actual = self.tcp_port.getHost().port
        self.publish_token(f"TCP {host}:{actual}")

    def publish_token(self, where: str) -> str:
        """Log the token and write it to DATA_DIR/console.token (0600) for a listener that needs it
        (TCP here; the web console's WebSocket calls this too). Returns the token."""
        write_private_file(self.token_path, self.token + "\n")
        log.warn("console: ALSO listening on {where}; clients must send this token: {token} "
                 "(also in {path}, mode 0600)", where=where, token=self.token, path=str(self.token_path))
        return self.token

    def stopService(self):
        super().stopService()
        deferreds = []
        for port in (self.unix_port, self.tcp_port):
            if port is not None:
                d = port.stopListening()
                if d is not None:
                    deferreds.append(d)
        self.unix_port = self.tcp_port = None
        self.hub.close_connections()
        try:
            if self.token_path.exists() and self.token_path.read_text().strip() == self.token:
                self.token_path.unlink()
        except OSError:
            pass
        if deferreds:
            from twisted.internet.defer import DeferredList
            return DeferredList(deferreds)
        return None
