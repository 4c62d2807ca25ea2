"""``voxlab users add|list|remove`` write and read the same directory the server uses."""

from __future__ import annotations

import json
import subprocess
import sys

from voxlab.sip.location import Directory


def users(*args, data_dir, stdin=None):
    return subprocess.run([sys.executable, "-m", "voxlab.cli", "users", *args, "--data-dir", str(data_dir)],
                          input=stdin, capture_output=True, text=True, timeout=30)


def test_add_list_remove(tmp_path):
    assert users("add", "carol", "--password", "c4rol", data_dir=tmp_path).returncode == 0
    assert users("add", "dave", data_dir=tmp_path, stdin="d4ve\n").returncode == 0
    directory = Directory(tmp_path / "directory.sqlite")
    assert directory.password("carol") == "c4rol" and directory.password("dave") == "d4ve"
    directory.close()
    listed = json.loads(users("list", "--json", data_dir=tmp_path).stdout)
    assert [u["user"] for u in listed["users"]] == ["carol", "dave"]
    assert users("remove", "carol", data_dir=tmp_path).returncode == 0
    gone = users("remove", "carol", data_dir=tmp_path)
    assert gone.returncode == 2 and "no user 'carol'" in gone.stderr
    bad = users("add", "x@y", "--password", "p", data_dir=tmp_path)
    assert bad.returncode == 2 and "bad user name" in bad.stderr


def test_config_users_are_listed_and_read_only(tmp_path):
    cfg = tmp_path / "voxlab.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[users]\nalice = "wonder-land"\n')
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "users", "list", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "alice  (config)  0 contact(s)" in out.stdout, out
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "users", "remove", "alice", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "config file" in out.stderr
