#!/usr/bin/env python3
"""Call-rate benchmark: how many calls per second voxlab sets up and tears down.

Starts voxlab with bench/scenarios/ (``answer`` answers at once and ends its
session on Disconnected), then drives ``sipp -sn uac -d 0`` (INVITE, 200, ACK,
BYE, 200, no pause) at rising rates for --duration seconds each.  A rate
passes when every call succeeded (sipp's own counters: no failed call, exit
code 0) and sipp actually reached at least 95 % of the asked rate.  Escalation
stops after the first rate that does not pass.

Server CPU is read from /proc/<pid>/stat (utime+stime delta / wall time) over
each run; 100 % = one core.  sipp runs on the same machine and uses CPU too
(reported as well).

    python bench/call_rate.py                       # 100 ... 1000 calls/s, 15 s each
    python bench/call_rate.py --rates 50,100 --duration 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (SCENARIOS_DIR, CpuMeter, SystemCpu, VoxlabServer,  # noqa: E402
                    machine_info, print_table, rss_mb, write_results)

from tests.peers.sipp import sipp_command  # noqa: E402
from tests.peers.server import sip_options_ping  # noqa: E402


def _num(v: str | None) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _ms(v: str | None) -> float | None:
    """sipp's HH:MM:SS:uuuuuu (or HH:MM:SS:mmm) -> milliseconds."""
    if not v:
        return None
    parts = v.split(":")
    try:
        h, m, s, frac = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
    except (IndexError, ValueError):
        return None
    sub = int(frac) / (10 ** len(frac))
    return ((h * 60 + m) * 60 + s + sub) * 1000.0


def run_rate(server: VoxlabServer, rate: int, duration: float, transport: str,
             workdir: Path, limit: int | None, service: str = "answer", tag: str = "") -> dict:
    """One rate against ``server`` (anything with host, sip_port, pid and alive())."""
    calls = int(rate * duration)
    wd = workdir / f"rate-{tag}{rate}"
    wd.mkdir(parents=True, exist_ok=True)
    cmd = sipp_command(server.host, server.sip_port, "uac", service=service,
                       transport=transport, calls=calls, rate=rate,
                       limit=limit or max(200, rate * 4), duration_ms=0,
                       workdir=wd, trace_msg=False, trace_stat=True,
                       global_timeout_s=int(duration * 3 + 30), recv_timeout_ms=10000)
    server_cpu = CpuMeter(server.pid)
    system_cpu = SystemCpu()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(wd), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    sipp_cpu = CpuMeter(proc.pid)
    sipp_cpu_s = 0.0
    peak_rss = rss_mb(server.pid)
    while proc.poll() is None:
        try:
            sipp_cpu_s = sipp_cpu.read()[0]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        peak_rss = max(peak_rss, rss_mb(server.pid))
        time.sleep(0.5)
    wall = time.monotonic() - t0
    cpu_s, _ = server_cpu.read()
    sys_s, _ = system_cpu.read()
    stderr = proc.stderr.read() if proc.stderr else ""
    stat_rows = [r for r in (wd / "stat.csv").read_text(errors="replace").splitlines()
                 if r.strip()] if (wd / "stat.csv").exists() else []
    st = dict(zip(stat_rows[0].split(";"), stat_rows[-1].split(";"))) if len(stat_rows) > 1 else {}
    ok = int(_num(st.get("SuccessfulCall(C)")))
    failed = int(_num(st.get("FailedCall(C)")))
    elapsed_ms = _ms(st.get("ElapsedTime(C)")) or wall * 1000
    achieved = float(_num(st.get("CallRate(C)")))
    row = {
        "rate": rate,
        "duration_s": duration,
        "calls_attempted": calls,
        "calls_ok": ok,
        "calls_failed": failed,
        "failed_breakdown": {k: int(_num(v)) for k, v in st.items()
                             if k.startswith("Failed") and k.endswith("(C)") and _num(v)},
        "achieved_cps": round(achieved, 1),
        "sipp_elapsed_s": round(elapsed_ms / 1000, 2),
        "retransmissions": int(_num(st.get("Retransmissions(C)"))),
        "dead_call_msgs": int(_num(st.get("DeadCallMsgs(C)"))),
        "out_of_call_msgs": int(_num(st.get("OutOfCallMsgs(C)"))),
        "response_time_avg_ms": _ms(st.get("ResponseTime1(C)")),
        "response_time_stdev_ms": _ms(st.get("ResponseTime1StDev(C)")),
        "server_cpu_pct": round(100 * cpu_s / wall, 1) if wall else None,
        "sipp_cpu_pct": round(100 * sipp_cpu_s / wall, 1) if wall else None,
        # everything else on the machine (other users' jobs, kernel): noise
        "other_cpu_pct": round(100 * max(0.0, sys_s - cpu_s - sipp_cpu_s) / wall, 1)
        if wall else None,
        "server_rss_mb_peak": round(peak_rss, 1),
        "sipp_exit": proc.returncode,
        "server_alive": server.alive(),
    }
    row["passed"] = (proc.returncode == 0 and failed == 0 and ok == calls
                     and achieved >= 0.95 * rate and server.alive())
    if not row["passed"]:
        row["sipp_stderr_tail"] = stderr[-2000:]
        errs = sorted(wd.glob("errors.log"))
        if errs:
            row["sipp_errors_head"] = errs[0].read_text(errors="replace")[:3000]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="100,200,300,400,600,800,1000",
                    help="comma-separated calls/s to try in order")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per rate")
    ap.add_argument("--transport", default="u1", help="sipp -t value (u1 = one UDP socket)")
    ap.add_argument("--limit", type=int, default=None,
                    help="sipp -l: max simultaneous calls (default 4 s worth, >= 200)")
    ap.add_argument("--keep-going", action="store_true",
                    help="try every rate even after one failed")
    ap.add_argument("--log-level", default="info",
                    help="server log level (twist --log-level)")
    ap.add_argument("--rtp-ports", type=int, default=4000,
                    help="size of the server's RTP port range (even ports)")
    ap.add_argument("--reuse-server", action="store_true",
                    help="one server for every rate (default: a fresh one per rate; a "
                         "server keeps finished transactions ~32 s, RFC 3261 Timer J)")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="idle seconds between rates with --reuse-server")
    ap.add_argument("--media-workers", type=int, default=None,
                    help="voxlab --media-workers (default: the server's own, one per core)")
    ap.add_argument("--out", help="result file (default bench/results/call_rate-DATE.json)")
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args(argv)
    if not shutil.which("sipp"):
        print("sipp not found (Debian package sip-tester)", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",") if r.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="voxlab-callrate-"))
    def new_server(tag: str) -> VoxlabServer:
        srv = VoxlabServer(data_dir=workdir / f"data-{tag}", scenarios=SCENARIOS_DIR,
                           log_path=workdir / f"server-{tag}.log", log_level=args.log_level,
                           rtp_ports=args.rtp_ports,
                           extra_args=(("--media-workers", str(args.media_workers))
                                       if args.media_workers else ()))
        srv.start(timeout=30)
        return srv

    print(f"sipp -sn uac -d 0 -> voxlab 'answer', {args.duration:g} s per rate, "
          + ("one server for all rates" if args.reuse_server else "a fresh server per rate")
          + f" (logs in {workdir})", flush=True)
    rows: list[dict] = []
    server = None
    server_log_tail: list[str] = []
    try:
        for rate in rates:
            if server is None or not args.reuse_server:
                server = new_server(str(rate) if not args.reuse_server else "all")
            row = run_rate(server, rate, args.duration, args.transport, workdir, args.limit)
            rows.append(row)
            verdict = "ok" if row["passed"] else "FAIL"
            print(f"  {rate:>5} calls/s: {row['calls_ok']}/{row['calls_attempted']} ok, "
                  f"{row['calls_failed']} failed, achieved {row['achieved_cps']} cps, "
                  f"{row['retransmissions']} retransmissions, "
                  f"server CPU {row['server_cpu_pct']} %, sipp CPU {row['sipp_cpu_pct']} % "
                  f"-> {verdict}", flush=True)
            alive = server.alive()
            server_log_tail = server.log_text().splitlines()[-40:]
            if not args.reuse_server:
                server.stop()
            if not alive:
                print("  server died; stopping", flush=True)
                break
            if not row["passed"] and not args.keep_going:
                break
            if args.reuse_server:
                # let the server finish its sessions before the next rate
                time.sleep(args.settle)
                sip_options_ping(server.host, server.sip_port, 2.0)
    finally:
        if server is not None:
            server.stop()
    passed = [r["rate"] for r in rows if r["passed"]]
    best = max(passed) if passed else None
    clean = [r["rate"] for r in rows if r["passed"] and r["retransmissions"] == 0]
    best_clean = max(clean) if clean else None
    data = {
        "benchmark": "call_rate",
        "description": "sipp -sn uac -d 0 against voxlab's 'answer' scenario; a rate passes "
                       "with 0 failed calls and >= 95 % of the asked rate reached",
        "machine": machine_info(),
        "duration_s": args.duration,
        "transport": args.transport,
        "server_log_level": args.log_level,
        "server_rtp_ports": args.rtp_ports,
        "media_workers": args.media_workers or os.cpu_count(),
        "reuse_server": args.reuse_server,
        "results": rows,
        "highest_passing_rate": best,
        "highest_clean_rate": best_clean,
        "notes": [
            "CPU % is utime+stime over wall time from /proc; 100 % = one core.",
            "highest_clean_rate: passing and no SIP retransmission at all (every "
            "response within sipp's 500 ms T1).",
            "Unless reuse_server, every rate gets a fresh server, so a rate is not "
            "measured while the previous one's transactions (kept ~32 s) expire.",
            f"sipp runs on the same {os.cpu_count()}-core machine (its CPU is listed).",
            "other_cpu_pct: busy CPU of everything else on the machine during the "
            "run (from /proc/stat); when it is high the row is noisy.",
        ],
    }
    if best is None or (rows and not rows[-1]["passed"]):
        data["server_log_tail"] = server_log_tail
    path = write_results("call_rate", data, args.out)

    print()
    print_table(rows, [("rate", "calls/s", "{}"), ("calls_ok", "ok", "{}"),
                       ("calls_failed", "failed", "{}"), ("achieved_cps", "achieved", "{}"),
                       ("retransmissions", "retrans", "{}"),
                       ("response_time_avg_ms", "resp ms", "{:.1f}"),
                       ("server_cpu_pct", "server CPU %", "{}"),
                       ("sipp_cpu_pct", "sipp CPU %", "{}"),
                       ("other_cpu_pct", "other CPU %", "{}"),
                       ("server_rss_mb_peak", "RSS MB", "{}"),
                       ("passed", "pass", "{}")])
    print(f"\nhighest rate with 0 failed calls: {best} calls/s; "
          f"with 0 failed calls and no retransmission: {best_clean} calls/s")
    print(f"results: {path}")
    if not args.keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"workdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
