"""A TCP client whose connection closed before the final response: the response
goes to a new connection to its Via's sent-by port (RFC 3261 18.2.2), not to
the ephemeral port the first connection came from."""

from __future__ import annotations

import socket
import time

import pytest

from tests.e2e.test_robustness import SDP, _request

pytestmark = pytest.mark.e2e

# Answers once the test says so (a file appears), so the order of events is
# decided by the test, not by a timer.
ANSWER_ON_SIGNAL = """
import os
from twisted.internet import task

def on_alerting(e):
    call = e.call
    signal = os.path.join(os.path.dirname(__file__), "go")
    def poll():
        if os.path.exists(signal):
            poller.stop()
            call.answer()
    poller = task.LoopingCall(poll)
    poller.start(0.05)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.add_event_listener(CallEvents.Failed, lambda ev: VoxEngine.terminate())
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def read_message(conn: socket.socket, timeout: float) -> bytes:
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65535)
        if not chunk:
            break
        data += chunk
    return data


def test_final_response_opens_a_connection_to_the_via_port(voxlab_factory):
    srv = voxlab_factory(scenarios={"later": ANSWER_ON_SIGNAL})
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sent_by = listener.getsockname()[1]
    try:
        client = socket.create_connection((srv.host, srv.sip_port), timeout=5)
        invite = _request(srv.host, srv.sip_port, sent_by, transport="TCP", body=SDP,
                          extra="Content-Type: application/sdp\r\n").replace(b"sip:echo@", b"sip:later@")
        client.sendall(invite)
        first = read_message(client, 5)
        assert first.startswith(b"SIP/2.0 1"), first
        client.close()
        (srv.scenarios / "go").write_text("")
        listener.settimeout(10)
        back, _ = listener.accept()
        with back:
            deadline = time.monotonic() + 10
            final = b""
            while not final.startswith(b"SIP/2.0 200") and time.monotonic() < deadline:
                final = read_message(back, 10)
                if not final:
                    break
                final = final[final.find(b"SIP/2.0 "):]
            assert final.startswith(b"SIP/2.0 200"), final
    finally:
        listener.close()
