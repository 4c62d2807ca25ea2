"""The ASR facade (VoxEngine's ``ASR``): speech recognition of whatever is sent to it,
by pocketsphinx in the session's media worker (:mod:`voxlab.media.asr`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxlab.engine.budget import shielded
from voxlab.engine.events import ASREvents
from voxlab.engine.units import MediaFacade

if TYPE_CHECKING:
    from voxlab.engine.session import Session

_EVENTS = {
    "Started": ASREvents.Started,
    "CaptureStarted": ASREvents.CaptureStarted,
    "SpeechCaptured": ASREvents.SpeechCaptured,
    "InterimResult": ASREvents.InterimResult,
    "Result": ASREvents.Result,
    "Stopped": ASREvents.Stopped,
    "Error": ASREvents.ASRError,
}


class Asr(MediaFacade):
    """``VoxEngine.createASR()``: ``call.send_media_to(asr)`` and listen for ``ASREvents.Result``."""

    kind = "asr"

    def __init__(self, session: "Session", language: str = "en-US", phrases: list[str] | None = None,
                 single_utterance: bool = False, interim_results: bool = False,
                 name: str | None = None) -> None:
        if phrases is not None and (isinstance(phrases, str) or not all(isinstance(p, str) for p in phrases)):
            raise TypeError("phrases is a list of strings, e.g. ['yes', 'no']")
        self.phrases = list(phrases or [])
        self.state = "loading"
        self.last_result: str | None = None
        super().__init__(session, name, {"language": language, "phrases": self.phrases,
                                         "single_utterance": bool(single_utterance),
                                         "interim_results": bool(interim_results)})

    def _event_name(self, event: str) -> str | None:
        if event == "Started":
            self.state = "listening"
        elif event == "Stopped":
            self.state = "stopped"
        return _EVENTS.get(event)

    def _worker_event(self, event: str, data: dict) -> None:
        if event == "Result":
            self.last_result = data.get("text")
        super()._worker_event(event, data)

    @shielded
    def stop(self) -> None:
        """``stop()``: stop recognising (``Stopped``) and release the recogniser."""
        if self.closed:
            return
        self.media.command("stop")
        self.state = "stopped"
        # Closed after the Stopped event has come back, so it is delivered.
        self.session.engine.reactor.callLater(1.0, self._close)

    def describe(self) -> str:
        what = f" [{', '.join(self.phrases)}]" if self.phrases else " (dictation)"
        return f"{self.name} {self.state}{what} last={self.last_result!r}"
