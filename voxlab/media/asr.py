"""Speech recognition: a media unit that listens to its input, finds utterances by
voice activity, and has pocketsphinx decode each one off the media tick.

The tick only measures each frame's energy and keeps the frames of an
utterance (with a little audio from before it started, so the first
consonant is not cut off). When an utterance ends (enough silence after
speech, or MAX_UTTERANCE), its audio goes to a thread of the worker's pool,
where pocketsphinx (which runs its C search without the GIL) decodes it; the
result comes back to the reactor as a ``Result`` event. So ASR on some calls
never costs another call's media a frame.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import numpy as np
from twisted.internet import defer

from voxlab.media.graph import FRAME_SAMPLES, Frame, level_dbfs
from voxlab.media.units import UnitContext, UnitError, WorkerUnit
from voxlab.media.wav import resample

SPEECH_DBFS = -40.0         # a frame louder than this is speech
START_FRAMES = 3            # this many speech frames in a row start an utterance (60 ms)
END_SILENCE_FRAMES = 35     # this much silence ends it (700 ms)
PRE_ROLL_FRAMES = 10        # audio kept from before the start (200 ms)
MAX_UTTERANCE_FRAMES = 500  # 10 s: decoded even if the speaker never pauses
INTERIM_FRAMES = 25         # a partial result every 0.5 s of speech (interim_results)
LANGUAGES = ("en-US", "en")


def _grammar(phrases: list[str]) -> str:
    alternatives = " | ".join(" ".join(p.lower().split()) for p in phrases)
    return f"#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = {alternatives} ;\n"


class _Recogniser:
    """The worker's one pocketsphinx decoder, shared by its ASR units (each with a search of
    its own), used from the thread pool one utterance at a time. Loading a model holds the
    GIL for a few hundred ms: once per worker, not once per call."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(loglevel="FATAL")
        self.default = self.decoder.current_search()
        self.lock = threading.Lock()

    def add_phrases(self, search: str, phrases: list[str]) -> None:
        with self.lock:
            missing = [w for p in phrases for w in p.lower().split() if self.decoder.lookup_word(w) is None]
            if missing:
                raise UnitError(f"not in the recogniser's dictionary: {', '.join(sorted(set(missing)))}")
            self.decoder.add_jsgf_string(search, _grammar(phrases))

    def decode(self, pcm8k: np.ndarray, search: str | None) -> tuple[str, float]:
        pad = np.zeros(4000, np.int16)      # 0.25 s at 16 kHz each side: the search wants context
        pcm = np.concatenate([pad, resample(pcm8k.astype(np.float64), 8000, 16000).astype(np.int16), pad])
        with self.lock:
            d = self.decoder
            d.activate_search(search or self.default)
            d.start_utt()
            d.process_raw(pcm.tobytes(), full_utt=True)
            d.end_utt()
            hyp = d.hyp()
        if hyp is None:
            return "", 0.0
        return hyp.hypstr, float(max(0.0, min(1.0, hyp.prob)))


_KEY = "asr.recogniser"


def preload(ctx: UnitContext) -> None:
    """Load the recogniser now (at the worker's start, before it has calls): loading holds
    the GIL for a few hundred ms, which would be a gap in every call's audio later."""
    ctx.cache[_KEY] = _Recogniser()


def shared_recogniser(ctx: UnitContext) -> defer.Deferred:
    """The worker's recogniser, loaded (in a thread) by the first ASR unit that asks."""
    entry = ctx.cache.get(_KEY)
    if isinstance(entry, _Recogniser):
        return defer.succeed(entry)
    if entry is None:
        entry = ctx.cache[_KEY] = []
        d = ctx.in_thread(_Recogniser)

        def loaded(result):
            waiting, ctx.cache[_KEY] = ctx.cache[_KEY], (result if isinstance(result, _Recogniser) else None)
            for w in waiting:
                w.callback(result) if isinstance(result, _Recogniser) else w.errback(result)

        d.addBoth(loaded)
    waiter = defer.Deferred()
    entry.append(waiter)
    return waiter


class Asr(WorkerUnit):
    """Recognises what is sent to it: events CaptureStarted, SpeechCaptured, InterimResult,
    Result (text, confidence), Started, Stopped, Error."""

    kind = "asr"

    def __init__(self, ctx: UnitContext, name: str, language: str = "en-US", phrases: list[str] | None = None,
                 single_utterance: bool = False, interim_results: bool = False) -> None:
        super().__init__(ctx, name)
        if language not in LANGUAGES:
            raise UnitError(f"language {language!r} is not available (the bundled model is en-US)")
        self.phrases = [str(p) for p in phrases or [] if str(p).strip()]
        self.single_utterance = single_utterance
        self.interim_results = interim_results
        self.state = "loading"
        self.recogniser: _Recogniser | None = None
        self.pre: collections.deque[np.ndarray] = collections.deque(maxlen=PRE_ROLL_FRAMES)
        self.utterance: list[np.ndarray] | None = None
        self.run = 0            # speech frames in a row (before a start)
        self.silence = 0        # silent frames in a row (during an utterance)
        self.results: list[str] = []
        self.pending = 0
        self.waiting: list[tuple[np.ndarray, bool]] = []
        self.search = f"asr-{name}" if self.phrases else None
        d = shared_recogniser(ctx)
        if self.phrases:
            d.addCallback(lambda r: ctx.in_thread(r.add_phrases, self.search, self.phrases).addCallback(lambda _: r))
        d.addCallbacks(self._ready, self._load_failed)

    def _ready(self, recogniser: _Recogniser) -> None:
        if self.state == "stopped":
            return
        self.recogniser = recogniser
        self.state = "listening"
        self.emit("Started")
        # What was said while the model loaded (~0.3 s) is not lost.
        waiting, self.waiting = self.waiting, []
        for audio, final in waiting:
            self._decode(audio, final)

    def _load_failed(self, failure: Any) -> None:
        self.state = "failed"
        self.emit("Error", error=f"speech recogniser: {failure.getErrorMessage()}")

    # -- the tick: voice activity only
    def consume(self, frame: Frame | None) -> None:
        if self.state not in ("loading", "listening"):
            return
        pcm = frame.pcm if frame is not None else np.zeros(FRAME_SAMPLES, np.int16)
        speech = frame is not None and level_dbfs(pcm) > SPEECH_DBFS
        if self.utterance is None:
            self.pre.append(pcm)
            self.run = self.run + 1 if speech else 0
            if self.run >= START_FRAMES:
                self.utterance = list(self.pre)
                self.pre.clear()
                self.silence = 0
                self.emit("CaptureStarted")
            return
        self.utterance.append(pcm)
        self.silence = 0 if speech else self.silence + 1
        n = len(self.utterance)
        if self.silence >= END_SILENCE_FRAMES or n >= MAX_UTTERANCE_FRAMES:
            audio = np.concatenate(self.utterance)
            self.utterance = None
            self.run = 0
            self.emit("SpeechCaptured", duration=round(len(audio) / 8000, 2))
            self._decode(audio, final=True)
            if self.single_utterance and self.state == "listening":
                self.state = "decoding"
        elif self.interim_results and n % INTERIM_FRAMES == 0:
            self._decode(np.concatenate(self.utterance), final=False)

    def _decode(self, audio: np.ndarray, final: bool) -> None:
        if self.recogniser is None:
            if final:
                self.waiting.append((audio, final))
            return
        self.pending += 1
        d = self.ctx.in_thread(self.recogniser.decode, audio, self.search)
        d.addCallbacks(self._decoded, self._decode_failed, callbackArgs=(final,))

    def _decoded(self, result: tuple[str, float], final: bool) -> None:
        self.pending -= 1
        if self.state == "stopped":
            return
        text, confidence = result
        if not final:
            if text:
                self.emit("InterimResult", text=text)
            return
        self.results.append(text)
        self.emit("Result", text=text, confidence=round(confidence, 3))
        if self.single_utterance:
            self.op_stop()

    def _decode_failed(self, failure: Any) -> None:
        self.pending -= 1
        self.emit("Error", error=f"decoding failed: {failure.getErrorMessage()}")

    def op_stop(self) -> None:
        if self.state != "stopped":
            self.state = "stopped"
            self.utterance = None
            self.emit("Stopped")

    def close(self) -> None:
        self.state = "stopped"

    def stats_row(self) -> list:
        return [self.state, self.results[-1] if self.results else None, len(self.results),
                self.utterance is not None]
