"""Worker processes of the main process (media workers, WebRTC gateway workers): started
with a control socket as descriptor 3, their log lines relayed, their end reported.

One way to start them all, so each kind of worker differs only in its program and its
control protocol. Knows nothing of what the workers do (it sits below every layer).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable

from twisted.internet import protocol
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
