"""The pieces under the web console and the gateway that need no server: who the gate
lets in, and how the browser's audio is cut into the phone's 20 ms frames."""

from __future__ import annotations

import numpy as np

import time

from voxlab.http.web import COOKIE, WebGate, cookie_value, page_origins
from voxlab.webrtc.bridge import FRAME, MAX_BACKLOG, BrowserMic


def _gate(token="s3cret", port=8088):
    return WebGate(lambda: token, lambda: page_origins("127.0.0.1", port, ["https://vox.example.com/"]))


def test_the_token_may_come_as_cookie_query_or_bearer():
    gate = _gate()
    assert gate.presented(f"{COOKIE}=s3cret", None, None)
    assert gate.presented(f"other=1; {COOKIE}=s3cret", None, None)
    assert gate.presented(None, "s3cret", None)
    assert gate.presented(None, None, "Bearer s3cret")
    assert not gate.presented(f"{COOKIE}=s3cre", None, None)
    assert not gate.presented(None, "", "Basic s3cret")
    assert not gate.presented("garbage;;==", None, None)
    assert not _gate(token=None).presented(None, "anything", None)
    # Another application's cookie that a strict parser gives up on does not hide ours.
    assert gate.presented(f'x={{"a": 1}}; {COOKIE}=s3cret', None, None)
    assert cookie_value(f"{COOKIE}=a%20b%3Bc", COOKIE) == "a b;c"       # quoted when set


def test_a_hostile_cookie_header_costs_nothing():
    # http.cookies takes quadratic time on this (CVE-2024-7592), before any token check.
    started = time.process_time()
    for _ in range(50):
        assert not _gate().presented('a="' + "\\" * 8000 + '"', None, None)
    assert time.process_time() - started < 1.0


def test_only_our_own_page_is_an_allowed_origin():
    gate = _gate()
    for ok in ("http://127.0.0.1:8088", "http://localhost:8088", "HTTP://LOCALHOST:8088",
               "https://vox.example.com", None, ""):
        assert gate.origin_ok(ok), ok
    for bad in ("http://127.0.0.1:8089", "http://evil.example", "http://localhost.evil.example:8088",
                "null", "https://vox.example.com:444"):
        assert not gate.origin_ok(bad), bad
    # The host the request went to (a wildcard listen address, a name): its own page.
    assert gate.origin_ok("http://pbx.lan:8088", host="pbx.lan:8088")
    assert not gate.origin_ok("http://evil.example:8088", host="pbx.lan:8088")
    assert gate.origin_ok("https://vox.example.com:443") and _gate(port=80).origin_ok("http://127.0.0.1")


def test_browser_audio_becomes_whole_frames_and_a_short_backlog():
    mic = BrowserMic()
    ramp = np.arange(FRAME * 3 + 50, dtype=np.int16)
    mic._take(ramp[:100])            # less than a frame: nothing to read yet
    assert not mic.read().any()
    mic._take(ramp[100:])
    frames = [mic.read() for _ in range(3)]
    assert np.array_equal(np.concatenate(frames), ramp[:FRAME * 3])
    assert not mic.read().any()      # the 50 left over wait for more; silence meanwhile
    for _ in range(MAX_BACKLOG * 3):
        mic._take(np.full(FRAME, 7, np.int16))
    assert len(mic._samples) == MAX_BACKLOG     # late frames are dropped, not queued for ever
