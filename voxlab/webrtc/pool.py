"""The WebRTC gateway pool, as the main process runs it: worker processes started at
start-up (so a browser's first call does not wait a second for aiortc to import),
restarted when they die, and the relay of each browser's signalling to its worker.

A worker that dies, or stops reporting for ``WEDGED_AFTER`` seconds (and is then killed),
takes only its own browsers with it: their clients hear that their call
ended and that they must log in again (``gateway-failure``), and ``on_lost`` is told the
SIP addresses its phones had, so the engine ends the calls it had with them at once (not
at an RTP timeout) and the registrar forgets their bindings.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from voxlab.childproc import SupervisedWorker, stop_workers
from voxlab.media.control import QuietAMP
from voxlab.webrtc import control

log = Logger()

REQUEST_TIMEOUT = 30.0      # seconds a worker may take to answer one browser request
WEDGED_AFTER = 5.0          # seconds without a report (they come every STATS_INTERVAL)
STARTUP_GRACE = 30.0        # seconds a new worker may take to import aiortc and report
LOST = "the WebRTC gateway worker of this browser died: log in again"

_client_ids = itertools.count(1)


class _MainSide(QuietAMP):
    """The main process's end of a gateway worker's channel: notices for browsers, reports."""

    def __init__(self, handle: "GatewayHandle") -> None:
        super().__init__()
        self.handle = handle

    @control.PhoneNotice.responder
    def notice(self, client: str, message: bytes) -> dict:
        link = self.handle.clients.get(client)
        if link is not None:
            link.deliver(json.loads(message))
        return {}

    @control.GatewayStats.responder
    def stats(self, clients: int, calls: int, cpu: float) -> dict:
        self.handle.report(clients, calls, cpu)
        return {}

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.handle.channel_lost(self)


class GatewayHandle(SupervisedWorker):
    """One gateway worker process, its control channel and the browsers it serves."""

    def __init__(self, pool: "GatewayPool", index: int) -> None:
        super().__init__(pool.reactor, log, f"webrtc-{index}", f"WebRTC gateway worker {index}")
        self.pool = pool
        self.index = index
        self.clients: dict[str, "PhoneClient"] = {}
        self.calls = 0
        self.cpu = 0.0              # the worker's CPU seconds so far (its last report)

    def spawn(self) -> None:
        host, port = self.pool.sip_server
        args = ["--index", str(self.index), "--sip", f"{host}:{port}", "--host", self.pool.host]
        for address in self.pool.ice_hosts:
            args += ["--ice-host", address]
        self.start_process("voxlab.webrtc.gateway", args, _MainSide(self))
        log.info("WebRTC gateway worker {index} started (pid {pid})", index=self.index, pid=self.pid)

    def request(self, client: str, message: dict) -> defer.Deferred:
        if not self.channel_open:
            return defer.succeed({"ok": False, "error": "the WebRTC gateway is restarting: try again"})
        try:
            d = self.proto.callRemote(control.PhoneRequest, client=client,
                                      message=json.dumps(message).encode())
        except Exception as exc:        # too long for one AMP box, say
            return defer.succeed({"ok": False, "error": f"request refused: {exc}"})
        d.addTimeout(REQUEST_TIMEOUT, self.pool.reactor)
        d.addCallback(lambda r: json.loads(r["reply"]))
        d.addErrback(lambda f: {"ok": False, "error": LOST if not self.alive else
                                f"gateway error: {f.getErrorMessage()}"})
        return d

    def forget(self, client: str) -> None:
        self.clients.pop(client, None)
        if self.channel_open:
            self.proto.callRemote(control.ClientGone, client=client)

    def report(self, clients: int, calls: int, cpu: float) -> None:
        self.calls, self.cpu = calls, cpu
        self.sign_of_life()
        if self.pool._ready and self.pool.ready:
            self.pool._fire_ready()

    def ended(self, reason: Any) -> None:
        self.pool.worker_ended(self, reason)


class PhoneClient:
    """One browser's softphone connection, as the main process sees it: requests go to its
    worker, the worker's notices come back through ``send``."""

    def __init__(self, pool: "GatewayPool", send: Callable[[dict], None]) -> None:
        self.pool = pool
        self.id = f"b{next(_client_ids)}"
        self._send = send
        self.worker: GatewayHandle | None = None
        self.contact: tuple[str, int] | None = None   # its SIP phone's address, once logged in
        self.user: str | None = None
        self.state: str | None = None                 # its call's last state, None: no call yet
        self.closed = False

    def request(self, message: dict) -> defer.Deferred:
        """Relay one request; fires with the reply to send back (without the request's id)."""
        if self.worker is None or not self.worker.alive:
            if message.get("op") != "login":
                return defer.succeed({"ok": False, "error": "log in first"})
            worker = self.pool.pick()
            if worker is None:
                return defer.succeed({"ok": False, "error": "no WebRTC gateway worker is running"})
            self.worker = worker
            worker.clients[self.id] = self
        d = self.worker.request(self.id, message)

        def done(reply: dict) -> dict:
            op = message.get("op")
            if op == "login" and reply.get("ok"):
                self._set_contact(reply.get("contact"))
                self.user = reply.get("user")
            elif op == "logout" and reply.get("ok"):
                self.contact = self.user = None
            return reply
        return d.addCallback(done)

    def _set_contact(self, contact: Any) -> None:
        host, _, port = str(contact or "").rpartition(":")
        self.contact = (host, int(port)) if port.isdigit() else None

    def deliver(self, message: dict) -> None:
        event = message.get("event")
        if event == "sip-contact":         # for us, not the browser: see worker_ended
            self._set_contact(message.get("contact"))
            return
        if event == "state":
            self.state = message.get("state")
        if not self.closed:
            self._send(message)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.worker is not None:
            self.worker.forget(self.id)
            self.worker = None


class GatewayPool:
    """The gateway workers of one server; ``on_lost(addresses, reason)`` is called with the
    SIP addresses of the phones of a worker that died."""

    def __init__(self, reactor: Any, sip_server: tuple[str, int], host: str = "127.0.0.1",
                 workers: int = 1, ice_hosts: list[str] | None = None,
                 on_lost: Callable[[set[tuple[str, int]], str], None] | None = None) -> None:
        self.reactor = reactor
        self.sip_server = sip_server
        self.host = host
        self.ice_hosts = list(ice_hosts or [])
        self.on_lost = on_lost
        self.workers = [GatewayHandle(self, i) for i in range(max(1, workers))]
        self.stopping = False
        self.failures = 0
        self._ready: list[defer.Deferred] = []
        self._watchdog = task.LoopingCall(self._check_workers)
        self._watchdog.clock = reactor

    @property
    def ready(self) -> bool:
        return all(w.last_sign is not None for w in self.workers)

    def start(self) -> None:
        for worker in self.workers:
            worker.spawn()
        self._watchdog.start(control.STATS_INTERVAL, now=False)

    def _check_workers(self) -> None:
        # A worker whose loop is stuck (a hung call into C, SIGSTOP) keeps its browsers'
        # calls up but silent: kill it, so that they end and the pool replaces it.
        now = time.monotonic()
        for worker in self.workers:
            worker.kill_if_wedged(now, STARTUP_GRACE, WEDGED_AFTER, "report")

    def when_ready(self) -> defer.Deferred:
        """Fires once every worker has reported (it has imported aiortc and listens)."""
        if self.ready:
            return defer.succeed(None)
        d = defer.Deferred()
        self._ready.append(d)
        return d

    def _fire_ready(self) -> None:
        pending, self._ready = self._ready, []
        for d in pending:
            d.callback(None)

    def pick(self) -> GatewayHandle | None:
        live = [w for w in self.workers if w.alive]
        return min(live, key=lambda w: (len(w.clients), w.index)) if live else None

    def open_client(self, send: Callable[[dict], None]) -> PhoneClient:
        return PhoneClient(self, send)

    def worker_ended(self, worker: GatewayHandle, reason: Any) -> None:
        self.failures += 1
        clients = list(worker.clients.values())
        worker.clients.clear()
        log.error("WebRTC gateway worker {index} (pid {pid}) ended ({reason}): its {n} browser(s) "
                  "lose their calls and must log in again", index=worker.index, pid=worker.pid,
                  reason=reason, n=len(clients))
        lost = {c.contact for c in clients if c.contact is not None}
        for client in clients:
            in_call = client.state not in (None, "ended")
            client.worker = None
            client.contact = client.user = None
            if in_call:
                client.deliver({"event": "state", "state": "ended", "reason": LOST})
            client.deliver({"event": "unregistered", "reason": LOST})
        if lost and self.on_lost is not None:
            try:
                self.on_lost(lost, "gateway-failure")
            except Exception:
                log.failure("ending the calls of a failed WebRTC gateway worker")
        self.reactor.callLater(worker.restart_delay(), self._restart, worker)

    def _restart(self, worker: GatewayHandle) -> None:
        if self.stopping or worker.alive:
            return
        try:
            worker.spawn()
        except Exception:
            # Out of descriptors or processes for now: try again, more slowly, rather
            # than leave the browsers without a gateway for good.
            worker.quick_failures += 1
            delay = worker.retry_delay()
            log.failure("starting WebRTC gateway worker {index} failed; next try in {delay:.1f} s",
                        index=worker.index, delay=delay)
            self.reactor.callLater(delay, self._restart, worker)

    def stop(self) -> defer.Deferred:
        """Close every worker's channel (they hang up and exit); kill stragglers after 3 s."""
        self.stopping = True
        if self._watchdog.running:
            self._watchdog.stop()
        return stop_workers(self.workers)

    def info(self) -> list[dict]:
        return [{"index": w.index, "pid": w.pid, "alive": w.alive, "browsers": len(w.clients),
                 "calls": w.calls, "cpu_seconds": round(w.cpu, 2)} for w in self.workers]
