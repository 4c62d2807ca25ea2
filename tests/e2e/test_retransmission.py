"""A dropped 200 OK is retransmitted until ACKed (RFC 3261 13.3.1.4)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import requires_sipp
from tests.peers.sipp import run_sipp
from tests.peers.sipua import SipUA

pytestmark = pytest.mark.e2e


@requires_sipp
def test_unacked_200_is_retransmitted_sipp(server, sipp_workdir):
    # -nr: see the comment in uac_retrans.xml (sipp would swallow the resends)
    res = run_sipp(server.host, server.sip_port, "uac_retrans.xml", workdir=sipp_workdir,
                   service="echo", extra=["-nr"], trace_counts=True)
    assert res.ok, res.explain(server)


def test_unacked_200_is_retransmitted_peer(server):
    """The same 200 arrives again at T1 and 2*T1 intervals; after our ACK the
    resending stops and the call is normal."""
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo", ack=False)
        first = call.final
        deadline = time.perf_counter() + 4.0
        while len(call.ok_times) < 3 and time.perf_counter() < deadline:
            time.sleep(0.02)
        times = list(call.ok_times)
        assert len(times) >= 3, (f"200 OK arrived {len(times)} time(s) in 4 s without an ACK; "
                                 "expected resends at ~0.5 s and ~1.5 s\n" + server.describe(60))
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert 0.3 <= gaps[0] <= 1.0, f"first resend after {gaps[0]:.2f} s (T1 = 0.5 s)"
        assert gaps[1] >= 0.8 * gaps[0], f"resend interval did not grow: {gaps}"
        # each resend is the same response
        resent = [m for m in call._responses.queue if m.status == 200]
        for m in resent:
            assert m.tag("To") == first.tag("To")
            assert m.body == first.body

        call.send_ack()
        n = len(call.ok_times)
        time.sleep(2.5)          # longer than the next resend interval (2 s)
        assert len(call.ok_times) == n, "200 OK still resent after the ACK"
        assert call.bye().status == 200
