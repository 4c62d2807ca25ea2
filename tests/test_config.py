"""Configuration: defaults, TOML, command-line options, plugin discovery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.python import usage

from voxlab import __version__
from voxlab.config import Config, parse_hostport, parse_port_range
from voxlab.options import Options

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_the_documented_ones():
    c = Config()
    assert (c.sip_host, c.sip_port, c.transports) == ("127.0.0.1", 5060, ("udp", "tcp"))
    assert (c.http_host, c.http_port) == ("127.0.0.1", 8088)
    assert (c.rtp_low, c.rtp_high) == (10000, 20000)
    assert c.scenarios_dir == REPO / "scenarios"
    assert c.console_socket == c.data_dir / "console.sock"


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:5070", ("127.0.0.1", 5070)), ("127.0.0.1", ("127.0.0.1", 5060)),
    (":5071", ("127.0.0.1", 5071)), ("[::1]:5072", ("::1", 5072)),
])
def test_parse_hostport(text, expected):
    assert parse_hostport(text, 5060) == expected


@pytest.mark.parametrize("bad", ["1:x", "1:70000"])
def test_parse_hostport_rejects(bad):
    with pytest.raises(ValueError):
        parse_hostport(bad, 5060)


def test_parse_port_range():
    assert parse_port_range("30000-30999") == (30000, 30999)
    for bad in ("30000", "a-b", "2000-1000", "80-90"):
        with pytest.raises(ValueError):
            parse_port_range(bad)


def test_toml_sets_everything_relative_to_its_file(tmp_path):
    (tmp_path / "sc").mkdir()
    cfg = tmp_path / "voxlab.toml"
    cfg.write_text('data_dir = "d"\nscenarios = "sc"\nhandler_budget = 0.5\n'
                   '[sip]\nlisten = "127.0.0.1:5070"\ntransports = ["udp"]\n'
                   '[rtp]\nports = "30000-30100"\ncodecs = ["pcma"]\n'
                   '[[routes]]\npattern = "greet|hello-.*"\nscenario = "x.py"\n'
                   '[console]\ntcp = "127.0.0.1:7000"\ntoken = "t"\n')
    c = Config()
    c.apply_toml(cfg)
    assert (c.sip_port, c.transports, c.rtp_low, c.rtp_high) == (5070, ("udp",), 30000, 30100)
    assert c.codecs == ("PCMA",) and c.handler_budget == 0.5
    assert c.data_dir == tmp_path / "d" and c.scenarios_dir == tmp_path / "sc"
    assert c.routes == [("greet|hello-.*", "x.py", False)]
    assert (c.console_tcp, c.console_token) == ("127.0.0.1:7000", "t")


def test_bad_toml_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sip\nlisten=")
    with pytest.raises(ValueError, match="cannot read config"):
        Config().apply_toml(cfg)


def test_the_phone_page_is_off_unless_the_config_turns_it_on(tmp_path):
    assert Config().phone_page is False
    cfg = tmp_path / "voxlab.toml"
    cfg.write_text("[webrtc]\nphone_page = true\n")
    c = Config()
    c.apply_toml(cfg)
    assert c.phone_page is True
    cfg.write_text('[webrtc]\nphone_page = "yes"\n')
    with pytest.raises(ValueError, match="phone_page must be true or false"):
        Config().apply_toml(cfg)


def test_options_override_and_validate(tmp_path):
    o = Options()
    o.parseOptions(["--sip", "127.0.0.1:5090", "--rtp-ports", "40000-40100",
                    "--data-dir", str(tmp_path), "--log-format", "json"])
    assert (o.config.sip_port, o.config.rtp_low, o.config.log_format) == (5090, 40000, "json")
    for bad in (["--rtp-ports", "9-8"], ["--sip", "0.0.0.0:5060"], ["--log-format", "xml"],
                ["--scenarios", str(tmp_path / "missing")]):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(bad)


def test_twistd_lists_the_plugin_and_cli_has_version(tmp_path):
    out = subprocess.run([sys.executable, "-m", "twisted", "--help-plugins"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    listing = out.stdout + out.stderr      # twist prints its plugin list on stderr
    assert "voxlab" in listing and "telephony" in listing, listing
    version = subprocess.run([sys.executable, "-m", "voxlab.cli", "--version"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"voxlab {__version__}"
