import random
import struct

import pytest

from voxlab.media.rtp import RtpPacket, RtpParseError, RtpSender, is_rtcp


def raw_packet(pt=0, seq=1, ts=2, ssrc=3, payload=b"abc", marker=False, csrc=(), ext=None,
               pad=0, version=2):
    b0 = (version << 6) | len(csrc)
    if ext is not None:
        b0 |= 0x10
    if pad:
        b0 |= 0x20
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        profile, data = ext
        out += struct.pack("!HH", profile, len(data) // 4) + data
    out += payload
    if pad:
        out += b"\0" * (pad - 1) + bytes([pad])
    return out


def test_parse_basic_fields():
    data = bytes.fromhex("80e51fdb0000a8c00e05384e") + b"\x05\x0a\x00\x00"
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (101, True, 0x1FDB, 0xA8C0, 0x0E05384E)
    assert p.payload == b"\x05\x0a\x00\x00" and p.csrc == ()
    assert p.to_bytes() == data
    assert bytes(p) == data


def test_round_trip_random_headers():
    rng = random.Random(1)
    for _ in range(500):
        pkt = RtpPacket(rng.randrange(128), rng.randrange(65536), rng.getrandbits(32),
                        rng.getrandbits(32), rng.randbytes(rng.randrange(0, 300)),
                        marker=rng.random() < 0.5,
                        csrc=tuple(rng.getrandbits(32) for _ in range(rng.randrange(0, 4))))
        data = pkt.to_bytes()
        back = RtpPacket.parse(data)
        assert back == pkt
        assert back.to_bytes() == data


def test_csrc_extension_padding():
    data = raw_packet(pt=8, csrc=(1, 2, 0xFFFFFFFF), ext=(0xBEDE, b"\x10\xff\x00\x00"),
                      payload=b"hello", pad=3)
    p = RtpPacket.parse(data)
    assert p.csrc == (1, 2, 0xFFFFFFFF)
    assert p.payload == b"hello"          # padding stripped, extension skipped
    assert p.extension == (0xBEDE, b"\x10\xff\x00\x00")
    # re-serialised without padding, extension kept
    again = RtpPacket.parse(p.to_bytes())
    assert again == p
    assert len(p.to_bytes()) == len(data) - 3


def test_extension_of_zero_length_and_padding_only_payload():
    p = RtpPacket.parse(raw_packet(ext=(0x1000, b""), payload=b""))
    assert p.payload == b"" and p.extension == (0x1000, b"")
    p = RtpPacket.parse(raw_packet(payload=b"", pad=4))
    assert p.payload == b""


@pytest.mark.parametrize("data", [
    b"",
    b"\x80",
    b"\x80\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00",          # 11 bytes
    raw_packet(version=1),
    raw_packet(version=0),
    raw_packet(version=3),
    raw_packet(csrc=(1, 2))[:18],                               # CSRC list cut short
    bytes([0x8F]) + raw_packet()[1:],                           # CC=15 but no CSRCs
    raw_packet(ext=(1, b"\0" * 8))[:20],                       # extension cut short
    bytes([0x90]) + raw_packet(payload=b"")[1:12] + b"\x00\x01",  # no room for ext header
    bytes([0x90]) + raw_packet(payload=b"\x00\x00\x00\x05")[1:],  # ext length 5 words, none there
    bytes([0xA0]) + raw_packet(payload=b"ab\x00")[1:],           # padding count 0
    bytes([0xA0]) + raw_packet(payload=b"ab\x09")[1:],           # padding longer than payload
])
def test_malformed_raises(data):
    with pytest.raises(RtpParseError):
        RtpPacket.parse(data)


def test_parse_error_is_value_error():
    assert issubclass(RtpParseError, ValueError)


def test_fuzz_only_rtp_parse_error():
    rng = random.Random(20240501)
    valid = [raw_packet(pt=rng.randrange(128), csrc=(5,) * rng.randrange(3),
                        ext=(1, b"\0" * 4) if rng.random() < 0.3 else None,
                        payload=rng.randbytes(rng.randrange(40)), pad=rng.choice([0, 0, 1, 4]))
             for _ in range(50)]
    parsed = errors = 0
    for i in range(5000):
        if i % 2:
            data = rng.randbytes(rng.randrange(0, 64))
        else:  # mutate a valid packet: flip bytes, truncate, extend
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[:rng.randrange(len(data) + 1)]
            data = bytes(data)
        try:
            p = RtpPacket.parse(data)
        except RtpParseError:
            errors += 1
            continue
        parsed += 1
        assert 0 <= p.payload_type < 128 and 0 <= p.sequence < 65536
        assert len(p.payload) <= len(data) - 12
        # what parsed re-serialises and parses to the same packet
        assert RtpPacket.parse(p.to_bytes()) == p
    assert parsed > 500 and errors > 500


def test_is_rtcp():
    # RTCP SR, RR, SDES, BYE, APP (and a compound starting with RR)
    for pt in (200, 201, 202, 203, 204, 205, 206, 207):
        assert is_rtcp(bytes([0x80, pt, 0, 6]) + b"\0" * 24)
    assert is_rtcp(bytes([0x81, 201, 0, 7]) + b"\0" * 28)
    # RTP: PCMU, PCMA, telephone-event with marker, dynamic PTs with marker
    for b1 in (0, 8, 0x80, 0x80 | 8, 0x80 | 101, 101, 0x80 | 96, 0x80 | 127, 0x80 | 63):
        assert not is_rtcp(bytes([0x80, b1]) + b"\0" * 10)
    assert not is_rtcp(b"")
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(bytes([0x40, 200]) + b"\0" * 6)     # not version 2


def test_sender_numbering_and_wrap():
    s = RtpSender(0, ssrc=0x1234)
    s.sequence = 65534
    s.timestamp = 0xFFFFFFFF - 159
    pkts = [RtpPacket.parse(s.packet(b"\xff" * 160)) for _ in range(4)]
    assert [p.sequence for p in pkts] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in pkts] == [0xFFFFFFFF - 159, 0, 160, 320]
    assert all(p.ssrc == 0x1234 and p.payload_type == 0 and not p.marker for p in pkts)


def test_sender_options():
    s = RtpSender(8, ssrc=7, samples_per_frame=240)
    seq0, ts0 = s.sequence, s.timestamp
    a = RtpPacket.parse(s.packet(b"x", marker=True))
    b = RtpPacket.parse(s.packet(b"y", payload_type=101, advance=False))
    c = RtpPacket.parse(s.packet(b"z"))
    d = RtpPacket.parse(s.packet(b"w", timestamp=5))
    assert a.marker and not b.marker
    assert (a.payload_type, b.payload_type, c.payload_type) == (8, 101, 8)
    assert [p.sequence for p in (a, b, c, d)] == [seq0, (seq0 + 1) & 0xFFFF, (seq0 + 2) & 0xFFFF,
                                                 (seq0 + 3) & 0xFFFF]
    assert a.timestamp == ts0
    assert b.timestamp == c.timestamp == (ts0 + 240) & 0xFFFFFFFF
    assert d.timestamp == 5
    assert s.timestamp == (ts0 + 240 * 3) & 0xFFFFFFFF
    assert s.packets_sent == 4 and s.octets_sent == 4


def test_sender_random_ssrc_and_start():
    a, b = RtpSender(0), RtpSender(0)
    assert 0 <= a.ssrc < 2 ** 32 and 0 <= a.sequence < 65536
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)


def test_sender_event_packets_keep_timestamp():
    s = RtpSender(0, ssrc=1)
    ts0 = s.timestamp
    e1 = RtpPacket.parse(s.event_packet(b"\x01\x0a\x00\xa0", marker=True, new_event=True))
    e2 = RtpPacket.parse(s.event_packet(b"\x01\x0a\x01\x40", marker=False, new_event=False))
    e3 = RtpPacket.parse(s.event_packet(b"\x01\x8a\x01\x40", marker=False, new_event=False))
    audio = RtpPacket.parse(s.packet(b"\xff" * 160))
    e4 = RtpPacket.parse(s.event_packet(b"\x02\x0a\x00\xa0", marker=True, new_event=True))
    assert e1.timestamp == e2.timestamp == e3.timestamp == ts0
    assert e1.payload_type == 101 and e1.marker and not e2.marker
    assert audio.timestamp == (ts0 + 3 * 160) & 0xFFFFFFFF   # audio stays in step
    assert e4.timestamp == (ts0 + 4 * 160) & 0xFFFFFFFF
    seqs = [p.sequence for p in (e1, e2, e3, audio, e4)]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))


def test_relay_renumbers():
    # a relayed payload gets this leg's numbering, not the source's
    src = RtpPacket(0, 999, 123456, 0xAAAA, b"\x7f" * 160, marker=True)
    out = RtpSender(0, ssrc=0xBBBB)
    seq, ts = out.sequence, out.timestamp
    p = RtpPacket.parse(out.packet(src.payload, marker=src.marker))
    assert (p.ssrc, p.sequence, p.timestamp, p.payload) == (0xBBBB, seq, ts, src.payload)
