#!/usr/bin/env python3
"""Conference mixing and per-call media cost, in-process (no sockets, one core).

1. Mixing: one room of N participants ticked as the media clock does (every
   participant's frame in, every participant's N-1 frame out, through the
   real MediaGraph and Conference unit). For each N: ms per tick, the share
   of the 20 ms budget, CPU per participant, and the largest N within budget.
   Beside it, the reference of the same run: a bare numpy sum of N frames.
2. Per call: an echo call (same codec: the RTP payload is relayed on
   arrival, no decode) against a transcoding call (PCMU in, PCMA out: decoded,
   jitter-buffered, encoded on the tick), both RtpEndpoints fed real RTP
   packets in-process; reference: a bare Python loop that copies a packet.

    python bench/conference_mix.py            # results in bench/results/conference_mix-<date>.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import machine_info, print_table, write_results  # noqa: E402

from voxlab.media.conference import Conference  # noqa: E402
from voxlab.media.endpoint import RtpEndpoint  # noqa: E402
from voxlab.media.g711 import ulaw_encode  # noqa: E402
from voxlab.media.graph import FRAME_SAMPLES, Frame, MediaGraph, MediaUnit  # noqa: E402
from voxlab.media.player import null_context  # noqa: E402
from voxlab.media.rtp import RtpSender  # noqa: E402
from voxlab.media.tones import sine  # noqa: E402

TICK_MS = 20.0


class Talker(MediaUnit):
    """A participant: a decoded frame out each tick (as a call's jitter buffer gives), its mix in."""

    def __init__(self, name: str, pcm: np.ndarray) -> None:
        super().__init__(name)
        self.frame = Frame(pcm=pcm)

    def produce(self):
        return self.frame

    def consume(self, frame):
        self.got = frame.pcm


def mixing(n: int, ticks: int) -> dict:
    graph = MediaGraph()
    conf = graph.add(Conference(null_context(), "room"))
    rng = np.random.default_rng(n)
    for i in range(n):
        t = graph.add(Talker(f"p{i}", (rng.standard_normal(FRAME_SAMPLES) * 2000).astype(np.int16)))
        graph.route(t, conf)
        graph.route(conf, t)
    for _ in range(5):
        graph.tick()
    t0 = time.process_time()
    for _ in range(ticks):
        graph.tick()
    per_tick = (time.process_time() - t0) / ticks * 1000
    stack = np.stack([u.frame.pcm for u in graph.units.values() if isinstance(u, Talker)])
    t0 = time.process_time()
    for _ in range(ticks):
        stack.astype(np.int32).sum(axis=0)
    ref = (time.process_time() - t0) / ticks * 1000
    return {"participants": n, "ms_per_tick": round(per_tick, 3), "budget_pct": round(100 * per_tick / TICK_MS, 1),
            "us_per_participant": round(1000 * per_tick / n, 2), "ref_numpy_sum_ms": round(ref, 4),
            "ratio_to_ref": round(per_tick / ref, 1) if ref else None}


def per_call(kind: str, packets: int) -> float:
    """CPU µs per packet of one call (echo: relay; transcode: PCMU in, PCMA out on the tick)."""
    graph = MediaGraph()
    sent = []
    a = graph.add(RtpEndpoint("PCMU", 0, None, ("127.0.0.1", 40000), lambda d, addr: sent.append(len(d)), "a"))
    if kind == "echo":
        graph.route(a, a)
    else:
        b = graph.add(RtpEndpoint("PCMA", 8, None, ("127.0.0.1", 40002), lambda d, addr: sent.append(len(d)), "b"))
        graph.route(a, b)
    sender = RtpSender(0)
    payload = ulaw_encode(sine(700, 0.02, amplitude=0.3))
    datagrams = [sender.packet(payload) for _ in range(packets)]
    t0 = time.process_time()
    for d in datagrams:
        a.datagram_received(d, ("127.0.0.1", 40000))
        graph.tick()
    return (time.process_time() - t0) / packets * 1e6


def copy_reference(packets: int) -> float:
    sender = RtpSender(0)
    datagrams = [sender.packet(bytes(160)) for _ in range(packets)]
    out = []
    t0 = time.process_time()
    for d in datagrams:
        out.append(bytes(d[:12]) + d[12:])
    return (time.process_time() - t0) / packets * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,50,100,200,300,500,1000")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--packets", type=int, default=5000)
    args = parser.parse_args(argv)
    rows = [mixing(int(n), args.ticks) for n in args.sizes.split(",")]
    print_table(rows, [("participants", "N", "{}"), ("ms_per_tick", "ms/tick", "{}"),
                       ("budget_pct", "% of 20 ms", "{}"), ("us_per_participant", "µs/participant", "{}"),
                       ("ref_numpy_sum_ms", "ref sum ms", "{}"), ("ratio_to_ref", "× ref", "{}")])
    per_us = np.mean([r["us_per_participant"] for r in rows if r["participants"] >= 100])
    largest = int(TICK_MS * 1000 / per_us)
    echo, transcode, ref = per_call("echo", args.packets), per_call("transcode", args.packets), copy_reference(args.packets)
    calls = {"echo_us_per_packet": round(echo, 1), "transcode_us_per_packet": round(transcode, 1),
             "ref_copy_us_per_packet": round(ref, 2), "transcode_over_echo": round(transcode / echo, 2),
             "echo_cpu_pct_per_call": round(echo * 50 / 1e4, 3),
             "transcode_cpu_pct_per_call": round(transcode * 50 / 1e4, 3)}
    print(f"largest room within one 20 ms tick on one core: ~{largest} participants "
          f"({per_us:.1f} µs each)")
    print(f"per call: echo {echo:.1f} µs/packet, transcode {transcode:.1f} µs/packet "
          f"({transcode / echo:.2f}×); reference copy {ref:.2f} µs")
    path = write_results("conference_mix", {"machine": machine_info(), "mixing": rows,
                                            "largest_room_one_core": largest, "per_call": calls})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
