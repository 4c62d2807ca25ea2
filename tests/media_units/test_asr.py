"""The ASR worker unit: espeak-ng "yes"/"no" through a hand-ticked graph."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from twisted.internet import defer

from voxlab.media.asr import Asr, grammar_for
from voxlab.media.graph import MediaGraph
from voxlab.media.player import Player, null_context
from voxlab.media.units import UnitContext, UnitError
from voxlab.media.wav import read_wav

pytest.importorskip("pocketsphinx")
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


class SyncContext(UnitContext):
    """A context whose thread work runs at once (the test is the thread)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        super().__init__(None, lambda name, event, data: self.events.append((event, data)))

    def in_thread(self, fn, *args, **kw):
        try:
            return defer.succeed(fn(*args, **kw))
        except Exception:
            return defer.fail()


def speech(tmp_path, word: str) -> np.ndarray:
    path = tmp_path / f"{word}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), word], check=True)
    pcm = read_wav(path, 8000)
    pad = np.zeros(4000, np.int16)
    return np.concatenate([pad, pcm, pad, np.zeros(8000, np.int16)])


def run(pcm: np.ndarray, **spec) -> list[tuple[str, dict]]:
    ctx = SyncContext()
    asr = Asr(ctx, "asr", **spec)
    graph = MediaGraph()
    player = Player.of_pcm(null_context(), pcm)
    graph.add(player)
    graph.add(asr)
    graph.route(player, asr)
    for _ in range(len(pcm) // 160 + 10):
        graph.tick()
    return ctx.events


@pytest.mark.parametrize("word", ["yes", "no"])
def test_phrases_recognise_the_word(tmp_path, word):
    events = run(speech(tmp_path, word), phrases=["yes", "no"])
    names = [e for e, _ in events]
    assert names[0] == "Started"
    assert "CaptureStarted" in names and "SpeechCaptured" in names
    results = [d for e, d in events if e == "Result"]
    assert [r["text"] for r in results] == [word]
    assert 0.0 <= results[0]["confidence"] <= 1.0


def test_single_utterance_stops_after_result(tmp_path):
    pcm = np.concatenate([speech(tmp_path, "yes"), speech(tmp_path, "no")])
    events = run(pcm, phrases=["yes", "no"], single_utterance=True)
    names = [e for e, _ in events]
    assert names.count("Result") == 1
    assert names[-1] == "Stopped"


def test_two_utterances_give_two_results(tmp_path):
    pcm = np.concatenate([speech(tmp_path, "yes"), speech(tmp_path, "no")])
    events = run(pcm, phrases=["yes", "no"])
    assert [d["text"] for e, d in events if e == "Result"] == ["yes", "no"]


def test_unknown_word_is_an_error_event():
    ctx = SyncContext()
    Asr(ctx, "asr", phrases=["yes", "zzqxvbw"])
    assert ctx.events[0][0] == "Error"
    assert "zzqxvbw" in ctx.events[0][1]["error"]


def test_bad_spec():
    with pytest.raises(UnitError):
        Asr(SyncContext(), "asr", language="fr-FR")
    with pytest.raises(UnitError):
        grammar_for(["", "!!"])


def test_silence_gives_nothing():
    events = run(np.zeros(16000, np.int16), phrases=["yes", "no"])
    assert [e for e, _ in events] == ["Started"]


def test_free_dictation_hears_something(tmp_path):
    events = run(speech(tmp_path, "hello"))
    results = [d for e, d in events if e == "Result"]
    assert len(results) == 1 and isinstance(results[0]["text"], str)


def test_interim_results_come_before_the_result(tmp_path):
    pcm = speech(tmp_path, "this is a longer sentence so that interim results come")
    events = run(pcm, interim_results=True)
    names = [e for e, _ in events]
    assert "InterimResult" in names
    assert names.index("InterimResult") < names.index("Result")


def test_stop_is_the_last_word(tmp_path):
    ctx = SyncContext()
    asr = Asr(ctx, "asr", phrases=["yes", "no"])
    asr.command("stop", {})
    assert [e for e, _ in ctx.events] == ["Started", "Stopped"]
    assert "stopped" in asr.describe()
