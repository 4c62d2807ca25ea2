"""Transaction state machines driven by a fake clock: RFC 3261 timers and retransmissions."""

from twisted.internet.task import Clock

from voxlab.sip.message import make_response, parse_message
from voxlab.sip.transaction import (
    T1, T2, T4, ClientInviteTransaction, ClientNonInviteTransaction,
    ServerInviteTransaction, ServerNonInviteTransaction, server_key,
)
from voxlab.sip.useragent import Target, UserAgent

INVITE = (
    "INVITE sip:echo@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-abc\r\n"
    "From: <sip:a@127.0.0.1>;tag=1\r\n"
    "To: <sip:echo@127.0.0.1>\r\n"
    "Call-ID: tx-test\r\n"
    "CSeq: 1 {method}\r\n"
    "Content-Length: 0\r\n\r\n"
)


def request(method="INVITE"):
    return parse_message(INVITE.replace("INVITE sip", f"{method} sip").format(method=method).encode())


class Recorder:
    def __init__(self):
        self.sent = []
        self.responses = []
        self.timeouts = 0

    def send(self, message):
        self.sent.append(message)

    def response_received(self, tx, response):
        self.responses.append(response.status)

    def transaction_timed_out(self, tx):
        self.timeouts += 1


def advance(clock, seconds, step=0.05):
    for _ in range(int(seconds / step)):
        clock.advance(step)


def test_invite_2xx_retransmitted_until_ack():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=False, tu=rec)
    ok = make_response(tx.request, 200, to_tag="x")
    tx.send_response(ok)
    assert rec.sent == [ok]
    # T1, 2*T1, 4*T1 ... capped at T2: by 3.5 s we have sent at 0, .5, 1.5, 3.5
    advance(clock, 3.6)
    assert len(rec.sent) == 4
    assert all(m is ok for m in rec.sent)
    tx.ack_received()
    assert tx.state == "terminated"
    advance(clock, 10)
    assert len(rec.sent) == 4
    assert rec.timeouts == 0


def test_invite_2xx_without_ack_times_out_after_64_t1():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=False, tu=rec)
    tx.send_response(make_response(tx.request, 200, to_tag="x"))
    advance(clock, 64 * T1 - 0.1)
    assert rec.timeouts == 0
    sent_before = len(rec.sent)
    # Intervals cap at T2.
    assert sent_before >= 1 + 3 + int((64 * T1 - 7 * T1) / T2) - 1
    advance(clock, 0.2)
    assert rec.timeouts == 1
    assert tx.state == "terminated"


def test_invite_2xx_is_retransmitted_over_tcp_too_until_the_ack():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=True, tu=rec)
    tx.send_response(make_response(tx.request, 200, to_tag="x"))
    advance(clock, T1 + 3 * T1 + 0.1)          # T1, then 2*T1: two repeats
    assert len(rec.sent) == 3
    tx.ack_received()
    advance(clock, 10)
    assert len(rec.sent) == 3 and tx.state == "terminated"


def test_invite_non2xx_not_retransmitted_over_tcp():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=True, tu=rec)
    tx.send_response(make_response(tx.request, 486, to_tag="x"))
    advance(clock, 10)
    assert len(rec.sent) == 1


def test_invite_non2xx_completed_ack_confirmed_then_terminated():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=False, tu=rec)
    tx.send_response(make_response(tx.request, 100))
    # A retransmitted INVITE gets the last provisional again.
    tx.receive_request(request())
    assert [m.status for m in rec.sent] == [100, 100]
    tx.send_response(make_response(tx.request, 486, to_tag="x"))
    advance(clock, T1 + 0.06)
    assert [m.status for m in rec.sent] == [100, 100, 486, 486]   # timer G
    tx.receive_request(request("ACK"))
    assert tx.state == "confirmed"
    advance(clock, T4 + 0.1)
    assert tx.state == "terminated"
    assert [m.status for m in rec.sent][-1] == 486 and len(rec.sent) == 4


def test_non_invite_server_absorbs_retransmissions_then_timer_j():
    clock, rec = Clock(), Recorder()
    tx = ServerNonInviteTransaction(request("BYE"), clock, rec.send, reliable=False)
    tx.send_response(make_response(tx.request, 200))
    tx.receive_request(request("BYE"))
    assert [m.status for m in rec.sent] == [200, 200]
    advance(clock, 64 * T1 + 0.1)
    assert tx.state == "terminated"


def test_non_invite_client_timer_e_and_f():
    clock, rec = Clock(), Recorder()
    tx = ClientNonInviteTransaction(request("BYE"), clock, rec.send, reliable=False, tu=rec)
    tx.start()
    advance(clock, 64 * T1 + 0.1)
    # 0, .5, 1.5, 3.5, 7.5, 11.5, ... every T2 after the cap, until F at 32 s.
    assert 9 <= len(rec.sent) <= 12
    assert rec.timeouts == 1


def test_non_invite_client_final_response_timer_k():
    clock, rec = Clock(), Recorder()
    tx = ClientNonInviteTransaction(request("BYE"), clock, rec.send, reliable=False, tu=rec)
    tx.start()
    tx.receive_response(make_response(tx.request, 200))
    assert rec.responses == [200]
    assert tx.state == "completed"
    tx.receive_response(make_response(tx.request, 200))   # retransmission absorbed
    assert rec.responses == [200]
    advance(clock, T4 + 0.1)
    assert tx.state == "terminated"
    assert len(rec.sent) == 1


def test_invite_client_timer_a_and_ack_for_failure():
    clock, rec = Clock(), Recorder()
    tx = ClientInviteTransaction(request(), clock, rec.send, reliable=False, tu=rec)
    tx.start()
    advance(clock, 1.6)
    assert len(rec.sent) == 3          # 0, .5, 1.5
    tx.receive_response(make_response(tx.request, 180, to_tag="y"))
    advance(clock, 5)
    assert len(rec.sent) == 3          # no more retransmission once proceeding
    tx.receive_response(make_response(tx.request, 486, to_tag="y"))
    ack = rec.sent[-1]
    assert ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert ack.top_via.branch == "z9hG4bK-abc"
    assert ack.to_addr.tag == "y"
    tx.receive_response(make_response(tx.request, 486, to_tag="y"))
    assert rec.sent[-1].method == "ACK" and len(rec.sent) == 5
    assert rec.responses == [180, 486]


def test_invite_client_timer_b():
    clock, rec = Clock(), Recorder()
    tx = ClientInviteTransaction(request(), clock, rec.send, reliable=False, tu=rec)
    tx.start()
    advance(clock, 64 * T1 + 0.1)
    assert rec.timeouts == 1
    # A doubles without cap: 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert len(rec.sent) == 7


def test_non_invite_server_hands_completed_state_to_owner():
    clock, rec = Clock(), Recorder()
    tx = ServerNonInviteTransaction(request("BYE"), clock, rec.send, reliable=False)
    handed = []
    tx.on_completed = lambda t, data: handed.append(data)
    ok = make_response(tx.request, 200)
    tx.send_response(ok)
    assert handed == [ok.to_bytes()]
    assert tx.state == "terminated" and not tx.timers.pending


# -- timers H and D

def test_timer_h_completed_without_ack_terminates_after_64_t1_and_tells_tu():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=False, tu=rec)
    tx.send_response(make_response(tx.request, 486, to_tag="x"))
    advance(clock, 64 * T1 - 0.1)
    assert tx.state == "completed" and rec.timeouts == 0
    # Timer G kept repeating the 486 until then: .5 1.5 3.5 7.5, then every T2 up to 31.5.
    assert [m.status for m in rec.sent] == [486] * 11
    advance(clock, 0.2)
    assert tx.state == "terminated" and rec.timeouts == 1
    assert not tx.timers.pending
    clock.advance(60)
    assert len(rec.sent) == 11 and rec.timeouts == 1
    # A late ACK changes nothing.
    tx.receive_request(request("ACK"))
    assert tx.state == "terminated" and len(rec.sent) == 11


def test_timer_h_runs_over_tcp_too_without_retransmissions():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=True, tu=rec)
    tx.send_response(make_response(tx.request, 603, to_tag="x"))
    clock.advance(64 * T1 - 0.01)
    assert tx.state == "completed" and rec.timeouts == 0 and len(rec.sent) == 1
    clock.advance(0.02)
    assert tx.state == "terminated" and rec.timeouts == 1 and len(rec.sent) == 1


def test_ack_in_completed_cancels_timer_h():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=False, tu=rec)
    tx.send_response(make_response(tx.request, 486, to_tag="x"))
    clock.advance(2 * T1)
    tx.receive_request(request("ACK"))
    assert tx.state == "confirmed" and set(tx.timers.pending) == {"I"}
    clock.advance(64 * T1)
    assert tx.state == "terminated" and rec.timeouts == 0


def _completed_client_invite(reliable):
    clock, rec = Clock(), Recorder()
    tx = ClientInviteTransaction(request(), clock, rec.send, reliable=reliable, tu=rec)
    terminated = []
    tx.on_terminated = terminated.append
    tx.start()
    tx.receive_response(make_response(tx.request, 486, to_tag="y"))
    assert tx.state == "completed" and rec.sent[-1].method == "ACK"
    return clock, rec, tx, terminated


def test_timer_d_is_32_seconds_over_udp_and_absorbs_response_retransmissions():
    clock, rec, tx, terminated = _completed_client_invite(reliable=False)
    sent = len(rec.sent)
    clock.advance(31.9)
    assert tx.state == "completed" and not terminated
    # Until D fires, a retransmitted 486 gets the ACK again and is not passed up.
    tx.receive_response(make_response(tx.request, 486, to_tag="y"))
    assert len(rec.sent) == sent + 1 and rec.sent[-1].method == "ACK"
    assert rec.responses == [486]
    clock.advance(0.2)
    assert tx.state == "terminated" and terminated == [tx]
    assert rec.timeouts == 0                 # timer D is no failure: the TU is not told
    assert not tx.timers.pending


def test_timer_d_is_zero_over_tcp():
    clock, rec, tx, terminated = _completed_client_invite(reliable=True)
    assert tx.state == "completed"           # D is scheduled with delay 0, not run inline
    clock.advance(0)
    assert tx.state == "terminated" and terminated == [tx] and rec.timeouts == 0
    assert [m.method for m in rec.sent] == ["INVITE", "ACK"]


# -- matching requests to server transactions (RFC 3261 17.2.3)

def rfc2543(method="INVITE", call_id="old-1", cseq=1, to_tag="", via_extra="", cseq_method=None,
            uri="sip:echo@127.0.0.1", body=b""):
    """A request from an RFC 2543 peer: its top Via has no (magic-cookie) branch."""
    to = "<sip:echo@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return parse_message((
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061{via_extra}\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        f"{ctype}Content-Length: {len(body)}\r\n\r\n").encode() + body)


def test_magic_cookie_key_is_branch_sent_by_and_method():
    assert server_key(request()) == ("z9hG4bK-abc", "127.0.0.1:5061", "INVITE")
    assert server_key(request("ACK")) == server_key(request())
    assert server_key(request("CANCEL")) == ("z9hG4bK-abc", "127.0.0.1:5061", "CANCEL")
    assert server_key(request("CANCEL"), method="INVITE") == server_key(request())


def test_rfc2543_invites_with_different_call_ids_are_different_transactions():
    first, second = rfc2543(call_id="old-1"), rfc2543(call_id="old-2")
    assert server_key(first) != server_key(second)
    assert server_key(rfc2543(call_id="old-1")) == server_key(first)      # a retransmission
    # Each of the matched fields tells transactions apart.
    for other in (rfc2543(cseq=2), rfc2543(uri="sip:other@127.0.0.1"),
                  rfc2543(via_extra=";branch=1234"), rfc2543(method="OPTIONS")):
        assert server_key(other) != server_key(first)
    # A non-cookie branch counts as part of the Via, not as a transaction id.
    assert server_key(rfc2543(via_extra=";branch=1234")) != server_key(
        rfc2543(call_id="old-2", via_extra=";branch=1234"))


def test_rfc2543_ack_and_cancel_match_their_invite():
    invite = rfc2543()
    # The ACK for a non-2xx response carries the response's To tag.
    assert server_key(rfc2543("ACK", to_tag="ours", cseq_method="ACK")) == server_key(invite)
    assert server_key(rfc2543("ACK", call_id="old-2")) != server_key(invite)
    cancel = rfc2543("CANCEL")
    assert server_key(cancel) != server_key(invite)              # its own transaction
    assert server_key(cancel, method="INVITE") == server_key(invite)
    assert server_key(rfc2543("CANCEL", call_id="old-2"), method="INVITE") != server_key(invite)


def test_rfc2543_non_invite_key_includes_the_to_tag():
    assert server_key(rfc2543("BYE", to_tag="a")) != server_key(rfc2543("BYE", to_tag="b"))
    assert server_key(rfc2543("BYE", to_tag="a")) == server_key(rfc2543("BYE", to_tag="a"))


def test_rfc2543_key_survives_received_and_rport_stamping():
    """The UA stamps received/rport into the top Via after keying the request and
    keys the stamped request again later (ACK absorption, timer H)."""
    invite = rfc2543(via_extra=";rport")
    key = server_key(invite)
    via = invite.top_via
    via.params["rport"] = "40000"
    via.params["received"] = "192.0.2.1"
    invite.headers.set("Via", str(via))
    assert server_key(invite) == key


# -- the same, through the user agent

PEER = Target("udp", "127.0.0.1", 5061)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


class Legs:
    def __init__(self):
        self.legs = []
        self.events = []

    def incoming_call(self, leg):
        self.legs.append(leg)
        leg.listener = self

    def leg_confirmed(self, leg):
        self.events.append(("confirmed", leg.call_id))

    def leg_terminated(self, leg, reason, code):
        self.events.append((reason, leg.call_id))

    def leg_info(self, leg, ctype, body):
        pass


def make_ua():
    clock, sent, handler = Clock(), [], Legs()
    ua = UserAgent(clock, lambda m, t: sent.append(parse_message(m.to_bytes())), handler,
                   "127.0.0.1", 5060)
    return ua, clock, sent, handler


def wire(req):
    return req.to_bytes()


def test_ua_two_rfc2543_invites_from_one_port_are_two_calls():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(wire(rfc2543(call_id="old-1", body=SDP)), PEER)
    handler.legs[0].answer(SDP)
    ua.datagram_received(wire(rfc2543(call_id="old-2", body=SDP)), PEER)
    assert [leg.call_id for leg in handler.legs] == ["old-1", "old-2"]
    # The second call got its own 100, not a resend of the first call's 200.
    assert [(m.status, m.call_id) for m in sent] == [(100, "old-1"), (200, "old-1"), (100, "old-2")]
    handler.legs[1].answer(SDP)
    assert (sent[-1].status, sent[-1].call_id) == (200, "old-2")


def test_ua_rfc2543_invite_retransmission_is_absorbed():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(wire(rfc2543(call_id="old-1", body=SDP)), PEER)
    ua.datagram_received(wire(rfc2543(call_id="old-2", body=SDP)), PEER)
    ua.datagram_received(wire(rfc2543(call_id="old-1", body=SDP)), PEER)       # retransmission
    assert len(handler.legs) == 2
    assert [(m.status, m.call_id) for m in sent] == [(100, "old-1"), (100, "old-2"), (100, "old-1")]
    handler.legs[1].reject(486)
    ua.datagram_received(wire(rfc2543(call_id="old-2", body=SDP)), PEER)       # retransmission after the 486
    assert [(m.status, m.call_id) for m in sent[-2:]] == [(486, "old-2"), (486, "old-2")]
    # Its ACK (RFC 2543: no branch, the 486's To tag) is matched to that INVITE's transaction.
    ack = rfc2543("ACK", call_id="old-2", to_tag=sent[-1].to_tag, cseq_method="ACK")
    ua.datagram_received(wire(ack), PEER)
    tx = ua.server_transactions[server_key(rfc2543(call_id="old-2", body=SDP))]
    assert tx.state == "confirmed"
    assert len(handler.legs) == 2


def test_ua_rfc2543_ack_for_2xx_confirms_and_later_retransmission_is_absorbed():
    """Absorbing after the ACK keys the (received-stamped) INVITE again."""
    ua, clock, sent, handler = make_ua()
    source = Target("udp", "192.0.2.7", 5061)             # not the Via host: 'received' is stamped
    ua.datagram_received(wire(rfc2543(call_id="old-1", via_extra=";rport", body=SDP)), source)
    handler.legs[0].answer(SDP)
    tag = sent[-1].to_tag
    ua.datagram_received(wire(rfc2543("ACK", call_id="old-1", to_tag=tag, via_extra=";rport")), source)
    assert handler.events == [("confirmed", "old-1")]
    ua.datagram_received(wire(rfc2543(call_id="old-1", via_extra=";rport", body=SDP)), source)
    assert len(handler.legs) == 1 and [m.status for m in sent] == [100, 200]


def test_ua_rfc2543_cancel_matches_its_invite():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(wire(rfc2543(call_id="old-1", body=SDP)), PEER)
    ua.datagram_received(wire(rfc2543(call_id="old-2", body=SDP)), PEER)
    ua.datagram_received(wire(rfc2543("CANCEL", call_id="old-2")), PEER)
    assert [(m.status, m.cseq[1], m.call_id) for m in sent[-2:]] == [
        (200, "CANCEL", "old-2"), (487, "INVITE", "old-2")]
    assert handler.events == [("cancelled", "old-2")]
    assert handler.legs[0].state == "incoming"
