"""The HTTP service: one twisted.web Site on the HTTP port (127.0.0.1:8088 by default)
with the management API, session access URLs, /metrics, and the web console and
softphone (page and WebSockets, :mod:`voxlab.http.web`)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.logger import Logger
from twisted.web import resource, server

from voxlab import __version__
from voxlab.console.service import write_private_file
from voxlab.http.access import AccessResource
from voxlab.http.api import Api
from voxlab.http.jsonapi import JsonRouter
from voxlab.http.metrics import Metrics, MetricsResource
from voxlab.http import web

log = Logger()


def api_token(data_dir: Path, configured: str | None) -> str:
    """The API's bearer token: the config's, else ``DATA_DIR/api.token``, made (0600) at
    the first start and kept, so scripts keep working across restarts."""
    if configured:
        return configured
    path = Path(data_dir) / "api.token"
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(24)
        write_private_file(path, token + "\n")
    return token


class _Root(resource.Resource):
    """``/``: what is served here; any other unknown path gets a JSON 404."""

    def __init__(self, phone_page: bool = False) -> None:
        super().__init__()
        self.links = {"api": "/api/openapi.json", "metrics": "/metrics", "console": "/console/"}
        if phone_page:
            self.links["phone"] = "/phone/"

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        if path == b"":
            return self
        return _NotFound()

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"voxlab": __version__, **self.links}).encode() + b"\n"


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"error": f"no such resource: {request.path.decode('utf-8', 'replace')}"}).encode() + b"\n"


class HttpService(service.Service):
    """Listens on the HTTP port; ``port`` is the bound one once started."""

    def __init__(self, engine: Any, config: Any, reactor: Any, directory: Any = None) -> None:
        self.engine = engine
        self.config = config
        self.reactor = reactor
        self.directory = directory
        self.token: str | None = None
        self.port: int | None = None
        self._listening: Any = None
        self.metrics = Metrics(engine)
        engine.metrics = self.metrics
        self.webrtc: Any = None          # the WebRTC gateway pool, when the service runs one

    def _console(self) -> Any:
        return self.parent.getServiceNamed("console") if self.parent is not None else None

    def site(self) -> server.Site:
        router = JsonRouter(lambda: self.token, on_request=self.metrics.api_request)
        Api(self.engine, self.directory, self.config.data_dir).install(router)
        console = self._console()
        root = _Root(phone_page=console is not None and self.config.phone_page)
        root.putChild(b"api", router)
        root.putChild(b"request", AccessResource(self.engine))
        root.putChild(b"metrics", MetricsResource(self.metrics))
        if console is not None:
            gate = web.WebGate(lambda: console.token, lambda: web.page_origins(
                self.config.http_host, self.port or self.config.http_port, self.config.web_origins),
                web.cookie_name(self.config.http_port))
            web.install(root, gate, console.hub, self.webrtc, lambda: web.version_config(
                self.token or "", f"{self.config.sip_host}:{self.config.sip_port}"),
                phone_page=self.config.phone_page)
        site = server.Site(root)
        site.displayTracebacks = False
        return site

    def listen(self) -> None:
        """Bind the HTTP port (CannotListenError when it is taken); the service's start
        calls it right after SIP's, so a taken port stops the start-up at once."""
        self.token = api_token(self.config.data_dir, self.config.api_token)
        self._listening = self.reactor.listenTCP(self.config.http_port, self.site(),
                                                 interface=self.config.http_host)
        self.port = self._listening.getHost().port
        self.engine.http_base = f"http://{self.config.http_host}:{self.port}"
        log.info("HTTP API, access URLs and /metrics on {base} (token in {path})",
                 base=self.engine.http_base, path=str(Path(self.config.data_dir) / "api.token"))

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self.listen()
        console = self._console()
        if console is not None and console.token:
            url = f"{self.engine.http_base}/console/?token={console.token}"
            console.publish_token(f"the web console {self.engine.http_base}/console/")
            log.warn("web console and softphone: open {url}", url=url)
        if console is not None and self.config.phone_page:
            log.info("softphone for users (no console): {base}/phone/ ([webrtc] phone_page)",
                     base=self.engine.http_base)

    def stopService(self):
        super().stopService()
        if self._listening is not None:
            return self._listening.stopListening()
        return None
