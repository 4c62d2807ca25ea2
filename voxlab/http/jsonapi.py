"""A small JSON request router for twisted.web: routes by method and path pattern, bearer
token check, JSON errors (never a traceback page), Deferred results."""

from __future__ import annotations

import hmac
import json
import re
from typing import Any, Callable
from urllib.parse import unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

log = Logger()


class ApiError(Exception):
    """An error the client gets as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[..., Any]


class JsonRouter(resource.Resource):
    """One leaf resource serving a table of routes: ``(method, pattern, handler, open)``.
    A handler gets ``(request, **path_params)`` and returns a JSON-able value, ``(status,
    value)``, bytes already rendered by itself (None after it wrote the request), or a
    Deferred of one of those."""

    isLeaf = True

    def __init__(self, token: Callable[[], str | None], on_request: Callable[[str, int], None] | None = None) -> None:
        super().__init__()
        self._token = token
        self._routes: list[tuple[str, re.Pattern[str], Handler, bool, str]] = []
        self._on_request = on_request

    def route(self, method: str, pattern: str, handler: Handler, open: bool = False) -> None:
        """``pattern`` like ``/api/sessions/{id}`` (a parameter is one path segment)."""
        rx = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self._routes.append((method, rx, handler, open, pattern))

    def routes(self) -> list[tuple[str, str]]:
        """(method, pattern) of every route, for the OpenAPI document's check."""
        return [(m, p) for m, _, _, _, p in self._routes]

    def render(self, request: server.Request) -> Any:
        path = request.path.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        matched = [(m, rx.match(path), h, o, p) for m, rx, h, o, p in self._routes]
        matched = [r for r in matched if r[1] is not None]
        if not matched:
            # One label for every unknown path: anyone may send them, the metrics must not grow.
            return self._error(request, ApiError(404, f"no such resource: {path}"), "<unmatched>")
        for m, match, handler, open_, pattern in matched:
            if m == method or (method == "HEAD" and m == "GET"):
                break
        else:
            allowed = ", ".join(sorted({m for m, *_ in matched}))
            request.setHeader(b"Allow", allowed.encode())
            return self._error(request, ApiError(405, f"{method} is not allowed here (only {allowed})"),
                               pattern)
        if not open_ and not self._authorised(request):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="voxlab"')
            return self._error(request, ApiError(401, "a valid token is needed: "
                                                 "Authorization: Bearer <DATA_DIR/api.token>"), pattern)
        try:
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            result = handler(request, **params)
        except ApiError as exc:
            return self._error(request, exc, pattern)
        except Exception:
            log.failure("HTTP API {method} {path} failed", method=method, path=path)
            return self._error(request, ApiError(500, "internal error (see the server log)"), pattern)
        if isinstance(result, defer.Deferred):
            result.addCallbacks(lambda r: self._finish(request, r, pattern),
                                lambda f: self._failed(request, f, pattern))
            return server.NOT_DONE_YET
        return self._write(request, result, pattern)

    def _authorised(self, request: server.Request) -> bool:
        expected = self._token()
        given = (request.getHeader("authorization") or "")
        if not expected or not given.lower().startswith("bearer "):
            return False
        return hmac.compare_digest(given[7:].strip().encode(), expected.encode())

    def _write(self, request: server.Request, result: Any, pattern: str) -> Any:
        if result is server.NOT_DONE_YET:
            self._count(pattern, 200)       # a file being streamed (its status is its own)
            return result
        status, body = (result if isinstance(result, tuple) and len(result) == 2
                        and isinstance(result[0], int) else (200, result))
        request.setResponseCode(status)
        self._count(pattern, status)
        if isinstance(body, bytes):
            return body
        request.setHeader(b"Content-Type", b"application/json")
        return (json.dumps(body, indent=1, default=str) + "\n").encode("utf-8")

    def _finish(self, request: server.Request, result: Any, pattern: str) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        body = self._write(request, result, pattern)
        if body is not server.NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _failed(self, request: server.Request, failure: Failure, pattern: str) -> None:
        exc = failure.value
        if not isinstance(exc, ApiError):
            log.failure("HTTP API {path} failed", failure, path=pattern)
            exc = ApiError(500, "internal error (see the server log)")
        if not request.finished and not getattr(request, "_disconnected", False):
            request.write(self._error(request, exc, pattern))
            request.finish()

    def _error(self, request: server.Request, exc: ApiError, pattern: str) -> bytes:
        request.setResponseCode(exc.status)
        request.setHeader(b"Content-Type", b"application/json")
        self._count(pattern, exc.status)
        return (json.dumps({"error": exc.message}) + "\n").encode("utf-8")

    def _count(self, pattern: str, status: int) -> None:
        if self._on_request is not None:
            self._on_request(pattern, status)


def json_body(request: server.Request, required: bool = True) -> dict:
    """The request's JSON object; 400 for anything else."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON object is needed in the request body")
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return value


def query(request: server.Request, name: str) -> str | None:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None
