"""URL segments for players: an ``http(s)://`` WAV fetched by the media worker.

The GET runs on the worker's reactor (``twisted.web.client.Agent``, following
up to 5 redirects), never blocking it: the server has :data:`TIMEOUT` seconds
to answer and then as long again between two pieces of the body, and a body
past :data:`MAX_BYTES` is cut off. The WAV (PCM 8/16/24/32-bit, float, μ-law
or A-law, any rate and channel count) is decoded and resampled to 8 kHz in
the worker's thread pool. MP3 is not supported (no decoder is a dependency):
such a URL fails with a message that says so.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from twisted.internet import defer, error, protocol
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.client import Agent, RedirectAgent, ResponseDone, ResponseFailed
from twisted.web.http_headers import Headers

from voxlab.media.graph import SAMPLE_RATE
from voxlab.media.player import Source
from voxlab.media.wav import read_wav

__all__ = ["UrlSource", "TIMEOUT", "MAX_BYTES", "describe_failure"]

#: seconds for the server to answer, and between two pieces of the body
TIMEOUT = 10.0
#: the largest body read (bytes): 50 MiB, about 55 minutes of 8 kHz 16-bit mono
MAX_BYTES = 50 * 1024 * 1024
_REDIRECTS = 5


class _Named(io.BytesIO):
    """The body, named by its URL in read_wav's messages."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _TooBig(Exception):
    pass


class _Idle(Exception):
    pass


class _Body(protocol.Protocol):
    """Collects the body, stopping past the size limit or when the server goes quiet."""

    def __init__(self, source: "UrlSource", done: defer.Deferred) -> None:
        self.source = source
        self.done = done
        self.parts: list[bytes] = []
        self.size = 0
        self.timer: Any = None
        self.failed = False

    def connectionMade(self) -> None:
        self._arm()

    def _arm(self) -> None:
        reactor = self.source.ctx.reactor
        if self.timer is not None and self.timer.active():
            self.timer.reset(TIMEOUT)
        else:
            self.timer = reactor.callLater(TIMEOUT, self._give_up, _Idle())

    def dataReceived(self, data: bytes) -> None:
        if self.failed:
            return
        self.size += len(data)
        if self.size > MAX_BYTES:
            self._give_up(_TooBig())
            return
        self.parts.append(data)
        self._arm()

    def _give_up(self, why: Exception) -> None:
        if self.failed:
            return
        self.failed = True
        self.parts.clear()
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.transport.stopProducing()
        if not self.done.called:
            self.done.errback(Failure(why))

    def connectionLost(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.done.called:
            return
        if reason.check(ResponseDone) or reason.check(http.PotentialDataLoss):
            # PotentialDataLoss: no Content-Length, the server closed to end the body.
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)

    def stop(self) -> None:
        self._give_up(defer.CancelledError())


def describe_failure(failure: Failure) -> str:
    """What went wrong, in words a scenario author can act on."""
    exc = failure.value
    if isinstance(exc, ResponseFailed) and exc.reasons:
        return describe_failure(exc.reasons[0])
    if isinstance(exc, _TooBig):
        limit = MAX_BYTES
        return f"bigger than {limit / 2**20:g} MB" if limit % 2**20 == 0 else f"bigger than {limit} bytes"
    if isinstance(exc, _Idle):
        return f"the server sent nothing for {TIMEOUT:g} s"
    if isinstance(exc, (defer.CancelledError, error.TimeoutError, defer.TimeoutError)):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.DNSLookupError):
        return "unknown host"
    if isinstance(exc, error.ConnectError):
        return f"cannot connect: {exc.osError or exc}" if getattr(exc, "osError", None) else \
            f"cannot connect: {exc}"
    if exc.__class__.__name__ == "SchemeNotSupported":
        return f"unsupported URL: {exc}"
    text = failure.getErrorMessage()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _looks_mp3(data: bytes, content_type: str) -> bool:
    return (data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
            or content_type.split(";")[0].strip().lower() in ("audio/mpeg", "audio/mp3"))


class UrlSource(Source):
    """A player segment ``{"type": "url", "url": "http://host/prompt.wav"}``: fetched and
    decoded once the player is made; playback starts when the whole file is there."""

    def __init__(self, ctx: Any, url: str) -> None:
        super().__init__(ctx)
        if not isinstance(url, str):
            raise TypeError(f"a URL is a string, not {type(url).__name__}")
        self.url = url
        self._request: defer.Deferred | None = None
        self._body: _Body | None = None
        self._timer: Any = None
        self._stopped = False
        self._timed_out = False

    def start(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            self._failed("not an http(s) URL")
            return
        reactor = self.ctx.reactor
        agent = RedirectAgent(Agent(reactor, connectTimeout=TIMEOUT), redirectLimit=_REDIRECTS)
        try:
            d = agent.request(b"GET", self.url.encode("utf-8"),
                              Headers({b"User-Agent": [b"voxlab"], b"Accept": [b"audio/wav, audio/*"]}))
        except Exception as exc:       # a URL the agent cannot even parse
            self._failed(f"bad URL: {exc}")
            return
        self._request = d
        self._timer = reactor.callLater(TIMEOUT, self._no_answer, d)
        d.addCallback(self._response)
        d.addCallback(self._got_body)
        d.addErrback(self._error)

    def _no_answer(self, d: defer.Deferred) -> None:
        self._timer = None
        self._timed_out = True
        d.cancel()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _response(self, response: Any) -> defer.Deferred:
        self._cancel_timer()
        self._request = None
        if response.code != 200:
            known = http.RESPONSES.get(response.code)
            phrase = (known or response.phrase or b"").decode("latin-1", "replace")
            response.deliverBody(protocol.Protocol())      # discard the error page
            raise _Status(f"{response.code} {phrase}".strip())
        length = response.length
        if isinstance(length, int) and length > MAX_BYTES:
            response.deliverBody(protocol.Protocol())
            raise _TooBig()
        types = response.headers.getRawHeaders(b"content-type") or [b""]
        self._content_type = types[0].decode("latin-1", "replace")
        done: defer.Deferred = defer.Deferred()
        self._body = _Body(self, done)
        response.deliverBody(self._body)
        return done

    def _got_body(self, data: bytes) -> defer.Deferred | None:
        self._body = None
        if self._stopped:
            return None
        if _looks_mp3(data, getattr(self, "_content_type", "")):
            self._failed("MP3 is not supported (only WAV files)")
            return None
        if data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
            what = getattr(self, "_content_type", "") or "unknown type"
            self._failed(f"not a WAV file ({len(data)} bytes of {what})")
            return None
        d = self.ctx.in_thread(read_wav, _Named(data, self.url), SAMPLE_RATE)
        d.addCallbacks(self._decoded, lambda f: self._failed(f"bad WAV file: {f.getErrorMessage()}"))
        return None

    def _decoded(self, pcm: np.ndarray) -> None:
        if self._stopped:
            return
        self.feed(pcm)
        self.finish()

    def _error(self, failure: Failure) -> None:
        self._cancel_timer()
        if self._stopped:
            return
        if failure.check(_Status):
            self._failed(str(failure.value))
        elif self._timed_out:
            self._failed(f"no answer within {TIMEOUT:g} s")
        else:
            self._failed(describe_failure(failure))

    def _failed(self, why: str) -> None:
        if not self.complete:
            self.fail(f"cannot play {self.url}: {why}")

    def stop(self) -> None:
        self._stopped = True
        self._cancel_timer()
        if self._request is not None:
            self._request.cancel()
        if self._body is not None:
            self._body.stop()

    def describe(self) -> str:
        return f"url {self.url}"


class _Status(Exception):
    """An HTTP status other than 200."""
