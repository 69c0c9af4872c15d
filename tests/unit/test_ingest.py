"""Ingest checks without Kafka: signatures, decoding, header consistency, duplicates and holes."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest

import schemas.batch
from edge_agent.outbox import sign
from ingest.batches import REASONS, KeyRing, Rejection, check_message, check_messages, dead_letter_headers
from ingest.sequence import SeqTracker
from schemas import Flag, ReadingBatch
from schemas.batch import TS_MAX_NS, TS_MIN_NS

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
    newer = data[:4] + bytes([data[4] + 3]) + data[5:]  # version (uint16 LE after the magic) 1 -> 4 (2, 3 exist)
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


def old_missing(t: SeqTracker) -> int:
    """The original O(runs) formula of SeqTracker.missing."""
    return sum(start - end for (_, end), (start, _) in zip([[0, t.contiguous]] + t.runs, t.runs, strict=False))


def test_sequence_tracker_missing_is_maintained_exactly():
    rng = random.Random(17)
    for _trial in range(200):
        t = SeqTracker()
        top = rng.choice([5, 30, 300])
        for _ in range(rng.randrange(1, 400)):
            if rng.random() < 0.5:  # mostly in order, as agents send, with skips, repeats and late arrivals
                s = t.highest + rng.choice([1, 1, 1, 2, 5])
            else:
                s = rng.randrange(0, top)
            t.add(s)
            assert t.missing == old_missing(t)
            if rng.random() < 0.05:  # a restore from a snapshot, or a tracker built from its fields
                t = SeqTracker.from_dict(t.to_dict()) if rng.random() < 0.5 else SeqTracker(t.contiguous, t.runs)
                assert t.missing == old_missing(t)
    assert SeqTracker().missing == 0 and SeqTracker(3, [[5, 7], [9, 10]]).missing == 4


# --- check_messages: a chunk at once, the same results as one by one ---------------------------

KEYS = {"gw-1": KEY, "gw-2": b"b" * 32, "gw-3": b"c" * 32}


def random_batch(rng: np.random.Generator, agent: str, seq: int) -> bytes:
    nch = int(rng.integers(1, 9))
    n = 0 if rng.random() < 0.1 else int(rng.integers(1, 60))
    flag = rng.integers(0, len(Flag), n).astype(np.uint8)
    value = rng.normal(10.0, 5.0, n)
    value[(rng.random(n) < 0.1) & (flag != Flag.N)] = np.nan
    return ReadingBatch.from_columns(
        agent_id=agent, source_id=f"s{int(rng.integers(0, 3))}", seq=seq,
        channels=[(f"c{i}", "a05001", "%") for i in range(nch)],
        ts_ns=T0 + rng.integers(0, 3600, n) * 10**9, channel=rng.integers(0, nch, n), value=value, flag=flag).encode()


def break_reading(data: bytes, kind: str, i: int) -> bytes:
    """Break one per-reading rule in reading ``i`` of an encoded batch, with a valid CRC afterwards."""
    _, _, _, n, meta_len, _ = struct.unpack_from("<4sHHIIQ", data)
    at = 24 + meta_len
    buf = bytearray(data)
    if kind == "ts_low":
        struct.pack_into("<q", buf, at + 8 * i, TS_MIN_NS - 1)
    elif kind == "ts_high":
        struct.pack_into("<q", buf, at + 8 * i, TS_MAX_NS)
    elif kind == "channel":
        nch = struct.unpack_from("<H", buf, 24 + 2 + buf[24] + 2 + buf[24 + 2 + buf[24]])[0]
        struct.pack_into("<H", buf, at + 16 * n + 2 * i, nch)
    elif kind == "flag":
        buf[at + 18 * n + i] = 8
    elif kind == "inf":
        struct.pack_into("<d", buf, at + 8 * n + 8 * i, -np.inf)
    elif kind == "nan_n":
        struct.pack_into("<d", buf, at + 8 * n + 8 * i, np.nan)
        buf[at + 18 * n + i] = Flag.N
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


def chunk_of_messages(rng: np.random.Generator, size: int) -> list[tuple[bytes, dict[str, bytes]]]:
    out = []
    for k in range(size):
        agent = ["gw-1", "gw-2", "gw-3"][int(rng.integers(0, 3))]
        seq = int(rng.integers(0, 1000))
        data = random_batch(rng, agent, seq)
        n = struct.unpack_from("<I", data, 8)[0]
        head_agent, head_seq, key = agent, seq, KEYS[agent]
        case = rng.random()
        if case < 0.45:
            pass  # valid
        elif case < 0.75 and n:  # signed, framed, checksummed, but a reading breaks a rule (sometimes two)
            for _ in range(int(rng.integers(1, 3))):
                kind = ["ts_low", "ts_high", "channel", "flag", "inf", "nan_n"][int(rng.integers(0, 6))]
                data = break_reading(data, kind, int(rng.integers(0, n)))
            if rng.random() < 0.2:
                head_seq = seq + 1  # and the headers disagree: the column error comes first, as one by one
        elif case < 0.8:
            head_seq = seq + 1 if rng.random() < 0.5 else seq  # header_mismatch (seq, or agent below)
            head_agent = head_agent if head_seq != seq else ["gw-1", "gw-2", "gw-3"][(int(agent[-1])) % 3]
            key = KEYS[head_agent]
        elif case < 0.85:
            data = data[: int(rng.integers(0, len(data)))]  # truncated (or foreign), signed
        elif case < 0.88:
            data = data[:4] + bytes([4]) + data[5:]  # version 4 (unknown), signed
        elif case < 0.91:
            data = data[:-1] + bytes([data[-1] ^ 1])  # CRC broken, signed
        elif case < 0.95:
            key = b"x" * 32  # bad signature
        elif case < 0.97:
            head_agent = "gw-unknown"
        else:
            headers = {"cems-agent": agent.encode(), "cems-seq": b"7x"}
            out.append((data, headers))
            continue
        out.append((bytearray(data) if k % 17 == 0 else data,
                    {"cems-agent": head_agent.encode(), "cems-seq": str(head_seq).encode(),
                     "cems-sig": sign(key, data)}))
    return out


def same_result(a, b) -> bool:
    if isinstance(a, Rejection) or isinstance(b, Rejection):
        return a == b
    return type(a) is type(b) is ReadingBatch and a.equals(b) and a.version == b.version


@pytest.mark.parametrize("group", [50, 65_536])
def test_check_messages_is_check_message_of_each(group, monkeypatch):
    monkeypatch.setattr(schemas.batch, "_GROUP_READINGS", group)  # several groups of concatenated columns, or one
    rng = np.random.default_rng(group)
    keys = KeyRing(keys=KEYS)
    reasons = set()
    for size in (0, 1, 2, 7, 50, 300):
        items = chunk_of_messages(rng, size)
        expected = [check_message(v, h, keys) for v, h in items]
        got = check_messages(items, keys)
        assert len(got) == len(expected)
        for e, g in zip(expected, got, strict=True):
            assert same_result(e, g), (e, g)
        reasons |= {e.reason if isinstance(e, Rejection) else "ok" for e in expected}
        reasons |= {e.detail.split(":")[0] for e in expected if isinstance(e, Rejection) and e.reason == "undecodable"}
    assert reasons >= set(REASONS) | {"ok", "bad_timestamp", "bad_channel_index", "bad_flag", "bad_value",
                                      "truncated", "checksum"}


def test_check_messages_all_rejected_or_all_good():
    keys = KeyRing(keys=KEYS)
    good = [message(seq=s) for s in range(5)]
    assert all(same_result(a, b) for a, b in zip(check_messages(good, keys), [check_message(*m, keys) for m in good],
                                                 strict=True))
    bad = [(d, {}) for d, _ in good]
    assert check_messages(bad, keys) == [check_message(*m, keys) for m in bad]
