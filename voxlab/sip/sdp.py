"""SDP (RFC 4566) parsing and serialising, and the offer/answer rules of RFC 3264
for the one audio stream a voxlab call carries.  Sans-IO: text in, objects out.

A parsed description keeps every line it understood in structured form and
every ``a=`` line in order in ``attributes``, which is what gets written back;
``codecs``, ``direction`` and ``ptime`` are views computed from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "SdpError", "Codec", "Origin", "MediaDescription", "SessionDescription", "Negotiated",
    "STATIC_PAYLOAD_TYPES", "PTIME", "negotiate_answer", "build_answer", "build_offer",
]


class SdpError(ValueError):
    """The text is not a usable SDP session description."""


# RFC 3551 static payload types: number -> (encoding name, clock rate, channels).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1),
}
# The packetization voxlab sends: the media clock ticks every 20 ms and each
# tick goes out as one RTP packet, whatever the peer asked for.
PTIME = 20
# RTP clock rate each codec must be offered with (RFC 3551 4.5; G.722 keeps
# 8000 by that RFC's historical error).  PCMU/16000 names a stream we cannot
# decode or produce, so it is not "PCMU" to us.  Names missing here must be
# offered at 8000, the rate of voxlab's internal audio.
_CLOCK_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 8000, "GSM": 8000, "G723": 8000,
                "G729": 8000}
_STATIC_BY_NAME = {"PCMU": 0, "GSM": 3, "G723": 4, "PCMA": 8, "G722": 9, "G729": 18}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly",
                     "recvonly": "sendonly", "inactive": "inactive"}
_PLAIN_RTP = ("RTP/AVP", "RTP/AVPF")
# Session-level line types other than v o s c t a m, in the order RFC 4566 5 requires.
_SESSION_ORDER = {"i": 0, "u": 1, "e": 2, "p": 3, "b": 5, "r": 7, "z": 8, "k": 9}


@dataclass(slots=True)
class Codec:
    """One payload format of a media line: PT number, encoding name as given, rate, channels, fmtp."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None


@dataclass(slots=True)
class Origin:
    """The ``o=`` line."""

    username: str = "-"
    sess_id: str = "0"
    sess_version: str = "0"
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (f"{self.username} {self.sess_id} {self.sess_version} "
                f"{self.nettype} {self.addrtype} {self.address}")


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section.

    ``formats`` are the numeric payload types in offer order (any
    non-numeric format tokens, e.g. ``webrtc-datachannel``, are kept in
    ``other_formats``).  ``codecs`` resolves them through ``a=rtpmap`` and
    the static table (PTs it cannot resolve are left out).  ``connection``
    is the media-level ``c=`` address.  ``attributes`` holds every ``a=``
    line as ``(name, value or None)`` and is what gets serialised.
    """

    media: str
    port: int
    proto: str
    formats: list[int] = field(default_factory=list)
    codecs: list[Codec] = field(default_factory=list)
    connection: str | None = None
    direction: str = "sendrecv"
    ptime: int | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    port_count: int | None = None
    other_formats: list[str] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` line ('' for a flag), or None if absent."""
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None

    def _lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count else str(self.port)
        fmts = [str(pt) for pt in self.formats] + self.other_formats
        lines = [f"m={self.media} {port} {self.proto} {' '.join(fmts)}".rstrip()]
        if self.connection is not None:
            lines.append(f"c={_connection_line(self.connection)}")
        lines.extend(f"b={b}" for b in self.bandwidths)
        lines.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        return lines


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body.  ``connection`` is the session-level ``c=`` address."""

    version: int = 0
    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: str | None = None
    timing: str = "0 0"
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)   # i= u= e= p= b= r= z= k= lines

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        """Parse SDP text (CRLF or bare LF line endings); raises :class:`SdpError`."""
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).decode("utf-8", "surrogateescape")
        sdp = cls()
        seen_v = seen_o = False
        current: MediaDescription | None = None
        for raw in text.split("\n"):
            line = raw.rstrip("\r")
            if not line.strip():
                continue
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpError(f"bad SDP line: {line[:60]!r}")
            kind, value = line[0], line[2:]
            if not seen_v:
                if kind != "v" or value.strip() != "0":
                    raise SdpError("SDP must start with v=0")
                seen_v = True
                continue
            if kind == "m":
                current = _parse_media(value)
                sdp.media.append(current)
            elif kind == "a":
                name, colon, avalue = value.partition(":")
                attr = (name.strip(), avalue.strip() if colon else None)
                (current.attributes if current is not None else sdp.attributes).append(attr)
            elif kind == "c":
                address = _parse_connection(value)
                if current is not None:
                    current.connection = address
                else:
                    sdp.connection = address
            elif current is not None:
                if kind == "b":
                    current.bandwidths.append(value.strip())
                # i= and k= at media level carry nothing we use.
            elif kind == "o":
                parts = value.split()
                if len(parts) != 6:
                    raise SdpError(f"bad o= line: {value[:60]!r}")
                sdp.origin = Origin(*parts)
                seen_o = True
            elif kind == "s":
                sdp.session_name = value
            elif kind == "t":
                sdp.timing = value.strip()
            elif kind == "v":
                raise SdpError("duplicate v= line")
            else:
                sdp.extra.append((kind, value))
        if not seen_v:
            raise SdpError("empty SDP")
        if not seen_o:
            raise SdpError("SDP without o= line")
        session_direction = _direction(sdp.attributes, "sendrecv")
        session_ptime = _ptime(sdp.attributes)
        for m in sdp.media:
            _resolve(m, session_direction, session_ptime)
        return sdp

    def to_text(self) -> str:
        """The SDP as text with CRLF line endings."""
        extra = sorted(self.extra, key=lambda kv: _SESSION_ORDER.get(kv[0], 6))
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name or '-'}"]
        lines.extend(f"{k}={v}" for k, v in extra if _SESSION_ORDER.get(k, 6) < 4)
        if self.connection is not None:
            lines.append(f"c={_connection_line(self.connection)}")
        lines.extend(f"{k}={v}" for k, v in extra if _SESSION_ORDER.get(k, 6) == 5)
        lines.append(f"t={self.timing}")
        lines.extend(f"{k}={v}" for k, v in extra if _SESSION_ORDER.get(k, 6) > 5)
        lines.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        for m in self.media:
            lines.extend(m._lines())
        return "\r\n".join(lines) + "\r\n"

    __str__ = to_text

    def to_bytes(self) -> bytes:
        """The SDP body, ready for a SIP message."""
        return self.to_text().encode("utf-8", "surrogateescape")

    def first_audio(self) -> MediaDescription | None:
        """The first audio m-line with a non-zero port, or None."""
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        return None


def _parse_media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"bad m= line: {value[:60]!r}")
    media, port_s, proto = parts[0], parts[1], parts[2]
    port_s, slash, count_s = port_s.partition("/")
    if not (port_s.isascii() and port_s.isdigit()) or int(port_s) > 65535:
        raise SdpError(f"bad port in m= line: {value[:60]!r}")
    count = None
    if slash:
        if not (count_s.isascii() and count_s.isdigit()):
            raise SdpError(f"bad port count in m= line: {value[:60]!r}")
        count = int(count_s)
    formats: list[int] = []
    other: list[str] = []
    for fmt in parts[3:]:
        if fmt.isascii() and fmt.isdigit():
            formats.append(int(fmt))
        else:
            other.append(fmt)
    return MediaDescription(media, int(port_s), proto, formats, port_count=count, other_formats=other)


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value[:60]!r}")
    # Multicast "addr/ttl[/count]": the address is what we need.
    return parts[2].split("/", 1)[0]


def _connection_line(address: str) -> str:
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


def _direction(attributes: list[tuple[str, str | None]], default: str) -> str:
    for name, value in attributes:
        if value is None and name in _DIRECTIONS:
            return name
    return default


def _ptime(attributes: list[tuple[str, str | None]]) -> int | None:
    for name, value in attributes:
        if name == "ptime" and value:
            try:
                ptime = round(float(value))
            except (ValueError, OverflowError):     # "abc", "nan", "1e999"
                return None
            return ptime if ptime > 0 else None
    return None


def _resolve(m: MediaDescription, session_direction: str, session_ptime: int | None) -> None:
    """Fill the derived views of a parsed m-line: codecs, direction, ptime."""
    rtpmap: dict[int, tuple[str, int, int]] = {}
    fmtp: dict[int, str] = {}
    for name, value in m.attributes:
        if name == "rtpmap" and value:
            pt_s, _, encoding = value.partition(" ")
            pieces = encoding.strip().split("/")
            try:
                pt = int(pt_s)
                rtpmap[pt] = (pieces[0], int(pieces[1]),
                              int(pieces[2]) if len(pieces) > 2 and pieces[2] else 1)
            except (ValueError, IndexError):
                # e.g. RFC 4475's "a=rtpmap:31 LPC" (no clock rate): unusable, not fatal.
                continue
        elif name == "fmtp" and value:
            pt_s, _, params = value.partition(" ")
            if pt_s.isascii() and pt_s.isdigit():
                fmtp[int(pt_s)] = params.strip()
    codecs = []
    for pt in m.formats:
        info = rtpmap.get(pt) or (STATIC_PAYLOAD_TYPES.get(pt) if pt < 96 else None)
        if info is not None:
            codecs.append(Codec(pt, info[0], info[1], info[2], fmtp.get(pt)))
    m.codecs = codecs
    m.direction = _direction(m.attributes, session_direction)
    ptime = _ptime(m.attributes)
    m.ptime = ptime if ptime is not None else session_ptime


@dataclass(slots=True)
class Negotiated:
    """The outcome of answering an offer for one audio stream.

    ``codec`` carries the offer's payload type number; ``direction`` is what
    we do (the answer's direction).  ``ptime`` is the packetization we send
    and put in the answer (:data:`PTIME`); ``remote_ptime`` is what the
    offer asked for, if anything (informational: we do not repacketize).
    ``media_index`` is the offer m-line we took and ``offer`` the offer
    itself, so that :func:`build_answer` can reject the other m-lines.
    """

    codec: Codec
    dtmf_payload_type: int | None
    remote_host: str
    remote_port: int
    ptime: int = PTIME
    direction: str = "sendrecv"
    proto: str = "RTP/AVP"
    media_index: int = 0
    offer: SessionDescription | None = None
    remote_ptime: int | None = None


def _usable(codec: Codec, wanted: set[str]) -> bool:
    """Whether we can carry ``codec``: a supported name at its RTP clock rate, mono
    (internal audio is one channel; a stereo G.711 stream would be garbled)."""
    name = codec.name.upper()
    return (name in wanted and codec.clock_rate == _CLOCK_RATES.get(name, 8000)
            and codec.channels == 1)


def negotiate_answer(offer: SessionDescription,
                     supported: tuple[str, ...] = ("PCMU", "PCMA")) -> Negotiated | None:
    """Pick our codec for the offer's first usable audio stream (RFC 3264 6.1).

    The stream is the first ``m=audio`` with a non-zero port, plain RTP
    (RTP/AVP or RTP/AVPF: we do no SRTP), a connection address and a codec
    we can carry.  An m-line failing any of these is skipped, not fatal: an
    offer often lists RTP/SAVP first and RTP/AVP as the fallback, and
    :func:`build_answer` rejects the skipped lines with port 0.  The codec is
    the first offered one whose name is in ``supported`` (case-insensitive)
    at that codec's RTP clock rate and with one channel, so the offerer's
    preference wins.  Returns None when no m-line qualifies: the caller
    answers 488.
    """
    wanted = {name.upper() for name in supported}
    for index, m in enumerate(offer.media):
        if m.media != "audio" or m.port == 0:
            continue
        if m.proto.upper() not in _PLAIN_RTP:
            continue
        host = m.connection or offer.connection
        if not host:
            continue
        codec = next((c for c in m.codecs if _usable(c, wanted)), None)
        if codec is None:
            continue
        dtmf = next((c.payload_type for c in m.codecs
                     if c.name.lower() == "telephone-event" and c.clock_rate == 8000), None)
        # The answer's ptime is what we send, not an echo of the offer's:
        # the media clock packetizes every 20 ms whatever was asked.
        return Negotiated(codec, dtmf, host, m.port, PTIME,
                          _ANSWER_DIRECTION.get(m.direction, "sendrecv"), m.proto, index, offer,
                          remote_ptime=m.ptime)
    return None


def _audio_media(port: int, proto: str, codecs: list[Codec], dtmf_pt: int | None,
                 ptime: int, direction: str) -> MediaDescription:
    attributes: list[tuple[str, str | None]] = []
    formats = []
    for codec in codecs:
        formats.append(codec.payload_type)
        channels = f"/{codec.channels}" if codec.channels != 1 else ""
        attributes.append(("rtpmap", f"{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}"))
        if codec.fmtp:
            attributes.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    if dtmf_pt is not None:
        formats.append(dtmf_pt)
        attributes.append(("rtpmap", f"{dtmf_pt} telephone-event/8000"))
        attributes.append(("fmtp", f"{dtmf_pt} 0-16"))
    attributes.append(("ptime", str(ptime)))
    attributes.append((direction, None))
    m = MediaDescription("audio", port, proto, formats, attributes=attributes)
    _resolve(m, direction, ptime)
    return m


def build_answer(neg: Negotiated, local_host: str, local_port: int, session_id: int,
                 session_version: int = 1, username: str = "voxlab") -> SessionDescription:
    """The SDP answer for ``neg``: our audio m-line, and port 0 for every other offered
    m-line (RFC 3264 6: an answer has exactly as many m-lines as the offer)."""
    addrtype = "IP6" if ":" in local_host else "IP4"
    answer = SessionDescription(
        origin=Origin(username, str(session_id), str(session_version), "IN", addrtype, local_host),
        session_name="voxlab", connection=local_host)
    audio = _audio_media(local_port, neg.proto, [neg.codec], neg.dtmf_payload_type, neg.ptime,
                         neg.direction)
    if neg.offer is None:
        answer.media.append(audio)
        return answer
    for index, m in enumerate(neg.offer.media):
        if index == neg.media_index:
            answer.media.append(audio)
        else:
            answer.media.append(MediaDescription(
                m.media, 0, m.proto, list(m.formats), other_formats=list(m.other_formats)))
    return answer


def build_offer(local_host: str, local_port: int, session_id: int,
                codecs: tuple[str, ...] = ("PCMU", "PCMA"), dtmf_payload_type: int | None = 101,
                ptime: int = PTIME, session_version: int = 1,
                username: str = "voxlab", direction: str = "sendrecv") -> SessionDescription:
    """An offer for one audio stream (sendrecv, or ``direction``: ``sendonly`` to hold)
    with the given static-PT codecs and RFC 4733 DTMF."""
    offered = []
    for name in codecs:
        pt = _STATIC_BY_NAME.get(name.upper())
        if pt is None:
            raise ValueError(f"no static payload type for codec {name!r}")
        enc, rate, channels = STATIC_PAYLOAD_TYPES[pt]
        offered.append(Codec(pt, enc, rate, channels))
    addrtype = "IP6" if ":" in local_host else "IP4"
    offer = SessionDescription(
        origin=Origin(username, str(session_id), str(session_version), "IN", addrtype, local_host),
        session_name="voxlab", connection=local_host)
    offer.media.append(_audio_media(local_port, "RTP/AVP", offered, dtmf_payload_type, ptime,
                                    direction))
    return offer
