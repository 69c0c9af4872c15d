"""OPC UA DataValue -> reading value, HJ 212 flag and timestamp (edge_agent/opcua/mapping.py), without a server.

Status codes are written as the numbers OPC UA Part 6's StatusCode table gives them (severity in the top two bits:
00 Good, 01 Uncertain, 10 Bad; the code in the upper 16 bits; info bits in the lower 16).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.opcua.mapping import (
    as_number,
    flag_values,
    reading_time_ns,
    status_code,
    status_word,
    timestamp_ns,
    variant_value,
)
from schemas.quantities import Flag

GOOD = 0x00000000
GOOD_CLAMPED = 0x00300000
UNCERTAIN_LAST_USABLE = 0x40900000
UNCERTAIN_EU_EXCEEDED = 0x40940000
BAD_INTERNAL = 0x80020000
BAD_COMMUNICATION = 0x80050000
BAD_TIMEOUT = 0x800A0000
BAD_OUT_OF_RANGE = 0x803C0000
BAD_WAITING_FOR_INITIAL_DATA = 0x80320000


def test_the_status_code_numbers_are_asyncua_s():
    sc = ua.StatusCodes
    assert (sc.GoodClamped, sc.UncertainLastUsableValue, sc.UncertainEngineeringUnitsExceeded, sc.BadInternalError,
            sc.BadCommunicationError, sc.BadTimeout, sc.BadOutOfRange, sc.BadWaitingForInitialData) == (
        GOOD_CLAMPED, UNCERTAIN_LAST_USABLE, UNCERTAIN_EU_EXCEEDED, BAD_INTERNAL, BAD_COMMUNICATION, BAD_TIMEOUT,
        BAD_OUT_OF_RANGE, BAD_WAITING_FOR_INITIAL_DATA)


def test_each_status_code_class_gets_its_flag():
    cases = [  # (raw, code, low, high) -> (value, flag); scale 0.1, offset 1: value = raw * 0.1 + 1
        ((12.0, GOOD, 0.0, 30.0), (2.2, Flag.N)),                    # 12 * 0.1 + 1 = 2.2, inside 0..30
        ((12.0, GOOD_CLAMPED, 0.0, 30.0), (2.2, Flag.N)),            # any Good code is N
        ((400.0, GOOD, 0.0, 30.0), (41.0, Flag.T)),                  # 400 * 0.1 + 1 = 41 > 30: T, value kept
        ((-20.0, GOOD, 0.0, 30.0), (-1.0, Flag.T)),                  # -20 * 0.1 + 1 = -1 < 0: T
        ((290.0, GOOD, 0.0, 30.0), (30.0, Flag.N)),                  # 290 * 0.1 + 1 = 30: on the limit is inside
        ((math.nan, GOOD, 0.0, 30.0), (math.nan, Flag.D)),           # not a number: instrument fault
        ((math.inf, GOOD, -np.inf, np.inf), (math.nan, Flag.D)),
        ((12.0, UNCERTAIN_LAST_USABLE, 0.0, 30.0), (2.2, Flag.D)),   # doubtful: kept, not valid
        ((12.0, UNCERTAIN_EU_EXCEEDED, 0.0, 30.0), (2.2, Flag.T)),   # out of the instrument's range: T, kept
        ((12.0, BAD_OUT_OF_RANGE, 0.0, 30.0), (math.nan, Flag.T)),   # Bad values are never kept
        ((12.0, BAD_COMMUNICATION, 0.0, 30.0), (math.nan, Flag.B)),  # the server cannot reach the instrument
        ((12.0, BAD_COMMUNICATION | 0x0400, 0.0, 30.0), (math.nan, Flag.B)),  # info bits do not change the class
        ((12.0, BAD_TIMEOUT, 0.0, 30.0), (math.nan, Flag.B)),
        ((12.0, BAD_WAITING_FOR_INITIAL_DATA, 0.0, 30.0), (math.nan, Flag.B)),
        ((12.0, BAD_INTERNAL, 0.0, 30.0), (math.nan, Flag.D)),       # any other Bad: D
    ]
    raw, code, low, high = (np.array(c) for c in zip(*(args for args, _ in cases), strict=True))
    n = len(cases)
    value, flag = flag_values(raw.astype(np.float64), code.astype(np.uint32), np.full(n, 0.1), np.full(n, 1.0),
                              low.astype(np.float64), high.astype(np.float64))
    expected_value = np.array([v for _, (v, _) in cases])
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, equal_nan=True)
    assert [Flag(f) for f in flag] == [f for _, (_, f) in cases]


def test_timestamps_come_from_the_source_then_the_server():
    # 2026-01-01T00:00:00Z is 1_767_225_600 s after the epoch; 250 ms more is 1_767_225_600_250_000_000 ns.
    src = datetime(2026, 1, 1, 0, 0, 0, 250_000)  # asyncua's naive datetimes are UTC
    assert timestamp_ns(src) == 1_767_225_600_250_000_000
    assert timestamp_ns(src.replace(tzinfo=UTC)) == 1_767_225_600_250_000_000
    beijing = timezone(timedelta(hours=8))  # 08:00:00.25 in Beijing is 00:00:00.25 UTC
    assert timestamp_ns(datetime(2026, 1, 1, 8, 0, 0, 250_000, tzinfo=beijing)) == 1_767_225_600_250_000_000
    assert timestamp_ns(None) is None
    assert timestamp_ns(datetime(1601, 1, 1)) is None  # OPC UA's DateTime MinValue: "no timestamp"
    server = datetime(2026, 1, 1, 0, 0, 1)
    assert reading_time_ns(ua.DataValue(ua.Variant(1.0), SourceTimestamp=src, ServerTimestamp=server)) \
        == 1_767_225_600_250_000_000
    assert reading_time_ns(ua.DataValue(ua.Variant(1.0), ServerTimestamp=server)) == 1_767_225_601_000_000_000
    assert reading_time_ns(ua.DataValue(ua.Variant(1.0))) is None


def test_values_and_status_codes_of_a_data_value():
    dv = ua.DataValue(ua.Variant(7.5, ua.VariantType.Double), StatusCode=ua.StatusCode(BAD_TIMEOUT))
    assert variant_value(dv) == 7.5 and status_code(dv) == BAD_TIMEOUT
    assert status_code(ua.DataValue(ua.Variant(1.0))) == GOOD  # no StatusCode on the wire means Good
    assert variant_value(ua.DataValue()) is None
    assert as_number(True) == 1.0 and as_number(np.float32(2.5)) == 2.5 and as_number(3) == 3.0
    assert math.isnan(as_number("12.5")) and math.isnan(as_number(None)) and math.isnan(as_number([1.0]))


def test_status_words_are_good_non_negative_whole_numbers():
    assert status_word(5, GOOD) == 5
    assert status_word(5.0, GOOD) == 5  # a Double holding a whole number
    assert status_word(0, GOOD) == 0
    for v in (5.5, -1, True, "5", None):
        assert status_word(v, GOOD) is None, v
    assert status_word(5, UNCERTAIN_LAST_USABLE) is None and status_word(5, BAD_COMMUNICATION) is None


@given(raw=st.floats(allow_nan=True, allow_infinity=True, width=32),
       code=st.integers(0, 2**32 - 1), scale=st.floats(-1e3, 1e3).filter(lambda s: s != 0),
       offset=st.floats(-1e3, 1e3))
def test_flags_are_always_a_known_class_and_bad_values_never_survive(raw, code, scale, offset):
    value, flag = flag_values(np.array([raw]), np.array([code], dtype=np.uint32), np.array([scale]),
                              np.array([offset]), np.array([-np.inf]), np.array([np.inf]))
    assert flag[0] in (Flag.N, Flag.T, Flag.D, Flag.B)
    severity = code >> 30
    if severity >= 2:
        assert math.isnan(value[0])
    if flag[0] == Flag.N:
        assert severity == 0 and value[0] == raw * scale + offset
    if severity == 0 and math.isfinite(raw * scale + offset):
        assert flag[0] == Flag.N  # no limits set: every finite Good value is normal
