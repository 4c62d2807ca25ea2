"""The user agent core: routes parsed messages to transactions and dialogs, and runs
the UAS side of incoming calls (RFC 3261 sections 8.2, 12, 13.3, 15, 9.2).

Sans-IO in the sense that matters: it never touches a socket. It is fed bytes
with the address they came from, is given a clock for timers, and hands every
outgoing message to a ``send(message, target)`` callable. The Twisted
transports in ``voxlab.sip.transport`` are thin adapters around it.
"""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from twisted.logger import Logger

from voxlab import __version__
from voxlab.sip.dialog import Dialog
from voxlab.sip.uri import NameAddr, SipParseError as UriParseError, SipUri
from voxlab.sip.message import (
    SipMessage, SipParseError, SipRequest, SipResponse, make_response, new_tag, parse_message,
)
from voxlab.sip.transaction import (
    T1, ClientInviteTransaction, ClientNonInviteTransaction, ClientTransaction, Clock,
    ServerInviteTransaction,
    ServerKey, ServerNonInviteTransaction, ServerTransaction, client_key, server_key,
)

log = Logger()

ALLOWED = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, MESSAGE, REFER"
# Methods we know but do not serve answer 405 (with Allow); anything else 501.
KNOWN_NOT_ALLOWED = {"REGISTER", "SUBSCRIBE", "NOTIFY", "PRACK",
                     "UPDATE", "PUBLISH"}
SERVER_NAME = f"voxlab/{__version__}"
# How long an unanswered incoming call may ring before voxlab answers 480.
ALERTING_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes or came from: transport ('udp'/'tcp'), host and port."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


SendFn = Callable[[SipMessage, Target], None]


class IncomingCallHandler(Protocol):
    def incoming_call(self, leg: "IncomingCall") -> None: ...


class LegListener(Protocol):
    """What the engine implements to follow one incoming leg.

    Offer/answer (RFC 3264) lives above this layer: ``leg_offer`` is given the
    SDP offer of a re-INVITE and returns the answer (None refuses it with 488,
    the session carrying on as before); ``leg_answer`` is given the answer the
    caller put in an ACK (to our offer in a 200 for an INVITE without SDP) and
    says whether it is acceptable (False ends the call with BYE)."""

    def leg_confirmed(self, leg: "IncomingCall") -> None: ...
    def leg_offer(self, leg: "IncomingCall", offer: bytes) -> bytes | None: ...
    def leg_answer(self, leg: "IncomingCall", answer: bytes) -> bool: ...
    def leg_terminated(self, leg: "IncomingCall", reason: str, code: int | None) -> None: ...
    def leg_info(self, leg: "IncomingCall", content_type: str, body: bytes) -> None: ...
    def leg_message(self, leg: "IncomingCall", content_type: str, body: bytes) -> None: ...
    def leg_refer(self, leg: "IncomingCall", refer_to: NameAddr, request: SipRequest) -> bool: ...


class LadderEntry:
    """One SIP message of a leg's flow, for the console's ladder view.

    Keeps the message's bytes (as received, or as sent) and parses them only
    when viewed: recording happens for every message of every call, viewing
    only when someone asks, and bytes are one object the cyclic GC does not
    track where a parsed message is dozens that it does (an ended call's
    ladder stays in its session's history)."""

    __slots__ = ("at", "direction", "data", "peer")

    def __init__(self, direction: str, message: SipMessage | bytes, peer: Target) -> None:
        self.at = time.time()
        self.direction = direction      # "in" or "out"
        if not isinstance(message, bytes):
            message = message.raw or message.to_bytes()
        self.data = message
        self.peer = peer

    @property
    def message(self) -> SipMessage:
        """The message, parsed from its bytes (a new object on every read)."""
        return parse_message(self.data)

    @property
    def summary(self) -> str:
        """The start line, e.g. 'INVITE sip:echo@127.0.0.1' or '200 OK'."""
        line = self.data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        if line.startswith("SIP/"):
            return line.partition(" ")[2]           # '200 OK'
        return line.rpartition(" ")[0] or line      # the method and Request-URI

    @property
    def target(self) -> str:
        return str(self.peer)


class DialogLeg:
    """What every call leg with a dialog does alike, incoming or outgoing: in-dialog
    requests (BYE, INFO, MESSAGE) and where they go. Needs ``ua``, ``dialog``, ``source``,
    ``reliable``, ``state``, ``call_id`` and ``_ended``."""

    refer_id: int | None = None     # the CSeq of the REFER whose subscription is open
    client_reinvite: "_ReInvite | None" = None   # our own re-INVITE, until its final response

    def _send_bye(self, reason: str = "local-bye") -> None:
        """BYE, and the call is over at once: RFC 3261 15.1.1 ends the session
        (media included) when the BYE is handed to its transaction, not when
        (or whether) the 200 comes back from a peer that may be gone."""
        assert self.dialog is not None
        self.state = "terminating"
        request = self.dialog.create_request("BYE", self.ua.via(self.source.transport))
        request.headers.add("User-Agent", SERVER_NAME)
        self.ua.start_client_transaction(request, self._dialog_target(), self._bye_done, self)
        self._ended(reason, None)

    def send_request(self, method: str, content_type: str | None = None, body: bytes = b"",
                     done: Callable[[SipResponse | None], None] | None = None,
                     headers: list[tuple[str, str]] | None = None) -> None:
        """An in-dialog request (INFO, MESSAGE) of a confirmed call; ``done`` gets its
        final response (None on timeout)."""
        if self.dialog is None or self.state != "confirmed":
            raise RuntimeError(f"{method} needs an answered call (this one is {self.state})")
        request = self.dialog.create_request(method, self.ua.via(self.source.transport))
        request.headers.add("User-Agent", SERVER_NAME)
        for name, value in headers or ():
            request.headers.add(name, value)
        if body:
            request.headers.add("Content-Type", content_type or "text/plain")
        request.body = body
        self.ua.start_client_transaction(request, self._dialog_target(), done or (lambda r: None), self)

    def reinvite(self, sdp: bytes, done: Callable[[SipResponse | None], None]) -> None:
        """Send a re-INVITE with a new SDP offer (hold, unhold: RFC 3261 14.1, RFC 3264 8);
        ``done`` gets its final response (None when none came). One at a time: a second one,
        or one while the peer's own re-INVITE is open, is a RuntimeError."""
        if self.dialog is None or self.state != "confirmed":
            raise RuntimeError(f"a re-INVITE needs an answered call (this one is {self.state})")
        if self.client_reinvite is not None or self.reinvite_tx is not None:
            raise RuntimeError("a re-INVITE is already in progress on this call")
        request = self.dialog.create_request("INVITE", self.ua.via(self.source.transport))
        request.headers.add("Contact", f"<{self.ua.contact_uri(self.source.transport)}>")
        request.headers.add("User-Agent", SERVER_NAME)
        request.headers.add("Allow", self.ua.allowed)
        request.headers.add("Content-Type", "application/sdp")
        request.body = sdp
        target = self._dialog_target()
        user = self.client_reinvite = _ReInvite(self, request, target, done)
        ua = self.ua
        tx = ClientInviteTransaction(request, ua.clock, lambda m: ua.send(m, target, self),
                                     target.transport != "udp", user)
        key = client_key(request.top_via.branch or "", "INVITE")
        tx.on_terminated = lambda t: ua.client_transactions.pop(key, None)
        tx.on_final = user.hand_over
        ua.client_transactions[key] = tx
        tx.start()

    def refer_received(self, refer: SipRequest) -> tuple[int, str | None]:
        """An in-dialog REFER (RFC 3515): the status to answer it with. 202 means the
        listener took the transfer on; the implicit subscription's NOTIFYs follow
        (:meth:`notify_refer`)."""
        values = refer.headers.get_all("Refer-To")
        if len(values) != 1:
            return 400, "Missing Refer-To" if not values else "More Than One Refer-To"
        try:
            target = NameAddr.parse(values[0])
        except UriParseError as exc:
            return 400, f"Bad Refer-To: {exc}"
        if target.uri.scheme not in ("sip", "sips"):
            return 416, None
        if self.state != "confirmed" or self.listener is None:
            return 603, "Decline"
        try:
            accepted = self.listener.leg_refer(self, target, refer)
        except Exception:
            log.failure("REFER on {call_id} could not be handled", call_id=self.call_id)
            return 500, "Server Internal Error"
        if not accepted:
            return 603, "Decline"
        self.refer_id = refer.cseq[0]
        return 202, "Accepted"

    def notify_refer(self, status: int, reason: str, final: bool = False) -> None:
        """A NOTIFY of the REFER's subscription with the new call's progress as a sipfrag
        (RFC 3515 2.4.4); ``final`` ends the subscription. Nothing when there is none, or
        the dialog has ended (the transferor hung up: nobody is listening)."""
        refer_id = self.refer_id
        if refer_id is None or self.state != "confirmed":
            return
        if final:
            self.refer_id = None
        state = "terminated;reason=noresource" if final else "active;expires=60"
        self.send_request("NOTIFY", "message/sipfrag;version=2.0",
                          f"SIP/2.0 {status} {reason}\r\n".encode("utf-8"),
                          headers=[("Event", f"refer;id={refer_id}"),
                                   ("Subscription-State", state),
                                   ("Contact", f"<{self.ua.contact_uri(self.source.transport)}>")])

    def _dialog_target(self) -> Target:
        return dialog_target(self.dialog, self.source)

    def _bye_done(self, response: SipResponse | None) -> None:
        # The leg ended when the BYE went out; its outcome is only for the log.
        if response is None:
            log.info("BYE for {call_id} got no answer", call_id=self.call_id)


def dialog_target(dialog: Dialog | None, source: Target) -> Target:
    """Where an in-dialog request goes. Over TCP the dialog's flow ``source`` is reused
    (RFC 5923 spirit; phones rarely accept connections back); over UDP the route set /
    remote target decides."""
    if source.transport != "udp" or dialog is None:
        return source
    uri = dialog.next_hop()
    host, port = uri.host_port(5060)
    transport = (uri.params.get("transport") or "udp").lower()
    return Target(transport, host.strip("[]"), port)


class _ReInvite:
    """The transaction user of our re-INVITE: ACKs a 2xx (again for each retransmission,
    RFC 3261 13.2.2.4), takes the 2xx's Contact as the new remote target, and reports the
    final response once."""

    def __init__(self, leg: DialogLeg, request: SipRequest, target: Target,
                 done: Callable[[SipResponse | None], None]) -> None:
        self.leg = leg
        self.request = request
        self.target = target
        self.done = done
        self.ack: SipRequest | None = None

    def response_received(self, tx: ClientTransaction, response: SipResponse) -> None:
        leg = self.leg
        leg.ladder.append(LadderEntry("in", response, self.target))
        if response.status < 200:
            return
        if response.status < 300:
            if self.ack is None and leg.dialog is not None:
                dialog = leg.dialog
                if response.contact is not None:
                    dialog.remote_target = response.contact.uri
                # The ACK repeats the re-INVITE's CSeq number (RFC 3261 13.2.2.4).
                kept = dialog.local_cseq
                dialog.local_cseq = self.request.cseq[0] - 1
                self.ack = dialog.create_request("ACK", leg.ua.via(self.target.transport))
                dialog.local_cseq = kept
            if self.ack is not None:
                leg.ua.send(self.ack, leg._dialog_target(), leg)
        self._finish(response)

    def transaction_timed_out(self, tx: ClientTransaction) -> None:
        self._finish(None)

    def hand_over(self, tx: ClientTransaction, response: SipResponse) -> None:
        """Timers M and D without the leg: the UserAgent repeats the ACK from its bytes."""
        if response.status >= 300:
            self.leg.ua.stand_in(tx, response, tx.ack, self.target)
        else:
            self.leg.ua.stand_in(tx, response, self.ack, self.leg._dialog_target())

    def _finish(self, response: SipResponse | None) -> None:
        if self.leg.client_reinvite is not self:
            return                      # reported already (this is a retransmitted 2xx)
        self.leg.client_reinvite = None
        try:
            self.done(response)
        except Exception:
            log.failure("re-INVITE outcome handler failed on {call_id}", call_id=self.leg.call_id)


class IncomingCall(DialogLeg):
    """The UAS side of one incoming INVITE: answer, reject, ring, hang up; tells its listener what happens."""

    def __init__(self, ua: "UserAgent", invite: SipRequest, tx: ServerInviteTransaction,
                 source: Target) -> None:
        self.ua = ua
        self.invite = invite
        self.tx = tx
        self.source = source
        self.local_tag = new_tag()
        self.dialog: Dialog | None = None
        self.state = "incoming"   # incoming, early, answered, confirmed, terminating, terminated
        self.listener: LegListener | None = None
        self.answer_body: bytes = b""
        self.ladder: list[LadderEntry] = []
        self.created = time.time()
        self._pending_bye = False
        self.reinvite_tx: ServerInviteTransaction | None = None
        self.user: str | None = None    # who the caller authenticated as (a challenged route)
        # A caller that vanishes without CANCEL must not leave a ringing leg forever.
        self._alerting_timer = ua.clock.callLater(ALERTING_TIMEOUT, self._alerting_expired)

    # -- facts about the call
    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def offer(self) -> bytes:
        return self.invite.body

    @property
    def destination(self) -> str:
        return self.invite.uri.user or ""

    @property
    def reliable(self) -> bool:
        return self.source.transport != "udp"

    # -- actions
    def _respond(self, status: int, reason: str | None = None, body: bytes = b"",
                 content_type: str | None = None, contact: bool = False,
                 headers: list[tuple[str, str]] | None = None) -> SipResponse:
        extra = [("Server", SERVER_NAME)] + list(headers or ())
        if contact:
            extra.append(("Contact", f"<{self.ua.contact_uri(self.source.transport)}>"))
            extra.append(("Allow", self.ua.allowed))
        tag = self.local_tag if status > 100 else None
        if 100 < status < 300:
            # Dialog-creating responses carry the Record-Route set back (RFC 3261 12.1.1),
            # so the caller's ACK and BYE take the same proxies as ours.
            extra.extend(("Record-Route", rr) for rr in self.invite.headers.get_all("Record-Route"))
        response = make_response(self.invite, status, reason, to_tag=tag, body=body,
                                 content_type=content_type, extra=extra)
        self.tx.send_response(response)
        return response

    def _alerting_expired(self) -> None:
        self._alerting_timer = None
        if self.state in ("incoming", "early"):
            self._respond(480, "Temporarily Unavailable")
            self._ended("no-answer", 480)

    def ring(self) -> None:
        """Send 180 Ringing (once; ignored after an answer or rejection)."""
        if self.state == "incoming":
            self.state = "early"
            # The 180's To tag makes an early dialog: a BYE in it must find us.
            self.ua.dialog_opened(self)
            self._respond(180, contact=True)

    def progress(self, sdp: bytes) -> None:
        """Send 183 Session Progress with the SDP answer: early media, before the call is
        answered (RFC 3960's gateway model: no PRACK, the 200 repeats the same answer)."""
        if self.state not in ("incoming", "early"):
            return
        if self.state == "incoming":
            self.state = "early"
            self.ua.dialog_opened(self)
        self.answer_body = sdp
        self._respond(183, body=sdp, content_type="application/sdp", contact=True)

    def answer(self, sdp: bytes) -> None:
        """Send 200 OK with the SDP answer; the dialog is confirmed when the ACK arrives."""
        if self.state not in ("incoming", "early"):
            return
        self.state = "answered"
        self.answer_body = sdp
        self.dialog = Dialog.from_uas(self.invite, self.local_tag)
        self.dialog.state = "confirmed"
        self.ua.dialog_opened(self)
        self._respond(200, body=sdp, content_type="application/sdp", contact=True)

    def reject(self, status: int, reason: str | None = None,
               headers: list[tuple[str, str]] | None = None) -> None:
        """Send a final non-2xx response (e.g. 486, 603, 404; a 407 with its challenge in
        ``headers``) and end the leg."""
        if self.state not in ("incoming", "early"):
            return
        self._respond(status, reason, headers=headers)
        self._ended("rejected", status)

    def hangup(self) -> None:
        """End the leg whatever its state: BYE when answered, else 480 (or the caller's CANCEL wins)."""
        if self.state in ("incoming", "early"):
            self.reject(480, "Temporarily Unavailable")
        elif self.state == "answered":
            # RFC 3261 15: the UAS waits for the ACK (or its timeout) before BYE.
            self._pending_bye = True
        elif self.state == "confirmed":
            self._send_bye()

    # -- events from the user agent
    def cancelled(self, cancel: SipRequest) -> None:
        if self.state in ("incoming", "early"):
            self._respond(487)
            self._ended("cancelled", 487)

    def acked(self, ack: SipRequest) -> None:
        if self.state == "answered":
            self.state = "confirmed"
            self.tx.ack_received()
            if self._pending_bye:
                # The scenario hung up before the ACK: the call never counts as connected.
                self._send_bye()
                return
            if not self.invite.body and self.listener is not None:
                # Delayed offer (RFC 3261 13.2.1): our 200 carried the offer, the ACK the answer.
                if not ack.body or not _hook(self.listener.leg_answer, self, ack.body):
                    self._send_bye("bad-answer")
                    return
            if self.listener is not None:
                self.listener.leg_confirmed(self)

    def ack_timed_out(self) -> None:
        if self.state == "answered":
            # No ACK for our 2xx within 64*T1: end the dialog with a BYE (RFC 3261 13.3.1.4).
            self.state = "confirmed"
            self._send_bye("ack-timeout")

    def bye_received(self, bye: SipRequest) -> SipResponse:
        if self.state in ("incoming", "early"):
            # BYE in the early dialog ends the pending INVITE (RFC 3261 15.1.2).
            self._respond(487)
        response = make_response(bye, 200, to_tag=None, extra=[("Server", SERVER_NAME)])
        self._ended("remote-bye", None)
        return response

    def _ended(self, reason: str, code: int | None) -> None:
        if self.state == "terminated":
            return
        self.state = "terminated"
        if self._alerting_timer is not None:
            if self._alerting_timer.active():
                self._alerting_timer.cancel()
            self._alerting_timer = None
        if self.tx is not None and self.tx.state == "accepted":
            # Ended before the ACK (BYE first): stop repeating the 2xx; the INVITE's
            # retransmissions and the late ACK are still absorbed until timer L.
            self.ua._absorb(server_key(self.invite), b"", self.source)
            self.tx.ack_received()
        if self.reinvite_tx is not None:
            self.reinvite_tx.ack_received()
            self.reinvite_tx = None
        # The transaction keeps running on its own (absorbing retransmissions);
        # dropping our reference breaks the leg <-> transaction cycle so the
        # leg is freed by reference counting, not by a GC pass.
        self.tx = None
        self.ua.dialog_closed(self)
        if self.listener is not None:
            try:
                self.listener.leg_terminated(self, reason, code)
            except Exception:
                # The SIP side is already done; the request that ended the leg
                # (a BYE, a CANCEL) still gets its response.
                log.failure("leg listener failed on the end of {call_id}", call_id=self.call_id)
            finally:
                # Told: what still holds the ended leg (its call's history, a
                # transaction absorbing retransmissions) must not keep the
                # listener's objects (a whole session) alive with it.
                self.listener = None

    def __repr__(self) -> str:
        return f"<IncomingCall {self.call_id} {self.state}>"


class UserAgent:
    """Transaction layer + UAS core for one SIP listening address."""

    def __init__(self, clock: Clock, send: SendFn, handler: IncomingCallHandler,
                 host: str, port: int) -> None:
        self.clock = clock
        self._send = send
        self.handler = handler
        self.host = host
        self.port = port
        self.server_transactions: dict[ServerKey, ServerTransaction] = {}
        self.client_transactions: dict[tuple[str, str], ClientTransaction] = {}
        self.dialogs: dict[tuple[str, str], IncomingCall] = {}
        self.invites: dict[ServerKey, IncomingCall] = {}
        # (Call-ID, From tag, CSeq) of INVITE transactions still running, to spot merged requests
        self._pending_invites: dict[tuple[str, str, int], ServerKey] = {}
        self.stats = {"received": 0, "malformed": 0, "sent": 0}
        self._absorbing: dict[tuple, tuple[bytes, str, str, int]] = {}
        # Client INVITE transactions that have their final response (UserAgent.stand_in).
        self._acking: dict[tuple[str, str], tuple] = {}
        self._absorb_expiry: collections.deque[tuple[float, tuple]] = collections.deque()
        self._sweep_call = None
        self.registrar = None           # a voxlab.sip.registrar.Registrar: REGISTER is served

    @property
    def allowed(self) -> str:
        return ALLOWED + (", REGISTER" if self.registrar is not None else "")

    # -- addressing
    def via(self, transport: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.host}:{self.port}"

    def contact_uri(self, transport: str) -> str:
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"sip:voxlab@{self.host}:{self.port}{suffix}"

    def send(self, message: SipMessage, target: Target, leg: IncomingCall | None = None) -> None:
        self.stats["sent"] += 1
        if leg is not None:
            # Serialized once, for the leg's ladder and the wire alike.
            data = message.to_bytes()
            leg.ladder.append(LadderEntry("out", data, target))
            message = SerializedMessage(data)
        self._send(message, target)

    # -- input
    def datagram_received(self, data: bytes, source: Target) -> None:
        """Feed one whole message (a UDP datagram, or one framed from a TCP stream)."""
        self.stats["received"] += 1
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._malformed(exc, source)
            return
        try:
            if isinstance(message, SipRequest):
                self._request_received(message, source)
            else:
                self._response_received(message)
        except Exception:
            # A bug handling one message must never take the listener down.
            log.failure("error handling SIP message from {source}", source=str(source))

    def _malformed(self, exc: SipParseError, source: Target) -> None:
        if getattr(exc, "keepalive", False):
            return
        self.stats["malformed"] += 1
        request = getattr(exc, "request", None)
        if request is not None and request.method != "ACK":
            status = getattr(exc, "status", 400) or 400
            detail = str(exc)[:80].replace("\r", " ").replace("\n", " ")
            reason = f"Bad Request ({detail})" if status == 400 else None
            try:
                response = make_response(request, status, reason, to_tag=new_tag())
                self.send(response, self._malformed_response_target(request, source))
                log.info("{status} to malformed request from {source}: {error}",
                         status=status, source=str(source), error=str(exc))
                return
            except Exception:
                pass
        log.info("dropped malformed SIP message from {source}: {error}",
                 source=str(source), error=str(exc))

    def _malformed_response_target(self, request: SipRequest, source: Target) -> Target:
        """Where a 400 goes.  A top Via too broken to read still names the sender
        only through the packet's source, so answer there (as rport would); a
        request with no Via at all cannot be answered (the response would carry none)."""
        try:
            return self._response_target(request, source)
        except SipParseError:
            if "via" not in request.headers:
                raise
            return source

    def _response_target(self, request: SipRequest, source: Target) -> Target:
        """RFC 3261 18.2.2 + RFC 3581: reliable transports answer on the same flow; UDP
        answers to the source address, and to the source port when rport was asked for."""
        if source.transport != "udp":
            return source
        via = request.top_via
        if "rport" in via.params:
            return source
        return Target("udp", source.host, via.port or 5060)

    def _respond(self, request: SipRequest, source: Target, status: int, reason: str | None = None,
                 extra: list[tuple[str, str]] | None = None, to_tag: str | None = None) -> SipResponse:
        if to_tag is None and status > 100:
            to_tag = new_tag()
        return make_response(request, status, reason, to_tag=to_tag,
                             extra=[("Server", SERVER_NAME)] + (extra or []))

    def _ack_received(self, leg: IncomingCall, ack: SipRequest) -> None:
        reinvite = leg.reinvite_tx
        if reinvite is not None and ack.cseq[0] == reinvite.request.cseq[0]:
            reinvite.ack_received()
            leg.reinvite_tx = None
            if not reinvite.request.body and ack.body and leg.listener is not None:
                # We offered in the 200 (a re-INVITE without SDP): this is the answer.
                if not _hook(leg.listener.leg_answer, leg, ack.body):
                    leg.hangup()
            return
        if leg.state == "answered":
            # RFC 6026: the INVITE's retransmissions must still be absorbed
            # until timer L, not start a second call; a byte-less stand-in does
            # it (set up first: what the ACK sets off must not skip it).
            self._absorb(server_key(leg.invite), b"", leg.source)
            leg.acked(ack)

    def _new_server_tx(self, request: SipRequest, source: Target, key, leg_ref=None):
        target = self._response_target(request, source)
        reliable = source.transport != "udp"
        holder: list[IncomingCall | None] = [None]

        def send(message: SipMessage) -> None:
            self.send(message, target, holder[0])

        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        tx = cls(request, self.clock, send, reliable, tu=self)
        tx.on_terminated = lambda t: self.server_transactions.pop(key, None)
        if cls is ServerNonInviteTransaction:
            tx.on_completed = lambda t, data: self._absorb(key, data, target)
        self.server_transactions[key] = tx
        return tx, holder

    def _absorb(self, key, response: bytes, target: Target) -> None:
        """Stand in for a completed non-INVITE transaction until timer J (64*T1):
        retransmitted requests get the same response again. Kept as plain
        tuples of bytes and strings, which the cyclic GC does not track."""
        self._absorbing[key] = (response, target.transport, target.host, target.port)
        self._expire(key)

    def stand_in(self, tx: ClientTransaction, response: SipResponse,
                 ack: SipMessage | SerializedMessage | None,
                 target: Target, fork: tuple | None = None) -> None:
        """Stand in for an INVITE client transaction that has its final ``response``
        until timer M (a 2xx) or D (a failure), both 64*T1: a retransmission of that
        response gets ``ack`` (sent to ``target``) again; a 2xx with another To tag
        (another fork) an ACK and a BYE, built from ``fork`` (see ``_end_fork``).
        Kept as plain tuples of bytes and strings, which the cyclic GC does not track;
        the transaction, its TU and the whole call can go."""
        if ack is None:
            return
        key = client_key(tx.branch, "INVITE")
        ok_tag = (response.to_addr.tag or "") if response.status < 300 else None
        self._acking[key] = (ok_tag, ack.to_bytes(), target.transport, target.host, target.port,
                             fork)
        self._expire(key)

    def _expire(self, key: tuple) -> None:
        # One delay for every stand-in (64*T1), so the queue stays in expiry order.
        self._absorb_expiry.append((self.clock.seconds() + 64 * T1, key))
        if self._sweep_call is None:
            self._sweep_call = self.clock.callLater(1.0, self._sweep)

    def _sweep(self) -> None:
        now = self.clock.seconds()
        queue, absorbing, acking = self._absorb_expiry, self._absorbing, self._acking
        while queue and queue[0][0] <= now:
            key = queue.popleft()[1]
            # Server keys have 3 or 9 parts, client keys 2: they never collide.
            absorbing.pop(key, None)
            acking.pop(key, None)
        self._sweep_call = self.clock.callLater(1.0, self._sweep) if queue else None

    def _stamp_via(self, request: SipRequest, source: Target) -> None:
        """RFC 3581 / 3261 18.2.1: record where the request really came from in its top Via."""
        via = request.top_via
        wants_rport = "rport" in via.params
        if not wants_rport and via.host == source.host:
            return
        if wants_rport:
            via.params["rport"] = str(source.port)
        via.params["received"] = source.host
        vias = request.headers.get_all("Via")
        request.headers.set("Via", str(via))
        for value in vias[1:]:
            request.headers.add("Via", value)

    def _request_received(self, request: SipRequest, source: Target) -> None:
        key = server_key(request)
        absorbed = self._absorbing.get(key)
        if absorbed is not None:
            response, transport, host, port = absorbed
            if response:
                self.send(SerializedMessage(response), Target(transport, host, port))
            return
        tx = self.server_transactions.get(key)
        if tx is not None:
            leg = self.invites.get(key)
            if leg is None and request.method == "ACK" and tx.state == "accepted":
                leg = self._dialog_leg(request)       # a re-INVITE's (never in invites)
                if leg is not None and leg.reinvite_tx is not tx:
                    leg = None
            if leg is not None:
                leg.ladder.append(LadderEntry("in", request, source))
                if request.method == "ACK" and tx.state == "accepted":
                    # A 2xx ACK that reused the INVITE's branch: still the ACK (RFC 6026 8.5).
                    self._ack_received(leg, request)
                    return
            tx.receive_request(request)
            return
        method = request.method
        if method == "ACK":
            leg = self._dialog_leg(request)
            if leg is not None:
                leg.ladder.append(LadderEntry("in", request, source))
                self._ack_received(leg, request)
            return
        self._stamp_via(request, source)
        tx, holder = self._new_server_tx(request, source, key)

        def reply(status: int, reason: str | None = None, extra=None, to_tag=None) -> None:
            tx.send_response(self._respond(request, source, status, reason, extra, to_tag))

        if request.uri.scheme not in ("sip", "sips"):
            reply(416)
            return
        require = request.headers.get_all("Require")
        if require and method != "CANCEL":
            # We support no extension: every required one is unsupported (RFC 3261 8.2.2.3).
            reply(420, extra=[("Unsupported", ", ".join(require))])
            return
        if (request.body and method == "INVITE"
                and request.content_type not in (None, "application/sdp")):
            # RFC 3261 8.2.3: a body type we cannot read is refused before anything else.
            reply(415, extra=[("Accept", "application/sdp")])
            return

        if method == "INVITE":
            self._invite_received(request, source, tx, holder, key)
        elif method == "CANCEL":
            self._cancel_received(request, reply)
        elif method in ("BYE", "INFO", "MESSAGE", "REFER"):
            leg = self._dialog_leg(request)
            if leg is None:
                reply(481)
                return
            holder[0] = leg
            leg.ladder.append(LadderEntry("in", request, source))
            if leg.dialog is not None and not leg.dialog.accept_remote_cseq(request):
                reply(500, "CSeq Out of Order")
            elif method == "BYE":
                tx.send_response(leg.bye_received(request))
            elif method == "REFER":
                status, reason = leg.refer_received(request)
                reply(status, reason)
                if status == 202:
                    leg.notify_refer(100, "Trying")     # at once, as RFC 3515 2.4.4 asks
            else:
                reply(200)
                if leg.listener is not None:
                    hook = leg.listener.leg_info if method == "INFO" else leg.listener.leg_message
                    hook(leg, request.headers.get("Content-Type") or "", request.body)
            # The transaction lingers (timer J) to absorb retransmissions; it
            # must not keep the whole call alive with it.
            holder[0] = None
        elif method == "OPTIONS":
            reply(200, extra=[("Allow", self.allowed), ("Accept", "application/sdp"),
                              ("Supported", "")])
        elif method == "REGISTER" and self.registrar is not None:
            outcome = self.registrar.register(request, source.transport, source.host, source.port)
            if outcome.status >= 400 and outcome.status not in (401, 407):
                log.info("REGISTER from {source} refused: {status} {reason}", source=str(source),
                         status=outcome.status, reason=outcome.reason or "")
            reply(outcome.status, outcome.reason, extra=outcome.headers)
        elif method in KNOWN_NOT_ALLOWED:
            reply(405, extra=[("Allow", self.allowed)])
        else:
            reply(501)

    def _invite_received(self, request: SipRequest, source: Target, tx: ServerInviteTransaction,
                         holder: list, key) -> None:
        if request.to_addr.tag:
            leg = self._dialog_leg(request)
            if leg is None:
                tx.send_response(self._respond(request, source, 481))
                return
            holder[0] = leg
            leg.ladder.append(LadderEntry("in", request, source))
            if leg.dialog is not None and not leg.dialog.accept_remote_cseq(request):
                tx.send_response(self._respond(request, source, 500, "CSeq Out of Order"))
                return
            if leg.client_reinvite is not None:
                # Both sides re-INVITEd at once: RFC 3261 14.2's glare answer.
                tx.send_response(self._respond(request, source, 491, "Request Pending"))
                return
            if leg.state != "confirmed" or leg.reinvite_tx is not None:
                # The first INVITE has no final response or ACK yet, an earlier
                # re-INVITE is still open, or the call is ending: RFC 3261 14.2
                # asks for 500 with a Retry-After of 0-10 s.
                tx.send_response(self._respond(request, source, 500, "Server Internal Error",
                                               extra=[("Retry-After", str(random.randint(1, 10)))]))
                return
            self._reinvite_received(leg, request, source, tx)
            return
        merged = (request.call_id, request.from_tag or "", request.cseq[0])
        if merged in self._pending_invites:
            # The same request arrived by another path (a forking proxy's
            # branches meeting again): RFC 3261 8.2.2.2 answers it 482.
            tx.send_response(self._respond(request, source, 482, "Loop Detected"))
            return
        leg = IncomingCall(self, request, tx, source)
        holder[0] = leg
        leg.ladder.append(LadderEntry("in", request, source))
        self.invites[key] = leg
        self._pending_invites[merged] = key
        tx.on_terminated = lambda t: (self.server_transactions.pop(key, None),
                                      self.invites.pop(key, None),
                                      self._pending_invites.pop(merged, None))
        tx.send_response(make_response(request, 100, extra=[("Server", SERVER_NAME)]))
        try:
            self.handler.incoming_call(leg)
        except Exception:
            log.failure("incoming call {call_id} could not be handled", call_id=request.call_id)
            leg.reject(500, "Server Internal Error")

    def _reinvite_received(self, leg: IncomingCall, request: SipRequest, source: Target,
                           tx: ServerInviteTransaction) -> None:
        """A re-INVITE: a new offer for the session (hold, a moved peer, a codec
        change) or, without SDP, a request for our offer (RFC 3261 14.2)."""
        if leg.dialog is not None and request.contact is not None:
            # A target refresh request (RFC 3261 12.2.2).
            leg.dialog.remote_target = request.contact.uri
        body = leg.answer_body
        if request.body:
            answer = _hook(leg.listener.leg_offer, leg, request.body) if leg.listener else None
            if answer is None:
                tx.send_response(self._respond(request, source, 488, "Not Acceptable Here"))
                return
            leg.answer_body = body = answer
        leg.reinvite_tx = tx
        response = make_response(request, 200, to_tag=None, body=body,
                                  content_type="application/sdp",
                                  extra=[("Server", SERVER_NAME),
                                         ("Contact", f"<{self.contact_uri(source.transport)}>")])
        tx.send_response(response)

    def _cancel_received(self, cancel: SipRequest, reply) -> None:
        key = server_key(cancel, method="INVITE")
        leg = self.invites.get(key)
        if leg is None:
            reply(481)
            return
        leg.ladder.append(LadderEntry("in", cancel, leg.source))
        reply(200, to_tag=leg.local_tag)
        leg.cancelled(cancel)

    def _dialog_leg(self, request: SipRequest) -> IncomingCall | None:
        tag = request.to_addr.tag
        if not tag:
            return None
        return self.dialogs.get((request.call_id, tag))

    def _response_received(self, response: SipResponse) -> None:
        via = response.top_via
        key = client_key(via.branch or "", response.cseq[1])
        tx = self.client_transactions.get(key)
        if tx is not None:
            tx.receive_response(response)
            return
        standin = self._acking.get(key)
        if standin is None:
            return
        ok_tag, ack, transport, host, port, fork = standin
        status = response.status
        if ok_tag is None:
            if status >= 300:           # the failure again: the same ACK (timer D)
                self.send(SerializedMessage(ack), Target(transport, host, port))
        elif 200 <= status < 300:
            if (response.to_addr.tag or "") == ok_tag:
                # A retransmitted 2xx: the same ACK again (RFC 3261 13.2.2.4).
                self.send(SerializedMessage(ack), Target(transport, host, port))
            elif fork is not None:
                self._end_fork(response, fork)

    def _end_fork(self, response: SipResponse, fork: tuple) -> None:
        """Another fork answered our INVITE too: acknowledge its 2xx and end its
        dialog at once (RFC 3261 13.2.2.4). ``fork`` holds the INVITE's Call-ID,
        From tag and value, Request-URI and CSeq number, and the flow it went on."""
        call_id, local_tag, from_value, uri, cseq, transport, host, port = fork
        dialog = Dialog.from_uac(response, call_id, local_tag, NameAddr.parse(from_value),
                                 SipUri.parse(uri), cseq - 1)
        target = dialog_target(dialog, Target(transport, host, port))
        via = self.via(transport)
        self.send(dialog.create_request("ACK", via), target)
        self.start_client_transaction(dialog.create_request("BYE", via), target, _ignore)

    # -- dialogs
    def dialog_opened(self, leg: IncomingCall) -> None:
        self.dialogs[(leg.call_id, leg.local_tag)] = leg

    def dialog_closed(self, leg: IncomingCall) -> None:
        # Forget the dialog at once: retransmitted BYEs are absorbed by their
        # server transaction, a late ACK is harmless to drop, and anything
        # new for a dead dialog deserves its 481. Holding whole legs for 32 s
        # would keep millions of objects alive at a few hundred calls/s.
        self.dialogs.pop((leg.call_id, leg.local_tag), None)

    # -- client transactions (BYE now; outbound INVITE later)
    def start_client_transaction(self, request: SipRequest, target: Target,
                                 done: Callable[[SipResponse | None], None],
                                 leg: IncomingCall | None = None) -> None:
        ua = self
        reliable = target.transport != "udp"
        tx = ClientNonInviteTransaction(request, self.clock,
                                        lambda m: ua.send(m, target, leg), reliable,
                                        _RequestUser(done, leg, target))
        key = client_key(request.top_via.branch or "", request.method)
        tx.on_terminated = lambda t: self.client_transactions.pop(key, None)
        # Timer K only absorbs retransmitted final responses, and responses that
        # match no transaction are dropped anyway: the transaction (holding its
        # leg, and through it the call) can end with its final response.
        tx.on_final = _ignore
        self.client_transactions[key] = tx
        tx.start()

    # -- ServerTransactionUser
    def transaction_timed_out(self, tx) -> None:
        if isinstance(tx, ServerInviteTransaction):
            leg = self.invites.get(server_key(tx.request))
            if leg is not None:
                leg.ack_timed_out()
                return
            leg = self._dialog_leg(tx.request)      # a re-INVITE's transaction
            if leg is not None and leg.reinvite_tx is tx:
                # No ACK for our 2xx to a re-INVITE: end the session (RFC 3261 13.3.1.4).
                leg.reinvite_tx = None
                leg.hangup()


class _RequestUser:
    """The TU of one of our non-INVITE requests: its responses go to the leg's ladder,
    the final one (None when none came) to ``done``."""

    __slots__ = ("done", "leg", "target")

    def __init__(self, done: Callable[[SipResponse | None], None], leg: DialogLeg | None,
                 target: Target) -> None:
        self.done = done
        self.leg = leg
        self.target = target

    def response_received(self, tx: ClientTransaction, response: SipResponse) -> None:
        if self.leg is not None:
            self.leg.ladder.append(LadderEntry("in", response, self.target))
        if response.status >= 200:
            self.done(response)

    def transaction_timed_out(self, tx: ClientTransaction) -> None:
        self.done(None)


def _ignore(*args) -> None:
    pass


class SerializedMessage:
    """A message kept only as its bytes (what a retransmission needs)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def to_bytes(self) -> bytes:
        return self.data


def _hook(fn: Callable, *args):
    """Call a leg listener's offer/answer hook; a hook that raises counts as a
    refusal (None), so the request still gets its answer (488, or BYE for an
    ACK) and no transaction is left waiting for one."""
    try:
        return fn(*args)
    except Exception:
        log.failure("offer/answer hook {hook} raised", hook=getattr(fn, "__qualname__", fn))
        return None

