"""A WebRTC gateway worker that dies takes only its own calls with it, with a reason, and
the pool replaces it: the next browser call works."""

from __future__ import annotations

import os
import re
import signal
import time

from tests.web.conftest import (console_url, dial, login, requires_chromium, session_with_call,
                                tone_heard, wait_gateway, wait_state)

pytestmark = requires_chromium


def _worker_pids(srv) -> list[int]:
    return [int(p) for p in re.findall(r"WebRTC gateway worker 0 started \(pid (\d+)\)", srv.log_text())]


def test_killing_the_gateway_worker_ends_its_call_and_the_next_call_works(web_server, browsers):
    wait_gateway(web_server)
    page = browsers.open(console_url(web_server), tone_hz=1000)
    login(page, "alice")
    dial(page, "echo")
    session, call = session_with_call(web_server, lambda c: c["callerid"] == "alice"
                                      and c["state"] == "CONNECTED")
    (pid,) = _worker_pids(web_server)
    os.kill(pid, signal.SIGKILL)
    # The browser hears why, the server's leg ends at once (not at an RTP timeout) with
    # the reason, and the server goes on.
    wait_state(page, "ended")
    assert web_server.wait_for_log(rf"call {re.escape(call['id'])} ended: gateway-failure", 10), \
        web_server.describe(60)
    assert "log in again" in page.text_content("body")
    deadline = time.monotonic() + 30
    while len(_worker_pids(web_server)) < 2:
        assert time.monotonic() < deadline, web_server.describe(60)
        time.sleep(0.1)
    assert web_server.wait_for_log(r"\[webrtc-0\] webrtc gateway worker 0 \(pid "
                                   rf"{_worker_pids(web_server)[-1]}\) up", 30)
    login(page, "alice")
    dial(page, "echo")
    heard = tone_heard(page, 1000)
    assert abs(heard["peak_hz"] - 1000) < 30, heard
    page.click("#sp-hangup")
    wait_state(page, "ended")
    assert web_server.alive()


def test_a_stuck_gateway_worker_is_killed_and_replaced(web_server, browsers):
    wait_gateway(web_server)
    deadline = time.monotonic() + 30
    while not re.search(rf"webrtc gateway worker 0 \(pid {_worker_pids(web_server)[-1]}\) up",
                        web_server.log_text()):
        assert time.monotonic() < deadline, web_server.describe(60)
        time.sleep(0.1)
    page = browsers.open(console_url(web_server), tone_hz=1000)
    login(page, "alice")
    dial(page, "echo")
    _, call = session_with_call(web_server, lambda c: c["callerid"] == "alice"
                                and c["state"] == "CONNECTED")
    pid = _worker_pids(web_server)[-1]
    started = len(_worker_pids(web_server))
    os.kill(pid, signal.SIGSTOP)         # alive, but its loop no longer runs
    try:
        assert web_server.wait_for_log(rf"gateway worker 0 \(pid {pid}\) is wedged", 20), \
            web_server.describe(60)
        wait_state(page, "ended", timeout_ms=20000)
        assert web_server.wait_for_log(rf"call {re.escape(call['id'])} ended: gateway-failure", 10)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while len(_worker_pids(web_server)) <= started:
        assert time.monotonic() < deadline, web_server.describe(60)
        time.sleep(0.1)
