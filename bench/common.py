"""Shared helpers of the benchmarks: server start, /proc CPU, machine info, output."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.peers.server import VoxlabServer, proc_cpu_seconds  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
SCENARIOS_DIR = BENCH_DIR / "scenarios"

__all__ = ["VoxlabServer", "proc_cpu_seconds", "CpuMeter", "SystemCpu", "machine_info", "write_results",
           "print_table", "REPO_ROOT", "RESULTS_DIR", "SCENARIOS_DIR", "rss_mb"]


_CLK_TCK = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU of a process over an interval: (utime+stime delta) / wall time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = proc_cpu_seconds(self.pid)

    def read(self) -> tuple[float, float]:
        """(cpu seconds, wall seconds) since start()."""
        return proc_cpu_seconds(self.pid) - self.c0, time.monotonic() - self.t0

    def percent(self) -> float:
        cpu, wall = self.read()
        return 100.0 * cpu / wall if wall > 0 else 0.0


def system_busy_seconds() -> float:
    """CPU seconds spent busy by all cores since boot (/proc/stat, not idle/iowait)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / _CLK_TCK


class SystemCpu:
    """Whole-machine busy CPU over an interval (100 % = one core)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.b0 = system_busy_seconds()

    def read(self) -> tuple[float, float]:
        return system_busy_seconds() - self.b0, time.monotonic() - self.t0


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except FileNotFoundError:
        pass
    return 0.0


def machine_info() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=5).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    try:
        sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True,
                              timeout=5).stdout.strip().splitlines()
        sipp_v = next((l.strip() for l in sipp if "SIPp" in l), "")
    except (OSError, subprocess.SubprocessError):
        sipp_v = ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit + ("-dirty" if dirty else ""),
        "sipp": sipp_v,
        "loadavg_at_start": os.getloadavg(),
    }


def write_results(name: str, data: dict, out: str | None = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if out:
        path = Path(out)
    else:
        stamp = _dt.datetime.now().strftime("%Y-%m-%d")
        path = RESULTS_DIR / f"{name}-{stamp}.json"
        n = 1
        while path.exists():
            n += 1
            path = RESULTS_DIR / f"{name}-{stamp}-{n}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format) e.g. ("rate", "calls/s", "{:>7}")."""
    heads = [h for _, h, _ in columns]
    cells = [[(fmt.format(r[k]) if r.get(k) is not None else "-") for k, _, fmt in columns]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(heads)]
    print("  ".join(h.rjust(w) for h, w in zip(heads, widths)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))
