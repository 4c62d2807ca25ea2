"""The phone's terminal screen (prompt_toolkit, full screen, no mouse needed).

    voxlab phone · alice@127.0.0.1 registered (expires in 9:32) · SIP udp 127.0.0.1:40312
      CONNECTED  sip:echo@127.0.0.1:5060  00:12  PCMU
      mic      [##############......]  -12 dBFS
      speaker  [###########.........]  -18 dBFS
      RTP      sent 600  received 598  lost 0  late 0  jitter 1.2 ms
    Dial: echo
    ... the latest events ...
    Enter dial · a answer · r reject · h hang up · 0-9*# DTMF · m mute · o hold · Ctrl-C quit

Keys: with no call, typing edits the destination and Enter dials it. While a call
rings in, ``a`` answers and ``r`` rejects (``h`` too). During a call the destination
line is read-only and ``0``-``9`` ``*`` ``#`` send DTMF, ``h`` hangs up, ``m`` mutes the
microphone, ``o`` holds and resumes. Ctrl-C quits (hanging up and unregistering first).

prompt_toolkit runs on asyncio, and so does Twisted here (the asyncio reactor): one loop,
one thread, and the screen is redrawn four times a second from the agent's state.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.layout import HSplit, Layout, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.layout.dimension import Dimension
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.styles import Style
from twisted.internet import defer

from voxlab.phone.agent import PhoneAgent, PhoneEvent, format_duration

METER_CELLS = 24
METER_FLOOR = -60.0          # dBFS at the left end of a meter
EVENT_LINES = 8
KEYS_HELP = ("Enter dial · a answer · r reject · h hang up · 0-9*# DTMF · m mute · o hold · "
             "Ctrl-C quit")

STYLE = Style.from_dict({
    "title": "bold reverse",
    "state.connected": "bold ansigreen",
    "state.ringing": "bold ansiyellow",
    "state.incoming": "bold ansiyellow blink",
    "state.calling": "bold ansicyan",
    "state.idle": "bold",
    "notice": "bold ansiyellow reverse",
    "meter.on": "ansigreen",
    "meter.hot": "ansired",
    "meter.off": "ansibrightblack",
    "dim": "ansibrightblack",
    "help": "reverse",
    "event.error": "ansired",
    "event.failed": "ansired",
    "event.missed": "ansiyellow",
})

__all__ = ["PhoneUI", "meter"]


def meter(db: float, cells: int = METER_CELLS) -> tuple[int, int]:
    """How many cells of a level meter are lit for ``db`` dBFS: (lit, hot), where hot
    counts the lit ones above -6 dBFS."""
    span = -METER_FLOOR
    lit = int(round(max(0.0, min(1.0, (db - METER_FLOOR) / span)) * cells))
    hot_from = int(round((-6.0 - METER_FLOOR) / span * cells))
    return lit, max(0, lit - hot_from)


class PhoneUI:
    """The full-screen UI of one phone."""

    def __init__(self, agent: PhoneAgent, reactor, on_quit: Callable[[], None],
                 initial: str = "") -> None:
        self.agent = agent
        self.reactor = reactor
        self.on_quit = on_quit
        self.quitting = False
        self.events: list[PhoneEvent] = []
        agent.listeners.append(self._event)
        busy = Condition(lambda: self.agent.call is not None or self.quitting)
        self.buffer = Buffer(multiline=False, read_only=busy, accept_handler=self._accept)
        self.buffer.text = initial
        self.buffer.cursor_position = len(initial)
        self.app = Application(layout=self._layout(), key_bindings=self._keys(), style=STYLE,
                               full_screen=True, mouse_support=False, refresh_interval=0.25)
        self._future: asyncio.Future | None = None

    # -- lifecycle
    def start(self) -> None:
        self._future = asyncio.ensure_future(self.app.run_async(handle_sigint=False))
        self._future.add_done_callback(self._exited)

    def stop(self) -> defer.Deferred:
        """Leave the screen (the terminal is restored); fires when it is."""
        self.quitting = True
        if self._future is None or self._future.done():
            return defer.succeed(None)
        if self.app.is_running:
            self.app.exit()
        return defer.Deferred.fromFuture(self._future).addErrback(lambda f: None)

    def _exited(self, future: asyncio.Future) -> None:
        # The application ended without being asked (an error): stop the phone too.
        if not self.quitting:
            self.quitting = True
            self.on_quit()

    def dial(self, destination: str) -> None:
        self.buffer.text = destination
        self._dial(destination)

    # -- events
    def _event(self, event: PhoneEvent) -> None:
        self.events.append(event)
        del self.events[:-100]
        if event.kind == "incoming":
            self.app.output.bell()
        self.app.invalidate()

    # -- input
    def _accept(self, buffer: Buffer) -> bool:
        self._dial(buffer.text)
        return True                      # keep the text: the next call is one Enter away

    def _dial(self, text: str) -> None:
        if not text.strip() or self.agent.call is not None:
            return
        try:
            self.agent.dial(text.strip())
        except (ValueError, RuntimeError) as exc:
            self.agent.emit("error", str(exc))

    def _keys(self) -> KeyBindings:
        kb = KeyBindings()
        agent = self.agent
        ringing = Condition(lambda: agent.call is not None and agent.call.state == "incoming")
        in_call = Condition(lambda: agent.call is not None and agent.call.state != "incoming")
        connected = Condition(lambda: agent.call is not None and agent.call.state == "connected")

        @kb.add("c-c")
        @kb.add("c-q")
        def _quit(event) -> None:
            if not self.quitting:
                self.quitting = True
                self.on_quit()

        @kb.add("a", filter=ringing)
        def _answer(event) -> None:
            agent.answer()

        @kb.add("r", filter=ringing)
        @kb.add("h", filter=ringing)
        def _reject(event) -> None:
            agent.reject()

        @kb.add("h", filter=in_call)
        def _hangup(event) -> None:
            agent.hangup()

        @kb.add("m", filter=connected)
        def _mute(event) -> None:
            agent.toggle_mute()

        @kb.add("o", filter=connected)
        def _hold(event) -> None:
            agent.toggle_hold()

        for key in "0123456789*#":
            @kb.add(key, filter=connected)
            def _digit(event, key=key) -> None:
                agent.send_digits(key)

        return kb

    # -- drawing
    def _layout(self) -> Layout:
        status = Window(FormattedTextControl(self._status), height=Dimension.exact(6),
                        wrap_lines=False)
        dial = Window(BufferControl(self.buffer, input_processors=[BeforeInput(self._prompt)]),
                      height=1)
        events = Window(FormattedTextControl(self._events), wrap_lines=False)
        return Layout(HSplit([
            Window(FormattedTextControl(self._title), height=1),
            status,
            Window(height=1, char="─", style="class:dim"),
            dial,
            Window(height=1, char="─", style="class:dim"),
            events,
            Window(FormattedTextControl([("class:help", " " + KEYS_HELP + " ")]), height=1),
        ]), focused_element=dial)

    def _prompt(self):
        if self.agent.call is not None:
            return [("class:dim", "Dial: ")]
        return [("bold", "Dial: ")]

    def _title(self):
        agent = self.agent
        parts = ["voxlab phone"]
        reg = agent.registration
        if reg is not None:
            who = f"{reg.user}@{reg.domain}"
            if reg.state == "registered":
                parts.append(f"{who} registered (expires in {format_duration(reg.expires_in)})")
            elif reg.state == "failed":
                parts.append(f"{who} NOT registered: {reg.reason}")
            else:
                parts.append(f"{who} {reg.state}")
        else:
            parts.append(f"server {agent.config.server[0]}:{agent.config.server[1]}")
        if agent.sip.port:
            parts.append(f"SIP udp {agent.host}:{agent.sip.port}")
        return [("class:title", " " + " · ".join(parts) + " ")]

    def _status(self):
        agent = self.agent
        call = agent.call
        out: list[tuple[str, str]] = []
        if call is None:
            last = agent.last_call
            out.append(("class:state.idle", "  IDLE"))
            if last is not None:
                out.append(("class:dim", f"   last call: {last.remote}, "
                                         f"{format_duration(last.duration)} ({last.end_reason})"))
            out.append(("", "\n"))
            if self.quitting:
                out.append(("class:dim", "  stopping...\n"))
            else:
                out.append(("class:dim", "  type a destination (a scenario name such as echo, or "
                                         "sip:user@host:port) and press Enter\n"))
            return out
        state = call.state
        label = {"calling": "CALLING", "ringing": "RINGING", "incoming": "INCOMING",
                 "answering": "ANSWERING", "connected": "CONNECTED"}.get(state, state.upper())
        style = {"answering": "calling"}.get(state, state)
        out.append((f"class:state.{style}", f"  {label}"))
        out.append(("", f"  {call.remote}"))
        if state == "connected":
            out.append(("bold", f"  {format_duration(call.duration)}"))
            out.append(("", f"  {call.codec}"))
            if call.audio.muted:
                out.append(("class:notice", " MUTED "))
            if call.on_hold:
                out.append(("class:notice", " ON HOLD "))
            if call.remote_hold:
                out.append(("class:notice", " HELD BY THE FAR END "))
        out.append(("", "\n"))
        if state == "incoming":
            out.append(("class:notice", f"  Incoming call from {call.remote}:  a answer   r reject  "))
            out.append(("", "\n"))
        a = call.audio
        out += self._meter_line("mic", a.mic_db if a.active else None)
        out += self._meter_line("speaker", a.speaker_db if a.active else None)
        s = a.stats
        out.append(("", f"  {'RTP':<8} {s.line()}  DTMF sent {s.dtmf_sent} received "
                        f"{s.dtmf_received}\n"))
        return out

    def _meter_line(self, name: str, db: float | None):
        if db is None:
            return [("", f"  {name:<8} "), ("class:meter.off", "·" * METER_CELLS), ("", "\n")]
        lit, hot = meter(db)
        return [("", f"  {name:<8} ["), ("class:meter.on", "#" * (lit - hot)),
                ("class:meter.hot", "#" * hot), ("class:meter.off", "." * (METER_CELLS - lit)),
                ("", f"] {db:6.1f} dBFS\n")]

    def _events(self):
        out = []
        for e in self.events[-EVENT_LINES:]:
            stamp = time.strftime("%H:%M:%S", time.localtime(e.at))
            out.append(("class:dim", f" {stamp} "))
            out.append((f"class:event.{e.kind}", f"{e.kind}: {e.text}\n"))
        return out
