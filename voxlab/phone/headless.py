"""Headless ``voxlab phone``: state lines on stdout instead of a screen.

One line per event (``HH:MM:SS.mmm kind: text``), and while a call is up a ``stats``
line every few seconds: levels and RTP counters. Meant for scripts, tests and logs
(no TTY, or ``--dial`` with ``--audio-in``).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from twisted.internet import task

from voxlab.phone.agent import PhoneAgent, PhoneEvent, format_duration

STATS_EVERY = 5.0

__all__ = ["HeadlessReporter", "stats_line"]


def stats_line(agent: PhoneAgent) -> str | None:
    """One line about the current call's media, None without a connected call."""
    call = agent.call
    if call is None or call.state != "connected":
        return None
    a = call.audio
    flags = "".join([" muted" if a.muted else "", " held" if call.on_hold else "",
                     " remote-hold" if call.remote_hold else ""])
    return (f"{format_duration(call.duration)} {call.codec}{flags}  mic {a.mic_db:.0f} dBFS  "
            f"speaker {a.speaker_db:.0f} dBFS  RTP {a.stats.line()}")


class HeadlessReporter:
    """Prints the agent's events, and stats while a call is up."""

    def __init__(self, agent: PhoneAgent, reactor, out: TextIO | None = None,
                 every: float = STATS_EVERY) -> None:
        self.agent = agent
        self.out = out or sys.stdout
        self.loop = task.LoopingCall(self._stats)
        self.loop.clock = reactor
        self.every = every
        agent.listeners.append(self.event)

    def start(self) -> None:
        self.loop.start(self.every, now=False)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def write(self, kind: str, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        try:
            self.out.write(f"{stamp} {kind}: {text}\n")
            self.out.flush()
        except (OSError, ValueError):
            pass                          # stdout closed (a pipe whose reader left)

    def event(self, e: PhoneEvent) -> None:
        self.write(e.kind, e.text)

    def _stats(self) -> None:
        line = stats_line(self.agent)
        if line is not None:
            self.write("stats", line)
