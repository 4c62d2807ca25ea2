"""SIP transactions (RFC 3261 section 17, with the RFC 6026 'Accepted' states).

The four state machines here know nothing of sockets or the reactor: each is
given a clock (anything with ``callLater``, e.g. the reactor or
``twisted.internet.task.Clock`` in tests), a ``send`` callable that puts a
message on the wire towards the transaction's peer, and a transaction user
(TU) object that receives what the transaction passes up.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from voxlab.sip.message import SipMessage, SipRequest, SipResponse

T1 = 0.5
T2 = 4.0
T4 = 5.0

Send = Callable[[SipMessage], None]


class Clock(Protocol):
    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any: ...


class ServerTransactionUser(Protocol):
    def transaction_timed_out(self, tx: "ServerTransaction") -> None: ...


class ClientTransactionUser(Protocol):
    def response_received(self, tx: "ClientTransaction", response: SipResponse) -> None: ...
    def transaction_timed_out(self, tx: "ClientTransaction") -> None: ...


class _Timers:
    """Named one-shot timers on an injected clock, so a state change can cancel them by name."""

    __slots__ = ("clock", "pending")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: dict[str, Any] = {}

    def start(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self.cancel(name)

        def fire() -> None:
            self.pending.pop(name, None)
            fn()

        self.pending[name] = self.clock.callLater(delay, fire)

    def cancel(self, name: str) -> None:
        call = self.pending.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def cancel_all(self) -> None:
        for name in list(self.pending):
            self.cancel(name)


class Transaction:
    """Common state of all four transaction kinds."""

    state: str

    def __init__(self, request: SipRequest, clock: Clock, send: Send, reliable: bool) -> None:
        self.request = request
        self.send = send
        self.reliable = reliable
        self.timers = _Timers(clock)
        self.on_terminated: Callable[["Transaction"], None] | None = None

    @property
    def branch(self) -> str:
        return self.request.top_via.branch or ""

    def _terminate(self) -> None:
        if self.state == "terminated":
            return
        self.state = "terminated"
        self.timers.cancel_all()
        if self.on_terminated is not None:
            self.on_terminated(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.branch} {self.state}>"


class ServerTransaction(Transaction):
    """Base of server transactions: remembers the last response to absorb retransmissions."""

    def __init__(self, request: SipRequest, clock: Clock, send: Send, reliable: bool,
                 tu: ServerTransactionUser | None = None) -> None:
        super().__init__(request, clock, send, reliable)
        self.tu = tu
        self.last_response: SipResponse | None = None


class ServerInviteTransaction(ServerTransaction):
    """INVITE server transaction (RFC 3261 17.2.1, RFC 6026 'accepted' for 2xx).

    States: proceeding -> completed (non-2xx final) -> confirmed -> terminated,
    or proceeding -> accepted (2xx) -> terminated. In 'accepted' the 2xx is
    retransmitted with T1 doubling up to T2 until the TU reports the ACK, or
    until 64*T1 passes, when the TU is told the ACK never came.
    """

    def __init__(self, request: SipRequest, clock: Clock, send: Send, reliable: bool,
                 tu: ServerTransactionUser | None = None) -> None:
        super().__init__(request, clock, send, reliable, tu)
        self.state = "proceeding"

    def receive_request(self, request: SipRequest) -> None:
        """A retransmitted INVITE, or an ACK for a non-2xx final response."""
        if request.method == "ACK":
            if self.state == "completed":
                self.state = "confirmed"
                self.timers.cancel("G")
                self.timers.cancel("H")
                self.timers.start("I", 0 if self.reliable else T4, self._terminate)
            return
        if self.state in ("proceeding", "completed") and self.last_response is not None:
            self.send(self.last_response)
        # In 'accepted' the 2xx is already being retransmitted by timer; the
        # retransmitted INVITE is absorbed (RFC 6026 8.7).

    def send_response(self, response: SipResponse) -> None:
        if self.state == "proceeding":
            self.last_response = response
            self.send(response)
            if response.status < 200:
                return
            if response.status < 300:
                self.state = "accepted"
                # Unlike a non-2xx, the 2xx is repeated over TCP too: it is
                # end-to-end, and a proxy on the way may forward it over UDP
                # ("independent of whatever transport", RFC 3261 13.3.1.4).
                self._retransmit_2xx(T1)
                self.timers.start("L", 64 * T1, self._no_ack)
            else:
                self.state = "completed"
                if not self.reliable:
                    self._retransmit_final(T1)
                self.timers.start("H", 64 * T1, self._no_ack)
        elif self.state == "accepted" and 200 <= response.status < 300:
            # The TU may pass a 2xx retransmission itself; keep it as the one to repeat.
            self.last_response = response
            self.send(response)

    def ack_received(self) -> None:
        """The UAS core matched a 2xx ACK (a separate transaction) to this INVITE."""
        if self.state == "accepted":
            self._terminate()

    def _retransmit_2xx(self, interval: float) -> None:
        def fire() -> None:
            if self.state == "accepted" and self.last_response is not None:
                self.send(self.last_response)
                self._retransmit_2xx(min(interval * 2, T2))
        self.timers.start("G", interval, fire)

    def _retransmit_final(self, interval: float) -> None:
        def fire() -> None:
            if self.state == "completed" and self.last_response is not None:
                self.send(self.last_response)
                self._retransmit_final(min(interval * 2, T2))
        self.timers.start("G", interval, fire)

    def _no_ack(self) -> None:
        if self.state in ("accepted", "completed"):
            # Tell the TU first: it still finds its call by this transaction.
            if self.tu is not None:
                self.tu.transaction_timed_out(self)
            self._terminate()


class ServerNonInviteTransaction(ServerTransaction):
    """Non-INVITE server transaction (RFC 3261 17.2.2): trying, proceeding, completed, terminated.

    Over UDP the completed state lasts 64*T1 to absorb retransmissions. When
    ``on_completed(tx, response_bytes)`` is set, the owner takes that over and
    the transaction terminates at once."""

    on_completed: Callable[["ServerNonInviteTransaction", bytes], None] | None = None

    def __init__(self, request: SipRequest, clock: Clock, send: Send, reliable: bool,
                 tu: ServerTransactionUser | None = None) -> None:
        super().__init__(request, clock, send, reliable, tu)
        self.state = "trying"

    def receive_request(self, request: SipRequest) -> None:
        if self.state in ("proceeding", "completed") and self.last_response is not None:
            self.send(self.last_response)

    def send_response(self, response: SipResponse) -> None:
        if self.state not in ("trying", "proceeding"):
            return
        self.last_response = response
        self.send(response)
        if response.status < 200:
            self.state = "proceeding"
        else:
            self.state = "completed"
            if self.reliable:
                self._terminate()              # timer J is zero on reliable transports
            elif self.on_completed is not None:
                # The owner absorbs retransmissions for timer J itself, keeping
                # only the response's bytes: a busy server has tens of thousands
                # of these waiting, and full objects would weigh on every GC pass.
                self.on_completed(self, response.to_bytes())
                self._terminate()
            else:
                self.timers.start("J", 64 * T1, self._terminate)


class ClientTransaction(Transaction):
    """Base of client transactions.

    After its final response a client transaction only lingers to absorb that
    response's retransmissions (timers D, K and RFC 6026's M). When
    ``on_final(tx, response)`` is set, the owner takes that over: it is called
    once the TU has seen the final response and the transaction terminates at
    once, instead of keeping its TU (a whole call) alive for up to 64*T1."""

    on_final: Callable[["ClientTransaction", SipResponse], None] | None = None

    def __init__(self, request: SipRequest, clock: Clock, send: Send, reliable: bool,
                 tu: ClientTransactionUser) -> None:
        super().__init__(request, clock, send, reliable)
        self.tu = tu

    def _timeout(self) -> None:
        if self.state != "terminated":
            self._terminate()
            self.tu.transaction_timed_out(self)

    def _linger(self, timer: str, delay: float, response: SipResponse) -> None:
        """The TU has the final response: absorb its retransmissions for ``delay``
        (timer ``timer``), or hand them to the owner and end now."""
        if self.on_final is None:
            self.timers.start(timer, delay, self._terminate)
            return
        try:
            if delay:
                self.on_final(self, response)
        finally:
            self._terminate()


class ClientInviteTransaction(ClientTransaction):
    """INVITE client transaction (RFC 3261 17.1.1, RFC 6026 'accepted' with timer M)."""

    def __init__(self, request: SipRequest, clock: Clock, send: Send, reliable: bool,
                 tu: ClientTransactionUser) -> None:
        super().__init__(request, clock, send, reliable, tu)
        self.state = "calling"
        self.ack: SipRequest | None = None

    def start(self) -> None:
        self.send(self.request)
        if not self.reliable:
            self._retransmit(T1)
        self.timers.start("B", 64 * T1, self._timeout)

    def _retransmit(self, interval: float) -> None:
        def fire() -> None:
            if self.state == "calling":
                self.send(self.request)
                self._retransmit(interval * 2)
        self.timers.start("A", interval, fire)

    def receive_response(self, response: SipResponse) -> None:
        status = response.status
        if self.state in ("calling", "proceeding"):
            self.timers.cancel("A")
            if status < 200:
                self.state = "proceeding"
                self.timers.cancel("B")
                self.tu.response_received(self, response)
            elif status < 300:
                self.state = "accepted"
                self.timers.cancel("B")
                try:
                    self.tu.response_received(self, response)
                finally:
                    # Over TCP too: a 2xx is retransmitted end to end, by the UAS.
                    self._linger("M", 64 * T1, response)
            else:
                self.state = "completed"
                self.timers.cancel("B")
                self.ack = self._build_ack(response)
                self.send(self.ack)
                try:
                    self.tu.response_received(self, response)
                finally:
                    self._linger("D", 0 if self.reliable else 32.0, response)
        elif self.state == "accepted" and 200 <= status < 300:
            # 2xx retransmissions go to the TU, which re-sends its own ACK.
            self.tu.response_received(self, response)
        elif self.state == "completed" and status >= 300 and self.ack is not None:
            self.send(self.ack)

    def _build_ack(self, response: SipResponse) -> SipRequest:
        """The ACK for a non-2xx final response belongs to this transaction (same branch)."""
        from voxlab.sip.message import Headers

        req = self.request
        headers = Headers()
        headers.add("Via", req.headers.get_all("Via")[0])
        for route in req.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("From", req.headers.get("From") or "")
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", req.call_id)
        headers.add("CSeq", f"{req.cseq[0]} ACK")
        headers.add("Max-Forwards", "70")
        return SipRequest("ACK", req.uri, headers, b"")


class ClientNonInviteTransaction(ClientTransaction):
    """Non-INVITE client transaction (RFC 3261 17.1.2): timers E, F, K."""

    def __init__(self, request: SipRequest, clock: Clock, send: Send, reliable: bool,
                 tu: ClientTransactionUser) -> None:
        super().__init__(request, clock, send, reliable, tu)
        self.state = "trying"

    def start(self) -> None:
        self.send(self.request)
        if not self.reliable:
            self._retransmit(T1)
        self.timers.start("F", 64 * T1, self._timeout)

    def _retransmit(self, interval: float) -> None:
        def fire() -> None:
            if self.state in ("trying", "proceeding"):
                self.send(self.request)
                nxt = T2 if self.state == "proceeding" else min(interval * 2, T2)
                self._retransmit(nxt)
        self.timers.start("E", interval, fire)

    def receive_response(self, response: SipResponse) -> None:
        if self.state not in ("trying", "proceeding"):
            return
        if response.status < 200:
            self.state = "proceeding"
            self.tu.response_received(self, response)
            return
        self.state = "completed"
        self.timers.cancel("E")
        self.timers.cancel("F")
        try:
            self.tu.response_received(self, response)
        finally:
            self._linger("K", 0 if self.reliable else T4, response)


MAGIC_COOKIE = "z9hG4bK"

# Via parameters a server adds to the request it received (RFC 3261 18.2.1,
# RFC 3581).  The key of a transaction is computed before that stamping, and
# again later from the stamped request (ACK absorption, timer H), so they must
# not take part in it.
_STAMPED_VIA_PARAMS = frozenset({"received", "rport"})

ServerKey = tuple[str, ...]


def server_key(request: SipRequest, method: str | None = None) -> ServerKey:
    """The RFC 3261 17.2.3 matching key of the server transaction ``request`` belongs to.

    ``method`` overrides the request's method; a UAS finds the INVITE a CANCEL
    cancels with ``server_key(cancel, method="INVITE")`` (RFC 3261 9.2: the
    CANCEL is matched as if it were the request it cancels).  An ACK always
    maps to its INVITE.

    With a magic-cookie branch the key is ``(branch, sent-by, method)``.
    Without one (RFC 2543 peers) the branch says nothing about the
    transaction, so the key also holds the Request-URI, From tag, Call-ID,
    CSeq number and the whole top Via; non-INVITE requests add the To tag.
    INVITE keys leave the To tag out: the ACK to a non-2xx response carries
    the To tag of that response, which a key computed from the request alone
    cannot know, while the INVITE had none (or, for a re-INVITE, the same
    one).  Two INVITEs equal in everything else but the To tag would have to
    share Call-ID, From tag and CSeq number, which RFC 3261 8.1.1.5 forbids.
    """
    via = request.top_via
    if method is None:
        method = request.method
    if method == "ACK":
        method = "INVITE"
    branch = via.branch or ""
    sent_by = f"{via.host}:{via.port or 5060}"
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    to_tag = "" if method == "INVITE" else (request.to_tag or "")
    params = ";".join(f"{k}={v}" if v is not None else k
                      for k, v in sorted(via.params.items()) if k not in _STAMPED_VIA_PARAMS)
    return (branch, sent_by, method, str(request.uri), request.from_tag or "", to_tag,
            request.call_id, str(request.cseq[0]), f"{via.protocol}/{via.transport};{params}")


def client_key(branch: str, method: str) -> tuple[str, str]:
    """RFC 3261 17.1.3 matching key for responses: the top Via branch and the CSeq method."""
    return (branch, method)
