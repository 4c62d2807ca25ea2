"""`voxlab sessions`, `voxlab hangup`, `voxlab logs [-f]` against a live call; scenario names are not clobbered."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time

import pytest

from tests.console.conftest import VOXLAB, attach_next, requires_sipp, run_cli, wait_feed

pytestmark = [requires_sipp, pytest.mark.e2e]


class LineReader:
    """Lines of a subprocess's stdout, readable with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in proc.stdout:
                self.lines.put(line.rstrip("\n"))
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line with {text!r}; got {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended without {text!r}; got {self.seen}")
            self.seen.append(line)
            if text in line:
                return line


def test_sessions_logs_follow_and_hangup(vx, console, sipp_call):
    data = str(vx.data_dir)
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml", service="lab"))
    sipp = reply["started"]
    sid, cid = reply["session"]["id"], reply["call"]
    wait_feed(console, "lab: connected", kind="log")

    # the scenario's own `show` is left alone; the helper is still reachable
    assert "__console__.show()" in reply["banner"]
    assert console.request("eval", source="show()")["result"] == '"the scenario\'s own show"'
    assert cid in console.request("eval", source="__console__.show()")["output"]

    table = run_cli("sessions", "--data-dir", data)
    assert table.returncode == 0, table.stderr
    assert "SESSION" in table.stdout and "CALL STATE" in table.stdout
    row = next(line for line in table.stdout.splitlines() if cid in line)
    assert sid in row and "lab.py" in row and "CONNECTED" in row and "PCMU" in row
    as_json = run_cli("sessions", "--data-dir", data, "--json")
    assert cid in as_json.stdout

    logs = run_cli("logs", sid, "--data-dir", data)
    assert logs.returncode == 0, logs.stderr
    assert "lab: call from sipp" in logs.stdout and "lab: connected" in logs.stdout
    assert " connected" not in logs.stdout.replace("lab: connected", "")     # Logger.write lines only
    feed = run_cli("logs", sid, "--feed", "--data-dir", data)
    assert feed.returncode == 0, feed.stderr
    assert re.search(rf" sip +{re.escape(cid)} connected", feed.stdout), feed.stdout
    assert re.search(r" log +lab: connected", feed.stdout), feed.stdout

    follow = subprocess.Popen([VOXLAB, "logs", "-f", sid, "--data-dir", data], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        reader = LineReader(follow)
        reader.wait_for("lab: connected")                 # the backlog first
        console.request("eval", source="Logger.write('written while following')")
        reader.wait_for("written while following")

        hang = run_cli("hangup", cid, "--data-dir", data)
        assert hang.returncode == 0 and cid in hang.stdout, hang.stderr
        assert sipp.wait(30) == 0, sipp.explain()
        assert follow.wait(20) == 0                       # -f ends with the session
        assert "ended" in follow.stderr.read()
    finally:
        if follow.poll() is None:
            follow.kill()

    ended = run_cli("sessions", "--data-dir", data, "--ended")
    assert sid in ended.stdout.split("recently ended:")[1]
    again = run_cli("hangup", cid, "--data-dir", data)
    assert again.returncode == 2 and "ended" in again.stderr


def test_cli_errors_and_version(vx, tmp_path):
    assert run_cli("--version").stdout.strip().startswith("voxlab ")
    missing = run_cli("sessions", "--data-dir", str(tmp_path))
    assert missing.returncode == 2 and "no voxlab console" in missing.stderr
    unknown = run_cli("hangup", "s999-0000-c1", "--data-dir", str(vx.data_dir))
    assert unknown.returncode == 2 and "no session or call" in unknown.stderr


def test_attach_with_piped_input_runs_it_once(vx, console, sipp_call):
    data = str(vx.data_dir)
    reply = attach_next(console, lambda: sipp_call("uac_wait_bye.xml"))
    sipp = reply["started"]
    cid = reply["call"]
    wait_feed(console, f"{cid} connected", kind="sip")
    done = run_cli("attach", "--data-dir", data, cid, input="print(call.id)\ncall.state\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [cid, "'CONNECTED'"]
    # what a cell prints after an await is printed too, before the result
    late = run_cli("attach", "--data-dir", data, cid, input=(
        "from twisted.internet import task, reactor\nprint('before')\n"
        "await task.deferLater(reactor, 0.1, lambda: None)\nprint('after the await')\n42\n"))
    assert late.returncode == 0, late.stderr
    lines = late.stdout.splitlines()
    assert len(lines) == 4 and lines[0] == "before" and lines[2] == "after the await", lines
    assert re.fullmatch(r"<Deferred #\d+>", lines[1]) and re.fullmatch(r"Deferred #\d+ fired: 42", lines[3])
    failed = run_cli("attach", "--data-dir", data, cid, input="call.no_such_thing\n")
    assert failed.returncode == 1 and "AttributeError" in failed.stderr
    # exit(n) ends the script's run with status n (the rest does not run; the session goes on)
    stopped = run_cli("attach", "--data-dir", data, cid, input="print('one')\nimport sys; sys.exit(3)\nprint('two')\n")
    assert stopped.returncode == 3, stopped.stderr
    assert stopped.stdout == "one\n" and "exit status 3" in stopped.stderr and "Ctrl-D" not in stopped.stderr
    # a Deferred that never fires: said after --wait-deferred seconds, status 1
    pending = run_cli("attach", "--data-dir", data, cid, "--wait-deferred", "0.5",
                      input="from twisted.internet import defer\nnever = defer.Deferred()\nnever\n")
    assert pending.returncode == 1, pending.stderr
    assert re.search(r"Deferred #\d+ still pending after 0.5 s", pending.stderr), pending.stderr
    hung = run_cli("attach", "--data-dir", data, cid, input="call.hangup()\n")
    assert hung.returncode == 0, hung.stderr
    assert sipp.wait(30) == 0, sipp.explain()
