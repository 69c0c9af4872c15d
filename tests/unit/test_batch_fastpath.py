"""schemas.batch.encode_columns: the same bytes as ReadingBatch.from_columns(...).encode(), the same refusals."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import BatchError, ChannelSpec, Flag, ReadingBatch
from schemas.batch import SMALL_BATCH, TS_MAX_NS, TS_MIN_NS, _columns_struct, encode_columns
from schemas.hj212 import build_frame
from schemas.hj212.session import Registration, SourceMap, Upload
from tests.unit.test_hj212_session import session, stack  # the session tests' source and session

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z in ns
CHANNELS = (ChannelSpec("so2", "a21026", "mg/m3"), ChannelSpec("o2", "a19001", "%"), ChannelSpec("q", "a00000",
                                                                                                   "m3/h"))


def both(**cols) -> tuple[object, object]:
    """(general path, fast path): bytes, or the BatchError's (reason, detail)."""
    out = []
    for fn in (lambda: ReadingBatch.from_columns(**cols).encode(), lambda: encode_columns(**cols)):
        try:
            out.append(fn())
        except BatchError as exc:
            out.append((exc.reason, exc.detail))
    return out[0], out[1]


def test_layout_of_one_reading_by_hand() -> None:
    data = encode_columns(agent_id="a", source_id="s", seq=7, channels=CHANNELS[:1], ts_ns=[T0], channel=[0],
                          value=[1.5], flag=[int(Flag.N)], period_s=60)
    # fixed header 24 bytes; metadata: 2+1 (agent) + 2+1 (source) + 4 (period) + 2 (count)
    # + 1+3 + 1+6 + 1+5 (so2, a21026, mg/m3) = 29 bytes, padded to 32 (24 + 29 = 53 -> 56);
    # columns 8 + 8 + 2 + 1 = 19; CRC 4: 24 + 32 + 19 + 4 = 79 bytes
    assert len(data) == 79
    assert data[:6] == b"CEMB\x02\x00"  # version 2: period data
    assert data == ReadingBatch.from_columns(agent_id="a", source_id="s", seq=7, channels=CHANNELS[:1], ts_ns=[T0],
                                             channel=[0], value=[1.5], flag=[int(Flag.N)], period_s=60).encode()


@pytest.mark.parametrize(("field", "bad"), [
    ("ts_ns", [TS_MIN_NS - 1]), ("ts_ns", [TS_MAX_NS]), ("channel", [3]), ("channel", [-1]), ("flag", [11]),
    ("flag", [-1]), ("value", [math.inf]), ("value", [-math.inf]), ("value", [math.nan]),  # NaN with flag N
])
def test_each_rule_refused_as_the_general_path_refuses(field: str, bad: list) -> None:
    cols = {"agent_id": "a", "source_id": "s", "seq": 1, "channels": CHANNELS, "ts_ns": [T0], "channel": [0],
            "value": [2.0], "flag": [int(Flag.N)], field: bad}
    general, fast = both(**cols)
    assert isinstance(general, tuple) and fast == general


def test_boundaries_accepted() -> None:
    for ts in (TS_MIN_NS, TS_MAX_NS - 1):
        general, fast = both(agent_id="a", source_id="s", seq=2**64 - 1, channels=CHANNELS, ts_ns=[ts], channel=[2],
                             value=[math.nan], flag=[int(Flag.D)], period_s=86_400)
        assert isinstance(fast, bytes) and fast == general


ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
timestamps = st.one_of(st.integers(TS_MIN_NS, TS_MAX_NS - 1), st.integers(TS_MIN_NS - 10, TS_MIN_NS + 10),
                       st.integers(TS_MAX_NS - 10, TS_MAX_NS + 10), ints)
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=False, allow_infinity=False,
                                                                              width=32),
                   st.sampled_from([0.0, -0.0, 1e308, -1e308]))
flags = st.one_of(st.sampled_from([int(f) for f in Flag]), st.sampled_from(list(Flag)), st.integers(-2, 260))
channel_index = st.one_of(st.integers(0, 2), st.integers(-2, 70_000))


@st.composite
def columns(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 12))
    length = draw(st.sampled_from([n, n, n, n, SMALL_BATCH, SMALL_BATCH + 1]))  # the limit: the drawn rows repeated

    def col(s: st.SearchStrategy) -> list:
        drawn = draw(st.lists(s, min_size=n, max_size=n))
        return (drawn * (length // n + 1))[:length] if n else []
    cols = {"ts_ns": col(timestamps), "channel": col(channel_index), "value": col(values), "flag": col(flags)}
    if draw(st.integers(0, 20)) == 0:  # now and then a column of another length, or another type
        name = draw(st.sampled_from(sorted(cols)))
        cols[name] = draw(st.one_of(st.just(cols[name][:-1]), st.just([float(x) for x in cols[name]]),
                                    st.just(tuple(cols[name])), st.just([True] * n)))
    return {"agent_id": draw(st.sampled_from(["hj212-010000A8900016F000169DC0", "gw", "", "a\x00"])),
            "source_id": draw(st.sampled_from(["kiln1-stack", "s"])),
            "seq": draw(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, 2**64, True]))),
            "channels": draw(st.sampled_from([CHANNELS, CHANNELS[:1], (), (CHANNELS[0], CHANNELS[0]),
                                              tuple(tuple(c) for c in CHANNELS)])),
            "period_s": draw(st.sampled_from([0, 1, 60, 3600, 86_400, 86_401, -1])), **cols}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns())
def test_fast_path_equals_the_general_path(cols: dict) -> None:
    general, fast = both(**cols)
    assert fast == general


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(TS_MIN_NS, TS_MAX_NS - 1), st.integers(0, 2),
                          st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([int(f) for f in Flag])),
                max_size=40))
def test_valid_columns_take_the_fast_path(rows: list) -> None:
    """Valid upload-shaped columns are packed by the fast path (its struct is built), not handed to numpy."""
    _columns_struct.cache_clear()
    ts, ch, val, fl = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [])
    data = encode_columns(agent_id="a", source_id="s", seq=3, channels=CHANNELS, ts_ns=ts, channel=ch, value=val,
                          flag=fl)
    assert _columns_struct.cache_info().currsize == 1
    assert data == ReadingBatch.from_columns(agent_id="a", source_id="s", seq=3, channels=CHANNELS, ts_ns=ts,
                                             channel=ch, value=val, flag=fl).encode()


# --- what a receiver encodes: uploads through the session --------------------------------------------------------

_CODES = ("a05001", "a19001", "a01014", "a01012", "a01013", "a01011", "a34013")  # the last: not a channel


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_CODES), st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
                          st.one_of(st.none(), st.sampled_from(list(Flag)))), min_size=1, max_size=7,
                unique_by=lambda r: r[0]),
       st.sampled_from(["2011", "2051", "2061", "2031"]), st.sampled_from(["invalid", "valid"]))
def test_an_upload_encodes_as_its_batch_encodes(records: list, cn: str, unflagged: str) -> None:
    """Converted.encode (the receiver's path) == Converted.batch().encode(), for uploads of any values and flags,
    missing values (NaN, flag repaired to D) and unflagged values (the site's rule)."""
    name = "Rtd" if cn == "2011" else "Avg"
    fields = [",".join([*([f"{code}-{name}={v!r}"] if v is not None else [f"{code}-{name}="]),
                        *([f"{code}-Flag={f.name}"] if f is not None else [])]) for code, v, f in records]
    raw = build_frame(st="31", cn=cn, pw="123456", mn="010000A8900016F000169DC0", qn="20260301080100000", flag=4,
                      cp="DataTime=20260301080000;" + ";".join(fields))
    reg = Registration(SourceMap.of(stack(unflagged=unflagged)), "123456")
    events = session(reg).feed(raw, 0.0)
    (up,) = [e for e in events if isinstance(e, Upload)]
    assert up.converted.encode("hj212-X", 9) == up.converted.batch("hj212-X", 9).encode()
