"""Speech recognition units (``kind = "asr"``) on pocketsphinx.

The tick does only cheap work: an energy voice-activity detector per 20 ms
frame and the buffering of an utterance's frames (with a short pre-roll).
When an utterance ends (about 700 ms of silence after speech, or 10 s of
speech) its audio is resampled to 16 kHz and decoded in the worker's thread
pool (``ctx.in_thread``): one pocketsphinx ``Decoder`` per worker, loaded
when the worker starts (:func:`preload`), shared by its units (a search per
grammar) with every call on it serialised by a lock.

pocketsphinx 5.1.1's binding does NOT release the GIL in ``process_raw``
(measured: a 7 s dictation decode in a thread stalled a 1 ms loop for 2 s),
so the decoding thread feeds the audio in 10 ms chunks and yields the GIL
between them: the tick waits at most one chunk's decoding (a few ms).

Spec: ``language`` (only ``en-US``: the bundled model), ``phrases`` (a list
of words/phrases: a JSGF grammar of alternatives; none: free dictation on the
bundled language model), ``single_utterance``, ``interim_results``.
Operations: ``stop``. Events: ``Started``, ``CaptureStarted``,
``SpeechCaptured``, ``InterimResult`` (text), ``Result`` (text, confidence),
``Stopped``, ``Error`` (error).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from voxlab.media.graph import Frame
from voxlab.media.units import UnitContext, UnitError, WorkerUnit

#: a frame louder than this (dBFS) is speech
SPEECH_DBFS = -42.0
#: frames of speech in a row that start an utterance
START_FRAMES = 3
#: frames of silence that end an utterance (700 ms)
END_FRAMES = 35
#: frames kept before speech starts (200 ms)
PREROLL_FRAMES = 10
#: longest utterance (10 s)
MAX_FRAMES = 500
#: frames of speech between interim results (0.5 s)
INTERIM_FRAMES = 25

#: bytes of 16 kHz int16 audio given to the decoder at once (10 ms)
CHUNK_BYTES = 320

CACHE_KEY = "asr.model"

_WORD = re.compile(r"[^\w' ]+")


def _dbfs(pcm: np.ndarray) -> float:
    if len(pcm) == 0:
        return -120.0
    x = pcm.astype(np.float64)
    rms = math.sqrt(float(np.dot(x, x)) / len(x))
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -120.0


def grammar_for(phrases: list[str]) -> str:
    """A JSGF grammar whose one public rule is any of ``phrases``."""
    alts = [" ".join(_WORD.sub(" ", p).lower().split()) for p in phrases]
    alts = [a for a in alts if a]
    if not alts:
        raise UnitError("phrases holds no words")
    return "#JSGF V1.0;\ngrammar g;\npublic <r> = " + " | ".join(alts) + " ;\n"


class _Model:
    """The worker's one pocketsphinx decoder (the model is loaded once per worker and
    costs ~90 MB), shared by its ASR units: each has a search of its own (its grammar,
    or the bundled language model), and utterances are decoded one at a time."""

    _made = threading.Lock()

    def __init__(self) -> None:
        from pocketsphinx import Decoder
        self.lock = threading.Lock()
        # bestpath and fwdflat off: their passes run in end_utt() in one C call that
        # holds the GIL for ~0.3 s on a long dictation (a gap in every call's audio).
        self.decoder = Decoder(loglevel="FATAL", bestpath=False, fwdflat=False)
        self.default = self.decoder.current_search()
        self._grammars: dict[str, str] = {}

    @classmethod
    def of(cls, ctx: UnitContext) -> "_Model":
        """The worker's model (made now, in the calling thread, if not preloaded)."""
        with cls._made:
            model = ctx.cache.get(CACHE_KEY)
            if model is None:
                model = ctx.cache[CACHE_KEY] = cls()
            return model

    def search_for(self, phrases: list[str] | None) -> str:
        """The name of the search for ``phrases`` (None: free dictation); UnitError
        for a word the dictionary lacks."""
        if not phrases:
            return self.default
        grammar = grammar_for(phrases)
        with self.lock:
            name = self._grammars.get(grammar)
            if name is None:
                d = self.decoder
                unknown = sorted({w for p in phrases for w in _WORD.sub(" ", p).lower().split()
                                  if d.lookup_word(w) is None})
                if unknown:
                    raise UnitError(f"not in the recogniser's dictionary: {', '.join(unknown)}")
                name = f"g{len(self._grammars) + 1}"
                d.add_jsgf_string(name, grammar)
                self._grammars[grammar] = name
            return name

    def decode(self, search: str, pcm8k: np.ndarray, final: bool = True) -> tuple[str, float]:
        from voxlab.media.wav import resample
        pcm = np.clip(np.rint(resample(np.asarray(pcm8k, np.float64), 8000, 16000)), -32768, 32767).astype(np.int16)
        data = pcm.tobytes()
        with self.lock:
            d = self.decoder
            if d.current_search() != search:
                d.activate_search(search)
            d.start_utt()
            # process_raw holds the GIL while it decodes (measured: it does not release
            # it), so the audio goes in 10 ms chunks with the GIL given up between them:
            # the worker's reactor waits at most one chunk's decoding, never a tick.
            for i in range(0, len(data), CHUNK_BYTES):
                d.process_raw(data[i:i + CHUNK_BYTES], False, False)
                time.sleep(0)
            d.end_utt()
            h = d.hyp()
            if h is None or not h.hypstr:
                return "", 0.0
            try:
                conf = float(d.get_logmath().exp(h.prob))
            except Exception:
                conf = 1.0
            return h.hypstr, max(0.0, min(1.0, conf))


class _Recogniser:
    """One unit's view of the worker's model: its search."""

    def __init__(self, ctx: UnitContext, phrases: list[str] | None) -> None:
        self.model = _Model.of(ctx)
        self.search = self.model.search_for(phrases)

    def decode(self, pcm8k: np.ndarray, final: bool = True) -> tuple[str, float]:
        return self.model.decode(self.search, pcm8k, final)


def preload(ctx: UnitContext) -> None:
    """Load the model when the worker starts (loading holds the GIL ~0.3 s: later, it
    would be a gap in every call's audio)."""
    _Model.of(ctx)


class Asr(WorkerUnit):
    """Recognises the speech of its one input; see the module's doc."""

    kind = "asr"

    def __init__(self, ctx: UnitContext, name: str, language: str = "en-US",
                 phrases: list[str] | None = None, single_utterance: bool = False,
                 interim_results: bool = False) -> None:
        super().__init__(ctx, name)
        if str(language).lower().replace("_", "-") not in ("en-us", "en"):
            raise UnitError(f"language {language!r} is not supported (only en-US)")
        self.language = "en-US"
        self.phrases = [str(p) for p in phrases] if phrases else None
        if self.phrases:
            grammar_for(self.phrases)          # UnitError now for empty phrases
        self.single_utterance = bool(single_utterance)
        self.interim_results = bool(interim_results)
        self.state = "starting"   # starting, listening, capturing, stopped, failed
        self.last_result: str | None = None
        self.last_confidence: float | None = None
        self.results = 0
        self._rec: _Recogniser | None = None
        self._preroll: deque[np.ndarray] = deque(maxlen=PREROLL_FRAMES)
        self._utt: list[np.ndarray] = []
        self._loud = 0
        self._quiet = 0
        self._since_interim = 0
        self._pending = 0          # decodes in flight
        self._interim_busy = False
        d = ctx.in_thread(_Recogniser, ctx, self.phrases)
        d.addCallbacks(self._ready, self._failed)

    # -- decoder life
    def _ready(self, rec: _Recogniser) -> None:
        self._rec = rec
        if self.state == "starting":
            self.state = "listening"
            self.emit("Started")

    def _failed(self, failure: Any) -> None:
        err = failure.value
        msg = str(err) if isinstance(err, UnitError) else f"recogniser failed: {err!r}"
        self.state = "failed"
        self.emit("Error", error=msg)

    # -- the tick
    def consume(self, frame: Frame | None) -> None:
        if self.state not in ("listening", "capturing") or frame is None:
            return
        pcm = frame.pcm
        loud = _dbfs(pcm) > SPEECH_DBFS
        if self.state == "listening":
            self._preroll.append(pcm)
            self._loud = self._loud + 1 if loud else 0
            if self._loud >= START_FRAMES:
                self.state = "capturing"
                self._utt = list(self._preroll)
                self._preroll.clear()
                self._quiet = 0
                self._since_interim = 0
                self.emit("CaptureStarted")
            return
        self._utt.append(pcm)
        self._quiet = 0 if loud else self._quiet + 1
        self._since_interim += 1
        if self._quiet >= END_FRAMES or len(self._utt) >= MAX_FRAMES:
            self._end_utterance()
        elif self.interim_results and self._since_interim >= INTERIM_FRAMES and not self._interim_busy:
            self._since_interim = 0
            self._interim_busy = True
            d = self.ctx.in_thread(self._rec.decode, np.concatenate(self._utt), False)
            d.addCallbacks(self._interim, self._decode_failed)

    def _end_utterance(self) -> None:
        audio = np.concatenate(self._utt)
        self._utt = []
        self._loud = 0
        self.state = "listening"
        self.emit("SpeechCaptured", duration=round(len(audio) / 8000.0, 3))
        if self.single_utterance:
            self.state = "decoding"
        self._pending += 1
        d = self.ctx.in_thread(self._rec.decode, audio)
        d.addCallbacks(self._result, self._decode_failed)

    def _interim(self, hyp: tuple[str, float]) -> None:
        self._interim_busy = False
        if self.state == "capturing" and hyp[0]:
            self.emit("InterimResult", text=hyp[0])

    def _result(self, hyp: tuple[str, float]) -> None:
        self._pending -= 1
        if self.state in ("stopped", "failed"):
            return
        text, conf = hyp
        self.last_result, self.last_confidence = text, round(conf, 3)
        self.results += 1
        self.emit("Result", text=text, confidence=round(conf, 3))
        if self.single_utterance:
            self._stop()

    def _decode_failed(self, failure: Any) -> None:
        self._pending -= 1
        self._interim_busy = False
        if self.state not in ("stopped", "failed"):
            self.emit("Error", error=f"decoding failed: {failure.value!r}")

    # -- operations
    def op_stop(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.state in ("stopped",):
            return
        self.state = "stopped"
        self._utt = []
        self.emit("Stopped")

    def stats_row(self) -> list:
        return [self.state, self.last_result, self.last_confidence, self.results]

    def close(self) -> None:
        if self.state != "stopped":
            self.state = "stopped"
        self._utt = []

    def describe(self) -> str:
        last = f" last={self.last_result!r}" if self.last_result is not None else ""
        return f"{self.name} asr {self.state}{last}"
