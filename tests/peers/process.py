"""Ending a peer's process: asked nicely first, then SIGTERM, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess
from typing import Callable


def end_process(proc: subprocess.Popen, grace: float = 5.0,
                ask: Callable[[], None] | None = None) -> int | None:
    """Stop ``proc`` and return its exit status. ``ask`` is the peer's own way out (a quit
    command: a phone unregisters first); it gets ``grace`` seconds, then SIGTERM gets as
    long, then SIGKILL."""
    if proc.poll() is None:
        steps: list[Callable[[], None]] = [lambda: proc.send_signal(signal.SIGTERM)]
        if ask is not None:
            steps.insert(0, ask)
        for step in steps:
            try:
                step()
            except (BrokenPipeError, OSError, AssertionError):
                pass            # its stdin is gone: the next step will do
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            proc.kill()
            proc.wait(5)
    return proc.returncode
