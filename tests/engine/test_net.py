"""voxlab.engine.net on a real reactor (pytest-twisted) against an in-process twisted.web
server on 127.0.0.1: results for 200/404/500, what the server saw, timeouts (the server
never answers), refused connections, unknown hosts, bad calls, the per-session caps,
the body limit, charsets, close(). Every test ends with no server connection open and
no DelayedCall of its own left in the reactor."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer, error, reactor, task
from twisted.logger import globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.web import pages, resource, server, util
from twisted.web.client import Agent
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from voxlab.engine.limits import LimitExceeded
from voxlab.engine.net import HttpResult, Net


# ---------------------------------------------------------------- the server

class Echo(resource.Resource):
    """Answers any method with JSON saying what it received; remembers every request."""
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def render(self, request):
        body = request.content.read()
        seen = {"method": request.method.decode(),
                "headers": {k.decode().lower(): [v.decode() for v in vs]
                            for k, vs in request.requestHeaders.getAllRawHeaders()},
                "body": body}
        self.seen.append(seen)
        request.setHeader(b"content-type", b"application/json")
        request.responseHeaders.setRawHeaders(b"x-multi", [b"one", b"two"])
        return json.dumps({"method": seen["method"], "body": body.decode("utf-8", "replace"),
                           "greeting": "héllo"}).encode("utf-8")


class Status(resource.Resource):
    isLeaf = True

    def __init__(self, code: int, body: bytes) -> None:
        super().__init__()
        self.code, self.body = code, body

    def render_GET(self, request):
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"text/plain")
        return self.body


class Static(resource.Resource):
    isLeaf = True

    def __init__(self, body: bytes, ctype: bytes) -> None:
        super().__init__()
        self.body, self.ctype = body, ctype

    def render_GET(self, request):
        request.setHeader(b"content-type", self.ctype)
        return self.body


class Silent(resource.Resource):
    """Never answers. Counts the requests it holds and those whose connection went."""
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.lost = 0

    def render_GET(self, request):
        self.received += 1
        request.notifyFinish().addErrback(lambda _: setattr(self, "lost", self.lost + 1))
        return server.NOT_DONE_YET


class Stalls(Silent):
    """Sends the headers and a little of the body, then nothing, ever."""

    def render_GET(self, request):
        super().render_GET(request)
        request.setHeader(b"content-length", b"100000")
        request.write(b"x" * 1000)
        return server.NOT_DONE_YET


class Endless(resource.Resource):
    """A body that never ends (no Content-Length): 8 KB every 10 ms."""
    isLeaf = True

    def render_GET(self, request):
        loop = task.LoopingCall(request.write, b"\0" * 8192)
        loop.start(0.01)
        request.notifyFinish().addBoth(lambda _: loop.running and loop.stop())
        return server.NOT_DONE_YET


class Root(resource.Resource):
    def getChild(self, path, request):
        return pages.notFound()


class Web:
    """The running test server: ``url(path)``, and its resources by name."""

    def __init__(self) -> None:
        self.echo = Echo()
        self.silent = Silent()
        self.stalls = Stalls()
        root = Root()                       # unknown paths: 404
        root.putChild(b"echo", self.echo)
        root.putChild(b"error", Status(500, b"it broke"))
        root.putChild(b"silent", self.silent)
        root.putChild(b"stalls", self.stalls)
        root.putChild(b"big", Static(b"b" * 200_000, b"application/octet-stream"))
        root.putChild(b"exact", Static(b"e" * 1000, b"application/octet-stream"))
        root.putChild(b"endless", Endless())
        root.putChild(b"latin1", Static("café".encode("latin-1"), b"text/plain; charset=ISO-8859-1"))
        root.putChild(b"koi8", Static("привет".encode("koi8-r"), b'text/plain; charset="koi8-r"'))
        root.putChild(b"nocharset", Static(b"caf\xc3\xa9 \xff", b"text/plain"))
        root.putChild(b"badcharset", Static("café".encode(), b"text/plain; charset=x-no-such"))
        root.putChild(b"moved", util.Redirect(b"/echo"))
        # WrappingFactory keeps every open server connection in .protocols.
        self.factory = WrappingFactory(server.Site(root))
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def connections(self) -> int:
        return len(self.factory.protocols)


def _ours(calls) -> set:
    return {c for c in calls if c.active()}


@defer.inlineCallbacks
def wait_for(condition, timeout: float = 5.0):
    """Poll ``condition`` every 10 ms; False if it never held within ``timeout``."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        yield task.deferLater(reactor, 0.01, lambda: None)
    return condition()


@pytest.fixture
def web():
    before = _ours(reactor.getDelayedCalls())
    srv = Web()
    yield srv

    @defer.inlineCallbacks
    def finish():
        # The client side closes its connections itself; give it a moment, then
        # count what was left open (a failure) and drop it.
        closed = yield wait_for(lambda: srv.connections == 0, 3.0)
        left = srv.connections
        for proto in list(srv.factory.protocols):
            proto.transport.abortConnection()
        yield wait_for(lambda: srv.connections == 0, 3.0)
        yield srv.port.stopListening()
        yield task.deferLater(reactor, 0.05, lambda: None)
        return closed, left

    closed, left = pytest_twisted.blockon(finish())
    leftover = _ours(reactor.getDelayedCalls()) - before
    assert closed, f"{left} server connection(s) still open after the test"
    assert not leftover, f"DelayedCalls left behind: {leftover}"


@pytest.fixture
def make_net():
    """``make_net(**kw)`` -> a Net on the reactor, closed after the test."""
    nets: list[Net] = []

    def make(**kw) -> Net:
        net = Net(reactor, **kw)
        nets.append(net)
        return net

    yield make
    for net in nets:
        pytest_twisted.blockon(net.close())


# ---------------------------------------------------------------- responses

@pytest_twisted.inlineCallbacks
def test_post_json_headers_and_body_reach_the_server(web, make_net):
    hooked = []
    net = make_net(on_request=lambda url, method, result: hooked.append((url, method, result)))
    url = web.url("/echo")
    result = yield net.http_request_async(url, "POST",
                                          {"X-Token": "abc 123", "Content-Type": "application/json"},
                                          '{"name": "Zoë"}')
    assert isinstance(result, HttpResult)
    assert result.code == 200 and result.error is None
    assert json.loads(result.text) == {"method": "POST", "body": '{"name": "Zoë"}',
                                       "greeting": "héllo"}
    assert result.data == result.text.encode("utf-8")
    assert result.headers["content-type"] == "application/json"
    assert result.headers["x-multi"] == "two"                  # the last one wins
    assert [v for n, v in result.raw_headers if n.lower() == "x-multi"] == ["one", "two"]
    assert result.url == url and result.elapsed >= 0
    assert "code=200" in repr(result) and "error=None" in repr(result) and \
        f"len={len(result.data)}" in repr(result)
    seen = web.echo.seen[-1]
    assert seen["method"] == "POST"
    assert seen["headers"]["x-token"] == ["abc 123"]
    assert seen["headers"]["content-type"] == ["application/json"]
    assert seen["body"] == '{"name": "Zoë"}'.encode("utf-8")
    assert hooked == [(url, "POST", result)]
    assert net.in_flight == 0 and net.total == 1


@pytest_twisted.inlineCallbacks
def test_other_methods_bytes_body_and_repeated_headers(web, make_net):
    net = make_net()
    url = web.url("/echo")
    result = yield net.http_request_async(url, "put", [("X-Dup", "1"), ("X-Dup", "2")],
                                          b"\x00\x01\xff")
    assert result.code == 200
    seen = web.echo.seen[-1]
    assert seen["method"] == "PUT" and seen["body"] == b"\x00\x01\xff"
    assert seen["headers"]["x-dup"] == ["1", "2"]
    for method in ("GET", "DELETE", "PATCH", "OPTIONS"):
        result = yield net.http_request_async(url, method)
        assert (result.code, result.error, web.echo.seen[-1]["method"]) == (200, None, method)
        assert web.echo.seen[-1]["body"] == b""
    result = yield net.http_request_async(url, "HEAD")
    assert (result.code, result.error, result.data) == (200, None, b"")
    result = yield net.http_request_async(web.url("/moved"))     # redirects are followed
    assert result.code == 200 and json.loads(result.text)["method"] == "GET"


@pytest_twisted.inlineCallbacks
def test_http_errors_are_results_not_errors(web, make_net):
    net = make_net()
    result = yield net.http_request_async(web.url("/nothing/here"))
    assert result.code == 404 and result.error is None
    assert "No Such Resource" in result.text and result.headers["content-type"].startswith("text/html")
    result = yield net.http_request_async(web.url("/error"))
    assert (result.code, result.error, result.text) == (500, None, "it broke")
    assert "code=500" in repr(result)


@pytest_twisted.inlineCallbacks
def test_charsets(web, make_net):
    net = make_net()
    texts = {}
    for path in ("/latin1", "/koi8", "/nocharset", "/badcharset"):
        result = yield net.http_request_async(web.url(path))
        assert result.code == 200 and result.error is None
        texts[path] = result.text
    assert texts == {"/latin1": "café", "/koi8": "привет", "/nocharset": "café \ufffd",
                     "/badcharset": "café"}


# ---------------------------------------------------------------- failures

@pytest_twisted.inlineCallbacks
def test_timeout_when_the_server_never_answers(web, make_net):
    net = make_net()
    result = yield net.http_request_async(web.url("/silent"), timeout=0.5)
    assert result.code is None and result.error == "timeout after 0.5 s"
    assert result.elapsed >= 0.49
    assert "timeout after 0.5 s" in repr(result)
    assert web.silent.received == 1
    assert (yield wait_for(lambda: web.silent.lost == 1))       # the connection was dropped
    assert net.in_flight == 0


@pytest_twisted.inlineCallbacks
def test_timeout_covers_the_body(web, make_net):
    net = make_net(default_timeout=0.5)
    result = yield net.http_request_async(web.url("/stalls"))     # headers, 1 KB, then nothing
    assert result.code == 200 and result.error == "timeout after 0.5 s"
    assert result.data == b"" and result.headers["content-length"] == "100000"
    assert (yield wait_for(lambda: web.stalls.lost == 1))


@pytest_twisted.inlineCallbacks
def test_connection_refused(make_net):
    probe = reactor.listenTCP(0, server.Site(resource.Resource()), interface="127.0.0.1")
    port = probe.getHost().port
    yield probe.stopListening()
    net = make_net()
    result = yield net.http_request_async(f"http://127.0.0.1:{port}/x")
    assert result.code is None and result.error == "connection refused"


@implementer(IAgentEndpointFactory)
class _NoDNS:
    """Endpoints whose connect fails as an unknown host's does."""

    def endpointForURI(self, uri):
        class Endpoint:
            def connect(self, factory):
                return defer.fail(error.DNSLookupError(uri.host.decode()))
        return Endpoint()


@pytest_twisted.inlineCallbacks
def test_dns_failure_with_a_given_agent(make_net):
    net = make_net(agent=Agent.usingEndpointFactory(reactor, _NoDNS()))
    result = yield net.http_request_async("http://nowhere.invalid/x")
    assert result.code is None
    assert result.error == "DNS lookup failed for host nowhere.invalid"


def test_bad_calls_raise_at_once(make_net):
    net = make_net()
    for url in ("ftp://example.com/x", "example.com/x", "http://", "http://h:99999/",
                "http://h:port/", "http://a b/", "javascript:alert(1)"):
        with pytest.raises(ValueError, match="bad URL"):
            net.http_request_async(url)
    with pytest.raises(ValueError, match="bad HTTP method 'FETCH'"):
        net.http_request_async("http://127.0.0.1/", "FETCH")
    with pytest.raises(TypeError):
        net.http_request_async(b"http://127.0.0.1/")
    with pytest.raises(ValueError, match="line break"):
        net.http_request_async("http://127.0.0.1/", headers={"X-A": "1\r\nX-B: 2"})
    with pytest.raises(TypeError):
        net.http_request_async("http://127.0.0.1/", post_data={"a": 1})
    with pytest.raises(ValueError, match="timeout"):
        net.http_request_async("http://127.0.0.1/", timeout=0)
    with pytest.raises(ValueError, match="bad URL"):
        net.http_request("gopher://x/", lambda r: None)
    assert net.total == 0 and net.in_flight == 0


# ---------------------------------------------------------------- caps and limits

@pytest_twisted.inlineCallbacks
def test_at_most_three_at_once(web, make_net):
    net = make_net()
    pending = [net.http_request_async(web.url("/silent")) for _ in range(3)]
    assert net.in_flight == 3
    with pytest.raises(LimitExceeded,
                       match=r"^at most 3 HTTP requests at once per session \(VoxEngine's limit\)$"):
        net.http_request_async(web.url("/echo"))
    with pytest.raises(LimitExceeded):
        net.http_request(web.url("/echo"), lambda r: None)
    assert net.total == 3
    assert (yield wait_for(lambda: web.silent.received == 3))
    pending[0].cancel()                                   # one ends: room for another
    first = yield pending[0]
    assert first.error == "cancelled" and net.in_flight == 2
    result = yield net.http_request_async(web.url("/echo"))
    assert result.code == 200 and net.total == 4
    yield net.close()
    results = yield defer.gatherResults(pending[1:])
    assert [(r.code, r.error) for r in results] == [(None, "cancelled: the session ended")] * 2
    assert (yield wait_for(lambda: web.silent.lost == 3))


def test_concurrency_message_names_the_cap_in_force(make_net):
    net = make_net(max_concurrent=1)
    net.http_request_async("http://127.0.0.1:9/never")      # cancelled by the fixture's close
    with pytest.raises(LimitExceeded, match=r"^at most 1 HTTP requests at once per session$"):
        net.http_request_async("http://127.0.0.1:9/never")


@pytest_twisted.inlineCallbacks
def test_at_most_35_per_session(web, make_net):
    net = make_net()
    for i in range(35):
        result = yield net.http_request_async(web.url("/echo" if i % 2 else "/missing"))
        assert result.code in (200, 404)
    assert net.total == 35 and net.in_flight == 0
    with pytest.raises(LimitExceeded, match=r"^at most 35 HTTP requests per session$"):
        net.http_request_async(web.url("/echo"))
    assert net.total == 35 and len(web.echo.seen) == 17


@pytest_twisted.inlineCallbacks
def test_body_limit(web, make_net):
    net = make_net(max_body=1000)
    result = yield net.http_request_async(web.url("/exact"))            # exactly the limit
    assert result.error is None and len(result.data) == 1000
    result = yield net.http_request_async(web.url("/big"))              # Content-Length says too big
    assert (result.code, result.error, result.data) == (200, "response bigger than 1000 bytes", b"")
    result = yield net.http_request_async(web.url("/endless"))          # no Content-Length, no end
    assert (result.code, result.error, result.data) == (200, "response bigger than 1000 bytes", b"")
    # the fixture checks that both connections were closed


# ---------------------------------------------------------------- callbacks and close

@pytest_twisted.inlineCallbacks
def test_callback_style_goes_through_deliver(web, make_net):
    net = make_net()
    delivered: list = []
    raised: list = []

    def deliver(fn, result):
        delivered.append(result)
        try:
            fn(result)
        except Exception as exc:          # what a server's deliver does with scenario errors
            raised.append(exc)

    net.deliver = deliver
    got: defer.Deferred = defer.Deferred()
    assert net.http_request(web.url("/echo"), got.callback, "POST", post_data="hi") is None
    result = yield got
    assert result.code == 200 and delivered == [result]
    assert web.echo.seen[-1]["body"] == b"hi"

    def broken(result):
        raise KeyError("scenario bug")

    net.http_request(web.url("/echo"), broken)
    assert (yield wait_for(lambda: raised))
    assert isinstance(raised[0], KeyError)


@pytest_twisted.inlineCallbacks
def test_callback_error_with_default_deliver_is_logged(web, make_net):
    net = make_net()
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        def broken(result):
            raise KeyError("scenario bug")

        net.http_request(web.url("/echo"), broken)
        assert (yield wait_for(lambda: net.in_flight == 0 and any(
            e.get("log_failure") is not None and e["log_failure"].check(KeyError) for e in events)))
    finally:
        globalLogPublisher.removeObserver(events.append)


@pytest_twisted.inlineCallbacks
def test_close_cancels_requests_in_flight(web, make_net):
    hooked = []
    net = make_net(on_request=lambda url, method, result: hooked.append(result))
    pending = net.http_request_async(web.url("/silent"))
    got: defer.Deferred = defer.Deferred()
    net.http_request(web.url("/silent"), got.callback)
    assert (yield wait_for(lambda: web.silent.received == 2))
    assert net.in_flight == 2
    yield net.close()
    assert net.in_flight == 0
    assert pending.called and got.called
    for result in ((yield pending), (yield got)):
        assert (result.code, result.error) == (None, "cancelled: the session ended")
    assert len(hooked) == 2
    assert (yield wait_for(lambda: web.silent.lost == 2))
    with pytest.raises(RuntimeError, match="session has ended"):
        net.http_request_async(web.url("/echo"))
    yield net.close()                                       # again: nothing to do
