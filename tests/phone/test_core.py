"""The phone's parts on their own, without processes: the drift buffer, addresses,
offer/answer, WAV sources, the REGISTER client against voxlab's registrar (both on a
fake clock), and one call's RTP between two CallAudio objects."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from twisted.internet import task

from tests.phone.helpers import tone_file
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.tones import sine
from voxlab.phone.agent import dial_target, parse_hostport
from voxlab.phone.audio import CallAudio
from voxlab.phone.drift import FRAME, DriftBuffer
from voxlab.phone.offer import codec_order, make_answer, make_offer, read_sdp
from voxlab.phone.register import Registration
from voxlab.phone.sources import WavSink, WavSource
from voxlab.phone.ui import meter
from voxlab.sip.location import Directory
from voxlab.sip.registrar import Registrar
from voxlab.sip.sdp import SdpError
from voxlab.sip.useragent import Target, UserAgent


def frame(value: int) -> np.ndarray:
    return np.full(FRAME, value, np.int16)


# -- the drift buffer

def test_drift_buffer_is_primed_then_plays_in_order():
    buf = DriftBuffer(target=3, high=8)
    buf.put(frame(1))
    buf.put(frame(2))
    assert not buf.get().any(), "played before the buffer was primed"
    buf.put(frame(3))
    assert [int(buf.get()[0]) for _ in range(3)] == [1, 2, 3]


def test_drift_buffer_fast_producer_stays_bounded():
    """A producer 5 % faster than the consumer (a card clock against the network's):
    the queue never exceeds its bound and settles near the target by dropping frames."""
    buf = DriftBuffer(target=3, high=8)
    depths = []
    produced = 0.0
    for tick in range(3000):                      # 60 s of consumer ticks
        produced += 1.05
        while produced >= 1:
            buf.put(frame(tick % 1000))
            produced -= 1
        buf.get()
        depths.append(len(buf))
    assert max(depths) <= 8
    assert np.mean(depths[-500:]) <= 5, f"latency crept up: mean depth {np.mean(depths[-500:]):.1f}"
    assert buf.dropped >= 100                     # about 150 extra frames in 60 s
    assert buf.underruns == 0


def test_drift_buffer_slow_producer_repeats_then_reprimes():
    """A producer 5 % slower: the queue runs dry now and then; each time the last frame
    is played once more (softer), then silence until primed again. Never grows."""
    buf = DriftBuffer(target=3, high=8)
    produced = 0.0
    out = []
    for tick in range(3000):
        produced += 0.95
        while produced >= 1:
            buf.put(frame(1000))
            produced -= 1
        out.append(int(buf.get()[0]))
        assert len(buf) <= 8
    assert buf.underruns >= 10 and buf.repeated == buf.underruns
    assert 500 in out                            # the stretched (halved) frame
    assert out.count(1000) >= 0.9 * 2850


def test_drift_buffer_hard_bound_on_a_burst():
    buf = DriftBuffer(target=2, high=4)
    for i in range(10):
        buf.put(frame(i))
    assert len(buf) == 4 and buf.dropped == 6
    assert int(buf.get()[0]) == 6                # the oldest went first


# -- addresses and destinations

def test_parse_hostport():
    assert parse_hostport("127.0.0.1:5070") == ("127.0.0.1", 5070)
    assert parse_hostport("example.org") == ("example.org", 5060)
    assert parse_hostport("[::1]:5062") == ("::1", 5062)
    with pytest.raises(ValueError):
        parse_hostport("host:port")


def test_dial_targets():
    uri, target = dial_target("echo", ("127.0.0.1", 5070))
    assert str(uri) == "sip:echo@127.0.0.1:5070" and target == Target("udp", "127.0.0.1", 5070)
    uri, target = dial_target("sip:bs@127.0.0.1:6000", ("127.0.0.1", 5070))
    assert target == Target("udp", "127.0.0.1", 6000)
    uri, target = dial_target("bob@10.0.0.1", ("127.0.0.1", 5070))
    assert str(uri) == "sip:bob@10.0.0.1" and target.port == 5060
    for bad in ("", "sips:bob@host", "sip:bob@host;transport=tcp"):
        with pytest.raises(ValueError):
            dial_target(bad, ("127.0.0.1", 5060))


# -- offer/answer

def test_offer_and_answer_pick_the_preferred_codec():
    offer = make_offer("127.0.0.1", 40000, 1, codecs=codec_order("PCMA"))
    assert b"m=audio 40000 RTP/AVP 8 0 101" in offer
    plan, neg = read_sdp(offer, codec_order("PCMU"))
    assert plan.codec == "PCMU" and plan.dtmf_payload_type == 101   # we prefer PCMU, it has it
    assert plan.remote == ("127.0.0.1", 40000) and plan.sending and plan.receiving
    answer = make_answer(neg, "127.0.0.1", 41000, 2)
    back, _ = read_sdp(answer, codec_order("PCMA"))
    assert back.codec == "PCMU" and back.remote == ("127.0.0.1", 41000)


def test_hold_offer_makes_a_receive_only_plan():
    offer = make_offer("127.0.0.1", 40000, 1, direction="sendonly")
    plan, neg = read_sdp(offer)
    assert plan.direction == "recvonly" and not plan.sending and plan.receiving


def test_unusable_sdp():
    offer = make_offer("127.0.0.1", 40000, 1).replace(b"RTP/AVP 0 8 101", b"RTP/AVP 18")
    with pytest.raises(SdpError):
        read_sdp(offer)
    with pytest.raises(ValueError):
        codec_order("G729")


# -- WAV files

def test_wav_source_resamples_and_ends(tmp_path):
    src = WavSource(tone_file(tmp_path / "t.wav", 1000.0, 1.0, rate=44100))
    src.start()
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert len(frames) == 50 and all(len(f) == FRAME for f in frames)
    pcm = np.concatenate(frames)
    assert abs(dominant_frequency(pcm) - 1000.0) < 5
    src.start()                                   # a new call plays it from the start
    assert src.read() is not None


def test_wav_sink_is_complete_after_every_frame(tmp_path):
    import wave

    sink = WavSink(tmp_path / "out.wav")
    for i in range(3):
        sink.write(frame(i))
        with wave.open(str(tmp_path / "out.wav")) as w:
            assert w.getnframes() == (i + 1) * FRAME
    sink.close()


def test_meter():
    assert meter(-90.0) == (0, 0)
    assert meter(0.0) == (24, 2)
    assert meter(-30.0)[0] == 12


# -- REGISTER against voxlab's own registrar, on a fake clock

class Wire:
    """Two sans-IO user agents wired back to back; delivery goes through the clock."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.agents: dict[tuple[str, int], UserAgent] = {}
        self.log: list[bytes] = []

    def add(self, host: str, port: int, handler=None) -> UserAgent:
        ua = UserAgent(self.clock, lambda m, t, h=host, p=port: self._send(m, t, h, p),
                       handler, host, port)
        self.agents[(host, port)] = ua
        return ua

    def _send(self, message, target: Target, host: str, port: int) -> None:
        data = message.to_bytes()
        self.log.append(data)
        dest = self.agents.get((target.host, target.port))
        if dest is not None:
            self.clock.callLater(0, dest.datagram_received, data, Target("udp", host, port))


@pytest.fixture
def registrar_wire(tmp_path):
    clock = task.Clock()
    wall = lambda: 1_700_000_000.0 + clock.seconds()       # noqa: E731
    directory = Directory(tmp_path / "directory.sqlite", {"alice": "pw"}, clock=wall)
    wire = Wire(clock)
    server = wire.add("127.0.0.1", 5060)
    server.registrar = Registrar(directory, clock=wall)
    phone = wire.add("127.0.0.1", 40000)
    yield wire, clock, directory, phone
    directory.close()


def run(clock: task.Clock, seconds: float, step: float = 0.05) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)


def test_registration_registers_refreshes_and_unregisters(registrar_wire):
    wire, clock, directory, phone = registrar_wire
    changes = []
    reg = Registration(phone, Target("udp", "127.0.0.1", 5060), "127.0.0.1", "alice", "pw",
                       "sip:alice@127.0.0.1:40000", expires=100,
                       on_change=lambda state, detail: changes.append((state, detail)))
    reg.start()
    run(clock, 1)
    assert reg.state == "registered" and reg.granted == 100, changes
    assert [b.contact for b in directory.bindings("alice")] == ["sip:alice@127.0.0.1:40000"]
    sent = [d for d in wire.log if d.startswith(b"REGISTER")]
    assert len(sent) == 2 and b"Authorization: Digest" in sent[1]     # 401, then the answer
    run(clock, 85)                                 # refreshed at 80 s, before the expiry
    sent = [d for d in wire.log if d.startswith(b"REGISTER")]
    assert len(sent) == 4, "no refresh before the binding expired"
    assert reg.state == "registered" and reg.expires_in > 90
    d = reg.stop()
    run(clock, 1)
    assert d.called and reg.state == "unregistered"
    assert directory.bindings("alice") == []
    assert b"Expires: 0" in [x for x in wire.log if x.startswith(b"REGISTER")][-1]


def test_registration_wrong_password_fails_and_retries(registrar_wire):
    wire, clock, directory, phone = registrar_wire
    changes = []
    reg = Registration(phone, Target("udp", "127.0.0.1", 5060), "127.0.0.1", "alice", "nope",
                       "sip:alice@127.0.0.1:40000", on_change=lambda s, d: changes.append((s, d)))
    reg.start()
    run(clock, 1)
    assert reg.state == "failed" and "403" in reg.reason, changes
    count = len([d for d in wire.log if d.startswith(b"REGISTER")])
    run(clock, 31)
    assert len([d for d in wire.log if d.startswith(b"REGISTER")]) > count, "never retried"
    assert reg.stop().called


def test_registration_takes_min_expires(registrar_wire):
    wire, clock, directory, phone = registrar_wire
    reg = Registration(phone, Target("udp", "127.0.0.1", 5060), "127.0.0.1", "alice", "pw",
                       "sip:alice@127.0.0.1:40000", expires=10)
    reg.start()
    run(clock, 1)
    assert reg.state == "registered" and reg.granted == 60      # 423 Min-Expires: 60


# -- one call's RTP between two CallAudio objects

class FakeReactor:
    """CallAudio's sockets are read by hand here (no reactor)."""

    def addReader(self, reader) -> None:
        pass

    def removeReader(self, reader) -> None:
        pass


class ListSource:
    def __init__(self, pcm: np.ndarray) -> None:
        self.frames = [pcm[i:i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]

    def start(self) -> None:
        pass

    def read(self):
        return self.frames.pop(0) if self.frames else None

    def stop(self) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def start(self) -> None:
        pass

    def write(self, f) -> None:
        self.frames.append(f)

    def stop(self) -> None:
        pass


def pump(audio: CallAudio) -> None:
    while True:
        try:
            data, addr = audio.socket.sock.recvfrom(2048)
        except BlockingIOError:
            return
        audio.datagram_received(data, addr)


def test_two_call_audios_carry_tone_and_digits():
    r = FakeReactor()
    a, b = CallAudio(r, "127.0.0.1"), CallAudio(r, "127.0.0.1")
    try:
        offer = make_offer("127.0.0.1", a.port, 1)
        plan_b, neg = read_sdp(offer)
        plan_a, _ = read_sdp(make_answer(neg, "127.0.0.1", b.port, 2))
        a.configure(plan_a)
        b.configure(plan_b)
        ended = []
        a.on_input_end = lambda: ended.append(True)
        digits = []
        b.on_digit = digits.append
        sink = ListSink()
        a.start(ListSource(sine(1000.0, 1.0)), ListSink())
        b.start(ListSource(np.zeros(8000 * 2, np.int16)), sink)
        a.send_digits("7")
        for _ in range(80):
            a.tick()
            time.sleep(0.001)
            pump(b)
            b.tick()
        assert ended == [True]
        assert digits == ["7"]
        heard = np.concatenate(sink.frames)
        assert abs(dominant_frequency(heard[2000:8000]) - 1000.0) < 10
        assert abs(rms_dbfs(heard[2000:8000]) - rms_dbfs(sine(1000.0, 1.0))) < 1.5
        assert b.stats.received >= 75 and b.stats.lost == 0
        assert a.stats.sent == 80 and a.stats.dtmf_sent == 1
        a.muted = True
        a.tick()
        assert a.mic_db == -90.0
    finally:
        a.stop()
        b.stop()


def test_in_band_dtmf_when_the_far_end_has_no_telephone_event():
    r = FakeReactor()
    a, b = CallAudio(r, "127.0.0.1"), CallAudio(r, "127.0.0.1")
    try:
        offer = make_offer("127.0.0.1", a.port, 1).replace(b" 101\r\n", b"\r\n")
        offer = b"".join(line + b"\r\n" for line in offer.split(b"\r\n")
                         if line and b"telephone-event" not in line and b"fmtp:101" not in line)
        plan_b, neg = read_sdp(offer)
        assert plan_b.dtmf_payload_type is None
        a.configure(read_sdp(make_answer(neg, "127.0.0.1", b.port, 2))[0])
        b.configure(plan_b)
        sink = ListSink()
        a.start(ListSource(np.zeros(8000, np.int16)), ListSink())
        b.start(ListSource(np.zeros(8000, np.int16)), sink)
        a.send_digits("5")
        for _ in range(20):
            a.tick()
            time.sleep(0.001)
            pump(b)
            b.tick()
        from voxlab.media.analysis import detect_dtmf_digits
        assert detect_dtmf_digits(np.concatenate(sink.frames)) == "5"
    finally:
        a.stop()
        b.stop()


def test_rtp_port_is_even():
    r = FakeReactor()
    audios = [CallAudio(r, "127.0.0.1") for _ in range(5)]
    try:
        assert all(a.port % 2 == 0 for a in audios)
    finally:
        for a in audios:
            a.stop()
    # and the socket is gone
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", audios[0].port))
    s.close()
