"""``voxlab attach``: the terminal REPL into a live session (prompt_toolkit).

Multi-line Python input highlighted by Pygments, history kept in the data
dir, completion asked from the server (the live namespace), a bottom toolbar
with the session's summary refreshed every second, the session's event feed
printed above the prompt without disturbing the line being typed, Ctrl-D to
detach (the session keeps running). Ctrl-C while a cell runs (on the server)
says so and keeps waiting; a second one detaches.

Enter runs the input when it is a complete statement; inside a block (after
a line ending with ``:`` or an indented line) it adds a line, and an empty
line ends the block. Alt-Enter (Esc then Enter) always runs the input.
"""

from __future__ import annotations

import asyncio
import codeop
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from voxlab.console.client import AsyncConsoleClient, ConsoleClientError, Endpoint
from voxlab.console.views import summary_line

# A summary is asked for every second and answered at once by a healthy server; when one is
# this late, the server is busy (console code or a handler running up to its budget) or stuck.
STALE_AFTER = 3.0

# A cell's reply comes when its synchronous part ends, at the latest when its budget expires.
# When it is this much later still, the server is blocked in code the budget cannot stop.
BLOCKED_AFTER = 1.0

FEED_COLORS = {"sip": "34", "media": "35", "dtmf": "33;1", "event": "36", "log": "37",
               "error": "31;1", "session": "33", "console": "32"}


def input_is_complete(text: str) -> bool:
    """Should Enter run ``text`` (True) or start a new line (False)? Python REPL rules, for a whole cell."""
    if not text.strip():
        return True
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1].strip():
        return True                      # an empty line ends a block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = codeop.compile_command(text, "<input>", "exec")
        except (SyntaxError, ValueError, OverflowError):
            return True                  # let the server report the error
    if code is None:
        return False                     # unfinished: open bracket, 'if x:' ...
    last = lines[-1]
    if last[:1].isspace() or last.rstrip().endswith(":"):
        return False                     # still inside a block: an empty line ends it
    return True


def next_indent(line: str) -> str:
    indent = line[:len(line) - len(line.lstrip())]
    if line.rstrip().endswith(":"):
        indent += "    "
    return indent


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text


class AttachSession:
    """The state of one ``voxlab attach`` run."""

    def __init__(self, client: AsyncConsoleClient, color: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self.summary_asked: float | None = None     # when the unanswered summary request went out
        self.style = _Style(color)
        self.info: dict[str, Any] | None = None
        self.call: str | None = None
        self.ended = False
        self.lost: str | None = None
        self.prompt_session: Any = None
        self.budget: float | None = None            # an eval's budget on this server (attach reply)

    # -- output above the prompt
    def out(self, text: str) -> None:
        print(text, flush=True)

    def on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "feed":
            entry = event.get("entry", {})
            stamp = time.strftime("%H:%M:%S", time.localtime(entry.get("t", time.time())))
            k = entry.get("kind", "?")
            text = entry.get("text", "")
            self.out(f"{self.style('2', stamp)} {self.style(FEED_COLORS.get(k, '37'), f'{k:<7}')} {text}")
        elif kind == "output":
            # printed by an awaiting cell after its reply (each step's text at once)
            self.out(event.get("text", "").rstrip("\n"))
        elif kind == "deferred":
            if event.get("error"):
                self.out(self.style("31", f"Deferred #{event.get('n')} failed:\n{event['error'].rstrip()}"))
            else:
                self.out(f"Deferred #{event.get('n')} fired: {event.get('result')}")
        elif kind == "session_ended":
            self.ended = True
            self.info = event.get("summary") or self.info
            self.out(self.style("33;1", (
                f"*** session {event.get('session')} has ended ({event.get('reason')}). Its calls are "
                "gone; you can still inspect its namespace. Ctrl-D to leave.")))
        self._invalidate()

    def on_close(self, why: str) -> None:
        self.lost = why
        app = getattr(self.prompt_session, "app", None)
        if app is not None and app.is_running:
            app.exit(exception=EOFError())

    def _invalidate(self) -> None:
        app = getattr(self.prompt_session, "app", None)
        if app is not None and app.is_running:
            app.invalidate()

    # -- toolbar
    def toolbar(self) -> Any:
        from prompt_toolkit.formatted_text import FormattedText
        if self.info is None:
            return FormattedText([("class:bottom-toolbar", " voxlab")])
        text = " " + summary_line(self.info)
        if self.ended:
            text += "  [ENDED]"
        if self.lost:
            text += "  [DISCONNECTED]"
        elif self.summary_asked is not None and self.clock() - self.summary_asked >= STALE_AFTER:
            # The toolbar is re-drawn every second anyway: say that what it shows is old.
            text += f"  [STALE: no answer from the server for {self.clock() - self.summary_asked:.0f} s]"
        return FormattedText([("class:bottom-toolbar", text)])

    async def refresh_summary(self) -> None:
        while not self.client.closed:
            self.summary_asked = self.clock()
            try:
                reply = await self.client.request("summary")
                self.info = reply.get("session") or self.info
            except ConsoleClientError:
                return
            finally:
                self.summary_asked = None
            self._invalidate()
            await asyncio.sleep(1.0)

    # -- running a cell
    def _budget_text(self) -> str:
        return f"its budget is {self.budget:g} s" if self.budget else "it runs under the server's budget"

    async def run_cell(self, text: str) -> dict | None:
        """Send a cell and wait for its reply. Ctrl-C meanwhile does not stop the code (it runs in
        the server) nor the client: it says so and keeps waiting; a second Ctrl-C gives up and
        returns None (the caller detaches). Raises ConsoleClientError as ``request`` does."""
        loop = asyncio.get_running_loop()
        presses = asyncio.Queue()
        previous = signal.getsignal(signal.SIGINT)      # asyncio.run's: Ctrl-C cancels the client
        try:
            loop.add_signal_handler(signal.SIGINT, presses.put_nowait, None)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):     # not the main thread, no signals
            installed = False
        started = self.clock()
        reply = asyncio.ensure_future(self.client.request("eval", source=text))
        pressed = 0
        said_blocked = False
        press: asyncio.Future | None = None
        try:
            while True:
                press = asyncio.ensure_future(presses.get())
                timeout = None
                if not said_blocked and self.budget:
                    timeout = max(0.0, started + self.budget + BLOCKED_AFTER - self.clock())
                done, _ = await asyncio.wait({reply, press}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if reply in done:
                    return reply.result()
                if press not in done:            # no reply long after the budget: say why
                    said_blocked = True
                    self.out(self.style("33", (
                        f"... still running on the server after {self.clock() - started:.0f} s, past its "
                        f"budget of {self.budget:g} s: it must be inside one long call into C code, which "
                        "the budget cannot interrupt, and the server is blocked until it returns "
                        "(Ctrl-C twice detaches)")))
                    press.cancel()
                    continue
                pressed += 1
                if pressed == 1:
                    self.out(self.style("33", (
                        f"^C: the cell is still running on the server ({self._budget_text()}; "
                        f"{self.clock() - started:.0f} s so far); waiting for it... (Ctrl-C again to detach)")))
                    continue
                reply.cancel()
                return None
        finally:
            if press is not None:
                press.cancel()
            if installed:
                loop.remove_signal_handler(signal.SIGINT)
                signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)

    # -- output of an evaluation
    def show_result(self, reply: dict) -> None:
        output = reply.get("output") or ""
        if output:
            self.out(output.rstrip("\n"))
        if reply.get("error"):
            self.out(self.style("31", reply["error"].rstrip("\n")))
        if reply.get("result") is not None:
            self.out(reply["result"])


def _key_bindings():
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()

    @kb.add("enter")
    def _enter(event) -> None:
        buffer = event.current_buffer
        state = buffer.complete_state
        if state is not None and state.current_completion is not None:
            buffer.apply_completion(state.current_completion)
            return
        document = buffer.document
        if document.is_cursor_at_the_end and input_is_complete(buffer.text):
            if buffer.text.endswith("\n"):
                buffer.text = buffer.text.rstrip() + "\n"
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n" + next_indent(document.current_line_before_cursor))

    @kb.add("escape", "enter")
    def _run(event) -> None:
        event.current_buffer.validate_and_handle()

    return kb


def _completer(client: AsyncConsoleClient):
    from prompt_toolkit.completion import Completer, Completion

    class ServerCompleter(Completer):
        """Completions from the live namespace, asked from the server."""

        def get_completions(self, document, complete_event):
            return iter(())

        async def get_completions_async(self, document, complete_event):
            try:
                reply = await client.request("complete", source=document.text,
                                             cursor=document.cursor_position)
            except ConsoleClientError:
                return
            for item in reply.get("completions", []):
                yield Completion(item["text"], start_position=item.get("start", 0),
                                 display=item.get("display") or item["text"],
                                 display_meta=item.get("meta") or "")

    return ServerCompleter()


def _history(path: Path | None):
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


async def attach(endpoint: Endpoint, target: str | None, history_path: Path | None,
                 color: bool = True, history_feed: int = 10, wait: float = 0.0,
                 next_session: bool = False) -> int:
    """Run the attach REPL until Ctrl-D (returns 0) or a lost connection (returns 1)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.lexers import PygmentsLexer
    from prompt_toolkit.patch_stdout import patch_stdout
    from prompt_toolkit.styles import Style
    from pygments.lexers.python import PythonLexer

    try:
        client = await AsyncConsoleClient.connect(endpoint)
    except (ConsoleClientError, asyncio.TimeoutError) as exc:
        print(f"voxlab attach: {exc or 'no answer from the console'}", file=sys.stderr)
        return 2
    ui = AttachSession(client, color=color)
    client.on_event = ui.on_event
    client.on_close = ui.on_close
    if next_session:
        print("waiting for the next session to start (Ctrl-C to give up)...", flush=True)
    try:
        reply = await client.request("attach", target=target, next=next_session, wait=wait)
    except ConsoleClientError as exc:
        print(f"voxlab attach: {exc}", file=sys.stderr)
        await client.close()
        return 2
    ui.info = reply.get("session")
    ui.call = reply.get("call")
    ui.budget = reply.get("budget")
    ui.ended = (ui.info or {}).get("state") == "terminated"
    print(ui.style("1", reply.get("banner", "")), flush=True)

    session = PromptSession(
        message=lambda: "voxlab> " if not ui.ended else "voxlab (ended)> ",
        multiline=True,
        prompt_continuation=lambda width, line_number, is_soft_wrap: "... ".rjust(width),
        lexer=PygmentsLexer(PythonLexer),
        history=_history(history_path),
        completer=_completer(client),
        complete_while_typing=False,
        bottom_toolbar=ui.toolbar,
        refresh_interval=1.0,
        key_bindings=_key_bindings(),
        style=Style.from_dict({"bottom-toolbar": "bg:#222222 #aaaaaa noreverse"}),
        enable_history_search=False,
        mouse_support=False,
    )
    ui.prompt_session = session
    code = 0
    gave_up = False          # detached by Ctrl-C twice while a cell was still running
    with patch_stdout(raw=True):
        await client.request("watch", on=True, history=history_feed)
        refresher = asyncio.ensure_future(ui.refresh_summary())
        try:
            while True:
                try:
                    text = await session.prompt_async()
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if ui.lost:
                    break
                if not text.strip():
                    continue
                try:
                    result = await ui.run_cell(text)
                except ConsoleClientError as exc:
                    ui.out(ui.style("31", f"error: {exc}"))
                    if client.closed:
                        break
                    continue
                if result is None:
                    gave_up = True
                    break
                ui.show_result(result)
        finally:
            refresher.cancel()
    if ui.lost:
        print(f"voxlab attach: {ui.lost}", file=sys.stderr)
        code = 1
    elif gave_up:
        # The server is busy with the cell and would answer a detach only after it: just leave
        # (it logs the detach when it sees the connection closed).
        print(f"detached from {ui.info['id'] if ui.info else 'the session'} "
              f"({'it has ended' if ui.ended else 'it keeps running'}; the cell goes on running "
              "on the server, its result is not shown)")
    else:
        try:
            await asyncio.wait_for(client.request("detach"), 5)
        except (ConsoleClientError, asyncio.TimeoutError):
            pass
        print(f"detached from {ui.info['id'] if ui.info else 'the session'} "
              f"({'it has ended' if ui.ended else 'it keeps running'})")
    await client.close()
    return code


def run(endpoint: Endpoint, target: str | None, history_path: Path | None, color: bool | None = None,
        wait: float = 0.0, next_session: bool = False) -> int:
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        return asyncio.run(attach(endpoint, target, history_path, color=color, wait=wait,
                                  next_session=next_session))
    except KeyboardInterrupt:
        return 130
