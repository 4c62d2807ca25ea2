"""`units` in the console is keyed by the names show(), the feed and the routes use."""

from __future__ import annotations

import pytest

from tests.console.conftest import attach_next, requires_sipp, wait_feed

pytestmark = [requires_sipp, pytest.mark.e2e]


def test_units_are_keyed_by_their_public_names(console, sipp_call):
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml"))
    call_id = reply["call"]
    wait_feed(console, f"{call_id} connected", kind="sip")
    r = console.request("eval", source="sorted(units), units[call.id] is call.media")
    assert r["error"] is None, r
    assert r["result"] == f"([{call_id!r}], True)"
    r = console.request("eval", source="call.hangup()")
    assert r["error"] is None, r
    assert reply["started"].wait(30) == 0
