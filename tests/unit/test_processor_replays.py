"""Old readings under new sequence numbers on the stream worker's path (streams/core/processor.py): a back-fill of a
gap (HJ 212 history uploaded after a link outage: the receiver numbers it on arrival, after newer realtime data) is
absorbed; a replay of readings whose minutes are folded is ``minute_closed``. Why the stream has no rule for a replay
of still-open minutes: docs/bad-input.md, "Batches and `cems embedded`"."""

from __future__ import annotations

from edge_agent.outbox import sign
from schemas import ReadingBatch, decode_batch
from streams.core.processor import Message
from tests.fixtures import KEYS, final, processor, run, two_stacks

MESSAGES, _ = two_stacks()
A = [m for m in MESSAGES if m.headers["cems-agent"] == b"gw-a"]  # stack0's 2,160 batches of 5 s, seq 0-2159


def renumbered(m: Message, seq: int, offset: int, timestamp_ms: int | None = None) -> Message:
    """The same readings as ``m`` under sequence number ``seq``, re-signed."""
    b = decode_batch(m.value)
    data = ReadingBatch.from_columns(agent_id=b.agent_id, source_id=b.source_id, seq=seq, channels=b.channels,
                                     ts_ns=b.ts_ns, channel=b.channel, value=b.value, flag=b.flag).encode()
    headers = {"cems-agent": b.agent_id.encode(), "cems-seq": str(seq).encode(),
               "cems-sig": sign(KEYS[b.agent_id], data)}
    return Message(offset, data, headers, m.timestamp_ms if timestamp_ms is None else timestamp_ms)


def test_a_gap_back_filled_under_new_numbers_is_absorbed():
    """Readings of 0:20-0:25 (batches 240-299) withheld, the next 20 min sent on (numbered 240-479), then the
    withheld ones uploaded under 480-539, older than the newest reading: absorbed, and the hours equal the stream
    sent in order. A rule refusing new-numbered batches older than every channel's newest reading would refuse
    exactly these."""
    live = [renumbered(m, k, k) for k, m in enumerate(A[:240] + A[300:540])]
    sent_ms = live[-1].timestamp_ms + 1000
    backfill = [renumbered(m, 480 + k, 1000 + k, sent_ms) for k, m in enumerate(A[240:300])]
    rest = [renumbered(m, 540 + k, 2000 + k) for k, m in enumerate(A[540:])]
    p = processor()
    records = run(p, live) + run(p, backfill) + run(p, rest)
    want = final(run(processor(), A))
    assert {k: r.content() for k, r in final(records).items()} == {k: r.content() for k, r in want.items()}


def test_a_replay_of_folded_minutes_is_minute_closed():
    p = processor()
    run(p, A[:900])  # 75 min; minute 10 is long folded (the fold lateness is 120 s)
    out = p.process([renumbered(A[120], 900, 10_000)])
    assert [r.reason for _, r in out.dead_letters] == ["minute_closed"] and out.readings == 0
