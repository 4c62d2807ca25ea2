"""A sequence player heard by a caller: a tone script segment, then a WAV file, in
order, then PlayerEvents.PlaybackFinished; markers fire on the way."""

from __future__ import annotations

import pytest

from tests.e2e.test_call_media_api import wait_hearing
from tests.peers.sipua import SipUA

pytestmark = pytest.mark.e2e

SCENARIO = """
def on_alerting(e):
    call = e.call
    def connected(_):
        player = VoxEngine.create_sequence_player(["tone:400@-10;1.5(*/0/1)", "b900.wav"])
        player.add_marker(1000)
        player.add_event_listener(PlayerEvents.PlaybackMarkerReached,
                                  lambda ev: Logger.write(f"marker {ev.offset}"))
        player.add_event_listener(PlayerEvents.PlaybackFinished, lambda ev: Logger.write("sequence done"))
        player.send_media_to(call)
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_segments_play_in_order(voxlab_factory):
    srv = voxlab_factory(scenarios={"seq": SCENARIO}, tones={"b900": (900.0, 1.5)})
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("seq")
        wait_hearing(call.rtp, 400.0)
        assert srv.wait_for_log(r"marker 1000", timeout=5), srv.describe(40)
        wait_hearing(call.rtp, 900.0)
        assert srv.wait_for_log(r"sequence done", timeout=5), srv.describe(40)
        wait_hearing(call.rtp, None)
        call.bye()
