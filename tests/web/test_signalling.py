"""The softphone protocol's refusals, over a plain WebSocket (no browser): a wrong password
is the registrar's refusal, requests before login and unknown ops get clear errors, and
the connection goes on serving after each."""

from __future__ import annotations

import json

import websocket

from tests.web.conftest import token_cookie, wait_gateway


def _phone(srv) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://{srv.host}:{srv.http_port}/ws/phone", timeout=15,
                                       cookie=token_cookie(srv))


def _ask(ws, n: int, **message) -> dict:
    ws.send(json.dumps({"id": n, **message}))
    while True:
        reply = json.loads(ws.recv())
        if reply.get("id") == n:
            return reply


def test_refusals_are_clear_and_the_socket_goes_on(web_server):
    wait_gateway(web_server)
    ws = _phone(web_server)
    try:
        before = _ask(ws, 1, op="call", to="echo", sdp="v=0")
        assert before["ok"] is False and "log in first" in before["error"]
        wrong = _ask(ws, 2, op="login", user="alice", password="not-her-password")
        assert wrong["ok"] is False and "login as alice failed" in wrong["error"], wrong
        nobody = _ask(ws, 3, op="login", user="mallory", password="x")
        assert nobody["ok"] is False and "mallory" in nobody["error"], nobody
        ok = _ask(ws, 4, op="login", user="alice", password="wonderland")
        assert ok["ok"] is True and ok["user"] == "alice", ok
        unknown = _ask(ws, 5, op="teleport")
        assert unknown["ok"] is False and "unknown op" in unknown["error"]
        bad_sdp = _ask(ws, 6, op="call", to="echo", sdp="this is not SDP")
        assert bad_sdp["ok"] is False and "SDP" in bad_sdp["error"], bad_sdp
        no_call = _ask(ws, 7, op="hangup")
        assert no_call["ok"] is False and "no call" in no_call["error"]
        ws.send("{not json")
        assert json.loads(ws.recv())["ok"] is False
        assert _ask(ws, 8, op="logout")["ok"] is True
    finally:
        ws.close()
    assert web_server.alive()


def test_requests_sent_at_once_are_served_in_order(web_server):
    """A login, a logout and another login sent back to back (no waiting for replies): one
    browser's requests run one after the other, so each reply is about its own request."""
    wait_gateway(web_server)
    ws = _phone(web_server)
    try:
        for n, message in ((1, {"op": "login", "user": "alice", "password": "wonderland"}),
                           (2, {"op": "logout"}),
                           (3, {"op": "login", "user": "bob", "password": "builder"}),
                           (4, {"op": "login", "user": "carol", "password": "carolpass"})):
            ws.send(json.dumps({"id": n, **message}))
        replies = {}
        while len(replies) < 4:
            m = json.loads(ws.recv())
            if "id" in m:
                replies[m["id"]] = m
        assert replies[1]["ok"] and replies[1]["user"] == "alice", replies[1]
        assert replies[2]["ok"], replies[2]
        assert replies[3]["ok"] and replies[3]["user"] == "bob", replies[3]
        assert not replies[4]["ok"] and "already logged in as bob" in replies[4]["error"], replies[4]
    finally:
        ws.close()
