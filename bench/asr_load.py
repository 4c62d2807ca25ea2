#!/usr/bin/env python3
"""ASR and TTS beside echo calls: do speech calls cost the echo calls RTP frames?

One voxlab with 2 media workers runs an ``echo`` scenario and an ``asrcall``
scenario (answers, says a sentence in a loop with ``call.say``, and sends the
caller's audio to an ASR with phrases yes/no, a new ASR after each Result,
and says what it heard). K callers say espeak-ng "yes" / "no" to ``asrcall``
over and over, while N echo calls carry RTP from bench/concurrent_media.py's
load generator (rtpgen.c when cc works: a Python loop cannot keep pace with
200 calls on 2 cores). Each configuration runs on a fresh server; K = 0 is
the reference measured in the same run.

Reported per run: echo loss and round trip p50/p99 (as the generator sees it),
server CPU (main process and each media worker), the generator's own send
lateness (p99 >= 10 ms: it could not keep pace, and its figures measure the
machine rather than voxlab), and the server-side evidence the test falls back
on then: every echo leg's RTP counters (``voxlab sessions --json``), the
workers' late ticks (console: ``session.engine.media.info()``), the kernel's
per-socket drop counters of the generator's and the workers' UDP sockets
(/proc/net/udp), softnet backlog drops, and how long each worker waited for
a CPU (/proc/PID/schedstat). For the speech calls: the Results they got.

    python bench/asr_load.py                      # N=200, K=5, 10 s, results in bench/results/asr_load-DATE.txt
    python bench/asr_load.py --calls 100 --asr 5 --duration 5 --repeat 2

tests/e2e/test_media_load.py runs :func:`run_load` once and judges it with
:func:`judge`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import RESULTS_DIR, CpuMeter, SystemCpu, machine_info  # noqa: E402
from concurrent_media import LoadGen, build_rtpgen  # noqa: E402

from tests.peers.server import REPO_ROOT, VoxlabServer  # noqa: E402
from tests.peers.sipua import SipUA  # noqa: E402

#: the generator kept pace when its p99 send lateness is under this (ms), as in concurrent_media
KEPT_PACE_MS = 10.0
#: a worker whose main thread waited for a CPU this share of the media phase was starved by the
#: machine (an idle 2-core machine shows ~0.05 at 200 calls: a wake-up per packet). The server
#: can only lose packets on the way in when a worker leaves a socket unread for seconds (its
#: receive buffer holds 3-5 s of one stream), which a starved machine explains above this share
#: and a worker blocked by its own work (it sleeps on a lock, not on a run queue) does not.
STARVED_SHARE = 0.25

# The bundled echo scenario itself, as bench/scenarios/routes.toml routes it.
ECHO_SCENARIO = (REPO_ROOT / "scenarios" / "echo.py").read_text()

ASRCALL_SCENARIO = """\
# asrcall: speech synthesis and recognition on one call, for as long as it lasts. The caller
# hears a looping prompt (call.say); what it says goes to an ASR (phrases yes/no); after each
# Result a new ASR listens and the prompt says what was heard (a new text each time, so
# espeak-ng synthesises again).
def on_alerting(e):
    call = e.call
    state = {"asr": None, "n": 0}

    def listen():
        asr = VoxEngine.create_asr(phrases=["yes", "no"])
        asr.add_event_listener(ASREvents.Started, lambda ev: Logger.write(f"asrcall {call.id} listening"))
        asr.add_event_listener(ASREvents.Result, lambda ev: heard(asr, ev))
        asr.add_event_listener(ASREvents.ASRError, lambda ev: Logger.write(f"asrcall {call.id} error {ev.error}"))
        state["asr"] = asr
        call.send_media_to(asr)

    def heard(asr, ev):
        state["n"] += 1
        Logger.write(f"asrcall {call.id} result {ev.text!r}")
        asr.stop()
        listen()
        call.say(f"Number {state['n']}: you said {ev.text or 'nothing'}. Say yes or no.", loop=True)

    def connected(ev):
        call.say("Say yes or no, as often as you like.", loop=True)
        listen()

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

SCENARIOS = {"echo": ECHO_SCENARIO, "asrcall": ASRCALL_SCENARIO}

_RESULT = re.compile(r"asrcall (\S+) result '([^']*)'")
_LISTENING = re.compile(r"asrcall (\S+) listening")
_ERROR = re.compile(r"asrcall (\S+) error ")


# --------------------------------------------------------------------------
# the speech callers
# --------------------------------------------------------------------------

def spoken_words(workdir: Path, words=("yes", "no")) -> dict[str, np.ndarray]:
    """espeak-ng ``words`` as 8 kHz int16 (``espeak-ng -w``, then read_wav)."""
    from voxlab.media.wav import read_wav

    out = {}
    for word in words:
        path = Path(workdir) / f"spoken-{word}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), word], check=True, capture_output=True)
        out[word] = read_wav(path, 8000)
    return out


class SpeechCallers:
    """K callers to ``asrcall``, each saying yes / no (alternating, 1 s apart) until stopped."""

    def __init__(self, server, k: int, words: dict[str, np.ndarray]) -> None:
        self.server, self.k = server, k
        seq = [words["yes"], words["no"]]
        pause = np.zeros(8000, np.int16)
        self.cycle = [np.concatenate([w, pause]) for w in seq]
        self.stop_ev = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.k):
            t = threading.Thread(target=self._talk, args=(i,), daemon=True, name=f"asr-caller-{i}")
            t.start()
            self.threads.append(t)

    def _talk(self, i: int) -> None:
        try:
            with SipUA(self.server.host, self.server.sip_port) as ua:
                call = ua.call("asrcall", codecs=("PCMU",))
                n = i          # callers start on different words
                while not self.stop_ev.is_set():
                    call.rtp.send_audio(self.cycle[n % 2], stop=self.stop_ev)
                    n += 1
                call.bye()
        except Exception as exc:
            with self._lock:
                self.errors.append(f"caller {i}: {exc!r}")

    def wait_listening(self, timeout: float = 30.0) -> int:
        """Wait until K asrcall sessions have an ASR listening; how many do."""
        deadline = time.monotonic() + timeout
        while True:
            n = len(set(_LISTENING.findall(self.server.log_text())))
            if n >= self.k or time.monotonic() > deadline or (self.errors and
                                                              not any(t.is_alive() for t in self.threads)):
                return n
            time.sleep(0.1)

    def stop(self) -> None:
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)


def asr_results(log: str) -> dict[str, list[str]]:
    """{call id: [texts]} of the asrcall Results in a piece of server log."""
    out: dict[str, list[str]] = {}
    for call_id, text in _RESULT.findall(log):
        out.setdefault(call_id, []).append(text)
    return out


# --------------------------------------------------------------------------
# server-side evidence
# --------------------------------------------------------------------------

def _cli(server, *args: str, stdin: str | None = None, timeout: float = 60.0) -> str:
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", *args, "--data-dir", str(server.data_dir)],
                         input=stdin, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"voxlab {args[0]} exited {out.returncode}: {(out.stderr or out.stdout)[-400:]}")
    return out.stdout


def echo_legs(server) -> dict[int, dict]:
    """{generator port: rtp counters (+ media worker index)} of the live echo calls,
    from ``voxlab sessions --json`` (each call's remote is the generator leg it latched to)."""
    data = json.loads(_cli(server, "sessions", "--json"))
    legs = {}
    for s in data["sessions"]:
        if s["scenario"] != "echo.py":
            continue
        for c in s["calls"]:
            rtp = c.get("rtp") or {}
            remote = rtp.get("remote") or ""
            if c.get("end_reason") or ":" not in remote:
                continue
            row = dict(rtp)
            row["worker"] = (c.get("media_worker") or {}).get("index")
            legs[int(remote.rsplit(":", 1)[1])] = row
    return legs


def stable_echo_legs(server, settle: float = 0.3, tries: int = 10) -> dict[int, dict]:
    """echo_legs() once two readings ``settle`` s apart agree on every leg's rx count
    (the workers report counters every 100 ms)."""
    prev = echo_legs(server)
    for _ in range(tries):
        time.sleep(settle)
        cur = echo_legs(server)
        if {p: r.get("rx_packets") for p, r in cur.items()} == {p: r.get("rx_packets") for p, r in prev.items()}:
            return cur
        prev = cur
    return prev


def worker_info(server) -> list[dict]:
    """The media workers as the engine sees them (index, pid, ticks, late_ticks ...): evaluated in
    the latest live session by the console, as ``voxlab attach --last`` with piped code."""
    code = "import json as _j; print('@@' + _j.dumps(session.engine.media.info()))\n"
    out = _cli(server, "attach", "--last", stdin=code)
    for line in out.splitlines():
        if "@@" in line:
            return json.loads(line.split("@@", 1)[1])
    raise RuntimeError(f"no media worker info in the console's answer: {out[-300:]}")


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds."""
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    except OSError:
        pass
    return out


def udp_sockets() -> list[tuple[int, int, int]]:
    """(local port, inode, kernel drops) of every IPv4 UDP socket (/proc/net/udp)."""
    rows = []
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            if len(p) < 13:
                continue
            rows.append((int(p[1].rsplit(":", 1)[1], 16), int(p[9]), int(p[12])))
    return rows


def softnet_drops() -> int:
    """Packets the kernel dropped from a full per-CPU backlog (all CPUs, /proc/net/softnet_stat)."""
    try:
        with open("/proc/net/softnet_stat") as f:
            return sum(int(line.split()[1], 16) for line in f if line.strip())
    except OSError:
        return 0


def run_delay_s(pid: int) -> float | None:
    """Seconds the main thread of ``pid`` has waited on a run queue (/proc/PID/schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class DropMeter:
    """Kernel drop counters over an interval of the UDP sockets of some ports and of some processes."""

    def __init__(self, gen_ports: set[int], server_pids: list[int]) -> None:
        self.gen_ports = gen_ports
        self.server_pids = server_pids
        self.inodes = set().union(*(socket_inodes(p) for p in server_pids)) if server_pids else set()
        self.before = self._read()

    def _read(self) -> tuple[int, int, int]:
        gen = srv = 0
        for port, inode, drops in udp_sockets():
            if port in self.gen_ports:
                gen += drops
            if inode in self.inodes:
                srv += drops
        return gen, srv, softnet_drops()

    def read(self) -> dict:
        gen, srv, soft = self._read()
        return {"generator_socket_drops": gen - self.before[0], "server_socket_drops": srv - self.before[1],
                "softnet_drops": soft - self.before[2], "server_sockets": len(self.inodes)}


# --------------------------------------------------------------------------
# the echo load generator (concurrent_media's LoadGen, holding its calls up until told)
# --------------------------------------------------------------------------

def _generator(host, port, n, window, duration, rtpgen, ready_q, start_ev, start_val, out_q, bye_ev):
    try:
        gen = LoadGen(host, port, n, 0, window)
        setup = gen.setup()
        setup["ports"] = [l.port for l in gen.legs if l.state == "up"]
        ready_q.put(setup)
        if not start_ev.wait(300):
            out_q.put({"error": "no start signal"})
            return
        media = (gen.media_c(rtpgen, int(start_val.value), duration) if rtpgen
                 else gen.media(int(start_val.value), duration))
        media["latency_ms"] = media["latency_ms"].tobytes()
        media["send_late_ms"] = media["send_late_ms"].tobytes()
        media["legs"] = [(l.port, l.sent, l.received) for l in gen.legs if l.state == "up"]
        out_q.put({"media": media})
        # The calls stay up (their sockets open) while the parent reads the counters.
        bye_ev.wait(120)
        out_q.put({"bye": gen.hangup()})
        gen.close()
    except Exception as exc:      # report, don't hang the parent
        import traceback
        err = {"error": repr(exc), "traceback": traceback.format_exc()}
        ready_q.put(err)
        out_q.put(err)


def _pct(a: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(a, q)), 2) if a.size else None


def run_load(server, n_echo: int, n_asr: int, duration: float, rtpgen: str | None, workdir: Path,
             window: int = 50) -> dict:
    """N echo calls with RTP for ``duration`` s beside K speech calls, on a running server with
    the SCENARIOS; every figure and counter in one dict (see :func:`judge`)."""
    row: dict = {"echo_calls": n_echo, "asr_calls": n_asr, "duration_s": duration,
                 "generator": "c" if rtpgen else "python"}
    words = spoken_words(workdir) if n_asr else None
    ctx = mp.get_context("fork")
    ready_q, out_q = ctx.Queue(), ctx.Queue()
    start_ev, bye_ev = ctx.Event(), ctx.Event()
    start_val = ctx.Value("q", 0)
    proc = ctx.Process(target=_generator, args=(server.host, server.sip_port, n_echo, window, duration,
                                                rtpgen, ready_q, start_ev, start_val, out_q, bye_ev),
                       daemon=True)
    callers = None
    proc.start()
    try:
        setup = ready_q.get(timeout=120)
        if "error" in setup:
            raise RuntimeError(f"load generator failed: {setup['error']}\n{setup.get('traceback', '')}")
        row.update({"echo_up": setup["up"], "setup_failures": setup["failures"],
                    "setup_s": round(setup["setup_s"], 2)})
        gen_ports = set(setup["ports"])
        if n_asr:
            callers = SpeechCallers(server, n_asr, words)
            callers.start()
            row["asr_listening"] = callers.wait_listening()
        workers0 = worker_info(server)
        wpids = [w["pid"] for w in workers0 if w.get("alive")]
        legs0 = echo_legs(server)
        drops = DropMeter(gen_ports, wpids)
        delay0 = {p: run_delay_s(p) for p in wpids}
        meters = {p: CpuMeter(p) for p in wpids}
        main_meter = CpuMeter(server.pid)
        system = SystemCpu()
        log_from = len(server.log_text())
        start_ns = time.monotonic_ns() + int(0.3e9)
        start_val.value = start_ns
        start_ev.set()
        got = out_q.get(timeout=duration + 120)
        if "error" in got:
            raise RuntimeError(f"load generator failed: {got['error']}\n{got.get('traceback', '')}")
        wall = (time.monotonic_ns() - start_ns) / 1e9
        main_cpu, _ = main_meter.read()
        wcpu = {}
        for p, m in meters.items():
            try:
                wcpu[p] = m.read()[0]
            except (OSError, ValueError):
                wcpu[p] = None
        sys_cpu, sys_wall = system.read()
        delay1 = {p: run_delay_s(p) for p in wpids}
        row.update(drops.read())
        log_window = server.log_text()[log_from:]
        legs1 = stable_echo_legs(server)
        workers1 = worker_info(server)
        media = got["media"]
        lat = np.frombuffer(media["latency_ms"], np.float32)
        late = np.frombuffer(media["send_late_ms"], np.float32)
        # per leg: what the generator sent / got back, and what the server counted
        per_leg = []
        for port, sent, received in media["legs"]:
            a, b = legs0.get(port), legs1.get(port)
            per_leg.append({
                "port": port, "sent": sent, "received": received,
                "server_rx": None if b is None else b["rx_packets"] - (a or {}).get("rx_packets", 0),
                "server_tx": None if b is None or a is None else b["tx_packets"] - a["tx_packets"],
                "worker": None if b is None else b.get("worker"),
                "jitter_ms": None if b is None else b.get("jitter_ms"),
            })
        sent = sum(x["sent"] for x in per_leg)
        received = sum(x["received"] for x in per_leg)
        known = [x for x in per_leg if x["server_rx"] is not None and x["server_tx"] is not None]
        by_index = {w["index"]: w for w in workers0}
        row.update({
            "packets_sent": sent, "packets_received": received,
            "loss_pct": round(100 * (1 - received / sent), 3) if sent else None,
            "legs_with_loss": sum(1 for x in per_leg if x["received"] < x["sent"]),
            "rtt_ms_p50": _pct(lat, 50), "rtt_ms_p99": _pct(lat, 99),
            "rtt_ms_max": round(float(lat.max()), 2) if lat.size else None,
            "send_late_ms_p50": _pct(late, 50), "send_late_ms_p99": _pct(late, 99),
            "send_late_ms_max": round(float(late.max()), 2) if late.size else None,
            "generator_kept_pace": bool(late.size) and _pct(late, 99) < KEPT_PACE_MS,
            "generator_cpu_pct": round(100 * media["cpu_s"] / (duration + 1.0), 1),
            "lost_sample": media.get("lost_sample", [])[:10],
            # server side
            "legs_counted_by_server": len(known),
            "server_rx": sum(x["server_rx"] for x in known),
            "server_tx": sum(x["server_tx"] for x in known),
            "legs_server_rx_short": sum(1 for x in known if x["server_rx"] < x["sent"]),
            "legs_server_tx_short": sum(1 for x in known if x["server_tx"] < x["server_rx"]),
            "server_jitter_ms_max": max((x["jitter_ms"] or 0.0 for x in known), default=None),
            "legs_per_worker": {str(i): sum(1 for x in known if x["worker"] == i) for i in sorted(by_index)},
            "main_cpu_pct": round(100 * main_cpu / wall, 1),
            "worker_cpu_pct": [None if wcpu.get(p) is None else round(100 * wcpu[p] / wall, 1) for p in wpids],
            "worker_late_ticks": [w1["late_ticks"] - by_index[w1["index"]]["late_ticks"]
                                  for w1 in workers1 if w1["index"] in by_index],
            "worker_ticks": [w1["ticks"] - by_index[w1["index"]]["ticks"]
                             for w1 in workers1 if w1["index"] in by_index],
            "worker_run_delay_share": [None if delay0[p] is None or delay1[p] is None
                                       else round((delay1[p] - delay0[p]) / wall, 3) for p in wpids],
            "workers_alive": [w["alive"] for w in workers1],
            "machine_cpu_pct": round(100 * sys_cpu / sys_wall, 1),
        })
        row["server_cpu_pct"] = round(row["main_cpu_pct"] + sum(x or 0 for x in row["worker_cpu_pct"]), 1)
        if n_asr:
            results = asr_results(log_window)
            row["asr_results_during_load"] = {c: len(t) for c, t in sorted(results.items())}
            row["asr_words_heard"] = {w: sum(t.count(w) for t in results.values()) for w in ("yes", "no", "")}
            row["asr_errors_logged"] = len(_ERROR.findall(log_window))
        bye_ev.set()
        got = out_q.get(timeout=60)
        if "error" in got:
            raise RuntimeError(f"load generator failed at hang-up: {got['error']}")
        row["bye"] = got["bye"]
    except Exception as exc:
        row["error"] = str(exc)
    finally:
        bye_ev.set()
        if callers is not None:
            callers.stop()
            row["asr_caller_errors"] = callers.errors
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        row["server_alive"] = server.alive()
    return row


def judge(row: dict) -> tuple[str, str]:
    """("pass" | "fail" | "skip", why) for 'the echo calls lost no RTP frames' in a run_load row.

    The generator kept pace (send lateness p99 < 10 ms): its own count decides, every packet
    must come back. It did not: the server-side counters decide. The server received every
    packet (each echo leg's rx = what the generator sent) and sent at least as many back, and
    what the generator missed was dropped by the kernel at the generator's own sockets: the
    server lost nothing (pass). Packets that never reached the server's reads while its
    workers had the CPU: the server lost them (fail). Losses that only a starved machine
    explains (the workers waited for a CPU, softnet backlog drops): cannot be judged (skip)."""
    if "error" in row:
        return "fail", f"the run failed: {row['error']}"
    if row["echo_up"] < row["echo_calls"]:
        return "fail", f"only {row['echo_up']} of {row['echo_calls']} echo calls set up: {row['setup_failures']}"
    if not all(row.get("workers_alive", [False])):
        return "fail", f"a media worker died: {row.get('workers_alive')}"
    sent, received = row["packets_sent"], row["packets_received"]
    lost = sent - received
    late = f"send lateness p99 {row['send_late_ms_p99']} ms, max {row['send_late_ms_max']} ms"
    server = (f"server rx {row['server_rx']} / tx {row['server_tx']} over {row['legs_counted_by_server']} legs, "
              f"legs short on rx {row['legs_server_rx_short']}, short on tx {row['legs_server_tx_short']}; "
              f"kernel drops: generator sockets {row['generator_socket_drops']}, server sockets "
              f"{row['server_socket_drops']}, softnet {row['softnet_drops']}; workers: late ticks "
              f"{row['worker_late_ticks']}, waited for a CPU {row['worker_run_delay_share']} of the time, "
              f"CPU {row['worker_cpu_pct']} %")
    if row["generator_kept_pace"]:
        if lost == 0:
            return "pass", f"{sent} packets sent, all came back (generator kept pace: {late})"
        return "fail", (f"echo calls lost {lost} of {sent} packets on {row['legs_with_loss']} legs while the "
                        f"generator kept pace ({late}); sample (stream, seq) {row['lost_sample']}; {server}")
    # the generator could not keep pace: the server's own evidence
    if row["legs_counted_by_server"] < row["echo_up"]:
        return "skip", (f"the generator could not keep pace ({late}) and the server's counters cover only "
                        f"{row['legs_counted_by_server']} of {row['echo_up']} legs: loss cannot be judged")
    starved = [x for x in row["worker_run_delay_share"] if x is not None and x >= STARVED_SHARE]
    if row["legs_server_rx_short"] == 0 and row["legs_server_tx_short"] == 0:
        if lost == 0:
            return "pass", (f"the generator could not keep pace ({late}), yet the server received and sent "
                            f"back every packet ({row['server_rx']} of {sent}) and all {sent} came back")
        if lost <= row["generator_socket_drops"]:
            return "pass", (f"the generator could not keep pace ({late}) but the server received and sent "
                            f"back every packet ({row['server_rx']} of {sent}); the {lost} the generator "
                            f"missed were dropped at its own sockets ({row['generator_socket_drops']} drops)")
        if row["softnet_drops"] > 0:
            return "skip", (f"the generator could not keep pace ({late}); the server received every packet, "
                            f"{lost} did not come back and the kernel's backlog dropped {row['softnet_drops']}: "
                            f"loss cannot be judged; {server}")
        return "fail", (f"the server counted every packet in and out, yet {lost} of {sent} did not come back "
                        f"and neither the generator's sockets nor the kernel's backlog dropped them: {server}")
    if row["legs_server_tx_short"]:
        return "fail", f"the server received packets it did not send back: {server}"
    # packets never reached the server's reads
    if starved or row["softnet_drops"] > 0:
        return "skip", (f"the generator could not keep pace ({late}) and packets never reached the server's "
                        f"reads while the machine starved its workers: loss cannot be judged; {server}")
    return "fail", (f"packets never reached the server's reads though its workers had the CPU (the "
                    f"generator was late too: {late}): {server}")


# --------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------

def start_server(workdir: Path, tag: str, media_workers: int, n_calls: int, log_level: str) -> VoxlabServer:
    scn = workdir / "scenarios"
    scn.mkdir(parents=True, exist_ok=True)
    for name, src in SCENARIOS.items():
        (scn / f"{name}.py").write_text(textwrap.dedent(src))
    server = VoxlabServer(data_dir=workdir / f"data-{tag}", scenarios=scn, log_path=workdir / f"server-{tag}.log",
                          log_level=log_level, rtp_ports=max(400, 3 * n_calls),
                          extra_args=("--media-workers", str(media_workers)))
    server.start(timeout=60)
    return server


COLUMNS = [("asr_calls", "ASR"), ("echo_up", "echo"), ("loss_pct", "loss %"),
           ("rtt_ms_p50", "rtt p50"), ("rtt_ms_p99", "rtt p99"), ("rtt_ms_max", "rtt max"),
           ("main_cpu_pct", "main CPU %"), ("_workers", "worker CPU %"), ("server_cpu_pct", "server CPU %"),
           ("machine_cpu_pct", "machine CPU %"), ("generator_cpu_pct", "gen CPU %"),
           ("send_late_ms_p99", "gen late p99"), ("generator_kept_pace", "gen ok"),
           ("_late_ticks", "late ticks"), ("_asr", "ASR results"), ("verdict", "verdict")]


def table(rows: list[dict]) -> str:
    for r in rows:
        r["_workers"] = "/".join(str(x) for x in r.get("worker_cpu_pct", [])) or None
        r["_late_ticks"] = "/".join(str(x) for x in r.get("worker_late_ticks", [])) or None
        res = r.get("asr_results_during_load")
        r["_asr"] = sum(res.values()) if res is not None else None
    cells = [[("-" if r.get(k) is None else str(r[k])) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(COLUMNS)]
    lines = ["  ".join(h.rjust(w) for (_, h), w in zip(COLUMNS, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(c, widths)) for c in cells]
    for r in rows:
        for k in ("_workers", "_late_ticks", "_asr"):
            r.pop(k, None)
    return "\n".join(lines)


def result_path(out: str | None) -> Path:
    if out:
        return Path(out)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d")
    path = RESULTS_DIR / f"asr_load-{stamp}.txt"
    n = 1
    while path.exists():
        n += 1
        path = RESULTS_DIR / f"asr_load-{stamp}-{n}.txt"
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200, help="echo calls (default 200)")
    ap.add_argument("--asr", type=int, default=5, help="speech calls beside them (default 5)")
    ap.add_argument("--duration", type=float, default=10.0, help="media seconds per run (default 10)")
    ap.add_argument("--media-workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each configuration, alternating (default 1)")
    ap.add_argument("--generator", choices=("c", "python"), default="c")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--out", help="result file (default bench/results/asr_load-DATE.txt)")
    args = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is needed for the speech calls", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="voxlab-asr-load-"))
    rtpgen = build_rtpgen(workdir) if args.generator == "c" else None
    machine = machine_info()
    print(f"{args.calls} echo calls, 0 vs {args.asr} ASR+TTS calls, {args.duration:g} s of media, "
          f"{args.media_workers} media workers, generator {'rtpgen.c' if rtpgen else 'python'} "
          f"(logs in {workdir})", flush=True)
    rows = []
    for rep in range(args.repeat):
        for k in (0, args.asr):
            tag = f"asr{k}-{rep}"
            server = start_server(workdir, tag, args.media_workers, args.calls + k, args.log_level)
            try:
                row = run_load(server, args.calls, k, args.duration, rtpgen, workdir)
            finally:
                server.stop()
            row["run"] = rep + 1
            row["verdict"], row["why"] = judge(row)
            rows.append(row)
            print(f"  run {rep + 1}, {k} ASR calls: {row['verdict']}: {row['why']}", flush=True)
    tab = table(rows)
    print()
    print(tab)
    path = result_path(args.out)
    with open(path, "w") as f:
        f.write(f"bench/asr_load.py: {args.calls} echo calls (50 pps PCMU each) beside 0 and {args.asr} "
                f"ASR+TTS calls\n")
        f.write(f"date {_dt.datetime.now().isoformat(timespec='seconds')}, {args.duration:g} s of media per run, "
                f"{args.media_workers} media workers, generator {'c (bench/rtpgen.c)' if rtpgen else 'python'}\n")
        f.write(f"machine {json.dumps(machine)}\n\n")
        f.write(tab + "\n\n")
        f.write(textwrap.dedent("""\
            loss, rtt: as the load generator sees its echo packets (rtt includes its own scheduling delay).
            CPU: over the media phase from /proc, 100 % = one core; main = the SIP/session process,
            workers = each media worker; machine = all cores busy (other jobs included).
            gen late p99: how late the generator sent (ms); gen ok = under 10 ms, else the generator could
            not keep pace and the figures measure the machine, not voxlab alone.
            late ticks: 20 ms media ticks each worker ran at least one period late, over the media phase.
            ASR results: Results the speech calls got during the media phase.
            The ASR 0 rows are the reference: the same echo load on a fresh server, no speech calls.
            """))
        ref = [r for r in rows if r["asr_calls"] == 0 and "error" not in r]
        asr = [r for r in rows if r["asr_calls"] and "error" not in r]
        if ref and asr:
            def mean(rs, k):
                xs = [r[k] for r in rs if r.get(k) is not None]
                return sum(xs) / len(xs) if xs else float("nan")
            f.write(f"\n{args.asr} ASR+TTS calls beside the echo calls, against the reference (means over runs): "
                    f"loss {mean(ref, 'loss_pct'):.3f} -> {mean(asr, 'loss_pct'):.3f} %, "
                    f"rtt p50 {mean(ref, 'rtt_ms_p50'):.2f} -> {mean(asr, 'rtt_ms_p50'):.2f} ms, "
                    f"rtt p99 {mean(ref, 'rtt_ms_p99'):.2f} -> {mean(asr, 'rtt_ms_p99'):.2f} ms, "
                    f"server CPU {mean(ref, 'server_cpu_pct'):.1f} -> {mean(asr, 'server_cpu_pct'):.1f} %, "
                    f"generator late p99 {mean(ref, 'send_late_ms_p99'):.2f} -> "
                    f"{mean(asr, 'send_late_ms_p99'):.2f} ms\n")
        f.write("\nverdicts (tests/e2e/test_media_load.py's judge):\n")
        for r in rows:
            f.write(f"  run {r['run']}, {r['asr_calls']} ASR: {r['verdict']}: {r['why']}\n")
        f.write("\nall figures:\n")
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
