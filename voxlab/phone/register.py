"""The phone's REGISTER client (RFC 3261 10.2) on voxlab's user agent.

One binding: ``REGISTER`` with ``Expires``, a 401/407 answered with Digest
(:mod:`voxlab.sip.digest`), a 423 answered with the registrar's ``Min-Expires``, the
binding refreshed before it expires (at 80 % of what the registrar granted), and
``Expires: 0`` on :meth:`Registration.stop`. A failure is retried after a while,
since a registrar that restarts or a network that comes back should not need the
user to restart the phone.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from voxlab.sip.digest import DigestError, answer_challenge, choose_challenge
from voxlab.sip.message import Headers, SipRequest, SipResponse, new_branch, new_call_id, new_tag
from voxlab.sip.uri import NameAddr, SipParseError
from voxlab.sip.useragent import SERVER_NAME, Target

log = Logger()

RETRY_AFTER_FAILURE = 30.0
REFRESH_AT = 0.8                 # of the granted time
MIN_REFRESH = 5.0

__all__ = ["Registration"]


class Registration:
    """Keeps ``user``'s binding to ``contact`` at the registrar ``server``.

    ``on_change(state, detail)`` is told every change: ``registering``, ``registered``
    (detail: seconds granted), ``failed`` (detail: why), ``unregistered``.
    """

    def __init__(self, ua, server: Target, domain: str, user: str, password: str | None,
                 contact: str, expires: int = 600,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        self.ua = ua
        self.clock = ua.clock
        self.server = server
        self.domain = domain             # host[:port] of the AOR and the Request-URI
        self.user = user
        self.password = password
        self.contact = contact           # sip:user@our-host:our-port
        self.expires = expires
        self.on_change = on_change
        self.call_id = new_call_id(ua.host)
        self.tag = new_tag()
        self.cseq = 0
        self.state = "unregistered"
        self.granted = 0                 # seconds the registrar gave us
        self.registered_at = 0.0
        self.reason = ""
        self._timer = None
        self._nc: dict[str, int] = {}    # nonce-counts per nonce (RFC 7616 3.4)
        self._answered = 0               # challenges answered for the current request
        self._stopping: defer.Deferred | None = None

    # -- public
    def start(self) -> None:
        """Register now (and keep registered)."""
        self._set("registering", "")
        self._send(self.expires)

    def stop(self, timeout: float = 3.0) -> defer.Deferred:
        """Remove the binding (``Expires: 0``); fires when the registrar answered, or after
        ``timeout`` seconds, or at once when we were not registered."""
        self._cancel_timer()
        if self.state not in ("registered", "registering") or self._stopping is not None:
            self.state = "unregistered"
            return defer.succeed(None)
        d = self._stopping = defer.Deferred()
        timer = self.clock.callLater(timeout, lambda: d.called or d.callback(None))
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        self._send(0)
        return d

    @property
    def expires_in(self) -> float:
        """Seconds left of the current binding (0 when not registered)."""
        if self.state != "registered":
            return 0.0
        return max(0.0, self.registered_at + self.granted - self.clock.seconds())

    # -- requests
    def _request(self, expires: int, authorization: tuple[str, str] | None = None) -> SipRequest:
        self.cseq += 1
        h = Headers()
        h.add("Via", f"{self.ua.via(self.server.transport)};branch={new_branch()};rport")
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:{self.user}@{self.domain}>;tag={self.tag}")
        h.add("To", f"<sip:{self.user}@{self.domain}>")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", f"<{self.contact}>")
        h.add("Expires", str(expires))
        h.add("User-Agent", SERVER_NAME + " phone")
        if authorization is not None:
            h.add(*authorization)
        return SipRequest("REGISTER", f"sip:{self.domain}", h, b"")

    def _send(self, expires: int, authorization: tuple[str, str] | None = None) -> None:
        if authorization is None:
            self._answered = 0
        request = self._request(expires, authorization)
        self.ua.start_client_transaction(request, self.server,
                                         lambda r: self._response(request, expires, r))

    def _response(self, request: SipRequest, expires: int, response: SipResponse | None) -> None:
        if response is None:
            self._failed(expires, "no answer from the registrar")
            return
        status = response.status
        if status in (401, 407):
            self._challenged(request, expires, response)
        elif status == 423 and expires:
            minimum = response.headers.get("Min-Expires") or ""
            if minimum.isdigit() and int(minimum) > expires:
                self.expires = int(minimum)
                self._send(self.expires)
            else:
                self._failed(expires, "423 without a usable Min-Expires")
        elif 200 <= status < 300:
            self._ok(expires, response)
        else:
            self._failed(expires, f"{status} {response.reason}")

    def _challenged(self, request: SipRequest, expires: int, response: SipResponse) -> None:
        header, answer = (("WWW-Authenticate", "Authorization") if response.status == 401
                          else ("Proxy-Authenticate", "Proxy-Authorization"))
        if self.password is None:
            self._failed(expires, f"{response.status}: the registrar wants a password (--password)")
            return
        try:
            challenge = choose_challenge(response.headers.get_all(header))
        except DigestError as exc:
            self._failed(expires, str(exc))
            return
        # One answer per request; a second challenge to an answer is a refusal, unless the
        # registrar says our nonce merely went stale.
        if self._answered >= 1 and not challenge.stale:
            self._failed(expires, "the registrar refused the password")
            return
        if self._answered >= 2:
            self._failed(expires, "the registrar keeps challenging")
            return
        self._answered += 1
        nc = self._nc[challenge.nonce] = self._nc.get(challenge.nonce, 0) + 1
        cred = answer_challenge(challenge, "REGISTER", str(request.uri), self.user,
                                self.password, nc=nc)
        self._send(expires, (answer, cred.to_header()))

    def _ok(self, expires: int, response: SipResponse) -> None:
        if expires == 0:
            self.granted = 0
            self._set("unregistered", "")
            if self._stopping is not None and not self._stopping.called:
                self._stopping.callback(None)
            return
        granted = self._granted(response, expires)
        if granted <= 0:
            self._failed(expires, "the registrar kept no binding for our contact")
            return
        self.granted = granted
        self.registered_at = self.clock.seconds()
        self._set("registered", str(granted))
        self._schedule(max(MIN_REFRESH, granted * REFRESH_AT), lambda: self._send(self.expires))

    def _granted(self, response: SipResponse, asked: int) -> int:
        """The registrar's expiry for our contact (its Contact list, else Expires)."""
        for value in response.headers.get_all("Contact"):
            try:
                addr = NameAddr.parse(value)
            except SipParseError:
                continue
            if str(addr.uri) == self.contact:
                text = addr.params.get("expires") or ""
                if text.isdigit():
                    return int(text)
        text = response.headers.get("Expires") or ""
        return int(text) if text.isdigit() else asked

    def _failed(self, expires: int, reason: str) -> None:
        if expires == 0:
            # Unregistering on the way out: nothing to retry.
            self._set("unregistered", reason)
            if self._stopping is not None and not self._stopping.called:
                self._stopping.callback(None)
            return
        self.reason = reason
        self._set("failed", reason)
        self._schedule(RETRY_AFTER_FAILURE, lambda: self._send(self.expires))

    # -- helpers
    def _set(self, state: str, detail: str) -> None:
        self.state = state
        if self.on_change is not None:
            try:
                self.on_change(state, detail)
            except Exception:
                log.failure("registration listener failed")

    def _schedule(self, delay: float, fn: Callable[[], None]) -> None:
        self._cancel_timer()
        if self._stopping is None:
            self._timer = self.clock.callLater(delay, fn)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
