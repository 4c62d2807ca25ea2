"""Per-session limits and the error raised when a scenario passes one."""

from __future__ import annotations

from dataclasses import dataclass


class LimitExceeded(RuntimeError):
    """A per-session cap was reached (timers, players, HTTP requests ...): raised into the
    scenario with a message naming the cap and its value."""


@dataclass(frozen=True)
class SessionLimits:
    """What one session may use and how long it may live (the config's ``[session]``;
    the defaults are VoxEngine's figures where it has them)."""

    handler_budget: float = 1.0        # seconds one handler may run
    alerting_timeout: float = 60.0     # an incoming call left unanswered gets 480
    idle_timeout: float = 60.0         # a session with no call left ends ("timeout")
    max_duration: float = 4 * 3600.0   # no session lives longer ("timeout"); 0: no limit
    timers: int = 100                  # set_timeout / set_interval pending at once
    players: int = 10                  # players alive at once
    http_concurrent: int = 3           # Net requests in flight
    http_total: int = 35               # Net requests over the session's life
    log_line: int = 4096               # characters of one Logger.write line (longer: cut)
    terminating_grace: float = 10.0    # how long Terminating waits for its HTTP request
