"""ToneScript: call progress tones described as text, generated sample-exact.

ToneScript is the tone description syntax of Sipura / Linksys / Cisco SIP
devices that VoxEngine's ``createToneScriptPlayer`` takes::

    350@-19,440@-19;10(*/0/1+2)          US dial tone: 350 + 440 Hz for 10 s
    480@-19,620@-19;10(.5/.5/1+2)        US busy: 0.5 s on, 0.5 s off, for 10 s
    440@-19,480@-19;*(2/4/1+2)           US ringback, forever
    350@-19,440@-19;2(.1/.1/1+2);10(*/0/1+2)   stutter, then steady dial tone

The grammar (whitespace between tokens is ignored)::

    script     := freqs ";" section { ";" section }
    freqs      := freq "@" level { "," freq "@" level }
    section    := duration "(" cadence { "," cadence } ")"
    cadence    := on "/" off "/" parts
    parts      := index { "+" index }          1-based into freqs; "0" alone = silence
    duration   := seconds | "*"                 "*": forever (the last section only)
    on         := seconds | "*"                 "*": always on (to the section's end)
    off        := seconds
    seconds    := digits [ "." digits ] | "." digits
    level      := [ "+" | "-" ] seconds         dBm0

A section lasts ``duration`` seconds, cycling through its cadences in order
(each: ``on`` seconds of the sum of its frequencies, then ``off`` seconds of
silence) and cut exactly at its end, even in the middle of a cadence; the
sections play one after the other.

Levels: a sine at ``L`` dBm0 has the peak amplitude ``32768 * 10**((L - 3.17) / 20)``:
a full-scale sine is +3.17 dBm0, as in G.711 μ-law (ITU-T G.711 / G.168's
convention; A-law's +3.14 differs by 0.03 dB), so 0 dBm0 reads -6.18 dBFS
(RMS, where a full-scale sine is -3.01 dBFS). A sum that would exceed full
scale is clipped.

Timing is in samples: every boundary is ``round(seconds * rate)`` samples
from the start of its section (at 8 kHz every millisecond is exact). Each
frequency's phase runs on the script's own sample clock (``sin(2π f n / rate)``
for sample ``n`` of the script), so it is continuous across chunks, cadences
and sections. :meth:`ToneScript.render` gives any range of samples, so an
endless script is generated a piece at a time and never held whole.

:class:`ToneSource` is the player's segment (``{"type": "tone", "script": ...}``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

import numpy as np

from voxlab.media.player import Source

__all__ = ["ToneScript", "ToneScriptError", "Component", "Cadence", "Section", "parse",
           "ToneSource", "FULL_SCALE_DBM0", "ENDLESS"]

#: the level of a full-scale sine, in dBm0 (G.711 μ-law)
FULL_SCALE_DBM0 = 3.17
#: the length an endless script reports (``len()`` must be an int): 2**62 samples, 18 million years
ENDLESS = 1 << 62
_BLOCK = 4000               # samples generated at a time by ToneSource (0.5 s at 8 kHz)


class ToneScriptError(ValueError):
    """A script that cannot be parsed: the message says what was expected where."""

    def __init__(self, script: str, position: int, message: str) -> None:
        self.script = script
        self.position = position       # 0-based index into the script
        self.reason = message
        shown = script if len(script) <= 80 else script[:77] + "..."
        super().__init__(f"bad tone script {shown!r} at character {position + 1}: {message}")


@dataclass(frozen=True)
class Component:
    """One frequency of the script: ``freq`` Hz at ``level`` dBm0."""
    freq: Fraction
    level: float

    @property
    def amplitude(self) -> float:
        """Peak amplitude in int16 units."""
        return 32768.0 * 10.0 ** ((self.level - FULL_SCALE_DBM0) / 20.0)


@dataclass(frozen=True)
class Cadence:
    """``on`` samples (None: always on) of the components ``parts`` (0-based; empty:
    silence), then ``off`` samples of silence."""
    on: int | None
    off: int
    parts: tuple[int, ...]


@dataclass(frozen=True)
class Section:
    """``duration`` samples (None: forever) cycling through ``cadences``."""
    duration: int | None
    cadences: tuple[Cadence, ...]

    @cached_property
    def phases(self) -> tuple[np.ndarray, list[tuple[int, ...]], bool]:
        """The cycle as phase end offsets, each phase's components, and whether the
        last phase lasts forever (an always-on cadence: then there is no cycle)."""
        ends: list[float] = []
        parts: list[tuple[int, ...]] = []
        t = 0
        for c in self.cadences:
            if c.on is None:
                ends.append(math.inf)
                parts.append(c.parts)
                return np.array(ends), parts, True
            t += c.on
            ends.append(t)
            parts.append(c.parts)
            t += c.off
            ends.append(t)
            parts.append(())
        return np.array(ends), parts, False


@dataclass(frozen=True)
class ToneScript:
    text: str
    components: tuple[Component, ...]
    sections: tuple[Section, ...]
    rate: int = 8000

    @property
    def length(self) -> int | None:
        """Samples in all, None for an endless script."""
        total = 0
        for s in self.sections:
            if s.duration is None:
                return None
            total += s.duration
        return total

    @property
    def duration(self) -> float | None:
        n = self.length
        return None if n is None else n / self.rate

    def render(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start`` to ``stop`` (int16) of the script; ``stop`` defaults to the end
        (an endless script needs one). Past the end: nothing."""
        length = self.length
        if stop is None:
            if length is None:
                raise ValueError("an endless tone script has no end: give render() a stop")
            stop = length
        if length is not None:
            stop = min(stop, length)
        start = max(0, start)
        if stop <= start:
            return np.zeros(0, np.int16)
        n = np.arange(start, stop, dtype=np.int64)
        gains = np.zeros((len(n), len(self.components)), np.float64)
        s0 = 0
        for section in self.sections:
            s1 = math.inf if section.duration is None else s0 + section.duration
            lo, hi = max(start, s0), min(stop, s1)
            if lo < hi:
                self._gate(section, n[lo - start:hi - start] - s0, gains[lo - start:hi - start])
            if s1 >= stop:
                break
            s0 = s1
        out = np.zeros(len(n), np.float64)
        for i, comp in enumerate(self.components):
            g = gains[:, i]
            if not g.any():
                continue
            f = comp.freq
            period = self.rate * f.denominator
            # exact phase: (f * n / rate) mod 1 from integers, so sample 10**9 is as clean as sample 1
            turns = (n % period) * f.numerator % period
            out += g * (comp.amplitude * np.sin(2 * np.pi * turns / period))
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    @staticmethod
    def _gate(section: Section, t: np.ndarray, gains: np.ndarray) -> None:
        ends, parts, forever = section.phases
        if not forever:
            t = t % int(ends[-1])
        phase = np.searchsorted(ends, t, side="right")
        table = np.zeros((len(parts), gains.shape[1]), np.float64)
        for j, p in enumerate(parts):
            table[j, list(p)] = 1.0
        gains[:] = table[phase]

    def timeline(self, stop: int | None = None) -> list[tuple[int, int, tuple[int, ...]]]:
        """The script as ``(start, stop, parts)`` runs of samples (merged where the same
        components go on), up to ``stop`` (needed for an endless script): what the cadence
        promises, for tests and for the docs."""
        length = self.length
        if stop is None:
            if length is None:
                raise ValueError("an endless tone script has no end: give timeline() a stop")
            stop = length
        runs: list[tuple[int, int, tuple[int, ...]]] = []

        def add(a: int, b: int, p: tuple[int, ...]) -> None:
            b = min(b, stop)
            if b <= a:
                return
            if runs and runs[-1][2] == p and runs[-1][1] == a:
                runs[-1] = (runs[-1][0], b, p)
            else:
                runs.append((a, b, p))

        s0 = 0
        for section in self.sections:
            if s0 >= stop:
                break
            s1 = stop if section.duration is None else min(stop, s0 + section.duration)
            ends, parts, forever = section.phases
            cycle = s0
            while cycle < s1:
                begin = cycle
                for e, p in zip(ends, parts):
                    end = s1 if math.isinf(e) else cycle + int(e)
                    add(begin, min(end, s1), p)
                    if end >= s1:
                        break
                    begin = end
                if forever:
                    break
                cycle += int(ends[-1])
            s0 = s1
        return runs


# ---------------------------------------------------------------- parsing

class _Parser:
    def __init__(self, text: str, rate: int) -> None:
        self.text = text
        self.rate = rate
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> ToneScriptError:
        return ToneScriptError(self.text, self.pos if pos is None else pos, message)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def found(self) -> str:
        c = self.peek()
        return f"{c!r}" if c else "the end"

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise self.error(f"expected {what}, found {self.found()}")
        self.pos += 1

    def accept(self, char: str) -> bool:
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def number(self, what: str, signed: bool = False) -> tuple[Fraction, int]:
        self.skip()
        start = self.pos
        text = self.text
        i = self.pos
        if signed and i < len(text) and text[i] in "+-":
            i += 1
        digits = i
        while i < len(text) and text[i].isdigit():
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            while i < len(text) and text[i].isdigit():
                i += 1
        body = text[digits:i]
        if not body.strip(".") or body.count(".") > 1:
            raise self.error(f"expected {what}, found {self.found()}")
        self.pos = i
        return Fraction(text[start:i]), start

    def samples(self, what: str) -> int:
        value, _ = self.number(what)
        return int(value * self.rate + Fraction(1, 2))

    def parse(self) -> ToneScript:
        if not self.text.strip():
            raise self.error("the script is empty (try 350@-19,440@-19;10(*/0/1+2))", 0)
        components = [self.component()]
        while self.accept(","):
            components.append(self.component())
        self.expect(";", "',' and another frequency@level, or ';' and the cadence sections")
        sections = [self.section(len(components))]
        while self.accept(";"):
            if sections[-1].duration is None:
                raise self.error("nothing can follow a section that lasts forever ('*')")
            sections.append(self.section(len(components)))
        if self.peek():
            raise self.error(f"expected ';' and another section or the end, found {self.found()}")
        return ToneScript(self.text, tuple(components), tuple(sections), self.rate)

    def component(self) -> Component:
        freq, at = self.number("a frequency in Hz")
        if freq <= 0 or freq >= Fraction(self.rate, 2):
            raise self.error(f"a frequency must be above 0 and below {self.rate // 2} Hz "
                             f"(half the {self.rate} Hz sample rate), not {float(freq):g}", at)
        self.expect("@", "'@' and the level in dBm0 after the frequency")
        level, at = self.number("a level in dBm0 (such as -19)", signed=True)
        if level > 20:
            raise self.error(f"a level of {float(level):g} dBm0 is far above full scale "
                             f"(+{FULL_SCALE_DBM0} dBm0)", at)
        return Component(freq.limit_denominator(1000), float(level))

    def section(self, count: int) -> Section:
        start = self.pos
        if self.accept("*"):
            duration = None
        else:
            duration = self.samples("a section's duration in seconds (or '*' for forever)")
        self.expect("(", "'(' and the cadences of the section")
        cadences = [self.cadence(count)]
        while self.accept(","):
            if cadences[-1].on is None:
                raise self.error("a cadence after an always-on one ('*') could never play")
            cadences.append(self.cadence(count))
        self.expect(")", "',' and another cadence, or ')'")
        if all(c.on is not None and c.on + c.off == 0 for c in cadences) and duration != 0:
            raise self.error("the cadences of this section last 0 s in all", start)
        return Section(duration, tuple(cadences))

    def cadence(self, count: int) -> Cadence:
        if self.accept("*"):
            on = None
        else:
            on = self.samples("the on time in seconds (or '*' for always on)")
        self.expect("/", "'/' and the off time")
        off = self.samples("the off time in seconds")
        self.expect("/", "'/' and the frequencies to play (such as 1+2)")
        parts: list[int] = []
        while True:
            value, at = self.number("a frequency's number (1 for the first)")
            if value.denominator != 1 or "." in self.text[at:self.pos]:
                raise self.error("a frequency's number is a whole number", at)
            index = int(value)
            if index > count:
                have = "only frequency 1" if count == 1 else f"frequencies 1 to {count}"
                raise self.error(f"there is no frequency {index}: the script has {have} "
                                 "(and 0 for silence)", at)
            if index in parts or (index == 0 and parts) or (0 in parts):
                raise self.error("'0' (silence) stands alone" if index == 0 or 0 in parts
                                 else f"frequency {index} is listed twice", at)
            parts.append(index)
            if not self.accept("+"):
                break
        return Cadence(on, off, tuple(i - 1 for i in parts if i))


def parse(text: str, rate: int = 8000) -> ToneScript:
    """Parse a ToneScript; :class:`ToneScriptError` (a ValueError) says what is wrong where."""
    if not isinstance(text, str):
        raise TypeError(f"a tone script is a string, not {type(text).__name__}")
    return _Parser(text, int(rate)).parse()


# ---------------------------------------------------------------- the player's segment

class LazyTone:
    """The samples of a script as the player reads them (``len()`` and slices), generated
    a block at a time: an endless script reports :data:`ENDLESS` samples and is never
    held whole; a finite one is regenerated where the player loops back to it."""

    def __init__(self, script: ToneScript, block: int = _BLOCK) -> None:
        self.script = script
        length = script.length
        self.length = ENDLESS if length is None else length
        self.block = block
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.length

    def _get_block(self, k: int) -> np.ndarray:
        pcm = self._blocks.get(k)
        if pcm is None:
            pcm = self.script.render(k * self.block, (k + 1) * self.block)
            self._blocks[k] = pcm
            while len(self._blocks) > 2:
                self._blocks.popitem(last=False)
        return pcm

    def __getitem__(self, item: Any) -> np.ndarray:
        if not isinstance(item, slice) or item.step not in (None, 1):
            raise TypeError("a tone is read in slices (tone[a:b])")
        start, stop, _ = item.indices(self.length)
        if stop <= start:
            return np.zeros(0, np.int16)
        k0, k1 = start // self.block, (stop - 1) // self.block
        if k1 - k0 > 2:
            return self.script.render(start, stop)
        parts = [self._get_block(k) for k in range(k0, k1 + 1)]
        pcm = parts[0] if len(parts) == 1 else np.concatenate(parts)
        base = k0 * self.block
        return pcm[start - base:stop - base]


class ToneSource(Source):
    """A player segment ``{"type": "tone", "script": "350@-19,440@-19;10(*/0/1+2)"}``.

    A finite script is complete at once (its duration is known); an endless one is never
    complete (the player plays it until stopped, and ``loop`` makes no difference). A bad
    script fails the segment with the parser's message."""

    def __init__(self, ctx: Any, script: str) -> None:
        super().__init__(ctx)
        self.script_text = script
        self.tone: ToneScript | None = None

    def start(self) -> None:
        try:
            self.tone = parse(self.script_text)
        except (ValueError, TypeError) as exc:
            self.fail(str(exc))
            return
        self.pcm = LazyTone(self.tone)     # type: ignore[assignment]
        if self.tone.length is not None:
            self.finish()
        else:
            self._changed()

    def describe(self) -> str:
        return f"tone {self.script_text}"
