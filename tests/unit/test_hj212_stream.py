"""TCP stream splitting and split-message reassembly (HJ 212 PNUM/PNO)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.hj212 import (
    DataRecord,
    FrameSplitter,
    Hj212Error,
    Reassembler,
    Version,
    build_data_upload,
    build_frame,
    crc16_hex,
    parse_frame,
)
from schemas.quantities import Flag

MN = "010000A8900016F000169DC0"
T = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def small(i: int) -> bytes:
    return build_frame(st="31", cn="2011", pw="123456", mn=MN, qn=f"20260301160000{i:03d}", flag=4,
                       cp=f"DataTime=20260301160000;a21026-Rtd={i}")


FRAMES = [small(i) for i in range(5)]


def test_sticky_and_partial_frames():
    s = FrameSplitter()
    stream = b"".join(FRAMES)
    assert s.feed(stream[:10]) == []
    out = s.feed(stream[10:len(FRAMES[0]) + 3])
    assert out == [FRAMES[0]] and s.pending_bytes == 3
    assert s.feed(stream[len(FRAMES[0]) + 3:]) == FRAMES[1:]
    assert s.pending_bytes == 0 and s.garbage_bytes == 0 and s.frames == 5


def test_byte_at_a_time():
    s = FrameSplitter()
    out = [f for b in b"".join(FRAMES) for f in s.feed(bytes([b]))]
    assert out == FRAMES


def test_garbage_between_frames_is_discarded_and_counted():
    s = FrameSplitter()
    noise = b"AT+CSQ\r\nOK\r\n\x00\xff#"
    assert s.feed(noise + FRAMES[0] + noise + FRAMES[1]) == FRAMES[:2]
    assert s.garbage_bytes == 2 * len(noise)


def test_frame_without_trailer_ends_at_the_next_frame():
    s = FrameSplitter()
    assert s.feed(FRAMES[0][:-2] + FRAMES[1]) == [FRAMES[0][:-2], FRAMES[1]]


def test_miscounted_length_ends_at_crlf():
    bad = FRAMES[0][:2] + b"%04d" % (int(FRAMES[0][2:6]) + 7) + FRAMES[0][6:]
    s = FrameSplitter()
    assert s.feed(bad + FRAMES[1]) == [bad, FRAMES[1]]
    assert any("length field says" in n for n in parse_frame(bad).notes)  # lenient: the CRC proves it whole


def test_truncated_frame_followed_by_a_new_one_is_dropped():
    s = FrameSplitter()
    assert s.feed(FRAMES[0][:40] + FRAMES[1]) == [FRAMES[1]]
    assert s.dropped_frames == 1 and s.garbage_bytes == 40


def test_oversize_candidate_is_dropped_and_memory_stays_bounded():
    s = FrameSplitter(max_frame_bytes=200)
    assert s.feed(b"##9999" + b"x" * 500) == []
    assert s.dropped_frames == 1 and s.pending_bytes <= 200
    assert s.feed(FRAMES[0]) == [FRAMES[0]]
    # An endless stream without any frame never grows the buffer.
    s2 = FrameSplitter(max_frame_bytes=100)
    for _ in range(1000):
        s2.feed(b"##0050" + b"y" * 97)
        assert s2.pending_bytes <= 100 + 103
    with pytest.raises(ValueError):
        FrameSplitter(max_frame_bytes=5)


def test_reset_forgets_a_partial_frame():
    s = FrameSplitter()
    s.feed(FRAMES[0][:30])
    s.reset()
    assert s.pending_bytes == 0 and s.feed(FRAMES[1]) == [FRAMES[1]]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=8), st.data())
def test_any_chunking_and_garbage_yields_every_frame(order, data):
    frames = [FRAMES[i] for i in order]
    garbage = [data.draw(st.binary(max_size=12).filter(lambda b: b"#" not in b)) for _ in frames]
    stream = b"".join(g + f for g, f in zip(garbage, frames, strict=False))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    s = FrameSplitter()
    out, last = [], 0
    for c in [*cuts, len(stream)]:
        out += s.feed(stream[last:c])
        last = c
    assert out == frames and s.garbage_bytes == sum(map(len, garbage))


@settings(max_examples=200, deadline=2000)
@given(st.binary(max_size=3000), st.integers(12, 400))
def test_splitter_never_raises_and_stays_bounded(stream, limit):
    s = FrameSplitter(max_frame_bytes=limit)
    for i in range(0, len(stream), 97):
        for f in s.feed(stream[i:i + 97]):
            assert f.startswith(b"##") and len(f) <= limit
        assert s.pending_bytes <= limit + 97


# --- reassembly ---------------------------------------------------------------------------------------------------

def records(n: int) -> list[DataRecord]:
    return [DataRecord(f"a{21000 + i}", min=i + 0.5, avg=i + 1.25, max=i + 2.0, cou=10.0 * i, zs_avg=i + 1.5,
                       flag=Flag.N) for i in range(n)]


def split_frames(n: int = 12, limit: int = 300, qn: str = "20260301160000001"):
    raws = build_data_upload("2051", records(n), data_time=T, st="31", pw="123456", mn=MN, qn=qn,
                             max_segment_bytes=limit)
    return [parse_frame(r, strict=True) for r in raws]


def test_split_upload_reassembles_in_any_order_with_duplicates():
    parts = split_frames()
    assert len(parts) > 2 and all(p.pnum == len(parts) and p.flag == 7 for p in parts)  # 7 = 2017 + split + ack
    r = Reassembler()
    pushed = [parts[-1], parts[0], parts[0], *parts[1:-1][::-1]]
    out = [r.push(p, float(i)) for i, p in enumerate(pushed)]
    assert out[:-1] == [None] * (len(pushed) - 1) and r.duplicates == 1
    msg = out[-1]
    assert [p.pno for p in msg.parts] == list(range(1, len(parts) + 1))
    assert [x.code for x in msg.records] == [f"a{21000 + i}" for i in range(12)]
    assert msg.records[11].avg == 12.25 and r.pending == 0


def test_unsplit_frames_pass_straight_through():
    f = parse_frame(FRAMES[0])
    assert Reassembler().push(f, 0.0).parts == (f,)


def test_reassembly_limits():
    r = Reassembler(max_messages=2, timeout_s=10.0)
    a = split_frames(qn="20260301160000001")
    b = split_frames(qn="20260301160000002")
    c = split_frames(qn="20260301160000003")
    r.push(a[0], 0.0)
    r.push(b[0], 1.0)
    r.push(c[0], 2.0)  # a third incomplete message evicts the oldest (a)
    assert r.pending == 2 and r.evicted == 1
    assert r.expire(11.5) == [(MN, "31", "2051", "20260301160000002")]  # b is 10.5 s old, c 9.5 s
    assert r.pending == 1 and r.expired == 1
    for p in c[1:]:
        msg = r.push(p, 12.0)
    assert msg is not None and len(msg.records) == 12
    with pytest.raises(ValueError):
        Reassembler(max_messages=0)


def test_split_packet_without_qn_is_refused():
    seg = f"ST=31;CN=2051;PW=123456;MN={MN};PNUM=2;PNO=1;CP=&&DataTime=20160801085857;a21026-Avg=1&&"
    raw = b"##%04d%s%s\r\n" % (len(seg), seg.encode(), crc16_hex(seg.encode()).encode())
    f = parse_frame(raw)
    assert f.qn is None and f.pnum == 2
    with pytest.raises(Hj212Error) as e:
        Reassembler().push(f, 0.0)
    assert e.value.reason == "split"


def test_split_2025_flags():
    raws = build_data_upload("2061", records(12), data_time=T, st="31", pw="123456", mn=MN,
                             qn="20260301160000001", version=Version.HJ212_2025, max_segment_bytes=300)
    flags = {parse_frame(r, strict=True).flag for r in raws}
    assert flags == {11}  # 000010 1 1
