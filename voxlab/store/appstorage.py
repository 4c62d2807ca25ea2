"""ApplicationStorage: a persistent key-value store per application, in SQLite."""

from __future__ import annotations

import sqlite3
import time
from typing import Callable

from twisted.internet import defer

from voxlab.store.db import DatabaseThread

MAX_KEY_CHARS = 200
MAX_VALUE_BYTES = 2 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS app_storage (
    app TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires REAL,
    PRIMARY KEY (app, key)
);
CREATE INDEX IF NOT EXISTS app_storage_expires ON app_storage (expires) WHERE expires IS NOT NULL;
"""

_LIVE = "(expires IS NULL OR expires > ?)"


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"ApplicationStorage keys are strings, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ValueError(f"ApplicationStorage keys are 1 to {MAX_KEY_CHARS} characters "
                         f"(this one has {len(key)})")
    return key


def _check_value(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"ApplicationStorage values are strings, not {type(value).__name__}")
    # UTF-8 takes at most 4 bytes a character: only long values need encoding to measure.
    if len(value) * 4 > MAX_VALUE_BYTES and len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise ValueError(f"ApplicationStorage values are at most {MAX_VALUE_BYTES} bytes "
                         f"(2 MB) of UTF-8")
    return value


def _create(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def _get(conn: sqlite3.Connection, app: str, key: str, now: float) -> str | None:
    row = conn.execute(f"SELECT value FROM app_storage WHERE app = ? AND key = ? AND {_LIVE}",
                       (app, key, now)).fetchone()
    return row[0] if row else None


def _put(conn: sqlite3.Connection, app: str, key: str, value: str, expires: float | None,
         now: float) -> None:
    # Expired rows are never read; clearing them on writes keeps the file from growing.
    conn.execute("DELETE FROM app_storage WHERE app = ? AND expires IS NOT NULL AND expires <= ?",
                 (app, now))
    conn.execute("INSERT OR REPLACE INTO app_storage (app, key, value, expires) VALUES (?, ?, ?, ?)",
                 (app, key, value, expires))


def _delete(conn: sqlite3.Connection, app: str, key: str, now: float) -> bool:
    live = conn.execute(f"DELETE FROM app_storage WHERE app = ? AND key = ? AND {_LIVE}",
                        (app, key, now)).rowcount
    conn.execute("DELETE FROM app_storage WHERE app = ? AND key = ?", (app, key))
    return live > 0


def _keys(conn: sqlite3.Connection, app: str, prefix: str, now: float) -> list[str]:
    rows = conn.execute(
        f"SELECT key FROM app_storage WHERE app = ? AND substr(key, 1, ?) = ? AND {_LIVE} "
        "ORDER BY key", (app, len(prefix), prefix, now)).fetchall()
    return [r[0] for r in rows]


class ApplicationStorage:
    """VoxEngine's ApplicationStorage: string keys to string values, kept per application.

    Values persist across restarts in the DatabaseThread's file; a value put with a
    ``ttl`` disappears that many seconds later.  Bad keys or values raise at once,
    before anything is queued.
    """

    def __init__(self, db: DatabaseThread, app: str, now: Callable[[], float] = time.time) -> None:
        if not isinstance(app, str) or not app:
            raise ValueError("ApplicationStorage needs a non-empty application name")
        self.db = db
        self.app = app
        self._now = now
        db.submit(_create)

    def get(self, key: str) -> defer.Deferred:
        """Deferred value of ``key``, or None when it is missing or expired."""
        return self.db.run(_get, self.app, _check_key(key), self._now())

    def put(self, key: str, value: str, ttl: float | None = None) -> defer.Deferred:
        """Store ``value`` under ``key`` (for ``ttl`` seconds, or for ever); Deferred None."""
        _check_key(key)
        _check_value(value)
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
                raise TypeError(f"ttl is a number of seconds, not {type(ttl).__name__}")
            if not ttl > 0:
                raise ValueError(f"ttl must be a positive number of seconds, not {ttl}")
        now = self._now()
        return self.db.run(_put, self.app, key, value, None if ttl is None else now + ttl, now)

    def delete(self, key: str) -> defer.Deferred:
        """Remove ``key``; Deferred True when it existed (and had not expired)."""
        return self.db.run(_delete, self.app, _check_key(key), self._now())

    def keys(self, prefix: str = "") -> defer.Deferred:
        """Deferred sorted list of the live keys starting with ``prefix``."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix is a string, not {type(prefix).__name__}")
        return self.db.run(_keys, self.app, prefix, self._now())
