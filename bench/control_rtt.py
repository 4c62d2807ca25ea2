"""Control round trip to a media worker: how soon a command from the main
process (a route made in the REPL, a playback) reaches the worker.

A route made in the console takes effect on the worker's next tick after the
command arrives: at most one tick (20 ms) plus the one-way control latency,
about half the round trip measured here. The reference is the same AMP ping
to a bare AMP responder process (no media clock, no units) spawned the same
way, in the same run.

    python bench/control_rtt.py [--count 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time

from common import REPO_ROOT, machine_info, print_table, write_results  # noqa: F401

from twisted.internet import defer, protocol, task
from twisted.protocols import amp

from voxlab.engine.mediaplane import MediaPlane
from voxlab.media import control

BARE = r'''
import socket, sys
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from voxlab.media import control
class Bare(amp.AMP):
    @control.Ping.responder
    def ping(self):
        return {"ticks": 0}
    def connectionLost(self, reason):
        reactor.stop()
reactor.adoptStreamConnection(3, socket.AF_UNIX, Factory.forProtocol(Bare))
reactor.run()
'''


def _percentiles(samples: list[float]) -> dict:
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"p50_ms": round(1000 * pick(0.50), 3), "p99_ms": round(1000 * pick(0.99), 3),
            "max_ms": round(1000 * s[-1], 3), "mean_ms": round(1000 * statistics.fmean(s), 3)}


async def _pings(call, count: int, reactor) -> list[float]:
    out = []
    await call()          # the first answer waits for the process to start: not a round trip
    for _ in range(count):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
        # Idle between pings (as a person at a REPL is), off the tick's phase.
        await task.deferLater(reactor, 0.003, lambda: None)
    return out


async def run(reactor, count: int) -> dict:
    plane = MediaPlane(reactor, "127.0.0.1", 41000, 41999, workers=1)
    plane.start()
    await plane.when_ready()
    worker = plane.workers[0]
    media = await _pings(worker.ping, count, reactor)
    await plane.stop()

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    bare = amp.AMP()
    reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, protocol.Factory.forProtocol(lambda: bare))
    ours.close()
    env = {"PYTHONPATH": str(REPO_ROOT)}
    proc = reactor.spawnProcess(protocol.ProcessProtocol(), sys.executable, [sys.executable, "-c", BARE],
                                env=env, childFDs={0: "w", 1: 1, 2: 2, 3: theirs.fileno()})
    theirs.close()
    reference = await _pings(lambda: bare.callRemote(control.Ping), count, reactor)
    bare.transport.loseConnection()
    del proc
    return {"media_worker": _percentiles(media), "bare_amp": _percentiles(reference), "count": count}


def report(result: dict, out: str | None) -> None:
    rows = [{"target": name, **result[key]} for name, key in (("media worker", "media_worker"),
                                                               ("bare AMP process", "bare_amp"))]
    print_table(rows, [("target", "ping to", "{}"), ("p50_ms", "p50 ms", "{:.3f}"),
                       ("p99_ms", "p99 ms", "{:.3f}"), ("max_ms", "max ms", "{:.3f}")])
    ratio = result["media_worker"]["p99_ms"] / max(result["bare_amp"]["p99_ms"], 1e-6)
    result["p99_ratio_to_bare"] = round(ratio, 2)
    print(f"p99 ratio to the bare AMP process: {ratio:.2f}; a route made in the REPL is heard "
          f"within one tick (20 ms) plus about half the round trip")
    path = write_results("control-rtt", {"machine": machine_info(), **result}, out)
    print(f"results: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--out")
    args = parser.parse_args()

    async def go(reactor):
        report(await run(reactor, args.count), args.out)

    task.react(lambda reactor: defer.ensureDeferred(go(reactor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
