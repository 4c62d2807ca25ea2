#!/usr/bin/env python3
"""ASR and TTS beside echo calls: do speech calls cost the echo calls frames?

N echo calls with RTP (bench/concurrent_media.py's load generator, the C one
when cc works) run twice on the same server set-up: once alone (the
reference of the same run) and once with K speech calls beside them, each
sending espeak-ng "yes" / "no" over and over to a scenario that recognises
it (pocketsphinx) and says it back (espeak-ng). Reported per run: echo loss,
round trip p50/p99, server and worker CPU, the generator's own lateness (a
run where the generator could not keep pace says so), and for the speech
calls how many utterances were recognised.

    python bench/asr_load.py                 # N=200, K=5, 10 s
    python bench/asr_load.py --calls 100 --speech 5 --duration 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import machine_info, write_results  # noqa: E402
from concurrent_media import build_rtpgen, run_n  # noqa: E402

from tests.peers.sipua import SipUA  # noqa: E402
from voxlab.media.wav import read_wav  # noqa: E402


def spoken(words: list[str], workdir: Path) -> list[np.ndarray]:
    out = []
    for word in words:
        path = workdir / f"{word}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), word], check=True)
        out.append((read_wav(path, 8000).astype(np.float64) * 0.5).astype(np.int16))
    return out


def speech_calls(k: int, workdir: Path):
    """A ``during_media`` hook for run_n: K callers saying yes / no until the run ends."""
    words = spoken(["yes", "no"], workdir)
    pause = np.zeros(8000, np.int16)

    def start(server):
        stop = threading.Event()
        threads, stats = [], {"calls": 0, "utterances_sent": 0, "errors": []}

        def talk(i: int) -> None:
            try:
                with SipUA(server.host, server.sip_port) as ua:
                    call = ua.call("speech")
                    stats["calls"] += 1
                    n = 0
                    while not stop.is_set():
                        call.rtp.send_audio(words[(i + n) % 2], stop=stop)
                        call.rtp.send_audio(pause, stop=stop)
                        stats["utterances_sent"] += 1
                        n += 1
                    call.bye()
            except Exception as exc:
                stats["errors"].append(repr(exc))

        for i in range(k):
            t = threading.Thread(target=talk, args=(i,), daemon=True)
            t.start()
            threads.append(t)

        def finish() -> dict:
            stop.set()
            for t in threads:
                t.join(15)
            log = server.log_text()
            stats["recognised"] = log.count("speech heard 'yes'") + log.count("speech heard 'no'")
            stats["results"] = log.count("speech heard ")
            return stats

        return finish

    return start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--speech", type=int, default=5)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--media-workers", type=int, default=2)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="voxlab-asr-load-"))
    rtpgen = build_rtpgen(workdir)
    rows = []
    for k in (0, args.speech):
        row = run_n(args.calls, 1, args.duration, 50, "info", workdir, "voxlab", args.media_workers, rtpgen,
                    during_media=speech_calls(k, workdir) if k else None)
        row["speech_calls"] = k
        rows.append(row)
        print(f"{args.calls} echo + {k} speech: loss {row.get('loss_pct')} %, rtt p50 {row.get('rtt_ms_p50')} "
              f"p99 {row.get('rtt_ms_p99')} ms, workers {row.get('worker_cpu_pct')} %, generator late p99 "
              f"{row.get('send_late_ms_p99')} ms (kept pace: {row.get('generator_kept_pace')}), "
              f"speech {row.get('during')}", flush=True)
    path = write_results("asr_load", {"benchmark": "asr_load", "machine": machine_info(),
                                      "generator": "c" if rtpgen else "python", "results": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
