"""The conference mixer, ticked by hand: N-1 exact, saturation, lost packets, RECEIVE
sinks, mute and deaf."""

from __future__ import annotations

import numpy as np

from voxlab.media.conference import Conference, mix_minus
from voxlab.media.graph import FRAME_SAMPLES, Frame, MediaGraph, MediaUnit
from voxlab.media.player import null_context


class Source(MediaUnit):
    """Gives a constant frame (or None) and keeps what it is given."""

    def __init__(self, name: str, value: int | None) -> None:
        super().__init__(name)
        self.value = value
        self.got: np.ndarray | None = None

    def produce(self):
        if self.value is None:
            return None
        return Frame(pcm=np.full(FRAME_SAMPLES, self.value, np.int16))

    def consume(self, frame):
        self.got = None if frame is None else frame.pcm


def room(*values):
    graph = MediaGraph()
    conf = graph.add(Conference(null_context(), "conf"))
    parties = []
    for i, v in enumerate(values):
        p = graph.add(Source(f"p{i}", v))
        graph.route(p, conf)
        graph.route(conf, p)
        parties.append(p)
    return graph, conf, parties


def test_each_hears_the_sum_of_the_others():
    graph, conf, (a, b, c) = room(100, 200, 400)
    graph.tick()
    graph.tick()
    assert (a.got == 600).all() and (b.got == 500).all() and (c.got == 300).all()


def test_saturates_instead_of_wrapping():
    minus, full = mix_minus(np.array([[30000] * 4, [30000] * 4, [30000] * 4], np.int16))
    assert (minus == 32767).all() and (full == 32767).all()
    minus, _ = mix_minus(np.array([[-30000] * 4, [-30000] * 4, [-30000] * 4], np.int16))
    assert (minus == -32768).all()


def test_a_lost_packet_adds_nothing():
    graph, conf, (a, b, c) = room(100, None, 400)
    graph.tick()
    graph.tick()
    assert (a.got == 400).all() and (b.got == 500).all() and (c.got == 100).all()


def test_receive_only_sink_gets_the_whole_mix_and_a_send_only_source_hears_nothing():
    graph, conf, (a, b) = room(100, 200)
    listener = graph.add(Source("listener", 999))
    graph.route(conf, listener)          # RECEIVE: not routed into the room
    announcer = graph.add(Source("announcer", 50))
    graph.route(announcer, conf)         # SEND: the room is not routed to it
    graph.tick()
    graph.tick()
    assert (listener.got == 350).all()
    assert announcer.got is None
    assert (a.got == 250).all()


def test_mute_and_deaf():
    graph, conf, (a, b, c) = room(100, 200, 400)
    conf.op_set_endpoint("p0", mute=True)
    conf.op_set_endpoint("p2", deaf=True)
    graph.tick()
    graph.tick()
    assert (b.got == 400).all()          # a is not heard
    assert (a.got == 600).all()          # a still hears
    assert (c.got == 0).all()            # c hears silence
