"""The reading-batch wire format (schemas/batch.py): layout, round trips, and hostile input."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import schemas.batch
from schemas import (
    BatchDecodeError,
    BatchError,
    ChannelSpec,
    Flag,
    ReadingBatch,
    UnsupportedSchemaVersion,
)
from schemas.batch import (
    TS_MAX_NS,
    TS_MIN_NS,
    _check_columns,
    check_batch_columns,
    check_column_segments,
    decode_batch,
    encode_batch,
    peek_header,
)

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z in ns


def small_batch(**over) -> ReadingBatch:
    cols = {
        "agent_id": "gw-01",
        "source_id": "kiln1",
        "seq": 42,
        "channels": [("co2", "a05001", "%"), ("o2", "a19001", "%")],
        "ts_ns": [T0, T0, T0 + 5 * 10**9],
        "channel": [0, 1, 0],
        "value": [12.5, 8.25, float("nan")],
        "flag": [Flag.N, Flag.C, Flag.B],
    }
    cols.update(over)
    return ReadingBatch.from_columns(**cols)


def refresh_crc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


# --- the documented layout, built by hand -------------------------------------------------------


def test_encoding_matches_the_documented_layout_byte_for_byte():
    # Fixed header: magic, version 1, reserved 0, n = 3, meta_len, seq = 42.
    meta = (
        struct.pack("<H", 5) + b"gw-01" + struct.pack("<H", 5) + b"kiln1" + struct.pack("<H", 2)
        + b"\x03co2" + b"\x06a05001" + b"\x01%"
        + b"\x02o2" + b"\x06a19001" + b"\x01%"
    )
    # ids 2+5 + 2+5, channel count 2, channels (1+3 + 1+6 + 1+1) + (1+2 + 1+6 + 1+1) = 16 + 13 + 12 = 41.
    # 24 header bytes + 41 = 65, so 7 zero bytes pad the first column to offset 72.
    assert len(meta) == 41
    meta += bytes(7)
    expected = struct.pack("<4sHHIIQ", b"CEMB", 1, 0, 3, len(meta), 42) + meta
    expected += struct.pack("<3q", T0, T0, T0 + 5 * 10**9)
    expected += struct.pack("<3d", 12.5, 8.25, float("nan"))
    expected += struct.pack("<3H", 0, 1, 0)
    expected += bytes([0, 5, 7])  # N, C, B (HJ 212-2017 Table 8 order)
    expected += struct.pack("<I", zlib.crc32(expected))

    assert encode_batch(small_batch()) == expected
    assert len(expected) == 24 + 48 + 3 * 19 + 4


def test_round_trip_keeps_everything_and_returns_read_only_columns():
    b = small_batch()
    d = decode_batch(b.encode())
    assert d.equals(b)
    assert (d.agent_id, d.source_id, d.seq, d.version) == ("gw-01", "kiln1", 42, 1)
    assert d.channels[1] == ChannelSpec("o2", "a19001", "%")
    assert d.timestamps[2] == np.datetime64("2026-01-01T00:00:05", "ns")
    for col in (d.ts_ns, d.channel, d.value, d.flag):
        assert not col.flags.writeable
    assert d.ts_ns.dtype == np.int64 and d.channel.dtype == np.uint16
    assert d.value.dtype == np.float64 and d.flag.dtype == np.uint8


def test_batch_owns_its_columns():
    ts = np.array([T0], dtype=np.int64)
    b = ReadingBatch.from_columns(
        agent_id="a", source_id="s", seq=0, channels=[("x", "a19001", "%")], ts_ns=ts, channel=[0], value=[1.0],
        flag=[0],
    )
    ts[0] = 0
    assert b.ts_ns[0] == T0


def test_empty_batch_round_trips():
    b = small_batch(channels=[], ts_ns=[], channel=[], value=[], flag=[])
    assert len(decode_batch(b.encode())) == 0


def test_peek_header_reads_version_and_seq_only():
    assert peek_header(small_batch(seq=2**64 - 1).encode()) == (1, 2**64 - 1)


# --- property-based round trips -----------------------------------------------------------------

printable = st.characters(codec="utf-8", categories=("L", "N", "P", "S"))


@st.composite
def batches(draw):
    nch = draw(st.integers(1, 6))
    chan_ids = draw(st.lists(st.text(printable, min_size=1, max_size=16), min_size=nch, max_size=nch, unique=True))
    channels = [
        (cid, draw(st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)),
         draw(st.text(printable, min_size=1, max_size=8)))
        for cid in chan_ids
    ]
    n = draw(st.integers(0, 200))
    ts = draw(hnp.arrays(np.int64, n, elements=st.integers(TS_MIN_NS, TS_MAX_NS - 1)))
    ch = draw(hnp.arrays(np.uint16, n, elements=st.integers(0, nch - 1)))
    flag = draw(hnp.arrays(np.uint8, n, elements=st.sampled_from([f.value for f in Flag])))
    value = draw(hnp.arrays(np.float64, n, elements=st.floats(allow_infinity=False, allow_nan=True, width=64)))
    value[np.isnan(value) & (flag == Flag.N)] = 0.0
    return ReadingBatch.from_columns(
        agent_id=draw(st.text(printable, min_size=1, max_size=32)),
        source_id=draw(st.text(printable, min_size=1, max_size=32)),
        seq=draw(st.integers(0, 2**64 - 1)),
        channels=channels,
        ts_ns=ts,
        channel=ch,
        value=value,
        flag=flag,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_round_trip_is_exact(b):
    raw = encode_batch(b)
    d = decode_batch(raw)
    assert d.equals(b)
    assert encode_batch(d) == raw  # the encoding is canonical


# --- hostile input: one exception type, never a partial result ----------------------------------


def test_every_truncation_is_rejected():
    raw = small_batch().encode()
    for cut in range(len(raw)):
        with pytest.raises(BatchDecodeError) as exc:
            decode_batch(raw[:cut])
        assert exc.value.reason == "truncated"


def test_short_foreign_payload_is_called_foreign_not_truncated():
    with pytest.raises(BatchDecodeError, match="bad_magic"):
        decode_batch(b'{"not": "a batch"}')


def test_trailing_bytes_are_rejected():
    with pytest.raises(BatchDecodeError, match="trailing_bytes"):
        decode_batch(small_batch().encode() + b"\x00")


def test_every_single_byte_corruption_is_detected():
    raw = small_batch().encode()
    for pos in range(len(raw)):
        for xor in (0x01, 0x80, 0xFF):
            buf = bytearray(raw)
            buf[pos] ^= xor
            with pytest.raises(BatchDecodeError):
                decode_batch(bytes(buf))


def test_mutations_with_a_valid_checksum_decode_cleanly_or_raise_batch_decode_error():
    """Fuzz the parser behind the checksum: it must never crash with another exception."""
    rng = random.Random(20261123)
    seeds = [small_batch().encode(), small_batch(channels=[], ts_ns=[], channel=[], value=[], flag=[]).encode()]
    outcomes = {"ok": 0, "rejected": 0}
    for _ in range(20_000):
        buf = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(buf) - 4)
            if op < 0.6:
                buf[pos] = rng.randrange(256)
            elif op < 0.8:
                del buf[pos]
            else:
                buf.insert(pos, rng.randrange(256))
        data = refresh_crc(buf)
        try:
            d = decode_batch(data)
        except BatchDecodeError:
            outcomes["rejected"] += 1
        else:
            outcomes["ok"] += 1
            assert encode_batch(d) == data  # anything accepted is a canonical, valid batch
    assert outcomes["rejected"] > 10_000


@pytest.mark.parametrize("junk", [b"", b"CEMB", b"\x00" * 100, b"hello world" * 10, bytes(range(256))])
def test_garbage_is_rejected(junk):
    with pytest.raises(BatchDecodeError):
        decode_batch(junk)


def test_non_bytes_input_is_rejected():
    with pytest.raises(BatchDecodeError, match="bad_input"):
        decode_batch(12345)


def test_unknown_version_is_its_own_error():
    buf = bytearray(small_batch().encode())
    struct.pack_into("<H", buf, 4, 3)  # version 2 (period data) exists since issue 16
    with pytest.raises(UnsupportedSchemaVersion) as exc:
        decode_batch(refresh_crc(buf))
    assert exc.value.version == 3 and exc.value.reason == "unsupported_version"


def test_bad_magic():
    buf = bytearray(small_batch().encode())
    buf[:4] = b"JSON"
    with pytest.raises(BatchDecodeError, match="bad_magic"):
        decode_batch(refresh_crc(buf))


def test_non_utf8_metadata_is_rejected_even_with_a_valid_checksum():
    buf = bytearray(small_batch().encode())
    buf[26] = 0xFF  # first byte of agent_id
    with pytest.raises(BatchDecodeError, match=r"bad_metadata.*UTF-8"):
        decode_batch(refresh_crc(buf))


def test_column_rules_apply_on_decode_too():
    buf = bytearray(small_batch().encode())
    flag_at = len(buf) - 4 - 3
    buf[flag_at] = 9
    with pytest.raises(BatchDecodeError, match="bad_flag"):
        decode_batch(refresh_crc(buf))


# --- the contract on construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"channel": [0, 2, 0]}, "bad_channel_index"),
        ({"flag": [0, 0, 8]}, "bad_flag"),
        ({"flag": [0, 5, 0]}, "bad_value"),  # NaN with flag N
        ({"value": [1.0, float("inf"), 2.0]}, "bad_value"),
        ({"ts_ns": [1_767_225_600, T0, T0]}, "bad_timestamp"),  # seconds, not ns
        ({"ts_ns": [1_767_225_600_000, T0, T0]}, "bad_timestamp"),  # milliseconds
        ({"channel": [0, -1, 0]}, "bad_column"),
        ({"flag": [0.0, 5.0, 7.0]}, "bad_column"),
        ({"value": ["a", "b", "c"]}, "bad_column"),
        ({"ts_ns": [[T0], [T0], [T0]]}, "bad_column"),
        ({"value": [1.0, 2.0]}, "bad_column"),
        ({"channels": [("co2", "a05001", "%"), ("co2", "a19001", "%")]}, "bad_metadata"),
        ({"channels": [("co2", "a05 001", "%"), ("o2", "a19001", "%")]}, "bad_metadata"),
        ({"channels": [("co2", "a05001"), ("o2", "a19001", "%")]}, "bad_metadata"),
        ({"channels": ["abc", ("o2", "a19001", "%")]}, "bad_metadata"),
        ({"agent_id": ""}, "bad_metadata"),
        ({"agent_id": "gw\n01"}, "bad_metadata"),
        ({"source_id": "x" * 129}, "bad_metadata"),
        ({"seq": -1}, "bad_metadata"),
        ({"seq": 2**64}, "bad_metadata"),
        ({"seq": True}, "bad_metadata"),
    ],
)
def test_contract_violations_name_the_rule(over, reason):
    with pytest.raises(BatchError) as exc:
        small_batch(**over)
    assert exc.value.reason == reason


def test_error_points_at_the_offending_reading():
    with pytest.raises(BatchError, match="reading 2: channel index 5"):
        small_batch(channel=[0, 1, 5])


def test_a_million_readings_round_trip():
    n = 1_000_000
    rng = np.random.default_rng(7)
    b = ReadingBatch.from_columns(
        agent_id="gw",
        source_id="s",
        seq=1,
        channels=[(f"c{i}", "a05001", "%") for i in range(8)],
        ts_ns=T0 + np.arange(n, dtype=np.int64) * 10**9,
        channel=rng.integers(0, 8, n),
        value=rng.normal(10.0, 1.0, n),
        flag=np.zeros(n, np.uint8),
    )
    raw = b.encode()
    assert len(raw) == 24 + 112 + 19 * n + 4  # metadata: 2+2 + 2+1 + 2 + 8 x (3+7+2) = 105, padded to 112
    assert decode_batch(raw).equals(b)


# --- the column rules of many batches at once ---------------------------------------------------

#: One way to break each rule of _check_columns, applied to reading i of a segment with nch channels.
BREAKERS = {
    "ts_low": lambda c, i, nch: c["ts"].__setitem__(i, TS_MIN_NS - 1),
    "ts_high": lambda c, i, nch: c["ts"].__setitem__(i, TS_MAX_NS),
    "ts_seconds": lambda c, i, nch: c["ts"].__setitem__(i, 1_767_225_600),
    "ts_negative": lambda c, i, nch: c["ts"].__setitem__(i, np.iinfo(np.int64).min),
    "channel_eq": lambda c, i, nch: c["ch"].__setitem__(i, nch),
    "channel_max": lambda c, i, nch: c["ch"].__setitem__(i, 65535),
    "flag_8": lambda c, i, nch: c["flag"].__setitem__(i, 8),
    "flag_255": lambda c, i, nch: c["flag"].__setitem__(i, 255),
    "inf": lambda c, i, nch: c["value"].__setitem__(i, np.inf),
    "minus_inf_flag_b": lambda c, i, nch: (c["value"].__setitem__(i, -np.inf), c["flag"].__setitem__(i, Flag.B)),
    "nan_flag_n": lambda c, i, nch: (c["value"].__setitem__(i, np.nan), c["flag"].__setitem__(i, Flag.N)),
}


def random_segment(rng: np.random.Generator, nch: int, n: int) -> dict[str, np.ndarray]:
    """Valid columns, edges included (first and last valid timestamp, the top channel index, NaN with a flag)."""
    ts = rng.integers(TS_MIN_NS, TS_MAX_NS, n, dtype=np.int64)
    ts[rng.random(n) < 0.05] = TS_MIN_NS
    ts[rng.random(n) < 0.05] = TS_MAX_NS - 1
    flag = rng.integers(0, len(Flag), n).astype(np.uint8)
    value = rng.normal(10.0, 5.0, n)
    value[(rng.random(n) < 0.1) & (flag != Flag.N)] = np.nan
    return {"ts": ts, "ch": rng.integers(0, max(nch, 1), n).astype(np.uint16), "value": value, "flag": flag}


def test_check_column_segments_is_check_columns_of_each_segment():
    rng = np.random.default_rng(11)
    for _ in range(60):
        segs, nchs = [], []
        for _ in range(int(rng.integers(0, 40))):
            nch = int(rng.integers(0, 5))
            n = 0 if rng.random() < 0.15 else int(rng.integers(1, 60))  # nch 0 and n > 0: every channel breaks
            cols = random_segment(rng, nch, n)
            if n and rng.random() < 0.4:  # one to three broken readings, of any kinds
                for _ in range(int(rng.integers(1, 4))):
                    BREAKERS[rng.choice(list(BREAKERS))](cols, int(rng.integers(0, n)), nch)
            segs.append(cols)
            nchs.append(nch)
        expected = []
        for k, (c, nch) in enumerate(zip(segs, nchs, strict=True)):
            try:
                _check_columns(nch, c["ts"], c["ch"], c["value"], c["flag"])
            except BatchError:
                expected.append(k)
        offsets = np.concatenate([[0], np.cumsum([len(c["ts"]) for c in segs], dtype=np.int64)])
        cat = {name: (np.concatenate([c[name] for c in segs]) if segs else np.zeros(0, dtype))
               for name, dtype in (("ts", np.int64), ("ch", np.uint16), ("value", np.float64), ("flag", np.uint8))}
        got = check_column_segments(offsets, nchs, cat["ts"], cat["ch"], cat["value"], cat["flag"])
        assert got.dtype == np.int64 and got.tolist() == expected


@pytest.mark.parametrize("kind", sorted(BREAKERS))
def test_check_column_segments_catches_every_rule_in_any_position(kind):
    rng = np.random.default_rng(5)
    segs = [random_segment(rng, 3, n) for n in (4, 0, 1, 5, 0)]
    for k, i in ((0, 0), (0, 3), (2, 0), (3, 4)):  # first and last reading, next to empty segments
        cols = {name: [a.copy() for a in (s[name] for s in segs)] for name in segs[0]}
        one = {name: cols[name][k] for name in cols}
        BREAKERS[kind](one, i, 3)
        with pytest.raises(BatchError):
            _check_columns(3, one["ts"], one["ch"], one["value"], one["flag"])
        got = check_column_segments([0, 4, 4, 5, 10, 10], [3] * 5, *(np.concatenate(cols[name])
                                                                    for name in ("ts", "ch", "value", "flag")))
        assert got.tolist() == [k]


def test_check_column_segments_rejects_inconsistent_offsets():
    z = np.zeros(3, np.int64), np.zeros(3, np.uint16), np.zeros(3), np.zeros(3, np.uint8)
    for offsets, nchs in (([0, 2], [1]), ([0, 3], [1, 1]), ([1, 3], [1]), ([0, 4, 3], [1, 1]), ([], [])):
        with pytest.raises(ValueError):
            check_column_segments(offsets, nchs, *z)


def test_decode_without_column_checks_skips_only_those():
    buf = bytearray(small_batch().encode())
    buf[len(buf) - 4 - 1] = 9  # last flag: not a code
    raw = refresh_crc(buf)
    with pytest.raises(BatchDecodeError, match="bad_flag"):
        decode_batch(raw)
    assert decode_batch(raw, check_columns=False).flag.tolist() == [Flag.N, Flag.C, 9]
    good = small_batch().encode()
    assert decode_batch(good, check_columns=False).equals(decode_batch(good))
    with pytest.raises(BatchDecodeError, match="checksum"):  # everything before the columns is still checked
        decode_batch(raw[:-1] + bytes([raw[-1] ^ 1]), check_columns=False)


@pytest.mark.parametrize("group", [1, 7, 50, 65_536])
def test_check_batch_columns_is_check_columns_of_each_batch(group, monkeypatch):
    monkeypatch.setattr(schemas.batch, "_GROUP_READINGS", group)  # groups end anywhere, single batches beyond it
    rng = np.random.default_rng(group)
    batches, expected = [], []
    for k in range(300):
        nch = int(rng.integers(0, 5))
        n = 0 if rng.random() < 0.15 else int(rng.integers(1, 40))
        c = random_segment(rng, nch, n)
        if n and rng.random() < 0.3:
            BREAKERS[rng.choice(list(BREAKERS))](c, int(rng.integers(0, n)), nch)
        if n and rng.random() < 0.03:  # only a hand-built ReadingBatch can have this
            c[rng.choice(["ts", "ch", "value", "flag"])] = c["flag"][:-1].copy()
        channels = tuple(ChannelSpec(f"c{i}", "a05001", "%") for i in range(nch))
        batches.append(ReadingBatch("gw", "s", k, channels, c["ts"], c["ch"], c["value"], c["flag"]))
        try:
            _check_columns(nch, c["ts"], c["ch"], c["value"], c["flag"])
        except BatchError:
            expected.append(k)
    assert 30 < len(expected) < 270
    assert check_batch_columns(batches) == expected
    assert check_batch_columns([]) == []
