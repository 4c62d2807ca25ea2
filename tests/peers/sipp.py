"""Drive sipp (sip-tester 3.6) as a real SIP peer from tests and benches."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SIPP = shutil.which("sipp")
SCENARIO_DIR = Path(__file__).resolve().parents[1] / "sipp"

__all__ = ["SIPP", "SCENARIO_DIR", "SippResult", "run_sipp", "sipp_command", "free_udp_ports",
           "sipp_ports"]


def free_udp_ports(count: int = 1, step: int = 1, host: str = "127.0.0.1",
                   lo: int = 10000, hi: int = 15000) -> int:
    """First port of ``count`` ports (``step`` apart) all free for UDP and TCP.

    The ports are free when checked, not reserved, so each kind of peer picks from its own
    range below the kernel's ephemeral ports (32768 up, which any process's outgoing
    socket may take meanwhile): sipp 10000-15000, baresip 15000-20000, and voxlab
    servers' RTP 20000-32000 (``tests.peers.server.rtp_block``)."""
    for _ in range(500):
        base = random.randrange(lo, hi - count * step, 2)
        socks = []
        try:
            for i in range(count):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind((host, base + i * step))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError("no free port block")


def sipp_ports(host: str = "127.0.0.1") -> tuple[int, int, int]:
    """(SIP port, media port, control port) for one sipp, all from one free block: picked
    one by one, a port checked free but not yet bound could come out again as another of
    the same sipp's ports (its media port then fails to bind). The media port has the
    three above it for RTCP and video."""
    base = free_udp_ports(8, host=host)
    return base, base + 2, base + 6


@dataclass
class SippResult:
    cmd: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    workdir: Path
    files: dict[str, str] = field(default_factory=dict)   # trace files by suffix
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def counts(self) -> dict[str, str]:
        """The last row of -trace_counts as {column: value} (per-message counts)."""
        text = self.files.get("counts", "")
        rows = [r for r in text.splitlines() if r.strip()]
        if len(rows) < 2:
            return {}
        header = rows[0].split(";")
        return dict(zip(header, rows[-1].split(";")))

    def stat(self) -> dict[str, str]:
        """The last row of -trace_stat as {column: value}."""
        text = self.files.get("stat", "")
        rows = [r for r in text.splitlines() if r.strip()]
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0].split(";"), rows[-1].split(";")))

    def explain(self, server=None) -> str:
        parts = [f"sipp exit={self.returncode} timed_out={self.timed_out}",
                 "cmd: " + " ".join(self.cmd),
                 "---- sipp stdout (tail) ----", "\n".join(self.stdout.splitlines()[-60:]),
                 "---- sipp stderr ----", self.stderr[-4000:]]
        for name in ("errors", "messages"):
            if self.files.get(name):
                parts += [f"---- sipp {name} (tail) ----", self.files[name][-6000:]]
        if server is not None:
            parts.append(server.describe(80))
        return "\n".join(parts)


def sipp_command(host: str, port: int, scenario: str, *, service: str = "echo",
                 transport: str = "u1", calls: int = 1, rate: float | None = None,
                 limit: int | None = None, duration_ms: int | None = None,
                 workdir: Path, trace_msg: bool = True, trace_stat: bool = False,
                 trace_counts: bool = False, global_timeout_s: int | None = 60,
                 recv_timeout_ms: int = 10000, extra=()) -> list[str]:
    """Command line for one sipp run, on ports of its own (``sipp_ports``).  ``scenario``
    is "uac"/"uas"/... (built-in, -sn), a file name in tests/sipp/ ("uac_cancel.xml") or
    a path."""
    cmd = [SIPP or "sipp"]
    if scenario.endswith(".xml"):
        path = Path(scenario)
        if not path.is_absolute() and not path.exists():
            path = SCENARIO_DIR / scenario
        cmd += ["-sf", str(path)]
    else:
        cmd += ["-sn", scenario]
    local_port, media_port, _ = sipp_ports(host)
    cmd += [f"{host}:{port}", "-i", host, "-s", service, "-t", transport,
            "-m", str(calls), "-nostdin",
            "-p", str(local_port),
            "-mp", str(media_port),
            "-recv_timeout", str(recv_timeout_ms),
            "-trace_err", "-error_file", str(workdir / "errors.log")]
    if rate is not None:
        cmd += ["-r", str(rate)]
    if limit is not None:
        cmd += ["-l", str(limit)]
    if duration_ms is not None:
        cmd += ["-d", str(duration_ms)]
    if trace_msg:
        cmd += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
    if trace_stat:
        cmd += ["-trace_stat", "-stf", str(workdir / "stat.csv"), "-fd", "1"]
    if trace_counts:
        cmd += ["-trace_counts"]
    if global_timeout_s:
        cmd += ["-timeout", f"{global_timeout_s}s", "-timeout_error"]
    cmd += list(extra)
    return cmd


def run_sipp(host: str, port: int, scenario: str, *, timeout: float = 90.0,
             workdir: Path | str | None = None, **kw) -> SippResult:
    """Run sipp to completion (or ``timeout``, then kill it) and collect its
    output and trace files."""
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="sipp-"))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = sipp_command(host, port, scenario, workdir=workdir, **kw)
    proc = subprocess.Popen(cmd, cwd=str(workdir), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        out, err = proc.communicate(timeout=10)
    res = SippResult(cmd, proc.returncode, out, err, workdir, timed_out=timed_out)
    for name, pattern in (("errors", "errors.log"), ("messages", "messages.log"),
                          ("stat", "stat.csv"), ("counts", "*_counts.csv")):
        for f in sorted(workdir.glob(pattern)):
            res.files[name] = f.read_text(errors="replace")
    return res
