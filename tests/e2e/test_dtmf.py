"""RFC 4733 DTMF from real peers reaches the scenario as CallEvents.ToneReceived."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import requires_sipp
from tests.e2e.scenarios import DIGITS
from tests.peers.sipp import run_sipp
from tests.peers.sipua import SipUA

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def digits_server(tmp_path_factory):
    from tests.conftest import _finish, _start

    srv = _start(tmp_path_factory.mktemp("digits"), scenarios={"digits": DIGITS})
    yield srv
    problem = _finish(srv)
    if problem:
        pytest.fail(problem, pytrace=False)


def _tones(server) -> list[str]:
    return re.findall(r"\] TONE (\S+)", server.log_text())


@requires_sipp
def test_sipp_pcap_digit_reaches_scenario(digits_server, sipp_workdir):
    before = len(_tones(digits_server))
    res = run_sipp(digits_server.host, digits_server.sip_port, "uac_dtmf.xml",
                   workdir=sipp_workdir, service="digits")
    assert res.ok, res.explain(digits_server)
    deadline = time.monotonic() + 5
    while len(_tones(digits_server)) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _tones(digits_server)[before:] == ["1"], digits_server.describe(60)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_peer_digits_reach_scenario_and_come_back(digits_server, transport):
    before = len(_tones(digits_server))
    with SipUA(digits_server.host, digits_server.sip_port, transport) as ua:
        call = ua.call("digits")
        assert call.rtp.dtmf_pt == 101, f"answer without telephone-event: {call.answer}"
        call.rtp.send_dtmf("159#*0")
        deadline = time.monotonic() + 5
        while (len(_tones(digits_server)) - before < 6
               or len(call.rtp.received_digits()) < 6) and time.monotonic() < deadline:
            time.sleep(0.05)
        call.rtp.send_silence(0.2)
        echoed = call.rtp.received_digits()
        call.bye()
    assert _tones(digits_server)[before:] == list("159#*0"), digits_server.describe(60)
    assert echoed == "159#*0", f"send_digits came back as {echoed!r}"
