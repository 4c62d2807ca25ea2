"""Routes that need a registered user (issue 9): ``auth = true`` on a ``[[routes]]`` rule
makes voxlab challenge the INVITE with 407 (Digest, qop=auth); sipp answers with
``[authentication]``; the scenario sees who called in ``e.call.user``. Wrong credentials get
403; other routes stay open."""

from __future__ import annotations

import pytest

from tests.conftest import requires_sipp
from tests.peers.sipp import run_sipp
from tests.peers.sipua import SipError, SipUA

pytestmark = [pytest.mark.e2e, requires_sipp]

WHOAMI = """
def on_alerting(e):
    Logger.write(f"caller authenticated as {e.call.user}")
    e.call.answer()
    e.call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

CONFIG = """
[users]
alice = "wonder-land"

[[routes]]
pattern = "private-.*"
scenario = "whoami.py"
auth = true
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("auth"), {"whoami": WHOAMI, "echo": "VoxEngine.add_event_listener(AppEvents.CallAlerting, lambda e: e.call.answer())\n"}, CONFIG)
    yield server
    problem = _finish(server)
    if problem:
        pytest.fail(problem, pytrace=False)


def sipp_as(srv, tmp_path, scenario, user, password):
    return run_sipp(srv.host, srv.sip_port, scenario, service="private-line", workdir=tmp_path,
                    timeout=60, extra=["-au", user, "-ap", password, "-key", "user", user])


def test_sipp_answers_the_407_and_the_scenario_sees_the_user(srv, tmp_path):
    res = sipp_as(srv, tmp_path, "uac_auth.xml", "alice", "wonder-land")
    assert res.ok, res.explain(srv)
    assert srv.wait_for_log(r"caller authenticated as alice"), srv.describe(40)


def test_a_wrong_password_gets_403_after_the_challenge(srv, tmp_path):
    res = sipp_as(srv, tmp_path, "uac_auth_refused.xml", "alice", "guess")
    assert res.ok, res.explain(srv)
    assert srv.wait_for_log(r"call to 'private-line' refused: Forbidden"), srv.describe(40)


def test_the_challenge_names_our_realm_and_qop_and_open_routes_need_none(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        with pytest.raises(SipError) as info:
            ua.call("private-line")
        assert info.value.status == 407
        challenge = info.value.response.get("Proxy-Authenticate") or ""
        assert challenge.startswith("Digest ") and 'qop="auth"' in challenge, challenge
        call = ua.call("echo")                       # a route without auth = true
        assert call.bye().status == 200


DIAL = """
def on_alerting(e):
    out = VoxEngine.call_sip(e.headers["X-Target"], callerid="alice", auth_user="alice",
                             password=e.headers["X-Password"])
    out.add_event_listener(CallEvents.Connected, lambda ev: (Logger.write("out connected"), out.hangup()))
    out.add_event_listener(CallEvents.Failed, lambda ev: Logger.write(f"out failed {ev.code}"))
    e.call.answer()

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

SHA256_ONLY = """
[users]
alice = "wonder-land"

[registrar]
algorithms = ["SHA-256"]

[[routes]]
pattern = "private-.*"
scenario = "whoami.py"
auth = true
"""


@pytest.mark.parametrize("password, outcome", [("wonder-land", "out connected"), ("guess", "out failed 403")])
def test_call_sip_answers_a_sha256_proxy_challenge(voxlab_factory, password, outcome):
    """voxlab's UAC answers a 407 that offers SHA-256 only (RFC 8760). sipp 3.6 cannot
    challenge with SHA-256, so the challenger is a second voxlab, whose SHA-256 check is
    itself tested against linphone (tests/interop/test_digest_linphone.py). The callee offers
    SHA-256 alone and refuses an answer with any algorithm it did not offer, so getting
    through means the answer was SHA-256."""
    callee = voxlab_factory(scenarios={"whoami": WHOAMI}, config=SHA256_ONLY)
    caller = voxlab_factory(scenarios={"dial": DIAL})
    with SipUA(caller.host, caller.sip_port) as ua:
        call = ua.call("dial", headers={"X-Target": f"sip:private-line@127.0.0.1:{callee.sip_port}",
                                        "X-Password": password})
        assert caller.wait_for_log(outcome), caller.describe(40) + callee.describe(40)
        call.bye()
    if password == "wonder-land":
        assert callee.wait_for_log(r"caller authenticated as alice"), callee.describe(40)
