"""One worker thread that owns a sqlite3 connection, so the reactor thread never touches the disk."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

_STOP = object()


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class DatabaseThread:
    """Serialises every access to one SQLite file through a single daemon thread.

    sqlite3 connections belong to the thread that made them and SQLite allows one
    writer at a time, so one thread with one connection does all the work, in the
    order it was queued.  Each job runs as one transaction: committed when ``fn``
    returns, rolled back when it raises.  ``run`` is for reads (a Deferred fired in
    the reactor thread), ``submit`` for fire-and-forget writes, ``flush``/``close``
    for shutdown, when the reactor may no longer be running.
    """

    log = Logger()

    def __init__(self, path: str, reactor: Any = None, name: str = "voxlab-db") -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.path = str(path)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred:
        """Queue ``fn(conn, *args)``; the Deferred fires in the reactor thread with its result or failure."""
        if self._closed:
            return defer.fail(RuntimeError(f"database {self.path} is closed"))
        d: defer.Deferred = defer.Deferred()
        self._queue.put((fn, args, d))
        return d

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(conn, *args)`` and forget it: a failure is logged, never raised here."""
        if self._closed:
            self.log.warn("database {path} is closed: dropped {fn}", path=self.path, fn=_name(fn))
            return
        self._queue.put((fn, args, None))

    def flush(self, timeout: float) -> bool:
        """Block until everything queued so far is done; False if ``timeout`` seconds passed first.

        Safe from any thread (but the worker's own) and without a running reactor.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() called from the database thread would wait for itself")
        if not self._thread.is_alive():
            return self._queue.empty()
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, stop the thread and close the connection; False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        self._closed = True
        flushed = self.flush(timeout)
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(max(0.0, deadline - time.monotonic()))
        return flushed and not self._thread.is_alive()

    # -- the worker thread

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        error: BaseException | None = None
        try:
            conn = sqlite3.connect(self.path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except Exception as e:
            error = e
            self.log.failure("cannot open database {path}", Failure(), path=self.path)
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                self._do(conn, error, *item)
        finally:
            if conn is not None:
                conn.close()

    def _do(self, conn, error, fn, args, d) -> None:
        try:
            if conn is None:
                raise sqlite3.OperationalError(f"database {self.path} could not be opened: {error}")
            result = fn(conn, *args)
            conn.commit()
        except Exception:
            failure = Failure()
            failure.cleanFailure()
            if conn is not None:
                try:
                    conn.rollback()
                except sqlite3.Error:
                    pass
            if d is None:
                self.log.failure("database write {fn} failed", failure, fn=_name(fn))
            else:
                self.reactor.callFromThread(d.errback, failure)
        else:
            if d is not None:
                self.reactor.callFromThread(d.callback, result)
