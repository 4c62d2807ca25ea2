"""sipp as the UAC against a real voxlab process (issue 2)."""

from __future__ import annotations

import pytest

from tests.conftest import requires_sipp
from tests.e2e.scenarios import ECHO, RING_FOREVER
from tests.peers.sipp import run_sipp
from tests.peers.sipua import SipError, SipUA

pytestmark = [pytest.mark.e2e, requires_sipp]

TRANSPORTS = [pytest.param("u1", id="udp"), pytest.param("t1", id="tcp")]


def _sipp(server, scenario, workdir, **kw):
    res = run_sipp(server.host, server.sip_port, scenario, workdir=workdir, **kw)
    assert res.ok, res.explain(server)
    return res


def test_options_200(server, sipp_workdir):
    _sipp(server, "options.xml", sipp_workdir, service="ping")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_builtin_uac_calls_echo(server, sipp_workdir, transport):
    """sipp's own built-in UAC: INVITE, ACK, 1 s, BYE."""
    _sipp(server, "uac", sipp_workdir, service="echo", transport=transport, duration_ms=1000)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_echo(server, sipp_workdir, transport):
    """Three calls to echo, ACK and BYE sent to the 200's Contact."""
    _sipp(server, "uac_call.xml", sipp_workdir, service="echo", transport=transport,
          calls=3, rate=10, duration_ms=1000)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_hello_server_hangs_up(server, sipp_workdir, transport):
    """hello answers, plays its prompt and sends BYE; sipp answers the BYE."""
    _sipp(server, "uac_wait_bye.xml", sipp_workdir, service="hello", transport=transport)


def test_unknown_user_404(server):
    with SipUA(server.host, server.sip_port) as ua:
        with pytest.raises(SipError) as err:
            ua.call("no-such-scenario", timeout=10)
    assert err.value.status == 404, err.value


def test_unknown_user_404_tcp(server):
    with SipUA(server.host, server.sip_port, "tcp") as ua:
        with pytest.raises(SipError) as err:
            ua.call("no-such-scenario", timeout=10)
    assert err.value.status == 404, err.value


def test_options_200_peer(server):
    with SipUA(server.host, server.sip_port) as ua:
        assert ua.options().status == 200
    with SipUA(server.host, server.sip_port, "tcp") as ua:
        assert ua.options().status == 200


@pytest.fixture
def ringing_server(voxlab_factory):
    return voxlab_factory(scenarios={"ring": RING_FOREVER, "echo": ECHO})


def test_cancel_before_answer_gets_487(ringing_server, sipp_workdir):
    _sipp(ringing_server, "uac_cancel.xml", sipp_workdir, service="ring")


def test_cancel_before_answer_gets_487_peer(ringing_server):
    with SipUA(ringing_server.host, ringing_server.sip_port) as ua:
        call = ua.start_call("ring")
        final = call.cancel(timeout=10)
        assert call.cancel_response is not None and call.cancel_response.status == 200
        assert final.status == 487, final
        # the server is still fine afterwards
        assert ua.options().status == 200


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reinvite_changes_codec_sipp(server, sipp_workdir, transport):
    """sipp re-INVITEs with PCMA only: the 200 answers PCMA with a new o= version."""
    _sipp(server, "uac_reinvite.xml", sipp_workdir, service="echo", transport=transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_delayed_offer_sipp(server, sipp_workdir, transport):
    """sipp's INVITE has no SDP: voxlab offers in the 200, sipp answers in the ACK."""
    _sipp(server, "uac_delayed_offer.xml", sipp_workdir, service="echo", transport=transport,
          duration_ms=500)
    assert "ERROR" not in server.log_text(), server.describe(40)
