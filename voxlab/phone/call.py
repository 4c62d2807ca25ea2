"""One call of the phone, either way: the listener of its SIP leg (voxlab.sip.uac's
OutgoingCall or voxlab.sip.useragent's IncomingCall), the offer/answer of its audio
stream, hold and DTMF, and the events it tells the agent about."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from voxlab.phone.audio import CallAudio
from voxlab.phone.offer import make_answer, make_offer, read_sdp
from voxlab.sip.digest import DigestError, answer_challenge, choose_challenge
from voxlab.sip.sdp import SdpError

if TYPE_CHECKING:
    from voxlab.phone.agent import PhoneAgent

__all__ = ["PhoneCall", "format_duration"]


class PhoneCall:
    """One call of the phone, either way; the listener of its SIP leg."""

    def __init__(self, agent: "PhoneAgent", direction: str, leg, remote: str,
                 audio: CallAudio) -> None:
        self.agent = agent
        self.direction = direction       # "out" or "in"
        self.leg = leg
        self.remote = remote             # who: the dialled URI, or the caller's From
        self.audio = audio
        self.state = "calling" if direction == "out" else "incoming"
        # calling, ringing (out: the far end rings), incoming (in: we ring), connected, ended
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason = ""
        self.end_code: int | None = None
        self.on_hold = False             # we held the call
        self.remote_hold = False         # the far end held us
        self.session_id = random.randint(1, 2**31)
        self.sdp_version = 1
        self._auth_tried = False

    # -- facts
    @property
    def duration(self) -> float:
        """Seconds connected (0 before the answer)."""
        if self.connected_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return max(0.0, end - self.connected_at)

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def codec(self) -> str:
        plan = self.audio.plan
        return plan.codec if plan is not None else ""

    def _say(self, kind: str, text: str) -> None:
        self.agent.emit(kind, text)

    # -- the media plan
    def _use(self, sdp: bytes, what: str) -> bool:
        try:
            plan, neg = read_sdp(sdp, self.agent.codecs)
        except SdpError as exc:
            self._say("error", f"unusable SDP {what}: {exc}")
            return False
        self.audio.configure(plan)
        self.remote_hold = plan.direction in ("recvonly", "inactive") and not self.on_hold
        return True

    def _start_media(self) -> None:
        agent = self.agent
        self.audio.on_digit = lambda d: self._say("dtmf-received", f"DTMF {d} received")
        self.audio.on_input_end = agent.input_ended
        self.audio.start(agent.source, agent.sink)
        agent.media_started(self)

    def _connected(self) -> None:
        if self.state == "ended" or self.connected_at is not None:
            return
        self.state = "connected"
        self.connected_at = time.monotonic()
        self._start_media()
        plan = self.audio.plan
        dtmf = "RFC 4733 DTMF" if plan and plan.dtmf_payload_type is not None else "in-band DTMF"
        self._say("connected", f"connected to {self.remote} ({self.codec}, {dtmf})")

    def _ended(self, reason: str, code: int | None, text: str) -> None:
        if self.state == "ended":
            return
        was_connected = self.connected_at is not None
        self.state = "ended"
        self.ended_at = time.monotonic()
        self.end_reason = reason
        self.end_code = code
        self.audio.stop()
        if was_connected or reason in ("local-bye", "remote-bye"):
            kind = "ended"
        else:
            kind = "missed" if self.direction == "in" else "failed"
        if kind == "ended":
            text = f"{text} after {format_duration(self.duration)}; RTP {self.audio.stats.line()}"
        self._say(kind, text)
        self.agent.call_ended(self)

    # -- actions (the agent calls these)
    def answer(self) -> None:
        leg = self.leg
        if self.direction != "in" or self.state != "incoming":
            return
        audio = self.audio
        if leg.offer.strip():
            try:
                plan, neg = read_sdp(leg.offer, self.agent.codecs)
            except SdpError as exc:
                self._say("error", f"cannot answer: {exc}")
                leg.reject(488, "Not Acceptable Here")
                return
            audio.configure(plan)
            self.remote_hold = plan.direction in ("recvonly", "inactive")
            sdp = make_answer(neg, self.agent.host, audio.port, self.session_id)
        else:
            # A delayed offer (RFC 3261 13.2.1): ours goes in the 200, the answer in the ACK.
            sdp = make_offer(self.agent.host, audio.port, self.session_id,
                             codecs=self.agent.codecs)
        self.state = "answering"
        leg.answer(sdp)

    def reject(self, status: int = 603, reason: str = "Decline") -> None:
        if self.direction == "in" and self.state == "incoming":
            self.leg.reject(status, reason)

    def hangup(self) -> None:
        if self.state != "ended":
            self.leg.hangup()

    def send_digits(self, digits: str) -> None:
        if self.state == "connected":
            self.audio.send_digits(digits)
            self._say("dtmf-sent", f"DTMF {digits} sent")

    def toggle_hold(self) -> None:
        """Hold (re-INVITE with sendonly) or resume (sendrecv)."""
        if self.state != "connected":
            return
        hold = not self.on_hold
        self.sdp_version += 1
        offer = make_offer(self.agent.host, self.audio.port, self.session_id, self.sdp_version,
                           codecs=self.agent.codecs, direction="sendonly" if hold else "sendrecv")
        try:
            self.leg.reinvite(offer, lambda response: self._reinvited(hold, response))
        except RuntimeError as exc:
            self._say("error", f"cannot {'hold' if hold else 'resume'}: {exc}")

    def _reinvited(self, hold: bool, response) -> None:
        if response is None or response.status >= 300:
            what = "no answer" if response is None else f"{response.status} {response.reason}"
            self._say("error", f"{'hold' if hold else 'resume'} refused: {what}")
            return
        if response.body and not self._use(response.body, "in the re-INVITE's answer"):
            return
        self.on_hold = hold
        self.audio.held = hold
        self._say("held" if hold else "resumed", "call on hold" if hold else "call resumed")

    # -- from the UAC leg (OutgoingCall)
    def leg_progress(self, leg, status: int, sdp: bytes) -> None:
        if status in (180, 183) and self.state == "calling":
            self.state = "ringing"
            self._say("ringing", f"{self.remote} is ringing ({status})")
        if sdp:
            # Early media: the far end plays something before the answer (a ring-back, a
            # prompt); we hear it and say nothing until the answer.
            if self._use(sdp, "in the early media"):
                self.audio.start(self.agent.source_for_early(), self.agent.sink)
                self.agent.media_started(self)

    def leg_answered(self, leg, sdp: bytes) -> bool:
        if not sdp:
            return self.audio.plan is not None      # the early media's SDP was the answer
        return self._use(sdp, "in the answer")

    def leg_challenged(self, leg, response) -> bool:
        agent = self.agent
        if agent.config.password is None or self._auth_tried:
            return False
        self._auth_tried = True
        header, answer = (("WWW-Authenticate", "Authorization") if response.status == 401
                          else ("Proxy-Authenticate", "Proxy-Authorization"))
        try:
            challenge = choose_challenge(response.headers.get_all(header))
        except DigestError as exc:
            self._say("error", f"cannot answer the {response.status} challenge: {exc}")
            return False
        cred = answer_challenge(challenge, "INVITE", str(leg.invite.uri),
                                agent.config.user or "phone", agent.config.password)
        self._say("info", f"{response.status}: answering with {challenge.algorithm} Digest "
                          f"as {agent.config.user or 'phone'}")
        leg.resend_with(answer, cred.to_header())
        return True

    # -- from either leg
    def leg_confirmed(self, leg) -> None:
        self._connected()

    def leg_answer(self, leg, answer: bytes) -> bool:
        """The answer in the ACK to the offer of our 200 (delayed offer)."""
        return self._use(answer, "in the ACK")

    def leg_offer(self, leg, offer: bytes) -> bytes | None:
        """A re-INVITE from the far end (hold, resume, a new address): our answer."""
        try:
            plan, neg = read_sdp(offer, self.agent.codecs)
        except SdpError as exc:
            self._say("error", f"re-INVITE refused: {exc}")
            return None
        was_held = self.remote_hold
        self.audio.configure(plan)
        self.remote_hold = plan.direction in ("recvonly", "inactive")
        if self.remote_hold != was_held:
            self._say("held" if self.remote_hold else "resumed",
                      f"the far end {'put the call on hold' if self.remote_hold else 'resumed the call'}")
        self.sdp_version += 1
        direction = None
        if self.on_hold:
            # We hold: whatever the far end offers, we only send (RFC 3264 8.4).
            direction = "sendonly" if neg.direction in ("sendrecv", "sendonly") else "inactive"
        return make_answer(neg, self.agent.host, self.audio.port, self.session_id,
                           self.sdp_version, direction)

    def leg_terminated(self, leg, reason: str, code: int | None) -> None:
        texts = {
            "local-bye": "hung up", "remote-bye": "the far end hung up",
            "cancelled": "cancelled", "timeout": "no answer (timeout)",
            "no-answer": "not answered in time", "ack-timeout": "no ACK: ended",
            "bad-answer": "the answer was unusable: hung up",
        }
        if reason == "rejected":
            phrase = getattr(leg, "final_reason", "") or ""
            if self.direction == "in":
                text = f"rejected ({code})"
            else:
                text = f"{self.remote}: {code} {phrase}".rstrip()
        else:
            text = texts.get(reason, reason)
        self._ended(reason, code, text)

    def leg_info(self, leg, content_type: str, body: bytes) -> None:
        if content_type.lower().startswith("application/dtmf"):
            text = body.decode("utf-8", "replace")
            signal = next((line.split("=", 1)[1].strip() for line in text.splitlines()
                           if line.lower().startswith("signal")), text.strip())
            self._say("dtmf-received", f"DTMF {signal} received (SIP INFO)")

    def leg_message(self, leg, content_type: str, body: bytes) -> None:
        self._say("info", f"message: {body.decode('utf-8', 'replace')[:200]}")

    def leg_refer(self, leg, refer_to, request) -> bool:
        self._say("info", f"declined a transfer to {refer_to.uri}")
        return False


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
