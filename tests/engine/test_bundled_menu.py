"""The bundled IVR scenario `menu`: a prompt, then digits choose echo or hang up."""

from __future__ import annotations

import pytest

from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e


def test_menu_prompt_then_1_echoes_then_hash_hangs_up(server):
    with SipUA(server.host, server.sip_port) as ua:
        call = ua.call("menu")
        rtp = call.rtp
        rtp.send_silence(1.0)
        prompt = rtp.received_audio()
        assert rms_dbfs(prompt[-4000:]) > -40, "no prompt heard"
        rtp.send_dtmf("1")
        assert server.wait_for_log(r"caller pressed 1", timeout=5), server.describe(40)
        mark = len(rtp.audio_packets())
        rtp.send_audio(sine(1000.0, 1.0))
        rtp.wait_quiet(0.3, timeout=5)
        echoed = rtp.received_audio()[mark * 160 + 1600:]
        assert abs(dominant_frequency(echoed) - 1000.0) < 20
        rtp.send_dtmf("#")
        assert call.wait_bye(10), "menu did not hang up on #\n" + server.describe(40)
