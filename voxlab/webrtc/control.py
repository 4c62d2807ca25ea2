"""The control channel between the main process and a WebRTC gateway worker (AMP).

Each browser connection is a *client* of one worker, named by the main process. Its
signalling messages (voxlab's softphone protocol, docs/softphone.md) go to the worker as
JSON in :class:`PhoneRequest`, answered with the reply's JSON; what happens later (an
incoming call, the far end hanging up) comes back as :class:`PhoneNotice`.
"""

from __future__ import annotations

from twisted.protocols import amp


class PhoneRequest(amp.Command):
    """One softphone request of a client (``login``, ``call``, ``answer``, ...): the reply is
    the JSON object to send back to the browser (``ok``, ``error``, ``sdp``, ...)."""
    arguments = [(b"client", amp.Unicode()), (b"message", amp.String())]
    response = [(b"reply", amp.String())]


class ClientGone(amp.Command):
    """The browser went away: hang up its call, unregister, forget it."""
    arguments = [(b"client", amp.Unicode())]
    response = []
    requiresAnswer = False


class PhoneNotice(amp.Command):
    """Worker -> main: an event for a client's browser (JSON with an ``event`` field)."""
    arguments = [(b"client", amp.Unicode()), (b"message", amp.String())]
    response = []
    requiresAnswer = False


class GatewayStats(amp.Command):
    """Worker -> main, every STATS_INTERVAL seconds: its clients, calls and CPU seconds."""
    arguments = [(b"clients", amp.Integer()), (b"calls", amp.Integer()), (b"cpu", amp.Float())]
    response = []
    requiresAnswer = False


STATS_INTERVAL = 1.0
