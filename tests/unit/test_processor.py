"""The stream worker's core without Kafka: records equal the offline kernels, whatever the chunking,
duplicates, crash-and-replay from a snapshot or late arrival; bad batches are dead-lettered with reasons."""

from __future__ import annotations

import random

import pytest

from edge_agent.outbox import sign
from edge_agent.simulator.generate import CHANNELS
from ingest.batches import KeyRing
from schemas import ReadingBatch
from schemas.records import GapReport
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.kernels import HOUR_NS
from tests.fixtures import KEYS, T0, final, offline_co2_kg, processor, run, site, two_stacks

MESSAGES, _ = two_stacks()


def test_undisturbed_stream_publishes_closed_hours_equal_to_offline_kernels():
    records = run(processor(), MESSAGES)
    # hours 0 and 1 close once the stream is 10 min past their end; hour 2 is still open at the end of the data
    assert sorted((r.source_id, (r.hour_start_ns - T0) // HOUR_NS, r.revision, r.reason) for r in records) == [
        ("stack0", 0, 0, "closed"), ("stack0", 1, 0, "closed"), ("stack1", 0, 0, "closed"), ("stack1", 1, 0, "closed")]
    expected = offline_co2_kg()
    for r in records:
        k, h = int(r.source_id[-1]), (r.hour_start_ns - T0) // HOUR_NS
        assert r.co2_kg == expected[k, h]  # bit for bit: exact integer sums, same closing
        assert r.readings == 3600 * len(CHANNELS)  # every second of the hour, every channel
        assert r.operating and r.entity_id == "plant"
    assert all(r.measured for r in records)  # 14 calibration minutes leave 46 valid minutes: still valid (>= 45)


def test_duplicates_chunking_and_crash_replay_change_nothing():
    rng = random.Random(7)
    reference = final(run(processor(), MESSAGES))
    # 300 redelivered batches, each a little after its original in the log
    copies = [(i + rng.randrange(1, 50) + 0.5, MESSAGES[i]) for i in rng.sample(range(len(MESSAGES)), 300)]
    disturbed = [m for _, m in sorted([(float(i), m) for i, m in enumerate(MESSAGES)] + copies, key=lambda x: x[0])]
    disturbed = [Message(i, m.value, m.headers, m.timestamp_ms) for i, m in enumerate(disturbed)]

    records, monthly, p, saved = [], [], processor(), {}
    pos = 0
    while pos < len(disturbed):
        if saved and rng.random() < 0.05:  # SIGKILL: lose the process, restore the saved segments
            p = processor()
            p.restore(saved)
            pos = p.next_offset  # the consumer seeks to the state's offset and replays
        n = rng.randrange(1, 400)
        out = p.process(disturbed[pos : pos + n])
        assert not out.dead_letters
        records += out.hourly
        monthly += out.monthly
        pos += n
        if rng.random() < 0.3:  # a checkpoint writes the segments that changed over the saved ones
            saved = {name: data for name, data in (saved | p.checkpoint()).items() if data is not None}
    got = final(records)
    assert got.keys() == reference.keys()
    assert all(got[k].content() == reference[k].content() and got[k].revision == 0 for k in got)
    undisturbed = processor()
    undisturbed.process(MESSAGES)
    assert {r.key: r for r in monthly} == {r.key: r for months in undisturbed.monthly.published.values()
                                            for r in months.values()}


def test_late_data_revises_the_hour():
    # agent b is cut off for all of hour 1; its batches arrive after everything else (an outage drained later)
    def late(m):
        return m.headers["cems-agent"] == b"gw-b" and T0 + HOUR_NS <= _first_ts(m) < T0 + 2 * HOUR_NS

    on_time = [m for m in MESSAGES if not late(m)]
    delayed = [m for m in MESSAGES if late(m)]
    outage = [Message(i, m.value, m.headers, m.timestamp_ms if i < len(on_time) else MESSAGES[-1].timestamp_ms + 1000)
              for i, m in enumerate(on_time + delayed)]
    records = run(processor(), outage)
    stack1_h1 = [r for r in records if r.source_id == "stack1" and r.hour_start_ns == T0 + HOUR_NS]
    first, *revisions = stack1_h1
    # closed on the event time of stack 1's own hour-2 readings, with nothing received: missing, not stopped
    assert (first.revision, first.reason, first.readings, first.missing, first.operating) == (
        0, "closed", 0, True, True)
    # 720 batches, 4 chunks
    assert [(r.revision, r.reason) for r in revisions] == [(i, "late_data") for i in range(1, 5)]
    assert revisions[-1].co2_kg == offline_co2_kg()[1, 1] and revisions[-1].readings == 3600 * len(CHANNELS)
    reference = final(run(processor(), MESSAGES))
    assert {k: r.content() for k, r in final(records).items()} == {k: r.content() for k, r in reference.items()}


def _first_ts(m: Message) -> int:
    from schemas import decode_batch

    return int(decode_batch(m.value).ts_ns.min())


def test_sequence_holes_are_reported_when_they_open_and_close():
    p = processor()
    a = [m for m in MESSAGES if m.headers["cems-agent"] == b"gw-a"][:6]
    out = p.process([a[0], a[1], a[4]])  # seq 2 and 3 missing
    assert out.holes == {"gw-a": [(2, 3)]}
    (gap,) = out.gaps
    assert (gap.agent_id, gap.holes, gap.missing, gap.highest_seq, gap.as_of_ns) == (
        "gw-a", [(2, 3)], 2, 4, a[4].timestamp_ms * 1_000_000)
    assert GapReport.from_json(gap.to_json()) == gap
    assert p.process([a[5]]).holes == {}  # nothing changed
    out = p.process([a[2], a[3]])
    assert out.holes == {"gw-a": []} and (out.gaps[0].missing, out.gaps[0].highest_seq) == (0, 5)  # complete again


def test_bad_batches_are_dead_lettered_with_reasons():
    p = processor(revision_horizon_s=3600)
    good = MESSAGES[:4]
    forged_headers = good[0].headers | {"cems-sig": sign(b"x" * 32, good[0].value)}
    forged = Message(10, good[0].value, forged_headers, good[0].timestamp_ms)
    # stamped 1 h before its readings
    future = Message(11, good[1].value, good[1].headers, good[1].timestamp_ms - 3_600_000)
    out = p.process([forged, future, *good, good[0]])
    assert [(m.offset, r.reason) for m, r in out.dead_letters] == [(10, "bad_signature"), (11, "future_timestamp")]
    assert out.accepted == 4 and out.duplicates == 1
    p.process(MESSAGES[4:2000])  # about 1.4 h of stream: hour 0 falls behind the 1-hour horizon
    out = p.process([Message(99_999, *_resent(MESSAGES[0], seq=9_999))])
    assert [r.reason for _, r in out.dead_letters] == ["too_late"]

    other = Registry([site().model_copy(update={"sources": site().sources[:1]})])  # stack1 unregistered
    q = PartitionProcessor(other, KeyRing(keys=KEYS))
    b_msg = next(m for m in MESSAGES if m.headers["cems-agent"] == b"gw-b")
    assert [r.reason for _, r in q.process([b_msg]).dead_letters] == ["unknown_source"]


def _resent(m: Message, seq: int):
    """The same readings under a new sequence number (a replayed file), re-signed."""
    from schemas import decode_batch

    b = decode_batch(m.value)
    data = ReadingBatch.from_columns(agent_id=b.agent_id, source_id=b.source_id, seq=seq, channels=b.channels,
                                     ts_ns=b.ts_ns, channel=b.channel, value=b.value, flag=b.flag).encode()
    agent = b.agent_id
    return data, {"cems-agent": agent.encode(), "cems-seq": str(seq).encode(), "cems-sig": sign(KEYS[agent], data)}, \
        m.timestamp_ms + 10**7


@pytest.mark.parametrize("policy", ["eu-mrr", "us-part75"])
def test_other_policies_run_through_the_processor(policy):
    records = run(processor(policy=policy), MESSAGES[:2000])  # 5000 s: hour 0 is due
    assert records and all(r.policy == policy for r in records)


def test_state_keeps_hour_cells_and_only_the_last_minutes_open():
    p = processor()
    run(p, MESSAGES)
    # 2 stacks x 10 channels; the stream ends at 3 h: minutes within the 120-s fold lateness (plus the one in
    # progress) stay open, every other minute is folded into its hour cell
    assert len(p.minutes) <= 2 * len(CHANNELS) * 3
    assert {h: len(acc) for h, acc in p.hours.items()} == {T0 + k * HOUR_NS: 2 * len(CHANNELS) for k in range(3)}
    again = processor()
    again.restore(p.snapshot())
    assert again.minutes.equals(p.minutes) and all(again.hours[h].equals(p.hours[h]) for h in p.hours)


def test_readings_for_a_folded_minute_are_dead_lettered_not_double_counted():
    p = processor()
    run(p, MESSAGES)
    replay = Message(99_999, *_resent(MESSAGES[100], seq=99_999))  # old readings under a new number
    out = p.process([replay])
    assert [r.reason for _, r in out.dead_letters] == ["minute_closed"]
    assert out.hourly == [] and p.trackers["gw-a"].missing == 0  # nothing counted, no hole opened


def test_a_sequence_hole_keeps_the_minutes_open_until_it_closes():
    a = [m for m in MESSAGES if m.headers["cems-agent"] == b"gw-a"]
    p = processor()
    p.process(a[:100] + a[200:400])  # seq 100-199 (minutes 8-16) missing: later minutes stay open
    assert p.hole_open[0] and len(p.minutes) > len(CHANNELS) * 20
    out = p.process(a[100:200])  # the hole closes: everything merges, nothing is refused, then it folds
    assert not out.dead_letters and not p.hole_open[0] and len(p.minutes) <= len(CHANNELS) * 3


def test_a_checkpoint_writes_what_changed_and_drops_hours_past_the_horizon():
    p = processor(revision_horizon_s=1800)  # hours leave the state half an hour after their end
    first = p.checkpoint()
    assert set(first) == {"core"}  # nothing yet but the core; the monthly rollup has no hours
    for i in range(0, len(MESSAGES), 200):
        p.process(MESSAGES[i : i + 200])
        if _first_ts(MESSAGES[i]) < T0 + HOUR_NS + 10 * 60 * 10**9:
            p.checkpoint()
    # saved at 1:10: hour 0 (published, folded) and hour 1 (folding). The stream ends at 3:00: hours whose end
    # is more than 30 min behind the partition clock are gone (0 and 1: dropped), hour 2 is new
    late = p.checkpoint()
    hours = {name for name in late if name.startswith("hour:")}
    assert hours == {f"hour:{T0}", f"hour:{T0 + HOUR_NS}", f"hour:{T0 + 2 * HOUR_NS}"}
    assert late[f"hour:{T0}"] is None and late[f"hour:{T0 + HOUR_NS}"] is None
    assert late[f"hour:{T0 + 2 * HOUR_NS}"] is not None
    # the indicators' kept minutes and day partials (streams/core/findings.py) are segments of their own
    findings = {name for name in late if name.startswith(("fmin:", "fpart:"))}
    assert f"fpart:{T0 + 2 * HOUR_NS}" not in findings and f"fpart:{T0 + HOUR_NS}" in findings  # hour 2 is open
    assert set(late) - hours - findings == {"core", "monthly", f"mday:{T0 // (24 * HOUR_NS)}"}
    again = p.checkpoint()  # nothing happened since: only the core
    assert set(again) == {"core"}
