"""Transaction state machines driven by a fake clock: RFC 3261 timers and retransmissions."""

from twisted.internet.task import Clock

from voxlab.sip.message import make_response, parse_message
from voxlab.sip.transaction import (
    T1, T2, T4, ClientInviteTransaction, ClientNonInviteTransaction,
    ServerInviteTransaction, ServerNonInviteTransaction,
)

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


def test_invite_no_retransmission_over_tcp():
    clock, rec = Clock(), Recorder()
    tx = ServerInviteTransaction(request(), clock, rec.send, reliable=True, tu=rec)
    tx.send_response(make_response(tx.request, 200, to_tag="x"))
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
