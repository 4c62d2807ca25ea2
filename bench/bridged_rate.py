#!/usr/bin/env python3
"""Bridged-call rate: sipp UAC -> B2BUA -> sipp UAS, voxlab's ``out-<uri>`` beside Sippy B2BUA.

For each rate (rising), for --duration seconds: sipp's ``uac`` (INVITE, 200, ACK, BYE, no
pause) calls through the B2BUA to a sipp UAS (bench/sipp/uas.xml: 180, 200, BYE answered).
A rate passes with 0 failed calls, sipp's exit 0 and >= 95 % of the asked rate reached
(call_rate.py's rule). voxlab and Sippy are measured in the same run, alternating at each
rate, so the ratio of their highest passing rates means something on a noisy machine.

Sippy B2BUA is not a dependency of voxlab, and must not go into the project's venv (its
wheel installs a top-level ``tests`` package that shadows ours): give it a venv of its own,
``python3 -m venv .venv-sippy && .venv-sippy/bin/pip install sippy`` (2.5); the bench finds
``b2bua_simple`` there, or at ``$SIPPY_B2BUA``. Without it only voxlab is measured.

    python bench/bridged_rate.py                         # 50 ... 600 calls/s, 15 s each
    python bench/bridged_rate.py --rates 50,100 --duration 5
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
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from call_rate import run_rate  # noqa: E402
from common import VoxlabServer, machine_info, print_table, write_results  # noqa: E402

from tests.peers.sipp import SIPP, sipp_ports  # noqa: E402
from tests.peers.server import REPO_ROOT, free_sip_port, sip_options_ping  # noqa: E402

UAS_XML = Path(__file__).resolve().parent / "sipp" / "uas.xml"


class SippUas:
    """The callee: sipp running bench/sipp/uas.xml until stopped."""

    def __init__(self, workdir: Path) -> None:
        self.port, media_port, _ = sipp_ports()
        self.proc = subprocess.Popen(
            [SIPP or "sipp", "-sf", str(UAS_XML), "-i", "127.0.0.1", "-p", str(self.port),
             "-mp", str(media_port), "-t", "u1", "-nostdin",
             "-trace_err", "-error_file", str(workdir / "uas_errors.log")],
            cwd=str(workdir), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.5)

    def stop(self) -> None:
        _stop(self.proc)


class Sippy:
    """Sippy B2BUA 2.5 (``b2bua_simple``) forwarding every call to the UAS."""

    def __init__(self, workdir: Path, uas_port: int) -> None:
        exe = os.environ.get("SIPPY_B2BUA") or shutil.which(
            "b2bua_simple", path=os.pathsep.join([str(REPO_ROOT / ".venv-sippy" / "bin"),
                                                 os.environ.get("PATH", "")]))
        if exe is None:
            raise FileNotFoundError("no b2bua_simple (.venv-sippy/bin/pip install sippy)")
        self.host = "127.0.0.1"
        self.sip_port = free_sip_port(self.host)
        self.log = open(workdir / f"sippy-{self.sip_port}.log", "w")
        self.proc = subprocess.Popen([exe, "-f", "-l", self.host, "-p", str(self.sip_port),
                                      "-n", f"127.0.0.1:{uas_port}"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 20
        while not sip_options_ping(self.host, self.sip_port, 0.5):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"Sippy did not start: see {self.log.name}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc)
        self.log.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="50,100,200,300,450,600")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per rate")
    ap.add_argument("--media-workers", type=int, default=1)
    ap.add_argument("--log-level", default="warn")
    ap.add_argument("--no-sippy", action="store_true", help="measure voxlab only")
    ap.add_argument("--out", help="result file (default bench/results/bridged_rate-DATE.json)")
    args = ap.parse_args(argv)
    if SIPP is None:
        print("sipp not found (Debian package sip-tester)", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="voxlab-bridged-"))
    uas = SippUas(workdir)
    service = "out-" + quote(f"bob@127.0.0.1:{uas.port}", safe="")
    targets = ["voxlab"] + ([] if args.no_sippy else ["sippy"])
    rows: list[dict] = []
    failed_at: dict[str, int] = {}
    print(f"sipp uac -> B2BUA -> sipp uas, {args.duration:g} s per rate (logs in {workdir})", flush=True)
    try:
        for rate in rates:
            for target in targets:
                if target in failed_at:
                    continue
                if target == "voxlab":
                    server = VoxlabServer(data_dir=workdir / f"data-{rate}", scenarios=REPO_ROOT / "scenarios",
                                          log_path=workdir / f"voxlab-{rate}.log", log_level=args.log_level,
                                          rtp_ports=max(4000, rate * 40),
                                          extra_args=("--media-workers", str(args.media_workers)))
                    server.start(timeout=30)
                    svc = service
                else:
                    try:
                        server = Sippy(workdir, uas.port)
                    except (FileNotFoundError, RuntimeError) as exc:
                        print(f"  Sippy: {exc}: not measured", flush=True)
                        targets.remove("sippy")
                        continue
                    svc = "bob"
                try:
                    row = run_rate(server, rate, args.duration, "u1", workdir, None, service=svc,
                                   tag=f"{target}-")
                finally:
                    server.stop()
                row["target"] = target
                rows.append(row)
                print(f"  {target:>6} {rate:>4}/s: {row['calls_ok']}/{row['calls_attempted']} ok, "
                      f"{row['calls_failed']} failed, achieved {row['achieved_cps']}, "
                      f"{row['retransmissions']} retrans, CPU {row['server_cpu_pct']} % "
                      f"(sipp uac {row['sipp_cpu_pct']} %) -> {'ok' if row['passed'] else 'FAIL'}",
                      flush=True)
                if not row["passed"]:
                    failed_at[target] = rate
            if all(t in failed_at for t in targets):
                break
    finally:
        uas.stop()
    best = {t: max([r["rate"] for r in rows if r["target"] == t and r["passed"]], default=None)
            for t in targets}
    ratio = (round(best["voxlab"] / best["sippy"], 2)
             if best.get("sippy") and best.get("voxlab") else None)
    data = {
        "benchmark": "bridged_rate",
        "description": "sipp -sn uac -d 0 -> B2BUA -> sipp UAS (bench/sipp/uas.xml); a rate passes "
                       "with 0 failed calls and >= 95 % of the asked rate reached",
        "machine": machine_info(),
        "duration_s": args.duration,
        "voxlab_media_workers": args.media_workers,
        "results": rows,
        "highest_passing_rate": best,
        "ratio_voxlab_to_sippy": ratio,
        "notes": [
            "CPU % is the B2BUA's main process (voxlab: without its media workers, which "
            "hold the RTP endpoints; no RTP flows in this benchmark); 100 % = one core.",
            "the load generator (sipp uac) and the UAS run on the same machine.",
            "a highest rate equal to the last rate tried means the generator's ladder ended "
            "before the B2BUA failed.",
        ],
    }
    path = write_results("bridged_rate", data, args.out)
    print()
    print_table(rows, [("target", "B2BUA", "{}"), ("rate", "calls/s", "{}"), ("calls_ok", "ok", "{}"),
                       ("calls_failed", "failed", "{}"), ("achieved_cps", "achieved", "{}"),
                       ("retransmissions", "retrans", "{}"), ("server_cpu_pct", "CPU %", "{}"),
                       ("sipp_cpu_pct", "sipp CPU %", "{}"), ("passed", "pass", "{}")])
    print(f"\nhighest passing rate: {best}; voxlab/Sippy: {ratio}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
