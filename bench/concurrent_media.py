#!/usr/bin/env python3
"""Concurrent-media benchmark: N simultaneous ``echo`` calls carrying RTP.

For each N: start a fresh voxlab (bench/scenarios/, ``echo``), set up N calls
from load-generator processes (non-blocking SIP over UDP, a window of
outstanding INVITEs), then every call sends 50 RTP packets/s (20 ms PCMU)
for --duration seconds.  Each payload carries (stream, sequence, send time);
the echoed packets give loss and the round-trip time through voxlab (p50/p99,
as seen by the load process, so it includes the load generator's own
scheduling delay).  Server CPU from /proc/<pid>/stat over the media phase.

This machine is small: the load generator competes with the server for the
same cores.  The output lists the load generator's own CPU and how late it
sent packets (p99 send lateness), so a run where the *generator* could not
keep up is visible as such rather than blamed on the server.

    python bench/concurrent_media.py                        # N = 50,100,250,500,1000
    python bench/concurrent_media.py --calls 50,100 --duration 5 --procs 1
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import re
import resource
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import (SCENARIOS_DIR, CpuMeter, SystemCpu, VoxlabServer,  # noqa: E402
                    machine_info, print_table, rss_mb, write_results)

from tests.peers.sipua import (SipMessage, new_branch, parse_sdp,  # noqa: E402
                               sdp_offer)

PTIME = 0.020
MAGIC = 0xB1
_FIELDS = struct.Struct("!BIIQ")     # magic, stream, seq, send time (ns, monotonic)
PAYLOAD_LEN = 160
_NIB = bytes(range(0x10, 0x20))      # mu-law codes that survive decode/encode unchanged


def encode_marker(stream: int, seq: int, t_ns: int) -> bytes:
    raw = _FIELDS.pack(MAGIC, stream, seq, t_ns)
    out = bytearray(2 * len(raw))
    for i, b in enumerate(raw):
        out[2 * i] = 0x10 | (b >> 4)
        out[2 * i + 1] = 0x10 | (b & 0x0F)
    return bytes(out) + b"\xff" * (PAYLOAD_LEN - len(out))


def decode_marker(payload: bytes) -> tuple[int, int, int] | None:
    n = 2 * _FIELDS.size
    if len(payload) < n:
        return None
    head = payload[:n]
    raw = bytearray(_FIELDS.size)
    for i in range(_FIELDS.size):
        hi, lo = head[2 * i], head[2 * i + 1]
        if hi & 0xF0 != 0x10 or lo & 0xF0 != 0x10:
            return None
        raw[i] = ((hi & 0x0F) << 4) | (lo & 0x0F)
    magic, stream, seq, t_ns = _FIELDS.unpack(raw)
    if magic != MAGIC:
        return None
    return stream, seq, t_ns


# --------------------------------------------------------------------------
# load generator process
# --------------------------------------------------------------------------

class _Leg:
    __slots__ = ("idx", "call_id", "tag", "branch", "sock", "port", "remote", "state",
                 "invite", "sent_at", "tries", "remote_tag", "target", "ack", "bye_branch",
                 "bye", "bye_sent_at", "bye_tries", "status", "sent", "received", "seq",
                 "rtp_seq", "ts", "ssrc")

    def __init__(self, idx: int):
        self.idx = idx
        self.call_id = "%016x@bench" % random.getrandbits(64)
        self.tag = "%08x" % random.getrandbits(32)
        self.branch = new_branch()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.remote = None
        self.state = "new"
        self.invite = b""
        self.sent_at = 0.0
        self.tries = 0
        self.remote_tag = ""
        self.target = ""
        self.ack = b""
        self.bye_branch = ""
        self.bye = b""
        self.bye_sent_at = 0.0
        self.bye_tries = 0
        self.status = 0
        self.sent = 0
        self.received = 0
        self.seq = 0
        self.rtp_seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.ssrc = random.getrandbits(32)


class LoadGen:
    def __init__(self, host: str, port: int, n: int, first_idx: int, window: int = 50):
        self.host, self.port = host, port
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.setblocking(False)
        self.sip.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.lport = self.sip.getsockname()[1]
        self.legs = [_Leg(first_idx + i) for i in range(n)]
        self.by_callid = {l.call_id: l for l in self.legs}
        self.window = window

    # -- SIP text
    def _hdrs(self, leg: _Leg, method: str, cseq: int, branch: str, to_tag: str = "") -> list:
        to = f"<sip:echo@{self.host}:{self.port}>" + (f";tag={to_tag}" if to_tag else "")
        return [("Via", f"SIP/2.0/UDP 127.0.0.1:{self.lport};branch={branch};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:bench@127.0.0.1:{self.lport}>;tag={leg.tag}"),
                ("To", to), ("Call-ID", leg.call_id), ("CSeq", f"{cseq} {method}")]

    def _invite(self, leg: _Leg) -> bytes:
        h = self._hdrs(leg, "INVITE", 1, leg.branch)
        h += [("Contact", f"<sip:bench@127.0.0.1:{self.lport}>"),
              ("Content-Type", "application/sdp")]
        body = sdp_offer("127.0.0.1", leg.port, ("PCMU",), None)
        return SipMessage(f"INVITE sip:echo@{self.host}:{self.port} SIP/2.0", h, body).to_bytes()

    def _send(self, data: bytes, addr=None) -> None:
        try:
            self.sip.sendto(data, addr or (self.host, self.port))
        except BlockingIOError:
            select.select([], [self.sip], [], 0.05)
            self.sip.sendto(data, addr or (self.host, self.port))

    def _reply(self, req: SipMessage, addr) -> None:
        hdrs = [("Via", v) for v in req.get_all("Via")]
        hdrs += [(k, req[k]) for k in ("From", "To", "Call-ID", "CSeq") if k in req]
        self._send(SipMessage("SIP/2.0 200 OK", hdrs).to_bytes(), addr)

    def _handle_sip(self, data: bytes, addr) -> None:
        try:
            msg = SipMessage.parse(data)
            leg = self.by_callid.get(msg.call_id)
        except Exception:
            return
        if leg is None:
            return
        if msg.is_request:
            if msg.method == "BYE":
                leg.state = "remote-bye"
            if msg.method != "ACK":
                self._reply(msg, addr)
            return
        status, (_, method) = msg.status, msg.cseq
        if method == "INVITE":
            if status < 200:
                if leg.state == "inviting":
                    leg.state = "early"
                return
            if leg.state in ("up", "bye", "done"):
                if 200 <= status < 300 and leg.ack:
                    self._send(leg.ack)          # 2xx retransmission: ACK again
                return
            leg.status = status
            if status >= 300:
                leg.state = "failed"
                h = self._hdrs(leg, "ACK", 1, leg.branch)
                h[3] = ("To", msg["To"])
                self._send(SipMessage(f"ACK sip:echo@{self.host}:{self.port} SIP/2.0",
                                      h).to_bytes())
                return
            leg.remote_tag = msg.tag("To")
            contact = msg.get_all("Contact")
            m = re.search(r"<([^>]*)>", contact[0]) if contact else None
            leg.target = (m.group(1) if m else contact[0]) if contact else \
                f"sip:echo@{self.host}:{self.port}"
            sdp = parse_sdp(msg.body)
            if sdp is None:
                leg.state = "failed"
                return
            leg.remote = (sdp.ip, sdp.port)
            leg.ack = SipMessage(f"ACK {leg.target} SIP/2.0",
                                 self._hdrs(leg, "ACK", 1, new_branch(), leg.remote_tag)
                                 ).to_bytes()
            self._send(leg.ack)
            leg.state = "up"
        elif method == "BYE" and status >= 200:
            leg.state = "done"

    def _pump_sip(self, timeout: float) -> None:
        r, _, _ = select.select([self.sip], [], [], timeout)
        if not r:
            return
        while True:
            try:
                data, addr = self.sip.recvfrom(65535)
            except BlockingIOError:
                return
            self._handle_sip(data, addr)

    def setup(self, deadline_s: float = 60.0) -> dict:
        t0 = time.monotonic()
        pending = list(self.legs)
        pending.reverse()
        while time.monotonic() - t0 < deadline_s:
            inflight = [l for l in self.legs if l.state in ("inviting", "early")]
            while pending and len(inflight) < self.window:
                leg = pending.pop()
                leg.invite = self._invite(leg)
                self._send(leg.invite)
                leg.state, leg.sent_at, leg.tries = "inviting", time.monotonic(), 1
                inflight.append(leg)
            if not pending and not inflight:
                break
            self._pump_sip(0.01)
            now = time.monotonic()
            for leg in inflight:
                if leg.state == "inviting" and now - leg.sent_at > 0.5 * 2 ** (leg.tries - 1):
                    if leg.tries >= 6:
                        leg.state = "failed"
                        leg.status = 408
                    else:
                        self._send(leg.invite)
                        leg.tries += 1
                        leg.sent_at = now
                elif leg.state == "early" and now - leg.sent_at > 30:
                    leg.state, leg.status = "failed", 408
        elapsed = time.monotonic() - t0
        up = sum(1 for l in self.legs if l.state == "up")
        statuses: dict[str, int] = {}
        for l in self.legs:
            if l.state != "up":
                key = str(l.status or l.state)
                statuses[key] = statuses.get(key, 0) + 1
        return {"up": up, "failed": len(self.legs) - up, "failures": statuses,
                "setup_s": elapsed}

    def setup_direct(self, ports: list[int]) -> dict:
        """No SIP: stream i goes to 127.0.0.1:ports[i] (the bare echo reference)."""
        for leg, port in zip(self.legs, ports):
            leg.remote = ("127.0.0.1", port)
            leg.state = "up"
        return {"up": len(self.legs), "failed": 0, "failures": {}, "setup_s": 0.0}

    def media(self, t_start_ns: int, duration: float, drain: float = 1.0) -> dict:
        legs = [l for l in self.legs if l.state == "up"]
        n = len(legs)
        fd_leg = {l.sock.fileno(): l for l in legs}
        ep = select.epoll()
        for fd in fd_leg:
            ep.register(fd, select.EPOLLIN)
        # spread the streams over the 20 ms period
        period_ns = int(PTIME * 1e9)
        offsets = [int(period_ns * i / max(1, n)) for i in range(n)]
        ticks = int(round(duration / PTIME))
        lat = np.empty(max(1, n * ticks * 2), dtype=np.float32)
        n_lat = 0
        late = np.empty(max(1, n * ticks), dtype=np.float32)
        n_late = 0
        dup = bad = 0
        seen: list[set] = [set() for _ in range(n)]
        slot_of = {l.idx: i for i, l in enumerate(legs)}
        clock = time.monotonic_ns
        pack_hdr = struct.Struct("!BBHII").pack
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        # the schedule: (tick, stream slot) in due order
        k = 0
        i = 0
        end_ns = t_start_ns + ticks * period_ns + int(drain * 1e9)
        while True:
            now = clock()
            # send everything due
            while k < ticks:
                due = t_start_ns + k * period_ns + offsets[i]
                if due > now:
                    break
                leg = legs[i]
                payload = encode_marker(leg.idx, leg.seq, now)
                pkt = pack_hdr(0x80, 0, leg.rtp_seq, leg.ts, leg.ssrc) + payload
                try:
                    leg.sock.sendto(pkt, leg.remote)
                    leg.sent += 1
                except OSError:
                    pass
                leg.seq += 1
                leg.rtp_seq = (leg.rtp_seq + 1) & 0xFFFF
                leg.ts = (leg.ts + 160) & 0xFFFFFFFF
                late[n_late] = (now - due) / 1e6
                n_late += 1
                i += 1
                if i == n:
                    i = 0
                    k += 1
                now = clock()
            if k >= ticks and now >= end_ns:
                break
            if k < ticks:
                nxt = t_start_ns + k * period_ns + offsets[i]
                wait = max(0.0, (nxt - now) / 1e9)
            else:
                wait = max(0.0, (end_ns - now) / 1e9)
            for fd, _ in ep.poll(min(wait, 0.05)):
                leg = fd_leg[fd]
                sock = leg.sock
                while True:
                    try:
                        data = sock.recv(2048)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    t = clock()
                    mk = decode_marker(data[12:]) if len(data) > 12 + 36 else None
                    if mk is None:
                        bad += 1
                        continue
                    stream, seq, t_ns = mk
                    s = slot_of.get(stream)
                    if s is None:
                        bad += 1
                        continue
                    if seq in seen[s]:
                        dup += 1
                        continue
                    seen[s].add(seq)
                    legs[s].received += 1
                    if n_lat < len(lat):
                        lat[n_lat] = (t - t_ns) / 1e6
                        n_lat += 1
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        ep.close()
        return {
            "streams": n,
            "sent": int(sum(l.sent for l in legs)),
            "received": int(sum(l.received for l in legs)),
            "per_stream_loss": [1 - l.received / l.sent if l.sent else 1.0 for l in legs],
            # a sample of which packets went missing: (stream, seq) of the first 20
            "lost_sample": [(l.idx, q) for s_, l in enumerate(legs)
                            for q in range(l.seq) if q not in seen[s_]][:20],
            "latency_ms": lat[:n_lat],
            "send_late_ms": late[:n_late],
            "duplicates": dup,
            "unrecognised": bad,
            "cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        }

    def media_c(self, binary: str, t_start_ns: int, duration: float, drain: float = 1.0) -> dict:
        """media() done by bench/rtpgen.c: the same packets and schedule, the sockets
        handed over as inherited descriptors, the same result dict."""
        legs = [l for l in self.legs if l.state == "up"]
        n = len(legs)
        ticks = int(round(duration / PTIME))
        spec = [f"{t_start_ns} {ticks} {int(drain * 1e9)} {n}"]
        for l in legs:
            spec.append(f"{l.sock.fileno()} {l.remote[0]} {l.remote[1]} {l.idx} {l.rtp_seq} "
                        f"{l.ts} {l.ssrc}")
        with tempfile.TemporaryDirectory(prefix="rtpgen-") as td:
            lat_f, late_f = os.path.join(td, "lat"), os.path.join(td, "late")
            out = subprocess.run([binary, lat_f, late_f], input="\n".join(spec) + "\n",
                                 capture_output=True, text=True,
                                 pass_fds=[l.sock.fileno() for l in legs],
                                 timeout=duration + drain + 120)
            if out.returncode != 0:
                raise RuntimeError(f"rtpgen exited {out.returncode}: {out.stderr[-500:]}")
            lat = np.fromfile(lat_f, dtype=np.float32)
            late = np.fromfile(late_f, dtype=np.float32)
        lines = out.stdout.splitlines()
        sent, received, dup, bad, cpu = lines[0].split()
        per = [tuple(int(x) for x in ln.split()) for ln in lines[1:1 + n]]
        for l, (s_, r_) in zip(legs, per):
            l.sent, l.received, l.seq = s_, r_, ticks
        return {
            "streams": n,
            "sent": int(sent),
            "received": int(received),
            "per_stream_loss": [1 - r_ / s_ if s_ else 1.0 for s_, r_ in per],
            "lost_sample": [tuple(int(x) for x in ln.split()) for ln in lines[1 + n:]][:20],
            "latency_ms": lat,
            "send_late_ms": late,
            "duplicates": int(dup),
            "unrecognised": int(bad),
            "cpu_s": float(cpu),
        }

    def hangup(self, deadline_s: float = 30.0) -> dict:
        t0 = time.monotonic()
        todo = [l for l in self.legs if l.state == "up"]
        todo.reverse()
        while time.monotonic() - t0 < deadline_s:
            inflight = [l for l in self.legs if l.state == "bye"]
            while todo and len(inflight) < self.window:
                leg = todo.pop()
                leg.bye_branch = new_branch()
                leg.bye = SipMessage(f"BYE {leg.target} SIP/2.0",
                                     self._hdrs(leg, "BYE", 2, leg.bye_branch, leg.remote_tag)
                                     ).to_bytes()
                self._send(leg.bye)
                leg.state, leg.bye_sent_at, leg.bye_tries = "bye", time.monotonic(), 1
                inflight.append(leg)
            if not todo and not inflight:
                break
            self._pump_sip(0.01)
            now = time.monotonic()
            for leg in inflight:
                if leg.state == "bye" and now - leg.bye_sent_at > 0.5 * 2 ** (leg.bye_tries - 1):
                    if leg.bye_tries >= 6:
                        leg.state = "bye-timeout"
                    else:
                        self._send(leg.bye)
                        leg.bye_tries += 1
                        leg.bye_sent_at = now
        done = sum(1 for l in self.legs if l.state == "done")
        remote = sum(1 for l in self.legs if l.state == "remote-bye")
        return {"bye_ok": done, "remote_bye": remote,
                "bye_failed": sum(1 for l in self.legs if l.state in ("bye", "bye-timeout"))}

    def close(self) -> None:
        for l in self.legs:
            l.sock.close()
        self.sip.close()


def worker(host, port, n, first_idx, window, duration, ready_q, start_ev, start_val, out_q,
           direct_ports=None, rtpgen=None):
    try:
        gen = LoadGen(host, port, n, first_idx, window)
        setup = gen.setup() if direct_ports is None else gen.setup_direct(direct_ports)
        ready_q.put(setup)
        if not start_ev.wait(300):
            out_q.put({"error": "no start signal"})
            return
        media = (gen.media_c(rtpgen, int(start_val.value), duration) if rtpgen
                 else gen.media(int(start_val.value), duration))
        bye = gen.hangup() if direct_ports is None else {"bye_ok": 0, "remote_bye": 0,
                                                         "bye_failed": 0}
        gen.close()
        media["latency_ms"] = media["latency_ms"].tobytes()
        media["send_late_ms"] = media["send_late_ms"].tobytes()
        out_q.put({"setup": setup, "media": media, "bye": bye})
    except Exception as exc:   # report, don't hang the parent
        import traceback
        ready_q.put({"error": repr(exc), "traceback": traceback.format_exc()})
        out_q.put({"error": repr(exc), "traceback": traceback.format_exc()})


# --------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the media workers of a voxlab server), from
    /proc/<pid>/task/*/children, else by scanning /proc/*/stat for the ppid."""
    kids: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids.update(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    if not kids:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                kids.add(int(d))
    return sorted(kids)


def legs_per_worker(data_dir: Path) -> tuple[dict, dict]:
    """({worker index: live calls}, {worker index: pid}) from
    ``voxlab sessions --json --data-dir DIR`` (each call carries media_worker)."""
    exe = Path(sys.executable).with_name("voxlab")
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-c",
                                               "from voxlab.cli import main; main()"])
    out = subprocess.run(cmd + ["sessions", "--json", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"voxlab sessions: {out.stderr.strip()[-300:]}")
    counts: dict[int, int] = {}
    pids: dict[int, int] = {}

    def walk(o):
        if isinstance(o, dict):
            mw = o.get("media_worker")
            if isinstance(mw, dict) and "index" in mw and not o.get("end_reason"):
                counts[mw["index"]] = counts.get(mw["index"], 0) + 1
                pids[mw["index"]] = mw.get("pid")
            for v in o.values():
                if isinstance(v, (dict, list)):
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(json.loads(out.stdout))
    return dict(sorted(counts.items())), dict(sorted(pids.items()))


def _pct(a: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(a, q)), 2) if a.size else None


def _read_meters(meters: dict) -> dict:
    """{pid: cpu seconds since start} of the meters whose process is still there."""
    out = {}
    for pid, m in meters.items():
        try:
            out[pid] = m.read()[0]
        except (OSError, ValueError):
            pass
    return out


class BareEcho:
    """bench/bare_echo.py as a subprocess, with the VoxlabServer bits run_n uses."""

    host = "127.0.0.1"
    sip_port = 0

    def __init__(self, n: int, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_echo.py")),
                                      str(n)], stdout=subprocess.PIPE, stderr=self._log)
        line = self.proc.stdout.readline()
        self.ports = json.loads(line)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def build_rtpgen(workdir: Path) -> str | None:
    """Compile bench/rtpgen.c with the system cc into workdir; its path, or None."""
    src = Path(__file__).with_name("rtpgen.c")
    exe = workdir / "rtpgen"
    try:
        r = subprocess.run(["cc", "-O2", "-o", str(exe), str(src)], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"rtpgen: cc failed ({exc}); using the Python generator", file=sys.stderr)
        return None
    if r.returncode != 0:
        print(f"rtpgen: cc failed:\n{r.stderr}\nusing the Python generator", file=sys.stderr)
        return None
    return str(exe)


def run_n(n: int, procs: int, duration: float, window: int, log_level: str,
          workdir: Path, target: str = "voxlab", media_workers: int | None = None,
          rtpgen: str | None = None) -> dict:
    """One run of N echo calls."""
    if target == "bare":
        server = BareEcho(n, workdir / f"bare-{n}.log")
    else:
        tag = f"{n}-w{media_workers}" if media_workers else f"{n}"
        extra = ("--media-workers", str(media_workers)) if media_workers else ()
        server = VoxlabServer(data_dir=workdir / f"data-{tag}", scenarios=SCENARIOS_DIR,
                              log_path=workdir / f"server-{tag}.log", log_level=log_level,
                              rtp_ports=max(200, 2 * n + 100), extra_args=extra)
        server.start(timeout=30)
    ctx = mp.get_context("fork")
    ready_q, out_q = ctx.Queue(), ctx.Queue()
    start_ev = ctx.Event()
    start_val = ctx.Value("q", 0)
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    workers = []
    first = 0
    t_setup = time.monotonic()
    setup_cpu = CpuMeter(server.pid)
    row: dict = {"target": target, "calls": n, "procs": procs, "duration_s": duration,
                 "generator": "c" if rtpgen else "python"}
    if target == "voxlab":
        row["media_workers"] = media_workers
    wpids: list[int] = []
    try:
        for i, share in enumerate(shares):
            direct = server.ports[first:first + share] if target == "bare" else None
            p = ctx.Process(target=worker, args=(server.host, server.sip_port, share, first,
                                                 window, duration, ready_q, start_ev,
                                                 start_val, out_q, direct, rtpgen),
                            daemon=True)
            p.start()
            workers.append(p)
            first += share
        setups = [ready_q.get(timeout=180) for _ in workers]
        errors = [s for s in setups if "error" in s]
        if errors:
            raise RuntimeError(f"load generator failed: {errors[0]}")
        setup_wall = time.monotonic() - t_setup
        setup_cpu_s, _ = setup_cpu.read()
        up = sum(s["up"] for s in setups)
        failures: dict[str, int] = {}
        for s in setups:
            for k, v in s["failures"].items():
                failures[k] = failures.get(k, 0) + v
        row.update({"calls_up": up, "setup_failures": failures,
                    "setup_s": round(setup_wall, 2),
                    "setup_cps": round(up / setup_wall, 1) if setup_wall else None,
                    "server_cpu_setup_pct": round(100 * setup_cpu_s / setup_wall, 1)})
        if target == "voxlab":
            wpids = child_pids(server.pid)
            row["worker_pids"] = wpids
            try:
                counts, by_index = legs_per_worker(server.data_dir)
                row["legs_per_worker"] = counts
                row["worker_pid_by_index"] = by_index
                # list the workers in index order, so worker_cpu_pct lines up with it
                ordered = [p for _, p in sorted(by_index.items()) if p in wpids]
                wpids = ordered + [p for p in wpids if p not in ordered]
                row["worker_pids"] = wpids
            except Exception as exc:          # the split then comes from CPU share only
                row["legs_per_worker_error"] = str(exc)
        # media phase
        time.sleep(0.5)                     # let every ACK land
        start_ns = time.monotonic_ns() + int(0.3e9)
        start_val.value = start_ns
        meter = None
        start_ev.set()
        while time.monotonic_ns() < start_ns:
            time.sleep(0.001)
        meter = CpuMeter(server.pid)
        wmeters = {}
        for wp in wpids:
            try:
                wmeters[wp] = CpuMeter(wp)
            except OSError:
                pass
        system = SystemCpu()
        rss0 = rss_mb(server.pid)
        rss_peak = rss0
        results = []
        media_end = time.monotonic() + duration
        cpu_media = None
        while len(results) < len(workers):
            if cpu_media is None and time.monotonic() >= media_end:
                cpu_media = meter.read()
                wcpu_media = _read_meters(wmeters)
                sys_media = system.read()
            rss_peak = max(rss_peak, rss_mb(server.pid))
            try:
                results.append(out_q.get(timeout=0.2))
            except Exception:
                if not any(p.is_alive() for p in workers) and out_q.empty():
                    break
        if cpu_media is None:
            cpu_media = meter.read()
            wcpu_media = _read_meters(wmeters)
            sys_media = system.read()
        errs = [r for r in results if "error" in r]
        if errs:
            raise RuntimeError(f"load generator failed: {errs[0]}")
        lat = np.concatenate([np.frombuffer(r["media"]["latency_ms"], np.float32)
                              for r in results]) if results else np.zeros(0, np.float32)
        late = np.concatenate([np.frombuffer(r["media"]["send_late_ms"], np.float32)
                               for r in results]) if results else np.zeros(0, np.float32)
        sent = sum(r["media"]["sent"] for r in results)
        received = sum(r["media"]["received"] for r in results)
        per_stream = [x for r in results for x in r["media"]["per_stream_loss"]]
        gen_cpu = sum(r["media"]["cpu_s"] for r in results)
        cpu_s, wall = cpu_media
        row.update({
            "packets_sent": sent,
            "packets_received": received,
            "pps_offered": round(sent / duration, 0),
            "loss_pct": round(100 * (1 - received / sent), 3) if sent else None,
            "streams_with_loss_over_1pct": sum(1 for x in per_stream if x > 0.01),
            "worst_stream_loss_pct": round(100 * max(per_stream), 2) if per_stream else None,
            "rtt_ms_p50": _pct(lat, 50), "rtt_ms_p90": _pct(lat, 90),
            "rtt_ms_p99": _pct(lat, 99), "rtt_ms_max": round(float(lat.max()), 2) if lat.size else None,
            "send_late_ms_p50": _pct(late, 50), "send_late_ms_p99": _pct(late, 99),
            "duplicates": sum(r["media"]["duplicates"] for r in results),
            "unrecognised_packets": sum(r["media"]["unrecognised"] for r in results),
            "server_cpu_pct": round(100 * cpu_s / wall, 1),
            "loadgen_cpu_pct": round(100 * gen_cpu / (duration + 1.0), 1),
            # the whole machine over the media phase, and what was neither voxlab
            # nor the load generator (other jobs, kernel softirq for loopback)
            "machine_cpu_pct": round(100 * sys_media[0] / sys_media[1], 1),
            "other_cpu_pct": round(max(0.0, 100 * sys_media[0] / sys_media[1]
                                       - 100 * cpu_s / wall
                                       - 100 * sum(wcpu_media.values()) / wall
                                       - 100 * gen_cpu / (duration + 1.0)), 1),
            "server_rss_mb": round(rss_peak, 1),
            "bye_ok": sum(r["bye"]["bye_ok"] for r in results),
            "bye_failed": sum(r["bye"]["bye_failed"] for r in results),
            "remote_bye": sum(r["bye"]["remote_bye"] for r in results),
        })
        # the media workers (voxlab): CPU of each, the total, and the split of legs
        worker_pct = [round(100 * wcpu_media[p] / wall, 1) for p in wpids if p in wcpu_media]
        row["main_cpu_pct"] = row["server_cpu_pct"]
        if target == "voxlab":
            row["worker_cpu_pct"] = worker_pct
            row["workers_alive_after"] = [p for p in wpids if os.path.exists(f"/proc/{p}")]
        row["total_cpu_pct"] = round(row["server_cpu_pct"] + sum(worker_pct), 1)
        row["cpu_ms_per_leg_s"] = (round(10 * row["total_cpu_pct"] / up, 3) if up else None)
        if target == "voxlab" and worker_pct and sum(worker_pct) > 0:
            row["worker_cpu_share"] = [round(x / sum(worker_pct), 3) for x in worker_pct]
        row["generator_kept_pace"] = (row["send_late_ms_p99"] or 0) < 10.0
        row["server_alive"] = server.alive()
    except Exception as exc:
        row["error"] = str(exc)
        row["server_alive"] = server.alive()
        row["server_log_tail"] = server.log_text().splitlines()[-30:]
    finally:
        for p in workers:
            p.join(5)
            if p.is_alive():
                p.kill()
        server.stop()
    return row


def add_latency_over_reference(rows: list[dict]) -> None:
    """Latency voxlab adds: its round trip minus the bare echo's under the same
    load (same N, same generator processes), per percentile. The bare echo's
    round trip is the loopback plus the generator's own scheduling delay, which
    voxlab's rows carry too."""
    bare = {r["calls"]: r for r in rows if r.get("target") == "bare" and "error" not in r}
    for row in rows:
        ref = bare.get(row.get("calls"))
        if row.get("target") != "voxlab" or ref is None or "error" in row:
            continue
        for q in ("p50", "p99"):
            ours, floor = row.get(f"rtt_ms_{q}"), ref.get(f"rtt_ms_{q}")
            if ours is not None and floor is not None:
                row[f"added_latency_ms_{q}"] = round(max(0.0, ours - floor), 2)
        # CPU per leg (main + every media worker) over the bare echo's CPU per leg
        if row.get("cpu_ms_per_leg_s") and ref.get("cpu_ms_per_leg_s"):
            row["cpu_per_leg_vs_bare"] = round(row["cpu_ms_per_leg_s"] / ref["cpu_ms_per_leg_s"], 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="50,100,250,500,1000",
                    help="comma-separated numbers of simultaneous calls")
    ap.add_argument("--duration", type=float, default=10.0, help="media seconds per N")
    ap.add_argument("--procs", default="auto",
                    help="load-generator processes (auto: one per 250 calls, max 4)")
    ap.add_argument("--window", type=int, default=50, help="outstanding INVITEs per process")
    ap.add_argument("--log-level", default="info", help="server log level")
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                    help="after each N, run the same load against bench/bare_echo.py (a bare "
                         "Twisted UDP echo, one socket per stream): the floor that added "
                         "latency is measured against (default on; --no-reference skips it)")
    ap.add_argument("--media-workers", default="1,2",
                    help="comma-separated media worker counts (voxlab --media-workers); each N "
                         "is measured with each count (default 1,2)")
    ap.add_argument("--generator", choices=("c", "python"), default="c",
                    help="media phase of the load generator: c = bench/rtpgen.c built with "
                         "the system cc at start (falls back to python when cc fails), "
                         "python = the in-process Python loop (default c)")
    ap.add_argument("--out", help="result file (default bench/results/concurrent_media-DATE.json)")
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.calls.split(",") if x.strip()]
    wcounts = [int(x) for x in args.media_workers.split(",") if x.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="voxlab-media-"))
    rows = []
    rtpgen = build_rtpgen(workdir) if args.generator == "c" else None
    print(f"N simultaneous echo calls, 50 pps each, {args.duration:g} s of media per N "
          f"(logs in {workdir})", flush=True)
    for n in ns:
        procs = (min(4, max(1, math.ceil(n / 250))) if args.procs == "auto"
                 else int(args.procs))
        runs = [("voxlab", w) for w in wcounts] + ([("bare", None)] if args.reference else [])
        for target, w in runs:
            row = run_n(n, procs, args.duration, args.window, args.log_level, workdir, target, w,
                        rtpgen)
            rows.append(row)
            label = f"{target}{'/' + str(w) + 'w' if w else ''}"
            if "error" in row:
                print(f"  {label} N={n}: ERROR {row['error']}", flush=True)
            else:
                wk = (f" + workers {row.get('worker_cpu_pct')} % (legs "
                      f"{row.get('legs_per_worker')})" if target == "voxlab" else "")
                print(f"  {label} N={n}: {row['calls_up']} up, loss {row['loss_pct']} %, "
                      f"rtt p50 {row['rtt_ms_p50']} ms p99 {row['rtt_ms_p99']} ms, "
                      f"main CPU {row['server_cpu_pct']} %{wk}, load-gen CPU "
                      f"{row['loadgen_cpu_pct']} % ({procs} proc), send late p99 "
                      f"{row['send_late_ms_p99']} ms, other {row['other_cpu_pct']} %",
                      flush=True)
    add_latency_over_reference(rows)
    data = {
        "benchmark": "concurrent_media",
        "description": "N simultaneous calls to voxlab's echo scenario, each sending "
                       "20 ms PCMU (50 pps); payloads carry stream/seq/send time",
        "machine": machine_info(),
        "duration_s": args.duration,
        "server_log_level": args.log_level,
        "generator": "c (bench/rtpgen.c)" if rtpgen else "python",
        "media_workers": wcounts,
        "results": rows,
        "notes": [
            "rtt = receive time - send time in the load process: voxlab's added "
            "latency plus the loopback and the load generator's own scheduling delay.",
            "added_latency_ms_p50/p99 (unless --no-reference): voxlab's rtt minus the bare "
            "echo's rtt at the same N and percentile, i.e. the latency voxlab itself adds.",
            "server_cpu_pct (= main_cpu_pct) over the media phase from /proc; 100 % = one "
            "core. For voxlab it is the main process only (SIP, sessions); worker_cpu_pct "
            "lists each media worker (the server's child processes, same interval).",
            "total_cpu_pct = main + all workers; cpu_ms_per_leg_s = CPU ms per second of one "
            "leg; cpu_per_leg_vs_bare = that over the bare echo's at the same N (1.0 = as "
            "cheap as a bare Twisted UDP echo in one process).",
            "legs_per_worker: live calls per worker index, from `voxlab sessions --json` "
            "after setup (each call's media_worker); worker_cpu_share: each worker's share "
            "of the workers' CPU.",
            "loadgen_cpu_pct: all load-generator processes together (same machine).",
            "generator_kept_pace is false when p99 send lateness >= 10 ms: then the "
            "figures measure the machine, not voxlab alone.",
            f"{os.cpu_count()} cores shared by voxlab and the load generator.",
            "target 'bare' rows (--reference): the same load against a bare Twisted "
            "UDP echo (bench/bare_echo.py), the floor for one Python process.",
        ],
    }
    path = write_results("concurrent_media", data, args.out)
    print()
    for r in rows:
        r["_workers"] = "/".join(str(x) for x in r.get("worker_cpu_pct", [])) or None
        lpw = r.get("legs_per_worker")
        r["_legs"] = "/".join(str(v) for v in lpw.values()) if lpw else None
    print_table(rows, [("target", "target", "{}"), ("media_workers", "w", "{}"),
                       ("calls", "N", "{}"), ("calls_up", "up", "{}"),
                       ("setup_cps", "setup/s", "{}"), ("loss_pct", "loss %", "{}"),
                       ("rtt_ms_p50", "rtt p50", "{}"), ("rtt_ms_p99", "rtt p99", "{}"),
                       ("added_latency_ms_p99", "added p99", "{}"),
                       ("server_cpu_pct", "main CPU %", "{}"),
                       ("_workers", "worker CPU %", "{}"),
                       ("total_cpu_pct", "total CPU %", "{}"),
                       ("cpu_per_leg_vs_bare", "CPU/leg vs bare", "{}"),
                       ("_legs", "legs/worker", "{}"),
                       ("loadgen_cpu_pct", "loadgen CPU %", "{}"),
                       ("other_cpu_pct", "other CPU %", "{}"), ("procs", "procs", "{}"),
                       ("send_late_ms_p99", "late p99", "{}"),
                       ("generator_kept_pace", "gen ok", "{}"),
                       ("server_rss_mb", "RSS MB", "{}")])
    for r in rows:
        r.pop("_workers", None)
        r.pop("_legs", None)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
