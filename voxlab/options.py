"""Command-line options of ``twistd voxlab`` (twisted.python.usage conventions)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from twisted.python import usage

from voxlab.config import Config, parse_hostport, parse_port_range


class Options(usage.Options):
    """twistd voxlab [options]: every option may also be set in the --config TOML file."""

    synopsis = "[options]"
    longdesc = ("Run the voxlab telephony server: SIP on UDP+TCP, scenarios routed by the "
                "dialled user part, a live console into every session.")

    optParameters = [
        ["config", "c", None, "TOML config file (command-line options override it)."],
        ["sip", "s", None, "SIP listen address host:port [default: 127.0.0.1:5060]."],
        ["scenarios", None, None, "Folder of scenario files [default: the bundled examples]."],
        ["data-dir", "d", None, "Where voxlab writes (console socket and token, twistd.pid, "
                                "JSON log) [default: $XDG_DATA_HOME/voxlab]."],
        ["rtp-ports", None, None, "RTP port range LOW-HIGH [default: 10000-20000]."],
        ["media-host", None, None, "Address for RTP and in SDP [default: the SIP host]."],
        ["log-format", None, None, "text, or json (JSON lines also written to DATA_DIR/voxlab.log.jsonl)."],
        ["console-tcp", None, None, "Also serve the console on host:port (token required)."],
        ["http", None, None, "HTTP address host:port of the API, access URLs and /metrics "
                             "[default: 127.0.0.1:8088]."],
        ["media-workers", None, None, "Media worker processes (RTP, players, mixing) "
                                      "[default: one per core]; the RTP range is split between them."],
        ["webrtc-workers", None, None, "WebRTC gateway processes for browser calls "
                                       "[default: 1]; 0: no browser calls."],
    ]

    def postOptions(self) -> None:
        config = Config()
        try:
            if self["config"]:
                config.apply_toml(Path(self["config"]))
            if self["sip"]:
                config.sip_host, config.sip_port = parse_hostport(self["sip"], 5060)
            if self["scenarios"]:
                config.scenarios_dir = Path(self["scenarios"]).resolve()
            if self["data-dir"]:
                config.data_dir = Path(self["data-dir"]).resolve()
            if self["rtp-ports"]:
                config.rtp_low, config.rtp_high = parse_port_range(self["rtp-ports"])
            if self["media-host"]:
                config.media_host = self["media-host"]
            if self["log-format"]:
                config.log_format = self["log-format"]
            if self["media-workers"]:
                try:
                    config.media_workers = int(self["media-workers"])
                except ValueError:
                    raise ValueError(f"--media-workers: not a number: {self['media-workers']!r}") from None
            if self["webrtc-workers"]:
                try:
                    config.webrtc_workers = int(self["webrtc-workers"])
                except ValueError:
                    raise ValueError(f"--webrtc-workers: not a number: {self['webrtc-workers']!r}") from None
            if self["console-tcp"]:
                config.console_tcp = self["console-tcp"]
            if self["http"]:
                config.http_host, config.http_port = parse_hostport(self["http"], 8088)
            config.validate()
        except ValueError as exc:
            raise usage.UsageError(str(exc)) from None
        if not config.scenarios_dir.is_dir():
            raise usage.UsageError(f"scenarios folder {config.scenarios_dir} does not exist")
        self.config = config
        self._pidfile_in_data_dir()

    def _pidfile_in_data_dir(self) -> None:
        """twistd writes twistd.pid into the current directory (a checkout's git
        status shows it, and a second server started there is refused with a
        generic message): keep it in the data dir, and say plainly when another
        server already runs on that data dir."""
        parent = getattr(self, "parent", None)
        if parent is None or parent.get("pidfile") != "twistd.pid":
            return      # not under twistd, or the user chose a pid file
        data_dir = self.config.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise usage.UsageError(f"cannot create the data dir {data_dir}: {exc.strerror}") from None
        pidfile = self.config.pid_file
        parent["pidfile"] = str(pidfile)
        pid = running_pid(pidfile)
        if pid is not None:
            sys.exit(f"voxlab: another voxlab server (PID {pid}) is running with the data dir {data_dir}; "
                     f"stop it (kill {pid}), or start this one with its own --data-dir DIR "
                     "(and --sip HOST:PORT, --rtp-ports LOW-HIGH)")


def running_pid(pidfile: Path) -> int | None:
    """The PID in a pid file when that process is alive, else None (no file, stale or garbage)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid          # alive, someone else's
    return pid
