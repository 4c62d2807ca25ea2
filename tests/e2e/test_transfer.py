"""Blind transfer (REFER, RFC 3515) through an ``easy_process`` bridge (issue 9): a party
of a bridged call refers it to a new target; voxlab accepts (202), reports progress in
NOTIFYs with sipfrag bodies, calls the target and, once it answers, bridges the other party
to it and hangs up the transferor. Real peers: sipp on both sides, and the Python test
peer where audio is checked (FFT)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import requires_sipp
from tests.e2e.test_outbound import hears_own_tone, out_to
from tests.e2e.test_peers_vs_sipp import sipp_uas  # noqa: F401  (a fixture, used by name)
from tests.peers.sipp import run_sipp
from tests.peers.sipua import SipError, SipUA

pytestmark = [pytest.mark.e2e, requires_sipp]


def test_refer_from_a_sipp_caller_moves_the_bridge_to_the_new_target(server, sipp_uas, tmp_path):
    """sipp calls out-<bob>, then REFERs the call to carol: sipp sees 202, NOTIFYs up to
    ``SIP/2.0 200 OK`` and voxlab's BYE; bob's sipp is then in a call with carol's."""
    bob = sipp_uas(calls=1)
    carol = sipp_uas(calls=1)
    carol_uri = f"sip:carol@127.0.0.1:{carol.port}"
    res = run_sipp(server.host, server.sip_port, "uac_refer.xml", service=out_to(bob.port),
                   workdir=tmp_path / "transferor", timeout=60,
                   extra=["-key", "refer_to", carol_uri])
    assert res.ok, res.explain(server)
    assert server.wait_for_log(rf"transferring \S+ to {carol_uri}"), server.describe(40)
    assert bob.proc.poll() is None and carol.proc.poll() is None   # both still in their call


def test_a_callee_refers_the_caller_to_a_target_the_caller_then_hears(server, sipp_uas):
    """The Python peer calls out-<alice>; alice's sipp (no echo: nothing comes back from it)
    REFERs the call to carol (a sipp that echoes). The caller's tone coming back proves it
    now talks to carol; alice sees the NOTIFYs and voxlab's BYE."""
    carol = sipp_uas(calls=1)
    alice = sipp_uas(scenario="uas_refer.xml", calls=1, echo=False,
                     keys={"refer_to": f"sip:carol@127.0.0.1:{carol.port}"})
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call(out_to(alice.port), codecs=("PCMU",))
        hears_own_tone(call, 700.0)
        assert alice.proc.wait(15) == 0, "alice did not get 202, the NOTIFYs up to 200 OK, and a BYE"
        assert call.bye().status == 200
    assert carol.proc.wait(10) == 0, "carol's call did not end with the caller's BYE"


def wait_final_notify(call, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for req in call.requests:
            if req.method == "NOTIFY" and "terminated" in (req.get("Subscription-State") or ""):
                return req
        time.sleep(0.05)
    raise AssertionError(f"no final NOTIFY; got {[r.method for r in call.requests]}")


def test_a_transfer_to_a_busy_target_reports_486_and_keeps_the_bridge(server, sipp_uas):
    bob = sipp_uas(calls=1)
    busy = sipp_uas(scenario="uas_busy.xml", calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call(out_to(bob.port), codecs=("PCMU",))
        accepted = call.request("REFER", extra={"Refer-To": f"<sip:dave@127.0.0.1:{busy.port}>"})
        assert accepted.status == 202, accepted
        final = wait_final_notify(call)
        notifies = [r for r in call.requests if r.method == "NOTIFY"]
        assert notifies[0].body.startswith(b"SIP/2.0 100 Trying"), notifies[0]
        assert final.body.startswith(b"SIP/2.0 486"), final
        assert final.get("Event", "").startswith("refer")
        assert (final.get("Content-Type") or "").startswith("message/sipfrag")
        hears_own_tone(call, 500.0)             # still bridged to bob, who echoes
        assert call.bye().status == 200
    assert busy.proc.wait(10) == 0


@pytest.mark.parametrize("refer_to, status", [(None, 400), ("<tel:+15551234>", 416),
                                               ("<sip:x@127.0.0.1?Replaces=abc>", 603)])
def test_refers_that_cannot_be_served_get_their_error(server, sipp_uas, refer_to, status):
    bob = sipp_uas(calls=1)
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call(out_to(bob.port), codecs=("PCMU",))
        extra = {"Refer-To": refer_to} if refer_to else {}
        with pytest.raises(SipError) as refused:
            call.request("REFER", extra=extra)
        assert refused.value.status == status
        hears_own_tone(call, 650.0)             # the call goes on
        assert call.bye().status == 200


def test_a_refer_the_scenario_does_not_listen_for_is_declined(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("echo", codecs=("PCMU",))
        with pytest.raises(SipError) as refused:
            call.request("REFER", extra={"Refer-To": "<sip:x@127.0.0.1>"})
        assert refused.value.status == 603
        assert call.bye().status == 200
    assert server.wait_for_log(r"REFER to sip:x@127\.0\.0\.1 declined: the scenario does not listen")
