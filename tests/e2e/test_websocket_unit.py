"""The WebSocket streaming unit: a real WebSocket server (autobahn, a process of its
own) hears the caller's 1 kHz tone as PCM and streams 500 Hz back, which the caller
hears; text both ways; a mark comes back when its audio has been played; a refused
connection is an ERROR and the call goes on."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e.test_call_media_api import wait_hearing
from tests.peers.sipua import SipUA
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

SCENARIO = """
URL = {url!r}

def on_alerting(e):
    call = e.call
    def connected(_):
        ws = VoxEngine.create_websocket(URL)
        def opened(ev):
            Logger.write("ws open")
            call.send_media_to(ws, encoding="PCM16", rate=8000)
            ws.send_media_to(call)
            ws.send("hello")
        ws.add_event_listener(WebSocketEvents.OPEN, opened)
        ws.add_event_listener(WebSocketEvents.MESSAGE, lambda ev: Logger.write(f"ws message {{ev.text}}"))
        ws.add_event_listener(WebSocketEvents.MARK, lambda ev: Logger.write(f"ws mark {{ev.mark}}"))
        ws.add_event_listener(WebSocketEvents.ERROR, lambda ev: Logger.write(f"ws error {{ev.error}}"))
        ws.add_event_listener(WebSocketEvents.CLOSE, lambda ev: Logger.write(f"ws close {{ev.code}}"))
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def ws_server():
    script = Path(__file__).with_name("ws_tone_server.py")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=str(script.parents[2]))
    port = int(proc.stdout.readline())
    yield port
    proc.kill()
    proc.wait(5)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, ws_server):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("wsunit"), {
        "bot": SCENARIO.format(url=f"ws://127.0.0.1:{ws_server}"),
        "nobot": SCENARIO.format(url=f"ws://127.0.0.1:{_closed_port()}"),
    })
    yield server
    problem = _finish(server)
    assert problem is None, problem


def test_caller_tone_reaches_the_server_and_its_audio_comes_back(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("bot")
        stop = threading.Event()
        sender = call.rtp.send_audio_async(sine(1000.0, 8.0, amplitude=0.3), stop=stop)
        try:
            assert srv.wait_for_log(r"ws message hello", timeout=10), srv.describe(40)
            heard = srv.wait_for_log(r'ws message \{"event": "heard", "hz": (\d+)\}', timeout=10)
            assert heard, srv.describe(40)
            assert abs(int(heard.group(1)) - 1000) < 20
            wait_hearing(call.rtp, 500.0)
            # The mark comes back once the 3 s of 500 Hz before it have been played.
            assert srv.wait_for_log(r"ws mark tone-end", timeout=10), srv.describe(40)
            assert srv.wait_for_log(r'"event": "got-mark"', timeout=5), srv.describe(40)
        finally:
            stop.set()
            sender.join(5)
        call.bye()


def test_refused_connection_is_an_error_and_the_call_goes_on(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("nobot")
        assert srv.wait_for_log(r"ws error cannot connect", timeout=10), srv.describe(40)
        assert srv.wait_for_log(r"ws close 1006", timeout=5), srv.describe(40)
        mark = len(call.rtp.audio_packets())
        call.rtp.send_silence(0.5)
        assert len(call.rtp.audio_packets()) > mark + 10, "the call stopped sending RTP"
        call.bye()
