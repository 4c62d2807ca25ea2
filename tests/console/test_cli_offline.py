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
