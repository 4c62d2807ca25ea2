"""The phone's SIP behaviour seen by the independent test peer (tests/peers/sipua.py)
calling it directly: busy, an offerless INVITE, hold from the far end, CANCEL, REFER; and
against voxlab: a challenged INVITE (auth route), a refused registration."""

from __future__ import annotations

import signal

import pytest

from tests.peers.server import free_sip_port
from tests.peers.sipua import SipError, SipUA, parse_sdp, sdp_offer
from tests.phone.helpers import read_output, tone_file, tone_of
from voxlab.media.tones import sine

pytestmark = pytest.mark.e2e


@pytest.fixture
def answering_phone(phone, tmp_path):
    """A phone listening on a known port, answering by itself, playing a 1 kHz tone."""
    port = free_sip_port()
    heard = tmp_path / "heard.wav"
    ph = phone(["--local", f"127.0.0.1:{port}", "--auto-answer",
                "--audio-in", str(tone_file(tmp_path / "t.wav", 1000.0, 30.0)),
                "--audio-out", str(heard)])
    assert ph.wait_for(rf"listening: SIP on udp 127\.0\.0\.1:{port}", 10), ph.describe()
    ph.port, ph.heard = port, heard
    return ph


def test_second_call_gets_busy(answering_phone):
    ph = answering_phone
    with SipUA("127.0.0.1", ph.port) as ua:
        first = ua.call("phone")
        with pytest.raises(SipError) as err:
            ua.call("phone")
        assert err.value.status == 486, err.value
        assert ph.wait_for(r"info: call from .* refused: busy", 5), ph.describe()
        first.bye()
    assert ph.wait_for(r"ended: the far end hung up", 10), ph.describe()


def test_offerless_invite_gets_our_offer(answering_phone):
    """RFC 3261 13.2.1 delayed offer: the 200 carries the phone's offer, the ACK the answer."""
    ph = answering_phone
    with SipUA("127.0.0.1", ph.port) as ua:
        call = ua.call("phone", body=b"", ack=False)
        offer = parse_sdp(call.final.body)
        assert offer is not None and offer.codec == "PCMU", call.final.body
        call.rtp.configure((offer.ip, offer.port), "PCMU", offer.telephone_event_pt)
        call.send_ack(body=sdp_offer("127.0.0.1", call.rtp.local[1], ("PCMU",)))
        assert ph.wait_for(r"connected: connected to sip:voxpeer@", 5), ph.describe()
        call.rtp.send_audio(sine(500.0, 2.0))
        call.bye()
    assert ph.wait_for(r"ended: the far end hung up", 10), ph.describe()
    freq, _ = tone_of(call.rtp.received_audio())
    assert abs(freq - 1000.0) < 10, f"the caller heard {freq:.1f} Hz"
    freq, _ = tone_of(read_output(ph.heard))
    assert abs(freq - 500.0) < 10, f"the phone heard {freq:.1f} Hz"


def test_far_end_holds_and_resumes(answering_phone):
    ph = answering_phone
    with SipUA("127.0.0.1", ph.port) as ua:
        call = ua.call("phone")
        assert ph.wait_for(r"connected: ", 5), ph.describe()
        port = call.rtp.local[1]
        ok = call.request("INVITE", sdp_offer("127.0.0.1", port, ("PCMU",), direction="sendonly"))
        call.send_ack(cseq=call.local_cseq)
        assert b"a=recvonly" in ok.body, ok.body
        assert ph.wait_for(r"held: the far end put the call on hold", 5), ph.describe()
        ok = call.request("INVITE", sdp_offer("127.0.0.1", port, ("PCMU",)))
        call.send_ack(cseq=call.local_cseq)
        assert b"a=sendrecv" in ok.body, ok.body
        assert ph.wait_for(r"resumed: the far end resumed the call", 5), ph.describe()
        call.bye()
    assert ph.wait_for(r"ended: the far end hung up", 10), ph.describe()


def test_refer_is_declined(answering_phone):
    ph = answering_phone
    with SipUA("127.0.0.1", ph.port) as ua:
        call = ua.call("phone")
        with pytest.raises(SipError) as err:
            call.request("REFER", extra={"Refer-To": "<sip:elsewhere@127.0.0.1:5999>"})
        assert err.value.status == 603
        assert ph.wait_for(r"info: declined a transfer to sip:elsewhere@", 5), ph.describe()
        call.bye()


def test_caller_cancels_a_ringing_call(phone, tmp_path):
    port = free_sip_port()
    ph = phone(["--local", f"127.0.0.1:{port}"])           # does not answer by itself
    assert ph.wait_for(r"listening: ", 10), ph.describe()
    with SipUA("127.0.0.1", port) as ua:
        call = ua.start_call("phone")
        assert ph.wait_for(r"incoming: call from sip:voxpeer@.*a to answer, r to reject", 5), \
            ph.describe()
        final = call.cancel()
        assert final.status == 487, final
    assert ph.wait_for(r"missed: cancelled", 5), ph.describe()
    ph.signal(signal.SIGINT)
    assert ph.wait(10) == 0, ph.describe()


AUTH_CONFIG = """
[users]
alice = "pw"

[[routes]]
pattern = "private-.*"
scenario = "echo.py"
auth = true
"""


def test_challenged_invite_is_answered(voxlab_factory, phone, tmp_path):
    """An auth route answers the INVITE 407: the phone sends it again with
    Proxy-Authorization (its --user/--password), and the echo answers."""
    srv = voxlab_factory(config=AUTH_CONFIG)
    heard = tmp_path / "heard.wav"
    ph = phone(["--server", f"{srv.host}:{srv.sip_port}", "--user", "alice", "--password", "pw",
                "--dial", "private-echo", "--audio-in", str(tone_file(tmp_path / "t.wav", 700.0, 2.0)),
                "--audio-out", str(heard)])
    assert ph.wait(20) == 0, ph.describe() + srv.describe(40)
    assert ph.wait_for(r"info: 407: answering with MD5 Digest as alice", 0), ph.describe()
    assert ph.wait_for(r"connected: connected to sip:private-echo@", 0), ph.describe()
    freq, _ = tone_of(read_output(heard))
    assert abs(freq - 700.0) < 10, f"heard {freq:.1f} Hz"


def test_challenged_invite_without_password_fails(voxlab_factory, phone):
    srv = voxlab_factory(config=AUTH_CONFIG)
    ph = phone(["--server", f"{srv.host}:{srv.sip_port}", "--dial", "private-echo"])
    assert ph.wait(20) == 1, ph.describe()
    assert ph.wait_for(r"failed: sip:private-echo@\S+: 407", 0), ph.describe()


def test_wrong_password_is_reported(voxlab_factory, phone):
    srv = voxlab_factory(config=AUTH_CONFIG)
    ph = phone(["--server", f"{srv.host}:{srv.sip_port}", "--user", "alice", "--password", "nope"])
    assert ph.wait_for(r"registration-failed: registration of alice@\S+ failed: 403 "
                       r"Forbidden \(wrong password\)", 10), ph.describe()
