"""The ASR facade (VoxEngine's ``ASR``): speech recognition of what is sent to it, done by
an ``asr`` unit in the session's media worker (pocketsphinx, decoding in a thread pool).

``asr = VoxEngine.create_asr(phrases=["yes", "no"])``; ``call.send_media_to(asr)``;
``asr.add_event_listener(ASREvents.Result, lambda e: ... e.text, e.confidence)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    "Error": ASREvents.Error,
}


class Asr(MediaFacade):
    """A recogniser: ``Result`` (text, confidence) per utterance until ``stop()``
    (or after the first, with ``single_utterance``)."""

    kind = "asr"

    def __init__(self, session: "Session", language: str = "en-US", phrases: list[str] | None = None,
                 single_utterance: bool = False, interim_results: bool = False,
                 name: str | None = None) -> None:
        if isinstance(phrases, str):
            phrases = [phrases]
        self.language = language
        self.phrases = [str(p) for p in phrases] if phrases else None
        self.single_utterance = bool(single_utterance)
        self.interim_results = bool(interim_results)
        self.state = "starting"       # starting, listening, stopping, stopped, failed
        self.last_result: str | None = None
        self.last_confidence: float | None = None
        spec: dict[str, Any] = {"language": language, "phrases": self.phrases,
                                "single_utterance": self.single_utterance,
                                "interim_results": self.interim_results}
        super().__init__(session, name, spec)

    def _event_name(self, event: str) -> str | None:
        if event == "Started" and self.state == "starting":
            self.state = "listening"
        elif event == "Stopped":
            self.state = "stopped"
            self._close()
        elif event == "Error" and self.state == "starting":
            self.state = "failed"
            self._close()
        return _EVENTS.get(event)

    def _worker_event(self, event: str, data: dict) -> None:
        if event == "Result":
            self.last_result = data.get("text")
            self.last_confidence = data.get("confidence")
        super()._worker_event(event, data)

    def _input_options(self, source: Any, options: dict) -> None:
        if options:
            raise TypeError(f"an ASR takes no media options ({', '.join(options)})")

    def _media_failed(self, reason: str) -> None:
        if self.state not in ("stopped",):
            self.state = "failed"
        super()._media_failed(reason)

    @shielded
    def stop(self) -> None:
        """``stop()``: stop recognising; ``ASREvents.Stopped`` follows."""
        if self.state in ("starting", "listening"):
            self.state = "stopping"
            self.media.command("stop")

    def describe(self) -> str:
        what = f"phrases={self.phrases}" if self.phrases else "dictation"
        last = (f" last={self.last_result!r} ({self.last_confidence})"
                if self.last_result is not None else "")
        return f"{self.name} asr {self.state} {what}{last}"
