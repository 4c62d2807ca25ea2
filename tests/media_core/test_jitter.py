import random

import pytest

from voxlab.media.jitter import JitterBuffer
from voxlab.media.rtp import RtpPacket


def pkt(seq, ssrc=1, ts=None):
    seq &= 0xFFFF
    return RtpPacket(0, seq, (seq * 160 if ts is None else ts) & 0xFFFFFFFF, ssrc, bytes([seq & 0xFF]))


def seqs(out):
    return [None if p is None else p.sequence for p in out]


def test_in_order_put_then_pop_no_added_latency():
    jb = JitterBuffer(target_depth=1)
    out = []
    for i in range(200):
        jb.put(pkt(i))
        assert jb.stats.depth <= 1
        out.append(jb.pop())
        assert jb.depth == 0
    assert seqs(out) == list(range(200))      # each packet out on the tick it arrived
    s = jb.stats
    assert (s.received, s.played, s.lost, s.late, s.duplicate, s.overflow) == (200, 200, 0, 0, 0, 0)
    assert s.max_depth_seen == 1


def test_pop_then_put_at_most_one_tick():
    jb = JitterBuffer(target_depth=1)
    out = []
    for i in range(100):
        out.append(jb.pop())        # tick
        jb.put(pkt(i))              # packet arrives during the tick
    assert out[0] is None
    assert seqs(out[1:]) == list(range(99))   # exactly one tick of buffering
    assert jb.stats.lost == 0 and jb.stats.max_depth_seen == 1


def test_reordered_within_depth():
    order = list(range(300))
    for i in range(0, 298, 3):         # swap neighbours all the time
        order[i], order[i + 1] = order[i + 1], order[i]
    jb = JitterBuffer(target_depth=3)
    out = []
    it = iter(order)
    for _ in range(303):
        p = next(it, None)
        if p is not None:
            jb.put(pkt(p))
        out.append(jb.pop())
    played = [s for s in seqs(out) if s is not None]
    assert played == list(range(300))
    assert jb.stats.lost == 0 and jb.stats.late == 0


def test_duplicates_dropped_and_counted():
    jb = JitterBuffer(target_depth=2)
    jb.put(pkt(10))
    jb.put(pkt(10))                  # duplicate while buffered
    jb.put(pkt(11))
    assert jb.stats.duplicate == 1 and jb.depth == 2
    assert jb.pop().sequence == 10
    jb.put(pkt(10))                  # duplicate of an already played packet
    assert jb.stats.duplicate == 2 and jb.stats.late == 0
    assert jb.pop().sequence == 11
    assert jb.stats.received == 4 and jb.stats.played == 2


def test_loss_gives_none_then_continues():
    jb = JitterBuffer(target_depth=1)
    out = []
    for i in range(12):
        if i != 5:
            jb.put(pkt(i))
        out.append(jb.pop())
    assert seqs(out) == [0, 1, 2, 3, 4, None, 6, 7, 8, 9, 10, 11]
    assert jb.stats.lost == 1 and jb.stats.played == 11


def test_burst_loss_counted():
    jb = JitterBuffer(target_depth=1)
    out = []
    for i in range(30):
        if not 10 <= i < 17:
            jb.put(pkt(i))
        out.append(jb.pop())
    assert seqs(out)[10:17] == [None] * 7
    assert seqs(out)[17:] == list(range(17, 30))
    assert jb.stats.lost == 7


def test_late_packet_dropped():
    jb = JitterBuffer(target_depth=1)
    out = []
    for i in range(10):
        if i == 7:
            jb.put(pkt(5))           # 5 was delayed by two ticks
        if i != 5:
            jb.put(pkt(i))
        out.append(jb.pop())
    assert 5 not in seqs(out)
    assert seqs(out) == [0, 1, 2, 3, 4, None, 6, 7, 8, 9]
    assert jb.stats.late == 1 and jb.stats.lost == 1 and jb.stats.duplicate == 0


def test_skips_gap_when_later_packets_wait():
    jb = JitterBuffer(target_depth=2)
    for i in (0, 1):
        jb.put(pkt(i))
    assert jb.pop().sequence == 0
    assert jb.pop().sequence == 1
    for i in (4, 5, 6):              # 2 and 3 never come
        jb.put(pkt(i))
    p = jb.pop()
    assert p.sequence == 4           # no stall on the gap
    assert jb.stats.lost == 2
    assert seqs([jb.pop(), jb.pop()]) == [5, 6]


def test_skips_gap_at_exactly_target_depth():
    jb = JitterBuffer(target_depth=2)
    for i in (0, 1):
        jb.put(pkt(i))
    assert jb.pop().sequence == 0
    assert jb.pop().sequence == 1
    jb.put(pkt(3))
    jb.put(pkt(4))                   # 2 missing; target depth (2) of later packets waiting
    assert jb.pop().sequence == 3
    assert jb.stats.lost == 1
    assert jb.pop().sequence == 4


def test_waits_for_missing_packet_below_target_depth():
    jb = JitterBuffer(target_depth=3)
    for i in range(3):
        jb.put(pkt(i))
    assert jb.pop().sequence == 0
    jb.put(pkt(3))
    assert jb.pop().sequence == 1
    # 2 missing at its slot: only 3 waiting (< target) -> slot 2 concealed
    del jb._buf[2]
    assert jb.pop() is None
    assert jb.pop().sequence == 3
    assert jb.stats.lost == 1


@pytest.mark.parametrize("start", [65530, 65535, 0xFFFF - 100])
def test_sequence_wrap(start):
    jb = JitterBuffer(target_depth=2)
    order = [start + i for i in range(20)]
    # swap the packets around the wrap
    k = 65535 - start
    if k + 1 < len(order):
        order[k], order[k + 1] = order[k + 1], order[k]
    out = []
    for s in order:
        jb.put(pkt(s))
        out.append(jb.pop())
    out += [jb.pop(), jb.pop()]
    played = [s for s in seqs(out) if s is not None]
    assert played == [(start + i) & 0xFFFF for i in range(20)]
    assert jb.stats.lost == 0 and jb.stats.late == 0 and jb.stats.resets == 0


def test_long_run_wraps_several_times():
    jb = JitterBuffer()
    n = 3 * 65536 + 100
    last = None
    for i in range(n):
        jb.put(pkt(i))
        last = jb.pop()
        assert last is not None
    assert last.sequence == (n - 1) & 0xFFFF
    assert jb.stats.lost == 0 and jb.stats.resets == 0 and jb.stats.played == n


def test_overflow_drops_oldest():
    jb = JitterBuffer(target_depth=1, max_depth=5)
    for i in range(12):
        jb.put(pkt(i))
    assert jb.depth == 5 and jb.stats.overflow == 7
    out = [jb.pop() for _ in range(6)]
    assert seqs(out) == [7, 8, 9, 10, 11, None]
    assert jb.stats.lost == 0            # overflow drops are not double counted


def test_overflow_while_playing():
    jb = JitterBuffer(target_depth=1, max_depth=3)
    jb.put(pkt(0))
    assert jb.pop().sequence == 0
    for i in range(1, 7):               # burst of 6 with no pops
        jb.put(pkt(i))
    assert jb.stats.overflow == 3
    assert seqs([jb.pop() for _ in range(3)]) == [4, 5, 6]
    assert jb.stats.lost == 0


def test_underrun_and_reprime():
    jb = JitterBuffer(target_depth=3)
    for i in range(3):
        jb.put(pkt(i))
        if i < 2:
            assert jb.pop() is None     # priming: not enough buffered yet
    assert seqs([jb.pop() for _ in range(4)]) == [0, 1, 2, None]
    assert jb.stats.underruns == 1 and not jb.playing
    jb.put(pkt(3))
    assert jb.pop() is None             # re-priming
    jb.put(pkt(4))
    assert jb.pop() is None
    jb.put(pkt(5))
    assert jb.pop().sequence == 3       # playing again once target depth is back
    assert jb.stats.lost == 0


def test_ssrc_change_resets():
    jb = JitterBuffer(target_depth=1)
    for i in range(5):
        jb.put(pkt(i, ssrc=1))
        jb.pop()
    jb.put(pkt(40000, ssrc=2))           # new source, unrelated numbering
    p = jb.pop()
    assert p.ssrc == 2 and p.sequence == 40000
    assert jb.stats.resets == 1 and jb.stats.lost == 0 and jb.stats.late == 0
    jb.put(pkt(40001, ssrc=2))
    assert jb.pop().sequence == 40001


def test_sequence_restart_same_ssrc():
    jb = JitterBuffer(target_depth=1)
    for i in range(10):
        jb.put(pkt(i))
        jb.pop()
    out = []
    for i in range(30000, 30010):        # sender restarted its numbering
        jb.put(pkt(i))
        out.append(jb.pop())
    played = [s for s in seqs(out) if s is not None]
    assert out[0] is None                # a lone far jump is held on probation
    assert played == list(range(30000, 30009))
    assert jb.stats.resets == 1 and jb.stats.late == 0
    # a single stray packet far away does not disturb the stream
    jb.put(pkt(5))
    jb.put(pkt(30010))
    assert seqs([jb.pop(), jb.pop()]) == [30009, 30010]
    assert jb.stats.resets == 1 and jb.stats.discarded == 1


def test_interarrival_jitter():
    jb = JitterBuffer()
    for i in range(300):
        jb.put(pkt(i), arrival=100.0 + i * 0.020)
        jb.pop()
    assert jb.stats.jitter_ms == pytest.approx(0.0, abs=0.2)
    jb2 = JitterBuffer(target_depth=2)
    for i in range(300):
        jb2.put(pkt(i), arrival=100.0 + i * 0.020 + (0.005 if i % 2 else 0.0))
        jb2.pop()
    # |D| = 5 ms every packet -> J converges to 5 ms
    assert jb2.stats.jitter_ms == pytest.approx(5.0, abs=0.3)
    assert jb2.jitter_ms == jb2.stats.jitter_ms


def test_random_network_no_loss_with_enough_depth():
    rng = random.Random(42)
    n = 2000
    # arrival tick = send tick + random delay of 0..2 ticks (fractional)
    arrivals = sorted((i + rng.uniform(0, 2.0), i) for i in range(n))
    jb = JitterBuffer(target_depth=3, max_depth=20)
    out = []
    k = 0
    for tick in range(n + 10):
        while k < n and arrivals[k][0] <= tick:
            jb.put(pkt(arrivals[k][1]), arrival=arrivals[k][0] * 0.02)
            k += 1
        out.append(jb.pop())
    played = [s for s in seqs(out) if s is not None]
    assert played == sorted(played) == [i & 0xFFFF for i in range(n)]
    assert jb.stats.lost == 0 and jb.stats.late == 0
    assert jb.stats.max_depth_seen <= 6


def test_excess_latency_is_shed():
    jb = JitterBuffer(target_depth=1, shrink_after=25)
    # a burst leaves 6 extra packets in the buffer ...
    for i in range(6):
        jb.put(pkt(i))
    # ... then a steady stream: latency must come back to one packet
    depth = []
    for i in range(6, 400):
        jb.put(pkt(i))
        p = jb.pop()
        assert p is not None
        depth.append(jb.depth)
    assert depth[-1] == 0 and max(depth[-50:]) == 0
    assert jb.stats.discarded == 6


def test_stats_mapping_and_reset():
    jb = JitterBuffer()
    jb.put(pkt(1))
    assert jb.stats["received"] == 1 and jb.stats.as_dict()["depth"] == 1
    assert dict(jb.stats)["received"] == 1 and jb.stats.get("nope", 7) == 7
    with pytest.raises(KeyError):
        jb.stats["nope"]
    jb.reset()
    assert jb.depth == 0 and jb.pop() is None and jb.stats.received == 1
    with pytest.raises(ValueError):
        JitterBuffer(target_depth=0)
    with pytest.raises(ValueError):
        JitterBuffer(target_depth=5, max_depth=2)
