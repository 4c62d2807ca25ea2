"""Worker processes of the main process (media workers, WebRTC gateway workers): started
with a control socket as descriptor 3, their log lines relayed, their end reported, and
supervised (wedged ones killed, dead ones restarted with a back-off, all stopped together).

One way to run them all, so each kind of worker differs only in its program, its control
protocol and what its death means. Knows nothing of what the workers do (it sits below every layer).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Callable

from twisted.internet import defer, protocol
from twisted.logger import Logger

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LoggedChild(protocol.ProcessProtocol):
    """Relays a worker's output, line by line, to ``log`` under ``label``, and calls
    ``ended(reason)`` once the process has exited."""

    def __init__(self, log: Logger, label: str, ended: Callable[[Any], None]) -> None:
        self.log = log
        self.label = label
        self.ended = ended
        self._partial = b""

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self.log.info("[{label}] {line}", label=self.label,
                              line=line.decode("utf-8", "replace").rstrip())

    def processEnded(self, reason: Any) -> None:
        self.ended(reason.value)


def spawn_worker(reactor: Any, module: str, args: list[str], channel: protocol.Protocol,
                 log: Logger, label: str, ended: Callable[[Any], None]) -> Any:
    """Run ``python -m module --fd 3 ARGS`` with one end of a Unix socket pair as its
    descriptor 3 and ``channel`` (an AMP protocol, say) connected to the other end; the
    worker imports this very voxlab (a checkout, a venv) whatever its cwd. The process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX,
                                  protocol.Factory.forProtocol(lambda: channel))
    ours.close()
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        return reactor.spawnProcess(LoggedChild(log, label, ended), sys.executable,
                                    [sys.executable, "-m", module, "--fd", "3", *args], env=env,
                                    childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()})
    finally:
        theirs.close()


RESTART_DELAY = 0.2          # seconds before a worker that died is started again
MAX_RESTART_DELAY = 60.0
QUICK_FAILURE = 10.0         # a worker that dies sooner than this after its start "failed quickly"
STOP_GRACE = 3.0             # seconds a stopping worker has before it is killed


class SupervisedWorker:
    """One worker process under supervision: whether it runs, its control channel, the
    last sign of life it gave, how often in a row it died soon after its start (the
    restart's back-off), and its stop. Subclasses say what the worker is (``spawn``) and
    what its death means (``ended``)."""

    def __init__(self, reactor: Any, log: Logger, label: str, title: str) -> None:
        self.reactor = reactor
        self.log = log
        self.label = label               # the prefix of its log lines: "media-0"
        self.title = title               # what log lines call it: "media worker 0"
        self.process: Any = None
        self.proto: Any = None
        self.alive = False
        self.pid: int | None = None      # kept after it ended, for the log lines about it
        self.started_at = 0.0
        self.last_sign: float | None = None     # its last heartbeat or report; None: none yet
        self.quick_failures = 0
        self.stopping = False
        self._ended = False
        self._on_stop: Any = None

    def start_process(self, module: str, args: list[str], channel: protocol.Protocol) -> None:
        self._ended = False
        self.proto = channel
        self.process = spawn_worker(self.reactor, module, args, channel, self.log, self.label,
                                    self.process_ended)
        self.pid = self.process.pid
        self.alive = True
        self.started_at = time.monotonic()
        self.last_sign = None

    @property
    def channel_open(self) -> bool:
        return self.alive and self.proto is not None and self.proto.transport is not None

    def sign_of_life(self) -> None:
        self.last_sign = time.monotonic()

    def wedged(self, now: float, grace: float, after: float, sign: str) -> str | None:
        """Why this worker counts as stuck, or None: no ``sign`` (heartbeat, report)
        ``grace`` seconds after its start, or none for ``after`` seconds since the last."""
        if not self.alive:
            return None
        if self.last_sign is None:
            if now - self.started_at > grace:
                return f"no {sign} {grace:.0f} s after start"
            return None
        if now - self.last_sign > after:
            return f"no {sign} for {now - self.last_sign:.1f} s"
        return None

    def kill_if_wedged(self, now: float, grace: float, after: float, sign: str) -> None:
        why = self.wedged(now, grace, after, sign)
        if why is not None:
            self.log.error("{title} (pid {pid}) is wedged ({why}): killing it",
                           title=self.title, pid=self.pid, why=why)
            self.last_sign = now         # one kill is enough; its end follows
            self.kill()

    def kill(self) -> None:
        try:
            self.process.signalProcess("KILL")
        except Exception:
            pass

    def channel_lost(self, channel: Any) -> None:
        """The control channel is the worker's lifeline: without it the worker cannot be
        commanded, so it is as good as dead (unless it is an older process's channel)."""
        if channel is self.proto and self.alive and not self.stopping:
            self.kill()

    def process_ended(self, reason: Any) -> None:
        if self._ended:
            return
        self._ended = True
        self.alive = False
        if self.stopping:
            if self._on_stop is not None and not self._on_stop.called:
                self._on_stop.callback(None)
            return
        self.ended(reason)

    def ended(self, reason: Any) -> None:
        """It died, or was killed, while it should have been running."""
        raise NotImplementedError

    def restart_delay(self) -> float:
        """How long to wait before starting it again, now that it died: a worker that dies
        soon after its start (a broken environment, say) is restarted ever more slowly, up
        to once a minute, not in a tight loop."""
        if time.monotonic() - self.started_at < QUICK_FAILURE:
            self.quick_failures += 1
        else:
            self.quick_failures = 0
        return self.retry_delay()

    def retry_delay(self) -> float:
        return min(RESTART_DELAY * 2 ** self.quick_failures, MAX_RESTART_DELAY)

    def close(self) -> Any:
        """Close its channel (it exits); a Deferred that fires once it has, or None when it
        was not running. It is killed if it is still there after STOP_GRACE seconds."""
        self.stopping = True
        if not self.channel_open:
            return None
        self._on_stop = defer.Deferred()
        self.proto.transport.loseConnection()
        self.reactor.callLater(STOP_GRACE, self.kill)
        return self._on_stop


def stop_workers(workers: list[SupervisedWorker]) -> Any:
    """Stop every worker; a Deferred that fires once they have all exited."""
    return defer.DeferredList([d for d in (w.close() for w in workers) if d is not None])
