"""The same readings under a new sequence number, on the stream worker's path (streams/core/processor.py): refused as
``duplicate_readings`` while their minutes are still open (once folded they are ``minute_closed``), so the figures
count them once; a backlog drained in order keeps its numbers and is absorbed."""

from __future__ import annotations

from edge_agent.outbox import sign
from schemas import ReadingBatch, decode_batch
from streams.core.processor import Message
from tests.fixtures import KEYS, final, processor, run, two_stacks

MESSAGES, _ = two_stacks()
A = [m for m in MESSAGES if m.headers["cems-agent"] == b"gw-a"]  # stack0's 2,160 batches of 5 s, seq 0-2159


def renumbered(m: Message, seq: int, offset: int) -> Message:
    """The same readings as ``m`` under sequence number ``seq``, re-signed, produced when ``m`` was."""
    b = decode_batch(m.value)
    data = ReadingBatch.from_columns(agent_id=b.agent_id, source_id=b.source_id, seq=seq, channels=b.channels,
                                     ts_ns=b.ts_ns, channel=b.channel, value=b.value, flag=b.flag).encode()
    headers = {"cems-agent": b.agent_id.encode(), "cems-seq": str(seq).encode(),
               "cems-sig": sign(KEYS[b.agent_id], data)}
    return Message(offset, data, headers, m.timestamp_ms)


def test_a_replay_of_open_minutes_is_refused_and_the_hours_count_once():
    """Batches 0-899 (75 min), then batch 898 again as seq 900 (its minute 74 is still open: the fold lateness is
    120 s past the newest reading, 74:59), then the rest: the hours are those of the stream without the replay."""
    p = processor()
    records = run(p, A[:900])
    out = p.process([renumbered(A[898], 900, 10_000)])
    assert [(r.reason, r.detail.split(":")[0]) for _, r in out.dead_letters] == [("duplicate_readings",
                                                                                  "agent 'gw-a' seq 900")]
    assert out.readings == 0 and p.trackers["gw-a"].highest == 899  # nothing absorbed, the number not taken
    later = [Message(m.offset + 20_000, m.value, m.headers, m.timestamp_ms) for m in A[900:]]
    records += run(p, later)
    want = final(run(processor(), A))
    assert {k: r.content() for k, r in final(records).items()} == {k: r.content() for k, r in want.items()}


def test_a_replay_while_a_hole_keeps_the_minutes_open_is_refused():
    """Seq 100-199 missing keeps every later minute of stack0 open; batch 50's readings under seq 400 are refused
    (before, they were absorbed a second time: the hole keeps them from ``minute_closed``)."""
    p = processor()
    p.process(A[:100] + A[200:400])
    assert p.hole_open[0]
    out = p.process([renumbered(A[50], 400, 10_000)])
    assert [r.reason for _, r in out.dead_letters] == ["duplicate_readings"] and out.readings == 0


def test_a_backlog_drained_in_order_is_absorbed():
    """The hole's batches arriving late keep their own numbers (below the highest): merged, nothing refused."""
    p = processor()
    p.process(A[:100] + A[200:400])
    out = p.process(A[100:200])
    assert not out.dead_letters and out.readings == 100 * 5 * 10  # 100 batches x 5 s x 10 channels
