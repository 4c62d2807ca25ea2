#!/usr/bin/env python3
"""Browser (WebRTC) calls: the CPU a call costs in voxlab's WebRTC gateway worker, and how
many calls fit in one worker (one core).

One voxlab (``--webrtc-workers 1 --media-workers 1``, users u1..uN in ``[users]``,
bench/scenarios/ with its ``echo`` route) for the whole run. For each N in ``--calls``,
load-generator processes (this file, ``--generator``; one asyncio process per 10 browsers
unless ``--procs`` says otherwise) play N browsers: per browser a
WebSocket to ``/ws/phone`` (websocket-client, the console token as its cookie), ``login``
as its own user, an aiortc RTCPeerConnection (no ICE servers, candidates on 127.0.0.1)
whose audio track sends a 1 kHz tone in 20 ms frames paced in real time, a complete
G.711-only offer (PCMU, then PCMA) sent as ``call`` to ``echo``, the answer applied. Once
every call is ``connected`` and audio flows, CPU (utime+stime from /proc/PID/stat, 100 % =
one core) is sampled over ``--seconds`` for the gateway worker, the voxlab main process,
the media worker and the generator itself; the generator counts the echoed frames of
each call over the same window and checks that they carry the 1 kHz tone (FFT peak).

How to read it (bench/results/webrtc_calls.json):

* ``gateway_cpu_pct_per_call`` = gateway worker CPU / N, fixed cost included;
  ``gateway_cpu_pct_per_call_marginal`` = (gateway CPU - its idle CPU) / N.
* ``calls_per_worker`` = floor(80 % / per-call %): a worker is one process, so one core at
  most; 80 % leaves headroom for bursts (call set-up, GC). ``calls_per_core`` is the same
  figure (the gateway's cost alone, which is what a core given to ``--webrtc-workers``
  buys); ``calls_per_core_all_voxlab`` also counts the main process and the media worker
  per browser call (what a core of a machine that runs only voxlab buys).
* ``gateway_over_generator``: the reference measured in the same run. The generator runs the
  same aiortc stack (ICE, DTLS-SRTP, G.711, pacing) at the other end of every call, so
  the ratio of the two per-call CPUs is far steadier than the absolute figures on a
  shared machine: what the gateway adds beyond plain aiortc (its SIP phone, the RTP to
  voxlab, the resampling and the 20 ms ticks) shows as a ratio above 1.
* This machine's cores are shared by the generator and the server. A row where the
  generator used more than 90 % of a core (``generator_kept_pace`` false) or sent its
  frames late (p99 over 10 ms) measures the machine, not voxlab; a row with
  ``gateway_saturated`` (gateway above 90 %) is at the worker's limit, and one with
  ``machine_busy`` (all cores >= 90 % busy) may have starved it. Escalation stops after the
  first row with a failed call, missing echo, a generator that could not keep pace, a
  saturated gateway or a busy machine; the summary uses the largest clean row.

    .venv/bin/python bench/webrtc_calls.py                      # N = 1,5,10,20, 10 s each
    .venv/bin/python bench/webrtc_calls.py --calls 1,5 --seconds 5
    .venv/bin/python bench/webrtc_calls.py --calls 20,40 --procs 4   # on a larger machine
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import math
import os
import platform
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import (RESULTS_DIR, SCENARIOS_DIR, SystemCpu, VoxlabServer,  # noqa: E402
                    print_table, proc_cpu_seconds, rss_mb)

from tests.peers.process import end_process  # noqa: E402

RATE = 8000
FRAME = 160                      # 20 ms at 8 kHz
TONE_HZ = 1000.0
LOUD_RMS = 2000.0                # the tone is sent at 0.4 of full scale (RMS ~9300)
CHECK_EVERY = 10                 # FFT of one received frame in this many
WORKER_BUDGET_PCT = 80.0
GEN_BUSY_PCT = 90.0
CALLS_PER_GEN = 10               # browsers per generator process (--procs auto)
GATEWAY_BUSY_PCT = 90.0
LATE_MS_LIMIT = 10.0
PASSWORD = "pw{}"


# --------------------------------------------------------------------------- generator

def generator_main(cfg: dict) -> int:
    """The simulated browsers (one asyncio process). Talks to the orchestrator by JSON
    lines: prints ``ready``; on ``start`` snapshots its counters; on ``stop`` prints the
    window's figures, hangs up, logs out and prints ``done``."""
    import aioice.ice
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    import fractions

    import numpy as np
    import websocket
    from aiortc import (RTCConfiguration, RTCPeerConnection, RTCRtpSender,
                        RTCSessionDescription)
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from av import AudioFrame

    out_lock = threading.Lock()

    def emit(**m) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(m) + "\n")
            sys.stdout.flush()

    time_base = fractions.Fraction(1, RATE)
    tone = (0.4 * 32767 * np.sin(2 * np.pi * TONE_HZ * np.arange(FRAME) / RATE)).astype(np.int16)
    tone = tone.reshape(1, -1)
    window = np.hanning(FRAME)
    freqs = np.fft.rfftfreq(FRAME, 1 / RATE)
    late_ms: list[float] = []
    recording = {"on": False}

    class ToneTrack(MediaStreamTrack):
        """A microphone playing 1 kHz: 20 ms frames of 8 kHz s16, paced at real time."""
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._start: float | None = None
            self._pts = 0

        async def recv(self) -> AudioFrame:
            if self.readyState != "live":
                raise MediaStreamError
            now = time.monotonic()
            if self._start is None:
                self._start = now
            else:
                self._pts += FRAME
                due = self._start + self._pts / RATE
                if due > now:
                    await asyncio.sleep(due - now)
                if recording["on"]:
                    late_ms.append(1000.0 * max(0.0, time.monotonic() - due))
            frame = AudioFrame.from_ndarray(tone, format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = self._pts
            frame.time_base = time_base
            return frame

    class Stats:
        def __init__(self) -> None:
            self.frames = self.loud = self.checks = self.tone_ok = 0
            self.peaks: list[float] = []

        def snap(self) -> tuple[int, int, int, int]:
            return self.frames, self.loud, self.checks, self.tone_ok

    async def consume(track, st: Stats) -> None:
        try:
            while True:
                frame = await track.recv()
                pcm = frame.to_ndarray().reshape(-1).astype(np.float64)
                st.frames += 1
                if len(pcm) == 0:
                    continue
                rms = math.sqrt(float(np.mean(pcm * pcm)))
                if rms >= LOUD_RMS:
                    st.loud += 1
                if st.frames % CHECK_EVERY == 0 and len(pcm) == FRAME:
                    st.checks += 1
                    if rms >= LOUD_RMS:
                        spec = np.abs(np.fft.rfft(pcm * window))
                        peak = float(freqs[int(np.argmax(spec[1:])) + 1])
                        if abs(peak - TONE_HZ) <= 60:
                            st.tone_ok += 1
                        if len(st.peaks) < 200:
                            st.peaks.append(peak)
        except (MediaStreamError, asyncio.CancelledError):
            pass

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    g711 = [c for c in RTCRtpSender.getCapabilities("audio").codecs
            if c.mimeType.lower() == "audio/pcmu"] + \
           [c for c in RTCRtpSender.getCapabilities("audio").codecs
            if c.mimeType.lower() == "audio/pcma"]

    class Browser:
        def __init__(self, index: int) -> None:
            self.index = index
            self.user = f"u{index + 1}"
            self.ws = None
            self.pc = None
            self.next_id = 0
            self.pending: dict[int, asyncio.Future] = {}
            self.state: str | None = None
            self.state_changed = asyncio.Event()
            self.stats = Stats()
            self.consumer: asyncio.Task | None = None
            self.error: str | None = None
            self.connected = False
            self.codec: str | None = None
            self.closed = False

        # -- the WebSocket (a thread reads it; the loop gets the frames)
        def _reader(self) -> None:
            while True:
                try:
                    text = self.ws.recv()
                except Exception:
                    text = None
                if not text:
                    loop.call_soon_threadsafe(self._gone)
                    return
                loop.call_soon_threadsafe(self._deliver, text)

        def _gone(self) -> None:
            self.closed = True
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the WebSocket closed"))
            self.state_changed.set()

        def _deliver(self, text: str) -> None:
            try:
                m = json.loads(text)
            except ValueError:
                return
            if "id" in m:
                fut = self.pending.pop(m["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(m)
            elif m.get("event") == "state":
                self.state = m.get("state")
                if m.get("codec"):
                    self.codec = m["codec"]
                self.state_changed.set()

        async def request(self, op: str, timeout: float = 15.0, **fields) -> dict:
            self.next_id += 1
            rid = self.next_id
            fut = loop.create_future()
            self.pending[rid] = fut
            self.ws.send(json.dumps({"id": rid, "op": op, **fields}))
            return await asyncio.wait_for(fut, timeout)

        async def wait_state(self, state: str, timeout: float) -> bool:
            deadline = loop.time() + timeout
            while self.state != state and not self.closed:
                if state != "ended" and self.state == "ended":
                    return False
                left = deadline - loop.time()
                if left <= 0:
                    return False
                self.state_changed.clear()
                try:
                    await asyncio.wait_for(self.state_changed.wait(), left)
                except asyncio.TimeoutError:
                    return False
            return self.state == state

        # -- one browser: connect, log in, call echo
        async def run(self) -> None:
            try:
                self.ws = await asyncio.to_thread(
                    websocket.create_connection, cfg["url"], timeout=10,
                    cookie=f"voxlab_console={cfg['token']}")
                self.ws.settimeout(None)
                threading.Thread(target=self._reader, daemon=True).start()
                r = await self.request("login", user=self.user, password=PASSWORD.format(self.index + 1))
                if not r.get("ok"):
                    raise RuntimeError(f"login: {r.get('error')}")
                pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

                @pc.on("track")
                def on_track(track) -> None:
                    if track.kind == "audio" and self.consumer is None:
                        self.consumer = asyncio.ensure_future(consume(track, self.stats))

                transceiver = pc.addTransceiver(ToneTrack(), direction="sendrecv")
                transceiver.setCodecPreferences(g711)
                await pc.setLocalDescription(await pc.createOffer())   # gathers fully
                r = await self.request("call", to="echo", sdp=pc.localDescription.sdp)
                if not r.get("ok"):
                    raise RuntimeError(f"call: {r.get('error')}")
                await pc.setRemoteDescription(RTCSessionDescription(sdp=r["sdp"], type="answer"))
                if not await self.wait_state("connected", 20.0):
                    raise RuntimeError(f"call state {self.state!r}, not connected")
                deadline = loop.time() + 15.0
                while pc.connectionState != "connected":
                    if pc.connectionState in ("failed", "closed") or loop.time() > deadline:
                        raise RuntimeError(f"peer connection {pc.connectionState}")
                    await asyncio.sleep(0.05)
                self.connected = True
            except Exception as exc:
                self.error = f"{exc.__class__.__name__}: {exc}"

        async def finish(self) -> dict:
            hung = ended = False
            try:
                if self.ws is not None and not self.closed:
                    if self.state not in (None, "ended"):
                        r = await self.request("hangup", timeout=5.0)
                        hung = bool(r.get("ok"))
                        ended = await self.wait_state("ended", 5.0)
                    if self.pc is not None:
                        await self.pc.close()
                    if self.consumer is not None:
                        self.consumer.cancel()
                    await self.request("logout", timeout=5.0)
            except Exception as exc:
                self.error = self.error or f"teardown: {exc.__class__.__name__}: {exc}"
            finally:
                try:
                    if self.pc is not None:
                        await self.pc.close()
                except Exception:
                    pass
                if self.ws is not None:
                    try:
                        self.ws.close()
                    except Exception:
                        pass
            return {"hung_up": hung, "ended": ended}

    async def lines():
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            yield line.strip()

    async def main() -> None:
        n = cfg["calls"]
        browsers = [Browser(cfg.get("first", 0) + i) for i in range(n)]
        gate = asyncio.Semaphore(cfg.get("parallel", 4))

        async def one(b: Browser) -> None:
            async with gate:
                await b.run()

        t0 = time.monotonic()
        await asyncio.gather(*(one(b) for b in browsers))
        setup_s = time.monotonic() - t0
        await asyncio.sleep(cfg.get("settle", 1.5))
        emit(ready=True, connected=sum(b.connected for b in browsers), calls=n,
             setup_s=round(setup_s, 2), errors={b.user: b.error for b in browsers if b.error},
             codecs=sorted({b.codec for b in browsers if b.codec}), pid=os.getpid())
        snaps0 = None
        t_start = None
        async for line in lines():
            if line == "start":
                snaps0 = [b.stats.snap() for b in browsers]
                late_ms.clear()
                recording["on"] = True
                t_start = time.monotonic()
                emit(started=True)
            elif line == "stop":
                recording["on"] = False
                wall = time.monotonic() - (t_start or time.monotonic())
                snaps1 = [b.stats.snap() for b in browsers]
                per = []
                for b, s0, s1 in zip(browsers, snaps0 or snaps1, snaps1):
                    frames, loud, checks, ok = (s1[k] - s0[k] for k in range(4))
                    peaks = sorted(b.stats.peaks)
                    per.append({"user": b.user, "connected": b.connected, "frames": frames,
                                "loud_frames": loud, "tone_checks": checks, "tone_ok": ok,
                                "peak_hz_median": peaks[len(peaks) // 2] if peaks else None})
                late = sorted(late_ms)
                pick = (lambda q: round(late[min(len(late) - 1, int(q * len(late)))], 2)) \
                    if late else (lambda q: None)
                emit(window_s=round(wall, 3), per_call=per, send_late_ms_p50=pick(0.5),
                     send_late_ms_p99=pick(0.99), send_late_ms_max=round(late[-1], 2) if late else None)
                ends = await asyncio.gather(*(b.finish() for b in browsers))
                emit(done=True, hung_up=sum(e["hung_up"] for e in ends),
                     ended=sum(e["ended"] for e in ends),
                     errors={b.user: b.error for b in browsers if b.error})
                return
        for b in browsers:                 # stdin closed: the orchestrator is gone
            await b.finish()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return 0


# --------------------------------------------------------------------------- orchestrator

class Generator:
    """The generator process and its JSON-lines channel."""

    def __init__(self, cfg: dict, log_path: Path) -> None:
        self.log = open(log_path, "ab")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR.parent)] + [
            p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--generator",
                                      json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True, text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                try:
                    self.lines.put(json.loads(line))
                except ValueError:
                    pass
        self.lines.put(None)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the generator did not say {key!r} within {timeout:g} s")
            try:
                m = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if m is None:
                raise RuntimeError(f"the generator exited (code {self.proc.poll()}) before {key!r}")
            if key in m:
                return m

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        end_process(self.proc, 10.0)
        self.log.close()


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = proc_cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            out[name] = float("nan")
    return out


def sample_cpu(pids: dict[str, int], seconds: float) -> tuple[dict[str, float], float, float]:
    """CPU % (100 = one core) of each pid over ``seconds``, the wall time, and the whole
    machine's busy %."""
    system = SystemCpu()
    t0, c0 = time.monotonic(), _cpu(pids)
    time.sleep(seconds)
    c1, wall = _cpu(pids), time.monotonic() - t0
    busy, swall = system.read()
    return ({k: round(100.0 * (c1[k] - c0[k]) / wall, 2) for k in pids}, wall,
            round(100.0 * busy / swall, 1))


def run_level(server: VoxlabServer, pids: dict[str, int], token: str, n: int, seconds: float,
              workdir: Path, idle_gateway_pct: float, procs: int = 1) -> dict:
    procs = max(1, min(procs, n))
    row: dict = {"calls": n, "generator_procs": procs}
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    gens: list[Generator] = []
    logs = [workdir / f"generator-{n}-{i}.log" for i in range(procs)]
    try:
        first = 0
        for i, share in enumerate(shares):
            cfg = {"calls": share, "first": first, "token": token, "parallel": 4, "settle": 1.5,
                   "url": f"ws://{server.host}:{server.http_port}/ws/phone"}
            gens.append(Generator(cfg, logs[i]))
            first += share
        readies = [g.expect("ready", 60.0 + 3.0 * n) for g in gens]
        row.update({"connected": sum(r["connected"] for r in readies),
                    "setup_s": max(r["setup_s"] for r in readies),
                    "codecs": sorted({c for r in readies for c in r["codecs"]}),
                    "setup_errors": {k: v for r in readies for k, v in r["errors"].items()}})
        measured = dict(pids, **{f"generator{i}": g.proc.pid for i, g in enumerate(gens)})
        for g in gens:
            g.send("start")
        for g in gens:
            g.expect("started", 10.0)
        pct, wall, machine = sample_cpu(measured, seconds)
        rss = {"gateway_rss_mb": round(rss_mb(pids["gateway"]), 1),
               "generator_rss_mb": round(sum(rss_mb(g.proc.pid) for g in gens), 1)}
        for g in gens:
            g.send("stop")
        windows = [g.expect("per_call", 30.0) for g in gens]
        dones = [g.expect("done", 30.0 + 1.0 * n) for g in gens]
    except Exception as exc:
        row["error"] = f"{exc.__class__.__name__}: {exc}"
        row["server_alive"] = server.alive()
        row["generator_log_tail"] = [line for lp in logs if lp.exists()
                                     for line in lp.read_text(errors="replace").splitlines()[-10:]]
        return row
    finally:
        for g in gens:
            g.stop()
    connected = row["connected"]
    per = [p for w in windows for p in w["per_call"]]
    window_s = min(w["window_s"] for w in windows)
    expected = 1000.0 * window_s / 20.0
    echo_ok = [p for p in per if p["connected"] and p["frames"] >= 0.8 * expected
               and p["loud_frames"] >= 0.8 * p["frames"]
               and p["tone_checks"] and p["tone_ok"] >= 0.8 * p["tone_checks"]]
    frames = [p["frames"] for p in per if p["connected"]]
    peaks = sorted(p["peak_hz_median"] for p in per if p["peak_hz_median"] is not None)
    gw = pct["gateway"]
    gen_each = [pct[f"generator{i}"] for i in range(len(gens))]
    gen_pct = round(sum(gen_each), 2)
    media = sum(v for k, v in pct.items() if k.startswith("media"))
    late99 = [w["send_late_ms_p99"] for w in windows if w["send_late_ms_p99"] is not None]
    late50 = [w["send_late_ms_p50"] for w in windows if w["send_late_ms_p50"] is not None]
    latemax = [w["send_late_ms_max"] for w in windows if w["send_late_ms_max"] is not None]
    row.update({
        "window_s": round(wall, 2),
        "echo_ok_calls": len(echo_ok),
        "echo_ok_all": connected == n and len(echo_ok) == n,
        "frames_expected_per_call": round(expected),
        "frames_rx_per_call_min": min(frames) if frames else None,
        "frames_rx_per_call_mean": round(sum(frames) / len(frames), 1) if frames else None,
        "tone_frames_share": (round(sum(p["loud_frames"] for p in per) / max(1, sum(frames)), 3)
                              if frames else None),
        "echo_peak_hz_median": peaks[len(peaks) // 2] if peaks else None,
        "gateway_cpu_pct": gw,
        "gateway_cpu_pct_per_call": round(gw / connected, 2) if connected else None,
        "gateway_cpu_pct_per_call_marginal": (round((gw - idle_gateway_pct) / connected, 2)
                                              if connected else None),
        "main_cpu_pct": pct["main"],
        "media_worker_cpu_pct": round(media, 2),
        "voxlab_total_cpu_pct": round(gw + pct["main"] + media, 2),
        "voxlab_total_cpu_pct_per_call": (round((gw + pct["main"] + media) / connected, 2)
                                          if connected else None),
        "generator_cpu_pct": gen_pct,
        "generator_cpu_pct_each": gen_each,
        "generator_cpu_pct_per_call": round(gen_pct / connected, 2) if connected else None,
        "gateway_over_generator": round(gw / gen_pct, 2) if gen_pct > 0 else None,
        "machine_cpu_pct": machine,
        "other_cpu_pct": round(max(0.0, machine - gw - pct["main"] - media - gen_pct), 1),
        "send_late_ms_p50": max(late50) if late50 else None,
        "send_late_ms_p99": max(late99) if late99 else None,
        "send_late_ms_max": max(latemax) if latemax else None,
        **rss,
        "hung_up": sum(d["hung_up"] for d in dones), "ended": sum(d["ended"] for d in dones),
        "teardown_errors": {k: v for d in dones for k, v in d["errors"].items()
                            if k not in row["setup_errors"]},
    })
    row["generator_kept_pace"] = (max(gen_each) < GEN_BUSY_PCT
                                  and (row["send_late_ms_p99"] or 0) < LATE_MS_LIMIT)
    row["gateway_saturated"] = gw > GATEWAY_BUSY_PCT
    row["machine_busy"] = machine >= 0.9 * 100.0 * (os.cpu_count() or 1)
    row["gateway_alive"] = os.path.exists(f"/proc/{pids['gateway']}")
    row["server_alive"] = server.alive()
    return row


def machine_facts() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    commit = ""
    try:               # read, not run: the ref HEAD names (dirty state not known)
        git = BENCH_DIR.parent / ".git"
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            p = git / ref
            if p.exists():
                commit = p.read_text().strip()
            else:
                for line in (git / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        commit = line.split()[0]
        else:
            commit = head
    except OSError:
        pass
    import importlib.metadata as md
    versions = {}
    for pkg in ("aiortc", "aioice", "av", "pylibsrtp", "Twisted"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        import uvloop  # noqa: F401
        versions["uvloop"] = md.version("uvloop")
    except ImportError:
        versions["uvloop"] = None
    return {"cpus": os.cpu_count(), "nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit[:7] + (" (worktree state not checked)" if commit else ""),
            **versions, "loadavg_at_start": os.getloadavg()}


def _clean(row: dict) -> bool:
    return bool("error" not in row and row.get("echo_ok_all") and row.get("generator_kept_pace")
                and not row.get("gateway_saturated") and not row.get("machine_busy"))


def summarise(rows: list[dict], idle: float) -> dict:
    clean = [r for r in rows if _clean(r)]
    basis = max(clean, key=lambda r: r["calls"]) if clean else None
    if basis is None:
        return {"basis_calls": None, "why": "no clean row (see results)"}
    per = basis["gateway_cpu_pct_per_call"]
    marginal = basis["gateway_cpu_pct_per_call_marginal"]
    total = basis["voxlab_total_cpu_pct_per_call"]
    return {
        "basis_calls": basis["calls"],
        "gateway_cpu_pct_per_call": per,
        "gateway_cpu_pct_per_call_marginal": marginal,
        "gateway_idle_cpu_pct": idle,
        "calls_per_worker": math.floor(WORKER_BUDGET_PCT / per) if per > 0 else None,
        "calls_per_worker_marginal": (math.floor((WORKER_BUDGET_PCT - idle) / marginal)
                                      if marginal and marginal > 0 else None),
        "calls_per_core": math.floor(WORKER_BUDGET_PCT / per) if per > 0 else None,
        "voxlab_total_cpu_pct_per_call": total,
        "calls_per_core_all_voxlab": math.floor(WORKER_BUDGET_PCT / total) if total > 0 else None,
        "generator_cpu_pct_per_call": basis["generator_cpu_pct_per_call"],
        "gateway_over_generator": basis["gateway_over_generator"],
        "gateway_over_generator_by_row": {r["calls"]: r.get("gateway_over_generator")
                                          for r in rows if "error" not in r},
        "gateway_cpu_pct_per_call_by_row": {r["calls"]: r.get("gateway_cpu_pct_per_call")
                                            for r in rows if "error" not in r},
        "clean_rows": [r["calls"] for r in rows if _clean(r)],
        "largest_n_all_connected_and_echoed": max(
            (r["calls"] for r in rows if r.get("echo_ok_all")), default=None),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="1,5,10,20", help="comma-separated numbers of "
                    "simultaneous browser calls (escalation stops at the first unclean row)")
    ap.add_argument("--seconds", type=float, default=10.0, help="CPU sampling window per N")
    ap.add_argument("--procs", default="auto",
                    help="generator processes sharing the browsers (auto: one per "
                         f"{CALLS_PER_GEN} calls, at most 4; one asyncio loop sends late "
                         "beyond that even below 90 %% of a core)")
    ap.add_argument("--keep-going", action="store_true",
                    help="measure every N even after an unclean row")
    ap.add_argument("--out", default=str(RESULTS_DIR / "webrtc_calls.json"), help="result file")
    ap.add_argument("--generator", help=argparse.SUPPRESS)      # internal: the browsers
    args = ap.parse_args(argv)
    if args.generator:
        return generator_main(json.loads(args.generator))
    levels = [int(x) for x in args.calls.split(",") if x.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="voxlab-webrtc-"))
    machine = machine_facts()
    users = max(levels)
    config = workdir / "voxlab.toml"
    config.write_text("[users]\n" + "".join(f'u{i} = "{PASSWORD.format(i)}"\n'
                                            for i in range(1, users + 1)))
    t_run = time.monotonic()
    print(f"browser calls to echo through one WebRTC gateway worker, {args.seconds:g} s of "
          f"CPU per N (logs in {workdir})", flush=True)
    server = VoxlabServer(data_dir=workdir / "data", scenarios=SCENARIOS_DIR, config=config,
                          log_path=workdir / "server.log",
                          extra_args=("--webrtc-workers", "1", "--media-workers", "1"))
    rows: list[dict] = []
    info: dict = {}
    idle = 0.0
    try:
        server.start(timeout=40)
        if not server.wait_for_log(r"\[webrtc-0\] webrtc gateway worker 0 \(pid \d+\) up", 40):
            raise RuntimeError("the gateway worker did not come up\n" + server.describe(60))
        if not server.wait_for_log(r"web console and softphone: open", 20):
            raise RuntimeError("no web console line\n" + server.describe(60))
        log = server.log_text()
        gateway = int(re.search(r"WebRTC gateway worker 0 started \(pid (\d+)\)", log).group(1))
        media = [int(p) for p in re.findall(r"media worker \d+ started \(pid (\d+)", log)]
        token = (server.data_dir / "console.token").read_text().strip()
        pids = {"gateway": gateway, "main": server.pid,
                **{f"media{i}": p for i, p in enumerate(media)}}
        info = {"main_pid": server.pid, "gateway_pid": gateway, "media_worker_pids": media}
        time.sleep(1.0)
        idle_pct, _, idle_machine = sample_cpu(pids, 3.0)
        idle = idle_pct["gateway"]
        info["idle_cpu_pct"] = {**idle_pct, "machine": idle_machine}
        print(f"  idle: gateway {idle_pct['gateway']} %, main {idle_pct['main']} %, machine "
              f"{idle_machine} %", flush=True)
        for n in levels:
            if time.monotonic() - t_run > 240:
                print(f"  N={n}: skipped (time budget)", flush=True)
                break
            procs = (min(4, max(1, math.ceil(n / CALLS_PER_GEN))) if args.procs == "auto"
                     else int(args.procs))
            row = run_level(server, pids, token, n, args.seconds, workdir, idle, procs)
            rows.append(row)
            if "error" in row:
                print(f"  N={n}: ERROR {row['error']}", flush=True)
            else:
                print(f"  N={n} ({row['generator_procs']} gen): {row['connected']}/{n} connected, echo ok {row['echo_ok_calls']}, "
                      f"gateway {row['gateway_cpu_pct']} % ({row['gateway_cpu_pct_per_call']} %/call), "
                      f"main {row['main_cpu_pct']} %, media {row['media_worker_cpu_pct']} %, "
                      f"generator {row['generator_cpu_pct']} % ({row['generator_cpu_pct_per_call']} "
                      f"%/call, late p99 {row['send_late_ms_p99']} ms), machine "
                      f"{row['machine_cpu_pct']} % (other {row['other_cpu_pct']} %)", flush=True)
            clean = _clean(row)
            if not row.get("server_alive", True) or not os.path.exists(f"/proc/{gateway}"):
                print("  the server or its gateway worker is gone: stopping", flush=True)
                break
            if not clean and not args.keep_going:
                print("  stopping the escalation here (unclean row)", flush=True)
                break
            time.sleep(2.0)        # let the phones' un-REGISTERs and closes settle
        info["gateway_restarted"] = not os.path.exists(f"/proc/{gateway}") or bool(
            re.search(r"WebRTC gateway worker 0 started \(pid (?!%d\))" % gateway, server.log_text()))
        info["server_alive_at_end"] = server.alive()
    except Exception as exc:
        info["error"] = f"{exc.__class__.__name__}: {exc}"
        print(f"ERROR: {info['error']}", flush=True)
    finally:
        server.stop()
    summary = summarise(rows, idle)
    data = {
        "benchmark": "webrtc_calls",
        "description": "N simultaneous browser calls (aiortc peers over /ws/phone, 1 kHz tone, "
                       "G.711) to voxlab's echo scenario through one WebRTC gateway worker",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "shared_machine": f"{os.cpu_count()} cores shared by the load generator and the "
                          "server (gateway worker, main process, media worker)",
        "seconds": args.seconds,
        "levels_asked": levels,
        "server": {"webrtc_workers": 1, "media_workers": 1, "scenario": "echo (bench/scenarios)",
                   **info},
        "generator": "asyncio process(es), --procs (auto: one per 10 browsers): aiortc RTCPeerConnection per browser (no ICE "
                     "servers, host candidates 127.0.0.1), websocket-client for /ws/phone, "
                     "8 kHz 1 kHz tone in paced 20 ms frames, PCMU then PCMA offered",
        "results": rows,
        "summary": summary,
        "notes": [
            "CPU = utime+stime delta from /proc/PID/stat over the window, 100 % = one core. "
            "gateway = the WebRTC gateway worker process; main = voxlab's main process "
            "(SIP, sessions, the /ws/phone relay); media = the media worker.",
            "gateway_cpu_pct_per_call = gateway CPU / connected calls (its idle cost "
            "included); _marginal subtracts the gateway's idle CPU (measured before the "
            "first N) first.",
            f"calls_per_worker = floor({WORKER_BUDGET_PCT:g} / gateway_cpu_pct_per_call): one "
            "worker is one process, at most one core. calls_per_core is the same figure; "
            "calls_per_core_all_voxlab uses the whole server's CPU per browser call "
            "(gateway + main + media worker).",
            "generator_cpu_pct: the generator process(es) together (same aiortc stack at the browser "
            "end, plus the tone check); gateway_over_generator = gateway CPU / generator "
            "CPU in the same window: the same-run reference.",
            "echo_ok: a call received >= 80 % of the frames expected in the window, >= 80 % "
            "of them loud (RMS >= 2000) and >= 80 % of the FFT checks (one frame in "
            f"{CHECK_EVERY}) peaked within 60 Hz of 1 kHz.",
            f"generator_kept_pace is false when the generator used >= {GEN_BUSY_PCT:g} % of a "
            f"core or its p99 send lateness reached {LATE_MS_LIMIT:g} ms: then the row "
            "measures the machine, not voxlab. gateway_saturated: gateway above "
            f"{GATEWAY_BUSY_PCT:g} % of its core. machine_busy: the whole machine at >= 90 % "
            "of all its cores (the gateway may then wait for a core).",
            "summary uses the largest row with every call connected and echoed, the "
            "generator keeping pace and the gateway below saturation.",
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print()
    print_table(rows, [("calls", "N", "{}"), ("connected", "up", "{}"),
                       ("echo_ok_calls", "echo ok", "{}"),
                       ("gateway_cpu_pct", "gateway %", "{}"),
                       ("gateway_cpu_pct_per_call", "gw %/call", "{}"),
                       ("main_cpu_pct", "main %", "{}"),
                       ("media_worker_cpu_pct", "media %", "{}"),
                       ("generator_cpu_pct", "gen %", "{}"),
                       ("generator_cpu_pct_per_call", "gen %/call", "{}"),
                       ("gateway_over_generator", "gw/gen", "{}"),
                       ("machine_cpu_pct", "machine %", "{}"),
                       ("send_late_ms_p99", "late p99", "{}"),
                       ("generator_kept_pace", "gen ok", "{}"),
                       ("gateway_saturated", "gw sat", "{}"),
                       ("machine_busy", "busy", "{}")])
    print("\nsummary: " + json.dumps(summary))
    print(f"results: {out}")
    return 0 if rows and "error" not in info else 1


if __name__ == "__main__":
    sys.exit(main())
