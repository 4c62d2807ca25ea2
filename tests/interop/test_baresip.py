"""Interop: baresip 1.0, a real and independent SIP phone, calls voxlab.

baresip's audio source is a WAV file (``aufile``); what it hears is dumped by
its ``sndfile`` module and analysed here.  Its SIP trace (``-s``) tells who
sent which message.  (baresip as the callee needs outbound calls: not yet.)
"""

from __future__ import annotations

import re
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.interop.baresip import BARESIP, Baresip, sip_messages
from tests.peers.server import REPO_ROOT
from voxlab.console.client import ConsoleClient, Endpoint
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.wav import read_wav

requires_baresip = pytest.mark.skipif(
    BARESIP is None, reason="baresip (Debian package baresip-core) is not on PATH")

pytestmark = [pytest.mark.e2e, requires_baresip]

RATE = 8000
SKIP = int(0.3 * RATE)          # the start of a call: jitter buffer filling, echo arriving
TONE_SECONDS = 3.0
HELLO_WAV = REPO_ROOT / "scenarios" / "hello.wav"
BYE_ANSWERED = r"^SIP/2\.0 200 [^\n]*\n(?:[^\n]+\n)*?CSeq: *\d+ BYE$"

DIGITS = """
def on_alerting(e):
    call = e.call

    def tone(ev):
        Logger.write(f"TONE {ev.tone}")

    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.handle_tones(True)
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

# The same, and every digit is sent back to the caller as RFC 4733.
DIGITS_BACK = DIGITS.replace('Logger.write(f"TONE {ev.tone}")',
                             'Logger.write(f"TONE {ev.tone}")\n        call.send_digits(ev.tone)')


def write_wav(path: Path, pcm: np.ndarray, rate: int = RATE) -> Path:
    """16-bit mono WAV with the standard library (independent of voxlab's writer)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return path


def tone_wav(path: Path, seconds: float, freq: float = 1000.0, amplitude: float = 0.5) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    return write_wav(path, np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * t)))


def quiet_wav(path: Path, seconds: float) -> Path:
    """A near-silent source (-66 dBFS hum), longer than anything the server plays,
    so the call is not ended by baresip reaching the end of its file."""
    return tone_wav(path, seconds, freq=300.0, amplitude=0.0005)


def heard(bs: Baresip) -> np.ndarray:
    dumps = bs.dumps("dec")
    assert len(dumps) == 1, f"expected one sndfile decode dump, got {dumps}\n" + bs.describe()
    return read_wav(dumps[0])


def dial(bs: Baresip, srv, user: str, **kw) -> None:
    """Start baresip dialling ``user`` at ``srv``; wait until it is connected."""
    bs.start(f"dsip:{user}@{srv.host}:{srv.sip_port}", **kw)
    m = bs.wait_for(r"Call established|ua_connect failed|Call with .* terminated", timeout=15)
    assert m is not None and m.group(0) == "Call established", (
        "baresip's call was not established\n" + bs.describe() + "\n\n" + srv.describe(60))


def ended_cleanly(bs: Baresip, srv, bye_from: str) -> None:
    """One BYE, sent by ``bye_from`` ("server" or "baresip"), answered 200."""
    assert bs.wait_for(BYE_ANSWERED, timeout=10), "no 200 OK to a BYE\n" + bs.describe()
    msgs = sip_messages(bs.output())
    server_addr = f"{srv.host}:{srv.sip_port}"
    byes = [m for m in msgs if m.method == "BYE"]
    assert len(byes) == 1, f"expected one BYE, saw {[m.start for m in byes]}\n" + bs.describe()
    bye = byes[0]
    sent_by_server = bye.src == server_addr
    assert sent_by_server == (bye_from == "server"), (
        f"BYE sent by {bye.src}, expected the {bye_from} to send it\n" + bs.describe())
    ok = [m for m in msgs if m.status == 200 and m.cseq_method == "BYE"
          and m.src == bye.dst and m.dst == bye.src]
    assert ok, "the BYE was not answered 200 OK\n" + bs.describe()


@pytest.fixture
def baresip_peer(tmp_path):
    """Factory of baresip peers under tmp_path; every one is stopped at the end."""
    peers: list[Baresip] = []

    def make(srv, source: Path, **kw) -> Baresip:
        bs = Baresip(tmp_path / f"baresip{len(peers)}", source=source,
                     avoid=[srv.rtp_range, (srv.sip_port, srv.sip_port), *(p.ports for p in peers)],
                     host=srv.host, **kw)
        peers.append(bs)
        return bs

    yield make
    for bs in peers:
        bs.stop()


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_baresip_hears_its_tone_echoed(server, baresip_peer, tmp_path, codec):
    src = tone_wav(tmp_path / "tone.wav", TONE_SECONDS)
    bs = baresip_peer(server, src, codecs=codec)
    dial(bs, server, "echo")
    assert f"Set audio decoder: {codec} 8000Hz 1ch" in bs.output(), bs.describe()
    # baresip hangs up by itself when its source file ends ("audio error
    # (0,end of file)"), so the call lasts TONE_SECONDS.
    assert bs.wait_for(r"Call with .* terminated", timeout=TONE_SECONDS + 15), bs.describe()
    ended_cleanly(bs, server, bye_from="baresip")
    assert bs.stop() == 0, bs.describe()

    got = heard(bs)
    assert len(got) >= (TONE_SECONDS - 1.0) * RATE, (
        f"heard only {len(got) / RATE:.2f} s of a {TONE_SECONDS} s call\n" + bs.describe())
    body = got[SKIP:]
    freq = dominant_frequency(body)
    assert abs(freq - 1000.0) <= 20.0, f"echo came back at {freq:.1f} Hz"
    level, ref = rms_dbfs(body), rms_dbfs(read_wav(src))
    assert abs(level - ref) <= 3.0, f"echo level {level:.1f} dBFS, source {ref:.1f} dBFS"


def test_baresip_hears_hello_and_server_hangs_up(server, baresip_peer, tmp_path):
    bs = baresip_peer(server, quiet_wav(tmp_path / "quiet.wav", 30.0))
    t0 = time.monotonic()
    dial(bs, server, "hello")
    t_connected = time.monotonic()
    assert bs.wait_for(r"Call with .* terminated", timeout=20), (
        "the server did not end the call\n" + bs.describe() + "\n\n" + server.describe(60))
    call_seconds = time.monotonic() - t_connected
    ended_cleanly(bs, server, bye_from="server")
    assert "session closed" in bs.output(), bs.describe()
    assert bs.stop() == 0, bs.describe()

    greeting = read_wav(HELLO_WAV)
    greeting_s = len(greeting) / RATE
    assert greeting_s - 0.5 <= call_seconds <= greeting_s + 3.0, (
        f"call lasted {call_seconds:.2f} s for a {greeting_s:.2f} s greeting "
        f"(dial at +{t_connected - t0:.2f} s)")
    got = heard(bs)
    assert abs(len(got) / RATE - greeting_s) <= 0.5, (
        f"heard {len(got) / RATE:.2f} s of audio, the greeting is {greeting_s:.2f} s")
    level, ref = rms_dbfs(got), rms_dbfs(greeting)
    assert level > -40.0, f"heard {level:.1f} dBFS: silence, not speech"
    assert abs(level - ref) <= 3.0, f"greeting heard at {level:.1f} dBFS, file is {ref:.1f} dBFS"


def type_digit(bs: Baresip, srv, d: str) -> int:
    """Type one digit into baresip's menu during a call (sent as RFC 4733) and
    wait until baresip has ended the event and the scenario has logged it.
    Returns the output line index from before the key."""
    mark = len(bs.lines)
    bs.send_keys(d)
    # baresip ends the event when the key is "released" (~250 ms later);
    # wait for that before typing the next one.
    assert bs.wait_for(rf"send DTMF digit end: '{re.escape(d)}'", start=mark), bs.describe()
    assert srv.wait_for_log(rf"\] TONE {re.escape(d)}$", timeout=10), srv.describe(60)
    return mark


def hang_up(bs: Baresip, srv) -> None:
    mark = len(bs.lines)
    bs.send_keys("b")
    assert bs.wait_for(r"terminate call", start=mark), bs.describe()
    ended_cleanly(bs, srv, bye_from="baresip")
    assert bs.stop() == 0, bs.describe()


def test_baresip_rfc4733_digits_reach_scenario(voxlab_factory, baresip_peer, tmp_path):
    srv = voxlab_factory(scenarios={"digits": DIGITS})
    bs = baresip_peer(srv, quiet_wav(tmp_path / "quiet.wav", 30.0))
    dial(bs, srv, "digits")
    digits = "51#*09"
    for i, d in enumerate(digits):
        type_digit(bs, srv, d)
        assert re.findall(r"\] TONE (\S+)", srv.log_text()) == list(digits[:i + 1]), \
            srv.describe(60)
    hang_up(bs, srv)
    assert re.findall(r"\] TONE (\S+)", srv.log_text()) == list(digits), srv.describe(60)


def test_baresip_receives_send_digits(voxlab_factory, baresip_peer, tmp_path):
    """The scenario's ``send_digits`` reaches baresip as an RFC 4733 event,
    start and end."""
    srv = voxlab_factory(scenarios={"digits": DIGITS_BACK})
    bs = baresip_peer(srv, quiet_wav(tmp_path / "quiet.wav", 30.0))
    dial(bs, srv, "digits")
    mark = type_digit(bs, srv, "5")
    assert bs.wait_for(r"received event: '5' \(end=0\)", start=mark), bs.describe()
    ended = bs.wait_for(r"received event: '5' \(end=1\)", start=mark, timeout=3)
    hang_up(bs, srv)
    # The end packets only leave baresip's jitter buffer when newer RTP
    # arrives: voxlab keeps the stream going with silence after the event.
    assert ended, "the event end never reached baresip\n" + bs.describe()


def _tx_packets(console) -> int:
    """voxlab's RTP packets sent on the one live call, from the console's session table."""
    sessions = console.request("sessions")["sessions"]
    calls = [c for s in sessions for c in s["calls"] if c["state"] == "CONNECTED"]
    assert len(calls) == 1, sessions
    return calls[0]["rtp"]["tx_packets"]


def _wait_tx(console, moving: bool, timeout: float = 10.0) -> None:
    """Wait until voxlab's RTP to the call has stopped (``moving`` False: no packet
    for 0.5 s) or flows (True: 50 packets, a second of audio, more)."""
    deadline = time.monotonic() + timeout
    start = last = _tx_packets(console)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _tx_packets(console)
        if moving and now >= start + 50:
            return
        if not moving and now == last:
            return
        last = now
    raise AssertionError(f"RTP {'never resumed' if moving else 'never stopped'}: {start} -> {last}")


def _reinvite_answered(bs: Baresip, cseq: int) -> None:
    assert bs.wait_for(rf"^SIP/2\.0 200 [^\n]*\n(?:[^\n]+\n)*?CSeq: *{cseq} INVITE$"), bs.describe()


def test_baresip_hold_and_resume(server, baresip_peer, tmp_path):
    """baresip's own hold ('x') and resume ('X') re-INVITEs: voxlab stops its RTP
    while held and the echo comes back after the resume."""
    bs = baresip_peer(server, tone_wav(tmp_path / "tone.wav", 30.0))
    dial(bs, server, "echo")
    first = int(next(m for m in sip_messages(bs.output()) if m.method == "INVITE").header("CSeq").split()[0])
    console = ConsoleClient.connect(Endpoint(socket_path=server.data_dir / "console.sock"), timeout=20)
    try:
        _wait_tx(console, moving=True)
        bs.send_keys("x")
        _reinvite_answered(bs, first + 1)
        _wait_tx(console, moving=False)            # held: nothing is sent to baresip
        bs.send_keys("X")
        _reinvite_answered(bs, first + 2)
        _wait_tx(console, moving=True)             # resumed: the echo flows again
    finally:
        console.close()
    hang_up(bs, server)
    got = heard(bs)
    tail = got[-int(0.8 * RATE):]
    assert abs(dominant_frequency(tail) - 1000.0) <= 20.0, "no echo after the resume"
