"""A media worker process: RTP sockets, jitter buffers, codecs, DTMF, players,
the routing graph and one media clock, commanded by the main process over AMP.

Started by the main process (``python -m voxlab.media.worker --fd N``) with
one end of a Unix socket pair as its control channel. Nothing here knows of
sessions or SIP: it is told which units to make and how to route them, and
reports digits, finished players, counters and a heartbeat.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.error import ReactorNotRunning
from twisted.internet.protocol import Factory
from twisted.logger import FileLogObserver, Logger, formatEvent, globalLogBeginner
from twisted.protocols import amp

from voxlab.media import control
from voxlab.media.clock import MediaClock
from voxlab.media.endpoint import RtpEndpoint
from voxlab.media.graph import MediaGraph, MediaUnit
from voxlab.media.pipe import PipeIn, PipeOut, loopback_sender
from voxlab.media.rtp_transport import RtpSocket
from voxlab.media.units import UnitContext, UnitError, WorkerUnit, dumps, loads, make_unit

log = Logger()

# AMP boxes hold at most 64 KiB a value: stats go in batches well under that.
STATS_BYTES = 48_000


def _dtmf(pt: int) -> int | None:
    return None if pt == control.NO_PT else pt


class MediaWorker(control.QuietAMP):
    """The worker's side of the control channel and everything it commands."""

    def __init__(self, reactor, index: int = 0, data_dir: str | None = None) -> None:
        super().__init__()
        self.reactor = reactor
        self.index = index
        self.graph = MediaGraph()
        self.clock = MediaClock(self.graph.tick, clock=reactor)
        self.units: dict[str, MediaUnit] = {}
        self.sockets: dict[str, Any] = {}          # name -> RtpSocket / sender socket
        self.ctx = UnitContext(reactor, self._unit_event, Path(data_dir) if data_dir else None)
        self.ctx.units = self.units
        self._reported: dict[str, tuple] = {}
        self._loops: list[task.LoopingCall] = []

    # -- lifecycle
    def connectionMade(self) -> None:
        self.clock.start()
        for interval, fn in ((control.HEARTBEAT, self._heartbeat), (control.STATS_INTERVAL, self._push_stats)):
            loop = task.LoopingCall(fn)
            loop.clock = self.reactor
            loop.start(interval, now=False)
            self._loops.append(loop)

    def connectionLost(self, reason: Any) -> None:
        # The main process went away: nobody can command or hear us any more.
        super().connectionLost(reason)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self.clock.stop()
        for name in list(self.units):
            self._close(name)
        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass        # already stopping (a SIGTERM to the process group, say)

    def _send(self, command: type[amp.Command], **kw: Any) -> None:
        if self.transport is not None and not self.transport.disconnecting:
            self.callRemote(command, **kw)

    def _heartbeat(self) -> None:
        self._send(control.Heartbeat, ticks=self.graph.ticks, late=self.clock.late_ticks)

    def _failed(self, name: str, error: str) -> None:
        log.error("media unit {name}: {error}", name=name, error=error)
        self._send(control.UnitFailed, name=name, error=error)

    # -- units
    def _add(self, unit: MediaUnit) -> None:
        if unit.name in self.units:
            self._close(unit.name)
        self.graph.add(unit)
        self.units[unit.name] = unit

    @control.OpenRtp.responder
    def open_rtp(self, name: str, fd: int, codec: str, pt: int, dtmf_pt: int, host: str, port: int,
                 sending: bool) -> dict:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        try:
            endpoint = RtpEndpoint(codec, pt, _dtmf(dtmf_pt), (host, port), lambda d, a: None, name=name)
        except ValueError as exc:
            sock.close()
            self._failed(name, str(exc))
            return {}
        rtp = RtpSocket(self.reactor, sock)
        endpoint.write = rtp.write
        endpoint.sending = sending
        endpoint.on_digit = lambda digit, kind, n=name: self._send(control.DigitReceived, name=n, digit=digit,
                                                                   kind=kind)
        rtp.endpoint = endpoint
        self._add(endpoint)
        self.sockets[name] = rtp
        return {}

    @control.Renegotiate.responder
    def renegotiate(self, name: str, codec: str, pt: int, dtmf_pt: int, host: str, port: int,
                    sending: bool) -> dict:
        unit = self.units.get(name)
        if isinstance(unit, RtpEndpoint):
            try:
                unit.renegotiate(codec, pt, _dtmf(dtmf_pt), (host, port))
            except ValueError as exc:
                self._failed(name, str(exc))
            unit.sending = sending
        return {}

    @control.OpenUnit.responder
    def open_unit(self, name: str, kind: str, spec: bytes) -> dict:
        try:
            unit = make_unit(self.ctx, kind, name, loads(spec))
        except UnitError as exc:
            self._unit_event(name, "Error", {"error": str(exc)})
            return {}
        except Exception as exc:
            log.failure("making {kind} unit {name}", kind=kind, name=name)
            self._unit_event(name, "Error", {"error": f"{type(exc).__name__}: {exc}"})
            return {}
        self._add(unit)
        return {}

    @control.UnitCommand.responder
    def unit_command(self, name: str, op: str, args: bytes) -> dict:
        unit = self.units.get(name)
        if not isinstance(unit, WorkerUnit):
            log.warn("{op} for {name}: no such unit here", op=op, name=name)
            return {}
        try:
            unit.command(op, loads(args))
        except UnitError as exc:
            self._unit_event(name, "Error", {"error": str(exc)})
        except Exception as exc:
            log.failure("{op} on {name}", op=op, name=name)
            self._unit_event(name, "Error", {"error": f"{op}: {type(exc).__name__}: {exc}"})
        return {}

    def _unit_event(self, name: str, event: str, data: dict) -> None:
        try:
            self._send(control.UnitEvent, name=name, event=event, data=dumps(data))
        except Exception:
            # An event too big for one AMP box (a huge ASR result, say) is cut, not lost silently.
            log.failure("event {event} of {name} not sent", event=event, name=name)

    @control.OpenPipeIn.responder
    def open_pipe_in(self, name: str, fd: int) -> dict:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        pipe = PipeIn(name=name)
        rtp = RtpSocket(self.reactor, sock)
        rtp.endpoint = pipe
        self._add(pipe)
        self.sockets[name] = rtp
        return {}

    @control.OpenPipeOut.responder
    def open_pipe_out(self, name: str, host: str, port: int) -> dict:
        sock, send = loopback_sender(host, port)
        self._add(PipeOut(send, name=name))
        self.sockets[name] = sock
        return {}

    @control.Route.responder
    def route(self, src: str, dst: str) -> dict:
        a, b = self.units.get(src), self.units.get(dst)
        if a is None or b is None:
            # A unit that failed to open (or closed meanwhile): its UnitFailed says why.
            log.warn("route {src} -> {dst}: no such unit here", src=src, dst=dst)
        else:
            self.graph.route(a, b)
        return {}

    @control.Unroute.responder
    def unroute(self, src: str, dst: str) -> dict:
        a, b = self.units.get(src), self.units.get(dst)
        if a is not None and b is not None:
            self.graph.unroute(a, b)
        return {}

    @control.CloseUnit.responder
    def close_unit(self, name: str) -> dict:
        self._close(name)
        return {}

    def _close(self, name: str) -> None:
        unit = self.units.pop(name, None)
        if unit is not None:
            self.graph.remove(unit)
            if isinstance(unit, WorkerUnit):
                try:
                    unit.close()
                except Exception:
                    log.failure("closing {name}", name=name)
        sock = self.sockets.pop(name, None)
        if sock is not None:
            sock.close()
        self._reported.pop(name, None)

    @control.SendDigits.responder
    def send_digits(self, name: str, digits: str, mode: str) -> dict:
        unit = self.units.get(name)
        if isinstance(unit, RtpEndpoint):
            try:
                if mode == "inband":
                    unit.send_inband(digits)
                else:
                    unit.send_digits(digits)
            except ValueError as exc:
                self._failed(name, str(exc))
        return {}

    @control.SetTones.responder
    def set_tones(self, name: str, inband: bool, strip: bool) -> dict:
        unit = self.units.get(name)
        if isinstance(unit, RtpEndpoint):
            unit.set_tones(inband, strip)
        return {}

    @control.Ping.responder
    def ping(self) -> dict:
        return {"ticks": self.graph.ticks}

    # -- reports
    def _push_stats(self) -> None:
        changed = []
        for name, unit in self.units.items():
            row = unit_stats(unit)
            if row is not None and self._reported.get(name) != row:
                self._reported[name] = row
                changed.append((name, row))
        batch: list[str] = []
        size = 0
        for name, row in changed:
            item = json.dumps(name) + ":" + json.dumps(row, separators=(",", ":"))
            if batch and size + len(item) > STATS_BYTES:
                self._send_stats(batch)
                batch, size = [], 0
            batch.append(item)
            size += len(item) + 1
        if batch:
            self._send_stats(batch)

    def _send_stats(self, items: list[str]) -> None:
        try:
            self._send(control.Stats, data=("{" + ",".join(items) + "}").encode())
        except Exception:
            # One bad report (an absurdly long unit name) must not end the reports.
            log.failure("stats report not sent")


STAT_KEYS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_invalid", "rx_other_pt", "rx_dtmf",
             "rx_foreign")
JITTER_KEYS = ("lost", "late", "duplicate", "underruns", "jitter_ms", "depth")


def unit_stats(unit: MediaUnit) -> list | None:
    """What the main process shows of a unit, as a compact row: its kind, its input and
    output levels (dBFS), then what is particular to it (see the engine's facades)."""
    head = [unit.kind, unit.level_in, unit.level_out]
    if isinstance(unit, RtpEndpoint):
        j = unit.jitter.stats
        return head + [[unit.stats[k] for k in STAT_KEYS], [j[k] for k in JITTER_KEYS],
                       list(unit.remote), unit.latched, unit.codec_name]
    if isinstance(unit, WorkerUnit):
        return head + (unit.stats_row() or [])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxlab-media-worker")
    parser.add_argument("--fd", type=int, required=True, help="the control socket (inherited)")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="where recordings are written")
    args = parser.parse_args(argv)
    # The main process prefixes each line with the time and [media-N].
    globalLogBeginner.beginLoggingTo([FileLogObserver(sys.stderr, lambda e: (formatEvent(e) + "\n")
                                                      + (e["log_failure"].getTraceback()
                                                         if "log_failure" in e else ""))],
                                     redirectStandardIO=False)
    # The main process owns the terminal: Ctrl-C there must not kill us before it
    # has ended its calls; it stops us by closing the control channel (or SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from twisted.internet import reactor

    worker = MediaWorker(reactor, args.index, args.data_dir)
    try:
        from voxlab.media.asr import preload
        preload(worker.ctx)
    except Exception as exc:        # no pocketsphinx: ASR units will say so when made
        log.warn("speech recogniser not loaded: {error}", error=exc)
    factory = Factory.forProtocol(lambda: worker)
    reactor.adoptStreamConnection(args.fd, socket.AF_UNIX, factory)
    os.close(args.fd)
    log.info("media worker {index} (pid {pid}) up at {t}", index=args.index, pid=os.getpid(),
             t=time.strftime("%H:%M:%S"))
    # What is loaded now lives as long as the process: keep it out of the
    # cyclic GC's passes, which then only walk per-call objects (as in the
    # main process), so a full collection is no audible stall.
    gc.collect()
    gc.freeze()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
