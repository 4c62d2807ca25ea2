"""ToneScript: the grammar, the cadence to the sample, levels, phase, and the
tone segment in a Player (endless, looping, pause/resume, markers, errors)."""

from __future__ import annotations

import numpy as np
import pytest

from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.graph import FRAME_SAMPLES
from voxlab.media.player import Player
from voxlab.media.tonescript import ENDLESS, LazyTone, ToneScriptError, ToneSource, parse
from voxlab.media.units import UnitContext

RATE = 8000


def reference(freqs_levels, gate: np.ndarray, start: int = 0) -> np.ndarray:
    """The tone as the docs define it, computed the plain way: sum of sines on the script's
    sample clock, at 32768 * 10**((L - 3.17) / 20), times the on/off gate."""
    n = np.arange(start, start + len(gate), dtype=np.float64)
    x = sum(32768 * 10 ** ((lv - 3.17) / 20) * np.sin(2 * np.pi * f * n / RATE) for f, lv in freqs_levels)
    return np.clip(np.rint(x * gate), -32768, 32767).astype(np.int16)


def runs(gate: np.ndarray) -> list[tuple[int, int, bool]]:
    edges = np.flatnonzero(np.diff(gate.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(gate)]
    return [(a, b, bool(gate[a])) for a, b in zip(bounds, bounds[1:])]


# ---------------------------------------------------------------- grammar

def test_us_dial_tone():
    t = parse("350@-19,440@-19;10(*/0/1+2)")
    assert [(float(c.freq), c.level) for c in t.components] == [(350.0, -19.0), (440.0, -19.0)]
    assert t.length == 10 * RATE and t.duration == 10.0
    assert t.timeline() == [(0, 80000, (0, 1))]


def test_us_busy_cadence_is_sample_exact():
    t = parse("480@-19,620@-19;10(.5/.5/1+2)")
    assert t.timeline()[:3] == [(0, 4000, (0, 1)), (4000, 8000, ()), (8000, 12000, (0, 1))]
    assert len(t.timeline()) == 20
    pcm = t.render()
    gate = ((np.arange(len(pcm)) // 4000) % 2 == 0).astype(np.float64)
    assert np.array_equal(pcm, reference([(480, -19), (620, -19)], gate))
    assert not pcm[4000:8000].any()


def test_ringback_is_endless_with_a_six_second_cycle():
    t = parse("440@-19,480@-19;*(2/4/1+2)")
    assert t.length is None and t.duration is None
    assert t.timeline(13 * RATE) == [(0, 16000, (0, 1)), (16000, 48000, ()), (48000, 64000, (0, 1)),
                                     (64000, 96000, ()), (96000, 104000, (0, 1))]
    with pytest.raises(ValueError):
        t.render()
    # Far into an endless tone, the samples are still the exact ones (phase from integers).
    start = 48000 * 10 ** 5                      # a cycle boundary, days in
    gate = np.ones(1600)
    assert np.array_equal(t.render(start, start + 1600), reference([(440, -19), (480, -19)], gate, start))


def test_sections_play_in_order_and_a_section_cuts_its_cadence():
    t = parse("350@-19,440@-19;2(.1/.1/1+2);10(*/0/1+2)")
    line = t.timeline()
    assert line[0] == (0, 800, (0, 1)) and line[1] == (800, 1600, ())
    assert line[-3] == (14400, 15200, (0, 1))
    # the last off of section 1, then section 2 on from exactly 2 s
    assert line[-2] == (15200, 16000, ()) and line[-1] == (16000, 96000, (0, 1))
    assert t.length == 96000
    cut = parse("400@-10;.25(.2/.2/1)")             # 0.2 s on, then only 0.05 s of the off
    assert cut.length == 2000 and cut.timeline() == [(0, 1600, (0,)), (1600, 2000, ())]


def test_several_cadences_cycle_in_order_and_zero_is_silence():
    t = parse("985@-16,1428@-16,1777@-16;20(.380/0/1,.380/0/2,.380/0/3,0/4/0)")
    assert t.timeline()[:5] == [(0, 3040, (0,)), (3040, 6080, (1,)), (6080, 9120, (2,)),
                                (9120, 41120, ()), (41120, 44160, (0,))]
    pcm = t.render(0, 9120)
    for k, f in enumerate((985, 1428, 1777)):
        assert abs(dominant_frequency(pcm[k * 3040 + 100:(k + 1) * 3040 - 100]) - f) < 2


def test_whitespace_decimals_and_plus_levels():
    t = parse(" 1477.5@+0 , 697@-3.5 ; 1 ( 0.5 / 0.25 / 1 + 2 ) ")
    assert float(t.components[0].freq) == 1477.5 and t.components[1].level == -3.5
    assert t.timeline() == [(0, 4000, (0, 1)), (4000, 6000, ()), (6000, 8000, (0, 1))]


@pytest.mark.parametrize("script, position, words", [
    ("", 1, "empty"),
    ("350", 4, "expected '@'"),
    ("350@", 5, "a level in dBm0"),
    ("350@-19", 8, "';' and the cadence sections"),
    ("350@-19;", 9, "a section's duration"),
    ("350@-19;10", 11, "expected '('"),
    ("350@-19;10(", 12, "the on time"),
    ("350@-19;10(*", 13, "'/' and the off time"),
    ("350@-19;10(*/0", 15, "the frequencies to play"),
    ("350@-19;10(*/0/2)", 16, "no frequency 2: the script has only frequency 1"),
    ("350@-19,440@-19;10(.5/.5/1+3)", 28, "frequencies 1 to 2"),
    ("350@-19;10(*/0/1", 17, "or ')'"),
    ("350@-19;10(*/0/1)x", 18, "found 'x'"),
    ("5000@-3;1(1/1/1)", 1, "below 4000 Hz"),
    ("0@-3;1(1/1/1)", 1, "above 0"),
    ("350@-19;*(1/1/1);2(1/1/1)", 18, "lasts forever"),
    ("350@-19;1(*/0/1,1/1/1)", 17, "could never play"),
    ("350@-19;1(0/0/1)", 9, "last 0 s"),
    ("350@-19;1(1/1/1+1)", 17, "listed twice"),
    ("350@-19;1(1/1/0+1)", 17, "stands alone"),
    ("350@-19;1(1/1/1.5)", 15, "whole number"),
    ("350@-19;1(1/*/1)", 13, "the off time in seconds"),
    ("350@-19;1(-1/1/1)", 11, "the on time"),
    ("350@50;1(1/1/1)", 5, "above full scale"),
    ("350@-19;.(1/1/1)", 9, "a section's duration"),
])
def test_bad_scripts_say_what_and_where(script, position, words):
    with pytest.raises(ToneScriptError) as info:
        parse(script)
    assert info.value.position + 1 == position, str(info.value)
    assert words in str(info.value)
    assert f"at character {position}:" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_not_a_string():
    with pytest.raises(TypeError):
        parse(440)


# ---------------------------------------------------------------- the signal

@pytest.mark.parametrize("level", [0.0, -10.0, -19.0])
def test_levels_in_dbm0(level):
    pcm = parse(f"1000@{level};1(*/0/1)").render()
    # a full-scale sine is +3.17 dBm0 and reads -3.01 dBFS
    assert rms_dbfs(pcm) == pytest.approx(level - 3.17 - 3.01, abs=0.02)


def test_a_sum_above_full_scale_saturates():
    pcm = parse("500@3,600@3,700@3;.2(*/0/1+2+3)").render()
    assert pcm.max() == 32767 and pcm.min() == -32768
    # clipped, not wrapped around: the float sum, clipped
    assert np.array_equal(pcm, reference([(500, 3), (600, 3), (700, 3)], np.ones(len(pcm))))


def test_rendered_in_any_pieces_is_the_same_signal():
    t = parse("350@-19,440@-19;.7(.13/.07/1,.05/.05/2);*(*/0/1+2)")
    whole = t.render(0, 20000)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, 20000), 40, replace=False))
    bounds = [0, *cuts.tolist(), 20000]
    pieces = np.concatenate([t.render(a, b) for a, b in zip(bounds, bounds[1:])])
    assert np.array_equal(whole, pieces)
    lazy = LazyTone(t, block=777)
    assert np.array_equal(np.concatenate([lazy[a:b] for a, b in zip(bounds, bounds[1:])]), whole)
    assert len(lazy._blocks) <= 2


def test_the_phase_runs_on_through_off_times():
    """An on burst after a silence continues the oscillator: the same samples as an
    always-on tone at those sample numbers."""
    burst = parse("440@-10;1(.1/.1/1)").render()
    steady = parse("440@-10;1(*/0/1)").render()
    on = (np.arange(8000) // 800) % 2 == 0
    assert np.array_equal(burst[on], steady[on]) and not burst[~on].any()


# ---------------------------------------------------------------- in a Player

def recording_context():
    events: list[tuple[str, dict]] = []
    return UnitContext(None, lambda name, event, data: events.append((event, data))), events


def play(player: Player, ticks: int) -> list[np.ndarray | None]:
    out = []
    for _ in range(ticks):
        frame = player.produce()
        out.append(None if frame is None else frame.pcm)
    return out


def test_player_plays_a_finite_script_exactly_then_finishes():
    ctx, events = recording_context()
    script = "400@-10;.5(.1/.06/1)"
    player = Player(ctx, "p", segments=[{"type": "tone", "script": script}])
    frames = play(player, 30)
    got = np.concatenate([f for f in frames if f is not None])
    assert len(got) == 4000 and np.array_equal(got, parse(script).render())
    assert frames[25] is None and player.finished
    names = [e for e, _ in events]
    assert names == ["Started", "PlaybackFinished"]
    assert events[0][1] == {"duration": 0.5}


def test_an_endless_script_plays_on_and_loop_changes_nothing():
    ctx, events = recording_context()
    for loop in (False, True):
        player = Player(ctx, "p", segments=[{"type": "tone", "script": "440@-19,480@-19;*(2/4/1+2)"}],
                        loop=loop)
        source = player.sources[0]
        assert isinstance(source, ToneSource) and len(source.pcm) == ENDLESS and not source.complete
        frames = play(player, 400)                  # 8 s
        assert all(f is not None for f in frames) and not player.finished
        got = np.concatenate(frames)
        assert np.array_equal(got, parse("440@-19,480@-19;*(2/4/1+2)").render(0, len(got)))
        assert len(source.pcm._blocks) <= 2        # never the whole signal
        assert player.duration is None
    assert "PlaybackFinished" not in [e for e, _ in events]


def test_loop_repeats_a_finite_script_sample_exact():
    ctx, events = recording_context()
    script = "700@-10;.3(.1/.1/1)"                  # 2400 samples: 15 frames
    player = Player(ctx, "p", segments=[{"type": "tone", "script": script}], loop=True)
    got = np.concatenate(play(player, 45))
    assert np.array_equal(got, np.tile(parse(script).render(), 3))
    assert not player.finished


def test_pause_resume_and_markers():
    ctx, events = recording_context()
    script = "400@-10;2(.2/.2/1)"
    player = Player(ctx, "p", segments=[{"type": "tone", "script": script}])
    player.command("add_marker", {"offset": 300})
    player.command("add_marker", {"offset": 100})
    first = play(player, 10)                        # 200 ms
    player.command("pause", {})
    paused = play(player, 20)
    player.command("resume", {})
    rest = play(player, 100)
    assert all(f is None for f in paused)
    out = np.concatenate([f for f in first + rest if f is not None])
    assert np.array_equal(out, parse(script).render())          # resumed where it was
    markers = [(d["offset"], i) for i, (e, d) in enumerate(events) if e == "PlaybackMarkerReached"]
    assert [m for m, _ in markers] == [100, 300]
    assert [e for e, _ in events][-1] == "PlaybackFinished"


def test_marker_reached_on_the_frame_that_plays_it():
    ctx, events = recording_context()
    player = Player(ctx, "p", segments=[{"type": "tone", "script": "400@-10;*(*/0/1)"}])
    player.command("add_marker", {"offset": 150})
    seen = []
    for tick in range(1, 12):
        player.produce()
        if any(e == "PlaybackMarkerReached" for e, _ in events) and not seen:
            seen.append(tick * FRAME_SAMPLES * 1000 // 8000)
    assert seen == [160]           # the first frame whose end is at or past 150 ms


def test_a_bad_script_is_an_error_event_and_the_player_finishes():
    ctx, events = recording_context()
    player = Player(ctx, "p", segments=[{"type": "tone", "script": "400@-10;1(1/1/2)"},
                                        {"type": "tone", "script": "600@-10;.1(*/0/1)"}])
    frames = [f for f in play(player, 10) if f is not None]
    assert events[0][0] == "Error" and "no frequency 2" in events[0][1]["error"]
    assert abs(dominant_frequency(np.concatenate(frames)) - 600) < 5 and len(frames) == 5
    assert events[-1][0] == "PlaybackFinished"
