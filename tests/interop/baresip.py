"""Drive baresip 1.0 (Debian ``baresip-core``) as an independent SIP phone.

Each :class:`Baresip` gets its own config dir, a free SIP listen port and a
free block of RTP ports, and records what it hears with the ``sndfile``
module (``<snd>/dump-*-dec.wav``).  stdin is a pipe, so the ``stdio``
module's menu takes keys (digits typed during a call are sent as RFC 4733
events).  stdout (which baresip flushes line by line) is read by a thread
so tests can wait for log lines instead of sleeping.

    bs = Baresip(tmp_path / "bs", source=tone_wav, avoid=[srv.rtp_range])
    try:
        bs.start(f"dsip:echo@{srv.host}:{srv.sip_port}")
        bs.wait_for(r"Call established")
        ...
    finally:
        bs.stop()
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.peers.process import end_process

BARESIP = shutil.which("baresip")
MODULE_PATH = "/usr/lib/baresip/modules"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

__all__ = ["BARESIP", "Baresip", "SipTrace", "free_port_block", "sip_messages"]


def free_port_block(count: int = 42, avoid=(), host: str = "127.0.0.1",
                    lo: int = 15000, hi: int = 20000) -> tuple[int, int]:
    """(first, last) of ``count`` consecutive ports, below the ephemeral range, outside
    every (first, last) range in ``avoid``: the first two free for UDP and TCP on
    ``host`` (baresip's SIP port and the TLS port it binds beside it, at SIP + 1, even
    when told to use UDP only), all free for UDP on any address (baresip binds its
    RTP/RTCP sockets to the wildcard address). Checked by binding."""
    for _ in range(500):
        base = random.randrange(lo, hi - count, 2)
        last = base + count - 1
        if any(not (last < a or base > b) for a, b in avoid):
            continue
        socks = []
        try:
            for p in range(base, last + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("0.0.0.0", p))
            for p in (base, base + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((host, p))
            return base, last
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError("no free port block")


@dataclass
class SipTrace:
    """One SIP message from baresip's ``-s`` trace."""
    src: str                 # "host:port"
    dst: str
    start: str               # request or status line
    headers: list[str]

    @property
    def method(self) -> str | None:
        return None if self.start.startswith("SIP/2.0") else self.start.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.start)
        return int(m.group(1)) if m else None

    def header(self, name: str) -> str | None:
        for h in self.headers:
            k, _, v = h.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq else None

    def text(self) -> str:
        return "\n".join([f"{self.src} -> {self.dst}", self.start, *self.headers])


_TRACE = re.compile(r"^(?:UDP|TCP) (\S+) -> (\S+)\n(.*?)(?:\n\n|\Z)", re.M | re.S)


def sip_messages(output: str) -> list[SipTrace]:
    """The SIP messages (start line and headers) of a baresip ``-s`` trace."""
    out = []
    for m in _TRACE.finditer(output):
        lines = m.group(3).split("\n")
        out.append(SipTrace(m.group(1), m.group(2), lines[0], lines[1:]))
    return out


class Baresip:
    """One baresip process with its own config dir under ``workdir``."""

    def __init__(self, workdir: Path, source: Path, codecs: str = "PCMU",
                 account_params: str = "", avoid=(), host: str = "127.0.0.1",
                 extra_config: str = "", account: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.confdir = self.workdir / "config"
        self.snd_dir = self.workdir / "snd"
        self.source = Path(source)
        self.host = host
        self.codecs = codecs
        self.account_params = account_params
        self.extra_config = extra_config     # more config lines, e.g. "jitter_buffer_delay 0-0"
        self.account = account               # the whole accounts line (default: bs@host, no registration)
        # one block for every port this baresip binds, so that ``avoid=[bs.ports]``
        # keeps another peer off all of them
        self.ports = free_port_block(avoid=avoid, host=host)
        self.sip_port = self.ports[0]
        self.rtp_range = (self.ports[0] + 2, self.ports[1])
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self.command: list[str] = []

    # -- config
    def write_config(self) -> None:
        self.confdir.mkdir(parents=True, exist_ok=True)
        self.snd_dir.mkdir(parents=True, exist_ok=True)
        (self.confdir / "config").write_text("\n".join([
            "poll_method epoll",
            f"sip_listen {self.host}:{self.sip_port}",
            "sip_transports udp",
            "audio_player alsa,null",          # no sound card: a player is still required
            f"audio_source aufile,{self.source}",
            "audio_alert alsa,null",
            "audio_srate 8000",
            "audio_channels 1",
            f"rtp_ports {self.rtp_range[0]}-{self.rtp_range[1]}",
            f"module_path {MODULE_PATH}",
            "module stdio.so",
            "module g711.so",
            "module aufile.so",
            "module alsa.so",
            "module sndfile.so",
            "module_app account.so",
            "module_app menu.so",
            f"snd_path {self.snd_dir}",
            self.extra_config,
            "",
        ]))
        params = f";regint=0;answermode=auto;audio_codecs={self.codecs}{self.account_params}"
        (self.confdir / "accounts").write_text((self.account or f"<sip:bs@{self.host}>{params}") + "\n")
        (self.confdir / "contacts").write_text("")

    # -- lifecycle
    def start(self, *commands: str, quit_after: float = 60.0, sip_trace: bool = True) -> "Baresip":
        """Start baresip running ``commands`` (``-e``); it quits by itself
        after ``quit_after`` seconds (``-t``) in any case."""
        self.write_config()
        cmd = [BARESIP or "baresip", "-f", str(self.confdir)]
        if sip_trace:
            cmd.append("-s")
        for c in commands:
            cmd += ["-e", c]
        cmd += ["-t", str(int(quit_after))]
        self.command = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=str(self.workdir),
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match | None:
        """Wait until baresip's output (from line ``start`` on) matches
        ``pattern`` (a regex, multi-line); the match, or None on timeout or
        when baresip has exited without printing it."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search("\n".join(self.lines[start:]))
                if m:
                    return m
                left = deadline - time.monotonic()
                reader_done = self._reader is not None and not self._reader.is_alive()
                if left <= 0 or reader_done:
                    return None
                self._cond.wait(min(left, 0.2))

    def send_keys(self, keys: str) -> None:
        """Type ``keys`` into the stdio menu."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(keys.encode())
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout) if self.proc else None
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> int | None:
        """Quit (``q`` on the menu), then SIGTERM, then SIGKILL."""
        if self.proc is None:
            return None
        end_process(self.proc, grace, ask=lambda: self.send_keys("q"))
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    # -- results
    def dumps(self, kind: str = "dec") -> list[Path]:
        """The sndfile recordings: ``dec`` is what baresip heard, ``enc``
        what it sent."""
        return sorted(self.snd_dir.glob(f"dump-*-{kind}.wav"))

    def describe(self, tail: int = 300) -> str:
        # without the menu's echo of the dial string ("> sip:ech", ...)
        lines = [ln for ln in self.output().splitlines() if not ln.startswith(">")]
        rc = self.proc.poll() if self.proc else None
        return (f"baresip pid={self.proc.pid if self.proc else -1} sip={self.host}:{self.sip_port} "
                f"rtp={self.rtp_range[0]}-{self.rtp_range[1]} exit={rc}\n"
                f"command: {' '.join(self.command)}\n"
                f"---- baresip output (last {tail} lines) ----\n" + "\n".join(lines[-tail:]))
