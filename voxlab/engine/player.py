"""The Player facade (VoxEngine's ``Player``): a URL or file, speech, a tone script or a
sequence of them, played by a player unit in the session's media worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voxlab.engine.budget import shielded
from voxlab.engine.events import Event, PlayerEvents
from voxlab.engine.limits import LimitExceeded
from voxlab.engine.units import MediaFacade

if TYPE_CHECKING:
    from voxlab.engine.session import Session

_EVENTS = {
    "Started": PlayerEvents.Started,
    "PlaybackFinished": PlayerEvents.PlaybackFinished,
    "PlaybackMarkerReached": PlayerEvents.PlaybackMarkerReached,
    "Stopped": PlayerEvents.Stopped,
    "Error": PlayerEvents.Error,
}


class Player(MediaFacade):
    """Plays its segments once (or looping) into whatever it is sent to; pause, resume,
    stop and markers. Two players sent to one call: the second replaces the first."""

    kind = "player"

    def __init__(self, session: "Session", segments: list[dict], loop: bool = False,
                 progress_playback: bool = True, name: str | None = None) -> None:
        cap = session.limits.players
        live = sum(1 for u in session.units.values() if getattr(u, "kind", "") == "player"
                   and not u.closed)
        if live >= cap:
            raise LimitExceeded(f"at most {cap} players may exist at once in one session "
                                "(stop one first)")
        super().__init__(session, name, {"segments": segments, "loop": bool(loop),
                                         "progress": bool(progress_playback)})
        self.segments = segments
        self.loop = bool(loop)
        self.state = "created"      # created, playing, paused, finished, stopped
        self.on_finished: Any = None     # the call that plays it as its prompt (call.say)
        self._post(PlayerEvents.Created)

    def _event_name(self, event: str) -> str | None:
        if event == "Started":
            self.state = "paused" if self.state == "paused" else "playing"
        elif event == "PlaybackFinished":
            self.state = "finished"
            if self.on_finished is not None:
                self.on_finished(self)
        return _EVENTS.get(event)

    # -- VoxEngine's Player methods
    @shielded
    def pause(self) -> None:
        """``pause()``: hold the playback where it is (silence until ``resume``)."""
        self.media.command("pause")
        self.state = "paused"

    @shielded
    def resume(self) -> None:
        """``resume()``."""
        self.media.command("resume")
        if self.state == "paused":
            self.state = "playing"

    @shielded
    def stop(self) -> None:
        """``stop()``: end the playback (``PlayerEvents.Stopped``; no PlaybackFinished) and
        release the player."""
        if self.closed:
            return
        if self.state not in ("finished", "stopped"):
            self.state = "stopped"
            self.session.post(self, Event(PlayerEvents.Stopped, player=self))
        self._close()

    @shielded
    def add_marker(self, offset_ms: int) -> None:
        """``addMarker(offset)``: ``PlayerEvents.PlaybackMarkerReached`` once ``offset_ms`` of
        audio has been played."""
        offset = int(offset_ms)
        if offset < 0:
            raise ValueError("a marker's offset is in ms from the start, not negative")
        self.media.command("add_marker", offset=offset)

    @property
    def position(self) -> float:
        """Seconds played (as last reported by the worker, every 100 ms)."""
        return self.media.row[0] if self.media.row else 0.0

    @property
    def duration(self) -> float | None:
        """Seconds of audio in all, once it is all there (None while it arrives)."""
        return self.media.row[1] if len(self.media.row) > 1 else None

    def describe(self) -> str:
        d = self.duration
        what = ", ".join(_segment_text(s) for s in self.segments)
        return (f"{self.name} {self.state} {self.position:.1f}/{'?' if d is None else f'{d:.1f}'}s"
                f"{' loop' if self.loop else ''} [{what}]")


def _segment_text(segment: dict) -> str:
    kind = segment.get("type")
    if kind == "tts":
        text = segment.get("text", "")
        return f"tts {text[:30]!r}" + ("..." if len(text) > 30 else "")
    if kind == "tone":
        return f"tone {segment.get('script')!r}"
    if kind == "url":
        return f"url {segment.get('url')}"
    return f"{kind} {segment.get('path', '')}"


def segment_for(session: "Session", item: Any) -> dict:
    """One segment of a sequence player from what a scenario wrote: a dict
    (``{"type": "tts", "text": ...}``), or a string: ``tone:<script>``,
    an ``http(s)://`` URL, or a WAV path (relative to the scenario's folder)."""
    if isinstance(item, dict):
        segment = dict(item)
        kind = segment.get("type")
        if kind == "file" or (kind == "url" and not _is_url(segment.get("url", ""))):
            path = segment.pop("url", None) or segment.get("path")
            segment = {**segment, "type": "file", "path": str(session.resolve(path))}
        if segment.get("type") not in ("file", "url", "tts", "tone"):
            raise ValueError(f"a segment's type is file, url, tts or tone, got {segment.get('type')!r}")
        return segment
    if isinstance(item, str):
        if item.startswith("tone:"):
            from voxlab.media.tonescript import parse
            parse(item[5:])
            return {"type": "tone", "script": item[5:]}
        return url_segment(session, item)
    raise TypeError(f"not a player segment: {item!r}")


def url_segment(session: "Session", url_or_path: str) -> dict:
    """A URL is fetched by the worker; a path is checked here, so a typo fails in the
    handler that made it (the worker reads and decodes the file)."""
    if _is_url(url_or_path):
        return {"type": "url", "url": url_or_path}
    path = session.resolve(url_or_path.removeprefix("file://"))
    if not path.is_file():
        raise FileNotFoundError(f"no such audio file: {path}")
    return {"type": "file", "path": str(path)}


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def tts_segment(text: str, voice: str | None = None, rate: int | None = None) -> dict:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("say what? the text is empty")
    segment: dict[str, Any] = {"type": "tts", "text": text}
    if voice is not None:
        segment["voice"] = str(voice)
    if rate is not None:
        segment["rate"] = int(rate)
    return segment
