"""RTP packets (RFC 3550), sans-IO.

The per-packet paths are kept lean: precompiled :class:`struct.Struct`
objects, ``__slots__`` and no per-byte Python loops.
"""

from __future__ import annotations

import random
import struct

__all__ = [
    "RtpParseError",
    "RtpPacket",
    "RtpSender",
    "is_rtcp",
    "RTP_VERSION",
    "HEADER_SIZE",
]

RTP_VERSION = 2
HEADER_SIZE = 12

_HDR = struct.Struct("!BBHII")
_HDR_unpack_from = _HDR.unpack_from
_HDR_pack = _HDR.pack
_HDR_pack_into = _HDR.pack_into
_EXT = struct.Struct("!HH")
_EXT_unpack_from = _EXT.unpack_from


class RtpParseError(ValueError):
    """Raised for data that is not a well-formed RTP packet."""


class RtpPacket:
    """One RTP packet.

    ``payload`` never includes padding; a header extension, if present, is
    kept in ``extension`` as ``(profile, data)`` so relaying can preserve it
    (``to_bytes`` writes it back) but nothing else needs to care.
    """

    __slots__ = ("payload_type", "sequence", "timestamp", "ssrc", "marker",
                 "payload", "csrc", "extension")

    def __init__(self, payload_type: int, sequence: int, timestamp: int, ssrc: int,
                 payload: bytes = b"", marker: bool = False, csrc: tuple = (),
                 extension: tuple | None = None) -> None:
        self.payload_type = payload_type
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.marker = marker
        self.csrc = csrc
        self.extension = extension

    @classmethod
    def parse(cls, data: bytes) -> "RtpPacket":
        n = len(data)
        if n < 12:
            raise RtpParseError(f"RTP packet too short ({n} bytes)")
        b0, b1, seq, ts, ssrc = _HDR_unpack_from(data)
        if b0 >> 6 != 2:
            raise RtpParseError(f"RTP version {b0 >> 6} != 2")
        offset = 12
        cc = b0 & 0x0F
        if cc:
            offset += 4 * cc
            if offset > n:
                raise RtpParseError("RTP CSRC list exceeds packet")
            csrc = struct.unpack_from("!%dI" % cc, data, 12)
        else:
            csrc = ()
        ext = None
        if b0 & 0x10:
            if offset + 4 > n:
                raise RtpParseError("RTP extension header exceeds packet")
            profile, length = _EXT_unpack_from(data, offset)
            start = offset + 4
            offset = start + 4 * length
            if offset > n:
                raise RtpParseError("RTP extension exceeds packet")
            ext = (profile, bytes(data[start:offset]))
        end = n
        if b0 & 0x20:
            pad = data[n - 1]
            if pad == 0 or offset + pad > n:
                raise RtpParseError(f"bad RTP padding length {pad}")
            end = n - pad
        pkt = cls.__new__(cls)
        pkt.payload_type = b1 & 0x7F
        pkt.marker = bool(b1 & 0x80)
        pkt.sequence = seq
        pkt.timestamp = ts
        pkt.ssrc = ssrc
        pkt.csrc = csrc
        pkt.extension = ext
        pkt.payload = bytes(data[offset:end])
        return pkt

    def to_bytes(self) -> bytes:
        csrc = self.csrc
        ext = self.extension
        b0 = 0x80 | len(csrc)
        if not csrc and ext is None:
            return _HDR_pack(0x80, (0x80 if self.marker else 0) | self.payload_type,
                             self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                             self.ssrc & 0xFFFFFFFF) + self.payload
        if len(csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        parts = []
        if ext is not None:
            b0 |= 0x10
        parts.append(_HDR_pack(b0, (0x80 if self.marker else 0) | self.payload_type,
                               self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                               self.ssrc & 0xFFFFFFFF))
        if csrc:
            parts.append(struct.pack("!%dI" % len(csrc), *csrc))
        if ext is not None:
            profile, edata = ext
            if len(edata) % 4:
                edata = edata + b"\0" * (4 - len(edata) % 4)
            parts.append(_EXT.pack(profile, len(edata) // 4))
            parts.append(edata)
        parts.append(self.payload)
        return b"".join(parts)

    __bytes__ = to_bytes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RtpPacket):
            return NotImplemented
        return (self.payload_type == other.payload_type and self.sequence == other.sequence
                and self.timestamp == other.timestamp and self.ssrc == other.ssrc
                and self.marker == other.marker and self.payload == other.payload
                and tuple(self.csrc) == tuple(other.csrc) and self.extension == other.extension)

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"<RtpPacket pt={self.payload_type} seq={self.sequence} ts={self.timestamp} "
                f"ssrc={self.ssrc:#010x}{' M' if self.marker else ''} {len(self.payload)}B>")


def is_rtcp(data: bytes) -> bool:
    """True if ``data`` looks like RTCP rather than RTP (RFC 5761 §4).

    RTCP packet types 192-223 put 64-95 into the RTP "payload type" position
    (marker bit set); those payload types are reserved for that reason.
    """
    if len(data) < 2 or data[0] >> 6 != 2:
        return False
    return 192 <= data[1] <= 223


class RtpSender:
    """Outgoing stream state for one leg: own SSRC, sequence and timestamp
    that advance per frame, so relayed payloads get this leg's numbering."""

    __slots__ = ("payload_type", "ssrc", "clock_rate", "samples_per_frame",
                 "sequence", "timestamp", "_event_ts", "packets_sent", "octets_sent",
                 "last_timestamp")

    def __init__(self, payload_type: int, ssrc: int | None = None, clock_rate: int = 8000,
                 samples_per_frame: int = 160) -> None:
        self.payload_type = payload_type
        self.ssrc = random.getrandbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self.clock_rate = clock_rate
        self.samples_per_frame = samples_per_frame
        self.sequence = random.getrandbits(16)  # next sequence number to send
        self.timestamp = random.getrandbits(32)  # timestamp of the next frame
        self._event_ts: int | None = None
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_timestamp = self.timestamp

    def packet(self, payload: bytes, *, payload_type: int | None = None, marker: bool = False,
               advance: bool = True, timestamp: int | None = None) -> bytes:
        """Serialise one packet with this leg's numbering.

        The sequence number always advances by one.  The packet carries
        ``timestamp`` if given, else the current stream timestamp, which then
        moves on by ``samples_per_frame`` if ``advance``.
        """
        ts = self.timestamp if timestamp is None else timestamp & 0xFFFFFFFF
        seq = self.sequence
        data = _HDR_pack(0x80, (0x80 if marker else 0) |
                         (self.payload_type if payload_type is None else payload_type),
                         seq, ts, self.ssrc) + payload
        self.sequence = (seq + 1) & 0xFFFF
        if advance:
            self.timestamp = (self.timestamp + self.samples_per_frame) & 0xFFFFFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        self.last_timestamp = ts
        return data

    def skip(self, frames: int = 1) -> None:
        """Advance the timestamp without sending (e.g. silence suppression)."""
        self.timestamp = (self.timestamp + frames * self.samples_per_frame) & 0xFFFFFFFF

    def event_packet(self, payload: bytes, marker: bool, new_event: bool,
                     payload_type: int = 101) -> bytes:
        """One RFC 4733 telephone-event packet (from :class:`DtmfSender`).

        All packets of one event carry the timestamp at which the event began
        (``new_event`` starts a new one at the current stream timestamp); the
        stream timestamp still advances one frame per tick so audio resumes
        in step afterwards.
        """
        if new_event or self._event_ts is None:
            self._event_ts = self.timestamp
        return self.packet(payload, payload_type=payload_type, marker=marker,
                           timestamp=self._event_ts, advance=True)

    def send_frame(self, payload: bytes, dtmf=None, dtmf_payload_type: int = 101) -> bytes:
        """Convenience for one media tick: a DTMF event packet if ``dtmf`` (a
        :class:`~voxlab.media.dtmf.DtmfSender`) has one, else ``payload``."""
        if dtmf is not None:
            ev = dtmf.next_payload()
            if ev is not None:
                return self.event_packet(ev[0], ev[1], ev[2], dtmf_payload_type)
            self._event_ts = None
        return self.packet(payload)

    def __repr__(self) -> str:
        return f"<RtpSender pt={self.payload_type} ssrc={self.ssrc:#010x} seq={self.sequence}>"
