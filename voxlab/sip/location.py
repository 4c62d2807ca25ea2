"""The directory: users (name, password) and the location service (their registered
contacts), persisted in SQLite in the data directory so bindings survive a restart.

One file, ``directory.sqlite``, is shared by the server and by ``voxlab users``; SQLite's
own locking makes the two safe together. Writes are a few rows per REGISTER, committed
at once (WAL journal), which is cheap beside the SIP transaction they answer.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bindings (
    user TEXT NOT NULL,
    contact TEXT NOT NULL,          -- the Contact URI as registered
    expires_at REAL NOT NULL,       -- wall-clock seconds
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    transport TEXT NOT NULL,        -- where the REGISTER came from: requests go there (NAT)
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    q REAL NOT NULL DEFAULT 1.0,
    PRIMARY KEY (user, contact)
);
"""


@dataclass(frozen=True)
class Binding:
    """One registered contact of a user, and the flow it registered from."""

    user: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    transport: str
    host: str
    port: int
    q: float = 1.0

    def expires_in(self, now: float) -> int:
        return max(0, int(round(self.expires_at - now)))


class Directory:
    """Users and bindings in one SQLite file; ``config_users`` (from the config file)
    are read-only and take precedence over users added with ``voxlab users add``."""

    def __init__(self, path: Path | str, config_users: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.config_users = dict(config_users or {})
        self.clock = clock
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=5.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- users
    def password(self, name: str) -> str | None:
        """A user's password; None when there is no such user."""
        if name in self.config_users:
            return self.config_users[name]
        row = self.db.execute("SELECT password FROM users WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def users(self) -> list[tuple[str, str]]:
        """(name, where) for every user: where is ``config`` or ``store``."""
        stored = [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]
        out = {name: "config" for name in self.config_users}
        for name in stored:
            out.setdefault(name, "store")
        return sorted(out.items())

    def add_user(self, name: str, password: str) -> None:
        if not name or any(c in name for c in "@:;<> \t\"") or not password:
            raise ValueError(f"bad user name or empty password: {name!r}")
        self.db.execute("INSERT OR REPLACE INTO users (name, password) VALUES (?, ?)", (name, password))

    def remove_user(self, name: str) -> bool:
        if name in self.config_users:
            raise ValueError(f"user {name!r} is defined in the config file; remove it there")
        cur = self.db.execute("DELETE FROM users WHERE name = ?", (name,))
        self.db.execute("DELETE FROM bindings WHERE user = ?", (name,))
        return cur.rowcount > 0

    # -- bindings
    def bindings(self, user: str) -> list[Binding]:
        """The user's bindings that have not expired, best q first."""
        now = self.clock()
        rows = self.db.execute(
            "SELECT user, contact, expires_at, call_id, cseq, transport, host, port, q FROM bindings "
            "WHERE user = ? AND expires_at > ? ORDER BY q DESC, expires_at DESC", (user, now))
        return [Binding(*row) for row in rows]

    def all_bindings(self) -> list[Binding]:
        now = self.clock()
        rows = self.db.execute(
            "SELECT user, contact, expires_at, call_id, cseq, transport, host, port, q FROM bindings "
            "WHERE expires_at > ? ORDER BY user, q DESC", (now,))
        return [Binding(*row) for row in rows]

    def put_binding(self, binding: Binding) -> None:
        self.db.execute("INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (binding.user, binding.contact, binding.expires_at, binding.call_id,
                         binding.cseq, binding.transport, binding.host, binding.port, binding.q))

    def remove_binding(self, user: str, contact: str) -> None:
        self.db.execute("DELETE FROM bindings WHERE user = ? AND contact = ?", (user, contact))

    def remove_bindings(self, user: str) -> None:
        self.db.execute("DELETE FROM bindings WHERE user = ?", (user,))

    def purge_expired(self) -> int:
        return self.db.execute("DELETE FROM bindings WHERE expires_at <= ?", (self.clock(),)).rowcount
