"""``voxlab phone``: builds the agent, its audio and its UI from the options, runs the
reactor, and stops cleanly on every way out.

Ways out, and what each does: the call of ``--dial`` ending (headless), Ctrl-C in the UI,
SIGINT, SIGTERM and SIGHUP all go through :meth:`PhoneApp.quit`: hang up (BYE or
CANCEL), unregister (``Expires: 0``), close the ``--audio-out`` WAV (complete at every
moment anyway: its header is rewritten after each write), stop the sound card, stop the
reactor. Exit status: 0, except 1 when a ``--dial`` call could not be set up
(rejected, no answer) and 2 for a usage or start-up error.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable

EXIT_OK, EXIT_CALL_FAILED, EXIT_USAGE = 0, 1, 2

__all__ = ["run", "PhoneApp", "EXIT_OK", "EXIT_CALL_FAILED", "EXIT_USAGE"]


def _want_ui(args: argparse.Namespace) -> bool:
    """The screen UI needs a terminal; ``--dial`` with an input file is a script."""
    if getattr(args, "headless", False):
        return False
    if args.dial and args.audio_in:
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def _install_reactor(ui: bool):
    """prompt_toolkit runs on asyncio: the UI shares one asyncio loop with Twisted.
    Headless runs on Twisted's default reactor."""
    if ui and "twisted.internet.reactor" not in sys.modules:
        import asyncio

        from twisted.internet import asyncioreactor

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor


def list_devices_command() -> int:
    from voxlab.phone.devices import AudioUnavailable, list_devices

    try:
        devices = list_devices()
    except AudioUnavailable as exc:
        print(f"voxlab phone: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not devices:
        print("no audio devices (PortAudio lists none)")
        return EXIT_OK
    print("  #  name  (host API; input channels, output channels, default rate)")
    for d in devices:
        print(d.line())
    return EXIT_OK


def _open_audio(args: argparse.Namespace, notice: Callable[[str], None]):
    """Source, sink, and the device object (or None) the options ask for."""
    from voxlab.phone.devices import AudioUnavailable, open_device
    from voxlab.phone.sources import NullSink, SilentSource, WavSink, WavSource

    source = WavSource(args.audio_in) if args.audio_in else None
    sink = WavSink(args.audio_out) if args.audio_out else None
    device = None
    if source is None or sink is None:
        try:
            device = open_device(args.device, want_input=source is None, want_output=sink is None)
        except AudioUnavailable as exc:
            notice(str(exc))
        else:
            notice(f"audio device: {device.describe()}")
    if source is None:
        source = device if device is not None else SilentSource()
    if sink is None:
        sink = device if device is not None else NullSink()
    return source, sink, device


def _config(args: argparse.Namespace):
    from voxlab.phone.agent import PhoneConfig, parse_hostport
    from voxlab.phone.offer import codec_order

    server = parse_hostport(args.server, 5060, "--server")
    local = parse_hostport(args.local, 0, "--local") if args.local else None
    if (args.user is None) != (args.password is None) and args.password is not None:
        raise ValueError("--password needs --user")
    codec_order(args.codec)
    if args.expires < 1:
        raise ValueError("--expires must be a positive number of seconds")
    return PhoneConfig(server=server, user=args.user, password=args.password, local=local,
                       codec=args.codec.upper(), auto_answer=args.auto_answer,
                       expires=args.expires,
                       hangup_on_input_end=bool(args.dial and args.audio_in))


class PhoneApp:
    """One run of ``voxlab phone``."""

    def __init__(self, reactor, args: argparse.Namespace, ui: bool) -> None:
        from voxlab.phone.agent import PhoneAgent

        self.reactor = reactor
        self.args = args
        self.ui_mode = ui
        self.status = EXIT_OK
        self.quitting = False
        self.ui = None
        self.reporter = None
        self.notices: list[str] = []
        config = _config(args)
        self.source, self.sink, self.device = _open_audio(args, self._notice)
        self.agent = PhoneAgent(reactor, config, self.source, self.sink)
        if self.device is not None:
            self.device.on_error = lambda message: reactor.callFromThread(
                self.agent.emit, "error", message)
        self.agent.listeners.append(self._event)

    def _notice(self, text: str) -> None:
        self.notices.append(text)

    # -- running
    def run(self) -> int:
        self._start_logging()
        if self.ui_mode:
            from voxlab.phone.ui import PhoneUI

            self.ui = PhoneUI(self.agent, self.reactor, on_quit=lambda: self.quit("ui"),
                              initial=self.args.dial or "")
        else:
            from voxlab.phone.headless import HeadlessReporter

            self.reporter = HeadlessReporter(self.agent, self.reactor)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._signalled)
        self.reactor.callWhenRunning(self._started)
        # Our own handlers above (Twisted's would stop the reactor at once, before the
        # BYE and the unregistration had gone out).
        self.reactor.run(installSignalHandlers=False)
        return self.status

    def _signalled(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.reactor.callFromThread(self.quit, name)

    def _started(self) -> None:
        from twisted.internet.error import CannotListenError

        for text in self.notices:
            self.agent.emit("audio", text)
        try:
            self.agent.start()
        except CannotListenError as exc:
            self.agent.emit("error", f"cannot listen on {exc.interface}:{exc.port}: "
                                     f"{getattr(exc.socketError, 'strerror', exc.socketError)}")
            self.status = EXIT_USAGE
            self._finish()
            return
        if self.reporter is not None:
            self.reporter.start()
        if self.ui is not None:
            self.ui.start()
        if self.args.dial:
            if self.ui is not None:
                self.ui.dial(self.args.dial)
                return
            try:
                self.agent.dial(self.args.dial)
            except (ValueError, RuntimeError) as exc:
                self.agent.emit("error", str(exc))
                self.status = EXIT_USAGE
                self.quit("error")

    def _event(self, event) -> None:
        if event.kind in ("ended", "failed", "missed") and self.device is not None and self.device.frames:
            d = self.device
            self.agent.emit("audio", f"device ran {d.frames} periods ({d.paced} paced); "
                                     f"mic queue {_drift(d.capture)}; speaker queue {_drift(d.playout)}")
        # Headless --dial: the phone's job is that one call.
        if self.ui is None and self.args.dial and event.kind in ("ended", "failed"):
            if event.kind == "failed" and self.status == EXIT_OK:
                self.status = EXIT_CALL_FAILED
            self.reactor.callLater(0, self.quit, "call over")

    def quit(self, why: str = "") -> None:
        """Hang up, unregister, close files and devices, stop the reactor (once)."""
        if self.quitting:
            return
        self.quitting = True
        if why.startswith("SIG"):
            self.agent.emit("info", f"{why}: stopping")
        d = self.agent.stop()
        d.addBoth(lambda _: self._finish())

    def _finish(self) -> None:
        for closer in (getattr(self.sink, "close", None), getattr(self.device, "close", None)):
            if closer is not None:
                try:
                    closer()
                except Exception:
                    pass
        if self.reporter is not None:
            self.reporter.stop()
        if self.ui is not None:
            d = self.ui.stop()
            d.addBoth(lambda _: self._stop_reactor())
        else:
            self._stop_reactor()

    def _stop_reactor(self) -> None:
        if self.reactor.running:
            self.reactor.stop()

    # -- Twisted's log: warnings and errors of the SIP stack reach the user
    def _start_logging(self) -> None:
        from twisted.logger import LogLevel, formatEvent, globalLogBeginner

        def observer(event) -> None:
            level = event.get("log_level")
            if level is None or level < LogLevel.warn:
                return
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += f": {failure.getErrorMessage()}"
            if self.ui is not None:
                self.agent.emit("log", text)
            else:
                print(f"voxlab phone: {text}", file=sys.stderr, flush=True)

        globalLogBeginner.beginLoggingTo([observer], discardBuffer=True,
                                         redirectStandardIO=False)


def _drift(buffer) -> str:
    s = buffer.stats()
    return f"dropped {s['dropped']}, repeated {s['repeated']}, underruns {s['underruns']}"


def run(args: argparse.Namespace) -> int:
    """``voxlab phone`` with parsed options; the exit status."""
    if args.list_devices:
        return list_devices_command()
    ui = _want_ui(args)
    try:
        reactor = _install_reactor(ui)
        app = PhoneApp(reactor, args, ui)
    except ValueError as exc:
        print(f"voxlab phone: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return app.run()
