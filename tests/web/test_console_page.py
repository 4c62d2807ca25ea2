"""The web console in Chromium: a live sipp call shows up without a refresh, its media
graph is drawn, the REPL panel evaluates in its session, and ``call.hangup()`` typed there
ends the call (sipp receives the BYE)."""

from __future__ import annotations

import shutil
import subprocess
import time

from tests.peers.process import end_process
from tests.peers.sipp import SIPP, sipp_command
from tests.peers.server import REPO_ROOT
from tests.web.conftest import console_url, requires_chromium, session_with_call

import pytest

pytestmark = [requires_chromium,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian package sip-tester) is not on PATH")]


def test_console_shows_a_live_sipp_call_and_its_repl_hangs_it_up(web_server, browsers, tmp_path):
    page = browsers.open(console_url(web_server))
    page.wait_for_function("document.querySelector('#conn-status').textContent.includes('connected')"
                           " && !document.querySelector('#conn-status').textContent.includes('dis')")
    cmd = sipp_command(web_server.host, web_server.sip_port,
                       str(REPO_ROOT / "docs" / "sipp" / "wait-bye.xml"), service="echo",
                       workdir=tmp_path, global_timeout_s=60, recv_timeout_ms=60000)
    sipp = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        session, call = session_with_call(web_server, lambda c: c["callerid"] == "sipp"
                                          and c["state"] == "CONNECTED", timeout=15)
        started = time.monotonic()
        item = f"#sessions [data-session='{session['id']}']"
        page.wait_for_selector(item, timeout=10000)
        shown_after = time.monotonic() - started
        print(f"the session showed {shown_after:.2f} s after the console saw it")
        page.click(item)
        page.wait_for_selector(f"#calls tr[data-call='{call['id']}']")
        # echo: the call's audio is routed to itself, an edge from the unit to the unit.
        page.wait_for_selector(f"#graph g[data-unit='{call['id']}']")
        page.wait_for_selector(f"#graph [data-edge='{call['id']}->{call['id']}']")
        page.click("#repl-input")
        page.fill("#repl-input", "call.state")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#repl-output .repl-result')]"
            ".some(e => e.textContent.includes('CONNECTED'))", timeout=10000)
        page.wait_for_function("() => document.querySelector('#ladder').textContent.includes('INVITE')",
                               timeout=10000)
        # A route changed from the REPL is redrawn without a reload.
        edge = f"#graph [data-edge='{call['id']}->{call['id']}']"
        page.fill("#repl-input", "call.stop_media_to(call)")
        page.keyboard.press("Enter")
        page.wait_for_selector(edge, state="detached", timeout=10000)
        page.fill("#repl-input", "call.send_media_to(call)")
        page.keyboard.press("Enter")
        page.wait_for_selector(edge, timeout=10000)
        shots = browsers.tmp / "console.png"
        page.screenshot(path=str(shots), full_page=True)
        # Play a file from the action buttons: a player unit appears, routed to the call.
        page.fill("#act-play-url", "hello.wav")
        page.click("#act-play")
        page.wait_for_function(
            "id => [...document.querySelectorAll('#graph [data-edge]')].some(e => {"
            " const [src, dst] = e.dataset.edge.split('->'); return dst === id && src !== id; })",
            arg=call["id"], timeout=10000)
        # Record the call from the action buttons; it is listed and plays in the page below.
        page.click("#act-record-start")
        page.wait_for_function("() => [...document.querySelectorAll('#repl-output .repl-entry')]"
                               ".some(e => e.textContent.includes('.record()')"
                               " && e.querySelector('.repl-result'))", timeout=10000)
        time.sleep(1.5)
        page.click("#act-record-stop")
        page.fill("#repl-input", "call.hangup()")
        page.keyboard.press("Enter")
        out, err = sipp.communicate(timeout=30)
        assert sipp.returncode == 0, f"sipp did not get a clean BYE: {out[-2000:]} {err[-2000:]}"
        page.wait_for_selector(f"#calls tr[data-call='{call['id']}'] td.state:text('DISCONNECTED')",
                               timeout=10000)
        page.click("#tab-history")
        page.wait_for_selector(f"#history :text('{session['id']}')", timeout=10000)
        recording = f"#recordings li[data-recording^='{session['id']}']"
        page.wait_for_selector(recording, timeout=10000)
        page.click(f"{recording} button")
        seconds = page.wait_for_function(
            f"() => {{ const a = document.querySelector(\"{recording} audio\");"
            " return a && a.duration > 0 && isFinite(a.duration) && a.duration; }", timeout=10000)
        assert 1.0 < seconds.json_value() < 10, seconds.json_value()
        docs = REPO_ROOT / "tests" / "web" / "artifacts"
        docs.mkdir(exist_ok=True)
        shutil.copy(shots, docs / "console-live-call.png")
    finally:
        if sipp.poll() is None:
            end_process(sipp)
    assert not page.errors, page.errors
