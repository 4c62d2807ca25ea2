"""Configuration: defaults, the TOML file, and command-line overrides, in that order."""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


#: the settings of ``[session]`` (see voxlab.engine.limits.SessionLimits) and their types
SESSION_KEYS = {"alerting_timeout": float, "idle_timeout": float, "max_duration": float,
                "timers": int, "players": int, "http_concurrent": int, "http_total": int,
                "log_line": int, "terminating_grace": float}


def bundled_scenarios_dir() -> Path:
    """The example scenarios: beside the package in a checkout/editable install, else installed data."""
    here = Path(__file__).resolve().parent.parent / "scenarios"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "voxlab" / "scenarios"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "voxlab"


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """'127.0.0.1:5060', '127.0.0.1', ':5070' or '[::1]:5060' -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host or "127.0.0.1", number


def parse_port_range(text: str) -> tuple[int, int]:
    """'10000-20000' -> (10000, 20000)."""
    try:
        low, high = (int(x) for x in text.split("-"))
    except ValueError:
        raise ValueError(f"bad port range {text!r}: expected LOW-HIGH, e.g. 10000-20000") from None
    if not (1024 <= low < high <= 65535):
        raise ValueError(f"bad port range {text!r}: need 1024 <= LOW < HIGH <= 65535")
    return low, high


@dataclass
class Config:
    """Everything a voxlab server needs to start; every field has a working default."""

    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    media_host: str | None = None          # defaults to sip_host
    rtp_low: int = 10000
    rtp_high: int = 20000
    scenarios_dir: Path = field(default_factory=bundled_scenarios_dir)
    routes: list[tuple] = field(default_factory=list)   # (pattern, scenario, auth)
    data_dir: Path = field(default_factory=default_data_dir)
    http_host: str = "127.0.0.1"
    http_port: int = 8088
    console_tcp: str | None = None         # "host:port" to also serve the console on TCP (token required)
    console_token: str | None = None
    log_format: str = "text"
    handler_budget: float = 1.0            # VoxEngine's figure
    media_workers: int | None = None       # None: one per core
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    users: dict[str, str] = field(default_factory=dict)   # [users] name = "password" (read-only)
    realm: str = "voxlab"                  # the Digest realm of the registrar
    auth_algorithms: tuple[str, ...] = ("MD5",)   # offered challenges; see docs/registrar.md
    session: dict[str, float] = field(default_factory=dict)   # [session]: SessionLimits fields
    api_token: str | None = None           # [api] token; else generated into the data directory
    history_retention_days: float | None = 90.0
    webrtc_workers: int = 1                # [webrtc] workers: gateway processes (0: no browser calls)
    ice_hosts: tuple[str, ...] | None = None   # [webrtc] ice_hosts; None: the HTTP address
    phone_page: bool = False               # [webrtc] phone_page: /phone/ for users, no console token
    web_origins: tuple[str, ...] = ()      # [http] origins: more page origins (a reverse proxy)

    def session_limits(self):
        """The SessionLimits of ``[session]`` (and the top-level ``handler_budget``)."""
        from voxlab.engine.limits import SessionLimits

        return SessionLimits(handler_budget=self.handler_budget, **self.session)

    def workers(self) -> int:
        """How many media worker processes to run."""
        return self.media_workers or os.cpu_count() or 1

    def webrtc_ice_hosts(self) -> list[str]:
        """Where the gateway offers ICE candidates: the config's list, else the HTTP address
        (the one the browser reached the page at); a wildcard leaves the choice to aioice."""
        if self.ice_hosts is not None:
            return list(self.ice_hosts)
        return [] if self.http_host in ("0.0.0.0", "::", "") else [self.http_host]

    @property
    def rtp_host(self) -> str:
        return self.media_host or self.sip_host

    @property
    def pid_file(self) -> Path:
        """Where twistd's pid file goes (unless --pidfile says otherwise)."""
        return self.data_dir / "twistd.pid"

    @property
    def directory_path(self) -> Path:
        """Users added with ``voxlab users`` and the registrar's bindings (SQLite)."""
        return self.data_dir / "directory.sqlite"

    @property
    def console_socket(self) -> Path:
        return self.data_dir / "console.sock"

    def apply_toml(self, path: Path) -> None:
        """Read a TOML config file (see docs/configuration.md for its sections)."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read config {path}: {exc}") from None
        base = Path(path).resolve().parent
        sip = data.get("sip", {})
        if "listen" in sip:
            self.sip_host, self.sip_port = parse_hostport(sip["listen"], 5060)
        if "transports" in sip:
            self.transports = tuple(t.lower() for t in sip["transports"])
        rtp = data.get("rtp", {})
        if "ports" in rtp:
            self.rtp_low, self.rtp_high = parse_port_range(rtp["ports"])
        if "host" in rtp:
            self.media_host = rtp["host"]
        if "codecs" in rtp:
            self.codecs = tuple(c.upper() for c in rtp["codecs"])
        if "scenarios" in data:
            self.scenarios_dir = (base / data["scenarios"]).resolve()
        if "data_dir" in data:
            self.data_dir = (base / data["data_dir"]).resolve()
        from voxlab.engine.routing import parse_routes

        self.routes.extend(parse_routes(data.get("routes", []), str(path)))
        http = data.get("http", {})
        if "listen" in http:
            self.http_host, self.http_port = parse_hostport(http["listen"], 8088)
        if "origins" in http:
            self.web_origins = tuple(str(o) for o in http["origins"])
        webrtc = data.get("webrtc", {})
        if "workers" in webrtc:
            self.webrtc_workers = int(webrtc["workers"])
        if "ice_hosts" in webrtc:
            self.ice_hosts = tuple(str(h) for h in webrtc["ice_hosts"])
        if "phone_page" in webrtc:
            if not isinstance(webrtc["phone_page"], bool):
                raise ValueError(f"{path}: [webrtc] phone_page must be true or false")
            self.phone_page = webrtc["phone_page"]
        console = data.get("console", {})
        if "tcp" in console:
            self.console_tcp = console["tcp"]
        if "token" in console:
            self.console_token = console["token"]
        if "log_format" in data:
            self.log_format = data["log_format"]
        media = data.get("media", {})
        if "workers" in media:
            self.media_workers = int(media["workers"])
        if "handler_budget" in data:
            self.handler_budget = float(data["handler_budget"])
        for name, password in data.get("users", {}).items():
            if not isinstance(password, str) or not password:
                raise ValueError(f"{path}: [users] {name} needs a password string")
            self.users[name] = password
        session = data.get("session", {})
        unknown = set(session) - set(SESSION_KEYS)
        if unknown:
            raise ValueError(f"{path}: [session] has no setting {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(SESSION_KEYS)})")
        for key, kind in SESSION_KEYS.items():
            if key in session:
                try:
                    value = kind(session[key])
                except (TypeError, ValueError):
                    raise ValueError(f"{path}: [session] {key} must be a number, got {session[key]!r}") from None
                if value < 0:
                    raise ValueError(f"{path}: [session] {key} cannot be negative")
                self.session[key] = value
        http_api = data.get("api", {})
        if "token" in http_api:
            self.api_token = str(http_api["token"])
        history = data.get("history", {})
        if "retention_days" in history:
            days = history["retention_days"]
            self.history_retention_days = None if days in (0, None) else float(days)
        registrar = data.get("registrar", {})
        if "realm" in registrar:
            self.realm = str(registrar["realm"])
        if "algorithms" in registrar:
            self.auth_algorithms = tuple(str(a).upper() for a in registrar["algorithms"])
        self.validate()

    def validate(self) -> None:
        for what, host in (("SIP", self.sip_host), ("media", self.rtp_host)):
            if host in ("0.0.0.0", "::", ""):
                # The listen address is also what Via, Contact and SDP advertise;
                # a wildcard there would send phones' replies nowhere.
                raise ValueError(f"{what} address {host!r}: give the concrete address to listen on "
                                 "and advertise (e.g. the machine's LAN address), not a wildcard")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log format must be 'text' or 'json', got {self.log_format!r}")
        bad = [a for a in self.auth_algorithms if a not in ("MD5", "SHA-256")]
        if bad or not self.auth_algorithms:
            raise ValueError(f"[registrar] algorithms: MD5 and/or SHA-256, got {list(self.auth_algorithms)}")
        for t in self.transports:
            if t not in ("udp", "tcp"):
                raise ValueError(f"unknown SIP transport {t!r}")
        if not 0 <= self.webrtc_workers <= 64:
            raise ValueError(f"WebRTC gateway workers must be 0-64, got {self.webrtc_workers}")
        if self.media_workers is not None and not 1 <= self.media_workers <= 64:
            raise ValueError(f"media workers must be 1-64, got {self.media_workers}")
        for c in self.codecs:
            if c not in ("PCMU", "PCMA"):
                raise ValueError(f"unsupported codec {c!r} (PCMU, PCMA)")
