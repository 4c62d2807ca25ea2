"""The web console and the browser softphone on the HTTP port: the static page (``web/``)
at ``/console/`` and two WebSocket endpoints, ``/ws/console`` (the console protocol, one
JSON message per frame, served by the same :class:`~voxlab.console.core.ConsoleConnection`
as the Unix socket) and ``/ws/phone`` (softphone signalling, relayed to the WebRTC gateway
workers, docs/softphone.md).

Everything here is the console, i.e. remote code execution, so all of it needs the
console token: ``/console/?token=...`` (the URL logged at start) sets an HttpOnly,
SameSite=Strict cookie and redirects to the bare page; the page's assets and sockets need
that cookie (or ``?token=`` / ``Authorization: Bearer``). A WebSocket whose ``Origin`` is
not this server's page (another site's script in the user's browser) is refused, token or
not.

With ``[webrtc] phone_page = true`` there is one more page, ``/phone/``: the softphone
alone, for people who should make calls but not see the console. It needs no token, its
config carries no API token, and ``/ws/phone`` then admits a socket without the token
(still only from our page's Origin): what it can do is log in with a user's password,
which the registrar checks as it checks a SIP phone's.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, unquote, urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger
from twisted.web import resource, server, static

from voxlab import __version__
from voxlab.console.core import ConsoleConnection, ConsoleHub
from voxlab.console.protocol import MAX_LINE, ProtocolError, decode

log = Logger(namespace="voxlab.web")

COOKIE = "voxlab_console"       # the cookie's name is this and the port: cookies ignore ports
MAX_COOKIE_HEADER = 8192
PHONE_MAX_MESSAGE = 60000       # one AMP value to the gateway worker (64 KiB at most)


def cookie_name(port: int) -> str:
    """The token cookie of the server on ``port`` (two servers on one host keep theirs)."""
    return f"{COOKIE}_{port}"


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header, parsed by hand: the standard
    library's parser takes quadratic time on some inputs (before any token is checked,
    that would let anyone stall the reactor) and gives up on the first cookie of another
    application it cannot read."""
    if not header or len(header) > MAX_COOKIE_HEADER:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return unquote(value.strip().strip('"'))
    return None


def web_dir() -> Path:
    """The page's files: ``web/`` of the checkout (or an editable install), else installed data."""
    here = Path(__file__).resolve().parent.parent.parent / "web"
    if here.is_dir():
        return here
    import sys
    return Path(sys.prefix) / "share" / "voxlab" / "web"


class WebGate:
    """Who may use the web console: the token (cookie, ``token`` query parameter or bearer
    header) and, for WebSockets, an Origin that is this server's own page."""

    def __init__(self, token: Callable[[], str | None], origins: Callable[[], set[str]],
                 cookie: str = COOKIE) -> None:
        self._token = token
        self._origins = origins
        self.cookie = cookie

    def token_ok(self, candidate: str | None) -> bool:
        token = self._token()
        return bool(token and candidate) and hmac.compare_digest(candidate.encode(), token.encode())

    def presented(self, cookie_header: str | None, query_token: str | None,
                  authorization: str | None) -> bool:
        if query_token and self.token_ok(query_token):
            return True
        if authorization and authorization.lower().startswith("bearer ") and \
                self.token_ok(authorization[7:].strip()):
            return True
        return self.token_ok(cookie_value(cookie_header, self.cookie))

    def origin_ok(self, origin: str | None, host: str | None = None) -> bool:
        """An Origin header that names one of our pages, or the host the request was sent
        to (a server on a wildcard address or behind a name); none at all is a
        non-browser client (a script), which the token alone admits."""
        if origin is None or origin == "":
            return True
        mine = _normal(origin)
        if mine in self._origins():
            return True
        return bool(host) and mine in (_normal(f"http://{host}"), _normal(f"https://{host}"))

    def request_ok(self, request: server.Request) -> bool:
        cookie = request.getHeader(b"cookie")
        auth = request.getHeader(b"authorization")
        query = request.args.get(b"token", [b""])[0].decode("utf-8", "replace")
        return self.presented(cookie.decode("latin-1") if cookie else None, query,
                              auth.decode("latin-1") if auth else None)


def _normal(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port."""
    parts = urlsplit(origin.strip())
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and netloc.endswith(default):
        netloc = netloc[:-len(default)]
    return f"{scheme}://{netloc}"


def page_origins(host: str, port: int, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The origins of our own page: the HTTP address, its localhost spelling, and any the
    config adds (a reverse proxy's public address)."""
    hostpart = f"[{host}]" if ":" in host else host
    names = {f"http://{hostpart}:{port}", f"https://{hostpart}:{port}"}
    if host in ("127.0.0.1", "::1"):
        names |= {f"http://localhost:{port}", f"https://localhost:{port}"}
    return {_normal(n) for n in names} | {_normal(o.rstrip("/")) for o in extra}


class _Refused(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(403)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return (b"<!doctype html><title>voxlab: token needed</title><h1>403: the web console "
                b"needs its token</h1><p>Open the URL the server logged at start "
                b"(<code>/console/?token=...</code>); the token is also in "
                b"<code>DATA_DIR/console.token</code>.</p>\n")


class _Json(resource.Resource):
    isLeaf = True

    def __init__(self, make: Callable[[], dict]) -> None:
        super().__init__()
        self.make = make

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(self.make()).encode() + b"\n"


class _Pages(resource.Resource):
    """The page's files under one path, with the headers every page of ours gets."""

    base = b"/"

    def __init__(self, page_config: Callable[[], dict], folder: Path | None = None) -> None:
        super().__init__()
        self.files = static.File(str(folder or web_dir()))
        self.files.indexNames = ["index.html"]
        self.page_config = page_config

    def serve(self, path: bytes, request: server.Request) -> resource.Resource:
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Cache-Control", b"no-store")
        if path == b"config.json":
            return _Json(self.page_config)
        return self.files.getChildWithDefault(path, request)

    def render_GET(self, request: server.Request) -> bytes:      # the path without the slash
        request.redirect(self.base)
        return b""


class ConsolePages(_Pages):
    """``/console/``: the page and its modules, behind the token."""

    base = b"/console/"

    def __init__(self, gate: WebGate, page_config: Callable[[], dict], folder: Path | None = None) -> None:
        super().__init__(page_config, folder)
        self.gate = gate

    def getChildWithDefault(self, path: bytes, request: server.Request) -> resource.Resource:
        if not self.gate.request_ok(request):
            log.info("web console: refused {method} {path} from {peer} (no token)",
                     method=request.method.decode(), path=request.path.decode("utf-8", "replace"),
                     peer=request.getClientAddress().host)
            return _Refused()
        token = request.args.get(b"token", [b""])[0].decode("utf-8", "replace")
        if token and self.gate.token_ok(token):
            # Keep the token out of the address bar, history and Referer: a cookie from now on.
            request.addCookie(self.gate.cookie.encode(), quote(token, safe="").encode(), path=b"/",
                              httpOnly=True, sameSite="strict")
            return _Redirect(b"/console/")
        return self.serve(path, request)


class PhonePages(_Pages):
    """``/phone/``: the same files, open to anyone who can reach the port; the page sees
    where it is and shows the softphone alone. Its config.json has no API token."""

    base = b"/phone/"

    def getChildWithDefault(self, path: bytes, request: server.Request) -> resource.Resource:
        return self.serve(path, request)


class _Redirect(resource.Resource):
    isLeaf = True

    def __init__(self, to: bytes) -> None:
        super().__init__()
        self.to = to

    def render(self, request: server.Request) -> bytes:
        request.redirect(self.to)
        return b""


class _GatedProtocol(WebSocketServerProtocol):
    """A WebSocket that checks the Origin and the token in its opening handshake (the token
    not when the factory says ``token_needed = False``)."""

    gate: WebGate

    def onConnect(self, request: Any) -> None:
        headers = request.headers
        origin = headers.get("origin")
        if not self.factory.gate.origin_ok(origin, request.host):
            log.warn("web console: refused a WebSocket from {peer}: Origin {origin!r} is not this "
                     "server's page", peer=request.peer, origin=origin)
            raise ConnectionDeny(403, "wrong Origin")
        if self.factory.token_needed:
            token = (request.params.get("token") or [None])[0]
            if not self.factory.gate.presented(headers.get("cookie"), token,
                                               headers.get("authorization")):
                log.warn("web console: refused a WebSocket from {peer}: no token", peer=request.peer)
                raise ConnectionDeny(403, "token needed")
        self.peer_name = f"ws:{request.peer}"
        return None

    def send_json(self, message: dict) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(message, ensure_ascii=False, default=repr).encode())

    def decoded(self, payload: bytes, is_binary: bool) -> dict | None:
        try:
            if is_binary:
                raise ProtocolError("frames are JSON text")
            return decode(payload)
        except ProtocolError as exc:
            self.send_json({"id": None, "ok": False, "error": f"bad request: {exc}"})
            return None


class ConsoleSocket(_GatedProtocol):
    """``/ws/console``: one console client per socket."""

    connection: ConsoleConnection | None = None

    def onOpen(self) -> None:
        self.connection = ConsoleConnection(self.factory.hub, self.send_json,
                                            close=lambda: self.sendClose(1000),
                                            authenticated=True, peer=self.peer_name)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = self.decoded(payload, isBinary)
        if message is not None and self.connection is not None and not self.connection.closed:
            self.connection.request(message)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class PhoneSocket(_GatedProtocol):
    """``/ws/phone``: one browser softphone; its requests go to a WebRTC gateway worker."""

    client: Any = None

    def onOpen(self) -> None:
        pool = self.factory.pool
        if pool is not None:
            self.client = pool.open_client(self.send_json)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = self.decoded(payload, isBinary)
        if message is None:
            return
        rid = message.get("id")
        if self.client is None:
            self.send_json({"id": rid, "ok": False, "error": "WebRTC is off on this server "
                            "([webrtc] workers = 0)"})
            return
        d = self.client.request(message)
        d.addCallback(lambda reply: self.send_json({"id": rid, **reply}))
        d.addErrback(lambda f: self.send_json({"id": rid, "ok": False, "error": f.getErrorMessage()}))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _factory(protocol: type, gate: WebGate, max_message: int = MAX_LINE,
             **attrs: Any) -> WebSocketServerFactory:
    factory = WebSocketServerFactory()
    factory.protocol = protocol
    factory.gate = gate
    factory.token_needed = True
    for name, value in attrs.items():
        setattr(factory, name, value)
    # webStatus: a plain GET gets nothing (not autobahn's page) before the token check.
    factory.setProtocolOptions(maxMessagePayloadSize=max_message, maxFramePayloadSize=max_message,
                               autoPingInterval=20, autoPingTimeout=20, webStatus=False)
    return factory


def install(root: resource.Resource, gate: WebGate, hub: ConsoleHub, pool: Any,
            page_config: Callable[[], dict], phone_page: bool = False) -> None:
    """Put ``/console/``, ``/ws/console`` and ``/ws/phone`` under ``root``, and with
    ``phone_page`` the softphone-only ``/phone/``."""
    root.putChild(b"console", ConsolePages(gate, page_config))
    ws = resource.Resource()
    ws.putChild(b"console", WebSocketResource(_factory(ConsoleSocket, gate, hub=hub)))
    ws.putChild(b"phone", WebSocketResource(_factory(PhoneSocket, gate, PHONE_MAX_MESSAGE, pool=pool,
                                                     token_needed=not phone_page)))
    root.putChild(b"ws", ws)
    if phone_page:
        root.putChild(b"phone", PhonePages(lambda: phone_config(page_config())))


def version_config(api_token: str, sip: str) -> dict:
    return {"api_token": api_token, "version": __version__, "sip": sip}


def phone_config(console_config: dict) -> dict:
    """The phone page's config: the console page's without its API token."""
    return {key: value for key, value in console_config.items() if key != "api_token"} | {"page": "phone"}
