"""DatabaseThread and the call history on real SQLite files and the real reactor
(pytest-twisted): rows read back through every filter, a session's calls, recordings
and log, retention pruning, restarts, flush at shutdown, failed writes, a stuck
worker thread that must not stall the reactor thread."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.logger import globalLogPublisher

from voxlab.store.db import DatabaseThread
from voxlab.store.history import History, HistoryDB, SCHEMA_VERSION, query_sessions

DAY = 86400.0
NOW = 1_700_000_000.0


@pytest.fixture
def path(tmp_path):
    return tmp_path / "voxlab.db"


@pytest.fixture
def db(path):
    thread = DatabaseThread(path)
    yield thread
    thread.close(5)


@pytest.fixture
def logged():
    """Every twisted.logger event emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def failures(events, kind):
    return [e for e in events if "log_failure" in e and e["log_failure"].check(kind)]


def fill(h: History) -> None:
    """Four sessions, an hour apart, over two scenarios and three ends."""
    h.session_started("s1", "^100$", "menu.py", NOW - 4 * 3600, '{"customer": 17}')
    h.session_ended("s1", NOW - 4 * 3600 + 60, "normal")
    h.session_started("s2", "^200$", "echo.py", NOW - 3 * 3600, "")
    h.session_ended("s2", NOW - 3 * 3600 + 5, "error")
    h.session_started("s3", "api", "menu.py", NOW - 2 * 3600, '{"customer": 42}')
    h.session_ended("s3", NOW - 2 * 3600 + 30, "timeout")
    h.session_started("s4", "^100$", "menu.py", NOW - 3600, "campaign=spring")
    for n, session in enumerate(["s1", "s1", "s3"]):
        h.call_ended(session, f"c{n}", "in", "sip:a@x", "sip:100@voxlab", "PCMU",
                     created=NOW - 4 * 3600 + n, connected=NOW - 4 * 3600 + n + 2,
                     ended=NOW - 4 * 3600 + n + 12, final_code=200, end_reason="bye")


def ids(rows):
    return [r["id"] for r in rows]


# ---------------------------------------------------------------- History

@pytest_twisted.inlineCallbacks
def test_sessions_read_back_newest_first_with_filters(db):
    h = History(db, node="lab1")
    fill(h)
    rows = yield h.sessions()
    assert ids(rows) == ["s4", "s3", "s2", "s1"]
    s1 = rows[-1]
    assert s1 == {"id": "s1", "rule": "^100$", "scenario": "menu.py", "started": NOW - 4 * 3600,
                  "ended": NOW - 4 * 3600 + 60, "finish_reason": "normal",
                  "custom_data": '{"customer": 17}', "node": "lab1", "calls": 2}
    assert rows[0]["ended"] is None and rows[0]["finish_reason"] is None
    assert [r["calls"] for r in rows] == [0, 1, 0, 2]

    assert ids((yield h.sessions(since=NOW - 3 * 3600))) == ["s4", "s3", "s2"]
    assert ids((yield h.sessions(until=NOW - 3 * 3600))) == ["s1"]          # until is exclusive
    assert ids((yield h.sessions(since=NOW - 3.5 * 3600, until=NOW - 1.5 * 3600))) == ["s3", "s2"]
    assert ids((yield h.sessions(scenario="menu.py"))) == ["s4", "s3", "s1"]
    assert ids((yield h.sessions(reason="timeout"))) == ["s3"]
    assert ids((yield h.sessions(custom_data="customer"))) == ["s3", "s1"]
    assert ids((yield h.sessions(custom_data='"customer": 4'))) == ["s3"]
    assert ids((yield h.sessions(custom_data="%"))) == []                    # no LIKE wildcards
    assert ids((yield h.sessions(scenario="menu.py", reason="normal"))) == ["s1"]
    assert ids((yield h.sessions(limit=2))) == ["s4", "s3"]
    assert ids((yield h.sessions(limit=2, offset=2))) == ["s2", "s1"]
    assert (yield h.sessions(scenario="x'; DROP TABLE sessions; --")) == []
    assert len((yield h.sessions())) == 4


@pytest_twisted.inlineCallbacks
def test_one_session_with_its_calls_recordings_and_log(db):
    h = History(db)
    h.session_started("s", "^1$", "rec.py", NOW, "")
    h.call_ended("s", "out-1", "out", "sip:voxlab", "sip:bob@x", "PCMA", created=NOW + 1,
                 connected=None, ended=NOW + 5, final_code=486, end_reason="busy")
    h.call_ended("s", "in-1", "in", "sip:alice@x", "sip:1@voxlab", "PCMU", created=NOW,
                 connected=NOW + 1, ended=NOW + 31.5, final_code=200, end_reason="bye")
    h.recording("s", "in-1", "/rec/s-in-1.wav", NOW + 2, 20.0, 320044)
    h.recording("s", None, "/rec/s-conf.wav", NOW + 3)
    for n in range(5):
        h.log("s", NOW + n / 10, f"line {n}")
    h.log("other", NOW, "not mine")
    h.session_ended("s", NOW + 40, "normal")

    s = yield h.session("s")
    assert s["finish_reason"] == "normal" and s["ended"] == NOW + 40
    assert [c["call_id"] for c in s["calls"]] == ["in-1", "out-1"]           # in creation order
    inbound, outbound = s["calls"]
    assert inbound["duration"] == 30.5 and inbound["final_code"] == 200
    assert inbound["direction"] == "in" and inbound["codec"] == "PCMU"
    assert outbound["connected"] is None and outbound["duration"] == 0.0
    assert outbound["end_reason"] == "busy" and outbound["to_uri"] == "sip:bob@x"
    assert s["recordings"] == [
        {"call_id": "in-1", "path": "/rec/s-in-1.wav", "started": NOW + 2, "duration": 20.0,
         "size": 320044},
        {"call_id": None, "path": "/rec/s-conf.wav", "started": NOW + 3, "duration": None,
         "size": None}]
    log = yield h.session_log("s")
    assert log == [{"at": NOW + n / 10, "text": f"line {n}"} for n in range(5)]
    assert [line["text"] for line in (yield h.session_log("s", limit=2))] == ["line 0", "line 1"]
    assert (yield h.session("nope")) is None
    assert (yield h.session_log("nope")) == []


def test_bad_arguments_raise_at_once(db):
    h = History(db)
    with pytest.raises(ValueError, match="finish_reason must be one of"):
        h.session_ended("s", NOW, "crashed")
    with pytest.raises(ValueError, match="direction"):
        h.call_ended("s", "c", "sideways", "a", "b", "PCMU", NOW, None, NOW, None, "x")


@pytest_twisted.inlineCallbacks
def test_prune_deletes_old_sessions_and_all_their_rows(db, path):
    h = History(db, now=lambda: NOW)
    for sid, ended in [("old", NOW - 10 * DAY), ("recent", NOW - DAY), ("running", None)]:
        h.session_started(sid, "r", "a.py", (ended or NOW) - 100, "")
        if ended is not None:
            h.session_ended(sid, ended, "normal")
        h.call_ended(sid, "c", "in", "a", "b", "PCMU", NOW - 100, None, NOW - 50, 487, "cancel")
        h.recording(sid, "c", f"/rec/{sid}.wav", NOW - 100)
        h.log(sid, NOW - 100, "hello")
    h.session_started("ancient-running", "r", "a.py", NOW - 30 * DAY, "")   # not ended: kept

    assert (yield h.prune(5 * DAY)) == 1
    assert sorted(ids((yield h.sessions()))) == ["ancient-running", "recent", "running"]
    assert (yield h.session("old")) is None
    assert (yield h.session_log("old")) == []
    assert (yield h.prune(5 * DAY)) == 0
    yield db.run(lambda conn: None)
    with sqlite3.connect(path) as conn:
        for table in ("calls", "recordings", "session_log"):
            left = conn.execute(f"SELECT DISTINCT session_id FROM {table} ORDER BY 1").fetchall()
            assert left == [("recent",), ("running",)], table


@pytest_twisted.inlineCallbacks
def test_retention_prunes_at_start_and_then_hourly(db):
    now = [NOW]
    clock = task.Clock()
    h = History(db, retention_days=2, now=lambda: now[0], clock=clock)
    for sid, ended in [("three-days", NOW - 3 * DAY), ("one-day", NOW - DAY)]:
        h.session_started(sid, "r", "a.py", ended - 10, "")
        h.session_ended(sid, ended, "normal")
    h.start()
    assert ids((yield h.sessions())) == ["one-day"]

    now[0] += 1.5 * DAY
    clock.advance(3599)
    assert ids((yield h.sessions())) == ["one-day"]                          # not an hour yet
    clock.advance(1)
    assert ids((yield h.sessions())) == []
    h.close()
    assert not clock.getDelayedCalls()


def test_keeping_forever_schedules_nothing(db):
    clock = task.Clock()
    h = History(db, retention_days=None, clock=clock)
    h.start()
    assert not clock.getDelayedCalls()
    h.close()


@pytest_twisted.inlineCallbacks
def test_data_survives_a_restart(path):
    db = DatabaseThread(path)
    h = History(db)
    fill(h)
    h.log("s1", NOW, "before the restart")
    assert db.close(5)

    db = DatabaseThread(path)
    try:
        h = History(db)                        # the schema is there already: created once
        assert ids((yield h.sessions())) == ["s4", "s3", "s2", "s1"]
        assert len((yield h.session("s1"))["calls"]) == 2
        assert (yield h.session_log("s1")) == [{"at": NOW, "text": "before the restart"}]
        versions = yield db.run(lambda conn: conn.execute("SELECT version FROM schema_version").fetchall())
        assert versions == [(SCHEMA_VERSION,)]
        mode = yield db.run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    finally:
        db.close(5)


def test_flush_at_shutdown_writes_everything_without_the_reactor(path):
    # A plain test: the reactor does not run while it does.
    db = DatabaseThread(path)
    h = History(db)
    for n in range(300):
        h.session_started(f"s{n:03}", "r", "load.py", NOW + n, f"n={n}")
        h.log(f"s{n:03}", NOW + n, "started")
        h.session_ended(f"s{n:03}", NOW + n + 1, "shutdown")
    assert db.flush(10)
    rows = query_sessions(path, limit=1000)     # another connection, as the CLI would
    assert len(rows) == 300 and rows[0]["id"] == "s299"
    assert {r["finish_reason"] for r in rows} == {"shutdown"}
    assert db.close(5)
    assert len(query_sessions(path, reason="shutdown", limit=1000)) == 300
    assert db.flush(1)                           # closed: nothing is pending


@pytest_twisted.inlineCallbacks
def test_a_failed_write_is_logged_once_and_later_writes_work(db, logged):
    h = History(db)
    h.session_started("dup", "r", "a.py", NOW, "")
    h.session_started("dup", "r", "a.py", NOW + 1, "")                       # primary key clash
    h.session_started("after", "r", "a.py", NOW + 2, "")
    rows = yield h.sessions()
    assert ids(rows) == ["after", "dup"] and rows[1]["started"] == NOW
    (event,) = failures(logged, sqlite3.IntegrityError)
    assert event["fn"] == "HistoryDB.session_started"

    def broken(conn):
        conn.execute("INSERT INTO sessions (id, rule, scenario, started) VALUES ('half', 'r', 'a', 1)")
        raise RuntimeError("boom")
    db.submit(broken)
    yield db.run(lambda conn: None)
    assert len(failures(logged, RuntimeError)) == 1
    assert (yield h.session("half")) is None                                 # rolled back


@pytest_twisted.inlineCallbacks
def test_run_fires_in_the_reactor_thread_with_result_or_failure(db):
    seen = []
    result = yield db.run(lambda conn, a, b: (threading.current_thread(), a + b), 2, 3)
    seen.append(threading.current_thread())
    assert result[0] is not threading.main_thread() and result[1] == 5
    assert seen == [threading.main_thread()]
    with pytest.raises(sqlite3.OperationalError, match="syntax"):
        yield db.run(lambda conn: conn.execute("SELEKT 1"))


@pytest_twisted.inlineCallbacks
def test_an_unopenable_file_fails_every_job(tmp_path, logged):
    db = DatabaseThread(tmp_path / "no" / "such" / "dir.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="could not be opened"):
            yield db.run(lambda conn: 1)
    finally:
        db.close(5)
    assert [e for e in logged if e.get("log_format", "").startswith("cannot open database")]


@pytest_twisted.inlineCallbacks
def test_after_close_run_fails_and_submit_drops(path, logged):
    db = DatabaseThread(path)
    assert db.close(5)
    with pytest.raises(RuntimeError, match="closed"):
        yield db.run(lambda conn: 1)
    db.submit(lambda conn: 1)
    assert any("dropped" in e.get("log_format", "") for e in logged)


def test_submit_returns_at_once_while_the_worker_is_stuck(db):
    gate = threading.Event()
    db.submit(lambda conn: gate.wait(10))
    h = History(db)
    t0 = time.monotonic()
    for n in range(100):
        h.session_started(f"s{n}", "r", "a.py", NOW, "")
        db.submit(lambda conn: None)
    assert time.monotonic() - t0 < 0.1
    assert not db.flush(0.2)                    # still stuck: flush reports it
    gate.set()
    assert db.flush(5)
    assert len(query_sessions(db.path, limit=1000)) == 100


# ---------------------------------------------------------------- HistoryDB / CLI

def test_historydb_works_synchronously_without_a_reactor():
    conn = sqlite3.connect(":memory:")
    hdb = HistoryDB(conn, node="cli")
    assert not hdb.has_schema()
    hdb.create_schema()
    hdb.create_schema()
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    hdb.session_started("s", "api", "x.py", NOW, "")
    hdb.session_ended("s", NOW + 1, "api")
    hdb.log("s", NOW, "hi")
    assert hdb.sessions()[0]["node"] == "cli"
    assert hdb.session("s")["calls"] == [] and hdb.session_log("s") == [{"at": NOW, "text": "hi"}]
    assert hdb.prune(NOW + 2) == 1 and hdb.sessions() == []


def test_historydb_refuses_a_newer_schema():
    conn = sqlite3.connect(":memory:")
    HistoryDB(conn).create_schema()
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        HistoryDB(conn).create_schema()


def test_query_sessions_on_a_missing_or_empty_file(tmp_path):
    missing = tmp_path / "missing.db"
    assert query_sessions(missing) == []
    assert not missing.exists()                 # and did not create it
    sqlite3.connect(tmp_path / "empty.db").close()
    assert query_sessions(tmp_path / "empty.db") == []
