"""Per-session limits and the error raised when a scenario passes one."""


class LimitExceeded(RuntimeError):
    """A per-session cap was reached (timers, players, HTTP requests ...): raised into the
    scenario with a message naming the cap and its value."""
