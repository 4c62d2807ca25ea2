"""The media graph: single-input routing, fast-path relay, transcoding, players, DTMF out."""

import numpy as np
import pytest

from voxlab.media.analysis import dominant_frequency
from voxlab.media.dtmf import DtmfReceiver
from voxlab.media.endpoint import RtpEndpoint
from voxlab.media.g711 import codec_for
from voxlab.media.graph import MediaGraph
from voxlab.media.player import Player, null_context
from voxlab.media.rtp import RtpPacket, RtpSender
from voxlab.media.tones import frames, sine

PEER = ("127.0.0.1", 40000)


class Wire:
    def __init__(self):
        self.packets = []

    def write(self, data, addr):
        self.packets.append((RtpPacket.parse(data), addr))


def endpoint(graph, codec="PCMU", pt=0, dtmf=101):
    wire = Wire()
    ep = RtpEndpoint(codec, pt, dtmf, PEER, wire.write)
    graph.add(ep)
    return ep, wire


def feed_tone(ep, freq=1000.0, codec="PCMU", pt=0, count=10, addr=PEER):
    sender = RtpSender(pt)
    enc = codec_for(codec)
    for frame in list(frames(sine(freq, count * 0.02)))[:count]:
        ep.datagram_received(sender.packet(enc.encode(frame)), addr)


def test_echo_relays_payload_unchanged_with_own_numbering():
    graph = MediaGraph()
    ep, wire = endpoint(graph)
    graph.route(ep, ep)
    sender = RtpSender(0, ssrc=1234)
    payloads = [bytes([i]) * 160 for i in range(5)]
    for p in payloads:
        ep.datagram_received(sender.packet(p), PEER)
        graph.tick()
    got = [pkt.payload for pkt, _ in wire.packets]
    assert got == payloads
    assert {pkt.ssrc for pkt, _ in wire.packets} == {ep.sender.ssrc} != {1234}
    seqs = [pkt.sequence for pkt, _ in wire.packets]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:]))


def test_single_input_replaced_by_new_route():
    graph = MediaGraph()
    a, _ = endpoint(graph)
    b, _ = endpoint(graph)
    c, _ = endpoint(graph)
    graph.route(a, c)
    graph.route(b, c)
    assert c.source is b
    assert c not in a.sinks and c in b.sinks
    graph.unroute(b, c)
    assert c.source is None


def test_transcodes_between_codecs():
    graph = MediaGraph()
    a, _ = endpoint(graph, "PCMU", 0)
    b, wire_b = endpoint(graph, "PCMA", 8)
    graph.route(a, b)
    feed_tone(a, 1000.0, count=20)
    for _ in range(20):
        graph.tick()
    assert wire_b.packets and all(p.payload_type == 8 for p, _ in wire_b.packets)
    pcm = np.concatenate([codec_for("PCMA").decode(p.payload) for p, _ in wire_b.packets])
    assert abs(dominant_frequency(pcm) - 1000.0) < 20


def test_symmetric_rtp_latches_to_packet_source():
    graph = MediaGraph()
    ep, wire = endpoint(graph)
    graph.route(ep, ep)
    feed_tone(ep, count=3, addr=("127.0.0.1", 40100))
    graph.tick()
    assert wire.packets[-1][1] == ("127.0.0.1", 40100)


def test_player_frames_and_finish_callback_after_tick():
    graph = MediaGraph()
    ep, wire = endpoint(graph)
    player = Player.of_pcm(null_context(), sine(500, 0.1))
    graph.add(player)
    finished = []
    player.on_finished = lambda p: finished.append(graph.ticks)
    graph.route(player, ep)
    for _ in range(8):
        graph.tick()
    assert len(wire.packets) == 8
    assert finished == [5]
    pcm = np.concatenate([codec_for("PCMU").decode(p.payload) for p, _ in wire.packets[:5]])
    assert abs(dominant_frequency(pcm) - 500.0) < 10
    # After the player, the call keeps its RTP stream alive with silence.
    assert all(p.payload == codec_for("PCMU").silence_payload(160) for p, _ in wire.packets[5:])


def test_idle_endpoint_sends_silence_each_tick_with_running_timestamps():
    graph = MediaGraph()
    ep, wire = endpoint(graph, "PCMA", 8)
    for _ in range(5):
        graph.tick()
    assert len(wire.packets) == 5
    assert all(p.payload == codec_for("PCMA").silence_payload(160) for p, _ in wire.packets)
    stamps = [p.timestamp for p, _ in wire.packets]
    assert all((b - a) % 2**32 == 160 for a, b in zip(stamps, stamps[1:]))


def test_dtmf_out_replaces_audio_and_decodes():
    graph = MediaGraph()
    ep, wire = endpoint(graph)
    player = Player.of_pcm(null_context(), sine(500, 2.0))
    graph.add(player)
    graph.route(player, ep)
    ep.send_digits("19#")
    for _ in range(60):
        graph.tick()
    rx = DtmfReceiver()
    digits = [d for d in (rx.feed(p) for p, _ in wire.packets if p.payload_type == 101) if d]
    assert "".join(digits) == "19#"
    assert any(p.payload_type == 0 for p, _ in wire.packets[-5:])


def test_digits_without_telephone_event_raise():
    graph = MediaGraph()
    ep, _ = endpoint(graph, dtmf=None)
    with pytest.raises(ValueError):
        ep.send_digits("1")


def test_received_dtmf_reported_once():
    graph = MediaGraph()
    ep, _ = endpoint(graph)
    got = []
    ep.on_digit = lambda digit, kind: got.append((digit, kind))
    from voxlab.media.dtmf import DtmfSender
    ds, sender = DtmfSender(), RtpSender(101)
    ds.send("5")
    while ds.busy:
        step = ds.next_payload()
        if step:
            ep.datagram_received(sender.event_packet(*step, payload_type=101), PEER)
    assert got == [("5", "rfc2833")]


def test_removed_unit_loses_routes():
    graph = MediaGraph()
    a, _ = endpoint(graph)
    b, _ = endpoint(graph)
    graph.route(a, b)
    graph.route(b, a)
    graph.remove(a)
    assert b.source is None and b.sinks == []
    with pytest.raises(ValueError):
        graph.route(a, b)


def test_garbage_datagrams_are_counted_not_raised():
    graph = MediaGraph()
    ep, _ = endpoint(graph)
    for data in (b"", b"\x00", b"\x80" * 5, bytes(range(256))):
        ep.datagram_received(data, PEER)
    assert ep.stats["rx_invalid"] >= 3


def test_relay_is_immediate_and_keeps_timestamp_gaps():
    graph = MediaGraph()
    a, _ = endpoint(graph)
    b, wire_b = endpoint(graph)
    graph.route(a, b)
    sender = RtpSender(0, ssrc=99)
    a.datagram_received(sender.packet(b"\x01" * 160), PEER)
    assert len(wire_b.packets) == 1          # sent on arrival, before any tick
    sender.skip(2)                            # two packets lost on the way in
    a.datagram_received(sender.packet(b"\x02" * 160), PEER)
    first, second = wire_b.packets[0][0], wire_b.packets[1][0]
    assert (second.timestamp - first.timestamp) % 2**32 == 3 * 160
    assert (second.sequence - first.sequence) % 65536 == 1
    graph.tick()
    assert len(wire_b.packets) == 2          # the tick adds nothing while the source is live


def test_relayed_leg_fills_silence_when_source_goes_quiet():
    graph = MediaGraph()
    a, _ = endpoint(graph)
    b, wire_b = endpoint(graph)
    graph.route(a, b)
    a.datagram_received(RtpSender(0).packet(b"\x05" * 160), PEER)
    for _ in range(6):
        graph.tick()
    silence = codec_for("PCMU").silence_payload(160)
    payloads = [p.payload for p, _ in wire_b.packets]
    assert payloads[0] == b"\x05" * 160
    assert payloads[1:] and all(p == silence for p in payloads[1:])
    stamps = [p.timestamp for p, _ in wire_b.packets]
    assert all((y - x) % 2**32 == 160 for x, y in zip(stamps, stamps[1:]))


def test_relay_pauses_while_digits_are_sent():
    graph = MediaGraph()
    a, _ = endpoint(graph)
    b, wire_b = endpoint(graph)
    graph.route(a, b)
    b.send_digits("7")
    sender = RtpSender(0)
    for _ in range(20):
        a.datagram_received(sender.packet(b"\x09" * 160), PEER)
        graph.tick()
    kinds = [p.payload_type for p, _ in wire_b.packets]
    first_audio = kinds.index(0)
    assert set(kinds[:first_audio]) == {101}     # no audio interleaved with the event
    rx = DtmfReceiver()
    assert "".join(d for d in (rx.feed(p) for p, _ in wire_b.packets if p.payload_type == 101) if d) == "7"


def test_strict_rtp_latches_once_and_drops_strangers():
    graph = MediaGraph()
    ep, wire = endpoint(graph)
    graph.route(ep, ep)
    stranger = ("127.0.0.1", 40999)
    # Before any media: a packet with a payload type we did not negotiate latches nothing.
    ep.datagram_received(RtpSender(99).packet(b"\x00" * 160), stranger)
    assert not ep.latched and ep.remote == PEER
    feed_tone(ep, count=2, addr=("127.0.0.1", 40100))
    assert ep.latched and ep.remote == ("127.0.0.1", 40100)
    before = len(wire.packets)
    feed_tone(ep, count=3, addr=stranger)             # valid PT, wrong source
    ep.datagram_received(RtpSender(101).packet(b"\x05\x8a\x03\x20"), stranger)
    assert ep.remote == ("127.0.0.1", 40100)
    assert len(wire.packets) == before                  # nothing relayed from the stranger
    assert ep.stats["rx_foreign"] == 5


def test_renegotiate_with_the_same_sdp_address_keeps_the_latch():
    # A phone behind NAT repeats its private SDP address in every re-INVITE.
    graph = MediaGraph()
    ep, wire = endpoint(graph)
    nat = ("127.0.0.1", 40100)
    feed_tone(ep, count=2, addr=nat)
    assert ep.latched and ep.remote == nat
    ep.renegotiate("PCMU", 0, 101, PEER)
    assert ep.latched and ep.remote == nat
    ep.renegotiate("PCMU", 0, 101, ("127.0.0.1", 40200))   # the SDP really moved
    assert not ep.latched and ep.remote == ("127.0.0.1", 40200)


def test_renegotiate_codec_and_dropping_telephone_event_cancels_queued_digits():
    graph = MediaGraph()
    ep, wire = endpoint(graph)
    graph.route(ep, ep)
    ep.send_digits("123")
    assert ep.dtmf_out.busy
    ep.renegotiate("PCMA", 8, None, PEER)
    assert not ep.dtmf_out.busy and ep.codec_name == "PCMA"
    before = len(wire.packets)
    feed_tone(ep, codec="PCMA", pt=8, count=3)
    relayed = [p for p, _ in wire.packets[before:]]
    assert len(relayed) == 3 and {p.payload_type for p in relayed} == {8}
    with pytest.raises(ValueError):
        ep.send_digits("1")
