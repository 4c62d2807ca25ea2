"""The ``voxlab`` command's own logic, without a server: token lookup and messages."""

from __future__ import annotations

import pytest

from voxlab import cli


class FakeClient:
    """Answers requests from a dict (op -> reply) like the console would."""

    def __init__(self, replies: dict[str, dict]) -> None:
        self.replies = replies

    def __enter__(self) -> "FakeClient":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def request(self, op: str, **fields) -> dict:
        return self.replies[op]


def test_logs_of_a_session_without_lines_says_so(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_connect", lambda args: FakeClient(
        {"logs": {"ok": True, "session": "s1-ab12", "state": "running", "lines": [], "following": False}}))
    assert cli.main(["logs", "s1"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "(no log lines in session s1-ab12)" in out.err


def test_tcp_without_a_token_explains_where_to_get_one(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("VOXLAB_CONSOLE_TOKEN", raising=False)
    assert cli.main(["sessions", "--tcp", "127.0.0.1:9", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs the console token" in err and "--token" in err and "$VOXLAB_CONSOLE_TOKEN" in err


def test_tcp_token_from_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("VOXLAB_CONSOLE_TOKEN", raising=False)
    (tmp_path / "console.token").write_text("from-the-file\n")
    parse = cli.build_parser().parse_args
    endpoint, _ = cli._endpoint(parse(["sessions", "--tcp", "127.0.0.1:5039", "--data-dir", str(tmp_path)]))
    assert endpoint.token == "from-the-file"
    # an explicit token or the environment still win
    endpoint, _ = cli._endpoint(parse(["sessions", "--tcp", "127.0.0.1:5039", "--data-dir", str(tmp_path),
                                       "--token", "given"]))
    assert endpoint.token == "given"
    monkeypatch.setenv("VOXLAB_CONSOLE_TOKEN", "from-env")
    endpoint, _ = cli._endpoint(parse(["sessions", "--tcp", "127.0.0.1:5039", "--data-dir", str(tmp_path)]))
    assert endpoint.token == "from-env"


@pytest.mark.parametrize("config_token, expected", [(None, "from-the-file"), ("in-config", "in-config")])
def test_tcp_token_with_a_config_file(monkeypatch, tmp_path, config_token, expected):
    monkeypatch.delenv("VOXLAB_CONSOLE_TOKEN", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    (data / "console.token").write_text("from-the-file\n")
    config = tmp_path / "voxlab.toml"
    config.write_text(f'data_dir = "{data}"\n'
                      + (f'[console]\ntoken = "{config_token}"\n' if config_token else ""))
    args = cli.build_parser().parse_args(["sessions", "--tcp", "127.0.0.1:5039", "-c", str(config)])
    endpoint, _ = cli._endpoint(args)
    assert endpoint.token == expected


class ScriptClient(FakeClient):
    """A console for ``voxlab attach`` with piped input: ``request`` answers from ``replies``;
    ``next_event`` hands out ``events`` -- an exception in it is raised (TimeoutError: no event
    within the timeout asked for) -- and moves the fake clock on by the timeout it waited."""

    def __init__(self, replies: dict[str, dict], events: list, clock: list[float]) -> None:
        super().__init__(replies)
        self.events = list(events)
        self.clock = clock
        self.timeouts: list[float] = []

    def next_event(self, timeout=None, match=None) -> dict:
        self.timeouts.append(timeout)
        if not self.events:
            self.clock[0] += timeout
            raise TimeoutError("no answer from the voxlab console")
        event = self.events.pop(0)
        if isinstance(event, BaseException):
            self.clock[0] += timeout
            raise event
        return event


def _script(monkeypatch, eval_reply: dict, events: list, source: str = "await d\n") -> ScriptClient:
    import io
    import types

    from voxlab.console import client as client_module
    clock = [1000.0]
    fake = ScriptClient({"attach": {"ok": True}, "eval": {"ok": True, "output": "", "error": None,
                                                          "result": None, "deferred": None, **eval_reply}},
                        events, clock)
    monkeypatch.setattr(client_module.ConsoleClient, "connect", classmethod(lambda cls, *a, **k: fake))
    monkeypatch.setattr(cli, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr("sys.stdin", io.StringIO(source))
    return fake


def test_piped_deferred_that_never_fires_says_so_after_wait_deferred(monkeypatch, capsys):
    fake = _script(monkeypatch, {"result": "<Deferred #7>", "deferred": 7}, [])
    assert cli.main(["attach", "s1", "--wait-deferred", "5"]) == 1
    out = capsys.readouterr()
    assert out.out == "<Deferred #7>\n"
    assert "Deferred #7 still pending after 5 s" in out.err and "--wait-deferred" in out.err, out.err
    assert sum(fake.timeouts) == 5                          # waited exactly the time asked for


def test_piped_deferred_with_wait_deferred_0_waits_without_a_limit(monkeypatch, capsys):
    events = [TimeoutError(), TimeoutError(), TimeoutError(),
              {"event": "output", "n": 7, "text": "later\n"},
              {"event": "deferred", "n": 7, "result": "42", "error": None}]
    fake = _script(monkeypatch, {"result": "<Deferred #7>", "deferred": 7}, events)
    assert cli.main(["attach", "s1", "--wait-deferred", "0"]) == 0
    out = capsys.readouterr()
    assert out.out == "<Deferred #7>\nlater\nDeferred #7 fired: 42\n", out
    assert len(fake.timeouts) == 5


def test_piped_exit_ends_the_script_with_its_status(monkeypatch, capsys):
    _script(monkeypatch, {"output": "before\n", "error": "SystemExit(3) ignored: ... Press Ctrl-D to detach",
                          "exit": {"status": 3, "code": "3", "message": None}}, [], "print('before')\nexit(3)")
    assert cli.main(["attach", "s1"]) == 3
    out = capsys.readouterr()
    assert out.out == "before\n"
    assert "Ctrl-D" not in out.err and "the script called exit(3): its run ends there, exit status 3" in out.err
    # a message instead of a number: printed, status 1 (as Python's own exit)
    _script(monkeypatch, {"error": "SystemExit('bye') ...", "exit": {"status": 1, "code": "'bye'",
                                                                     "message": "bye"}}, [])
    assert cli.main(["attach", "s1"]) == 1
    assert capsys.readouterr().err.startswith("bye\n")
    # after an await
    _script(monkeypatch, {"result": "<Deferred #2>", "deferred": 2},
            [{"event": "deferred", "n": 2, "result": None, "error": "SystemExit(0) ...",
              "exit": {"status": 0, "code": "None", "message": None}}])
    assert cli.main(["attach", "s1"]) == 0
    assert "exit status 0" in capsys.readouterr().err


def test_logs_help_says_what_it_shows(capsys):
    with pytest.raises(SystemExit):
        cli.main(["logs", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Logger.write" in text and "--feed" in text
