"""Speech for players: espeak-ng run as a subprocess of the media worker.

A segment ``{"type": "tts", "text": ..., "voice": "en-us", "rate": 175}`` is
split into sentences, and each is synthesised by its own ``espeak-ng
--stdout`` process (spawned through the worker's reactor, the text on its
stdin, one process at a time, in order), decoded and resampled to 8 kHz in
the worker's thread pool and fed to the player as soon as it is there: the
first sentence plays while the next ones are being made, so a long text
starts as quickly as a short one. The whole result is kept in the worker's
cache by (text, voice, rate), so saying a prompt again costs nothing.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections import OrderedDict
from typing import Any

import numpy as np
from twisted.internet import protocol
from twisted.python.failure import Failure

from voxlab.media.graph import SAMPLE_RATE
from voxlab.media.player import Source
from voxlab.media.wav import read_wav

__all__ = ["TtsSource", "split_sentences", "espeak_args", "ESPEAK", "CACHE_SAMPLES"]

#: the synthesiser (a name looked up on PATH, or a path)
ESPEAK = "espeak-ng"
#: how long one sentence may take to synthesise before it is given up
SENTENCE_TIMEOUT = 30.0
#: the most speech (samples at 8 kHz) the worker's cache keeps: 32 MB, about 33 minutes
CACHE_SAMPLES = 16_000_000
#: a sentence longer than this (characters) is cut at its commas / semicolons
_LONG = 200

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*\n")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def split_sentences(text: str) -> list[str]:
    """``text`` cut into the pieces synthesised one after the other: sentences, and a
    very long sentence at its commas. Nothing is dropped but whitespace."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        if not sentence:
            continue
        if len(sentence) <= _LONG:
            pieces.append(sentence)
            continue
        current = ""
        for clause in _CLAUSE_END.split(sentence):
            if current and len(current) + 1 + len(clause) > _LONG:
                pieces.append(current)
                current = clause
            else:
                current = f"{current} {clause}" if current else clause
        if current:
            pieces.append(current)
    return pieces


def normalise_voice(voice: str | None) -> str | None:
    """espeak-ng's voice names are case-insensitive with ``-``: ``en_US`` -> ``en-us``."""
    if voice is None or not str(voice).strip():
        return None
    return str(voice).strip().replace("_", "-").lower()


def espeak_args(voice: str | None, rate: int | None) -> list[str]:
    """The command line of one sentence (its text goes to stdin)."""
    args = [ESPEAK, "--stdout", "--stdin", "-b", "1"]
    if voice is not None:
        args += ["-v", voice]
    if rate is not None:
        args += ["-s", str(int(rate))]
    return args


class _Cache:
    """Complete results by (text, voice, rate), the oldest dropped past CACHE_SAMPLES."""

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.samples = 0

    def get(self, key: tuple) -> np.ndarray | None:
        pcm = self.entries.get(key)
        if pcm is not None:
            self.entries.move_to_end(key)
        return pcm

    def put(self, key: tuple, pcm: np.ndarray) -> None:
        if key in self.entries or len(pcm) > CACHE_SAMPLES:
            return
        self.entries[key] = pcm
        self.samples += len(pcm)
        while self.samples > CACHE_SAMPLES:
            _, old = self.entries.popitem(last=False)
            self.samples -= len(old)


def cache_of(ctx: Any) -> _Cache:
    cache = ctx.cache.get("tts")
    if cache is None:
        cache = ctx.cache["tts"] = _Cache()
    return cache


class _Espeak(protocol.ProcessProtocol):
    """One sentence: the text in, a WAV out, the exit status."""

    def __init__(self, source: "TtsSource", index: int, text: str) -> None:
        self.source = source
        self.index = index
        self.text = text
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.timer: Any = None

    def connectionMade(self) -> None:
        self.transport.write(self.text.encode("utf-8"))
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        if sum(map(len, self.err)) < 4096:
            self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        self.source._sentence_done(self, code, signal)

    def kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")
        except Exception:   # already gone
            pass


class TtsSource(Source):
    """A player segment of speech: ``{"type": "tts", "text": ..., "voice": ..., "rate": ...}``.

    ``voice`` is an espeak-ng voice (``en``, ``en-us``, ``de``, ``fr`` ... ``espeak-ng
    --voices`` lists them; default: espeak-ng's own, English); ``rate`` is in words per
    minute (espeak-ng's ``-s``: 80 to 450, default 175)."""

    def __init__(self, ctx: Any, text: str, voice: str | None = None, rate: int | None = None) -> None:
        super().__init__(ctx)
        if not isinstance(text, str):
            raise TypeError(f"the text to say is a string, not {type(text).__name__}")
        self.text = text
        self.voice = normalise_voice(voice)
        self.rate = None if rate is None else int(rate)
        self.key = ("tts", text, self.voice, self.rate)
        self.pieces: list[str] = []
        self._results: dict[int, np.ndarray] = {}
        self._next_feed = 0
        self._running: _Espeak | None = None
        self._stopped = False

    def start(self) -> None:
        cached = cache_of(self.ctx).get(self.key)
        if cached is not None:
            self.feed(cached)
            self.finish()
            return
        if self.rate is not None and not 80 <= self.rate <= 450:
            self.fail(f"cannot say {self._short()}: rate {self.rate} is not between 80 and 450 "
                      "words per minute")
            return
        if shutil.which(ESPEAK) is None:
            self.fail(f"cannot say {self._short()}: {ESPEAK} is not installed "
                      "(apt-get install espeak-ng)")
            return
        self.pieces = split_sentences(self.text)
        if not self.pieces:
            self.finish()
            return
        self._spawn(0)

    def _short(self) -> str:
        return repr(self.text if len(self.text) <= 40 else self.text[:37] + "...")

    def _spawn(self, index: int) -> None:
        proto = _Espeak(self, index, self.pieces[index])
        args = espeak_args(self.voice, self.rate)
        try:
            self.ctx.reactor.spawnProcess(proto, shutil.which(ESPEAK) or ESPEAK, args,
                                          env=dict(os.environ))
        except OSError as exc:
            self.fail(f"cannot say {self._short()}: {ESPEAK} did not start: {exc}")
            return
        proto.timer = self.ctx.reactor.callLater(SENTENCE_TIMEOUT, self._timed_out, proto)
        self._running = proto

    def _timed_out(self, proto: _Espeak) -> None:
        proto.timer = None
        proto.out.clear()
        proto.err[:] = [f"no audio after {SENTENCE_TIMEOUT:g} s".encode()]
        proto.kill()

    def _sentence_done(self, proto: _Espeak, code: int | None, signal: int | None) -> None:
        if self._running is proto:
            self._running = None
        if self._stopped or self.complete:
            return
        wav = b"".join(proto.out)
        if code != 0 or not wav:
            err = b"".join(proto.err).decode("utf-8", "replace").strip().splitlines()
            why = err[-1] if err else (f"killed by signal {signal}" if signal else f"exit status {code}")
            if "voice does not exist" in why:
                why = f"there is no espeak-ng voice {self.voice!r} (espeak-ng --voices lists them)"
            self.fail(f"cannot say {self._short()}: {ESPEAK}: {why}")
            return
        # The next sentence is synthesised while this one is decoded.
        if proto.index + 1 < len(self.pieces):
            self._spawn(proto.index + 1)
        d = self.ctx.in_thread(_decode, wav)
        d.addCallbacks(self._decoded, self._undecodable, callbackArgs=(proto.index,))

    def _decoded(self, pcm: np.ndarray, index: int) -> None:
        if self._stopped or self.complete:
            return
        self._results[index] = pcm
        while self._next_feed in self._results:
            self.feed(self._results.pop(self._next_feed))
            self._next_feed += 1
        if self._next_feed == len(self.pieces):
            cache_of(self.ctx).put(self.key, self.pcm)
            self.finish()

    def _undecodable(self, failure: Failure) -> None:
        if not (self._stopped or self.complete):
            self.fail(f"cannot say {self._short()}: {ESPEAK} gave no usable WAV: "
                      f"{failure.getErrorMessage()}")

    def stop(self) -> None:
        self._stopped = True
        if self._running is not None:
            proto = self._running
            if proto.timer is not None and proto.timer.active():
                proto.timer.cancel()
            proto.kill()

    def describe(self) -> str:
        return f"tts {self._short()}"


def _decode(wav: bytes) -> np.ndarray:
    """espeak-ng's WAV (22050 Hz, its header's sizes left at 'streaming') at 8 kHz."""
    return read_wav(io.BytesIO(wav), SAMPLE_RATE)
