"""One call's audio: an RTP socket in the phone's reactor, G.711 both ways, a jitter
buffer, RFC 4733 DTMF, levels and stats.

Every 20 ms (:meth:`CallAudio.tick`, from the phone's LoopingCall) one frame is taken
from the source (file, microphone, silence), encoded and sent, and one packet is taken
from the jitter buffer, decoded (a lost one is silence) and given to the sink (file,
speaker). Receiving only fills the jitter buffer, so the far end's clock never drives
the sink directly: its jitter is absorbed by the jitter buffer (40 ms), and the
remaining slow drift against the sound card by the device's
:class:`~voxlab.phone.drift.DriftBuffer`.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from voxlab.media.analysis import rms_dbfs
from voxlab.media.dtmf import DtmfReceiver, DtmfSender
from voxlab.media.g711 import codec_for
from voxlab.media.jitter import JitterBuffer
from voxlab.media.rtp import RtpPacket, RtpParseError, RtpSender, is_rtcp
from voxlab.media.rtp_transport import RtpSocket
from voxlab.media.tones import dtmf_tone, silence
from voxlab.phone.drift import FRAME
from voxlab.phone.offer import MediaPlan
from voxlab.phone.sources import Sink, Source

# Two packets (40 ms) queued before playout starts: enough for loopback and a LAN,
# little enough that the echo test hears itself at once.
JITTER_TARGET = 2
FLOOR_DB = -90.0

__all__ = ["CallAudio", "RtpStats", "bind_rtp_socket", "level"]


def level(frame: np.ndarray | None) -> float:
    """The RMS level of a frame in dBFS, floored at -90 (for meters)."""
    if frame is None or len(frame) == 0:
        return FLOOR_DB
    return max(FLOOR_DB, rms_dbfs(frame))


@dataclass
class RtpStats:
    """What the UI shows about one call's RTP."""

    sent: int = 0
    received: int = 0
    lost: int = 0
    late: int = 0
    jitter_ms: float = 0.0
    dtmf_sent: int = 0
    dtmf_received: int = 0

    def line(self) -> str:
        return (f"sent {self.sent}  received {self.received}  lost {self.lost}  late {self.late}  "
                f"jitter {self.jitter_ms:.1f} ms")


def bind_rtp_socket(host: str) -> socket.socket:
    """A non-blocking UDP socket on ``host``, on an even port if one comes within a few
    tries (RTP's custom: RTCP would take the odd one above)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    odd: list[socket.socket] = []        # kept bound meanwhile, so each try gets another port
    try:
        for _ in range(20):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, 0))
            except OSError as exc:
                sock.close()
                raise RuntimeError(f"cannot bind an RTP socket on {host}: {exc.strerror}") from None
            if sock.getsockname()[1] % 2 == 0:
                sock.setblocking(False)
                return sock
            odd.append(sock)
        sock = odd.pop()
        sock.setblocking(False)
        return sock
    finally:
        for s in odd:
            s.close()


class CallAudio:
    """The RTP stream of one call and what flows through it each 20 ms tick."""

    def __init__(self, reactor, host: str) -> None:
        self.reactor = reactor
        self.host = host
        self.socket = RtpSocket(reactor, bind_rtp_socket(host))
        self.socket.endpoint = self
        self.port = self.socket.port
        self.plan: MediaPlan | None = None
        self.codec = None
        self.sender: RtpSender | None = None
        self.jitter = JitterBuffer(target_depth=JITTER_TARGET, max_depth=25)
        self.dtmf_in = DtmfReceiver()
        self.dtmf_out = DtmfSender()
        self._inband: deque[np.ndarray] = deque()    # DTMF as tones when no telephone-event
        self.source: Source | None = None
        self.sink: Sink | None = None
        self.muted = False
        self.held = False                # we put the call on hold: nothing sent, nothing played
        self.active = False
        self.input_ended = False
        self.stats = RtpStats()
        self.mic_db = FLOOR_DB
        self.speaker_db = FLOOR_DB
        self.on_digit: Callable[[str], None] | None = None
        self.on_input_end: Callable[[], None] | None = None
        self.remote_seen: tuple[str, int] | None = None

    # -- set-up
    def configure(self, plan: MediaPlan) -> None:
        """Use an offer/answer outcome (again after a re-INVITE)."""
        codec = codec_for(plan.codec)
        if codec is None:
            raise ValueError(f"codec {plan.codec} is not G.711")
        self.plan = plan
        self.codec = codec
        if self.sender is None:
            self.sender = RtpSender(plan.payload_type)
        else:
            self.sender.payload_type = plan.payload_type

    def start(self, source: Source, sink: Sink) -> None:
        """Media flows from now on (ticks do something)."""
        # Early media runs with a silent source; the answer brings the real one.
        for new, old in ((source, self.source), (sink, self.sink)):
            if new is not old or not self.active:
                new.start()
        self.source, self.sink = source, sink
        self.active = True

    def stop(self) -> None:
        """No more media; the socket is closed."""
        if self.active:
            self.active = False
            for side in (self.source, self.sink):
                try:
                    side.stop()
                except Exception:
                    pass
        self.socket.close()

    # -- controls
    def send_digits(self, digits: str) -> None:
        """DTMF: RFC 4733 events when the far end took telephone-event, else in-band tones."""
        if self.plan is not None and self.plan.dtmf_payload_type is not None:
            self.dtmf_out.send(digits)
        else:
            for d in digits:
                pcm = np.concatenate([dtmf_tone(d, 0.1), silence(0.06)])
                n = -(-len(pcm) // FRAME)
                pcm = np.concatenate([pcm, np.zeros(n * FRAME - len(pcm), np.int16)])
                self._inband.extend(pcm.reshape(n, FRAME))
        self.stats.dtmf_sent += len(digits)

    # -- the 20 ms tick
    def tick(self) -> None:
        if not self.active or self.plan is None:
            return
        self._send_tick()
        self._play_tick()
        self._update_stats()

    def _send_tick(self) -> None:
        frame = None
        if self.source is not None:
            frame = self.source.read()
            if frame is None and not self.input_ended:
                self.input_ended = True
                if self.on_input_end is not None:
                    self.on_input_end()
        if frame is None or self.muted or self.held:
            frame = np.zeros(FRAME, np.int16)
        if self._inband:
            frame = self._inband.popleft()
        self.mic_db = level(frame) if not self.held else FLOOR_DB
        plan, sender = self.plan, self.sender
        if not plan.sending or self.held:
            sender.skip()                # the stream's clock goes on while we are silent
            return
        payload = self.codec.encode(frame)
        if plan.dtmf_payload_type is not None:
            data = sender.send_frame(payload, self.dtmf_out, plan.dtmf_payload_type)
        else:
            data = sender.packet(payload)
        self.socket.write(data, plan.remote)

    def _play_tick(self) -> None:
        packet = self.jitter.pop()
        frame = None
        if packet is not None and self.codec is not None:
            codec = self.codec if packet.payload_type == self.codec.payload_type else codec_for(
                "PCMA" if packet.payload_type == 8 else "PCMU")
            frame = codec.decode(packet.payload)
            if len(frame) != FRAME:
                frame = np.resize(frame, FRAME) if len(frame) else None
        if frame is None or self.held:
            frame = np.zeros(FRAME, np.int16)       # a lost packet: silence
        self.speaker_db = level(frame)
        if self.sink is not None:
            self.sink.write(frame)

    def _update_stats(self) -> None:
        s, j = self.stats, self.jitter.stats
        s.sent = self.sender.packets_sent if self.sender is not None else 0
        s.lost = j.lost
        s.late = j.late
        s.jitter_ms = j.jitter_ms

    # -- receiving (RtpSocket calls this)
    def datagram_received(self, data: bytes, addr) -> None:
        if is_rtcp(data):
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            return
        plan = self.plan
        if plan is None:
            return
        self.remote_seen = (addr[0], addr[1])
        self.stats.received += 1
        if plan.dtmf_payload_type is not None and packet.payload_type == plan.dtmf_payload_type:
            digit = self.dtmf_in.feed(packet)
            if digit is not None:
                self.stats.dtmf_received += 1
                if self.on_digit is not None:
                    self.on_digit(digit)
            return
        if packet.payload_type not in (0, 8):
            return                       # comfort noise and the like: not audio we play
        if plan.receiving:
            self.jitter.put(packet, time.monotonic())
