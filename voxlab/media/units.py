"""Media units that live in a media worker and talk to their facade in the engine.

A :class:`WorkerUnit` is a :class:`~voxlab.media.graph.MediaUnit` made by
name from a JSON spec (``OpenUnit``), told what to do by named operations
(``UnitCommand``: ``pause``, ``stop``, ``mute`` ...) and reporting what
happens as named events with JSON data (``UnitEvent``: ``Started``,
``PlaybackFinished``, ``Result`` ...). The worker knows nothing of what the
kinds mean: each kind is a class in its own module, listed in :data:`KINDS`,
imported the first time a unit of that kind is made.

What a unit may use of its worker is its :class:`UnitContext`: the reactor
(for timers, subprocesses, sockets: never block it), a thread pool for work
that must not cost a tick (decoding speech, say), the data directory and a
cache of decoded audio.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from voxlab.media.graph import MediaUnit

Emit = Callable[[str, str, dict], None]

#: kind -> "module:Class"; a kind's module is imported only when first used.
KINDS: dict[str, str] = {
    "player": "voxlab.media.player:Player",
    "recorder": "voxlab.media.recorder:Recorder",
    "conference": "voxlab.media.conference:Conference",
    "asr": "voxlab.media.asr:Asr",
    "websocket": "voxlab.media.wsstream:WebSocketStream",
    "link": "voxlab.media.link:LinkEnd",
}


class UnitError(Exception):
    """A unit cannot be made, or cannot do what it was told: the facade gets an ``Error`` event."""


class UnitContext:
    """What a worker unit may use of the worker it lives in."""

    def __init__(self, reactor: Any, emit: Emit, data_dir: Path | None = None,
                 threadpool: ThreadPool | None = None) -> None:
        self.reactor = reactor
        self._emit = emit
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._threadpool = threadpool
        self.cache: dict[Any, Any] = {}        # shared by the units of one worker (decoded audio, TTS)
        self.units: dict[str, MediaUnit] = {}  # the worker's units by wire name (links find their peer)

    def emit(self, name: str, event: str, data: dict | None = None) -> None:
        self._emit(name, event, data or {})

    def in_thread(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        """Run ``fn`` in the worker's thread pool; the Deferred fires in the reactor thread."""
        if self._threadpool is None:
            self._threadpool = ThreadPool(minthreads=0, maxthreads=4, name="media-units")
            self._threadpool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self._threadpool.stop)
        return threads.deferToThreadPool(self.reactor, self._threadpool, fn, *args, **kw)


class WorkerUnit(MediaUnit):
    """Base of the units made by kind: spec in, operations in, events out.

    Subclasses take their spec's fields as keyword arguments, define
    ``op_<name>(**args)`` for each operation their facade may send, and call
    :meth:`emit` for what their facade must hear. :meth:`close` is called
    when the unit is removed (files closed, sockets shut, threads told)."""

    def __init__(self, ctx: UnitContext, name: str) -> None:
        super().__init__(name)
        self.ctx = ctx

    def emit(self, event: str, **data: Any) -> None:
        self.ctx.emit(self.name, event, data)

    def command(self, op: str, args: dict) -> None:
        method = getattr(self, f"op_{op}", None)
        if method is None:
            raise UnitError(f"{self.kind} has no operation {op!r}")
        method(**args)

    def stats_row(self) -> list | None:
        """What the facade shows of the unit (position, duration, state ...), or None."""
        return None

    def close(self) -> None:
        pass


def make_by_name(registry: dict[str, str], kind: Any, what: str, *args: Any, **spec: Any) -> Any:
    """An instance of the class ``registry[kind]`` names ("module:Class", imported when first
    used) made with ``args`` and ``spec``; UnitError when the kind or the spec is bad."""
    target = registry.get(kind)
    if target is None:
        raise UnitError(f"unknown {what} {kind!r} (one of {', '.join(registry)})")
    module, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    try:
        return cls(*args, **spec)
    except TypeError as exc:
        raise UnitError(f"bad {what} {kind!r}: {exc}") from None


def make_unit(ctx: UnitContext, kind: str, name: str, spec: dict) -> WorkerUnit:
    """A unit of ``kind`` from its spec; UnitError when the kind or the spec is bad."""
    return make_by_name(KINDS, kind, "media unit kind", ctx, name, **spec)


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    return json.loads(data) if data else {}
