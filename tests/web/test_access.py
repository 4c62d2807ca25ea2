"""Who may use the web console: the page and both WebSockets need the console token, and
a WebSocket from another site's page (wrong Origin) is refused even with it. With
``[webrtc] phone_page = true`` the softphone alone is at /phone/ without the token, and
/ws/phone admits our page's sockets without it; the console stays behind the token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import websocket      # websocket-client: a peer nobody here wrote

from tests.web.conftest import console_token, token_cookie


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


def _get(url: str, headers: dict | None = None):
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    """A voxlab without a gateway worker: access is the HTTP side's business alone."""
    from tests.conftest import _finish, _start
    srv = _start(tmp_path_factory.mktemp("voxlab-web-access"))
    yield srv
    _finish(srv)


@pytest.fixture(scope="module")
def phone_page_server(tmp_path_factory):
    """A voxlab with the softphone-only page on (and no gateway worker)."""
    from tests.conftest import _finish, _start
    srv = _start(tmp_path_factory.mktemp("voxlab-phone-page"), config="[webrtc]\nphone_page = true\n")
    yield srv
    _finish(srv)


def test_page_without_token_is_refused(plain_server):
    for path in ("/console/", "/console/index.html", "/console/app.js", "/console/config.json"):
        status, _, body = _get(plain_server.http_url + path)
        assert status == 403, (path, status)
        assert b"token" in body
    status, _, _ = _get(plain_server.http_url + "/console/?token=not-the-token")
    assert status == 403


def test_token_url_sets_a_cookie_and_serves_the_page(plain_server):
    token = console_token(plain_server)
    assert f"/console/?token={token}" in plain_server.log_text()      # the ready-to-click URL
    status, headers, _ = _get(f"{plain_server.http_url}/console/?token={token}")
    assert status == 302 and headers["Location"] == "/console/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    jar = cookie.split(";")[0]
    status, headers, body = _get(plain_server.http_url + "/console/", {"Cookie": jar})
    assert status == 200 and b"<html" in body.lower()
    assert headers["X-Frame-Options"] == "DENY"
    status, _, body = _get(plain_server.http_url + "/console/app.js", {"Cookie": jar})
    assert status == 200 and b"import" in body
    status, _, body = _get(plain_server.http_url + "/console/config.json", {"Cookie": jar})
    assert status == 200 and json.loads(body)["api_token"] == plain_server.api_token()
    # A wrong ?token= beside the right cookie (a stale link) neither replaces the cookie
    # nor gets in: the page is served as by the cookie.
    status, headers, _ = _get(f"{plain_server.http_url}/console/?token=stale", {"Cookie": jar})
    assert status == 200 and "Set-Cookie" not in headers


def _ws(srv, path: str, **kw) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://{srv.host}:{srv.http_port}{path}", timeout=5, **kw)


@pytest.mark.parametrize("path", ["/ws/console", "/ws/phone"])
def test_websocket_without_token_or_with_a_wrong_origin_is_refused(plain_server, path):
    origin = f"http://{plain_server.host}:{plain_server.http_port}"
    with pytest.raises(websocket.WebSocketBadStatusException) as no_token:
        _ws(plain_server, path, origin=origin)
    assert no_token.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as wrong_token:
        _ws(plain_server, path, origin=origin, cookie=token_cookie(plain_server, "guess"))
    assert wrong_token.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as evil:
        _ws(plain_server, path, origin="http://evil.example", cookie=token_cookie(plain_server))
    assert evil.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as other_port:
        _ws(plain_server, path, origin=f"http://{plain_server.host}:1", cookie=token_cookie(plain_server))
    assert other_port.value.status_code == 403
    ok = _ws(plain_server, path, origin=origin, cookie=token_cookie(plain_server))
    ok.close()
    assert "refused a WebSocket" in plain_server.log_text()


def test_console_protocol_over_the_websocket(plain_server):
    ws = _ws(plain_server, "/ws/console", origin=f"http://localhost:{plain_server.http_port}",
             cookie=token_cookie(plain_server))
    try:
        ws.send(json.dumps({"id": 1, "op": "hello", "client": "test"}))
        hello = json.loads(ws.recv())
        assert hello["id"] == 1 and hello["ok"] and hello["server"].startswith("voxlab")
        ws.send(json.dumps({"id": 2, "op": "sessions"}))
        sessions = json.loads(ws.recv())
        assert sessions["id"] == 2 and sessions["ok"] and sessions["sessions"] == []
        ws.send("not json")
        bad = json.loads(ws.recv())
        assert bad["ok"] is False and "bad request" in bad["error"]
        ws.send(json.dumps({"id": 3, "op": "ping"}))       # still served after a bad frame
        assert json.loads(ws.recv())["id"] == 3
    finally:
        ws.close()


def _says_webrtc_is_off(ws: websocket.WebSocket) -> None:
    """A login on ``ws`` (a server without gateway workers) is answered: WebRTC is off."""
    try:
        ws.send(json.dumps({"id": 1, "op": "login", "user": "alice", "password": "x"}))
        reply = json.loads(ws.recv())
        assert reply["id"] == 1 and reply["ok"] is False and "WebRTC is off" in reply["error"]
    finally:
        ws.close()


def test_phone_socket_says_when_webrtc_is_off(plain_server):
    _says_webrtc_is_off(_ws(plain_server, "/ws/phone", cookie=token_cookie(plain_server)))


def test_the_phone_page_is_off_by_default(plain_server):
    status, _, _ = _get(plain_server.http_url + "/phone/")
    assert status == 404
    _, _, body = _get(plain_server.http_url + "/")
    assert "phone" not in json.loads(body)


def test_the_phone_page_needs_no_token_and_gives_away_no_console(phone_page_server):
    srv = phone_page_server
    assert "softphone for users (no console): " + srv.http_url + "/phone/" in srv.log_text()
    _, _, body = _get(srv.http_url + "/")
    assert json.loads(body)["phone"] == "/phone/"
    status, headers, body = _get(srv.http_url + "/phone/")
    assert status == 200 and b"<html" in body.lower() and headers["X-Frame-Options"] == "DENY"
    assert "Set-Cookie" not in headers
    status, _, body = _get(srv.http_url + "/phone/app.js")
    assert status == 200 and b"startPhonePage" in body
    status, _, body = _get(srv.http_url + "/phone/config.json")
    config = json.loads(body)
    assert status == 200 and config["page"] == "phone" and "api_token" not in config
    assert srv.api_token() not in body.decode()
    # the console and its socket still need the token
    assert _get(srv.http_url + "/console/")[0] == 403
    origin = f"http://{srv.host}:{srv.http_port}"
    with pytest.raises(websocket.WebSocketBadStatusException) as console:
        _ws(srv, "/ws/console", origin=origin)
    assert console.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as evil:
        _ws(srv, "/ws/phone", origin="http://evil.example")
    assert evil.value.status_code == 403
    _says_webrtc_is_off(_ws(srv, "/ws/phone", origin=origin))   # no token: it may log in
