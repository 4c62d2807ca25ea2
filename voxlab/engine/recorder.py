"""The Recorder facade (VoxEngine's ``Recorder``): a WAV recording, in the data directory,
of what is sent to it, made by a recorder unit in the session's media worker.

``VoxEngine.create_recorder()`` records its one input (``call.send_media_to(rec)``
records the caller, ``conf.send_media_to(rec)`` a conference's mix);
``call.record()`` (:func:`record_call`) records a call and stops when it ends;
with ``stereo=True`` the left channel is what the caller says and the right
what the call hears.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import TYPE_CHECKING, Any

from voxlab.engine.budget import shielded
from voxlab.engine.events import CallEvents, RecorderEvents
from voxlab.engine.mediaplane import RemoteEndpoint
from voxlab.engine.units import MediaFacade, media_unit_of, send_media

if TYPE_CHECKING:
    from voxlab.engine.call import Call
    from voxlab.engine.session import Session

_EVENTS = {
    "Started": RecorderEvents.Started,
    "Stopped": RecorderEvents.Stopped,
    "Error": RecorderEvents.Error,
}

_counter = itertools.count(1)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _file_stem(session: "Session", name: str | None) -> str:
    """A file name used once: session id, a counter and the time (and the name, if any)."""
    stem = f"{session.id}-{next(_counter)}-{time.strftime('%Y%m%d-%H%M%S')}"
    if name:
        stem += "-" + (_SAFE.sub("_", str(name)).strip("._")[:60] or "rec")
    return stem


def _endpoint_of(source: Any) -> RemoteEndpoint | None:
    """The RTP endpoint of a call (or the endpoint itself), else None."""
    unit = getattr(source, "media", source)
    return unit if isinstance(unit, RemoteEndpoint) else None


class Recorder(MediaFacade):
    """Records what is sent to it until ``stop()`` (or its call ends, for ``call.record()``);
    ``mute()`` writes silence without detaching anything. ``path`` is the WAV file."""

    kind = "recorder"

    def __init__(self, session: "Session", name: str | None = None, stereo: bool = False,
                 call: "Call | None" = None) -> None:
        stem = _file_stem(session, name)
        spec: dict[str, Any] = {"file": stem, "stereo": bool(stereo)}
        endpoint = _endpoint_of(call) if call is not None else None
        if endpoint is not None:
            spec["stop_with"] = endpoint.wire
            if stereo:
                spec["call"] = endpoint.wire
        self.stereo = bool(stereo)
        self.call = call
        self._listening = endpoint       # whose heard audio is the right channel
        self.state = "starting"          # starting, recording, stopping, stopped, failed
        self.muted = False
        self.url: str | None = None      # where the API serves the file (once it has a path)
        self.started_at = time.time()
        self.duration_at_stop: float | None = None
        self._data_duration: float | None = None
        data_dir = session.engine.data_dir
        self.path: str | None = str(data_dir / "recordings" / f"{stem}.wav") if data_dir else None
        super().__init__(session, name, spec)

    # -- events from the worker
    def _event_name(self, event: str) -> str | None:
        if event == "Started":
            self.state = "recording" if self.state == "starting" else self.state
        elif event == "Stopped":
            self.state = "stopped"
            self.duration_at_stop = self._data_duration
            history = self.session.engine.history
            if history is not None and self.path:
                history.recording(self.session.id, self.call.id if self.call is not None else None,
                                  self.path, self.started_at, self.duration_at_stop, None)
            self._close()               # Stopped is the unit's last word: release it
        elif event == "Error" and self.state == "starting":
            self.state = "failed"       # it was never made: nothing to stop
            self._close()
        return _EVENTS.get(event)

    def _worker_event(self, event: str, data: dict) -> None:
        if data.get("path"):
            self.path = data["path"]
            self.url = f"{self.session.engine.http_base}/api/recordings/{os.path.basename(self.path)}"
        if "url" in data:
            data = {**data, "url": self.url}
        self._data_duration = data.get("duration")
        super()._worker_event(event, data)

    def _media_failed(self, reason: str) -> None:
        if self.state in ("starting", "recording", "stopping"):
            self.state = "failed"
        super()._media_failed(reason)

    def _input_options(self, source: Any, options: dict) -> None:
        """Something was sent to the recorder: for a stereo one, the right channel is what
        that call hears (silence for a source that is not a call)."""
        if options:
            raise TypeError(f"a recorder takes no media options ({', '.join(options)})")
        if not self.stereo:
            return
        endpoint = _endpoint_of(source)
        if endpoint is not self._listening:
            self._listening = endpoint
            self.media.command("listen", call=endpoint.wire if endpoint is not None else None)

    # -- VoxEngine's Recorder methods
    @shielded
    def stop(self) -> None:
        """``stop()``: end the recording (the file is complete); ``RecorderEvents.Stopped``
        follows with its duration and path."""
        if self.state in ("starting", "recording"):
            self.state = "stopping"
            self.media.command("stop")

    @shielded
    def mute(self, do_mute: bool = True) -> None:
        """``mute(doMute)``: write silence (``True``) or the audio again (``False``); the
        recording goes on and the routes stay as they are."""
        self.muted = bool(do_mute)
        self.media.command("mute", on=self.muted)

    @shielded
    def unmute(self) -> None:
        """``mute(False)``."""
        self.mute(False)

    # -- what the console shows
    @property
    def duration(self) -> float:
        """Seconds recorded (final once stopped; else as last reported, every 100 ms)."""
        if self.duration_at_stop is not None:
            return self.duration_at_stop
        return self.media.row[0] if self.media.row else 0.0

    def describe(self) -> str:
        state = "muted" if self.muted and self.state == "recording" else self.state
        return (f"{self.name} {state} {self.duration:.1f}s{' stereo' if self.stereo else ''}"
                f"{' muted' if self.muted and state != 'muted' else ''} -> {self.path or '?'}")


def record_call(call: "Call", stereo: bool = False, name: str | None = None) -> Recorder:
    """``call.record()``: a recorder of ``call`` (stereo: the caller left, what the call hears
    right) that stops, with ``RecorderEvents.Stopped``, when the call ends."""
    media_unit_of(call)         # ValueError for a call not answered yet, before any file is made
    recorder = Recorder(call.session, name=name, stereo=stereo, call=call)
    # The call's audio is the recorder's input. A non-RTP sink also puts the call's packets
    # in its jitter buffer, so an echoed or bridged call (relayed on arrival) is recorded too.
    send_media(call.session, call, recorder)

    def ended(_event: Any) -> None:
        # The worker stops the recorder the tick after the call's endpoint closes; this is
        # for a call whose endpoint is not in the recorder's worker.
        recorder.stop()

    call.add_event_listener(CallEvents.Disconnected, ended)
    call.add_event_listener(CallEvents.Failed, ended)
    return recorder
