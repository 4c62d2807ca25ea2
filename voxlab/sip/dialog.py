"""SIP dialog state (RFC 3261 section 12): identifiers, CSeq, route set, remote target."""

from __future__ import annotations

from voxlab.sip.message import Headers, SipRequest, SipResponse, new_branch
from voxlab.sip.uri import NameAddr, SipUri


class Dialog:
    """One dialog as seen by this user agent; builds in-dialog requests and checks incoming CSeq."""

    __slots__ = ("call_id", "local_tag", "remote_tag", "local_addr", "remote_addr",
                 "remote_target", "route_set", "local_cseq", "remote_cseq", "state")

    def __init__(self, call_id: str, local_tag: str, remote_tag: str | None,
                 local_addr: NameAddr, remote_addr: NameAddr, remote_target: SipUri,
                 route_set: list[str], local_cseq: int, remote_cseq: int | None) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.state = "early"

    @classmethod
    def from_uas(cls, invite: SipRequest, local_tag: str) -> "Dialog":
        """The dialog a UAS creates when it answers ``invite`` (RFC 3261 12.1.1)."""
        contact = invite.contact
        remote_target = contact.uri if contact is not None else invite.from_addr.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_addr.tag,
            local_addr=invite.to_addr.with_tag(local_tag),
            remote_addr=invite.from_addr,
            remote_target=remote_target,
            # The UAS keeps Record-Route in the order received.
            route_set=list(invite.headers.get_all("Record-Route")),
            local_cseq=0,
            remote_cseq=invite.cseq[0],
        )

    @classmethod
    def from_uac(cls, response: SipResponse, call_id: str, local_tag: str, local_addr: NameAddr,
                 request_uri: SipUri, cseq: int) -> "Dialog":
        """The dialog a response with a To tag makes for the UAC of the INVITE with
        ``request_uri`` and CSeq number ``cseq`` (RFC 3261 12.1.2)."""
        contact = response.contact
        return cls(
            call_id=call_id,
            local_tag=local_tag,
            remote_tag=response.to_addr.tag,
            local_addr=local_addr,
            remote_addr=response.to_addr,
            remote_target=contact.uri if contact is not None else request_uri,
            # The UAC reverses the Record-Route set.
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_cseq=cseq,
            remote_cseq=None,
        )

    @property
    def id(self) -> tuple[str, str, str | None]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def accept_remote_cseq(self, request: SipRequest) -> bool:
        """False for an out-of-order in-dialog request (answer 500, RFC 3261 12.2.2)."""
        number = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_cseq is not None and number <= self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def create_request(self, method: str, via: str) -> SipRequest:
        """A new in-dialog request; ``via`` is this UA's sent-by, e.g. 'SIP/2.0/UDP 127.0.0.1:5060'."""
        self.local_cseq += 1
        headers = Headers()
        headers.add("Via", f"{via};branch={new_branch()};rport")
        headers.add("Max-Forwards", "70")
        uri = self.remote_target
        routes = self.route_set
        if routes:
            first = NameAddr.parse(routes[0])
            if "lr" not in first.uri.params:
                # Strict router: it becomes the Request-URI (RFC 3261 12.2.1.1).
                uri = first.uri
                routes = routes[1:] + [f"<{self.remote_target}>"]
            for route in routes:
                headers.add("Route", route)
        headers.add("From", str(self.local_addr))
        headers.add("To", str(self.remote_addr))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.local_cseq} {method}")
        return SipRequest(method, uri, headers, b"")

    def next_hop(self) -> SipUri:
        """Where an in-dialog request goes: the first route, else the remote target."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).uri
        return self.remote_target
