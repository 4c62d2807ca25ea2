"""DTMF in both modes on real calls: tones in the audio of a caller that offers no
telephone-event are ToneReceived(type="inband"); handle_tones(True) strips them from
what is routed on (an echo does not send the caller's own digits back); send_digits in
in-band mode reaches the caller as audible DTMF; speech is no digit."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from tests.peers.sipua import SipUA
from voxlab.media.analysis import detect_dtmf_digits
from voxlab.media.dtmf import InbandDtmfDetector
from voxlab.media.tones import dtmf_sequence
from voxlab.media.wav import read_wav

pytestmark = pytest.mark.e2e

SCENARIO = """
def on_alerting(e):
    call = e.call
    call.handle_tones(True)
    def connected(_):
        call.send_media_to(call)             # an echo: what the caller says comes back
        if e.destination == "sender":
            call.send_digits("42", mode="inband")
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.ToneReceived, lambda ev: Logger.write(f"tone {ev.tone} {ev.type}"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("dtmfmodes"), {"tones": SCENARIO, "sender": SCENARIO})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def test_inband_digits_are_reported_and_stripped_from_the_echo(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("tones", dtmf_pt=None)
        call.rtp.send_silence(0.3)
        call.rtp.send_audio(dtmf_sequence("159#", 0.1, 0.1))
        call.rtp.send_silence(0.5)
        assert srv.wait_for_log(r"tone # inband", timeout=10), srv.describe(40)
        digits = re.findall(r"\] tone (.) inband", srv.log_text())
        assert digits == ["1", "5", "9", "#"]
        echoed = call.rtp.received_audio()
        assert detect_dtmf_digits(echoed) == "", "the caller heard its own digits back"
        call.bye()


def test_send_digits_inband_is_heard_as_dtmf(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("sender", dtmf_pt=None)
        call.rtp.send_silence(1.0)
        assert detect_dtmf_digits(call.rtp.received_audio()) == "42"
        call.bye()


def test_speech_is_not_a_digit(tmp_path):
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path),
                    "Thank you for calling. Your call is important to us. Please hold the line, "
                    "one of our agents will be with you shortly. Press nine to hear the menu again, "
                    "or stay on the line for an operator. Seven, eight, three, zero."], check=True)
    pcm = read_wav(path, 8000)
    assert len(pcm) > 8000 * 5
    assert InbandDtmfDetector().feed_many(pcm) == ""
    # and after a G.711 round trip, as a call would carry it
    from voxlab.media.g711 import ulaw_decode, ulaw_encode
    assert InbandDtmfDetector().feed_many(ulaw_decode(ulaw_encode(pcm))) == ""
    assert InbandDtmfDetector().feed_many(np.concatenate([pcm, dtmf_sequence("7")])) == "7"
