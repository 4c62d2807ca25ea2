"""The recorder unit, ticked by hand: WAV files valid at every moment, silence for ticks
without audio, mute, stereo (the caller left, what the call hears right, relayed calls
included), stopping with its call."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.endpoint import RtpEndpoint
from voxlab.media.g711 import codec_for
from voxlab.media.graph import Frame, MediaGraph
from voxlab.media.player import Player, null_context
from voxlab.media.recorder import FLUSH_FRAMES, Recorder
from voxlab.media.rtp import RtpSender
from voxlab.media.tones import sine
from voxlab.media.units import UnitContext, UnitError, make_unit

PEER = ("127.0.0.1", 40000)
ULAW = codec_for("PCMU")


class Events(list):
    def __call__(self, name, event, data):
        self.append((event, data))

    def named(self, event):
        return [d for e, d in self if e == event]


@pytest.fixture
def ctx(tmp_path):
    return UnitContext(None, Events(), data_dir=tmp_path)


def read(path):
    """(channels, int16 samples as (n, channels)) through the stdlib wave module."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return channels, data.reshape(-1, channels)


def recorder(ctx, graph, **spec):
    rec = Recorder(ctx, spec.pop("name", "rec"), **spec)
    graph.add(rec)
    return rec


def player(graph, freq, seconds, loop=False):
    p = Player.of_pcm(null_context(), sine(freq, seconds), loop=loop)
    graph.add(p)
    return p


def endpoint(graph, name, ctx=None, wire=None):
    ep = RtpEndpoint("PCMU", 0, 101, PEER, (lambda d, a: wire.append(d)) if wire is not None
                     else (lambda d, a: None), name=name)
    graph.add(ep)
    if ctx is not None:
        ctx.units[name] = ep
    return ep


class Caller:
    """Sends one 20 ms PCMU packet of a tone into an endpoint per call."""

    def __init__(self, ep, freq):
        self.ep, self.pcm, self.sender, self.sent = ep, sine(freq, 10.0), RtpSender(0), 0

    def send(self):
        frame = self.pcm[self.sent * 160:(self.sent + 1) * 160]
        self.ep.datagram_received(self.sender.packet(ULAW.encode(frame)), PEER)
        self.sent += 1


def band_db(x, freq):
    """Level of ``x`` in a 40 Hz band around ``freq`` (dB, relative to full scale)."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    band = spec[(freqs > freq - 20) & (freqs < freq + 20)]
    return 20 * np.log10(band.max() / len(x) + 1e-9)


def test_records_its_input_for_as_long_as_it_runs_with_silence_when_nothing_comes(ctx):
    graph = MediaGraph()
    rec = recorder(ctx, graph, file="tone")
    graph.route(player(graph, 600.0, 1.0), rec)
    for _ in range(60):                 # 1.2 s: the player's 1 s, then nothing
        graph.tick()
    rec.op_stop()
    started, = ctx._emit.named("Started")
    assert started == {"path": str(ctx.data_dir / "recordings" / "tone.wav"), "url": None}
    assert ctx._emit.named("Stopped") == [{"duration": 1.2, "path": started["path"]}]
    channels, data = read(started["path"])
    assert channels == 1 and len(data) == 60 * 160
    assert abs(dominant_frequency(data[:8000, 0]) - 600.0) < 2
    assert not data[8000:].any()
    for _ in range(5):
        graph.tick()                    # stopped: nothing more is written
    assert len(read(started["path"])[1]) == 60 * 160


def test_the_file_is_a_valid_wav_at_every_tick_and_lags_at_most_half_a_second(ctx):
    graph = MediaGraph()
    rec = recorder(ctx, graph, file="growing")
    graph.route(player(graph, 600.0, 3.0), rec)
    assert len(read(rec.path)[1]) == 0          # valid from the start: a header, no frames
    for tick in range(1, 121):
        graph.tick()
        n = len(read(rec.path)[1])              # what a kill -9 now would leave
        assert n == tick // FLUSH_FRAMES * FLUSH_FRAMES * 160
        assert tick * 160 - n < 0.5 * 8000
    assert abs(rec.duration - 2.4) < 1e-9
    rec.close()                                 # removed without stop(): all of it is kept
    assert len(read(rec.path)[1]) == 120 * 160


def test_mute_writes_silence_and_the_recording_goes_on(ctx):
    graph = MediaGraph()
    rec = recorder(ctx, graph)
    graph.route(player(graph, 600.0, 2.0), rec)
    for op, ticks in ((None, 20), (True, 20), (False, 20)):
        if op is not None:
            rec.op_mute(on=op)
        for _ in range(ticks):
            graph.tick()
    assert rec.stats_row()[:2] == [1.2, False]
    rec.op_stop()
    _, data = read(rec.path)
    assert len(data) == 60 * 160
    assert rms_dbfs(data[:3200, 0]) > -10 and not data[3200:6400].any() and rms_dbfs(data[6400:, 0]) > -10


def test_stereo_left_is_what_the_caller_says_and_right_what_the_call_hears(ctx):
    graph = MediaGraph()
    ep = endpoint(graph, "call#1", ctx)
    graph.route(player(graph, 900.0, 5.0), ep)          # the prompt the caller hears
    rec = recorder(ctx, graph, stereo=True, call="call#1")
    graph.route(ep, rec)
    caller = Caller(ep, 400.0)
    for _ in range(50):
        caller.send()
        graph.tick()
    rec.op_stop()
    channels, data = read(rec.path)
    assert channels == 2 and len(data) == 50 * 160
    left, right = data[:, 0], data[:, 1]
    assert abs(dominant_frequency(left) - 400.0) < 3
    assert abs(dominant_frequency(right) - 900.0) < 3
    assert band_db(left, 900.0) < band_db(left, 400.0) - 30
    assert band_db(right, 400.0) < band_db(right, 900.0) - 30


def test_stereo_of_a_bridged_call_hears_its_peer_whose_packets_are_relayed(ctx):
    graph = MediaGraph()
    wire_a: list[bytes] = []
    a = endpoint(graph, "a#1", ctx, wire_a)
    b = endpoint(graph, "b#2", ctx)
    graph.route(b, a)                                   # a hears b: same codec, relayed on arrival
    graph.route(a, b)
    rec = recorder(ctx, graph, stereo=True, call="a#1")
    graph.route(a, rec)
    caller_a, caller_b = Caller(a, 400.0), Caller(b, 900.0)
    for _ in range(50):
        caller_a.send()
        caller_b.send()
        graph.tick()
    assert len(wire_a) >= 49                            # still relayed to a
    rec.op_stop()
    assert [s for s in b.sinks if s.kind == "recorder-ear"] == []   # the extra sink is gone
    _, data = read(rec.path)
    # The first tick takes the ear's place in b's sinks: b is buffered from then on.
    assert abs(dominant_frequency(data[320:, 0]) - 400.0) < 3
    assert abs(dominant_frequency(data[320:, 1]) - 900.0) < 3


def test_an_echoed_call_is_recorded_and_still_echoed(ctx):
    graph = MediaGraph()
    wire: list[bytes] = []
    ep = endpoint(graph, "echo#1", ctx, wire)
    graph.route(ep, ep)
    rec = recorder(ctx, graph, stereo=True, call="echo#1")
    graph.route(ep, rec)
    caller = Caller(ep, 400.0)
    for _ in range(40):
        caller.send()
        graph.tick()
    rec.op_stop()
    assert len(wire) == 40
    _, data = read(rec.path)
    assert abs(dominant_frequency(data[:, 0]) - 400.0) < 3
    assert abs(dominant_frequency(data[:, 1]) - 400.0) < 3      # an echo hears itself


def test_it_stops_the_tick_after_its_call_ended(ctx):
    graph = MediaGraph()
    ep = endpoint(graph, "call#9", ctx)
    rec = recorder(ctx, graph, stop_with="call#9")
    graph.route(ep, rec)
    caller = Caller(ep, 400.0)
    for _ in range(30):
        caller.send()
        graph.tick()
    graph.remove(ep)
    del ctx.units["call#9"]
    graph.tick()
    graph.tick()
    assert rec.stopped and rec.writer.closed
    assert ctx._emit.named("Stopped") == [{"duration": 0.6, "path": str(rec.path)}]
    assert len(read(rec.path)[1]) == 30 * 160


def test_listen_moves_the_right_channel_to_another_call(ctx):
    graph = MediaGraph()
    a = endpoint(graph, "a#1", ctx)
    b = endpoint(graph, "b#2", ctx)
    graph.route(player(graph, 900.0, 5.0), a)
    graph.route(player(graph, 1300.0, 5.0), b)
    rec = recorder(ctx, graph, stereo=True)
    for _ in range(10):
        graph.tick()
    rec.op_listen(call="a#1")
    for _ in range(25):
        graph.tick()
    rec.op_listen(call="b#2")
    for _ in range(25):
        graph.tick()
    rec.op_stop()
    _, data = read(rec.path)
    right = data[:, 1]
    assert not right[:1600].any()                       # no call yet: silence
    assert abs(dominant_frequency(right[1600:5600]) - 900.0) < 3
    assert abs(dominant_frequency(right[5600:]) - 1300.0) < 3
    assert not data[:, 0].any()                         # nothing sent to it: a silent left


def test_frames_of_another_size_are_one_tick_each(ctx):
    graph = MediaGraph()
    rec = recorder(ctx, graph)
    rec.consume(Frame(pcm=np.full(240, 1000, np.int16)))       # a 30 ms packet
    rec.consume(Frame(pcm=np.full(80, 1000, np.int16)))        # a 10 ms one
    rec.op_stop()
    _, data = read(rec.path)
    assert len(data) == 320
    assert (data[:240] == 1000).all() and not data[240:].any()


def test_names_are_made_safe_and_unique(ctx):
    first = Recorder(ctx, "r1", file="../etc/x y")
    second = Recorder(ctx, "r2", file="../etc/x y")
    assert first.path == ctx.data_dir / "recordings" / "x_y.wav"
    assert second.path == ctx.data_dir / "recordings" / "x_y-2.wav"
    first.close()
    second.close()


def test_without_a_data_directory_it_cannot_be_made():
    with pytest.raises(UnitError, match="no data directory"):
        make_unit(null_context(), "recorder", "r", {"file": "x"})


def test_a_write_failure_is_an_error_then_stopped(ctx):
    graph = MediaGraph()
    rec = recorder(ctx, graph)
    graph.route(player(graph, 600.0, 2.0), rec)

    class FullDisk:
        samples, closed = 0, False

        def write(self, _pcm):
            raise OSError(28, "No space left on device")

        def close(self):
            self.closed = True

    rec.writer.close()
    rec.writer = FullDisk()
    for _ in range(FLUSH_FRAMES + 3):
        graph.tick()
    error, = ctx._emit.named("Error")
    assert "No space left on device" in error["error"]
    assert rec.stopped and len(ctx._emit.named("Stopped")) == 1
