"""Session access URLs: ``/request/<session>/<secret>[/more]``. Any request there becomes
``AppEvents.HttpRequest`` in that live session; the scenario's reply is the response. A
wrong secret or an ended session gets 404 (the same answer, so ids cannot be probed)."""

from __future__ import annotations

import hmac
from typing import Any

from twisted.web import resource, server

MAX_BODY = 1024 * 1024


class AccessResource(resource.Resource):
    """Everything under ``/request/``."""

    isLeaf = True

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self.engine = engine

    def render(self, request: server.Request) -> Any:
        parts = request.postpath
        session = self.engine.sessions.get(parts[0].decode("utf-8", "replace")) if parts else None
        secret = parts[1] if len(parts) > 1 else b""
        if session is None or not hmac.compare_digest(secret, session.secret.encode()):
            return _plain(request, 404, "no such session (it has ended, or the URL is wrong)\n")
        content = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(content) > MAX_BODY:
            return _plain(request, 413, f"at most {MAX_BODY} bytes\n")
        rest = "/" + "/".join(p.decode("utf-8", "replace") for p in parts[2:])
        query = request.uri.split(b"?", 1)
        path = rest + ("?" + query[1].decode("utf-8", "replace") if len(query) > 1 else "")
        headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                   for k, v in request.requestHeaders.getAllRawHeaders()}
        d = session.http_request(request.method.decode("ascii", "replace"), path, headers, content)

        def reply(outcome: tuple) -> None:
            if request.finished or getattr(request, "_disconnected", False):
                return
            status, extra, body = outcome
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"application/octet-stream")
            for name, value in extra.items():
                request.setHeader(str(name).encode("latin-1"), str(value).encode("latin-1"))
            request.write(body)
            request.finish()

        d.addCallback(reply)
        return server.NOT_DONE_YET


def _plain(request: server.Request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")
