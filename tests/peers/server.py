"""Run the voxlab server as a subprocess on free ports (for tests and benches).

Blocking, no reactor.  Readiness is an OPTIONS over UDP answered with 200.

    srv = VoxlabServer(data_dir=tmp / "data", scenarios=tmp / "scn")
    srv.start()            # raises ServerError with the log if it isn't ready
    ... srv.sip_port, srv.rtp_range, srv.log_text(), srv.pid ...
    srv.stop()             # SIGTERM, then SIGKILL
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Container
from pathlib import Path
from tests.peers.process import end_process

REPO_ROOT = Path(__file__).resolve().parents[2]
RESERVED_PORTS = {5060, 5061, 8088}

__all__ = ["VoxlabServer", "ServerError", "free_sip_port", "rtp_block", "sip_options_ping",
           "REPO_ROOT"]


class ServerError(RuntimeError):
    pass


def free_sip_port(host: str = "127.0.0.1", avoid: Container[int] | None = None) -> int:
    """A port free for both UDP and TCP on ``host`` (checked by binding), not in ``avoid``."""
    for _ in range(200):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind((host, 0))
            port = t.getsockname()[1]
            if port in RESERVED_PORTS or (avoid is not None and port in avoid):
                continue
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind((host, port))
            except OSError:
                continue
            finally:
                u.close()
            return port
        finally:
            t.close()
    raise OSError("no free UDP+TCP port")


def rtp_block(count: int = 200, lo: int = 20000, hi: int = 32000) -> tuple[int, int]:
    """A random block of ``count`` even ports within [lo, hi]: (first, last). Benches that
    ask for more than fit reach above ``hi``."""
    hi = max(hi, lo + 2 * count + 2)
    start = random.randrange(lo, hi - 2 * count, 2)
    return start, start + 2 * (count - 1)


def sip_options_ping(host: str, port: int, timeout: float = 0.5) -> int | None:
    """Send one OPTIONS over UDP; the status code of the answer, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
        lport = s.getsockname()[1]
        branch = "z9hG4bK" + "%016x" % random.getrandbits(64)
        msg = (f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {host}:{lport};branch={branch};rport\r\n"
               f"Max-Forwards: 70\r\n"
               f"From: <sip:probe@{host}:{lport}>;tag={random.getrandbits(32):08x}\r\n"
               f"To: <sip:ping@{host}:{port}>\r\n"
               f"Call-ID: {random.getrandbits(64):016x}@probe\r\n"
               f"CSeq: 1 OPTIONS\r\n"
               f"Content-Length: 0\r\n\r\n").encode()
        s.sendto(msg, (host, port))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                data, _ = s.recvfrom(65535)
            except (socket.timeout, ConnectionRefusedError, OSError):
                return None
            m = re.match(rb"SIP/2\.0 (\d{3})", data)
            if m and branch.encode() in data:
                status = int(m.group(1))
                if status >= 200:
                    return status
    finally:
        s.close()


def server_command(python: str, sip: str, rtp_range: tuple[int, int], data_dir: Path,
                   scenarios: Path | None = None, config: Path | None = None,
                   extra_args=(), log_level: str = "info") -> list[str]:
    # ``python -m twisted`` is twist: always in the foreground; text logs so
    # the log is readable in a failure message.
    cmd = [python, "-m", "twisted", "--log-format=text", f"--log-level={log_level}", "voxlab",
           "--sip", sip, "--rtp-ports", f"{rtp_range[0]}-{rtp_range[1]}",
           "--data-dir", str(data_dir)]
    if scenarios is not None:
        cmd += ["--scenarios", str(scenarios)]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += list(extra_args)
    if "--webrtc-workers" not in cmd:
        # A gateway worker imports aiortc (about a second of CPU) at every start: only the
        # tests of browser calls ask for one.
        cmd += ["--webrtc-workers", "0"]
    return cmd


class VoxlabServer:
    """One voxlab server process."""

    def __init__(self, data_dir: Path | str | None = None, scenarios: Path | str | None = None,
                 config: Path | str | None = None, host: str = "127.0.0.1",
                 python: str | None = None, extra_args=(), rtp_ports: int = 200,
                 log_path: Path | str | None = None, env: dict | None = None,
                 log_level: str = "info") -> None:
        self.host = host
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="voxlab-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.scenarios = Path(scenarios) if scenarios is not None else None
        self.config = Path(config) if config is not None else None
        self.python = python or sys.executable
        self.extra_args = tuple(extra_args)
        self.rtp_range = rtp_block(rtp_ports)
        rtp = range(self.rtp_range[0], self.rtp_range[1] + 2)
        self.sip_port = free_sip_port(host, avoid=rtp)
        # checked free but not bound yet, the SIP port could come out again
        self.http_port = free_sip_port(host, avoid={*rtp, self.sip_port})
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / (
            f"voxlab-{self.sip_port}.log")
        self.extra_env = dict(env or {})
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.stopped_by_us = False

    # -- info
    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    @property
    def command(self) -> list[str]:
        return server_command(self.python, f"{self.host}:{self.sip_port}", self.rtp_range,
                              self.data_dir, self.scenarios, self.config,
                              ("--http", f"{self.host}:{self.http_port}", *self.extra_args),
                              self.log_level)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def api_token(self) -> str:
        return (self.data_dir / "api.token").read_text().strip()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match | None:
        """Wait until the log matches ``pattern`` (a regex); the match or None."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    def describe(self, tail: int = 200) -> str:
        lines = self.log_text().splitlines()
        rc = self.proc.poll() if self.proc else None
        return (f"voxlab server pid={self.pid} sip={self.host}:{self.sip_port} "
                f"rtp={self.rtp_range[0]}-{self.rtp_range[1]} exit={rc}\n"
                f"command: {' '.join(self.command)}\n"
                f"---- server log (last {tail} lines of {self.log_path}) ----\n"
                + "\n".join(lines[-tail:]))

    # -- lifecycle
    def start(self, timeout: float = 30.0) -> "VoxlabServer":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command, cwd=str(REPO_ROOT), env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError("voxlab server exited during start-up\n" + self.describe())
            status = sip_options_ping(self.host, self.sip_port, timeout=0.3)
            if status == 200:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"voxlab server not ready within {timeout} s (last OPTIONS "
                                  f"answer: {status})\n" + self.describe())
            time.sleep(0.1)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds.  Returns the exit code."""
        self.stopped_by_us = True
        if self.proc is None:
            return None
        end_process(self.proc, grace)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def cpu_seconds(self) -> float:
        """utime + stime of the server process so far (from /proc)."""
        return proc_cpu_seconds(self.pid)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "VoxlabServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK
