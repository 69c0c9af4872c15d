"""Agent batches (wire version 3) at the processor: the same figures as one batch per source, whatever mix of
versions an agent sends while it upgrades; one sequence number per message (duplicates, holes); a refused section
dead-lettered with its source, the others absorbed."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from edge_agent.outbox import sign
from ingest.batches import KeyRing, dead_letter_headers
from schemas.agent_batch import AgentBatch
from schemas.batch import ReadingBatch, decode_batch
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.kernels import HOUR_NS
from tests.fixtures import T0, final, offline_co2_kg, site, two_stacks

AGENT, KEY = "gw-plant", b"p" * 32
MESSAGES, _ = two_stacks()  # gw-a sends stack0, gw-b stack1: 5-s batches, seq k = seconds [5k, 5k + 5)


def intervals() -> list[tuple[ReadingBatch, ReadingBatch, int]]:
    """Per 5-s interval: stack0's and stack1's batches and the later of their send times [ms]."""
    by = {}
    for m in MESSAGES:
        b = decode_batch(m.value)
        by.setdefault(b.seq, {})[b.source_id] = (b, m.timestamp_ms)
    return [(v["stack0"][0], v["stack1"][0], max(v["stack0"][1], v["stack1"][1])) for _, v in sorted(by.items())]


def _message(offset: int, data: bytes, seq: int, sent_ms: int) -> Message:
    return Message(offset, data, {"cems-agent": AGENT.encode(), "cems-seq": str(seq).encode(),
                                  "cems-sig": sign(KEY, data)}, sent_ms)


def _single(b: ReadingBatch, seq: int) -> bytes:
    return ReadingBatch.from_columns(agent_id=AGENT, source_id=b.source_id, seq=seq, channels=b.channels,
                                     ts_ns=b.ts_ns, channel=b.channel, value=b.value, flag=b.flag).encode()


def _agent(sections: list[ReadingBatch], seq: int) -> bytes:
    return AgentBatch.from_sections(agent_id=AGENT, seq=seq, sections=[
        ReadingBatch.from_columns(agent_id=AGENT, source_id=b.source_id, seq=seq, channels=b.channels, ts_ns=b.ts_ns,
                                  channel=b.channel, value=b.value, flag=b.flag) for b in sections]).encode()


def stream(version_of) -> list[Message]:
    """One agent sending both stacks, interval by interval: ``version_of(k)`` 1 (a batch per source, two sequence
    numbers) or 3 (one agent batch, one number); the numbers continue across versions, as after an upgrade."""
    out, seq = [], 0
    for k, (b0, b1, sent_ms) in enumerate(intervals()):
        if version_of(k) == 1:
            for b in (b0, b1):
                out.append(_message(len(out), _single(b, seq), seq, sent_ms))
                seq += 1
        else:
            out.append(_message(len(out), _agent([b0, b1], seq), seq, sent_ms))
            seq += 1
    return out


def processor() -> PartitionProcessor:
    return PartitionProcessor(Registry([site()]), KeyRing(keys={AGENT: KEY}))


def figures(messages: list[Message], chunk: int = 150):
    p = processor()
    hourly, monthly, readings = [], {}, 0
    for i in range(0, len(messages), chunk):
        out = p.process(messages[i : i + chunk])
        assert not out.dead_letters and not out.holes, (out.dead_letters[:1], out.holes)
        hourly += out.hourly
        monthly |= {r.key: r for r in out.monthly}
        readings += out.readings
    return final(hourly), monthly, readings


def test_agent_batches_and_a_mixed_upgrade_give_the_figures_of_one_batch_per_source():
    v1, v1_monthly, n1 = figures(stream(lambda k: 1))
    v3, v3_monthly, n3 = figures(stream(lambda k: 3))
    # the upgrade: v1 for the first 700 intervals (~58 min), v3 after; then back and forth every interval
    mixed, mixed_monthly, nm = figures(stream(lambda k: 1 if k < 700 else 3))
    flapping, _, _ = figures(stream(lambda k: 1 + 2 * (k % 2)))
    assert n1 == n3 == nm == 2 * 3 * 3600 * 10  # 2 stacks x 3 h x 3600 s x 10 channels, each absorbed once
    assert v1.keys() == v3.keys() == mixed.keys() == flapping.keys() and len(v1) == 4  # 2 stacks x hours 0 and 1
    for k, r in v1.items():
        assert v3[k].content() == r.content() == mixed[k].content() == flapping[k].content()
    expected = offline_co2_kg()  # the kernels on all readings at once
    for (source, hour_ns), r in v1.items():
        assert r.co2_kg == expected[int(source[-1]), (hour_ns - T0) // HOUR_NS]  # bit for bit: exact sums
    assert {k: r.to_json() for k, r in v3_monthly.items()} == {k: r.to_json() for k, r in v1_monthly.items()} \
        == {k: r.to_json() for k, r in mixed_monthly.items()}


def test_one_sequence_number_per_agent_batch_duplicates_and_holes():
    msgs = stream(lambda k: 3)[:6]
    p = processor()
    out = p.process([msgs[0], msgs[1], msgs[1], msgs[4]])  # a repeat of seq 1; seq 2 and 3 missing
    assert out.duplicates == 1 and out.accepted == 3 and out.holes == {AGENT: [(2, 3)]}
    assert out.readings == 3 * 2 * 5 * 10  # three messages of 2 stacks x 5 s x 10 channels
    assert p.hole_open.tolist() == [True, True]  # both stacks' minutes stay open while the agent misses batches
    out = p.process([msgs[2], msgs[3]])
    assert out.holes == {AGENT: []} and p.hole_open.tolist() == [False, False]


def test_a_refused_section_is_dead_lettered_with_its_source_and_the_others_absorbed():
    b0, b1, sent_ms = intervals()[0]
    other = Registry([site().model_copy(update={"sources": site().sources[:1]})])  # stack1 unregistered
    p = PartitionProcessor(other, KeyRing(keys={AGENT: KEY}))
    m = _message(0, _agent([b0, b1], 0), 0, sent_ms)
    out = p.process([m])
    ((dead, rejection),) = out.dead_letters
    assert dead is m and rejection.reason == "unknown_source" and rejection.source_id == "stack1"
    assert rejection.detail.startswith("source 'stack1': ")
    assert out.readings == 5 * 10 and out.accepted == 1 and not out.holes  # stack0 absorbed, seq 0 recorded
    assert p.watermark[0] == b0.ts_ns.max()  # stack0's own newest reading
    # a refused section after the clean one, holding later readings: each keeps its own span
    late1 = intervals()[300][1]
    q = PartitionProcessor(other, KeyRing(keys={AGENT: KEY}))
    out = q.process([_message(0, _agent([b0, late1], 0), 0, intervals()[300][2])])
    assert [r.source_id for _, r in out.dead_letters] == ["stack1"] and out.readings == 5 * 10
    assert q.watermark[0] == b0.ts_ns.max() and q.closed_upto[0] == T0  # not stack1's 25 minutes later
    headers = dict(dead_letter_headers(rejection, topic="r", partition=0, offset=0, now_s=0.0))
    assert headers["cems-dlq-section"] == b"stack1" and headers["cems-dlq-reason"] == b"unknown_source"
    # every section refused: nothing recorded, as for a refused single batch (the gap report shows it)
    q = PartitionProcessor(other, KeyRing(keys={AGENT: KEY}))
    out = q.process([_message(0, _agent([b1], 0), 0, sent_ms), _message(1, _agent([b0], 1), 1, sent_ms)])
    assert [r.source_id for _, r in out.dead_letters] == ["stack1"] and out.holes == {AGENT: [(0, 0)]}


def test_a_bad_reading_refuses_the_whole_agent_batch():
    b0, b1, sent_ms = intervals()[0]
    data = bytearray(_agent([b0, b1], 0))
    n, meta_len = int.from_bytes(data[8:12], "little"), int.from_bytes(data[12:16], "little")
    data[24 + meta_len + 18 * n + 50 + 5] = 42  # a flag of stack1 (reading 5 of its 50, after stack0's 50)
    struct.pack_into("<I", data, len(data) - 4, zlib.crc32(memoryview(data)[:-4]))
    out = processor().process([_message(0, bytes(data), 0, sent_ms)])
    ((_, rejection),) = out.dead_letters
    assert rejection.reason == "undecodable" and rejection.source_id is None
    assert "section 1 ('stack1'): reading 5: flag code 42" in rejection.detail and out.readings == 0


def test_unusual_sections_take_the_exact_path_beside_clean_ones():
    msgs = stream(lambda k: 3)
    p = processor()
    for i in range(0, 200, 50):
        assert not p.process(msgs[i : i + 50]).dead_letters
    # seq 200: stack0's readings of interval 10 again (its minutes are folded by now) beside stack1's of interval 200
    old0, new1 = intervals()[10][0], intervals()[200][1]
    out = p.process([_message(200, _agent([old0, new1], 200), 200, intervals()[200][2])])
    assert [(r.reason, r.source_id) for _, r in out.dead_letters] == [("minute_closed", "stack0")]
    assert out.readings == 5 * 10 and out.accepted == 1 and not out.holes  # stack1 absorbed, seq 200 recorded


def test_a_section_in_another_unit_is_converted_as_a_single_batch_is():
    """Every agent batch carries stack0's CO2 in ppm (1 % = 10,000 ppm, SI-UNITS): the same figures as in %."""
    def ppm(b: ReadingBatch) -> ReadingBatch:
        co2 = b.channel == [c.id for c in b.channels].index("co2")
        chans = tuple(c._replace(unit="ppm") if c.id == "co2" else c for c in b.channels)
        return ReadingBatch.from_columns(agent_id=AGENT, source_id=b.source_id, seq=0, channels=chans, ts_ns=b.ts_ns,
                                         channel=b.channel, value=np.where(co2, b.value * 10_000, b.value), flag=b.flag)

    msgs = [_message(seq, _agent([ppm(b0), b1], seq), seq, sent_ms)
            for seq, (b0, b1, sent_ms) in enumerate(intervals())]
    got, _, _ = figures(msgs)
    reference, _, _ = figures(stream(lambda k: 1))
    assert got.keys() == reference.keys()
    for k, r in reference.items():  # x 10,000 then x 0.0001 in floating point: equal to within rounding
        assert got[k].co2_kg == pytest.approx(r.co2_kg, rel=1e-12) and got[k].readings == r.readings


def test_an_empty_agent_batch_fills_its_sequence_number():
    msgs = stream(lambda k: 3)[:3]
    b2 = intervals()[2]
    empty = _message(1, AgentBatch.from_sections(agent_id=AGENT, seq=1, sections=[]).encode(), 1, b2[2])
    p = processor()
    out = p.process([msgs[0], msgs[2]])  # seq 1 missing
    assert out.holes == {AGENT: [(1, 1)]}
    out = p.process([empty])  # e.g. a number taken and never filled, sent empty: the hole closes, nothing absorbed
    assert out.holes == {AGENT: []} and out.readings == 0 and out.accepted == 1 and not out.dead_letters
