"""Ingest checks without Kafka: signatures, decoding, header consistency, duplicates and holes."""

from __future__ import annotations

import random

import pytest

from edge_agent.outbox import sign
from ingest.batches import REASONS, KeyRing, Rejection, check_message, dead_letter_headers
from ingest.sequence import SeqTracker
from schemas import ReadingBatch

KEY = b"a" * 32
T0 = 1_767_225_600 * 10**9


def message(agent="gw-1", seq=7, key=KEY, batch_agent=None, batch_seq=None):
    data = ReadingBatch.from_columns(agent_id=batch_agent or agent, source_id="kiln1",
                                     seq=seq if batch_seq is None else batch_seq, channels=[("co2", "a05001", "%")],
                                     ts_ns=[T0, T0 + 10**9], channel=[0, 0], value=[12.5, 12.75], flag=[0, 0]).encode()
    return data, {"cems-agent": agent.encode(), "cems-seq": str(seq).encode(), "cems-sig": sign(key, data)}


def test_a_good_batch_decodes():
    data, headers = message()
    batch = check_message(data, headers, KeyRing(keys={"gw-1": KEY}))
    assert isinstance(batch, ReadingBatch) and (batch.agent_id, batch.seq) == ("gw-1", 7)
    assert batch.value.tolist() == [12.5, 12.75]


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda d, h: (d, {k: v for k, v in h.items() if k != "cems-sig"}), "missing_header"),
    (lambda d, h: (d, h | {"cems-seq": b"seven"}), "missing_header"),
    (lambda d, h: (d, h | {"cems-agent": b"gw-2"}), "unknown_agent"),
    (lambda d, h: (d[:-1] + bytes([d[-1] ^ 1]), h), "bad_signature"),  # one bit of the payload flipped
    (lambda d, h: (d, h | {"cems-sig": sign(b"b" * 32, d)}), "bad_signature"),  # signed with another key
])
def test_rejections_name_their_reason(mutate, reason):
    data, headers = mutate(*message())
    result = check_message(data, headers, KeyRing(keys={"gw-1": KEY}))
    assert isinstance(result, Rejection) and result.reason == reason and reason in REASONS


def test_signed_but_undecodable_or_inconsistent():
    keys = KeyRing(keys={"gw-1": KEY})
    data, headers = message()
    truncated = data[:-3]
    assert check_message(truncated, headers | {"cems-sig": sign(KEY, truncated)}, keys).reason == "undecodable"
    newer = data[:4] + bytes([data[4] + 1]) + data[5:]  # version (uint16 LE after the magic) 1 -> 2
    assert check_message(newer, headers | {"cems-sig": sign(KEY, newer)}, keys).reason == "unsupported_version"
    assert check_message(*message(batch_seq=8), keys).reason == "header_mismatch"
    assert check_message(*message(batch_agent="gw-9"), keys).reason == "header_mismatch"


def test_key_directory_is_reread_for_a_new_agent(tmp_path):
    ring = KeyRing(tmp_path)
    data, headers = message(agent="gw-new")
    assert check_message(data, headers, ring).reason == "unknown_agent"
    (tmp_path / "gw-new.key").write_bytes(KEY)  # enrolment: drop the key file
    assert isinstance(check_message(data, headers, ring), ReadingBatch)


def test_dead_letter_headers():
    h = dict(dead_letter_headers(Rejection("bad_signature", "x"), topic="cems.readings.v1", partition=3, offset=42,
                                 now_s=1.5))
    assert h == {"cems-dlq-reason": b"bad_signature", "cems-dlq-detail": b"x",
                 "cems-dlq-source": b"cems.readings.v1/3/42", "cems-dlq-at": b"1.500"}


def test_sequence_tracker_duplicates_and_holes():
    t = SeqTracker()
    assert [t.add(s) for s in (0, 1, 2, 1, 5, 6, 9, 5)] == [True, True, True, False, True, True, True, False]
    assert t.contiguous == 3 and t.holes() == [(3, 4), (7, 8)] and t.missing == 4
    for s in (3, 4, 8, 7):
        assert t.add(s)
    assert t.contiguous == 10 and t.runs == [] and t.missing == 0
    assert SeqTracker.from_dict(t.to_dict()) == t


def test_sequence_tracker_state_stays_small_behind_a_permanent_hole():
    t = SeqTracker()
    t.add(0)
    for s in range(2, 100_000):  # seq 1 never arrives
        t.add(s)
    assert t.holes() == [(1, 1)] and t.runs == [[2, 100_000]] and t.missing == 1


def test_sequence_tracker_matches_a_set_under_random_arrival():
    rng = random.Random(3)
    seqs = [rng.randrange(0, 300) for _ in range(2000)]
    t, seen = SeqTracker(), set()
    for s in seqs:
        assert t.add(s) == (s not in seen)
        seen.add(s)
        assert all(t.seen(x) == (x in seen) for x in (s - 1, s, s + 1) if x >= 0)
    top = max(seen)
    assert t.missing == top + 1 - len(seen)
    assert sum(b - a + 1 for a, b in t.holes(limit=10_000)) == t.missing
