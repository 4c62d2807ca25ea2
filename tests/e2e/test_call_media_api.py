"""The Call's media API heard by a real caller: a playback replaces the one
before it, stop_playback() brings back the call's previous input,
stop_media_to() leaves silence, PlaybackFinished fires at a file's end.
Each step is triggered by an RFC 4733 digit and checked by FFT."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.peers.sipua import RtpStream, SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.g711 import ulaw_decode
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e

SCENARIO = """
def on_alerting(e):
    call = e.call
    call.handle_tones(True)
    def connected(ev):
        call.send_media_to(call)                 # echo underneath...
        call.start_playback("a700.wav", loop=True)   # ...hidden by a looping playback
    def tone(ev):
        Logger.write(f"digit {ev.tone}")
        if ev.tone == "1":
            call.start_playback("b1500.wav", loop=True)  # replaces the 700 Hz one
        elif ev.tone == "2":
            call.stop_playback()                     # the echo comes back
        elif ev.tone == "3":
            call.stop_media_to(call)                 # nothing routed in: silence
        elif ev.tone == "4":
            call.start_playback("c300.wav")          # 0.6 s, once
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.PlaybackFinished, lambda ev: Logger.write("playback finished"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("mediaapi"), {"media": SCENARIO},
                    tones={"a700": (700.0, 1.0), "b1500": (1500.0, 1.0), "c300": (300.0, 0.6)})
    yield server
    problem = _finish(server)
    assert problem is None, problem


def frames_since(rtp: RtpStream, mark: int) -> list[np.ndarray]:
    return [ulaw_decode(p.packet.payload).astype(np.float64) for p in rtp.packets[mark:]
            if p.packet.payload_type == 0 and len(p.packet.payload) == 160]


def wait_hearing(rtp: RtpStream, freq: float | None, timeout: float = 10.0, frames: int = 15) -> None:
    """Wait until the last ``frames`` frames are a tone at ``freq`` (None: silence)."""
    mark = len(rtp.packets)
    deadline = time.monotonic() + timeout
    last = "nothing"
    while time.monotonic() < deadline:
        got = frames_since(rtp, mark)[-frames:]
        if len(got) == frames:
            pcm = np.concatenate(got)
            level = rms_dbfs(pcm)
            if freq is None:
                if level < -50:
                    return
                last = f"level {level:.1f} dBFS"
            else:
                heard = dominant_frequency(pcm)
                if level > -20 and abs(heard - freq) < 20:
                    return
                last = f"{heard:.0f} Hz at {level:.1f} dBFS"
        time.sleep(0.05)
    raise AssertionError(f"never heard {freq or 'silence'}; last: {last}")


def test_playback_replace_stop_and_routes_as_heard(srv):
    with SipUA(srv.host, srv.sip_port) as ua:
        call = ua.call("media", codecs=("PCMU",))
        rtp = call.rtp
        wait_hearing(rtp, 700.0)
        rtp.send_dtmf("1")
        wait_hearing(rtp, 1500.0)                  # the second playback replaced the first
        rtp.send_dtmf("2")
        assert srv.wait_for_log(r"digit 2", timeout=5)
        sender = rtp.send_audio_async(sine(1000.0, 3.0, amplitude=0.5))
        wait_hearing(rtp, 1000.0)                  # the echo is back under the stopped playback
        sender.join()
        rtp.send_dtmf("3")
        assert srv.wait_for_log(r"digit 3", timeout=5)
        sender = rtp.send_audio_async(sine(1000.0, 2.0, amplitude=0.5))
        wait_hearing(rtp, None)                    # the tone goes in, nothing comes back
        sender.join()
        rtp.send_dtmf("4")
        wait_hearing(rtp, 300.0, frames=10)
        assert srv.wait_for_log(r"playback finished", timeout=5), srv.describe(30)
        wait_hearing(rtp, None)                    # after its end: the previous input, none
        call.bye()
    assert "ERROR" not in srv.log_text(), srv.describe(40)
