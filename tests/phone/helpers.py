"""Run ``voxlab phone`` as a subprocess and read what it says.

    ph = PhoneProcess(["--server", f"{srv.host}:{srv.sip_port}", "--dial", "echo", ...], tmp)
    ph.start()
    ph.wait_for(r"connected: ")          # a regex on its stdout lines (headless state lines)
    ph.signal(signal.SIGTERM); ph.wait(10)
    ph.stop()                           # SIGTERM, then SIGKILL: always leaves no process

Also: a small WAV helper, and a minimal VT100 screen to read a full-screen UI from a pty.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np

from tests.peers.server import REPO_ROOT
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.tones import sine
from voxlab.media.wav import WavWriter, read_wav
from tests.peers.process import end_process

RATE = 8000

__all__ = ["PhoneProcess", "tone_file", "read_output", "tone_of", "Screen", "phone_env"]


def phone_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["HOME"] = str(home)
    env.update(extra)
    return env


def tone_file(path: Path, freq: float, seconds: float, rate: int = RATE,
              amplitude: float = 0.5) -> Path:
    """A sine tone as a 16-bit mono WAV (voxlab's writer) at ``rate`` Hz."""
    with WavWriter(path, rate) as w:
        w.write(sine(freq, seconds, rate=rate, amplitude=amplitude))
    return path


def read_output(path: Path) -> np.ndarray:
    """A WAV the phone wrote, checked with the standard library's reader first: it must
    be a complete file (header sizes right) at every moment."""
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == RATE, (
            f"{path}: {w.getnchannels()} ch, {w.getsampwidth() * 8} bit, {w.getframerate()} Hz")
        frames = w.getnframes()
        data = w.readframes(frames)
    assert len(data) == frames * 2, f"{path}: the header says {frames} frames, {len(data) // 2} there"
    assert os.path.getsize(path) == 44 + frames * 2, (
        f"{path}: {os.path.getsize(path)} bytes for {frames} frames (header not updated)")
    return read_wav(path)


def tone_of(pcm: np.ndarray, skip: float = 0.3) -> tuple[float, float]:
    """(dominant frequency, level in dBFS) of the loud part of ``pcm``, after ``skip``
    seconds of it (the start of a call: jitter buffers filling)."""
    frames = len(pcm) // 160
    if frames == 0:
        return 0.0, -200.0
    f = pcm[:frames * 160].reshape(frames, 160).astype(np.float64)
    levels = 20 * np.log10(np.sqrt(np.mean(f * f, axis=1)) / 32768 + 1e-10)
    loud = np.nonzero(levels > -40)[0]
    if loud.size == 0:
        return 0.0, float(levels.max())
    start = (loud[0] + int(skip * 50)) * 160
    end = (loud[-1] + 1) * 160
    body = pcm[start:end]
    if len(body) < 1600:
        return 0.0, -200.0
    return dominant_frequency(body), rms_dbfs(body)


class PhoneProcess:
    """One ``voxlab phone`` process (headless: its stdout is state lines)."""

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = env or phone_env()
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.stderr_path = self.workdir / "phone.stderr"
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "voxlab.cli", "phone", "--headless", *self.args]

    def start(self) -> "PhoneProcess":
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.command, cwd=str(REPO_ROOT), env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match | None:
        """The first match of ``pattern`` in the output, waiting up to ``timeout`` s (None
        on timeout, or when the phone exited without printing it)."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search("\n".join(self.lines))
                if m:
                    return m
                left = deadline - time.monotonic()
                done = self._reader is not None and not self._reader.is_alive()
                if left <= 0 or done:
                    return None
                self._cond.wait(min(left, 0.2))

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` s."""
        if self.proc is None:
            return None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(5)
        return rc

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL; the exit status."""
        if self.proc is None:
            return None
        end_process(self.proc, grace)
        if self._reader is not None:
            self._reader.join(5)
        if not self._stderr.closed:
            self._stderr.close()
        return self.proc.returncode

    def describe(self) -> str:
        rc = self.proc.poll() if self.proc else None
        try:
            err = self.stderr_path.read_text(errors="replace")
        except OSError:
            err = ""
        return (f"voxlab phone pid={self.proc.pid if self.proc else -1} exit={rc}\n"
                f"command: {' '.join(self.command)}\n---- phone stdout ----\n{self.output()}\n"
                f"---- phone stderr ----\n{err[-4000:]}")


_CSI = re.compile(r"\x1b\[([?>=]?)([0-9;]*)([ -/]*)([@-~])")
_OTHER_ESC = re.compile(r"\x1b(?:[()][A-Za-z0-9]|[=>78NOMDEHc]|\][^\x07\x1b]*(?:\x07|\x1b\\))")


class Screen:
    """Just enough of a VT100 to read what a prompt_toolkit full-screen app shows: it
    draws with cursor moves and writes only the cells that changed, so its raw output
    cannot be searched for words; this replays it onto a grid of characters."""

    def __init__(self, rows: int = 30, cols: int = 120) -> None:
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0
        self.pending = ""

    def feed(self, data: str) -> None:
        data = self.pending + data
        self.pending = ""
        i, n = 0, len(data)
        while i < n:
            ch = data[i]
            if ch == "\x1b":
                m = _CSI.match(data, i) or _OTHER_ESC.match(data, i)
                if m is None:
                    if n - i < 64:           # an escape split across reads: wait for the rest
                        self.pending = data[i:]
                        return
                    i += 1
                    continue
                if m.re is _CSI:
                    self._csi(m.group(1), m.group(2), m.group(4))
                i = m.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row = min(self.rows - 1, self.row + 1)
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch in "\x07\x0e\x0f":
                pass
            elif ch >= " ":
                if self.col >= self.cols:
                    self.col = 0
                    self.row = min(self.rows - 1, self.row + 1)
                self.grid[self.row][self.col] = ch
                self.col += 1
            i += 1

    def _csi(self, private: str, params: str, final: str) -> None:
        if private:
            if params in ("1049", "47", "1047") and final in "hl":
                self._erase(2)              # alternate screen in or out: a blank screen
            return
        nums = [int(p) if p else 0 for p in params.split(";")] if params else []
        first = nums[0] if nums else 0
        count = max(1, first)
        if final == "A":
            self.row = max(0, self.row - count)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + count)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + count)
        elif final == "D":
            self.col = max(0, self.col - count)
        elif final in "Hf":
            r = (nums[0] if nums and nums[0] else 1) - 1
            c = (nums[1] if len(nums) > 1 and nums[1] else 1) - 1
            self.row, self.col = min(self.rows - 1, r), min(self.cols - 1, c)
        elif final == "G":
            self.col = min(self.cols - 1, count - 1)
        elif final == "d":
            self.row = min(self.rows - 1, count - 1)
        elif final == "K":
            line = self.grid[self.row]
            lo, hi = {0: (self.col, self.cols), 1: (0, self.col + 1), 2: (0, self.cols)}.get(
                first, (self.col, self.cols))
            for c in range(lo, hi):
                line[c] = " "
        elif final == "J":
            self._erase(first)

    def _erase(self, mode: int) -> None:
        if mode == 0:
            for c in range(self.col, self.cols):
                self.grid[self.row][c] = " "
            rows = range(self.row + 1, self.rows)
        elif mode == 1:
            rows = range(0, self.row)
        else:
            rows = range(self.rows)
        for r in rows:
            self.grid[r] = [" "] * self.cols

    def text(self) -> str:
        return "\n".join("".join(line).rstrip() for line in self.grid)
