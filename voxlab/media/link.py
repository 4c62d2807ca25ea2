"""Links: the two ends of a call between two sessions of this server
(``VoxEngine.call_conference``), as a pair of media units in one worker.

What is sent into one end comes out of the other on the next tick, both ways,
like the two legs of a call through a loopback trunk, without RTP or codecs.
"""

from __future__ import annotations

from voxlab.media.graph import Frame
from voxlab.media.units import UnitContext, UnitError, WorkerUnit


class LinkEnd(WorkerUnit):
    """One end of a link; made with the wire name of the other end (made first) as ``peer``."""

    kind = "link"

    def __init__(self, ctx: UnitContext, name: str, peer: str | None = None) -> None:
        super().__init__(ctx, name)
        self.peer: LinkEnd | None = None
        self.captured: Frame | None = None      # what this end was given last tick
        if peer is not None:
            other = ctx.units.get(peer)
            if not isinstance(other, LinkEnd):
                raise UnitError(f"link peer {peer!r} is not in this worker")
            self.peer, other.peer = other, self

    def produce(self) -> Frame | None:
        # Every produce runs before any consume of the tick: this is the frame
        # the other end was given a tick ago.
        peer = self.peer
        return peer.captured if peer is not None else None

    def consume(self, frame: Frame | None) -> None:
        self.captured = frame

    def close(self) -> None:
        if self.peer is not None:
            self.peer.peer = None
            self.peer = None
