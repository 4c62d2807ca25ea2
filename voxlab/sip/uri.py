"""SIP URIs, name-addr values and Via values (RFC 3261 sections 19, 20, 25).

Pure string processing, no I/O.  The parsers are liberal where RFC 4475 asks
receivers to be (LWS around separators, parameter names in any case, unusual
but legal characters) and strict where a wrong guess could send a message to
the wrong place (hosts, ports, unbalanced quotes, stray text).

Everything is built from ``str`` methods and precompiled regular expressions:
these functions run several times for every message the server handles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class SipParseError(ValueError):
    """Raised for anything that is not valid SIP: a message, a URI, a header value.

    ``request`` is a best-effort :class:`~voxlab.sip.message.SipRequest` when the
    broken message was a request whose Via, From, To, Call-ID and CSeq headers
    were present, so the caller can still answer it; otherwise ``None``.
    ``status`` is the response code RFC 3261 suggests for the error (400 in
    general, 505 for an unknown SIP version, 501 for an unknown method whose
    CSeq does not match, 513 for an oversized message).  ``keepalive`` is true
    when the input was only CRLFs (RFC 5626 keep-alives), which is not an error
    worth logging.
    """

    def __init__(self, message: str, *, request: Any = None, status: int = 400,
                 keepalive: bool = False) -> None:
        super().__init__(message)
        self.request = request
        self.status = status
        self.keepalive = keepalive


# RFC 3261 25.1 character classes, as regex class bodies.
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER_CHARS = _UNRESERVED + r"%&=+$,;?/"        # user = unreserved / escaped / user-unreserved
_PASSWORD_CHARS = _UNRESERVED + r"%&=+$,"
_PARAM_CHARS = _UNRESERVED + r"%\[\]/:&+$"      # paramchar = param-unreserved / unreserved / escaped

TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# Possessive quantifiers (Python 3.11) on user and password: neither class
# contains ':' or '@', so giving characters back could never help, and it keeps
# a hostile 60 kB URI linear.  The optional userinfo group as a whole can still
# be skipped, which resolves "sip:host?h=a@b" (no userinfo, '@' in a header).
_SIP_URI_RE = re.compile(
    rf"(?:(?P<user>[{_USER_CHARS}]++)(?::(?P<password>[{_PASSWORD_CHARS}]*+))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]++)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>;[^?]*)?"
    r"(?:\?(?P<headers>.*))?",
    re.S,
)
_URI_PARAM_RE = re.compile(rf"([{_PARAM_CHARS}]+)(?:=([{_PARAM_CHARS}]+))?")
_URI_HEADER_RE = re.compile(r"([^\s=&<>\"]+)=([^\s&<>\"]*)")
_TEL_RE = re.compile(r"[^;?\s<>\"]+")
_OPAQUE_RE = re.compile(r"[^\s<>\"]+")

_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
# quoted-pair may carry any octet but CR and LF (RFC 3261 25.1); escape the
# ones qdtext cannot carry, and never emit CR/LF (header injection).
_NEEDS_ESCAPE_RE = re.compile(r'(["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f])')
_DISPLAY_TOKENS_RE = re.compile(f"[{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*")

# One generic-param for the slow path (values that are quoted strings).
_QPARAM_RE = re.compile(
    rf'[ \t]*;[ \t]*([{_TOKEN_CHARS}]+)[ \t]*(?:=[ \t]*("(?:[^"\\]|\\.)*"|[^\s;",]+))?[ \t]*',
    re.S,
)
_PVALUE_RE = re.compile(r'[^\s;",]+')

_VIA_RE = re.compile(
    rf"([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)"
    r"(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
    r"[ \t]*(.*)",
    re.S,
)
# An element of a comma-separated header list: quoted strings and <...> may
# contain commas.  Anything else that fails to match means unbalanced input.
_LIST_ELEMENT_RE = re.compile(r'(?:"(?:[^"\\]|\\.)*"|<[^>]*>|[^,"<]++)*+', re.S)


def _clip(text: str, limit: int = 60) -> str:
    """Shorten user data quoted in error messages (they end up in logs and 400 reasons)."""
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` header parameters; ``text`` may be blank.

    Names are lower-cased (RFC 3261 compares them case-insensitively); values
    keep their spelling, and quoted values keep their quotes so that
    ``str()`` gives back something equivalent.
    """
    text = text.strip()
    if not text:
        return {}
    if text[0] != ";":
        raise SipParseError(f"unexpected text after {what}: {_clip(text)!r}")
    params: dict[str, str | None] = {}
    if '"' not in text:
        # Fast path: no quoted strings, so ';' can only be a separator.
        for piece in text[1:].split(";"):
            name, eq, value = piece.partition("=")
            name = name.strip()
            if not TOKEN_RE.fullmatch(name):
                raise SipParseError(f"bad parameter {piece.strip()!r} in {what}")
            if eq:
                value = value.strip()
                if not _PVALUE_RE.fullmatch(value):
                    raise SipParseError(f"bad value for parameter {name!r} in {what}: {value!r}")
                params[name.lower()] = value
            else:
                params[name.lower()] = None
        return params
    pos, end = 0, len(text)
    while pos < end:
        m = _QPARAM_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise SipParseError(f"bad parameters in {what}: {_clip(text[pos:])!r}")
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def _params_str(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def quote_display_name(name: str) -> str:
    """Return ``name`` as a quoted-string, escaping what qdtext cannot carry."""
    name = name.replace("\r", " ").replace("\n", " ")
    return '"' + _NEEDS_ESCAPE_RE.sub(r"\\\1", name) + '"'


@dataclass(slots=True)
class SipUri:
    """A parsed URI: ``sip:``/``sips:`` in full, ``tel:`` as number + params, anything else opaque.

    ``user`` and ``password`` keep their %-escapes exactly as received (so a
    URI serialises back to what was parsed); ``host`` keeps IPv6 brackets.
    ``params`` maps lower-cased names to values (``None`` for flags such as
    ``lr``).  For ``tel:`` URIs the number is in ``user`` and ``host`` is
    empty.  For other schemes ``opaque`` holds everything after the colon.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raises :class:`SipParseError` if it is malformed."""
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.fullmatch(scheme):
            raise SipParseError(f"bad URI: {_clip(text)!r}")
        scheme = scheme.lower()
        if scheme == "sip" or scheme == "sips":
            m = _SIP_URI_RE.fullmatch(rest)
            if m is None:
                raise SipParseError(f"bad SIP URI: {_clip(text)!r}")
            user, password, host, port_s, params_s, headers_s = m.groups()
            port = None
            if port_s is not None:
                port = int(port_s)
                if port > 65535:
                    raise SipParseError(f"bad port in URI: {_clip(text)!r}")
            params = _parse_uri_params(params_s, text) if params_s else {}
            headers = _parse_uri_headers(headers_s, text) if headers_s is not None else {}
            return cls(scheme, user, password, host, port, params, headers)
        if scheme == "tel":
            number, _, params_s = rest.partition(";")
            if not _TEL_RE.fullmatch(number):
                raise SipParseError(f"bad tel URI: {_clip(text)!r}")
            params = _parse_uri_params(";" + params_s, text) if params_s else {}
            return cls(scheme, number, None, "", None, params)
        if not _OPAQUE_RE.fullmatch(rest):
            raise SipParseError(f"bad URI: {_clip(text)!r}")
        return cls(scheme, None, None, "", None, opaque=rest)

    def __str__(self) -> str:
        if self.opaque is not None:
            # An unparsed URI (other scheme, or a broken Request-URI kept for a 400).
            return f"{self.scheme}:{self.opaque}" if self.scheme else self.opaque
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            if self.host:
                parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(_params_str(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    def host_port(self, default_port: int = 5060) -> tuple[str, int]:
        """``(host, port)`` for connecting: IPv6 brackets removed, ``default_port`` if none."""
        host = self.host
        if host[:1] == "[":
            host = host[1:-1]
        return host, (self.port if self.port is not None else default_port)

    @property
    def transport(self) -> str | None:
        """The ``transport`` URI parameter, lower-cased, or None."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def copy(self) -> SipUri:
        """A copy whose params/headers dicts can be changed independently."""
        return SipUri(self.scheme, self.user, self.password, self.host, self.port,
                      dict(self.params), dict(self.headers), self.opaque)


def _parse_uri_params(text: str, uri: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for piece in text[1:].split(";"):
        m = _URI_PARAM_RE.fullmatch(piece)
        if m is None:
            raise SipParseError(f"bad URI parameter {piece!r} in {_clip(uri)!r}")
        params[m.group(1).lower()] = m.group(2)
    return params


def _parse_uri_headers(text: str, uri: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for piece in text.split("&"):
        m = _URI_HEADER_RE.fullmatch(piece)
        if m is None:
            raise SipParseError(f"bad URI header {piece!r} in {_clip(uri)!r}")
        headers[m.group(1)] = m.group(2)
    return headers


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route/Record-Route value: optional display name, URI, header params.

    ``display_name`` is unescaped (``"a \\"b\\""`` gives ``a "b"``); ``params``
    are the header parameters (``tag``, ``expires``, ``q``...), names
    lower-cased.  ``str()`` always produces the ``"name" <uri>;params`` form,
    which is valid whatever the URI contains.
    """

    display_name: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse ``"Name" <uri>;p=v``, ``Name <uri>`` or the bare addr-spec form ``uri;p=v``.

        In the addr-spec form everything after the first ';' is a header
        parameter, never a URI parameter (RFC 3261 20.10), and a URI with a
        '?' must be enclosed in <> (RFC 4475 3.1.2.13).
        """
        s = text.strip()
        if not s:
            raise SipParseError("empty address")
        display: str | None = None
        if s[0] == '"':
            m = _QUOTED_RE.match(s)
            if m is None:
                raise SipParseError(f"unterminated quoted display name in {_clip(s)!r}")
            raw = m.group(1)
            display = _UNESCAPE_RE.sub(r"\1", raw) if "\\" in raw else raw
            rest = s[m.end():].lstrip()
            if rest[:1] != "<":
                raise SipParseError(f"expected '<' after display name in {_clip(s)!r}")
        else:
            lt = s.find("<")
            if lt < 0:
                uri_text, semi, params_text = s.partition(";")
                uri_text = uri_text.rstrip()
                if "?" in uri_text:
                    raise SipParseError(f"URI with '?' must be enclosed in <>: {_clip(s)!r}")
                return cls(None, SipUri.parse(uri_text), _parse_params(semi + params_text, "address"))
            if lt:
                name = s[:lt].rstrip()
                if not _DISPLAY_TOKENS_RE.fullmatch(name):
                    raise SipParseError(f"display name {name!r} must be quoted")
                display = name
            rest = s[lt:]
        gt = rest.find(">")
        if gt < 0:
            raise SipParseError(f"missing '>' in {_clip(s)!r}")
        inner = rest[1:gt]
        if inner != inner.strip():
            raise SipParseError(f"whitespace inside <...> in {_clip(s)!r}")
        return cls(display, SipUri.parse(inner), _parse_params(rest[gt + 1:], "address"))

    def __str__(self) -> str:
        out = f"<{self.uri}>"
        if self.display_name:
            out = f"{quote_display_name(self.display_name)} {out}"
        if self.params:
            out += _params_str(self.params)
        return out

    @property
    def tag(self) -> str | None:
        """The ``tag`` header parameter, or None."""
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``tag`` set (replacing any existing tag)."""
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(self.display_name, self.uri.copy(), params)

    def copy(self) -> NameAddr:
        """A deep enough copy: URI and params can be changed independently."""
        return NameAddr(self.display_name, self.uri.copy(), dict(self.params))


@dataclass(slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``.

    ``transport`` is upper-cased; ``host`` keeps IPv6 brackets; ``params``
    names are lower-cased, ``rport`` present without a value maps to None.
    """

    protocol: str = "SIP/2.0"
    transport: str = "UDP"
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (split comma lists first); raises :class:`SipParseError`."""
        m = _VIA_RE.fullmatch(text.strip())
        if m is None:
            raise SipParseError(f"bad Via: {_clip(text.strip())!r}")
        name, version, transport, host, port_s, rest = m.groups()
        port = None
        if port_s is not None:
            port = int(port_s)
            if port > 65535:
                raise SipParseError(f"bad port in Via: {_clip(text.strip())!r}")
        return cls(f"{name.upper()}/{version}", transport.upper(), host, port,
                   _parse_params(rest, "Via"))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{_params_str(self.params)}"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (transaction id when it starts with z9hG4bK)."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (source address seen by the next hop)."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value as an int when filled in (RFC 3581), else None."""
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() else None

    @property
    def has_rport(self) -> bool:
        """True when the sender asked for symmetric response routing (RFC 3581)."""
        return "rport" in self.params

    def host_port(self, default_port: int = 5060) -> tuple[str, int]:
        """``(host, port)`` of sent-by, IPv6 brackets removed, ``default_port`` if none."""
        host = self.host
        if host[:1] == "[":
            host = host[1:-1]
        return host, (self.port if self.port is not None else default_port)


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quoted strings and <...>.

    Empty elements are dropped.  Unbalanced quotes or brackets make the value
    come back whole, so that parsing the element reports the real error.
    """
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    if '"' not in value and "<" not in value:
        return [p for p in (piece.strip() for piece in value.split(",")) if p]
    out: list[str] = []
    pos, end = 0, len(value)
    while True:
        m = _LIST_ELEMENT_RE.match(value, pos)
        stop = m.end()  # the pattern can match empty, so m is never None
        piece = value[pos:stop].strip()
        if piece:
            out.append(piece)
        if stop >= end:
            return out
        if value[stop] != ",":
            # Unterminated quote or '<': leave the value alone.
            stripped = value.strip()
            return [stripped] if stripped else []
        pos = stop + 1
