"""Event names (VoxEngine's AppEvents and CallEvents) and the listener registry of event targets."""

from __future__ import annotations

from typing import Any, Callable


class AppEvents:
    """Events of the application (the session): ``VoxEngine.add_event_listener(AppEvents.X, fn)``."""

    Started = "AppEvents.Started"
    CallAlerting = "AppEvents.CallAlerting"
    HttpRequest = "AppEvents.HttpRequest"
    Terminating = "AppEvents.Terminating"
    Terminated = "AppEvents.Terminated"


class CallEvents:
    """Events of one call (leg): ``call.add_event_listener(CallEvents.X, fn)``."""

    Connected = "CallEvents.Connected"
    Ringing = "CallEvents.Ringing"
    AudioStarted = "CallEvents.AudioStarted"
    Disconnected = "CallEvents.Disconnected"
    Failed = "CallEvents.Failed"
    ToneReceived = "CallEvents.ToneReceived"
    PlaybackStarted = "CallEvents.PlaybackStarted"
    PlaybackFinished = "CallEvents.PlaybackFinished"
    InfoReceived = "CallEvents.InfoReceived"
    MessageReceived = "CallEvents.MessageReceived"
    OnHold = "CallEvents.OnHold"
    OffHold = "CallEvents.OffHold"
    BlindTransferRequested = "CallEvents.BlindTransferRequested"


class PlayerEvents:
    """Events of a player (``create_url_player``, ``create_tts_player``, ``call.say`` ...)."""

    Created = "PlayerEvents.Created"
    Started = "PlayerEvents.Started"
    PlaybackFinished = "PlayerEvents.PlaybackFinished"
    PlaybackMarkerReached = "PlayerEvents.PlaybackMarkerReached"
    Stopped = "PlayerEvents.Stopped"
    Error = "PlayerEvents.Error"


class RecorderEvents:
    """Events of a recorder (``create_recorder``, ``call.record``)."""

    Started = "RecorderEvents.Started"
    Stopped = "RecorderEvents.Stopped"
    Error = "RecorderEvents.Error"


class ConferenceEvents:
    """Events of a conference (``create_conference``)."""

    Started = "ConferenceEvents.Started"
    Stopped = "ConferenceEvents.Stopped"
    EndpointAdded = "ConferenceEvents.EndpointAdded"
    EndpointRemoved = "ConferenceEvents.EndpointRemoved"
    EndpointUpdated = "ConferenceEvents.EndpointUpdated"
    ConferenceError = "ConferenceEvents.ConferenceError"


class ASREvents:
    """Events of a speech recogniser (``create_asr``)."""

    Started = "ASREvents.Started"
    CaptureStarted = "ASREvents.CaptureStarted"
    SpeechCaptured = "ASREvents.SpeechCaptured"
    InterimResult = "ASREvents.InterimResult"
    Result = "ASREvents.Result"
    Stopped = "ASREvents.Stopped"
    Error = "ASREvents.ASRError"
    ASRError = Error


class WebSocketEvents:
    """Events of a WebSocket streaming unit (``create_websocket``)."""

    OPEN = "WebSocketEvents.OPEN"
    MESSAGE = "WebSocketEvents.MESSAGE"
    CLOSE = "WebSocketEvents.CLOSE"
    ERROR = "WebSocketEvents.ERROR"
    MEDIA_STARTED = "WebSocketEvents.MEDIA_STARTED"
    MEDIA_ENDED = "WebSocketEvents.MEDIA_ENDED"
    MARK = "WebSocketEvents.MARK"      # playout reached a mark the server sent (voxlab's addition)


class Event:
    """What a handler receives: ``name`` plus the event's fields as attributes (``e.call``, ``e.tone``, ...)."""

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = name
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k != "name")
        return f"<{self.name} {fields}>"


Handler = Callable[[Event], Any]


class EventTarget:
    """Something handlers listen on (VoxEngine itself, a Call, a Player ...)."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Handler]] = {}

    def add_event_listener(self, event: str, handler: Handler) -> None:
        """``addEventListener``: call ``handler(e)`` each time ``event`` happens."""
        if not isinstance(event, str) or "." not in event:
            raise TypeError(f"not an event name: {event!r} (use e.g. CallEvents.Connected)")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        self._listeners.setdefault(event, []).append(handler)

    def remove_event_listener(self, event: str, handler: Handler | None = None) -> None:
        """``removeEventListener``: without a handler, removes every listener of ``event``."""
        if handler is None:
            self._listeners.pop(event, None)
            return
        handlers = self._listeners.get(event, [])
        if handler in handlers:
            handlers.remove(handler)

    def listeners(self, event: str) -> list[Handler]:
        return list(self._listeners.get(event, ()))
