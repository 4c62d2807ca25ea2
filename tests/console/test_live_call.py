"""The console against live sipp calls in `echo`: attach, evaluate, show, feed, completion, hangup."""

from __future__ import annotations

import pytest

from tests.console.conftest import attach_next, requires_sipp, wait_feed
from tests.peers.server import sip_options_ping

pytestmark = [requires_sipp, pytest.mark.e2e]


def _eval(console, source: str, **kw) -> dict:
    return console.request("eval", source=source, **kw)


def test_attach_state_show_complete_and_hangup(console, sipp_call):
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml"))
    sipp = reply["started"]
    call_id = reply["call"]
    assert call_id and call_id.startswith(reply["session"]["id"])
    assert "show()" in reply["banner"]
    wait_feed(console, f"{call_id} connected", kind="sip")

    r = _eval(console, "call.state")
    assert r["error"] is None, r
    assert r["result"] == "'CONNECTED'"

    out = _eval(console, "show()")["output"]
    assert call_id in out and "CONNECTED" in out and "PCMU" in out
    assert f"{call_id} -> {call_id}" in out          # echo: the call's audio routed into itself

    ladder = _eval(console, "ladder()")["output"]
    assert "INVITE sip:echo@" in ladder and "200 OK" in ladder and "ACK" in ladder

    names = [c["text"] for c in console.request("complete", source="call.se", cursor=7)["completions"]]
    assert "send_media_to" in names and "send_digits" in names
    assert all(n.startswith("se") for n in names)

    # the live table has the call
    sessions = console.request("sessions")["sessions"]
    mine = [s for s in sessions if s["id"] == reply["session"]["id"]]
    assert mine and mine[0]["calls"][0]["state"] == "CONNECTED"

    r = _eval(console, "call.hangup()")
    assert r["error"] is None, r
    rc = sipp.wait(30)
    assert rc == 0, "sipp did not get its BYE:\n" + sipp.explain()
    ended = console.wait_event(lambda e: e.get("event") == "session_ended", timeout=20)
    assert ended["session"] == reply["session"]["id"]
    assert _eval(console, "call.state")["result"] == "'DISCONNECTED'"   # post-mortem inspection works


def test_feed_shows_dtmf_from_sipp(console, sipp_call):
    reply = attach_next(console, lambda: sipp_call("uac_dtmf.xml"))
    sipp = reply["started"]
    entry = wait_feed(console, "DTMF 1", kind="dtmf", timeout=20)
    assert entry["session"] == reply["session"]["id"]
    assert sipp.wait(30) == 0, sipp.explain()
    console.wait_event(lambda e: e.get("event") == "session_ended", timeout=20)
    # the whole story of the call went through the feed
    kinds = {e["entry"]["kind"] for e in console.history if e.get("event") == "feed"}
    assert {"sip", "media", "dtmf", "event", "session"} <= kinds


def test_eval_output_errors_deferreds_and_budget(vx, console, sipp_call):
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml"))
    sipp = reply["started"]
    wait_feed(console, "connected", kind="sip")

    r = _eval(console, "x = 20\nprint('hello', x)\nx + 22")
    assert r["output"] == "hello 20\n" and r["result"] == "42"
    r = _eval(console, "def f():\n    return 1 / 0\n\nf()")
    assert r["result"] is None and "ZeroDivisionError" in r["error"] and "return 1 / 0" in r["error"]
    r = _eval(console, "1 +")
    assert "SyntaxError" in r["error"]
    r = _eval(console, "exit()")
    assert "SystemExit" in r["error"]

    # a Deferred shows as <Deferred #n>; its result is pushed when it fires
    r = _eval(console, "from twisted.internet import task, reactor\n"
                       "task.deferLater(reactor, 0.2, lambda: 'fired!')")
    n = r["deferred"]
    assert r["result"] == f"<Deferred #{n}>"
    event = console.wait_event(lambda e: e.get("event") == "deferred" and e["n"] == n, timeout=10)
    assert event["result"] == "'fired!'" and event["error"] is None
    # top-level await works too
    r = _eval(console, "await task.deferLater(reactor, 0.1, lambda: 7) * 6")
    event = console.wait_event(lambda e: e.get("event") == "deferred" and e["n"] == r["deferred"], timeout=10)
    assert event["result"] == "42"

    # an infinite loop is interrupted by the time budget; the server keeps serving
    r = _eval(console, "while True:\n    pass", timeout=30)
    assert r["interrupted"] is True and "BudgetExceeded" in r["error"]
    assert _eval(console, "call.state")["result"] == "'CONNECTED'"
    assert sip_options_ping(vx.host, vx.sip_port, timeout=2) == 200

    # after an await: printed output comes to us, scenario names work, and a runaway loop is
    # still interrupted (it would otherwise end by itself only after 60 s: the wait is 20 s)
    r = _eval(console, "from voxlab.scenario import VoxEngine as V\n"
                       "await task.deferLater(reactor, 0.1, lambda: None)\n"
                       "print('printed after the await', call.id)\n"
                       "V.custom_data()")
    n = r["deferred"]
    output = console.wait_event(lambda e: e.get("event") == "output" and e["n"] == n, timeout=10)
    assert output["text"] == f"printed after the await {reply['call']}\n"
    event = console.wait_event(lambda e: e.get("event") == "deferred" and e["n"] == n, timeout=10)
    assert event["error"] is None and event["result"] == "''"
    r = _eval(console, "import time\nawait task.deferLater(reactor, 0.1, lambda: None)\n"
                       "t0 = time.monotonic()\nwhile time.monotonic() - t0 < 60:\n    pass")
    event = console.wait_event(lambda e: e.get("event") == "deferred" and e["n"] == r["deferred"],
                               timeout=20)
    assert event["interrupted"] is True and "BudgetExceeded" in event["error"]
    assert _eval(console, "call.state")["result"] == "'CONNECTED'"
    assert sip_options_ping(vx.host, vx.sip_port, timeout=2) == 200

    _eval(console, "call.hangup()")
    assert sipp.wait(30) == 0, sipp.explain()


def test_attach_by_call_id_and_prefix(vx, console, sipp_call):
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml"))
    sipp = reply["started"]
    sid, cid = reply["session"]["id"], reply["call"]
    wait_feed(console, "connected", kind="sip")
    from voxlab.console.client import ConsoleClient, Endpoint
    with ConsoleClient.connect(Endpoint(socket_path=vx.data_dir / "console.sock")) as other:
        assert other.request("attach", target=cid)["call"] == cid
        assert other.request("attach", target=sid.split("-")[0])["session"]["id"] == sid
        assert other.request("attach", target="last")["session"]["id"] == sid
        err = other.request("attach", target="nope", check=False)
        assert err["ok"] is False and "no session or call" in err["error"]
        other.request("hangup", call=cid)
    assert sipp.wait(30) == 0, sipp.explain()


def test_unattached_and_unknown_requests(console):
    r = console.request("eval", source="1", check=False)
    assert r["ok"] is False and "attach" in r["error"]
    r = console.request("frobnicate", check=False)
    assert r["ok"] is False and "unknown op" in r["error"]
    r = console.request("hangup", call="s999-xxxx-c1", check=False)
    assert r["ok"] is False
    console.send({"no": "op"})
    console.sock.sendall(b"this is not json\n")
    assert console.request("ping")["ok"] is True      # still served after bad input
