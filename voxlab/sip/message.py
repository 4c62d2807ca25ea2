"""SIP messages, sans-IO: bytes in, objects out, and back (RFC 3261 section 7).

``parse_message`` turns one datagram (or one message framed from a stream by
:class:`StreamFramer`) into a :class:`SipRequest` or :class:`SipResponse`;
``to_bytes`` goes the other way.  Nothing here touches a socket or a clock.

The headers every transaction and dialog needs (Via, From, To, Call-ID,
CSeq, Contact) are validated while parsing, so a message that parses can be
trusted by the layers above; the parsed views are cached on the message.
Everything else stays a string until someone asks.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Iterable, Iterator

from voxlab.sip.uri import (
    TOKEN_RE,
    NameAddr,
    SipParseError,
    SipUri,
    Via,
    _clip,
    split_header_values,
)

__all__ = [
    "MAX_MESSAGE_SIZE", "KNOWN_METHODS", "REASON_PHRASES", "Headers", "SipMessage", "SipRequest",
    "SipResponse", "SipParseError", "MessageTooLarge", "SipUri", "NameAddr", "Via", "StreamFramer",
    "parse_message",
    "make_response", "new_branch", "new_tag", "new_call_id", "canonical_name",
]

# The largest message accepted, header section plus body.  One limit for both
# transports: no UDP datagram can exceed it (an IPv4 UDP payload is at most
# 65,507 bytes), so over UDP everything that arrives is parsed, as RFC 3261
# 18.1.1 allows messages up to the datagram size; over TCP it bounds what one
# connection can make us buffer, and a message declaring more is answered 513.
MAX_MESSAGE_SIZE = 65535

KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})

_CANONICAL = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Accept-Resource-Priority",
    "Alert-Info", "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
    "Call-Info", "Contact", "Content-Disposition", "Content-Encoding", "Content-Language",
    "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From",
    "History-Info", "Identity", "Identity-Info", "In-Reply-To", "Join", "Max-Forwards",
    "MIME-Version", "Min-Expires", "Min-SE", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-Sub",
    "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition",
    "Require", "Resource-Priority", "Retry-After", "Route", "RSeq", "Security-Client",
    "Security-Server", "Security-Verify", "Server", "Service-Route", "Session-Expires",
    "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported", "Target-Dialog",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)
# RFC 3261 7.3.3 plus the compact forms registered since (IANA "Header Fields").
_COMPACT = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To",
    "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires",
    "y": "Identity",
}
# name as written (canonical spelling, lower case or compact) -> (canonical name, dict key)
_KEYS: dict[str, tuple[str, str]] = {}
for _name in _CANONICAL:
    _KEYS[_name] = _KEYS[_name.lower()] = (_name, _name.lower())
for _short, _name in _COMPACT.items():
    _KEYS[_short] = (_name, _name.lower())
del _name, _short

# Headers whose grammar is a comma-separated list: one value per element.
_LIST_HEADERS = frozenset(h.lower() for h in (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
    "History-Info", "In-Reply-To", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
    "Proxy-Require", "Reason", "Record-Route", "Reject-Contact", "Request-Disposition", "Require",
    "Resource-Priority", "Route", "Security-Client", "Security-Server", "Security-Verify",
    "Service-Route", "Supported", "Unsupported", "Via", "Warning",
))
# Short option-tag style lists go back on one line; Via/Route/Contact stay one per line.
_JOINED_HEADERS = frozenset(h.lower() for h in (
    "Accept", "Accept-Encoding", "Accept-Language", "Allow", "Allow-Events", "Content-Encoding",
    "Content-Language", "Proxy-Require", "Require", "Supported", "Unsupported",
))

_FOLD_RE = re.compile(r"[ \t]*\n[ \t]+")
_CSEQ_RE = re.compile(r"([0-9]+)[ \t]+(\S+)")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_STREAM_FOLD_RE = re.compile(rb"[ \t]*\r?\n[ \t]+")
_CONTENT_LENGTH_RE = re.compile(rb"\n(?:[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[Ll])"
                                rb"[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?(?=\n|$)")
_MAX_CSEQ = 2**31 - 1   # RFC 3261 8.1.1.5: the sequence number MUST be less than 2**31


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded); unknown names as given."""
    info = _KEYS.get(name) or _KEYS.get(name.lower())
    return info[0] if info is not None else name


def _lookup(name: str) -> str:
    """The dict key for a header name (for reads: never raises)."""
    info = _KEYS.get(name) or _KEYS.get(name.lower())
    return info[1] if info is not None else name.lower()


def _key(name: str) -> tuple[str, str]:
    """(canonical name, dict key) for a header about to be written; validates the name."""
    info = _KEYS.get(name)
    if info is not None:
        return info
    info = _KEYS.get(name.lower())
    if info is not None:
        return info
    if not TOKEN_RE.fullmatch(name):
        raise ValueError(f"bad header name {name!r}")
    return name, name.lower()


class Headers:
    """Ordered multimap of SIP headers; case-insensitive names, compact forms expanded.

    Values of the same name keep their order; different names keep the order
    in which they first appeared (RFC 3261 7.3.1 gives no meaning to the
    relative order of different names).  List headers (Via, Route, Contact,
    Allow, Supported...) are stored one element per value, whether they
    arrived comma-joined or on separate lines.
    """

    __slots__ = ("_values", "_names", "_version")

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        self._values: dict[str, list[str]] = {}
        self._names: dict[str, str] = {}
        self._version = 0   # bumped on every change, so messages know when cached views are stale
        if items is not None:
            for name, value in items:
                self.add(name, value)

    @staticmethod
    def _check_value(value: object) -> str:
        if type(value) is not str:
            value = str(value)   # NameAddr, Via, SipUri and ints serialise themselves
        if "\n" in value or "\r" in value:
            raise ValueError(f"header value contains CR/LF: {value!r}")
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        values = self._values.get(_lookup(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (list headers split into elements)."""
        values = self._values.get(_lookup(name))
        return list(values) if values else []

    def set(self, name: str, value: str | object) -> None:
        """Replace all values of ``name`` with ``value`` (``str()`` applied to non-strings)."""
        canon, key = _key(name)
        values = self._values.get(key)
        if values is None:
            self._names[key] = canon
        self._values[key] = self._split(key, self._check_value(value))
        self._version += 1

    def add(self, name: str, value: str | object, first: bool = False) -> None:
        """Append a value (or prepend with ``first=True``, as a proxy adds its Via).

        Non-strings (NameAddr, Via, SipUri, int) are stored as ``str(value)``.
        """
        canon, key = _key(name)
        new = self._split(key, self._check_value(value))
        values = self._values.get(key)
        if values is None:
            self._names[key] = canon
            self._values[key] = new
        elif first:
            values[0:0] = new
        else:
            values.extend(new)
        self._version += 1

    def remove(self, name: str) -> None:
        """Remove every value of ``name`` (no error if absent)."""
        key = _lookup(name)
        if self._values.pop(key, None) is not None:
            del self._names[key]
            self._version += 1

    @staticmethod
    def _split(key: str, value: str) -> list[str]:
        if key in _LIST_HEADERS and "," in value:
            return split_header_values(value) or [value.strip()]
        return [value]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._values.get(_lookup(name)))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        names = self._names
        for key, values in self._values.items():
            name = names[key]
            for value in values:
                yield name, value

    def __len__(self) -> int:
        return sum(len(v) for v in self._values.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._values == other._values

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        """An independent copy."""
        new = Headers()
        new._values = {k: list(v) for k, v in self._values.items()}
        new._names = dict(self._names)
        return new

    def _lines(self, skip: str) -> list[str]:
        lines: list[str] = []
        names = self._names
        for key, values in self._values.items():
            if key == skip:
                continue
            name = names[key]
            if key in _JOINED_HEADERS and len(values) > 1:
                lines.append(f"{name}: {', '.join(values)}")
            else:
                for value in values:
                    lines.append(f"{name}: {value}")
        return lines


class SipMessage:
    """What requests and responses share: headers, body and parsed header views.

    The views (``call_id``, ``cseq``, ``from_addr``, ``to_addr``, ``vias``,
    ``top_via``, ``contacts``...) are parsed on first use and cached until
    the headers change.  They are read-only views: to change a header, set
    it in ``headers``.  A missing or malformed header raises
    :class:`SipParseError` (``parse_message`` has already checked the ones
    every message must have).
    """

    __slots__ = ("headers", "body", "raw", "_cache", "_cache_version")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        # The bytes ``parse_message`` read it from (None for a message built here),
        # as they arrived: later changes to headers or body do not show in them.
        self.raw: bytes | None = None
        self._cache: dict[str, object] = {}
        self._cache_version = self.headers._version

    # -- cached views
    def _view(self, key: str, compute: Callable[[], object]) -> object:
        if self._cache_version != self.headers._version:
            self._cache = {}
            self._cache_version = self.headers._version
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = compute()
            return value

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        return self._view("call_id", lambda: self._required("Call-ID"))  # type: ignore[return-value]

    @property
    def cseq(self) -> tuple[int, str]:
        """``(sequence number, method)`` from CSeq."""
        return self._view("cseq", lambda: _parse_cseq(self._required("CSeq")))  # type: ignore[return-value]

    @property
    def from_addr(self) -> NameAddr:
        """The From header, parsed."""
        return self._view("from", lambda: NameAddr.parse(self._required("From")))  # type: ignore[return-value]

    @property
    def to_addr(self) -> NameAddr:
        """The To header, parsed."""
        return self._view("to", lambda: NameAddr.parse(self._required("To")))  # type: ignore[return-value]

    @property
    def from_tag(self) -> str | None:
        """The From tag."""
        return self.from_addr.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag (None outside a dialog)."""
        return self.to_addr.tag

    @property
    def vias(self) -> list[Via]:
        """Every Via, topmost first (a shared cached list: do not modify)."""
        return self._view("vias", lambda: [Via.parse(v) for v in self.headers.get_all("Via")])  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via header")
        return vias[0]

    @property
    def branch(self) -> str | None:
        """The branch parameter of the topmost Via."""
        return self.top_via.branch

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact, parsed (``*`` is skipped; see ``headers`` for it)."""
        return self._view("contacts", lambda: [  # type: ignore[return-value]
            NameAddr.parse(v) for v in self.headers.get_all("Contact") if v != "*"])

    @property
    def contact(self) -> NameAddr | None:
        """The first Contact, or None."""
        contacts = self.contacts
        return contacts[0] if contacts else None

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as an int; None when absent or not a number in 0..255."""
        value = self.headers.get("Max-Forwards")
        if value is None or not (value.isascii() and value.isdigit()):
            return None
        number = int(value)
        return number if number <= 255 else None

    @property
    def content_type(self) -> str | None:
        """The media type of Content-Type, lower-cased, without parameters (``application/sdp``)."""
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value is not None else None

    # -- serialisation
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message on the wire; Content-Length always reflects ``body``."""
        lines = [self.start_line()]
        lines.extend(self.headers._lines("content-length"))
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    __bytes__ = to_bytes


class SipRequest(SipMessage):
    """A SIP request: ``method``, Request-URI ``uri``, ``version``, headers and body."""

    __slots__ = ("method", "uri", "version")

    def __init__(self, method: str, uri: SipUri | str, headers: Headers | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = SipUri.parse(uri) if isinstance(uri, str) else uri
        self.version = version

    def start_line(self) -> str:
        """``METHOD uri SIP/2.0``."""
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> SipRequest:
        """A copy with independent headers (the URI is copied too)."""
        return SipRequest(self.method, self.uri.copy(), self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A SIP response: ``status``, ``reason``, ``version``, headers and body."""

    __slots__ = ("status", "reason", "version")

    def __init__(self, status: int, reason: str | None = None, headers: Headers | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason if reason is not None else REASON_PHRASES.get(status, "")
        self.version = version

    def start_line(self) -> str:
        """``SIP/2.0 status reason``."""
        reason = self.reason
        if "\n" in reason or "\r" in reason:   # a reason built from user text must not split the message
            reason = reason.replace("\r", " ").replace("\n", " ")
        return f"{self.version} {self.status} {reason}"

    def copy(self) -> SipResponse:
        """A copy with independent headers."""
        return SipResponse(self.status, self.reason, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def _parse_cseq(value: str) -> tuple[int, str]:
    m = _CSEQ_RE.fullmatch(value)
    if m is None or not TOKEN_RE.fullmatch(m.group(2)):
        raise SipParseError(f"bad CSeq: {_clip(value)!r}")
    number = int(m.group(1))
    if number > _MAX_CSEQ:
        raise SipParseError(f"bad CSeq: {_clip(value)!r} (number must be below 2**31)")
    return number, m.group(2)


def parse_message(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> SipRequest | SipResponse:
    """Parse one whole SIP message (a UDP datagram or a framed stream message).

    Raises :class:`SipParseError` and nothing else, whatever the input.
    Leading CRLFs are skipped; input that is only CRLFs raises with
    ``keepalive=True``.  A Content-Length shorter than what follows the
    header block truncates the body (datagram padding is ignored, RFC 3261
    18.3); without Content-Length the body is the rest of the data.
    """
    try:
        return _parse(bytes(data), max_size)
    except SipParseError:
        raise
    except Exception as exc:
        # A bug here must not escape as something the transport does not expect.
        raise SipParseError(f"unexpected parser failure: {exc!r}") from exc


def _parse(data: bytes, max_size: int) -> SipRequest | SipResponse:
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
        if not data:
            raise SipParseError("keep-alive", keepalive=True)
    size = len(data)
    if size > max_size:
        # Still read the header section when it fits, so that a request can be
        # answered 513 rather than dropped; a header section beyond the limit
        # is not parsed at all.
        end = data.find(b"\r\n\r\n", 0, max_size)
        too_large = SipParseError(f"message of {size} bytes exceeds the {max_size}-byte limit",
                                  status=513)
        if end >= 0:
            try:
                head = _parse(data[:end + 4], max_size)
            except SipParseError as exc:
                too_large.request = exc.request
            else:
                too_large.request = head if isinstance(head, SipRequest) else None
        raise too_large
    if not data:
        raise SipParseError("empty message")

    # Header block ends at the first empty line (CRLF CRLF; bare LF tolerated).
    sep = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, sep if sep >= 0 else size)
    if lf >= 0:
        head_b, body_start = data[:lf].rstrip(b"\r"), lf + 2
    elif sep >= 0:
        head_b, body_start = data[:sep], sep + 4
    else:
        head_b, body_start = data.rstrip(b"\r\n"), size
    # surrogateescape: bad UTF-8 survives the round trip instead of crashing us.
    head = head_b.decode("utf-8", "surrogateescape")
    if "\r" in head:
        head = head.replace("\r\n", "\n")
        if "\r" in head:
            raise SipParseError("bare CR in header section")
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)   # unfold continuation lines (RFC 3261 7.3.1)
    lines = head.split("\n")
    first = lines[0]

    # The common case, checked cheaply (str.isascii() is a flag lookup): ASCII
    # is valid UTF-8, and a header section with no NUL has no raw one.
    err: str | None = None if head.isascii() and "\x00" not in head else _octet_error(head_b, lines)
    err_status = 400
    method = ""
    uri: SipUri | None = None
    status = 0
    reason = ""
    is_request = not first.startswith("SIP/")
    if is_request:
        parts = first.split(" ")
        if len(parts) == 3 and parts[1]:
            method, uri_text, version = parts
        else:
            # RFC 4475 3.1.2.8-10: extra SP or LWS in the Request-Line.  Still
            # pick it apart so that a 400 can be sent back.
            words = first.split()
            if len(words) == 2 and ":" in words[1] and not _VERSION_RE.fullmatch(words[1]):
                # Still answerable (the headers say where): a 400 that names the problem.
                method, uri_text, version = words[0], words[1], "SIP/2.0"
                err = err or f"Request-Line has no SIP-Version: {_clip(first)!r}"
            elif len(words) < 3:
                raise SipParseError(f"malformed start line: {_clip(first)!r}")
            else:
                method, uri_text, version = words[0], " ".join(words[1:-1]), words[-1]
                err = err or f"malformed Request-Line: {_clip(first)!r}"
        if not TOKEN_RE.fullmatch(method):
            raise SipParseError(f"malformed start line: {_clip(first)!r}")
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            if not _VERSION_RE.fullmatch(version):
                raise SipParseError(f"malformed start line: {_clip(first)!r}")
            if err is None:
                err, err_status = f"unsupported SIP version {version!r}", 505
        try:
            uri = SipUri.parse(uri_text)
            if uri.headers and err is None:
                err = f"Request-URI must not contain headers: {_clip(uri_text)!r}"
        except SipParseError as exc:
            if err is None:
                err = f"bad Request-URI: {exc}"
            uri = SipUri("", None, None, "", None, opaque=uri_text)
    else:
        parts = first.split(" ", 2)
        if parts[0] != "SIP/2.0":
            raise SipParseError(f"malformed status line: {_clip(first)!r}")
        code = parts[1] if len(parts) > 1 else ""
        if not (len(code) == 3 and code.isascii() and code.isdigit()) or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status code in {_clip(first)!r}")
        status = int(code)
        reason = parts[2] if len(parts) > 2 else ""

    headers = Headers()
    hvalues = headers._values
    hnames = headers._names
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            err = err or f"malformed header line: {_clip(line)!r}"
            continue
        info = _KEYS.get(name)
        if info is None:
            name = name.strip(" \t")
            info = _KEYS.get(name.lower())
            if info is None:
                if not TOKEN_RE.fullmatch(name):
                    err = err or f"malformed header line: {_clip(line)!r}"
                    continue
                info = (name, name.lower())
        canon, key = info
        value = value.strip(" \t")
        values = hvalues.get(key)
        if values is None:
            hvalues[key] = values = []
            hnames[key] = canon
        if key in _LIST_HEADERS and "," in value:
            values.extend(split_header_values(value))
        else:
            values.append(value)

    # Body: Content-Length if present, else the rest of the datagram.
    avail = size - body_start
    body = data[body_start:]
    cl_values = hvalues.get("content-length")
    if cl_values:
        if len(cl_values) > 1:
            err = err or "more than one Content-Length header"
        else:
            text = cl_values[0]
            if not (text.isascii() and text.isdigit()):
                err = err or f"bad Content-Length: {_clip(text)!r}"
            elif len(text.lstrip("0")) > 19 and int(text) >= 2 ** 64:
                err = err or f"Content-Length {_clip(text)} does not fit in 64 bits"
            else:
                length = int(text)
                if body_start + length > max_size:
                    # Said before "exceeds body": this is what the peer must
                    # change, and it is how a stream's header section alone
                    # (StreamFramer's MessageTooLarge.head) gets its 513.
                    if err is None:
                        err, err_status = (f"message of {body_start + length} bytes exceeds the "
                                           f"{max_size}-byte limit"), 513
                elif length > avail:
                    err = err or f"Content-Length {length} exceeds body {avail}"
                elif length < avail:
                    body = data[body_start:body_start + length]

    # The headers every transaction and dialog relies on.
    missing = [name for name, key in (("Via", "via"), ("From", "from"), ("To", "to"),
                                      ("Call-ID", "call-id"), ("CSeq", "cseq"))
               if not hvalues.get(key)]
    cache: dict[str, object] = {}
    if not missing:
        for key in ("from", "to", "call-id", "cseq", "max-forwards"):
            if len(hvalues.get(key) or ()) > 1:
                err = err or f"more than one {hnames[key]} header"
        try:
            cache["vias"] = [Via.parse(v) for v in hvalues["via"]]
        except SipParseError as exc:
            err = err or str(exc)
        for key, label in (("from", "From"), ("to", "To")):
            try:
                cache[key] = NameAddr.parse(hvalues[key][0])
            except SipParseError as exc:
                err = err or f"bad {label} header: {exc}"
        call_id = hvalues["call-id"][0]
        if not call_id:
            err = err or "empty Call-ID"
        cache["call_id"] = call_id
        try:
            cseq = cache["cseq"] = _parse_cseq(hvalues["cseq"][0])
            if is_request and cseq[1] != method and err is None:
                err = f"CSeq method {cseq[1]!r} does not match request method {method!r}"
                # RFC 4475 3.1.2.18: for an unknown method 501 is the better answer.
                err_status = 400 if method in KNOWN_METHODS else 501
        except SipParseError as exc:
            err = err or str(exc)
        contacts = hvalues.get("contact")
        if contacts:
            try:
                cache["contacts"] = [NameAddr.parse(v) for v in contacts if v != "*"]
            except SipParseError as exc:
                err = err or f"bad Contact header: {exc}"
        forwards = hvalues.get("max-forwards")
        if forwards and not (forwards[0].isascii() and forwards[0].isdigit()):
            err = err or f"Max-Forwards is not a number: {_clip(forwards[0])!r}"
        elif forwards and int(forwards[0]) > 255:
            err = err or f"Max-Forwards {_clip(forwards[0])} is over 255"

    message: SipRequest | SipResponse
    if is_request:
        assert uri is not None
        message = SipRequest(method, uri, headers, body)
    else:
        message = SipResponse(status, reason, headers, body)
    if err is None and missing:
        err = f"missing required header(s): {', '.join(missing)}"
    if err is not None:
        request = message if (is_request and not missing) else None
        raise SipParseError(err, request=request, status=err_status)
    message._cache = cache
    message.raw = data
    return message


_RAW_NUL_RE = re.compile(rb"(?<!\\)\x00")


def _octet_error(head_b: bytes, lines: list[str]) -> str | None:
    """The first header octet RFC 3261 forbids: a raw NUL (one escaped as a quoted-pair,
    ``\\<NUL>``, is legal: RFC 4475's ``intmeth``) or bytes that are not UTF-8."""
    nul = b"\x00" in head_b and _RAW_NUL_RE.search(head_b) is not None
    if not nul:
        try:
            head_b.decode("utf-8")
            return None
        except UnicodeDecodeError:
            pass
    for number, line in enumerate(lines):
        raw = line.encode("utf-8", "surrogateescape")
        where = "start line" if number == 0 else f"{_header_label(line)} header"
        if nul and _RAW_NUL_RE.search(raw):
            return f"raw NUL octet in {where}"
        if not nul:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"invalid UTF-8 octet 0x{raw[exc.start]:02x} in {where}"
    return "raw NUL octet in header section" if nul else "invalid UTF-8 in header section"


def _header_label(line: str) -> str:
    name = line.partition(":")[0].strip(" \t")
    return name if TOKEN_RE.fullmatch(name) else "a"


REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted",
}

_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.I)


def make_response(request: SipRequest, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, body: bytes = b"", content_type: str | None = None,
                  extra: list[tuple[str, str]] | None = None) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 8.2.6.2).

    Copies every Via (in order), From, To, Call-ID and CSeq exactly as
    received; adds ``to_tag`` to To when it has no tag yet.  Works on the
    best-effort request of a :class:`SipParseError` too, so a 400 can be sent
    for a request whose To could not be parsed.
    """
    src = request.headers._values
    headers = Headers()
    values = headers._values
    names = headers._names
    for key, canon in (("via", "Via"), ("from", "From"), ("to", "To"),
                       ("call-id", "Call-ID"), ("cseq", "CSeq")):
        copied = src.get(key)
        if copied:
            values[key] = list(copied) if key == "via" else [copied[0]]
            names[key] = canon
    if to_tag is not None and "to" in values:
        to_value = values["to"][0]
        try:
            has_tag = request.to_addr.tag is not None
        except SipParseError:
            has_tag = _TAG_RE.search(to_value) is not None
        if not has_tag:
            values["to"][0] = f"{to_value};tag={to_tag}"
    if content_type is not None:
        headers.add("Content-Type", content_type)
    if extra:
        for name, value in extra:
            headers.add(name, value)
    return SipResponse(status, reason, headers, body)


class MessageTooLarge(SipParseError):
    """A message on a stream is larger than the limit (status 513).

    ``head`` is its complete header section (up to and including the empty
    line) when that arrived within the limit, else None.  ``parse_message(head)``
    raises the 513 error with the best-effort request attached, so feeding
    ``head`` to the user agent answers it like any other malformed request.
    """

    def __init__(self, message: str, head: bytes | None = None) -> None:
        super().__init__(message, status=513)
        self.head = head


class StreamFramer:
    """Splits a TCP/TLS byte stream into whole SIP messages by Content-Length.

    Content-Length is mandatory on streams (RFC 3261 18.3); a missing or bad
    one, or a message larger than ``max_size`` (:class:`MessageTooLarge`),
    raises :class:`SipParseError` and the caller should close the
    connection, since the stream cannot be resynchronised.  The error's
    ``messages`` holds the whole messages framed from the same ``feed`` call
    before the bad one, which are still good.  CRLF keep-alives between
    messages are dropped.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._scan = 0   # where to resume looking for the end of headers

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the stream; return the complete messages now available."""
        out: list[bytes] = []
        try:
            self._frame(data, out)
        except SipParseError as exc:
            exc.messages = out   # type: ignore[attr-defined]
            raise
        return out

    def _frame(self, data: bytes, out: list[bytes]) -> None:
        buf = self._buf
        buf += data
        while buf:
            if buf[0] in (13, 10):   # CR or LF before a message: keep-alive
                stripped = len(buf) - len(buf.lstrip(b"\r\n"))
                del buf[:stripped]
                self._scan = 0
                continue
            end = buf.find(b"\r\n\r\n", self._scan)
            if end < 0:
                if len(buf) > self.max_size:
                    raise MessageTooLarge(f"header block exceeds {self.max_size} bytes")
                self._scan = max(0, len(buf) - 3)
                break
            length = _stream_content_length(bytes(buf[:end + 2]))
            total = end + 4 + length
            if total > self.max_size:
                raise MessageTooLarge(
                    f"message of {total} bytes exceeds the {self.max_size}-byte limit",
                    head=bytes(buf[:end + 4]))
            if len(buf) < total:
                self._scan = end   # header end already known; just wait for the body
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._scan = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buf)


def _stream_content_length(head: bytes) -> int:
    """The body length a stream message's header section declares (RFC 3261 18.3).

    Reads Content-Length as ``parse_message`` will: any case, compact ``l``,
    and values folded onto continuation lines (``Content-Length:\\r\\n 0``
    is legal, RFC 3261 7.3.1), so the framer never disagrees with the parser
    about where a message ends.
    """
    if b"\n " in head or b"\n\t" in head:
        head = _STREAM_FOLD_RE.sub(b" ", head)
    found = _CONTENT_LENGTH_RE.findall(head)
    if not found:
        raise SipParseError("missing Content-Length on a stream transport")
    if len(set(found)) > 1 or not found[0].isdigit():
        raise SipParseError(f"bad Content-Length on a stream transport: {found!r}")
    return int(found[0])


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie plus 64 random bits."""
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    """A fresh From/To tag (48 random bits)."""
    return os.urandom(6).hex()


def new_call_id(host: str | None = None) -> str:
    """A fresh Call-ID (128 random bits), ``@host`` appended when given."""
    token = os.urandom(16).hex()
    return f"{token}@{host}" if host else token
