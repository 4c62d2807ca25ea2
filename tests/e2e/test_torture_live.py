"""RFC 4475's torture messages fired at a live server over UDP.

Each request must get a final response (the invalid ones a 4xx/5xx, never a
crash); no message may take the server down; afterwards a normal call works."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.sip_parse.test_rfc4475 import FIXTURES, INVALID, VALID
from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e


# Any version and transport: some messages claim SIP/7.0 or TCP, and an answer
# to a datagram still goes back over UDP to the sent-by port.
_FIRST_VIA = re.compile(rb"^((?:Via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*[0-9.]+[ \t]*/[ \t]*[A-Za-z]+[ \t]+)([^;\r\n ]+)",
                        re.IGNORECASE | re.MULTILINE)


def responses_to(server, data: bytes, wait: float) -> list[int]:
    """Send one datagram from a fresh socket; collect the status codes that come back.

    Responses go to the top Via's sent-by (RFC 3261 18.2.2), which in the
    RFC's messages is some other host: point it at our socket first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    data = _FIRST_VIA.sub(lambda m: m.group(1) + f"127.0.0.1:{port}".encode(), data, count=1)
    try:
        sock.sendto(data, (server.host, server.sip_port))
        codes, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                reply = sock.recv(65535)
            except socket.timeout:
                break
            if reply.startswith(b"SIP/2.0 "):
                codes.append(int(reply[8:11]))
                if codes[-1] >= 200:
                    break
        return codes
    finally:
        sock.close()


@pytest.mark.parametrize("name", sorted(n for n, v in INVALID.items() if v and v[1]))
def test_invalid_request_answered_with_error(server, name):
    data = (FIXTURES / f"{name}.sip").read_bytes()
    codes = responses_to(server, data, wait=3.0)
    assert codes and 400 <= codes[-1] < 600, f"{name}: got {codes}\n" + server.describe(30)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_never_hurts_the_server(server, name):
    data = (FIXTURES / f"{name}.sip").read_bytes()
    responses_to(server, data, wait=0.3)
    assert server.alive(), server.describe(40)


def test_calls_still_work_after_the_torture(server):
    for path in sorted(Path(FIXTURES).glob("*.sip")):
        responses_to(server, path.read_bytes(), wait=0.05)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo")
        call.rtp.send_audio(sine(1000.0, 0.6))
        call.rtp.wait_quiet(0.3, timeout=5)
        call.bye()
    assert abs(dominant_frequency(call.rtp.received_audio()[1600:]) - 1000.0) < 20
