import os
import random
import struct
import subprocess

import numpy as np
import pytest

from voxlab.media.analysis import detect_dtmf_digits
from voxlab.media.dtmf import (DTMF_FREQUENCIES, EVENT_CODES, DtmfReceiver, DtmfSender,
                               InbandDtmfDetector, TelephoneEvent, build_event, parse_event)
from voxlab.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voxlab.media.rtp import RtpPacket, RtpSender
from voxlab.media.tones import dtmf_sequence, dtmf_tone, dual_tone, silence, sine, white_noise
from voxlab.media.wav import read_wav

from .conftest import requires_espeak, requires_sox

ALL = "0123456789*#ABCD"
SIPP_DIR = "/usr/share/sip-tester"


# ------------------------------------------------------------------ RFC 4733 payloads

def test_event_codes():
    assert [EVENT_CODES[d] for d in ALL] == list(range(16))
    assert len(EVENT_CODES) == 16


def test_parse_event():
    ev = parse_event(b"\x05\x8a\x03\x20")
    assert ev == TelephoneEvent("5", True, 10, 800)
    assert ev.code == 5
    assert parse_event(b"\x0b\x3f\xff\xff\x00") == TelephoneEvent("#", False, 63, 65535)
    assert parse_event(b"\x0a\x00\x00\x00").event == "*"
    assert parse_event(b"\x0f\x00\x00\x00").event == "D"
    assert parse_event(b"\x20\x00\x00\x00").event == "E32"     # non-DTMF event code
    for short in (b"", b"\x01", b"\x01\x02\x03"):
        with pytest.raises(ValueError):
            parse_event(short)


def test_build_parse_round_trip():
    for d in ALL:
        for end in (False, True):
            ev = parse_event(build_event(d, end, 13, 1234))
            assert ev == TelephoneEvent(d, end, 13, 1234)


# ------------------------------------------------------------------ sender

def drain(sender, rtp=None, pt=101, limit=10000):
    """Run the sender tick by tick; returns the list of (RtpPacket or None) per tick."""
    rtp = rtp or RtpSender(0, ssrc=0x1234)
    ticks = []
    for _ in range(limit):
        if not sender.busy:
            break
        ev = sender.next_payload()
        if ev is None:
            rtp.packet(b"\xff" * 160)
            ticks.append(None)
        else:
            ticks.append(RtpPacket.parse(rtp.event_packet(*ev, payload_type=pt)))
    return ticks


def test_sender_packet_layout():
    s = DtmfSender()
    assert not s.busy and s.next_payload() is None
    s.send("1", duration_ms=100, gap_ms=40, volume=10)
    assert s.busy
    ticks = drain(s)
    events = [t for t in ticks if t is not None]
    parsed = [parse_event(p.payload) for p in events]
    # 100 ms = 5 ticks: 4 progress packets then the end packet sent 3 times
    assert len(events) == 7
    assert [e.duration for e in parsed] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in parsed] == [False] * 4 + [True] * 3
    assert all(e.event == "1" and e.volume == 10 for e in parsed)
    assert [p.marker for p in events] == [True] + [False] * 6
    assert len({p.timestamp for p in events}) == 1
    assert all(p.payload_type == 101 for p in events)
    # then 40 ms of gap (2 ticks) before the sender is idle
    assert ticks[7:] == [None, None]
    assert not s.busy


def test_sender_new_event_flag_and_timestamps():
    s = DtmfSender()
    s.send("12", duration_ms=60, gap_ms=20)
    flags = []
    while s.busy:
        ev = s.next_payload()
        flags.append(None if ev is None else (ev[1], ev[2]))
    # digit 1: 3 ticks -> 2 progress + 3 end, gap 1 tick, digit 2 the same
    assert flags == [(True, True), (False, False), (False, False), (False, False), (False, False),
                     None,
                     (True, True), (False, False), (False, False), (False, False), (False, False),
                     None]
    rtp = RtpSender(0, ssrc=9)
    ts0 = rtp.timestamp
    s.send("34", duration_ms=60, gap_ms=20)
    ticks = drain(s, rtp)
    ts = [t.timestamp if t is not None else None for t in ticks]
    first, second = ts[0], ts[6]
    assert first == ts0 and set(ts[:5]) == {first}
    assert second == (ts0 + 6 * 160) & 0xFFFFFFFF and set(ts[6:11]) == {second}
    # audio timestamps continue in step after the digits
    assert RtpPacket.parse(rtp.packet(b"")).timestamp == (ts0 + len(ticks) * 160) & 0xFFFFFFFF


def test_sender_short_duration_and_validation():
    s = DtmfSender()
    s.send("#", duration_ms=10, gap_ms=0)
    payloads = []
    while s.busy:
        payloads.append(s.next_payload())
    assert len(payloads) == 3                      # only the 3 end packets
    assert payloads[0][1] and payloads[0][2] and not payloads[1][1]
    assert all(parse_event(p[0]).end for p in payloads)
    for bad in ("12x", "E", " ", "1-2"):
        with pytest.raises(ValueError):
            s.send(bad)
    assert not s.busy                              # nothing queued by a failed send
    s.send("abcd")                                 # lower case accepted
    assert s.pending == "ABCD"
    s.cancel()
    assert not s.busy
    with pytest.raises(ValueError):
        s.send("1", volume=64)


def test_rtp_sender_send_frame_helper():
    rtp = RtpSender(0, ssrc=3)
    s = DtmfSender()
    s.send("9", duration_ms=40, gap_ms=20)
    pts = [RtpPacket.parse(rtp.send_frame(b"\xff" * 160, s)).payload_type for _ in range(8)]
    assert pts == [101, 101, 101, 101, 0, 0, 0, 0]


# ------------------------------------------------------------------ receiver

def loopback(digits, drop=lambda i, pkt: False, duplicate_all=False, **kw):
    sender = DtmfSender()
    sender.send(digits, **kw)
    rtp = RtpSender(0, ssrc=77)
    stream = [t for t in drain(sender, rtp) if t is not None]
    if duplicate_all:
        stream = [p for p in stream for _ in (0, 1)]
    rx = DtmfReceiver()
    got = []
    for i, p in enumerate(stream):
        if drop(i, p):
            continue
        d = rx.feed(RtpPacket.parse(p.to_bytes()))
        if d is not None:
            got.append(d)
    return "".join(got)


def test_loopback_all_digits():
    assert loopback(ALL) == ALL
    assert loopback("1111") == "1111"             # repeats are separate events


def test_loopback_with_lost_start_packets():
    # every packet without the end bit is lost: digits still reported, once
    assert loopback(ALL, drop=lambda i, p: not parse_event(p.payload).end) == ALL
    # the first two packets of each event lost
    assert loopback(ALL, drop=lambda i, p: i % 7 in (0, 1)) == ALL


def test_loopback_with_random_loss_and_duplicates():
    rng = random.Random(7)
    got = loopback(ALL, drop=lambda i, p: rng.random() < 0.4, duplicate_all=True)
    # a digit can only vanish if all its 7 packets are lost; never doubled
    assert len(got) == len(set(got)) and all(d in ALL for d in got)
    assert got == "".join(d for d in ALL if d in got)
    assert len(got) >= 14
    # redundancy: lose everything but one end packet of each event
    assert loopback(ALL, drop=lambda i, p: i % 7 != 5) == ALL


def test_receiver_late_retransmission_of_previous_event():
    rx = DtmfReceiver()
    a_start = RtpPacket(101, 10, 1000, 5, b"\x03\x0a\x00\xa0")
    a_end = RtpPacket(101, 13, 1000, 5, b"\x03\x8a\x03\x20")
    b_start = RtpPacket(101, 16, 2600, 5, b"\x04\x0a\x00\xa0")
    b_end = RtpPacket(101, 19, 2600, 5, b"\x04\x8a\x03\x20")
    out = [rx.feed(p) for p in (a_start, b_start, a_end, b_end, a_end, b_start)]
    assert out == ["3", "4", None, None, None, None]


def test_receiver_ignores_garbage_and_other_ssrc_is_separate():
    rx = DtmfReceiver()
    assert rx.feed(RtpPacket(101, 1, 1000, 5, b"\x01")) is None          # short
    assert rx.feed(RtpPacket(101, 2, 1000, 5, b"\x40\x0a\x00\xa0")) is None  # non-DTMF event
    assert rx.feed(RtpPacket(101, 3, 1000, 5, b"\x01\x0a\x00\xa0")) == "1"
    assert rx.feed(RtpPacket(101, 4, 1000, 5, b"\x01\x8a\x01\x40")) is None
    assert rx.feed(RtpPacket(101, 5, 1000, 6, b"\x01\x8a\x01\x40")) == "1"  # other source


# ------------------------------------------------------------------ real captures

def read_pcap_udp_payloads(path):
    """Minimal pcap reader: Ethernet / (VLAN) / IPv4 / UDP payloads, in order."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError("not a pcap file")
    _vmaj, _vmin, _tz, _sig, _snap, linktype = struct.unpack_from(e + "HHiIII", data, 4)
    assert linktype == 1, "only Ethernet captures"
    off = 24
    out = []
    while off + 16 <= len(data):
        ts_s, ts_frac, incl, _orig = struct.unpack_from(e + "IIII", data, off)
        off += 16
        frame = data[off:off + incl]
        off += incl
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        l3 = 14
        if ethertype == 0x8100:
            ethertype = struct.unpack_from("!H", frame, 16)[0]
            l3 = 18
        if ethertype != 0x0800:
            continue
        ihl = (frame[l3] & 0x0F) * 4
        if frame[l3 + 9] != 17:
            continue
        udp = l3 + ihl
        sport, dport, ulen = struct.unpack_from("!HHH", frame, udp)
        out.append((ts_s + ts_frac / 1e6, frame[udp + 8:udp + ulen]))
    return out


CAPTURES = [(str(d), str(d)) for d in range(10)] + [("pound", "#"), ("star", "*")]


@pytest.mark.parametrize("name,digit", CAPTURES)
def test_sipp_rfc2833_captures(name, digit):
    path = os.path.join(SIPP_DIR, f"dtmf_2833_{name}.pcap")
    if not os.path.exists(path):
        pytest.skip("sip-tester pcaps not installed")
    rx = DtmfReceiver()
    got = []
    events = []
    for _t, payload in read_pcap_udp_payloads(path):
        pkt = RtpPacket.parse(payload)
        assert pkt.payload_type == 101
        events.append(parse_event(pkt.payload))
        d = rx.feed(pkt)
        if d is not None:
            got.append(d)
    assert got == [digit]
    assert all(e.event == digit for e in events)
    assert [e.end for e in events][-3:] == [True] * 3 and not events[0].end
    # feeding the capture again (same timestamps) reports nothing new
    assert all(rx.feed(RtpPacket.parse(p)) is None for _t, p in read_pcap_udp_payloads(path))


# ------------------------------------------------------------------ in-band detection

def test_dtmf_tone_frequencies():
    for d, (lo, hi) in DTMF_FREQUENCIES.items():
        spec = np.abs(np.fft.rfft(dtmf_tone(d, 1.0).astype(float)))
        peaks = sorted(np.argsort(spec)[-2:])          # 1 Hz bins for a 1 s signal
        assert peaks == [round(lo), round(hi)]


@pytest.mark.parametrize("codec", ["none", "ulaw", "alaw"])
def test_inband_all_digits_any_alignment(codec):
    rt = {"none": lambda x: x,
          "ulaw": lambda x: ulaw_decode(ulaw_encode(x)),
          "alaw": lambda x: alaw_decode(alaw_encode(x))}[codec]
    for offset in range(0, 160, 23):
        sig = np.concatenate([np.zeros(offset, np.int16), dtmf_sequence(ALL, 0.07, 0.05)])
        assert detect_dtmf_digits(rt(sig)) == ALL, offset


def test_inband_timing_limits():
    for offset in range(0, 160, 11):
        pad = np.zeros(offset, np.int16)
        # 40 ms tones with 40 ms pauses: all detected, repeats separated
        assert detect_dtmf_digits(np.concatenate([pad, dtmf_sequence("5555", 0.04, 0.04)])) == "5555"
        # 20 ms bursts are too short to be digits
        assert detect_dtmf_digits(np.concatenate([pad, dtmf_sequence("123", 0.02, 0.06)])) == ""
        # a 10 ms dropout in a long tone does not make two digits
        tone = dtmf_tone("7", 0.3)
        tone[1000:1080] = 0
        assert detect_dtmf_digits(np.concatenate([pad, tone, silence(0.1)])) == "7"


def test_inband_reported_once_and_released():
    det = InbandDtmfDetector()
    sig = np.concatenate([silence(0.04), dtmf_tone("8", 0.5), silence(0.1)])
    results = [det.feed(sig[i:i + 160]) for i in range(0, len(sig), 160)]
    hits = [(i, r) for i, r in enumerate(results) if r]
    assert [r for _, r in hits] == ["8"]
    # reported once ~40 ms after the tone started (frames 2..3), not at the end
    assert 2 <= hits[0][0] <= 5
    assert det.current is None                       # released after the silence


def test_inband_classify_single_frame():
    det = InbandDtmfDetector()
    for d in ALL:
        assert det.classify(dtmf_tone(d, 0.02)) == d
        assert det.classify(ulaw_decode(ulaw_encode(dtmf_tone(d, 0.02)))) == d
    assert det.classify(sine(1000, 0.02)) is None
    assert det.classify(silence(0.02)) is None
    assert det.classify(dtmf_tone("1", 0.01)) is None     # half a frame of tone, half silence
    assert det.current is None                            # classify keeps no state


def test_inband_16k():
    det = InbandDtmfDetector(rate=16000)
    assert det.frame_size == 320
    assert det.feed_many(dtmf_sequence("73#", rate=16000)) == "73#"


def test_inband_levels_and_twist():
    # weak but valid tones (-30 dBFS per tone) are detected
    assert detect_dtmf_digits(np.concatenate([dtmf_sequence("42", amplitude=0.03)])) == "42"
    # too weak (-60 dBFS) is ignored
    assert detect_dtmf_digits(dtmf_sequence("42", amplitude=0.001)) == ""
    lo, hi = DTMF_FREQUENCIES["6"]
    t = np.arange(1600) / 8000
    def two(a_lo, a_hi):
        x = a_lo * np.sin(2 * np.pi * lo * t) + a_hi * np.sin(2 * np.pi * hi * t)
        return np.concatenate([(x * 32767).astype(np.int16), silence(0.1)])
    assert detect_dtmf_digits(two(0.3, 0.3 * 10 ** (-4 / 20))) == "6"    # 4 dB twist ok
    assert detect_dtmf_digits(two(0.3, 0.3 * 10 ** (-14 / 20))) == ""    # 14 dB twist rejected
    assert detect_dtmf_digits(two(0.3 * 10 ** (-14 / 20), 0.3)) == ""    # reverse twist rejected


def test_inband_no_false_digits_on_tones_and_noise():
    for sig in (sine(1000, 2.0), sine(697, 1.0),               # single tones
                dual_tone(1000, 1500, 1.0),                    # non-DTMF dual tone
                white_noise(2.0, amplitude=0.3), silence(1.0),
                dual_tone(697, 1209, 1.0) + white_noise(1.0, amplitude=0.5)):  # buried in noise
        assert detect_dtmf_digits(sig) == ""


@requires_espeak
def test_inband_no_false_digits_on_speech(tmp_path):
    wav = tmp_path / "speech.wav"
    text = ("Hello world. Please press one for sales, two for support. "
            "The quick brown fox jumps over the lazy dog. Nine eight seven six five four.")
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    pcm = read_wav(wav)
    assert len(pcm) > 8000 * 3
    assert detect_dtmf_digits(pcm) == ""
    assert detect_dtmf_digits(ulaw_decode(ulaw_encode(pcm))) == ""
    # and digits mixed into the speech are still found
    mix = pcm[:len(pcm)].astype(np.int32)
    tones = np.concatenate([silence(0.5), dtmf_sequence("159#", 0.1, 0.1, amplitude=0.3)])
    mix[8000:8000 + len(tones)] = mix[8000:8000 + len(tones)] // 4 + tones
    assert detect_dtmf_digits(np.clip(mix, -32768, 32767).astype(np.int16)) == "159#"


def test_inband_no_false_digits_on_real_alaw_call():
    path = os.path.join(SIPP_DIR, "g711a.pcap")
    if not os.path.exists(path):
        pytest.skip("sip-tester pcaps not installed")
    pkts = [RtpPacket.parse(p) for _t, p in read_pcap_udp_payloads(path)]
    assert {p.payload_type for p in pkts} == {8}
    pcm = np.concatenate([alaw_decode(p.payload) for p in pkts])
    assert detect_dtmf_digits(pcm) == ""


@requires_sox
def test_inband_sox_generated_digits(tmp_path):
    parts = []
    for i, d in enumerate("2580"):
        lo, hi = DTMF_FREQUENCIES[d]
        f = tmp_path / f"{i}.wav"
        subprocess.run(["sox", "-n", "-r", "8000", "-b", "16", "-c", "1", str(f), "synth", "0.08",
                        "sine", str(lo), "sine", str(hi), "channels", "1", "vol", "0.5", "pad", "0", "0.06"],
                       check=True, capture_output=True)
        parts.append(read_wav(f))
    sig = np.concatenate(parts)
    assert detect_dtmf_digits(ulaw_decode(ulaw_encode(sig))) == "2580"
