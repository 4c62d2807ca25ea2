"""ApplicationStorage on a real SQLite file and the real reactor (pytest-twisted):
get/put/delete/keys, prefixes, ttl on an injected clock, limits, apps kept apart,
values kept across a restart."""

from __future__ import annotations

import pytest
import pytest_twisted

from voxlab.store.appstorage import MAX_KEY_CHARS, MAX_VALUE_BYTES, ApplicationStorage
from voxlab.store.db import DatabaseThread


@pytest.fixture
def path(tmp_path):
    return tmp_path / "storage.db"


@pytest.fixture
def db(path):
    thread = DatabaseThread(path)
    yield thread
    thread.close(5)


@pytest_twisted.inlineCallbacks
def test_get_put_delete_keys(db):
    s = ApplicationStorage(db, "shop")
    assert (yield s.get("missing")) is None
    assert (yield s.put("user:1", "alice")) is None
    yield s.put("user:2", "bob")
    yield s.put("order:9", "{}")
    yield s.put("user:10", "")
    assert (yield s.get("user:1")) == "alice"
    assert (yield s.get("user:10")) == ""
    yield s.put("user:1", "alice again")                         # replaces
    assert (yield s.get("user:1")) == "alice again"
    assert (yield s.keys()) == ["order:9", "user:1", "user:10", "user:2"]
    assert (yield s.keys("user:1")) == ["user:1", "user:10"]
    assert (yield s.keys("user%")) == []                           # no LIKE wildcards
    assert (yield s.keys("nothing")) == []
    assert (yield s.delete("user:2")) is True
    assert (yield s.delete("user:2")) is False
    assert (yield s.get("user:2")) is None
    assert (yield s.keys("user")) == ["user:1", "user:10"]


@pytest_twisted.inlineCallbacks
def test_ttl_expires_keys_on_the_injected_clock(db):
    now = [1000.0]
    s = ApplicationStorage(db, "otp", now=lambda: now[0])
    yield s.put("code", "1234", ttl=30)
    yield s.put("gone", "x", ttl=5)
    yield s.put("kept", "y")
    assert (yield s.get("code")) == "1234"
    now[0] += 10
    assert (yield s.get("gone")) is None
    assert (yield s.keys()) == ["code", "kept"]
    assert (yield s.delete("gone")) is False                       # expired: did not exist
    now[0] += 20
    assert (yield s.get("code")) is None
    assert (yield s.keys()) == ["kept"]
    yield s.put("code", "5678")                                    # again, without a ttl
    now[0] += 10 ** 6
    assert (yield s.get("code")) == "5678"
    yield s.put("kept", "z", ttl=1)                               # a ttl put on a lasting key
    now[0] += 2
    assert (yield s.get("kept")) is None
    # expired rows are cleared by writes, not merely hidden
    count = yield db.run(lambda conn: conn.execute("SELECT count(*) FROM app_storage").fetchone()[0])
    assert count == 2                                              # code, kept (cleared next put)
    yield s.put("other", "v")
    count = yield db.run(lambda conn: conn.execute("SELECT count(*) FROM app_storage").fetchone()[0])
    assert count == 2                                              # code, other


def test_limits_raise_at_once(db):
    s = ApplicationStorage(db, "app")
    with pytest.raises(ValueError, match=str(MAX_KEY_CHARS)):
        s.put("k" * (MAX_KEY_CHARS + 1), "v")
    with pytest.raises(ValueError, match=str(MAX_KEY_CHARS)):
        s.get("k" * (MAX_KEY_CHARS + 1))
    with pytest.raises(ValueError, match="1 to 200"):
        s.delete("")
    with pytest.raises(TypeError, match="strings"):
        s.put(7, "v")
    with pytest.raises(TypeError, match="strings"):
        s.put("k", b"bytes")
    with pytest.raises(ValueError, match="2 MB"):
        s.put("k", "x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(ValueError, match="2 MB"):
        s.put("k", "é" * (MAX_VALUE_BYTES // 2 + 1))               # few characters, too many bytes
    with pytest.raises(ValueError, match="ttl"):
        s.put("k", "v", ttl=0)
    with pytest.raises(TypeError, match="ttl"):
        s.put("k", "v", ttl="60")
    with pytest.raises(TypeError):
        s.keys(None)
    with pytest.raises(ValueError, match="application name"):
        ApplicationStorage(db, "")


@pytest_twisted.inlineCallbacks
def test_the_largest_key_and_value_fit(db):
    s = ApplicationStorage(db, "app")
    key, value = "k" * MAX_KEY_CHARS, "v" * MAX_VALUE_BYTES
    yield s.put(key, value)
    assert (yield s.get(key)) == value


@pytest_twisted.inlineCallbacks
def test_two_apps_do_not_see_each_others_keys(db):
    a, b = ApplicationStorage(db, "a"), ApplicationStorage(db, "b")
    yield a.put("shared-name", "from a")
    yield b.put("shared-name", "from b")
    yield a.put("only-a", "1")
    assert (yield a.get("shared-name")) == "from a"
    assert (yield b.get("shared-name")) == "from b"
    assert (yield b.get("only-a")) is None
    assert (yield b.keys()) == ["shared-name"]
    assert (yield b.delete("only-a")) is False
    assert (yield a.delete("shared-name")) is True
    assert (yield b.get("shared-name")) == "from b"


@pytest_twisted.inlineCallbacks
def test_values_survive_a_restart(path):
    db = DatabaseThread(path)
    yield ApplicationStorage(db, "app").put("greeting", "hello ünïcode")
    ApplicationStorage(db, "app").put("written-at-close", "yes")        # not awaited
    assert db.close(5)
    db = DatabaseThread(path)
    try:
        s = ApplicationStorage(db, "app")
        assert (yield s.get("greeting")) == "hello ünïcode"
        assert (yield s.get("written-at-close")) == "yes"
        assert (yield s.keys()) == ["greeting", "written-at-close"]
    finally:
        db.close(5)
