"""HTTP requests from scenario code: VoxEngine's ``Net.httpRequest`` on the reactor.

Scenario handlers run inside the server's reactor, so a request must never block
it. :class:`Net` (one per session) sends requests with treq and hands back an
:class:`HttpResult` for every request, whatever happened: an HTTP error status is
a result with a ``code``; no answer, a refused connection, an unknown host, a
timeout or a body that is too big is a result with an ``error``. Only mistakes in
the call itself (a bad URL or method) and the per-session caps raise, at once.

    net = Net(reactor)
    net.http_request("https://example.com/api", lambda r: print(r.code, r.text))
    result = yield net.http_request_async("https://example.com/api", "POST",
                                          {"Content-Type": "application/json"}, "{}")
"""

from __future__ import annotations

from email.message import Message
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

import treq
from twisted.internet import defer, error
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.client import (Agent, HTTPConnectionPool, ResponseDone, ResponseFailed,
                                ResponseNeverReceived)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from voxlab.engine.limits import LimitExceeded

__all__ = ["HttpResult", "Net", "METHODS"]

log = Logger()

#: the HTTP methods a scenario may use
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

# VoxEngine allows 3 requests in flight per session; the message says so only
# when that is the cap in force.
_VOXENGINE_CONCURRENT = 3

_CLOSED = "cancelled: the session ended"


class HttpResult:
    """What one HTTP request gave the scenario.

    ``code`` is the HTTP status (None when no response came); ``error`` is None
    whenever the whole response arrived, whatever its status (404 and 500
    included), else a readable reason ("timeout after 2.0 s", "connection
    refused", ...). A response whose body could not be read in full keeps its
    ``code`` and ``headers`` but has an ``error`` and no ``data``.
    ``text`` is ``data`` decoded with the Content-Type's charset, else as UTF-8
    (undecodable bytes replaced). ``headers`` has lower-cased names (the last
    value wins); ``raw_headers`` has every header, in order. ``elapsed`` is in
    seconds.
    """

    __slots__ = ("url", "method", "code", "data", "text", "headers", "raw_headers",
                 "error", "elapsed")

    def __init__(self, url: str, method: str = "GET", *, code: int | None = None,
                 data: bytes = b"", text: str | None = None,
                 headers: dict[str, str] | None = None,
                 raw_headers: list[tuple[str, str]] | None = None,
                 error: str | None = None, elapsed: float = 0.0) -> None:
        self.url = url
        self.method = method
        self.code = code
        self.data = data
        self.raw_headers = list(raw_headers or [])
        if headers is None:
            headers = {name.lower(): value for name, value in self.raw_headers}
        self.headers = headers
        self.text = text if text is not None else _decode(data, self.headers.get("content-type"))
        self.error = error
        self.elapsed = elapsed

    def __repr__(self) -> str:
        what = f"error={self.error!r}" if self.error is not None else "error=None"
        return (f"<HttpResult {self.method} {self.url} code={self.code} {what} "
                f"len={len(self.data)} elapsed={self.elapsed:.3f}s>")


def _decode(data: bytes, content_type: str | None) -> str:
    charset = None
    if content_type:
        msg = Message()
        msg["content-type"] = content_type
        charset = msg.get_content_charset()
    if charset:
        try:
            return data.decode(charset, errors="replace")
        except LookupError:             # a charset Python does not know
            pass
    return data.decode("utf-8", errors="replace")


def _header_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _check_url(url: Any) -> str:
    if not isinstance(url, str):
        raise TypeError(f"a URL is a string, not {type(url).__name__}")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError(f"bad URL {url!r}: it contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port            # raises for a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"bad URL {url!r}: only http:// and https:// URLs are supported")
    if not parts.hostname:
        raise ValueError(f"bad URL {url!r}: no host")
    return url


def _check_method(method: Any) -> str:
    if not isinstance(method, str):
        raise TypeError(f"an HTTP method is a string, not {type(method).__name__}")
    upper = method.upper()
    if upper not in METHODS:
        raise ValueError(f"bad HTTP method {method!r}: use one of {', '.join(METHODS)}")
    return upper


def _check_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Headers:
    out = Headers()
    if headers is None:
        return out
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    try:
        pairs = [tuple(pair) for pair in pairs]
    except TypeError:
        raise TypeError("headers are a dict of name -> value or a list of (name, value) pairs") \
            from None
    for pair in pairs:
        if len(pair) != 2:
            raise TypeError(f"a header is a (name, value) pair, not {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values are strings: {name!r}: {value!r}")
        if not name or any(ch in name for ch in ":\r\n\t ") or not name.isascii():
            raise ValueError(f"bad header name {name!r}")
        # A CR or LF in a value would let it start another header.
        if "\r" in value or "\n" in value:
            raise ValueError(f"bad value for header {name!r}: it contains a line break")
        out.addRawHeader(name.encode("ascii"), value.encode("utf-8"))
    return out


def _check_body(post_data: str | bytes | None) -> bytes | None:
    if post_data is None:
        return None
    if isinstance(post_data, str):
        return post_data.encode("utf-8")
    if isinstance(post_data, (bytes, bytearray, memoryview)):
        return bytes(post_data)
    raise TypeError(f"post_data is a str or bytes, not {type(post_data).__name__}")


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory: written at once. (treq would wrap bytes in a
    FileBodyProducer, which feeds them through a cooperator on the global reactor.)"""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred:
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def describe_failure(failure: Failure, url: str = "") -> str:
    """A network failure in words a scenario author can act on."""
    exc = failure.value
    if isinstance(exc, (ResponseFailed, ResponseNeverReceived)) and exc.reasons:
        reasons = [r for r in exc.reasons if not r.check(defer.CancelledError)] or exc.reasons
        inner = describe_failure(reasons[0], url)
        if isinstance(exc, ResponseNeverReceived) and reasons[0].check(error.ConnectionDone,
                                                                        error.ConnectionLost):
            return "the server closed the connection without answering"
        return inner
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.DNSLookupError):
        host = urlsplit(url).hostname if url else None
        return f"DNS lookup failed for host {host}" if host else f"DNS lookup failed: {exc}"
    if isinstance(exc, error.TimeoutError):
        return "timeout while connecting"
    if isinstance(exc, (error.ConnectionDone, error.ConnectionLost)):
        return "the server closed the connection before the response was complete"
    if isinstance(exc, error.ConnectError):
        os_error = getattr(exc, "osError", None)
        return f"cannot connect: {os_error or exc}"
    if isinstance(exc, defer.CancelledError):
        return "cancelled"
    if type(exc).__name__ == "SchemeNotSupported":
        return f"bad URL {url}: {exc}"
    if "SSL" in type(exc).__name__ or "TLS" in type(exc).__name__:
        return f"TLS error: {failure.getErrorMessage()}"
    text = failure.getErrorMessage()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Body(Protocol):
    """Collects a response body, giving up past the size limit."""

    def __init__(self, call: "_Call", limit: int, length: Any) -> None:
        self.call = call
        self.limit = limit
        self.length = length
        self.parts: list[bytes] = []
        self.size = 0
        self.stopped = False

    def connectionMade(self) -> None:
        if isinstance(self.length, int) and self.length > self.limit:
            # Said to be too big: read none of it.
            self.call._abort(f"response bigger than {self.limit} bytes")

    def dataReceived(self, data: bytes) -> None:
        if self.stopped:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.call._abort(f"response bigger than {self.limit} bytes")
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:   # type: ignore[assignment]
        if self.stopped:
            return
        self.stopped = True
        if reason is None or reason.check(ResponseDone, http.PotentialDataLoss):
            # PotentialDataLoss: no Content-Length, the server closed to end the body.
            self.call._body_done(b"".join(self.parts))
        else:
            self.call._failed(reason)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.parts.clear()
        if self.transport is not None:
            self.transport.stopProducing()


class _Call:
    """One request in flight: owns its timer, its treq Deferred and its body reader."""

    def __init__(self, net: "Net", url: str, method: str, headers: Headers,
                 body: bytes | None, timeout: float) -> None:
        self.net = net
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.deferred: defer.Deferred = defer.Deferred(lambda d: self._abort("cancelled"))
        self.done = False
        self._request: defer.Deferred | None = None
        self._body: _Body | None = None
        self._timer: Any = None
        self._response: Any = None
        self._started = 0.0

    def start(self) -> None:
        reactor = self.net.reactor
        self._started = reactor.seconds()
        d = treq.request(self.method, self.url, agent=self.net._agent,
                         headers=self.headers,
                         data=_BytesProducer(self.body) if self.body is not None else None,
                         unbuffered=True, reactor=reactor)
        self._request = d
        self._timer = reactor.callLater(self.timeout, self._abort,
                                        f"timeout after {self.timeout} s")
        d.addCallbacks(self._got_response, self._failed)
        d.addErrback(self._bug)

    def _got_response(self, response: Any) -> None:
        self._request = None
        if self.done:
            return
        self._response = response
        self._body = _Body(self, self.net.max_body, response.length)
        response.deliverBody(self._body)

    def _body_done(self, data: bytes) -> None:
        self._body = None
        if not self.done:
            self._finish(None, data)

    def _failed(self, failure: Failure) -> None:
        self._request = None
        self._body = None
        if not self.done:
            self._finish(describe_failure(failure, self.url))

    def _bug(self, failure: Failure) -> None:
        log.failure("HTTP request {method} {url} failed inside voxlab", failure,
                    method=self.method, url=self.url)
        if not self.done:
            self._finish(f"internal error: {failure.getErrorMessage()}")

    def _abort(self, why: str) -> None:
        """End the request now with the error ``why``, dropping its connection."""
        if self.done:
            return
        self._settle()         # first: what the cancellations below report is ignored
        request, body = self._request, self._body
        self._request = self._body = None
        if request is not None:
            request.cancel()
        if body is not None:
            body.stop()
        self._fire(why)

    def _finish(self, why: str | None, data: bytes = b"") -> None:
        self._settle()
        self._fire(why, data)

    def _settle(self) -> None:
        """No longer in flight: the timer cancelled, the slot given back."""
        self.done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.net._calls.discard(self)

    def _fire(self, why: str | None, data: bytes = b"") -> None:
        response = self._response
        self._response = None
        code = None
        raw: list[tuple[str, str]] = []
        if response is not None:
            code = response.code
            for name, values in response.headers.getAllRawHeaders():
                for value in values:
                    raw.append((_header_text(name), _header_text(value)))
            # Twisted keeps Content-Length out of the headers (it is response.length);
            # a scenario expects to see it like any other header. (For 204 and 304
            # Twisted says 0 whatever was sent; HEAD keeps the header as sent.)
            if isinstance(response.length, int) and code not in (204, 304) and \
                    not response.headers.hasHeader(b"content-length"):
                raw.append(("Content-Length", str(response.length)))
        result = HttpResult(self.url, self.method, code=code,
                            data=data if why is None else b"", raw_headers=raw, error=why,
                            elapsed=max(0.0, self.net.reactor.seconds() - self._started))
        if self.net.on_request is not None:
            try:
                self.net.on_request(self.url, self.method, result)
            except Exception:
                log.failure("on_request hook failed for {url}", url=self.url)
        self.deferred.callback(result)


class Net:
    """The HTTP client of one session: VoxEngine's ``Net.httpRequest``, never blocking.

    At most ``max_concurrent`` requests may be in flight at once and ``max_total``
    made over the session's life; the next one raises :class:`LimitExceeded`. Each
    request has ``timeout`` seconds (``default_timeout`` when not given) for the
    whole exchange, body included; bodies past ``max_body`` bytes are cut off.
    ``on_request(url, method, result)`` is called after every request (logging,
    metrics). ``agent`` replaces the default ``twisted.web.client.Agent``.
    """

    def __init__(self, reactor: Any = None, *, max_concurrent: int = 3, max_total: int = 35,
                 default_timeout: float = 90.0, max_body: int = 10 * 1024 * 1024,
                 agent: Any = None,
                 on_request: Callable[[str, str, HttpResult], Any] | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        if max_concurrent < 1 or max_total < 1 or max_body < 0 or default_timeout <= 0:
            raise ValueError("the HTTP limits must be positive")
        self.reactor = reactor
        self.max_concurrent = max_concurrent
        self.max_total = max_total
        self.default_timeout = float(default_timeout)
        self.max_body = max_body
        self.on_request = on_request
        #: runs ``fn(result)`` for :meth:`http_request`; the server replaces it to run
        #: scenario callbacks under its handler time budget.
        self.deliver: Callable[[Callable[[HttpResult], Any], HttpResult], Any] = \
            lambda fn, result: fn(result)
        self._pool: HTTPConnectionPool | None = None
        if agent is None:
            # Not persistent: every connection closes with its response, so nothing
            # lingers once a request is over.
            self._pool = HTTPConnectionPool(reactor, persistent=False)
            agent = Agent(reactor, pool=self._pool)
        self._agent = agent
        self._calls: set[_Call] = set()
        self._total = 0
        self._closed = False

    def pending(self) -> list[defer.Deferred]:
        """The Deferreds of the requests still in flight (they fire with their results)."""
        return [call.deferred for call in self._calls]

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet finished."""
        return len(self._calls)

    @property
    def total(self) -> int:
        """Requests made so far (all of them count toward ``max_total``)."""
        return self._total

    def http_request_async(self, url: str, method: str = "GET",
                           headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                           post_data: str | bytes | None = None,
                           timeout: float | None = None) -> defer.Deferred:
        """Send a request; a Deferred that fires with its :class:`HttpResult`.

        The Deferred never errbacks: network and HTTP problems are results with
        an ``error``; cancelling it ends the request with error "cancelled".
        ``headers`` is a dict or a list of (name, value) pairs; ``post_data`` a str
        (sent as UTF-8) or bytes. Raises at once: ValueError for a URL that is not
        http(s) or a method not in :data:`METHODS`, :class:`LimitExceeded` past the
        caps, RuntimeError once the session has ended.
        """
        url = _check_url(url)
        method = _check_method(method)
        hdrs = _check_headers(headers)
        body = _check_body(post_data)
        if timeout is None:
            timeout = self.default_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"the timeout is a number of seconds above 0, not {timeout!r}")
        if self._closed:
            raise RuntimeError("the session has ended: no more HTTP requests")
        if self._total >= self.max_total:
            raise LimitExceeded(f"at most {self.max_total} HTTP requests per session")
        if len(self._calls) >= self.max_concurrent:
            why = " (VoxEngine's limit)" if self.max_concurrent == _VOXENGINE_CONCURRENT else ""
            raise LimitExceeded(
                f"at most {self.max_concurrent} HTTP requests at once per session{why}")
        call = _Call(self, url, method, hdrs, body, float(timeout))
        self._total += 1
        self._calls.add(call)
        try:
            call.start()
        except Exception as exc:        # a URL treq cannot even parse
            call._settle()
            self._total -= 1
            raise ValueError(f"bad URL {url!r}: {exc}") from exc
        return call.deferred

    def http_request(self, url: str, callback: Callable[[HttpResult], Any], method: str = "GET",
                     headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                     post_data: str | bytes | None = None,
                     timeout: float | None = None) -> None:
        """Send a request; ``callback(result)`` gets its :class:`HttpResult`, through
        :attr:`deliver`. Raises at once as :meth:`http_request_async` does."""
        if not callable(callback):
            raise TypeError(f"the callback must be callable, not {type(callback).__name__}")
        d = self.http_request_async(url, method, headers, post_data, timeout)
        d.addCallback(lambda result: self.deliver(callback, result))
        # What the callback raised belongs to deliver; if it let it through, log it
        # rather than leave an unhandled error in a Deferred nobody holds.
        d.addErrback(lambda failure: log.failure(
            "callback of HTTP request {url} failed", failure, url=url))

    def close(self) -> defer.Deferred:
        """End the session's HTTP: requests in flight fire with error "cancelled: the
        session ended", later requests raise RuntimeError. Fires when done."""
        self._closed = True
        for call in list(self._calls):
            call._abort(_CLOSED)        # fires its Deferred at once
        if self._pool is not None:
            return self._pool.closeCachedConnections()
        return defer.succeed(None)
