"""Sans-IO parts of the media plane: frames through a pipe between workers, the
RTP range split between workers, and the mirror graph turning routes into
worker commands (same worker: Route; two workers: a pipe)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from twisted.internet import defer

from voxlab.engine.mediaplane import MirrorGraph, RemoteUnit
from voxlab.media import control
from voxlab.media.g711 import codec_for
from voxlab.media.graph import Frame
from voxlab.media.pipe import MAX_QUEUED, PipeIn, PipeOut, decode_frame, encode_frame
from voxlab.media.rtp_transport import RtpPortPool, split_range
from voxlab.media.tones import sine


def test_encoded_frames_cross_a_pipe_untouched_and_pcm_as_pcm():
    pcm = (sine(440.0, 0.02) * 0.5).astype(np.int16)
    payload = codec_for("PCMA").encode(pcm)
    back = decode_frame(encode_frame(Frame(payload=payload, codec="PCMA")))
    assert back.codec == "PCMA" and back.payload == payload
    back = decode_frame(encode_frame(Frame(pcm=pcm)))
    assert back.payload is None and np.array_equal(back.pcm, pcm)
    for junk in (b"", b"\x07" + bytes(160), b"\x00" + bytes(10), b"\x01" + bytes(3)):
        assert decode_frame(junk) is None


def test_pipe_in_plays_frames_in_order_and_bounds_its_backlog():
    sent: list[bytes] = []
    out, inn = PipeOut(sent.append), PipeIn()
    frames = [Frame(pcm=np.full(160, i, np.int16)) for i in range(MAX_QUEUED + 2)]
    for f in frames:
        out.consume(f)
    out.consume(None)                      # nothing routed in: nothing sent
    for data in sent:
        inn.datagram_received(data, ("127.0.0.1", 1))
    got = []
    while (f := inn.produce()) is not None:
        got.append(int(f.pcm[0]))
    assert got == list(range(2, MAX_QUEUED + 2))     # the oldest were dropped, order kept


@pytest.mark.parametrize("low,high,parts", [(10000, 20000, 2), (30000, 30399, 3), (40000, 40007, 4)])
def test_rtp_range_split_covers_it_without_overlap(low, high, parts):
    ranges = split_range(low, high, parts)
    assert ranges[0][0] == low and ranges[-1][1] == high
    evens = [set(range(a + a % 2, b + 1, 2)) for a, b in ranges]
    assert sum(map(len, evens)) == len(range(low, high + 1, 2))
    assert all(abs(len(e) - len(evens[0])) <= 1 for e in evens)
    with pytest.raises(ValueError):
        split_range(10000, 10001, 2)


def test_port_pool_skips_ports_in_use_and_reuses_released_ones():
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1] & ~1
    pool = RtpPortPool("127.0.0.1", port, port + 2)
    try:
        got = pool.bind()
        assert got.getsockname()[1] in (port, port + 2)
        pool.release(got)
        again = pool.bind()
        pool.release(again)
    finally:
        busy.close()


class FakeWorker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.sent: list[tuple[str, dict]] = []
        self.units: dict = {}

    def send(self, command, **kw) -> None:
        self.sent.append((command.__name__, {k: v for k, v in kw.items() if k != "fd"}))

    def call(self, command, **kw):
        self.send(command, **kw)
        return self.answer

    answer = None       # set per test: when the worker "answers" the descriptor hand-over


class FakePlane:
    """Just what MirrorGraph and RemoteUnit need, with MediaPlane's own routing code."""

    from voxlab.engine.mediaplane import MediaPlane as _Plane
    route_changed = _Plane.route_changed
    _open_pipe = _Plane._open_pipe
    _close_pipe = _Plane._close_pipe
    closed = _Plane.closed

    def __init__(self) -> None:
        self.pipes: dict = {}


def _unit(plane, worker, name):
    unit = RemoteUnit(plane, worker, name)
    worker.units[unit.wire] = unit
    return unit


def test_mirror_graph_routes_in_one_worker_as_commands_and_across_workers_as_pipes():
    plane = FakePlane()
    graph = MirrorGraph(plane)
    w0, w1 = FakeWorker(0), FakeWorker(1)
    w0.answer = defer.Deferred()
    a, b, c = _unit(plane, w0, "a"), _unit(plane, w0, "b"), _unit(plane, w1, "c")
    for u in (a, b, c):
        graph.add(u)
    A, B, C = a.wire, b.wire, c.wire          # the names the workers know them by
    assert A != "a" and A.startswith("a#")
    graph.route(a, b)
    assert w0.sent == [("Route", {"src": A, "dst": B})] and w1.sent == []
    w0.sent.clear()
    graph.route(c, b)                      # replaces a -> b, and crosses workers
    assert w0.sent[0] == ("Unroute", {"src": A, "dst": B})
    assert [n for n, _ in w0.sent[1:]] == ["OpenPipeIn", "Route"]
    assert w0.sent[2][1] == {"src": f"pipe:{C}>{B}:in", "dst": B}
    assert [n for n, _ in w1.sent] == ["OpenPipeOut", "Route"]
    assert w1.sent[1][1] == {"src": C, "dst": f"pipe:{C}>{B}:out"}
    port = w1.sent[0][1]["port"]
    sock = plane.pipes[(C, B)][4]
    assert sock.getsockname()[1] == port
    w0.sent.clear()
    w1.sent.clear()
    graph.remove(c)                        # the pipe goes with the route, then the unit
    assert ("CloseUnit", {"name": f"pipe:{C}>{B}:in"}) in w0.sent
    # Our copy of the pipe's socket stays open until the worker has received it ...
    assert sock.fileno() != -1
    w0.answer.callback({})
    assert sock.fileno() == -1             # ... then it is closed
    assert w1.sent == [("CloseUnit", {"name": f"pipe:{C}>{B}:out"}), ("CloseUnit", {"name": C})]
    assert plane.pipes == {} and C not in w1.units
    # A second unit of the same public name is another unit to the worker.
    assert _unit(plane, w0, "a").wire != A
    with pytest.raises(RuntimeError):
        graph.tick()
    assert control.Route.requiresAnswer is False
