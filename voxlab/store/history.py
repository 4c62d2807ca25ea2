"""Call history and session logs: what sessions ran, their calls, recordings and log lines."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, Callable

from twisted.internet import defer, task

from voxlab.store.db import DatabaseThread

SCHEMA_VERSION = 1
FINISH_REASONS = frozenset({"normal", "error", "timeout", "limit", "shutdown", "api"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    scenario TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    finish_reason TEXT,
    custom_data TEXT NOT NULL DEFAULT '',
    node TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started);
CREATE INDEX IF NOT EXISTS sessions_scenario ON sessions (scenario);
CREATE INDEX IF NOT EXISTS sessions_finish_reason ON sessions (finish_reason);
CREATE INDEX IF NOT EXISTS sessions_ended ON sessions (ended);
CREATE TABLE IF NOT EXISTS calls (
    session_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    from_uri TEXT NOT NULL,
    to_uri TEXT NOT NULL,
    codec TEXT NOT NULL,
    created REAL NOT NULL,
    connected REAL,
    ended REAL NOT NULL,
    final_code INTEGER,
    end_reason TEXT NOT NULL,
    duration REAL NOT NULL,
    PRIMARY KEY (session_id, call_id)
);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    call_id TEXT,
    path TEXT NOT NULL,
    started REAL NOT NULL,
    duration REAL,
    size INTEGER
);
CREATE INDEX IF NOT EXISTS recordings_session ON recordings (session_id);
CREATE TABLE IF NOT EXISTS session_log (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    at REAL NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_log_session ON session_log (session_id, at);
"""


def _dicts(cur: sqlite3.Cursor) -> list[dict]:
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


class HistoryDB:
    """The history schema and its queries, synchronous, on a given sqlite3 connection.

    No reactor and no threads: History runs these methods on its DatabaseThread,
    and the ``voxlab history`` CLI calls them directly.  Each write is its own
    transaction.
    """

    def __init__(self, conn: sqlite3.Connection, node: str = "") -> None:
        self.conn = conn
        self.node = node

    def create_schema(self) -> None:
        with self.conn:
            self.conn.executescript(_SCHEMA)
            row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                self.conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise RuntimeError(f"history schema version {row[0]} is newer than this voxlab's "
                                   f"({SCHEMA_VERSION})")

    def has_schema(self) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'").fetchone()
        return row is not None

    # -- writes

    def session_started(self, id: str, rule: str, scenario: str, started: float,
                        custom_data: str = "") -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO sessions (id, rule, scenario, started, custom_data, node) "
                "VALUES (?, ?, ?, ?, ?, ?)", (id, rule, scenario, started, custom_data, self.node))

    def session_ended(self, id: str, ended: float, finish_reason: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE sessions SET ended = ?, finish_reason = ? WHERE id = ?",
                              (ended, finish_reason, id))

    def call_ended(self, session_id: str, call_id: str, direction: str, from_uri: str,
                   to_uri: str, codec: str, created: float, connected: float | None,
                   ended: float, final_code: int | None, end_reason: str,
                   duration: float) -> None:
        with self.conn:
            # REPLACE: a call reported twice keeps its last report rather than failing.
            self.conn.execute(
                "INSERT OR REPLACE INTO calls (session_id, call_id, direction, from_uri, to_uri, "
                "codec, created, connected, ended, final_code, end_reason, duration) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, call_id, direction, from_uri, to_uri, codec, created, connected,
                 ended, final_code, end_reason, duration))

    def recording(self, session_id: str, call_id: str | None, path: str, started: float,
                  duration: float | None = None, size: int | None = None) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO recordings (session_id, call_id, path, started, duration, size) "
                "VALUES (?, ?, ?, ?, ?, ?)", (session_id, call_id, path, started, duration, size))

    def log(self, session_id: str, at: float, text: str) -> None:
        with self.conn:
            self.conn.execute("INSERT INTO session_log (session_id, at, text) VALUES (?, ?, ?)",
                              (session_id, at, text))

    def prune(self, before: float) -> int:
        """Delete the sessions that ended before ``before`` with all their rows; returns how many."""
        old = "SELECT id FROM sessions WHERE ended IS NOT NULL AND ended < ?"
        with self.conn:
            for table in ("calls", "recordings", "session_log"):
                self.conn.execute(f"DELETE FROM {table} WHERE session_id IN ({old})", (before,))
            return self.conn.execute(
                "DELETE FROM sessions WHERE ended IS NOT NULL AND ended < ?", (before,)).rowcount

    # -- reads

    def sessions(self, since: float | None = None, until: float | None = None,
                 scenario: str | None = None, reason: str | None = None,
                 custom_data: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
        """Sessions started in [since, until), newest first, each with its ``calls`` count.

        ``custom_data`` matches as a (case-sensitive) substring.
        """
        where, params = [], []
        if since is not None:
            where.append("s.started >= ?")
            params.append(since)
        if until is not None:
            where.append("s.started < ?")
            params.append(until)
        if scenario is not None:
            where.append("s.scenario = ?")
            params.append(scenario)
        if reason is not None:
            where.append("s.finish_reason = ?")
            params.append(reason)
        if custom_data is not None:
            where.append("instr(s.custom_data, ?) > 0")
            params.append(custom_data)
        sql = ("SELECT s.*, (SELECT count(*) FROM calls c WHERE c.session_id = s.id) AS calls "
               "FROM sessions s")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.started DESC, s.id DESC LIMIT ? OFFSET ?"
        return _dicts(self.conn.execute(sql, (*params, int(limit), int(offset))))

    def session(self, id: str) -> dict | None:
        """One session with its ``calls`` and ``recordings`` (lists of dicts), or None."""
        rows = _dicts(self.conn.execute("SELECT * FROM sessions WHERE id = ?", (id,)))
        if not rows:
            return None
        found = rows[0]
        found["calls"] = _dicts(self.conn.execute(
            "SELECT * FROM calls WHERE session_id = ? ORDER BY created, call_id", (id,)))
        found["recordings"] = _dicts(self.conn.execute(
            "SELECT call_id, path, started, duration, size FROM recordings "
            "WHERE session_id = ? ORDER BY started, id", (id,)))
        return found

    def session_log(self, id: str, limit: int = 10000) -> list[dict]:
        """The session's log lines, oldest first: dicts with ``at`` and ``text``."""
        return _dicts(self.conn.execute(
            "SELECT at, text FROM session_log WHERE session_id = ? ORDER BY at, id LIMIT ?",
            (id, int(limit))))


def _job(method: str) -> Callable[..., Any]:
    """A DatabaseThread job calling HistoryDB.<method> on the worker's connection."""
    def job(conn: sqlite3.Connection, node: str, *args: Any) -> Any:
        return getattr(HistoryDB(conn, node), method)(*args)
    job.__qualname__ = f"HistoryDB.{method}"
    return job


_JOBS = {name: _job(name) for name in (
    "create_schema", "session_started", "session_ended", "call_ended", "recording", "log",
    "prune", "sessions", "session", "session_log")}


class History:
    """The server's asynchronous call history, on a DatabaseThread.

    Writes are queued and forgotten (a failure is logged), so they never block a
    session; reads return Deferreds.  With ``retention_days``, ``start()`` prunes
    old sessions at once and then hourly.  The DatabaseThread belongs to the
    caller, who closes it after ``close()``.
    """

    PRUNE_INTERVAL = 3600.0

    def __init__(self, db: DatabaseThread, retention_days: float | None = None, node: str = "",
                 now: Callable[[], float] = time.time, clock: Any = None) -> None:
        self.db = db
        self.retention_days = retention_days
        self.node = node
        self._now = now
        self._pruning = task.LoopingCall(self._prune_old)
        self._pruning.clock = clock if clock is not None else db.reactor
        self._submit("create_schema")

    def _submit(self, method: str, *args: Any) -> None:
        self.db.submit(_JOBS[method], self.node, *args)

    def _run(self, method: str, *args: Any) -> defer.Deferred:
        return self.db.run(_JOBS[method], self.node, *args)

    def start(self) -> None:
        """Start the retention pruning (now, then hourly); nothing to do when keeping forever."""
        if self.retention_days is not None and not self._pruning.running:
            self._pruning.start(self.PRUNE_INTERVAL, now=True)

    def close(self) -> None:
        """Stop the pruning; queued writes stay queued for the DatabaseThread's flush/close."""
        if self._pruning.running:
            self._pruning.stop()

    def _prune_old(self) -> None:
        self._submit("prune", self._now() - self.retention_days * 86400.0)

    # -- writes (fire-and-forget)

    def session_started(self, id: str, rule: str, scenario: str, started: float,
                        custom_data: str = "") -> None:
        self._submit("session_started", id, rule, scenario, started, custom_data)

    def session_ended(self, id: str, ended: float, finish_reason: str) -> None:
        if finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason must be one of {sorted(FINISH_REASONS)}, "
                             f"not {finish_reason!r}")
        self._submit("session_ended", id, ended, finish_reason)

    def call_ended(self, session_id: str, call_id: str, direction: str, from_uri: str,
                   to_uri: str, codec: str, created: float, connected: float | None,
                   ended: float, final_code: int | None, end_reason: str,
                   duration: float | None = None) -> None:
        """One finished call; ``duration`` (connected seconds) defaults to ended - connected."""
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        if duration is None:
            duration = max(0.0, ended - connected) if connected is not None else 0.0
        self._submit("call_ended", session_id, call_id, direction, from_uri, to_uri, codec,
                     created, connected, ended, final_code, end_reason, duration)

    def recording(self, session_id: str, call_id: str | None, path: str, started: float,
                  duration: float | None = None, size: int | None = None) -> None:
        self._submit("recording", session_id, call_id, path, started, duration, size)

    def log(self, session_id: str, at: float, text: str) -> None:
        self._submit("log", session_id, at, text)

    # -- reads and maintenance

    def sessions(self, since: float | None = None, until: float | None = None,
                 scenario: str | None = None, reason: str | None = None,
                 custom_data: str | None = None, limit: int = 100,
                 offset: int = 0) -> defer.Deferred:
        """Deferred list of session dicts, newest first (see HistoryDB.sessions)."""
        return self._run("sessions", since, until, scenario, reason, custom_data, limit, offset)

    def session(self, id: str) -> defer.Deferred:
        """Deferred session dict with ``calls`` and ``recordings``, or None."""
        return self._run("session", id)

    def session_log(self, id: str, limit: int = 10000) -> defer.Deferred:
        """Deferred list of {at, text}, oldest first."""
        return self._run("session_log", id, limit)

    def prune(self, older_than_seconds: float) -> defer.Deferred:
        """Delete sessions that ended more than ``older_than_seconds`` ago; Deferred count."""
        return self._run("prune", self._now() - older_than_seconds)


def query_sessions(path: str | os.PathLike, with_calls: bool = False, **filters: Any) -> list[dict]:
    """HistoryDB.sessions(**filters) on the file at ``path``, synchronously, for the CLI;
    ``with_calls`` adds each session's call rows (``call_rows``).

    Returns [] when there is no such file or it holds no history yet.
    """
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(path)
    try:
        db = HistoryDB(conn)
        if not db.has_schema():
            return []
        rows = db.sessions(**filters)
        if with_calls:
            for row in rows:
                detail = db.session(row["id"]) or {}
                row["call_rows"] = detail.get("calls", [])
        return rows
    finally:
        conn.close()
