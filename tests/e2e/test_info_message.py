"""SIP INFO and MESSAGE round trips in a call (issue 9): sipp sends each to voxlab, the
scenario sees ``InfoReceived`` / ``MessageReceived`` and answers with ``send_info`` /
``send_message`` in the same dialog; sipp checks the bodies that come back."""

from __future__ import annotations

import pytest

from tests.conftest import requires_sipp
from tests.peers.sipp import run_sipp

pytestmark = [pytest.mark.e2e, requires_sipp]

SCENARIO = """
def on_alerting(e):
    call = e.call
    def info(ev):
        Logger.write(f"info {ev.mime_type} {ev.body!r}")
        call.send_info(ev.mime_type, "echo:" + ev.body, headers={"X-Echo": "1"})
    def message(ev):
        Logger.write(f"message {ev.text!r}")
        call.send_message("echo:" + ev.text)
    call.add_event_listener(CallEvents.InfoReceived, info)
    call.add_event_listener(CallEvents.MessageReceived, message)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()

def early(e):
    try:
        e.call.send_message("too early")
    except RuntimeError as exc:
        Logger.write(f"refused: {exc}")
    e.call.hangup()

VoxEngine.add_event_listener(AppEvents.CallAlerting,
                             lambda e: early(e) if e.destination == "early" else on_alerting(e))
"""


@pytest.fixture
def srv(voxlab_factory):
    return voxlab_factory(scenarios={"chat": SCENARIO, "early": SCENARIO})


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_info_and_message_round_trip(srv, tmp_path, transport):
    res = run_sipp(srv.host, srv.sip_port, "uac_info_message.xml", service="chat",
                   transport=transport, workdir=tmp_path)
    assert res.ok, res.explain(srv)
    assert srv.wait_for_log(r"info application/x-voxlab-test 'ping-info"), srv.describe(40)
    assert srv.wait_for_log(r"message 'ping-message"), srv.describe(40)
    assert "X-Echo: 1" in res.files["messages"]


def test_message_before_answer_is_a_clear_error(srv, tmp_path):
    run_sipp(srv.host, srv.sip_port, "uac", service="early", workdir=tmp_path)
    assert srv.wait_for_log(r"refused: send_message needs a connected call"), srv.describe(40)
