"""The media plane as the engine sees it: media worker processes, started and
supervised here, and facades of the units that live in them.

The engine keeps a mirror of the media graph (the same :class:`MediaGraph`
rules: one input per unit, a new route replaces the old) made of facade
units; every change of the mirror is sent to the worker that holds the units
as an AMP command, and returns at once. A route between units of two workers
becomes a pipe (see :mod:`voxlab.media.pipe`). Workers report digits,
finished players, counters (every 100 ms) and a heartbeat; a worker that dies
or stops ticking for ``WEDGED_AFTER`` seconds is killed, its calls are ended
with ``media-failure`` and a new worker takes its place.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.protocols import amp

from voxlab.childproc import SupervisedWorker, stop_workers
from voxlab.media import control
from voxlab.media.graph import MediaGraph, MediaUnit
from voxlab.media.rtp_transport import RtpPortPool, split_range
from voxlab.media.units import dumps, loads
from voxlab.media.worker import JITTER_KEYS, STAT_KEYS

log = Logger()

WEDGED_AFTER = 2.0          # seconds without a heartbeat
STARTUP_GRACE = 30.0        # seconds a new worker may take to send its first heartbeat


class FdHandOver:
    """A socket passed to a worker: our copy is closed once the worker has it
    (its answer came, or the channel is gone) and we no longer need it."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close
        self.sent = False
        self.released = False

    def track(self, d: defer.Deferred) -> None:
        d.addBoth(self._sent)

    def _sent(self, _: Any) -> None:
        self.sent = True
        if self.released:
            self._close()

    def release(self) -> None:
        if not self.released:
            self.released = True
            if self.sent:
                self._close()


_wire_ids = itertools.count(1)


class RemoteUnit(MediaUnit):
    """The engine's stand-in for a media unit that lives in a worker."""

    def __init__(self, plane: "MediaPlane", worker: "WorkerHandle", name: str) -> None:
        super().__init__(name)
        # The worker knows the unit by a name used once only: a new player of the
        # same file gets the same public name, and a late event of the old one
        # (PlayerFinished crossing the new start) must not reach the new one.
        self.wire = f"{name}#{next(_wire_ids)}"
        self.plane = plane
        self.worker = worker
        self.on_failure: Callable[[str], None] | None = None
        self.on_event: Callable[[str, dict], None] | None = None
        self.failed: str | None = None
        self.row: list = []         # the kind's own part of the worker's last stats row

    def _command(self, command: type[amp.Command], **kw: Any) -> None:
        if not self.closed:
            self.worker.send(command, **kw)

    def command(self, op: str, **args: Any) -> None:
        """An operation on the unit in its worker (``pause``, ``stop`` ...); returns at once."""
        self._command(control.UnitCommand, name=self.wire, op=op, args=dumps(args))

    def update(self, row: list) -> None:
        self.level_in, self.level_out = row[1], row[2]
        self.row = row[3:]

    def describe(self) -> str:
        return f"{self.name} @media-{self.worker.index}"


class RemoteEndpoint(RemoteUnit):
    """A call leg's RTP endpoint in a worker: commands out, counters and digits back."""

    kind = "rtp"

    def __init__(self, plane, worker, name, sock: socket.socket, codec: str, payload_type: int,
                 dtmf_payload_type: int | None, remote: tuple[str, int], sending: bool) -> None:
        super().__init__(plane, worker, name)
        self.sock = sock                 # our copy, closed with the unit (the worker has its own)
        self.port = sock.getsockname()[1]
        self.codec_name = codec
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.remote = remote
        self.sdp_remote = remote
        self.latched = False
        self._sending = sending
        self.stats: dict[str, Any] = {k: 0 for k in STAT_KEYS + JITTER_KEYS}
        self.stats_at: float | None = None
        self.on_digit: Callable[[str, str], None] | None = None
        self.handover = FdHandOver(lambda: worker.ports.release(sock))
        self.handover.track(worker.call(control.OpenRtp, name=self.wire, fd=sock.fileno(), codec=codec,
                                        pt=payload_type, dtmf_pt=_pt(dtmf_payload_type), host=remote[0],
                                        port=remote[1], sending=sending))

    @property
    def sending(self) -> bool:
        return self._sending

    @sending.setter
    def sending(self, value: bool) -> None:
        if value != self._sending:
            self._sending = value
            self._renegotiate()

    def renegotiate(self, codec: str, payload_type: int, dtmf_payload_type: int | None,
                    remote: tuple[str, int], sending: bool | None = None) -> None:
        """A new offer/answer outcome (the worker's endpoint applies it, latching included)."""
        self.codec_name, self.payload_type, self.dtmf_payload_type = codec, payload_type, dtmf_payload_type
        if remote != self.sdp_remote:
            self.sdp_remote = self.remote = remote
            self.latched = False
        if sending is not None:
            self._sending = sending
        self._renegotiate()

    def _renegotiate(self) -> None:
        self._command(control.Renegotiate, name=self.wire, codec=self.codec_name, pt=self.payload_type,
                      dtmf_pt=_pt(self.dtmf_payload_type), host=self.sdp_remote[0],
                      port=self.sdp_remote[1], sending=self._sending)

    def send_digits(self, digits: str, mode: str | None = None) -> None:
        """Queue digits: ``mode`` "rfc2833" (RFC 4733 events; ValueError when the peer did not
        offer telephone-event), "inband" (tones), or None: events when offered, else tones."""
        if mode is None:
            mode = "rfc2833" if self.dtmf_payload_type is not None else "inband"
        if mode not in ("rfc2833", "inband"):
            raise ValueError(f"DTMF mode is 'rfc2833' or 'inband', got {mode!r}")
        if mode == "rfc2833" and self.dtmf_payload_type is None:
            raise ValueError("the peer did not offer telephone-event; cannot send RFC 4733 digits")
        self._command(control.SendDigits, name=self.wire, digits=digits, mode=mode)

    def set_tones(self, inband: bool, strip: bool) -> None:
        """In-band DTMF detection (and stripping) on what this endpoint receives."""
        self._command(control.SetTones, name=self.wire, inband=inband, strip=strip)

    def update(self, row: list) -> None:
        _, self.level_in, self.level_out, counters, jitter, remote, latched, codec = row
        self.stats.update(zip(STAT_KEYS, counters))
        self.stats.update(zip(JITTER_KEYS, jitter))
        self.remote, self.latched = tuple(remote), latched
        self.stats_at = time.time()

    def describe(self) -> str:
        s = self.stats
        return (f"{self.name} {self.codec_name} -> {self.remote[0]}:{self.remote[1]} "
                f"rx={s['rx_packets']} tx={s['tx_packets']} lost={s['lost']} @media-{self.worker.index}")


class RemoteKindUnit(RemoteUnit):
    """A unit made by kind in a worker (player, recorder, conference ...): its facade in
    :mod:`voxlab.engine` sends operations and hears its events."""

    def __init__(self, plane, worker, name, kind: str, spec: dict) -> None:
        super().__init__(plane, worker, name)
        self.kind = kind
        self.accepts_many = kind in ACCEPTS_MANY
        self.describe_row: Callable[["RemoteKindUnit"], str] | None = None
        self._command(control.OpenUnit, name=self.wire, kind=kind, spec=dumps(spec))

    def describe(self) -> str:
        text = self.describe_row(self) if self.describe_row is not None else self.name
        return f"{text} @media-{self.worker.index}"


#: kinds that mix many inputs instead of taking one
ACCEPTS_MANY = {"conference"}


def _pt(pt: int | None) -> int:
    return control.NO_PT if pt is None else pt


class _EngineSide(control.QuietAMP):
    """The main process's end of one worker's control channel: its events."""

    def __init__(self, handle: "WorkerHandle") -> None:
        super().__init__()
        self.handle = handle

    @control.DigitReceived.responder
    def digit(self, name: str, digit: str, kind: str) -> dict:
        unit = self.handle.units.get(name)
        if isinstance(unit, RemoteEndpoint) and unit.on_digit is not None:
            unit.on_digit(digit, kind)
        return {}

    @control.UnitEvent.responder
    def unit_event(self, name: str, event: str, data: bytes) -> dict:
        unit = self.handle.units.get(name)
        if unit is not None and unit.on_event is not None:
            try:
                unit.on_event(event, loads(data))
            except Exception:
                log.failure("handling {event} of {name}", event=event, name=unit.name)
        return {}

    @control.UnitFailed.responder
    def unit_failed(self, name: str, error: str) -> dict:
        unit = self.handle.units.get(name)
        log.error("media worker {index}: {name}: {error}", index=self.handle.index, name=name, error=error)
        if unit is not None:
            unit.failed = error
        return {}

    @control.Stats.responder
    def stats(self, data: bytes) -> dict:
        for name, row in json.loads(data).items():
            unit = self.handle.units.get(name)
            if unit is not None:
                unit.update(row)
        return {}

    @control.Heartbeat.responder
    def heartbeat(self, ticks: int, late: int) -> dict:
        self.handle.beat(ticks, late)
        return {}

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.handle.channel_lost(self)


class WorkerHandle(SupervisedWorker):
    """One media worker process: its control channel, its units and its ports."""

    def __init__(self, plane: "MediaPlane", index: int, ports: tuple[int, int]) -> None:
        super().__init__(plane.reactor, log, f"media-{index}", f"media worker {index}")
        self.plane = plane
        self.index = index
        self.ports = RtpPortPool(plane.host, *ports)
        self.units: dict[str, RemoteUnit] = {}
        self.ticks = 0
        self.late_ticks = 0

    def spawn(self) -> None:
        args = ["--index", str(self.index)]
        if self.plane.data_dir is not None:
            args += ["--data-dir", str(self.plane.data_dir)]
        self.start_process("voxlab.media.worker", args, _EngineSide(self))
        log.info("media worker {index} started (pid {pid}, RTP {lo}-{hi})", index=self.index,
                 pid=self.pid, lo=self.ports.low, hi=self.ports.high)

    def send(self, command: type[amp.Command], **kw: Any) -> None:
        if self.channel_open:
            self.proto.callRemote(command, **kw)

    def call(self, command: type[amp.Command], **kw: Any) -> defer.Deferred:
        """An answered command; a dead channel fails it at once."""
        if self.channel_open:
            return self.proto.callRemote(command, **kw)
        return defer.fail(RuntimeError(f"media worker {self.index} is not running"))

    def ping(self) -> defer.Deferred:
        return self.proto.callRemote(control.Ping)

    def beat(self, ticks: int, late: int) -> None:
        self.sign_of_life()
        self.ticks, self.late_ticks = ticks, late

    def ended(self, reason: Any) -> None:
        self.plane.worker_ended(self, reason)


class MediaPlane:
    """The media worker pool: placement of units, the mirror graph, supervision."""

    def __init__(self, reactor, host: str, rtp_low: int, rtp_high: int, workers: int = 1,
                 data_dir: Any = None) -> None:
        self.reactor = reactor
        self.host = host
        self.data_dir = data_dir
        self.graph = MirrorGraph(self)
        self.workers = [WorkerHandle(self, i, r) for i, r in enumerate(split_range(rtp_low, rtp_high, workers))]
        self.stopping = False
        self.pipes: dict[tuple[str, str], tuple] = {}     # (src, dst) -> its two ends and socket
        self.failures = 0
        self._watchdog = task.LoopingCall(self._check_workers)
        self._watchdog.clock = reactor
        self._ready: list[defer.Deferred] = []
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for worker in self.workers:
            worker.spawn()
        self._watchdog.start(control.HEARTBEAT, now=False)

    def when_ready(self) -> defer.Deferred:
        """Fires once every worker has ticked (or STARTUP_GRACE has passed: then with the live ones)."""
        d = defer.Deferred()
        if all(w.last_sign is not None for w in self.workers):
            d.callback(None)
        else:
            self._ready.append(d)
        return d

    def _fire_ready(self) -> None:
        pending, self._ready = self._ready, []
        for d in pending:
            d.callback(None)

    def stop(self) -> defer.Deferred:
        """Close every worker's control channel (they exit) and wait for them, killing stragglers."""
        self.stopping = True
        if self._watchdog.running:
            self._watchdog.stop()
        return stop_workers(self.workers)

    # -- placement
    def pick(self) -> WorkerHandle:
        """The live worker with the fewest units (new sessions spread over the pool)."""
        live = [w for w in self.workers if w.alive]
        if not live:
            raise RuntimeError("no media worker is running")
        return min(live, key=lambda w: (len(w.units), w.index))

    def open_rtp(self, worker: WorkerHandle, name: str, codec: str, payload_type: int,
                 dtmf_payload_type: int | None, remote: tuple[str, int], sending: bool) -> RemoteEndpoint:
        sock = worker.ports.bind()      # RuntimeError when the range is used up
        unit = RemoteEndpoint(self, worker, name, sock, codec, payload_type, dtmf_payload_type,
                              remote, sending)
        return self._added(worker, unit)

    def open_unit(self, worker: WorkerHandle, name: str, kind: str, spec: dict) -> RemoteKindUnit:
        """A unit of ``kind`` (see :data:`voxlab.media.units.KINDS`) in ``worker``."""
        return self._added(worker, RemoteKindUnit(self, worker, name, kind, spec))

    def _added(self, worker: WorkerHandle, unit: RemoteUnit):
        worker.units[unit.wire] = unit
        self.graph.add(unit)
        return unit

    def closed(self, unit: RemoteUnit) -> None:
        """A unit left the mirror graph: close it in its worker and give back its port."""
        worker = unit.worker
        if worker.units.get(unit.wire) is unit:
            del worker.units[unit.wire]
        worker.send(control.CloseUnit, name=unit.wire)
        if isinstance(unit, RemoteEndpoint):
            unit.handover.release()

    # -- routes (from the mirror graph's notifications)
    def route_changed(self, kind: str, src: MediaUnit, dst: MediaUnit) -> None:
        if not (isinstance(src, RemoteUnit) and isinstance(dst, RemoteUnit)):
            return
        if src.worker is dst.worker:
            src.worker.send(control.Route if kind == "route" else control.Unroute, src=src.wire, dst=dst.wire)
        elif kind == "route":
            self._open_pipe(src, dst)
        else:
            self._close_pipe(src.wire, dst.wire)

    def _open_pipe(self, src: RemoteUnit, dst: RemoteUnit) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        name_in, name_out = f"pipe:{src.wire}>{dst.wire}:in", f"pipe:{src.wire}>{dst.wire}:out"
        handover = FdHandOver(sock.close)
        handover.track(dst.worker.call(control.OpenPipeIn, name=name_in, fd=sock.fileno()))
        dst.worker.send(control.Route, src=name_in, dst=dst.wire)
        src.worker.send(control.OpenPipeOut, name=name_out, host="127.0.0.1", port=port)
        src.worker.send(control.Route, src=src.wire, dst=name_out)
        self.pipes[(src.wire, dst.wire)] = (src.worker, name_out, dst.worker, name_in, sock, handover)

    def _close_pipe(self, src: str, dst: str) -> None:
        pipe = self.pipes.pop((src, dst), None)
        if pipe is None:
            return
        out_worker, name_out, in_worker, name_in, sock, handover = pipe
        out_worker.send(control.CloseUnit, name=name_out)
        in_worker.send(control.CloseUnit, name=name_in)
        handover.release()

    # -- supervision
    def _check_workers(self) -> None:
        now = time.monotonic()
        # Counted from the plane's start, not each respawn: a worker that
        # crashes at start-up must not keep SIP closed for ever.
        if self._ready and (all(w.last_sign is not None for w in self.workers)
                            or now - self.started_at > STARTUP_GRACE):
            self._fire_ready()
        for worker in self.workers:
            worker.kill_if_wedged(now, STARTUP_GRACE, WEDGED_AFTER, "heartbeat")

    def worker_ended(self, worker: WorkerHandle, reason: Any) -> None:
        self.failures += 1
        units = list(worker.units.values())
        log.error("media worker {index} (pid {pid}) ended ({reason}): ending its {n} media unit(s)",
                  index=worker.index, pid=worker.pid, reason=reason, n=len(units))
        for (src, dst), pipe in list(self.pipes.items()):
            if worker in (pipe[0], pipe[2]):
                self._close_pipe(src, dst)
        for unit in units:
            unit.failed = "media-failure"
            if unit.on_failure is not None:
                try:
                    unit.on_failure("media-failure")
                except Exception:
                    log.failure("ending {name} after its media worker failed", name=unit.name)
        for unit in list(worker.units.values()):
            self.graph.remove(unit)
        worker.units.clear()
        for sock in list(worker.ports.in_use.values()):
            worker.ports.release(sock)
        delay = worker.restart_delay()
        if worker.quick_failures >= 3:
            log.critical("media worker {index} failed {n} times in a row soon after its start; "
                         "next try in {delay:.0f} s", index=worker.index, n=worker.quick_failures,
                         delay=delay)
        self.reactor.callLater(delay, self._restart, worker)

    def _restart(self, worker: WorkerHandle) -> None:
        if not self.stopping and not worker.alive:
            worker.spawn()

    def info(self) -> list[dict]:
        now = time.monotonic()
        return [{"index": w.index, "pid": w.pid, "alive": w.alive, "units": len(w.units),
                 "ticks": w.ticks, "late_ticks": w.late_ticks, "rtp": f"{w.ports.low}-{w.ports.high}",
                 "heartbeat_age": None if w.last_sign is None else round(now - w.last_sign, 3)}
                for w in self.workers]


class MirrorGraph(MediaGraph):
    """The engine's copy of the media graph: facade units; changes go to the workers."""

    def __init__(self, plane: MediaPlane) -> None:
        super().__init__()
        self.plane = plane
        self.listeners.append(plane.route_changed)

    def remove(self, unit: MediaUnit) -> None:
        was_open = not unit.closed
        super().remove(unit)
        if was_open and isinstance(unit, RemoteUnit):
            self.plane.closed(unit)

    def tick(self) -> None:
        raise RuntimeError("the engine's media graph is a mirror: the media workers tick")
