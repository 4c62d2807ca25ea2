"""The RTP endpoint of one call leg as a media unit (sans-IO).

It is fed datagrams and the tick; it writes datagrams through an injected
``write(data, addr)``. Symmetric RTP (RFC 4961 behaviour): media goes to the
address the peer's packets come from, which starts as the SDP address and
latches to the real source of the first valid packet (NATs, sipp, browsers).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from voxlab.media.dtmf import DtmfReceiver, DtmfSender, InbandDtmfDetector
from voxlab.media.g711 import codec_for
from voxlab.media.graph import LEVEL_TICKS, Frame, MediaUnit, level_dbfs
from voxlab.media.jitter import JitterBuffer
from voxlab.media.rtp import RtpPacket, RtpParseError, RtpSender, is_rtcp

Write = Callable[[bytes, tuple[str, int]], None]

# A relayed leg whose source has sent nothing for this many ticks starts
# sending silence of its own.
RELAY_QUIET_TICKS = 3
# In-band detections this close (in received packets) to an RFC 4733 event are
# the same key press, signalled both ways by the phone: reported once.
RFC4733_SHADOW_PACKETS = 15
INBAND_ON_S, INBAND_OFF_S = 0.1, 0.05


class RtpEndpoint(MediaUnit):
    """One leg's RTP stream: receives into a jitter buffer, sends what its input produces."""

    kind = "rtp"

    def __init__(self, codec: str, payload_type: int, dtmf_payload_type: int | None,
                 remote: tuple[str, int], write: Write, name: str | None = None) -> None:
        super().__init__(name)
        self.codec = codec_for(codec)
        if self.codec is None:
            raise ValueError(f"unsupported codec {codec!r}")
        self.codec_name = self.codec.name
        self.silence = self.codec.silence_payload(160)
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.remote = remote
        self.sdp_remote = remote    # where the SDP says; ``remote`` is where we latched
        self.write = write
        self.latched = False
        self.jitter = JitterBuffer()
        self.sender = RtpSender(payload_type)
        self.dtmf_in = DtmfReceiver()
        self.dtmf_out = DtmfSender()
        self.on_digit: Callable[[str, str], None] | None = None
        self.inband: InbandDtmfDetector | None = None    # set_tones(inband=True)
        self.strip_tones = False
        self._since_rfc4733 = RFC4733_SHADOW_PACKETS
        self._inband_out: np.ndarray | None = None        # in-band digits being sent
        self._relay_ssrc: int | None = None
        self._relay_offset = 0
        self._relayed_at = -RELAY_QUIET_TICKS - 1
        self.sending = True     # False while on hold / direction says we must not send
        self.stats = {"rx_packets": 0, "tx_packets": 0, "rx_bytes": 0, "tx_bytes": 0,
                      "rx_invalid": 0, "rx_other_pt": 0, "rx_dtmf": 0, "rx_foreign": 0}
        self.started = time.time()

    # -- input from the socket
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if is_rtcp(data):
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            self.stats["rx_invalid"] += 1
            return
        stats = self.stats
        pt = packet.payload_type
        if addr != self.remote or not self.latched:
            if self.latched or (pt != self.payload_type and pt != self.dtmf_payload_type):
                # Strict RTP (as Asterisk's strictrtp, rtpengine): once the
                # stream is latched, packets from anywhere else are dropped, so
                # a stranger can neither take over nor inject into the call.
                stats["rx_foreign"] += 1
                return
            # Symmetric RTP: the first packet with a negotiated payload type
            # decides where the peer really is (NATs, sipp, browsers).
            self.remote = addr
            self.latched = True
        stats["rx_packets"] += 1
        stats["rx_bytes"] += len(data)
        if pt == self.payload_type:
            self._since_rfc4733 += 1
            if self.inband is not None:
                packet = self._inband_in(packet)
            buffered = False
            for sink in self.sinks:
                if sink.__class__ is RtpEndpoint and sink.codec_name == self.codec_name:
                    sink.relay(packet)
                elif not buffered:
                    self.jitter.put(packet)
                    buffered = True
            # Relayed audio never passes a tick: its level is sampled here.
            self.relaying = not buffered
            if not buffered and stats["rx_packets"] % LEVEL_TICKS == 0:
                self.level_out = level_dbfs(self.codec.decode(packet.payload))
        elif pt == self.dtmf_payload_type:
            stats["rx_dtmf"] += 1
            self._since_rfc4733 = 0
            digit = self.dtmf_in.feed(packet)
            if digit is not None and self.on_digit is not None:
                self.on_digit(digit, "rfc2833")
        else:
            stats["rx_other_pt"] += 1

    # -- in-band DTMF
    def set_tones(self, inband: bool, strip: bool) -> None:
        """Detect DTMF tones in the received audio (and strip them from what is routed on)."""
        self.inband = (self.inband or InbandDtmfDetector()) if inband else None
        self.strip_tones = bool(strip) and inband

    def _inband_in(self, packet: RtpPacket) -> RtpPacket:
        pcm = self.codec.decode(packet.payload)
        digit = self.inband.feed(pcm)
        if digit is not None and self.on_digit is not None and self._since_rfc4733 >= RFC4733_SHADOW_PACKETS:
            self.on_digit(digit, "inband")
        if self.strip_tones and (self.inband.current is not None or self.inband.classify(pcm) is not None):
            # Each frame that carries a tone is silence for whoever hears this call;
            # only what passed before the detector was sure (under 40 ms) gets through.
            return RtpPacket(packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc,
                             self.silence, packet.marker, packet.csrc, packet.extension)
        return packet

    def send_inband(self, digits: str) -> None:
        """Queue digits as DTMF tones (100 ms on, 50 ms off) in place of the call's outgoing audio."""
        from voxlab.media.tones import dtmf_sequence

        tones = dtmf_sequence(digits, INBAND_ON_S, INBAND_OFF_S)
        self._inband_out = tones if self._inband_out is None else np.concatenate([self._inband_out, tones])

    # -- the tick
    def produce(self) -> Frame | None:
        packet = self.jitter.pop()
        if packet is None:
            return None
        return Frame(payload=packet.payload, codec=self.codec_name)

    # -- the fast path
    def relay(self, packet: RtpPacket) -> None:
        """Forward a same-codec packet from our one input the moment it arrives.

        No decode, no jitter buffer, no wait for the tick: the far end's own
        jitter buffer deals with the arrival timing, as with any media relay.
        Timestamps keep the source's spacing (lost packets stay gaps) but are
        shifted into this leg's own timeline."""
        if not self.sending or self.closed or self.dtmf_out.busy or self._inband_out is not None:
            return
        sender = self.sender
        if packet.ssrc != self._relay_ssrc:
            self._relay_ssrc = packet.ssrc
            self._relay_offset = (sender.timestamp - packet.timestamp) & 0xFFFFFFFF
        ts = (packet.timestamp + self._relay_offset) & 0xFFFFFFFF
        self._write(sender.packet(packet.payload, marker=packet.marker, timestamp=ts, advance=False))
        following = (ts + len(packet.payload)) & 0xFFFFFFFF
        if 0 < ((following - sender.timestamp) & 0xFFFFFFFF) < 0x80000000:
            # Only move forward (serial-number compare): a reordered packet
            # must not pull the stream's timestamp back.
            sender.timestamp = following
        self._relayed_at = self.graph.ticks if self.graph is not None else 0

    def consume(self, frame: Frame | None) -> None:
        if not self.sending or self.closed:
            return
        if self.dtmf_out.busy and self.dtmf_payload_type is not None:
            self._send_dtmf()
            return
        if self._inband_out is not None:
            chunk, rest = self._inband_out[:160], self._inband_out[160:]
            self._inband_out = rest if len(rest) else None
            if len(chunk) < 160:
                chunk = np.concatenate([chunk, np.zeros(160 - len(chunk), np.int16)])
            self._relay_ssrc = None
            self._write(self.sender.packet(self.codec.encode(chunk)))
            return
        source = self.source
        if source is not None and source.__class__ is RtpEndpoint and source.codec_name == self.codec_name:
            # Relayed on arrival (see relay); only fill in with silence when
            # the source has gone quiet, to keep this leg's stream alive.
            if self.graph is None or self.graph.ticks - self._relayed_at <= RELAY_QUIET_TICKS:
                return
            frame = None
        self._relay_ssrc = None
        if frame is None:
            # Nothing routed in (or a lost packet): send silence rather than
            # nothing. Peers' jitter buffers only release a packet when a newer
            # one arrives (the end of a DTMF event would hang), and phones and
            # SBCs hang up calls that go quiet at the RTP level.
            self._write(self.sender.packet(self.silence))
            return
        if frame.payload is not None and frame.codec == self.codec_name:
            payload = frame.payload          # fast path: relay without transcoding
        else:
            payload = self.codec.encode(frame.pcm)
        self._write(self.sender.packet(payload))

    def _send_dtmf(self) -> None:
        self._relay_ssrc = None
        step = self.dtmf_out.next_payload()
        if step is None:
            self.sender.skip()
            return
        payload, marker, new_event = step
        self._write(self.sender.event_packet(payload, marker, new_event, self.dtmf_payload_type))

    def _write(self, data: bytes) -> None:
        self.stats["tx_packets"] += 1
        self.stats["tx_bytes"] += len(data)
        self.write(data, self.remote)

    def renegotiate(self, codec: str, payload_type: int, dtmf_payload_type: int | None,
                    remote: tuple[str, int]) -> None:
        """Apply a new offer/answer outcome (a re-INVITE, or the answer in a
        delayed-offer ACK): codec, payload types and the peer's address.

        A new address un-latches the stream, so symmetric RTP follows a peer
        that moved (a phone that changed network, a transfer to another box)
        instead of dropping its packets as foreign."""
        if codec != self.codec_name:
            new = codec_for(codec)
            if new is None:
                raise ValueError(f"unsupported codec {codec!r}")
            self.codec, self.codec_name = new, new.name
            self.silence = new.silence_payload(160)
            # Buffered packets are in the old codec; the stream continues under our SSRC.
            self.jitter = JitterBuffer()
        self.payload_type = payload_type
        self.sender.payload_type = payload_type
        if dtmf_payload_type is None and self.dtmf_out.busy:
            # Queued digits could never go out, and a busy sender holds the stream.
            self.dtmf_out.cancel()
        self.dtmf_payload_type = dtmf_payload_type
        # Compared with the SDP's previous address, not the latched one: a phone
        # behind NAT repeats its private address in every re-INVITE, and that
        # must not undo the latch (nor reopen it to strangers).
        if remote != self.sdp_remote:
            self.sdp_remote = remote
            self.remote = remote
            self.latched = False

    def send_digits(self, digits: str) -> None:
        """Queue RFC 4733 digits; raises ValueError when the peer did not offer telephone-event."""
        if self.dtmf_payload_type is None:
            raise ValueError("the peer did not offer telephone-event; cannot send RFC 4733 digits")
        self.dtmf_out.send(digits)

    def describe(self) -> str:
        j = self.jitter.stats
        return (f"{self.name} {self.codec_name} -> {self.remote[0]}:{self.remote[1]} "
                f"rx={self.stats['rx_packets']} tx={self.stats['tx_packets']} "
                f"lost={getattr(j, 'lost', 0) if not isinstance(j, dict) else j.get('lost', 0)}")
