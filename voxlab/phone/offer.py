"""SDP for the phone's one audio stream (RFC 3264 offer/answer), on voxlab.sip.sdp.

The phone offers PCMU and PCMA (the ``--codec`` one first) and telephone-event; it
answers an offer with the ``--codec`` one when the offer has it, else the other G.711.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from voxlab.sip.sdp import Negotiated, SdpError, SessionDescription, build_answer, build_offer, negotiate_answer

CODECS = ("PCMU", "PCMA")

__all__ = ["MediaPlan", "codec_order", "make_offer", "make_answer", "read_sdp", "CODECS"]


@dataclass
class MediaPlan:
    """What an offer/answer exchange decided: the codec and telephone-event payload
    types, where to send, and whether we send and receive."""

    codec: str
    payload_type: int
    dtmf_payload_type: int | None
    remote: tuple[str, int]
    direction: str = "sendrecv"          # ours: sendrecv, sendonly, recvonly, inactive

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly") and self.remote[1] != 0 \
            and self.remote[0] not in ("0.0.0.0", "::")

    @property
    def receiving(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def codec_order(preferred: str = "PCMU") -> tuple[str, ...]:
    """The codecs to offer or accept, ``preferred`` first (ValueError for another name)."""
    name = preferred.upper()
    if name not in CODECS:
        raise ValueError(f"--codec {preferred}: the phone speaks {' or '.join(CODECS)}")
    return (name,) + tuple(c for c in CODECS if c != name)


def make_offer(host: str, port: int, session_id: int, version: int = 1,
               codecs: tuple[str, ...] = CODECS, direction: str = "sendrecv") -> bytes:
    """Our offer: G.711 in ``codecs`` order and telephone-event/8000 as payload type 101."""
    return build_offer(host, port, session_id, codecs, 101, session_version=version,
                       username="voxlab-phone", direction=direction).to_bytes()


def _plan(neg: Negotiated) -> MediaPlan:
    try:
        ipaddress.ip_address(neg.remote_host)
    except ValueError:
        # A host name would have to be looked up (blocking) before every packet.
        raise SdpError(f"connection address {neg.remote_host!r} is not an IP address") from None
    return MediaPlan(neg.codec.name.upper(), neg.codec.payload_type, neg.dtmf_payload_type,
                     (neg.remote_host, neg.remote_port), neg.direction)


def read_sdp(sdp: bytes, codecs: tuple[str, ...] = CODECS) -> tuple[MediaPlan, Negotiated]:
    """Read the far end's SDP (an offer, or the answer to ours): the plan for our side.
    The preferred codec wins when the SDP has it. SdpError when nothing usable is in it."""
    description = SessionDescription.parse(sdp)
    neg = negotiate_answer(description, codecs[:1]) or negotiate_answer(description, codecs)
    if neg is None:
        raise SdpError("no G.711 audio stream we can use in the SDP")
    return _plan(neg), neg


def make_answer(neg: Negotiated, host: str, port: int, session_id: int, version: int = 1,
                direction: str | None = None) -> bytes:
    """Our answer to an offer read with :func:`read_sdp` (``direction`` overrides ours:
    'sendonly' when we hold)."""
    if direction is not None:
        neg.direction = direction
    return build_answer(neg, host, port, session_id, version, username="voxlab-phone").to_bytes()
