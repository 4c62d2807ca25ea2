"""What an ended call leaves behind: its legs and lingering transactions must not keep
the listener's objects (in voxlab a whole session) alive, so reference counting frees
them, not a cyclic GC pass; and the stand-ins that absorb retransmissions instead still
answer them as RFC 3261 / 6026 ask (the UAC side, driven sans-IO with a fake clock)."""

import gc
import weakref

import pytest
from twisted.internet.task import Clock

from voxlab.sip.message import make_response, parse_message
from voxlab.sip.uac import OutgoingCall
from voxlab.sip.uri import NameAddr, SipUri
from voxlab.sip.useragent import Target, UserAgent

from tests.sip_core.test_useragent import PEER, SDP, req

CALLEE = Target("udp", "127.0.0.1", 5070)


class Listener:
    """Stands in for the engine's Call: it holds its leg, as a Call does (leg <-> listener)."""

    def __init__(self, leg=None):
        self.leg = leg
        self.events = []
        self.payload = [object() for _ in range(10)]     # the session it would keep alive

    def leg_progress(self, leg, status, sdp):
        self.events.append(status)

    def leg_answered(self, leg, sdp):
        return True

    def leg_confirmed(self, leg):
        self.events.append("confirmed")

    def leg_terminated(self, leg, reason, code):
        self.events.append(reason)

    def leg_info(self, leg, ctype, body):
        pass


class Handler:
    """The UA's incoming-call handler: keeps the legs (as ended sessions keep their calls)."""

    def __init__(self):
        self.legs = []

    def incoming_call(self, leg):
        self.legs.append(leg)


@pytest.fixture
def no_gc():
    """Nothing may be freed by an automatic collection while a test looks."""
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


def make_ua():
    clock, sent, handler = Clock(), [], Handler()
    ua = UserAgent(clock, lambda m, t: sent.append((parse_message(m.to_bytes()), t)), handler,
                   "127.0.0.1", 5060)
    return ua, clock, sent, handler


def outgoing(ua, sent):
    leg = OutgoingCall(ua, CALLEE, SipUri.parse("sip:bob@127.0.0.1:5070"),
                       NameAddr.parse("<sip:voxlab@127.0.0.1>"), SDP)
    leg.listener = Listener(leg)
    leg.start()
    invite = sent[-1][0]
    assert invite.method == "INVITE"
    return leg, invite


def answer(invite, tag="callee", contact="<sip:bob@127.0.0.1:5070>"):
    return make_response(invite, 200, to_tag=tag, body=SDP, content_type="application/sdp",
                         extra=[("Contact", contact)]).to_bytes()


def methods(sent):
    return [getattr(m, "method", m.status if hasattr(m, "status") else None) for m, _ in sent]


def test_an_ended_incoming_call_does_not_keep_its_listener_alive(no_gc):
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    leg = handler.legs[0]
    listener = leg.listener = Listener(leg)
    alive = weakref.ref(listener)
    leg.answer(SDP)
    tag = sent[-1][0].to_addr.tag
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)
    assert sent[-1][0].status == 200 and listener.events == ["confirmed", "remote-bye"]
    del listener
    # Freed by reference counting (the GC is off): the leg, which its call's
    # history keeps, and the transactions lingering after it let go of it.
    assert alive() is None
    # Still within timers J and L: retransmissions are absorbed all the same.
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)
    assert sent[-1][0].status == 200 and sent[-1][0].cseq == (2, "BYE")
    # The ladder keeps bytes, parsed again when viewed.
    assert [e.summary for e in leg.ladder][:3] == [
        "INVITE sip:echo@127.0.0.1:5060", "100 Trying", "200 OK"]
    assert leg.ladder[0].message.call_id == "ua-test" and leg.ladder[0].target == str(PEER)


def test_an_ended_outgoing_call_and_its_transactions_do_not_keep_the_listener_alive(no_gc):
    ua, clock, sent, handler = make_ua()
    leg, invite = outgoing(ua, sent)
    listener = leg.listener
    alive = weakref.ref(listener)
    ua.datagram_received(answer(invite), CALLEE)
    ack = sent[-1][0]
    assert ack.method == "ACK" and ack.cseq == (1, "ACK")
    leg.hangup()                                    # our BYE: the leg ends at once
    bye = sent[-1][0]
    assert bye.method == "BYE" and leg.state == "terminated"
    assert listener.events == ["confirmed", "local-bye"]
    del listener
    assert alive() is None          # timer M's stand-in and the BYE's transaction let go
    ua.datagram_received(make_response(bye, 200).to_bytes(), CALLEE)
    assert not ua.client_transactions               # no timer K holding the leg either
    # Timer M still runs, without the leg: a retransmitted 2xx gets the same ACK again.
    ua.datagram_received(answer(invite), CALLEE)
    assert sent[-1][0].to_bytes() == ack.to_bytes() and sent[-1][1] == CALLEE


def test_a_2xx_from_another_fork_after_the_call_ended_is_acked_and_sent_a_bye(no_gc):
    ua, clock, sent, handler = make_ua()
    leg, invite = outgoing(ua, sent)
    ua.datagram_received(answer(invite), CALLEE)
    leg.hangup()
    ua.datagram_received(make_response(sent[-1][0], 200).to_bytes(), CALLEE)
    assert leg.listener is None
    count = len(sent)
    fork = Target("udp", "127.0.0.1", 5080)
    ua.datagram_received(answer(invite, tag="fork2", contact="<sip:carol@127.0.0.1:5080>"), CALLEE)
    assert methods(sent[count:]) == ["ACK", "BYE"]
    for message, target in sent[count:]:
        assert message.to_addr.tag == "fork2" and target == fork
        assert str(message.uri) == "sip:carol@127.0.0.1:5080"
    assert [m.cseq for m, _ in sent[count:]] == [(1, "ACK"), (2, "BYE")]
    assert sent[count][0].from_tag == invite.from_tag


def test_timer_m_ends_and_a_late_2xx_is_dropped():
    ua, clock, sent, handler = make_ua()
    leg, invite = outgoing(ua, sent)
    ua.datagram_received(answer(invite), CALLEE)
    clock.advance(64 * 0.5 + 1.5)
    count = len(sent)
    ua.datagram_received(answer(invite), CALLEE)
    assert len(sent) == count


def test_a_repeated_failure_gets_the_same_ack_until_timer_d(no_gc):
    ua, clock, sent, handler = make_ua()
    leg, invite = outgoing(ua, sent)
    alive = weakref.ref(leg.listener)
    busy = make_response(invite, 486, to_tag="busy").to_bytes()
    ua.datagram_received(busy, CALLEE)
    ack = sent[-1][0]
    assert ack.method == "ACK" and ack.branch == invite.branch and leg.state == "terminated"
    assert alive() is None
    ua.datagram_received(busy, CALLEE)
    assert sent[-1][0].to_bytes() == ack.to_bytes()
    clock.advance(33.5)
    count = len(sent)
    ua.datagram_received(busy, CALLEE)
    assert len(sent) == count


def test_a_bye_before_the_ack_still_absorbs_the_invites_retransmissions():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    handler.legs[0].answer(SDP)
    tag = sent[-1][0].to_addr.tag
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)
    count = len(sent)
    clock.advance(1)
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)      # not a new call
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    assert len(handler.legs) == 1 and len(sent) == count                # the 2xx stopped too
