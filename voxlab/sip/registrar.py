"""The registrar (RFC 3261 10.3), sans-IO: a REGISTER in, the status and headers to answer
with out, bindings kept in the :class:`~voxlab.sip.location.Directory`.

Every REGISTER must be authenticated (Digest, :mod:`voxlab.sip.digest`) as the user
named in its To header. Bindings record the address the REGISTER came from (RFC 3581
rport/received), so a phone behind a NAT is reached through the flow it registered on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from voxlab.sip.digest import DigestServer
from voxlab.sip.location import Binding, Directory
from voxlab.sip.message import SipRequest
from voxlab.sip.uri import NameAddr, SipParseError


@dataclass
class RegisterOutcome:
    """How to answer one REGISTER."""

    status: int
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    user: str | None = None


class Registrar:
    """Answers REGISTER requests for every user of a :class:`Directory`.

    ``algorithms`` are the Digest challenges offered, in order of preference. The
    default is MD5 alone because phones on libre (baresip 1.x) abort the whole
    registration when any challenge names an algorithm they lack; RFC 8760 phones
    are served with ``("SHA-256", "MD5")``.
    """

    def __init__(self, directory: Directory, realm: str = "voxlab", *, min_expires: int = 60,
                 max_expires: int = 7200, default_expires: int = 3600,
                 algorithms: tuple[str, ...] = ("MD5",),
                 clock: Callable[[], float] = time.time, digest: DigestServer | None = None) -> None:
        self.directory = directory
        self.digest = digest or DigestServer(realm, directory.password, clock=clock,
                                             algorithms=tuple(algorithms))
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.clock = clock

    def authenticate(self, request: SipRequest, header: str = "Authorization") -> RegisterOutcome:
        """Status 0 with the ``user`` when ``request`` carries valid credentials; else the
        401/407/403 to send. For REGISTER, and for challenged INVITEs/MESSAGEs
        (``Proxy-Authorization``)."""
        status, challenge_header = ((401, "WWW-Authenticate") if header == "Authorization"
                                    else (407, "Proxy-Authenticate"))
        values = request.headers.get_all(header)
        ours = [v for v in values if f'realm="{self.digest.realm}"' in v] or values
        if not ours:
            return RegisterOutcome(status, headers=[(challenge_header, c) for c in self.digest.challenges()])
        verdict = self.digest.check(request.method, ours[0])
        if verdict.ok:
            return RegisterOutcome(0, user=verdict.user)
        if verdict.stale:
            return RegisterOutcome(status, headers=[(challenge_header, c)
                                                    for c in self.digest.challenges(stale=True)])
        if verdict.reason == "nonce not issued here":
            # Credentials for an older server run (a restart changes the secret): ask again.
            return RegisterOutcome(status, headers=[(challenge_header, c) for c in self.digest.challenges()])
        return RegisterOutcome(403, f"Forbidden ({verdict.reason})", user=verdict.user)

    def register(self, request: SipRequest, source_transport: str, source_host: str,
                 source_port: int) -> RegisterOutcome:
        """Apply one REGISTER; the outcome says how to answer it."""
        auth = self.authenticate(request)
        if auth.status:
            return auth
        user = auth.user
        aor_user = request.to_addr.uri.user
        if aor_user != user:
            return RegisterOutcome(403, f"Forbidden ({user!r} may not register {aor_user!r})", user=user)
        try:
            contacts = self._contacts(request)
        except ValueError as exc:
            return RegisterOutcome(400, f"Bad Request ({exc})", user=user)
        call_id, (cseq, _) = request.call_id, request.cseq
        now = self.clock()
        if contacts == "*":
            self.directory.remove_bindings(user)
            return RegisterOutcome(200, headers=[("Date", _http_date(now))], user=user)
        current = {b.contact: b for b in self.directory.bindings(user)}
        for contact, expires, q in contacts:
            old = current.get(contact)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                # RFC 3261 10.3 step 7: an out-of-order REGISTER changes nothing.
                return RegisterOutcome(500, "Server Internal Error (CSeq out of order)", user=user)
            if 0 < expires < self.min_expires:
                return RegisterOutcome(423, headers=[("Min-Expires", str(self.min_expires))], user=user)
        for contact, expires, q in contacts:
            if expires == 0:
                self.directory.remove_binding(user, contact)
            else:
                self.directory.put_binding(Binding(user, contact, now + min(expires, self.max_expires),
                                                   call_id, cseq, source_transport, source_host,
                                                   source_port, q))
        headers = [("Contact", f"<{b.contact}>;expires={b.expires_in(now)}")
                   for b in self.directory.bindings(user)]
        headers.append(("Date", _http_date(now)))
        return RegisterOutcome(200, headers=headers, user=user)

    def _contacts(self, request: SipRequest) -> list[tuple[str, int, float]] | str:
        raw = request.headers.get_all("Contact")
        header_expires = request.headers.get("Expires")
        if header_expires is not None and not header_expires.isdigit():
            raise ValueError(f"bad Expires: {header_expires!r}")
        default = int(header_expires) if header_expires is not None else self.default_expires
        if "*" in raw:
            if raw != ["*"] or default != 0:
                raise ValueError("Contact: * needs Expires: 0 and no other Contact")
            return "*"
        out = []
        for value in raw:
            try:
                addr = NameAddr.parse(value)
            except SipParseError as exc:
                raise ValueError(f"bad Contact: {exc}") from None
            expires_text = addr.params.get("expires")
            if expires_text is not None and not expires_text.isdigit():
                raise ValueError(f"bad expires parameter: {expires_text!r}")
            expires = int(expires_text) if expires_text is not None else default
            try:
                q = float(addr.params.get("q") or 1.0)
            except ValueError:
                raise ValueError(f"bad q parameter: {addr.params.get('q')!r}") from None
            out.append((str(addr.uri), expires, q))
        return out


def _http_date(now: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
