"""HTTP Digest authentication for SIP (RFC 3261 22, RFC 7616, RFC 8760), sans-IO.

Both sides: :func:`answer_challenge` turns a 401/407 challenge into the
``Authorization``/``Proxy-Authorization`` value a client sends back, and
:class:`DigestServer` issues challenges and checks credentials for the registrar
and for challenged INVITEs/MESSAGEs.

Algorithms: ``MD5`` and ``SHA-256`` (RFC 8760 adds SHA-256 and SHA-512-256 to SIP; a
server offers SHA-256 first, then MD5, so older phones still log in). ``qop=auth``; a
server never offers ``auth-int``, a client answers a challenge offering only
``auth-int`` with an error. Nonces are stateless (a timestamp and an HMAC of it under a
per-server secret), so they need no table to be checked and survive nothing but their
lifetime; an expired but genuine nonce gets a new challenge with ``stale=true``. The
highest nonce-count seen per nonce is kept so that a replayed request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

ALGORITHMS: dict[str, Callable[[bytes], "hashlib._Hash"]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)', re.S)
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)


class DigestError(ValueError):
    """A challenge or credentials that cannot be used (the message says why)."""


def _parse(value: str, what: str) -> dict[str, str]:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"{what}: scheme {scheme!r} is not Digest")
    params: dict[str, str] = {}
    pos, rest = 0, rest.strip()
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if m is None or m.end() == pos:
            raise DigestError(f"{what}: cannot parse {rest[pos:pos + 40]!r}")
        quoted, token = m.group(2), m.group(3)
        params[m.group(1).lower()] = _UNESCAPE_RE.sub(r"\1", quoted) if quoted is not None else token
        pos = m.end()
    return params


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hash(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def digest_response(algorithm: str, user: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, qop: str | None = None, nc: str = "", cnonce: str = "") -> str:
    """The ``response`` value: KD(H(A1), nonce[:nc:cnonce:qop]:H(A2)) of RFC 7616 3.4.1."""
    ha1 = _hash(algorithm, f"{user}:{realm}:{password}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop:
        return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


@dataclass
class Challenge:
    """One ``WWW-Authenticate``/``Proxy-Authenticate`` Digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> "Challenge":
        p = _parse(value, "challenge")
        if "realm" not in p or "nonce" not in p:
            raise DigestError("challenge without realm or nonce")
        return cls(realm=p["realm"], nonce=p["nonce"], algorithm=p.get("algorithm", "MD5").upper(),
                   qop=[q.strip() for q in p.get("qop", "").split(",") if q.strip()],
                   opaque=p.get("opaque"), stale=p.get("stale", "").lower() == "true")

    def to_header(self) -> str:
        parts = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}",
                 f"algorithm={self.algorithm}"]
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)


@dataclass
class Credentials:
    """An ``Authorization``/``Proxy-Authorization`` Digest answer."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, value: str) -> "Credentials":
        p = _parse(value, "credentials")
        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
        if missing:
            raise DigestError(f"credentials without {', '.join(missing)}")
        return cls(username=p["username"], realm=p["realm"], nonce=p["nonce"], uri=p["uri"],
                   response=p["response"].lower(), algorithm=p.get("algorithm", "MD5").upper(),
                   qop=p.get("qop"), nc=p.get("nc"), cnonce=p.get("cnonce"), opaque=p.get("opaque"))

    def to_header(self) -> str:
        parts = [f"username={_quote(self.username)}", f"realm={_quote(self.realm)}",
                 f"nonce={_quote(self.nonce)}", f"uri={_quote(self.uri)}",
                 f"response={_quote(self.response)}", f"algorithm={self.algorithm}"]
        if self.qop:
            parts += [f"qop={self.qop}", f"nc={self.nc}", f"cnonce={_quote(self.cnonce or '')}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


def choose_challenge(values: list[str]) -> Challenge:
    """The strongest usable challenge among a response's (RFC 8760 4: SHA-256 before MD5)."""
    usable: list[Challenge] = []
    problems: list[str] = []
    for value in values:
        try:
            ch = Challenge.parse(value)
        except DigestError as exc:
            problems.append(str(exc))
            continue
        if ch.algorithm not in ALGORITHMS:
            problems.append(f"unsupported algorithm {ch.algorithm}")
        elif ch.qop and "auth" not in ch.qop:
            problems.append(f"unsupported qop {','.join(ch.qop)}")
        else:
            usable.append(ch)
    if not usable:
        raise DigestError("no usable Digest challenge: " + ("; ".join(problems) or "none offered"))
    order = list(ALGORITHMS)[::-1]          # SHA-256 first
    return min(usable, key=lambda ch: order.index(ch.algorithm))


def answer_challenge(challenge: Challenge, method: str, uri: str, user: str, password: str,
                     nc: int = 1, cnonce: str | None = None) -> Credentials:
    """The credentials answering ``challenge`` for a request ``method uri``."""
    qop = "auth" if challenge.qop else None
    nc_text = f"{nc:08x}"
    cnonce = cnonce if cnonce is not None else os.urandom(8).hex()
    response = digest_response(challenge.algorithm, user, challenge.realm, password, method, uri,
                               challenge.nonce, qop, nc_text if qop else "", cnonce if qop else "")
    return Credentials(username=user, realm=challenge.realm, nonce=challenge.nonce, uri=uri,
                       response=response, algorithm=challenge.algorithm, qop=qop,
                       nc=nc_text if qop else None, cnonce=cnonce if qop else None,
                       opaque=challenge.opaque)


@dataclass
class Verdict:
    """What :meth:`DigestServer.check` decided: ``ok`` with the ``user``, or why not."""

    ok: bool
    user: str | None = None
    stale: bool = False
    reason: str = ""


class DigestServer:
    """Issues Digest challenges and checks the credentials that answer them.

    ``lookup(user)`` gives a user's password (None: no such user). ``clock`` is
    a monotonic-ish seconds function (``time.time`` by default; a test passes its own).
    """

    def __init__(self, realm: str, lookup: Callable[[str], str | None], *,
                 nonce_lifetime: float = 300.0, secret: bytes | None = None,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
                 clock: Callable[[], float] = time.time) -> None:
        self.realm = realm
        self.lookup = lookup
        self.nonce_lifetime = nonce_lifetime
        self.secret = secret if secret is not None else os.urandom(16)
        self.algorithms = algorithms
        self.clock = clock
        self._seen_nc: dict[str, int] = {}

    def _nonce(self) -> str:
        stamp = f"{int(self.clock()):x}.{os.urandom(6).hex()}"
        sig = hmac.new(self.secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{stamp}.{sig}"

    def _nonce_state(self, nonce: str) -> str:
        """``fresh``, ``stale`` (genuine but expired) or ``forged``."""
        stamp, _, sig = nonce.rpartition(".")
        good = hmac.new(self.secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        if not stamp or not hmac.compare_digest(sig, good):
            return "forged"
        try:
            issued = int(stamp.split(".")[0], 16)
        except ValueError:
            return "forged"
        return "fresh" if self.clock() - issued <= self.nonce_lifetime else "stale"

    def challenges(self, stale: bool = False) -> list[str]:
        """Header values for a 401/407: one challenge per algorithm, one shared nonce."""
        nonce = self._nonce()
        return [Challenge(self.realm, nonce, alg, ["auth"], stale=stale).to_header()
                for alg in self.algorithms]

    def check(self, method: str, value: str) -> Verdict:
        """Check one ``Authorization`` value for a request with ``method``."""
        try:
            cred = Credentials.parse(value)
        except DigestError as exc:
            return Verdict(False, reason=str(exc))
        if cred.realm != self.realm:
            return Verdict(False, cred.username, reason=f"realm {cred.realm!r} is not {self.realm!r}")
        if cred.algorithm not in self.algorithms:
            return Verdict(False, cred.username, reason=f"algorithm {cred.algorithm} not offered")
        state = self._nonce_state(cred.nonce)
        if state == "forged":
            return Verdict(False, cred.username, reason="nonce not issued here")
        password = self.lookup(cred.username)
        if password is None:
            return Verdict(False, cred.username, reason=f"no user {cred.username!r}")
        if cred.qop != "auth":
            # Without qop there is no nonce-count, so nothing stops a replay.
            return Verdict(False, cred.username, reason=f"qop={cred.qop or '(none)'}: qop=auth is required")
        if not cred.nc or not cred.cnonce or not re.fullmatch(r"[0-9a-fA-F]{8}", cred.nc):
            return Verdict(False, cred.username, reason="qop=auth without a valid nc and cnonce")
        nc = int(cred.nc, 16)
        expected = digest_response(cred.algorithm, cred.username, self.realm, password, method,
                                   cred.uri, cred.nonce, cred.qop, cred.nc, cred.cnonce)
        if not hmac.compare_digest(expected, cred.response):
            return Verdict(False, cred.username, reason="wrong password")
        if state == "stale":
            return Verdict(False, cred.username, stale=True, reason="nonce expired")
        if nc <= self._seen_nc.get(cred.nonce, 0):
            return Verdict(False, cred.username, reason=f"nonce-count {cred.nc} replayed")
        self._seen_nc[cred.nonce] = nc
        self._forget_expired()
        return Verdict(True, cred.username)

    def _forget_expired(self) -> None:
        if len(self._seen_nc) > 10000:
            for nonce in [n for n in self._seen_nc if self._nonce_state(n) != "fresh"]:
                del self._seen_nc[nonce]
