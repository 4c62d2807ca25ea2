"""The control channel between the main process and a media worker: AMP commands.

The main process sends commands that change the worker's media graph; the
worker answers none of them (``requiresAnswer = False``: a facade method must
return at once, and one AMP connection keeps them in order) and sends events
back the same way. Units are named by the names the engine gives them (a
call's RTP unit is named like the call), unique within the server.
"""

from __future__ import annotations

from twisted.protocols import amp

NO_PT = -1      # "no telephone-event payload type" on the wire


class _OneWay(amp.Command):
    requiresAnswer = False


# -- main process -> worker
class OpenRtp(amp.Command):
    """An RTP endpoint on a socket the main process bound (passed as a descriptor).

    Answered, unlike the rest: the answer says the descriptor has arrived, and
    only then may the main process close its own copy (closing it while it
    still waits in the send queue would break the whole channel)."""
    arguments = [(b"name", amp.Unicode()), (b"fd", amp.Descriptor()), (b"codec", amp.Unicode()),
                 (b"pt", amp.Integer()), (b"dtmf_pt", amp.Integer()), (b"host", amp.Unicode()),
                 (b"port", amp.Integer()), (b"sending", amp.Boolean())]
    response = []


class Renegotiate(_OneWay):
    """A new offer/answer outcome for an RTP endpoint (re-INVITE, delayed-offer ACK, hold)."""
    arguments = [(b"name", amp.Unicode()), (b"codec", amp.Unicode()), (b"pt", amp.Integer()),
                 (b"dtmf_pt", amp.Integer()), (b"host", amp.Unicode()), (b"port", amp.Integer()),
                 (b"sending", amp.Boolean())]


class OpenUnit(_OneWay):
    """A media unit of a registered kind (player, recorder, conference, asr, websocket ...,
    see :mod:`voxlab.media.units`) made from a JSON spec; a bad spec is an ``Error`` event."""
    arguments = [(b"name", amp.Unicode()), (b"kind", amp.Unicode()), (b"spec", amp.String())]


class UnitCommand(_OneWay):
    """An operation on a unit (``pause``, ``stop``, ``mute`` ...) with JSON arguments."""
    arguments = [(b"name", amp.Unicode()), (b"op", amp.Unicode()), (b"args", amp.String())]


class OpenPipeIn(amp.Command):
    """The receiving end of a route from a unit in another worker (a socket passed as a
    descriptor; answered, as OpenRtp is)."""
    arguments = [(b"name", amp.Unicode()), (b"fd", amp.Descriptor())]
    response = []


class OpenPipeOut(_OneWay):
    """The sending end of a route to a unit in another worker: frames go to host:port."""
    arguments = [(b"name", amp.Unicode()), (b"host", amp.Unicode()), (b"port", amp.Integer())]


class Route(_OneWay):
    """``src.send_media_to(dst)`` between two units of this worker."""
    arguments = [(b"src", amp.Unicode()), (b"dst", amp.Unicode())]


class Unroute(_OneWay):
    arguments = [(b"src", amp.Unicode()), (b"dst", amp.Unicode())]


class CloseUnit(_OneWay):
    """Remove a unit and its routes (its socket is closed)."""
    arguments = [(b"name", amp.Unicode())]


class SendDigits(_OneWay):
    """Queue digits on an RTP endpoint: ``mode`` "rfc2833" (RFC 4733 events) or "inband" (tones)."""
    arguments = [(b"name", amp.Unicode()), (b"digits", amp.Unicode()), (b"mode", amp.Unicode())]


class SetTones(_OneWay):
    """Detect in-band DTMF in an endpoint's received audio, and strip it from what is routed on."""
    arguments = [(b"name", amp.Unicode()), (b"inband", amp.Boolean()), (b"strip", amp.Boolean())]


class Ping(amp.Command):
    """A round trip through the worker's reactor (answered): its tick count."""
    arguments = []
    response = [(b"ticks", amp.Integer())]


# -- worker -> main process
class DigitReceived(_OneWay):
    """A DTMF digit; ``kind`` is how it came: "rfc2833" (RFC 4733 events) or "inband" (tones)."""
    arguments = [(b"name", amp.Unicode()), (b"digit", amp.Unicode()), (b"kind", amp.Unicode())]


class UnitEvent(_OneWay):
    """Something happened in a unit (``Started``, ``PlaybackFinished``, ``Result``, ``Error`` ...):
    JSON data, in the order the worker saw it."""
    arguments = [(b"name", amp.Unicode()), (b"event", amp.Unicode()), (b"data", amp.String())]


class UnitFailed(_OneWay):
    """A command could not be carried out for this unit (bad file, unknown codec ...)."""
    arguments = [(b"name", amp.Unicode()), (b"error", amp.Unicode())]


class Stats(_OneWay):
    """Counters of the units that changed since the last report (JSON, at most 64 KiB a box)."""
    arguments = [(b"data", amp.String())]


class Heartbeat(_OneWay):
    """Sent every HEARTBEAT seconds from the worker's media clock: it is alive and ticking."""
    arguments = [(b"ticks", amp.Integer()), (b"late", amp.Integer())]


class QuietAMP(amp.AMP):
    """AMP without its two log lines per connection (one per worker start and stop)."""

    def makeConnection(self, transport) -> None:
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason) -> None:
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None


HEARTBEAT = 0.25
STATS_INTERVAL = 0.1
