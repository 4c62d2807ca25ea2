"""The UAS core fed bytes with a fake clock: call flow, CANCEL, retransmission absorption."""

from twisted.internet.task import Clock

from voxlab.sip.message import parse_message
from voxlab.sip.useragent import Target, UserAgent

PEER = Target("udp", "127.0.0.1", 5062)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def req(method, branch, cseq, to_tag="", body=b"", cseq_method=None):
    to = "<sip:echo@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (f"{method} sip:echo@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{branch};rport\r\n"
            "From: <sip:a@127.0.0.1>;tag=caller\r\n"
            f"To: {to}\r\n"
            "Call-ID: ua-test\r\n"
            f"CSeq: {cseq} {cseq_method or method}\r\n"
            "Contact: <sip:a@127.0.0.1:5062>\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Handler:
    def __init__(self):
        self.legs = []
        self.events = []
        self.offers = []
        self.answers = []

    def incoming_call(self, leg):
        self.legs.append(leg)
        leg.listener = self

    def leg_confirmed(self, leg):
        self.events.append("confirmed")

    def leg_terminated(self, leg, reason, code):
        self.events.append(reason)

    def leg_info(self, leg, ctype, body):
        self.events.append("info")

    # Offer/answer stands in for the engine's: every SDP is acceptable (and an
    # offer answered with a marker body) unless it says 'refuse'.
    def leg_offer(self, leg, offer):
        self.events.append("offer")
        self.offers.append(offer)
        return None if b"refuse" in offer else b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"

    def leg_answer(self, leg, answer):
        self.events.append("answer")
        self.answers.append(answer)
        return b"refuse" not in answer


def make_ua(handler=None):
    clock, sent, handler = Clock(), [], handler or Handler()
    ua = UserAgent(clock, lambda m, t: sent.append((parse_message(m.to_bytes()), t)), handler,
                   "127.0.0.1", 5060)
    return ua, clock, sent, handler


def statuses(sent):
    return [m.status for m, _ in sent if hasattr(m, "status")]


def methods(sent):
    return [m.method for m, _ in sent if hasattr(m, "method")]


def oks_to_reinvite_after_5s(clock, sent, cseq=2):
    """How many 200s to the re-INVITE with ``cseq`` went out, 5 s on (retransmissions stop at the ACK)."""
    for _ in range(50):
        clock.advance(0.1)
    return [m.cseq for m, _ in sent if getattr(m, "status", 0) == 200].count((cseq, "INVITE"))


def test_answered_call_then_bye_and_retransmitted_bye_absorbed_until_timer_j():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    leg = handler.legs[0]
    leg.answer(SDP)
    ok = sent[-1][0]
    assert statuses(sent) == [100, 200]
    tag = ok.to_addr.tag
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    assert handler.events == ["confirmed"]
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)       # retransmission
    assert statuses(sent) == [100, 200, 200, 200]
    assert sent[-1][0].to_bytes() == sent[-2][0].to_bytes()
    assert handler.events == ["confirmed", "remote-bye"]
    assert sent[-1][1] == PEER
    clock.advance(64 * 0.5 + 1.5)
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)       # too late: a new transaction
    assert statuses(sent)[-1] == 481
    assert not ua.dialogs and not ua.invites


def test_cancel_before_answer_gives_200_and_487():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    ua.datagram_received(req("CANCEL", "inv", 1), PEER)
    codes = [(m.status, m.cseq[1]) for m, _ in sent]
    assert (200, "CANCEL") in codes and (487, "INVITE") in codes
    assert handler.events == ["cancelled"]
    # The 487 and the 180/200 of one INVITE carry one To tag.
    tags = {m.to_addr.tag for m, _ in sent if m.cseq[1] == "INVITE" and m.status > 100}
    assert len(tags) == 1


def test_2xx_retransmitted_until_ack_then_stops():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    handler.legs[0].answer(SDP)
    for _ in range(40):
        clock.advance(0.1)
    assert statuses(sent).count(200) == 4          # 0, 0.5, 1.5, 3.5 s
    tag = sent[-1][0].to_addr.tag
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    for _ in range(100):
        clock.advance(0.1)
    assert statuses(sent).count(200) == 4


def test_no_ack_ends_call_with_bye():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    handler.legs[0].answer(SDP)
    for _ in range(330):
        clock.advance(0.1)
    assert "ack-timeout" in handler.events
    assert any(getattr(m, "method", None) == "BYE" for m, _ in sent)


def test_unknown_and_unsupported_methods():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("REGISTER", "r", 1), PEER)
    ua.datagram_received(req("FOO", "f", 1), PEER)
    ua.datagram_received(req("OPTIONS", "o", 1), PEER)
    assert statuses(sent) == [405, 501, 200]
    assert sent[0][0].headers.get("Allow")


def test_in_dialog_request_for_unknown_dialog_gets_481():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("BYE", "b", 2, to_tag="nope"), PEER)
    assert statuses(sent) == [481]


def answered(ua, sent, handler, offer=SDP):
    """An INVITE (``offer=b""``: a delayed offer) answered with SDP; the leg and our To tag."""
    ua.datagram_received(req("INVITE", "inv", 1, body=offer), PEER)
    leg = handler.legs[-1]
    leg.answer(SDP)
    return leg, sent[-1][0].to_addr.tag


def test_invite_retransmitted_after_ack_is_absorbed_not_a_second_call():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    n = len(sent)
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    assert len(handler.legs) == 1 and len(sent) == n
    clock.advance(40)
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)   # long after timer L: new
    assert len(handler.legs) == 2


def test_ack_reusing_invite_branch_confirms():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "inv", 1, to_tag=tag), PEER)
    assert handler.events == ["confirmed"]
    for _ in range(50):
        clock.advance(0.1)
    assert statuses(sent).count(200) == 1


def test_reinvite_offer_goes_to_the_listener_and_its_ack_stops_retransmission():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    moved = SDP.replace(b"m=audio 4000", b"m=audio 4100")
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag, body=moved), PEER)
    ok = sent[-1][0]
    assert handler.offers == [moved]
    assert ok.status == 200 and ok.cseq == (2, "INVITE") and ok.body.startswith(b"v=0\r\no=- 1 2")
    ua.datagram_received(req("ACK", "ack2", 2, to_tag=tag), PEER)
    assert oks_to_reinvite_after_5s(clock, sent) == 1


def test_refused_reinvite_offer_gets_488_and_the_call_goes_on():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag, body=b"refuse"), PEER)
    assert statuses(sent)[-1] == 488 and leg.state == "confirmed"
    ua.datagram_received(req("BYE", "bye", 3, to_tag=tag), PEER)
    assert statuses(sent)[-1] == 200 and handler.events[-1] == "remote-bye"


def test_reinvite_refreshes_the_remote_target():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    reinvite = req("INVITE", "re", 2, to_tag=tag, body=SDP).replace(
        b"Contact: <sip:a@127.0.0.1:5062>", b"Contact: <sip:a@127.0.0.9:5070>")
    ua.datagram_received(reinvite, PEER)
    assert str(leg.dialog.remote_target) == "sip:a@127.0.0.9:5070"


def test_reinvite_without_sdp_gets_our_offer_and_the_ack_carries_the_answer():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag), PEER)
    assert sent[-1][0].status == 200 and sent[-1][0].body == SDP    # our current SDP as the offer
    ua.datagram_received(req("ACK", "ack2", 2, to_tag=tag, body=SDP), PEER)
    assert handler.answers == [SDP]


def test_invite_in_the_early_dialog_gets_500_with_retry_after():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    leg = handler.legs[-1]
    leg.ring()
    tag = sent[-1][0].to_addr.tag
    ua.datagram_received(req("INVITE", "second", 2, to_tag=tag, body=SDP), PEER)
    refusal = sent[-1][0]
    assert refusal.status == 500 and refusal.cseq == (2, "INVITE")
    assert 0 <= int(refusal.headers.get("Retry-After")) <= 10
    assert leg.state == "early"


def test_delayed_offer_answer_comes_in_the_ack():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler, offer=b"")          # our offer in the 200
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag, body=SDP), PEER)
    assert handler.events == ["answer", "confirmed"] and handler.answers == [SDP]


def test_delayed_offer_ack_without_an_acceptable_answer_ends_with_bye():
    for body in (b"", b"refuse"):
        ua, clock, sent, handler = make_ua()
        leg, tag = answered(ua, sent, handler, offer=b"")
        ua.datagram_received(req("ACK", "ack", 1, to_tag=tag, body=body), PEER)
        assert "confirmed" not in handler.events and handler.events[-1] == "bad-answer"
        assert methods(sent) == ["BYE"]


def test_max_forwards_zero_is_processed_by_a_uas():
    # 483 is a proxy's answer (RFC 3261 16.3); RFC 4475's 'zeromf': an
    # endpoint processes the request as if Max-Forwards were still positive.
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP).replace(
        b"Call-ID", b"Max-Forwards: 0\r\nCall-ID"), PEER)
    assert len(handler.legs) == 1 and 483 not in statuses(sent)


def test_rport_is_filled_in_over_tcp_too():
    ua, clock, sent, handler = make_ua()
    tcp = Target("tcp", "127.0.0.1", 40123)
    ua.datagram_received(req("OPTIONS", "o", 1), tcp)
    response, target = sent[-1]
    assert target == tcp
    assert "rport=40123" in response.headers.get_all("Via")[0]


def test_bye_before_ack_stops_2xx_retransmission():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)
    for _ in range(60):
        clock.advance(0.1)
    assert [m.cseq for m, _ in sent if getattr(m, "status", 0) == 200].count((1, "INVITE")) == 1


def test_hangup_before_ack_sends_bye_without_connected():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    leg.hangup()
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    assert "confirmed" not in handler.events
    assert any(getattr(m, "method", None) == "BYE" for m, _ in sent)


def test_record_route_copied_into_dialog_responses_and_used_for_bye():
    ua, clock, sent, handler = make_ua()
    invite = req("INVITE", "inv", 1, body=SDP).replace(
        b"Call-ID:", b"Record-Route: <sip:127.0.0.1:5099;lr>\r\nCall-ID:")
    ua.datagram_received(invite, PEER)
    leg = handler.legs[0]
    leg.ring()
    leg.answer(SDP)
    ringing, ok = sent[-2][0], sent[-1][0]
    assert ringing.headers.get_all("Record-Route") == ["<sip:127.0.0.1:5099;lr>"]
    assert ok.headers.get_all("Record-Route") == ["<sip:127.0.0.1:5099;lr>"]
    ua.datagram_received(req("ACK", "ack", 1, to_tag=ok.to_addr.tag), PEER)
    leg.hangup()
    bye, target = sent[-1]
    assert bye.method == "BYE" and target == Target("udp", "127.0.0.1", 5099)
    assert bye.headers.get_all("Route") == ["<sip:127.0.0.1:5099;lr>"]


def test_cancel_200_carries_the_calls_tag_and_via_is_stamped():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    handler.legs[0].ring()
    ua.datagram_received(req("CANCEL", "inv", 1), PEER)
    by = {(m.status, m.cseq[1]): m for m, _ in sent}
    assert by[(200, "CANCEL")].to_addr.tag == by[(180, "INVITE")].to_addr.tag
    via = by[(180, "INVITE")].top_via
    assert via.params.get("rport") == "5062" and via.params.get("received") == "127.0.0.1"


def test_unanswered_call_times_out_with_480():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    clock.advance(181)
    assert statuses(sent)[-1] == 480
    assert handler.events == ["no-answer"]


def test_handler_that_raises_gets_500():
    ua, clock, sent, handler = make_ua()

    def boom(leg):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")
    handler.incoming_call = boom
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    assert statuses(sent) == [100, 500]


def test_bye_in_early_dialog_ends_the_pending_invite_with_487():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    handler.legs[0].ring()
    tag = sent[-1][0].to_addr.tag
    ua.datagram_received(req("BYE", "bye", 2, to_tag=tag), PEER)
    codes = [(m.status, m.cseq[1]) for m, _ in sent]
    assert (487, "INVITE") in codes and (200, "BYE") in codes
    assert handler.events == ["remote-bye"]


def test_unreadable_via_gets_400_at_the_packet_source_and_no_via_is_dropped():
    raw = []
    ua = UserAgent(Clock(), lambda m, t: raw.append((m.to_bytes(), t)), Handler(), "127.0.0.1", 5060)
    broken = req("OPTIONS", "o", 1).replace(b";branch=z9hG4bKo;rport", b";;,;,,")
    ua.datagram_received(broken, PEER)
    assert len(raw) == 1
    response, target = raw[0]
    assert target == PEER
    # The Via goes back as received (RFC 3261 8.2.6.2), however broken.
    assert response.startswith(b"SIP/2.0 400 ")
    assert b"\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;;" in response
    no_via = b"\r\n".join(line for line in req("OPTIONS", "p", 1).split(b"\r\n")
                          if not line.startswith(b"Via:"))
    ua.datagram_received(no_via, PEER)
    assert len(raw) == 1
    assert ua.stats["malformed"] == 2


def test_every_required_extension_is_listed_as_unsupported():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("OPTIONS", "o", 1).replace(
        b"Call-ID", b"Require: 100rel, timer\r\nRequire: foo\r\nCall-ID"), PEER)
    response = sent[-1][0]
    assert response.status == 420
    assert response.headers.get_all("Unsupported") == ["100rel", "timer", "foo"]


def test_invite_with_a_body_we_cannot_read_gets_415_with_accept():
    ua, clock, sent, handler = make_ua()
    body = b"<xml/>"
    data = req("INVITE", "inv", 1, body=body).replace(b"Content-Type: application/sdp",
                                                      b"Content-Type: application/xml")
    ua.datagram_received(data, PEER)
    response = sent[-1][0]
    assert response.status == 415 and response.headers.get("Accept") == "application/sdp"
    assert handler.legs == []


def test_merged_invite_by_another_path_gets_482():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "path1", 1, body=SDP), PEER)
    ua.datagram_received(req("INVITE", "path2", 1, body=SDP), Target("udp", "127.0.0.1", 5064))
    assert len(handler.legs) == 1
    assert statuses(sent)[-1] == 482
    handler.legs[0].reject(486)
    clock.advance(40)                     # the first transaction is over: not merged any more
    ua.datagram_received(req("INVITE", "path3", 1, body=SDP), PEER)
    assert len(handler.legs) == 2


class RaisingHandler(Handler):
    def leg_offer(self, leg, offer):
        raise OverflowError("a hook bug")

    def leg_answer(self, leg, answer):
        raise OverflowError("a hook bug")


def make_raising_ua():
    return make_ua(RaisingHandler())


def test_offer_hook_that_raises_still_answers_the_reinvite_and_frees_it():
    ua, clock, sent, handler = make_raising_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag, body=SDP), PEER)
    assert statuses(sent)[-1] == 488
    ua.datagram_received(req("ACK", "re", 2, to_tag=tag), PEER)    # the non-2xx ACK
    clock.advance(40)
    assert ua.server_transactions == {} and leg.state == "confirmed"


def test_answer_hook_that_raises_on_a_delayed_offer_ends_with_bye_and_absorbs_the_invite():
    ua, clock, sent, handler = make_raising_ua()
    leg, tag = answered(ua, sent, handler, offer=b"")
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag, body=SDP), PEER)
    assert handler.events[-1] == "bad-answer"
    assert methods(sent) == ["BYE"]
    ua.datagram_received(req("INVITE", "inv", 1), PEER)            # a late retransmission
    assert len(handler.legs) == 1


def test_ack_reusing_the_reinvite_branch_is_the_reinvites_ack():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag), PEER)  # no SDP: we offer
    ua.datagram_received(req("ACK", "re", 2, to_tag=tag, body=SDP), PEER)
    assert handler.answers == [SDP] and leg.reinvite_tx is None
    assert oks_to_reinvite_after_5s(clock, sent) == 1


def test_reinvite_2xx_stops_when_the_call_ends_and_a_missing_ack_hangs_up():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag, body=SDP), PEER)
    ua.datagram_received(req("BYE", "bye", 3, to_tag=tag), PEER)
    n = len(sent)
    for _ in range(50):
        clock.advance(0.1)
    assert len(sent) == n, "the re-INVITE's 200 kept repeating after the BYE"

    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag, body=SDP), PEER)
    clock.advance(64 * 0.5 + 1)                                  # timer L, no ACK
    assert methods(sent) == ["BYE"]


def test_second_reinvite_while_the_first_awaits_its_ack_gets_500():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    ua.datagram_received(req("INVITE", "re", 2, to_tag=tag, body=SDP), PEER)
    ua.datagram_received(req("INVITE", "re2", 3, to_tag=tag, body=SDP), PEER)
    assert statuses(sent)[-1] == 500 and sent[-1][0].headers.get("Retry-After")


def test_our_bye_ends_the_leg_at_once_even_when_the_peer_never_answers():
    ua, clock, sent, handler = make_ua()
    leg, tag = answered(ua, sent, handler)
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    leg.hangup()
    assert handler.events == ["confirmed", "local-bye"]       # no 200 to the BYE needed
    assert leg.state == "terminated"
    clock.advance(40)                                        # BYE retransmitted, then timer F
    byes = [m for m, _ in sent if getattr(m, "method", None) == "BYE"]
    assert len(byes) > 1 and handler.events == ["confirmed", "local-bye"]


def confirmed_call():
    ua, clock, sent, handler = make_ua()
    ua.datagram_received(req("INVITE", "inv", 1, body=SDP), PEER)
    leg = handler.legs[0]
    leg.answer(SDP)
    tag = sent[-1][0].to_addr.tag
    ua.datagram_received(req("ACK", "ack", 1, to_tag=tag), PEER)
    return ua, clock, sent, handler, leg, tag


def response_to(request, status, body=b"", to_tag="caller"):
    """The caller's response to a request voxlab sent in the dialog."""
    head = (f"SIP/2.0 {status} X\r\n"
            f"Via: {request.headers.get('Via')}\r\n"
            f"From: {request.headers.get('From')}\r\n"
            f"To: {request.headers.get('To')}\r\n"
            f"Call-ID: {request.call_id}\r\n"
            f"CSeq: {request.cseq[0]} {request.cseq[1]}\r\n"
            "Contact: <sip:a@127.0.0.1:5099>\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def test_our_reinvite_is_acked_with_its_cseq_again_for_a_retransmitted_2xx():
    ua, clock, sent, handler, leg, tag = confirmed_call()
    outcomes = []
    leg.reinvite(SDP.replace(b"RTP/AVP 0", b"RTP/AVP 0\r\na=sendonly"), outcomes.append)
    invite = sent[-1][0]
    assert invite.method == "INVITE" and b"a=sendonly" in invite.body
    assert invite.to_addr.tag == "caller" and invite.from_addr.tag == tag
    ok = response_to(invite, 200, SDP)
    ua.datagram_received(ok, PEER)
    ua.datagram_received(ok, PEER)                    # the 2xx again: the same ACK again
    acks = [m for m, _ in sent if getattr(m, "method", "") == "ACK"]
    assert len(acks) == 2 and acks[0].to_bytes() == acks[1].to_bytes()
    assert acks[0].cseq == (invite.cseq[0], "ACK")
    assert str(acks[0].uri) == "sip:a@127.0.0.1:5099"   # the 2xx's Contact is the new target
    assert [o.status for o in outcomes] == [200]          # reported once
    assert leg.client_reinvite is None
    with_info = []
    leg.send_request("INFO", "text/plain", b"x", with_info.append)
    assert sent[-1][0].cseq == (invite.cseq[0] + 1, "INFO")


def test_a_reinvite_from_the_peer_while_ours_is_open_gets_491():
    ua, clock, sent, handler, leg, tag = confirmed_call()
    leg.reinvite(SDP, lambda r: None)
    ua.datagram_received(req("INVITE", "glare", 2, to_tag=tag, body=SDP), PEER)
    assert statuses(sent)[-1] == 491
    try:
        leg.reinvite(SDP, lambda r: None)
    except RuntimeError as exc:
        assert "already in progress" in str(exc)
    else:
        raise AssertionError("a second re-INVITE was sent while the first was open")


def test_refer_needs_exactly_one_sip_refer_to():
    ua, clock, sent, handler, leg, tag = confirmed_call()
    handler.leg_refer = lambda leg, target, request: True

    def refer(branch, cseq, *refer_to):
        data = req("REFER", branch, cseq, to_tag=tag).replace(
            b"Content-Length", b"".join(f"Refer-To: {r}\r\n".encode() for r in refer_to) + b"Content-Length")
        ua.datagram_received(data, PEER)
        return sent[-1][0] if sent[-1][0].cseq[1] == "REFER" else sent[-2][0]

    assert refer("r1", 2).status == 400
    assert refer("r2", 3, "<sip:b@x>", "<sip:c@x>").status == 400
    assert refer("r3", 4, "<tel:+1555>").status == 416
    accepted = refer("r4", 5, "<sip:b@127.0.0.1>")
    assert accepted.status == 202
    notify = sent[-1][0]
    assert notify.method == "NOTIFY" and notify.body == b"SIP/2.0 100 Trying\r\n"
    assert notify.headers.get("Event") == "refer;id=5"
    assert notify.headers.get("Subscription-State").startswith("active")
    leg.notify_refer(200, "OK", final=True)
    assert sent[-1][0].headers.get("Subscription-State") == "terminated;reason=noresource"
    count = len(sent)
    leg.notify_refer(180, "Ringing")                  # the subscription is over: nothing
    assert len(sent) == count
