"""The data area's fast path (``datarea._fast_area``) against the general parser it falls back to: for any data
area, in any edition and mode, both give the same records and parameters, or the same refusal, and the fast path
answers only where the general one would write no note."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.hj212 import Hj212Error, Version
from schemas.hj212.datarea import (
    CHINA_TZ,
    DEFAULT_FLAGS,
    _fast_area,
    _general_area,
    _shaped_area,
    parse_data_area,
)

CODES = ["a05001", "a19001", "a21026", "01", "30", "S01", "B02", "w01018", "x"]
FIELDS = ["Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "Flag", "EFlag", "SampleTime", "ValidNum", "SN"]
VALUES = ["10.5", "-0.431", "0", "12", "+5", ".5", "5.", "1e5", "nan", "inf", "", "St", "1_0", "\u0661\u0662",
          "9" * 400, "N", "C", "P", "F", "X", "n", "20260301080000", "20260301080000123", "20261301080000", "1",
          "abc"]
PARAMS = ["DataTime", "RtdInterval", "QN", "ExeRtn", "PolId", "BeginTime"]


@st.composite
def areas(draw) -> str:
    items = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 9))
        if kind < 7:
            items.append(f"{draw(st.sampled_from(CODES))}-{draw(st.sampled_from(FIELDS))}="
                         f"{draw(st.sampled_from(VALUES))}")
        elif kind < 9:
            items.append(f"{draw(st.sampled_from(PARAMS))}={draw(st.sampled_from(VALUES))}")
        else:
            items.append(draw(st.sampled_from(["", "=", "x", "-a=1", "a05001-Rtd", " a05001-Rtd=1"])))
    seps = [draw(st.sampled_from([";", ","])) for _ in items]
    return "".join(i + s for i, s in zip(items, seps, strict=True))[:-1] if items else ""


def outcome(fn, cp, version, strict):
    notes: list[str] = []
    try:
        area = fn(cp, version=version, strict=strict, tz=CHINA_TZ, flags=DEFAULT_FLAGS, notes=notes)
    except Hj212Error as exc:
        return ("refused", exc.reason, exc.detail), notes
    return ("area", area.data_time, area.records, dict(area.params)), notes


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(areas(), st.sampled_from([Version.HJ212_2005, Version.HJ212_2017, Version.HJ212_2025, None]), st.booleans())
def test_the_fast_path_agrees_with_the_general_parser(cp, version, strict):
    general, notes = outcome(_general_area, cp, version, strict)
    public, _ = outcome(parse_data_area, cp, version, strict)
    assert public == general
    fast = _fast_area(cp, version, strict, CHINA_TZ, DEFAULT_FLAGS.for_version(version)) if " " not in cp else None
    if fast is not None:  # only where nothing needed a note or a refusal
        assert notes == [] and general == ("area", fast.data_time, fast.records, dict(fast.params))


def test_the_fast_path_takes_the_common_frames():
    cp = ("DataTime=20260301080000;a05001-Min=10.1,a05001-Avg=10.5,a05001-Max=10.9,a05001-Flag=N;"
          "a19001-Avg=8.25,a19001-Flag=C;a34013-ZsAvg=3.0,a34013-Avg=2.5,a34013-Flag=N")
    fast = _fast_area(cp, Version.HJ212_2017, True, CHINA_TZ, DEFAULT_FLAGS.current)
    assert fast is not None and [r.avg for r in fast.records] == [10.5, 8.25, 2.5]
    legacy = "DataTime=20160824050243;01-Rtd=0000,01-ZsRtd=0000,01-Flag=N;S01-Rtd=20.9,S01-Flag=N"
    fast = _fast_area(legacy, Version.HJ212_2005, False, CHINA_TZ, DEFAULT_FLAGS.legacy)
    assert [(r.code, r.original_code, r.rtd) for r in fast.records] == [("a34013", "01", 0.0), ("a19001", "S01", 20.9)]


SHAPED_CODES = ["a05001", "a21026", "a00000", "w01018", "a19001", "a34013", "01", "x"]  # "01": a 2005 code (not shaped)
SHAPED_FIELDS = ["Rtd", "Avg", "Min", "Max", "Cou", "ZsAvg", "Flag"]
SHAPED_VALUES = ["10.5", "-0.431", "0", "12", "+5", ".5", "5.", "1e5", "nan", "", "9" * 400, "N", "C", "P", "X", "n"]


@st.composite
def shaped_areas(draw) -> str:
    """Areas of the shape the shape cache reads (numeric and Flag fields, one DataTime), with values and keys
    that it must hand back to the item loop (bad numbers, unknown letters, a repeated key, a 2005 code, a second
    DataTime), and the same shape many times with other values."""
    keys = [f"{draw(st.sampled_from(SHAPED_CODES))}-{draw(st.sampled_from(SHAPED_FIELDS))}"
            for _ in range(draw(st.integers(1, 10)))]
    if draw(st.booleans()):
        keys.insert(draw(st.integers(0, len(keys))), "DataTime")
    if draw(st.integers(0, 9)) == 0:
        keys.append("DataTime")
    items = []
    for k in keys:
        if k == "DataTime":
            items.append(f"DataTime={draw(st.sampled_from(['20260301080000', '20260301080000123', '2026']))}")
        elif k.endswith("-Flag"):
            items.append(f"{k}={draw(st.sampled_from(['N'] * 8 + ['D', 'P', 'X', '']))}")
        else:
            items.append(f"{k}={draw(st.sampled_from(SHAPED_VALUES[:4] * 12 + SHAPED_VALUES))}")
    seps = [draw(st.sampled_from([";", ","])) for _ in items]
    return "".join(i + s for i, s in zip(items, seps, strict=True))[:-1]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_areas(), st.sampled_from([Version.HJ212_2005, Version.HJ212_2017, None]), st.booleans())
def test_areas_of_a_known_shape_agree_with_the_general_parser(cp, version, strict):
    """The shape cache (``datarea._shaped_area``) gives what the general parser gives, or hands the area on."""
    general, notes = outcome(_general_area, cp, version, strict)
    letters = DEFAULT_FLAGS.for_version(version)
    for _ in range(2):  # the shape learnt, then read from the cache
        shaped = _shaped_area(cp, strict, CHINA_TZ, letters)
        if shaped is not None:
            assert notes == [] and general == ("area", shaped.data_time, shaped.records, dict(shaped.params))
    assert outcome(parse_data_area, cp, version, strict)[0] == general


def test_a_known_shape_is_read_from_the_cache() -> None:
    """10 factors of a 2051 upload: the shape is read, its records are what the general parser makes.
    a21026 Avg=20.5: one record with min 18.25, avg 20.5, max 23.0 and flag N (values as written)."""
    cp = "DataTime=20260301080000;" + ";".join(f"a{21000 + k:05d}-Min=18.25,a{21000 + k:05d}-Avg=20.5,"
                                                f"a{21000 + k:05d}-Max=23.0,a{21000 + k:05d}-Flag=N" for k in range(10))
    area = _shaped_area(cp, True, CHINA_TZ, DEFAULT_FLAGS.current)
    assert area is not None and len(area.records) == 10
    r = area.records[0]
    assert (r.code, r.min, r.avg, r.max, r.flag_letter) == ("a21000", 18.25, 20.5, 23.0, "N")
    assert outcome(_general_area, cp, Version.HJ212_2017, True)[0] == ("area", area.data_time, area.records,
                                                                        dict(area.params))
