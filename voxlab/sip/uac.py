"""The UAC side of one outgoing INVITE (RFC 3261 13.2, 17.1.1): the leg a scenario's
``VoxEngine.call_sip`` places. It has the interface the UserAgent's in-dialog handling
and the engine's Call use of an :class:`~voxlab.sip.useragent.IncomingCall`.

What it tells its listener: ``leg_progress(leg, status, sdp)`` for each 1xx (with the
early-media SDP of a 183, if any), ``leg_answered(leg, sdp) -> bool`` on the first 2xx
(False: the answer is unusable, the leg hangs up), then ``leg_confirmed``, and at the end
``leg_terminated(leg, reason, code)`` with reason ``rejected`` (a final response >= 300,
``leg.final_reason`` says its phrase), ``timeout``, ``cancelled``, ``local-bye`` or
``remote-bye``. The INVITE transaction hands its final response's retransmissions to the
UserAgent (``UserAgent.stand_in``): a retransmitted 2xx gets the same ACK again, a 2xx from
a second fork (another To tag) is ACKed and sent a BYE at once, without this leg.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from voxlab.sip.dialog import Dialog
from voxlab.sip.message import (
    Headers, SipRequest, SipResponse, make_response, new_branch, new_call_id, new_tag,
)
from voxlab.sip.transaction import ClientInviteTransaction, ClientTransaction, client_key
from voxlab.sip.uri import NameAddr, SipUri
from voxlab.sip.useragent import SERVER_NAME, DialogLeg, LadderEntry, SerializedMessage

if TYPE_CHECKING:
    from voxlab.sip.useragent import Target, UserAgent

log = Logger()


class OutgoingCall(DialogLeg):
    """One outgoing INVITE and the dialog its first 2xx makes."""

    def __init__(self, ua: "UserAgent", target: "Target", uri: SipUri, from_addr: NameAddr,
                 offer: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.ua = ua
        self.source = target            # the flow requests of this leg go to
        self.local_tag = new_tag()
        self.state = "calling"          # calling, proceeding, confirmed, terminating, terminated
        self.dialog: Dialog | None = None
        self.listener: Any = None
        self.ladder: list = []
        self.created = time.time()
        self.answer_body = offer        # our SDP (what a re-INVITE's answer is built against)
        self.reinvite_tx = None
        self.final_reason = ""
        self._cancel_wanted = False
        self._provisional = False
        self._ack: SerializedMessage | None = None     # the ACK of our 2xx, as sent
        h = Headers()
        self._branch = new_branch()
        h.add("Via", f"{ua.via(target.transport)};branch={self._branch};rport")
        h.add("Max-Forwards", "70")
        h.add("From", str(from_addr.with_tag(self.local_tag)))
        h.add("To", f"<{uri}>")
        h.add("Call-ID", new_call_id(ua.host))
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<{ua.contact_uri(target.transport)}>")
        h.add("User-Agent", SERVER_NAME)
        h.add("Allow", ua.allowed)
        for name, value in headers or ():
            h.add(name, value)
        if offer:
            h.add("Content-Type", "application/sdp")
        self.invite = SipRequest("INVITE", uri, h, offer)
        self.tx: ClientInviteTransaction | None = None
        self.auth_tries = 0

    # -- facts, as IncomingCall has them
    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def destination(self) -> str:
        return self.invite.uri.user or ""

    @property
    def offer(self) -> bytes:
        return b""                       # we made the offer

    @property
    def reliable(self) -> bool:
        return self.source.transport != "udp"

    # -- sending
    def start(self) -> None:
        """Send the INVITE (again, after a challenge: ``invite`` was rebuilt)."""
        ua = self
        key = client_key(self.invite.top_via.branch or "", "INVITE")
        self.tx = ClientInviteTransaction(self.invite, self.ua.clock,
                                          lambda m: ua.ua.send(m, self.source, self),
                                          self.reliable, self)
        self.tx.on_terminated = lambda t: self.ua.client_transactions.pop(key, None)
        self.tx.on_final = self._hand_over
        self.ua.client_transactions[key] = self.tx
        self.ua.dialogs[(self.call_id, self.local_tag)] = self   # in-dialog requests find us
        self.tx.start()

    def resend_with(self, header: str, value: str) -> None:
        """The INVITE again with credentials (a new branch and CSeq, RFC 3261 22.2)."""
        old = self.invite
        h = old.headers.copy()
        self._branch = new_branch()
        h.set("Via", f"{self.ua.via(self.source.transport)};branch={self._branch};rport")
        h.set("CSeq", f"{old.cseq[0] + 1} INVITE")
        h.remove("Authorization")
        h.remove("Proxy-Authorization")
        h.add(header, value)
        self.invite = SipRequest("INVITE", old.uri, h, old.body)
        self.auth_tries += 1
        self.state = "calling"
        self.start()

    # -- ClientTransactionUser
    def response_received(self, tx: ClientTransaction, response: SipResponse) -> None:
        self.ladder.append(LadderEntry("in", response, self.source))
        status = response.status
        if status < 200:
            if self.state == "calling":
                self.state = "proceeding"
            self._provisional = True
            if self._cancel_wanted:
                self._send_cancel()
            elif status > 100 and self.listener is not None:
                self.listener.leg_progress(self, status, response.body
                                           if response.content_type == "application/sdp" else b"")
        elif status < 300:
            self._two_xx(response)
        elif self.state in ("calling", "proceeding"):
            if status in (401, 407) and self.auth_tries == 0 and self.listener is not None:
                if self.listener.leg_challenged(self, response):
                    return
            self.final_reason = response.reason
            self._ended("cancelled" if self._cancel_wanted else "rejected", status)

    def transaction_timed_out(self, tx: ClientTransaction) -> None:
        if tx is self.tx and self.state in ("calling", "proceeding"):
            self.final_reason = "Request Timeout"
            self._ended("timeout", 408)

    def _two_xx(self, response: SipResponse) -> None:
        # The first 2xx (the transaction hands any later one to the UserAgent).
        dialog = self.dialog = Dialog.from_uac(response, self.call_id, self.local_tag,
                                               self.invite.from_addr, self.invite.uri,
                                               self.invite.cseq[0])
        dialog.state = "confirmed"
        # The ACK repeats the INVITE's CSeq number (RFC 3261 13.2.2.4).
        dialog.local_cseq -= 1
        ack = dialog.create_request("ACK", self.ua.via(self.source.transport))
        self._ack = SerializedMessage(ack.to_bytes())
        self.ua.send(self._ack, self._dialog_target(), self)
        if self._cancel_wanted or self.state == "terminated":
            self.state = "confirmed"
            self._send_bye("cancelled")
            return
        self.state = "confirmed"
        usable = self.listener.leg_answered(self, response.body) if self.listener is not None else True
        if not usable:
            self._send_bye("bad-answer")
            return
        if self.listener is not None:
            self.listener.leg_confirmed(self)

    def _hand_over(self, tx: ClientTransaction, response: SipResponse) -> None:
        """``tx`` has its final response: from now on the UserAgent answers that
        response's retransmissions (timers M and D) from plain strings, so the
        transaction ends without keeping this leg alive for 64*T1."""
        if response.status >= 300:
            self.ua.stand_in(tx, response, tx.ack, self.source)
        elif self._ack is not None:
            invite, source = tx.request, self.source
            # What another fork's 2xx needs for its ACK and BYE.
            fork = (self.call_id, self.local_tag, invite.headers.get("From") or "",
                    str(invite.uri), invite.cseq[0], source.transport, source.host, source.port)
            self.ua.stand_in(tx, response, self._ack, self._dialog_target(), fork)

    # -- what the engine asks
    def hangup(self) -> None:
        """CANCEL before an answer (once a provisional response came), BYE after."""
        if self.state in ("calling", "proceeding"):
            self._cancel_wanted = True
            if self._provisional:
                self._send_cancel()
            self._ended("cancelled", 487)
        elif self.state == "confirmed":
            self._send_bye("local-bye")

    def reject(self, status: int, reason: str | None = None) -> None:
        self.hangup()

    def _send_cancel(self) -> None:
        req = self.invite
        h = Headers()
        h.add("Via", req.headers.get_all("Via")[0])
        h.add("Max-Forwards", "70")
        h.add("From", req.headers.get("From") or "")
        h.add("To", req.headers.get("To") or "")
        h.add("Call-ID", req.call_id)
        h.add("CSeq", f"{req.cseq[0]} CANCEL")
        self.ua.start_client_transaction(SipRequest("CANCEL", req.uri, h, b""), self.source,
                                         lambda r: None, self)

    # -- from the UserAgent's in-dialog handling
    def bye_received(self, bye: SipRequest) -> SipResponse:
        self._ended("remote-bye", None)
        return make_response(bye, 200, extra=[("Server", SERVER_NAME)])

    def _ended(self, reason: str, code: int | None) -> None:
        if self.state == "terminated":
            return
        self.state = "terminated"
        self.ua.dialogs.pop((self.call_id, self.local_tag), None)
        # The transaction may run on (its ACK, a late 2xx to BYE): dropping our end of
        # the leg <-> transaction cycle lets reference counting free both.
        self.tx = None
        listener = self.listener
        if listener is not None:
            try:
                listener.leg_terminated(self, reason, code)
            finally:
                # Told: the leg may outlive its call (in a transaction, a call's
                # history), the listener's objects (a whole session) must not.
                self.listener = None

    def __repr__(self) -> str:
        return f"<OutgoingCall {self.call_id} to {self.invite.uri} {self.state}>"
