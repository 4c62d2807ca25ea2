"""Changing a live call from the console: the caller hears it; reload() changes the next event."""

from __future__ import annotations

import threading

import pytest

from tests.console.conftest import attach_next, wait_feed
from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency
from voxlab.media.tones import sine
from voxlab.media.wav import WavWriter

pytestmark = pytest.mark.e2e

FRAME = 160


def _eval(console, source: str) -> dict:
    reply = console.request("eval", source=source)
    assert reply["error"] is None, reply["error"]
    return reply


def _freq(heard, first_packet: int, packets: int) -> float:
    seg = heard[first_packet * FRAME:(first_packet + packets) * FRAME]
    assert len(seg) >= packets * FRAME // 2, f"only {len(seg)} samples to analyse"
    return dominant_frequency(seg)


def test_playback_started_at_the_console_is_heard(vx, console):
    wav = vx.data_dir.parent / "tone500.wav"
    with WavWriter(wav) as writer:
        writer.write(sine(500.0, 2.0, amplitude=0.5))
    stop = threading.Event()
    with SipUA(vx.host, vx.sip_port) as ua:
        reply = attach_next(console, lambda: ua.call("echo"))
        call = reply["started"]
        rtp = call.rtp
        sender = rtp.send_audio_async(sine(1000.0, 12.0, amplitude=0.5), stop=stop)
        try:
            # 1 kHz goes in, echo sends it back
            assert rtp.wait_packets(60, 10), "no echo came back"
            heard = rtp.received_audio()
            assert abs(_freq(heard, len(heard) // FRAME - 40, 40) - 1000) <= 20

            # the REPL starts a 500 Hz playback on the call: the caller now hears 500 Hz
            n0 = len(rtp.audio_packets())
            r = _eval(console, f"player = call.start_playback({str(wav)!r})\nplayer")
            assert "Player" in r["result"]
            wait_feed(console, "route", kind="media")
            assert rtp.wait_packets(n0 + 60, 10)
            heard = rtp.received_audio()
            assert abs(_freq(heard, n0 + 10, 40) - 500) <= 20, "the playback is not what the caller hears"

            # when it finishes, the echo route comes back by itself: 1 kHz again
            wait_feed(console, "PlaybackFinished", kind="event", timeout=10)
            n1 = len(rtp.audio_packets())
            assert rtp.wait_packets(n1 + 50, 10)
            heard = rtp.received_audio()
            assert abs(_freq(heard, n1 + 10, 40) - 1000) <= 20
        finally:
            stop.set()
            sender.join(2)
            call.bye()
    console.wait_event(lambda e: e.get("event") == "session_ended", timeout=20)


def test_reload_changes_the_next_event_of_the_live_call(vx, console):
    path = vx.scenarios_dir / "reloadme.py"
    original = path.read_text()
    try:
        with SipUA(vx.host, vx.sip_port) as ua:
            reply = attach_next(console, lambda: ua.call("reloadme"))
            call = reply["started"]
            wait_feed(console, "connected", kind="sip")
            _eval(console, "kept = 'console state'")

            call.rtp.send_dtmf("1")
            wait_feed(console, "tone v1 1", kind="log")
            wait_feed(console, "lambda v1 1", kind="log")

            # edit the file, reload into the live session
            path.write_text(original.replace("v1", "v2"))
            out = _eval(console, "reload()")["output"]
            assert "reloaded reloadme.py" in out and "on_tone" in out, out
            assert "on_alerting.<locals>.<lambda>" in out, out

            call.rtp.send_dtmf("2")
            wait_feed(console, "tone v2 2", kind="log")
            wait_feed(console, "lambda v2 2", kind="log")
            texts = [e["entry"]["text"] for e in console.history if e.get("event") == "feed"]
            assert not any("v1 2" in t for t in texts), texts

            # nothing doubled, the call and console names survived
            r = _eval(console, "(len(VoxEngine.listeners(AppEvents.CallAlerting)), "
                               "len(call.listeners(CallEvents.ToneReceived)), call.state, kept)")
            assert r["result"] == "(1, 2, 'CONNECTED', 'console state')"

            # a broken file: reload reports it and the running code stays as it was
            path.write_text(original.replace("v1", "v3") + "\ndef broken(:\n")
            r = console.request("eval", source="reload()")
            assert "SyntaxError" in r["error"]
            call.rtp.send_dtmf("3")
            wait_feed(console, "tone v2 3", kind="log")
            call.bye()
        console.wait_event(lambda e: e.get("event") == "session_ended", timeout=20)
    finally:
        path.write_text(original)
