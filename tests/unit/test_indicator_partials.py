"""The indicators from the stream's hour partials equal the indicators from the month's minute grid, bit for bit:
the kernels (scan_hours against scan, meter totals from pieces), the stream's state (IndicatorStream through the
processor, crashes and late data included), the day records and the reconciler's assembly of a local month."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.quantities import Flag
from schemas.records import IndicatorDay
from streams.core.findings import DAY_NS, day_records, month_partials
from streams.core.monthly import month_range
from streams.core.processor import Message
from streams.kernels.aggregate import HOUR_NS, MINUTE_NS
from streams.kernels.indicators import (
    NO_DATA,
    CO2O2Pairs,
    Findings,
    Grid,
    HourPartials,
    IndicatorPolicy,
    hour_grid,
    hour_partials,
    scan,
    scan_hours,
)
from streams.kernels.meters import metered_totals
from streams.runtime.reconciler import parse_minutes
from tests.fixtures import T0, processor, two_stacks

TZ = ZoneInfo("Asia/Shanghai")
START, END = month_range("2026-03", TZ)  # local midnight 1 March = 2026-02-28T16:00Z; 31 days = 744 hours


def same(a: Findings, b: Findings) -> None:
    for f in Findings._FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape and np.array_equal(x, y, equal_nan=True), f


def stream_month(x: np.ndarray, flag: np.ndarray, t0: int) -> HourPartials:
    """What the reconciler assembles: each UTC hour reduced on its own (as the stream closes it), published as
    day records of source "s" (channels c0..), then cut to the local month."""
    n = x.shape[0]
    hours = [hour_partials(Grid(x[:, i:i + 60], t0 + i * MINUTE_NS, MINUTE_NS, flag[:, i:i + 60]))
             for i in range(0, x.shape[1], 60)]
    whole = HourPartials(t0, *(np.concatenate([getattr(p, a) for p in hours], axis=1) for a in HourPartials.ARRAYS))
    channels = [f"c{i}" for i in range(n)]
    days = [IndicatorDay.from_bytes(d.to_bytes()) for d in day_records("e", "s", channels, whole, channels[3:])]
    parts, stale = month_partials([("s", c) for c in channels], START, END, days)
    assert stale == 0
    return parts


def plant() -> tuple[np.ndarray, np.ndarray, int]:
    """A day either side of March (local), minutes of CO2 %, O2 %, a load-following flow, a coal totaliser [kg] and
    a coal feeder [t/h], with every indicator provoked once."""
    t0 = START - DAY_NS
    m = (END - START + 2 * DAY_NS) // MINUTE_NS
    rng = np.random.default_rng(5)
    day_cycle = 1 + 0.1 * np.sin(np.arange(m) * 2 * np.pi / 1440)
    co2 = 12.0 * day_cycle + rng.normal(0, 0.2, m)
    o2 = 20.9 * (1 - co2 / 18.8) + rng.normal(0, 0.05, m)
    flow = 100 * day_cycle + rng.normal(0, 2, m)
    total = 1e6 + np.cumsum(np.full(m, 250.0))  # 250 kg a minute
    feeder = 15.0 + rng.normal(0, 0.5, m)
    x = np.stack([co2, o2, flow, total, feeder])
    flag = np.full(x.shape, Flag.N, dtype=np.uint8)
    at = (START - t0) // MINUTE_NS  # minute 0 of the local month on this grid
    x[0, at - 20:at + 40] = 11.5  # flatline across the month start: the month sees 40 of its 60 minutes
    x[0, at + 1000:at + 1100] = 12.25  # flatline of 100 minutes across an hour boundary
    day3 = at + 3 * 1440
    flag[0, day3 - 10:day3 + 20] = Flag.C  # a 30-minute calibration across local midnight (cm_run_long)
    flag[1, at + 5 * 1440:at + 5 * 1440 + 200] = Flag.M  # 200 minutes of maintenance in a day (cm_day_share)
    x[2, at + 9 * 1440:at + 10 * 1440] = 100.0 + rng.normal(0, 0.01, 1440)  # a far too quiet day (low_variance)
    x[2, at + 14 * 1440:at + 15 * 1440] = x[2, at + 12 * 1440:at + 13 * 1440]  # a copied day (repeated_profile)
    x[0, at + 20 * 1440:at + 20 * 1440 + 600] *= 1.25  # CO2 biased against the O2 for 10 hours (co2_o2)
    x[1, at + 25 * 1440 + 7:] += 1.5  # a step of the O2 (level_shift)
    x[:3, at + 2000:at + 2300] = np.nan  # a comm loss: no minutes at all
    flag[:3, at + 2000:at + 2300] = NO_DATA
    flag[:3, at + 4000:at + 4090] = Flag.F  # the source stopped: values, not operating
    x[3, at + 7000:at + 9000] = np.nan  # the totaliser silent for a while: its difference loses nothing
    x[4, at + 3000:at + 3600] = np.nan  # the feeder silent: a gap is unknown flow
    flag[3:][np.isnan(x[3:])] = NO_DATA
    return x, flag, t0


def test_a_month_from_hour_partials_equals_the_month_from_its_minutes():
    x, flag, t0 = plant()
    at = (START - t0) // MINUTE_NS
    m = (END - START) // MINUTE_NS
    minutes = Grid(x[:, at:at + m], START, MINUTE_NS, flag[:, at:at + m])  # what InfluxDB returns for the month
    pairs = CO2O2Pairs(np.array([0]), np.array([1]), np.array([18.8]), np.array([1.0]))
    policy = IndicatorPolicy(shift_z=8.0)
    old = scan(minutes, hour_grid(minutes), tz=TZ, policy=policy, pairs=pairs)
    parts = stream_month(x, flag, t0)
    new = scan_hours(parts, tz=TZ, policy=policy, pairs=pairs)
    same(old, new)
    found = {(r, s, int(v)) for r, s, v in zip(new.rule_name.tolist(), new.series.tolist(), new.value.tolist(),
                                                strict=True) if r in ("flatline", "cm_run_long")}
    # flatline: 40 minutes from the month start (the 20 before it are February's), 100 minutes across an hour;
    # the calibration: 10 + 20 = 30 minutes across local midnight
    assert {("flatline", 0, 40), ("flatline", 0, 100), ("cm_run_long", 0, 30)} <= found
    rules = set(new.rule_name.tolist())
    assert rules >= {"flatline", "cm_run_long", "cm_day_share", "low_variance", "repeated_profile",
                     "co2_o2_inconsistent", "level_shift"}
    share = new.value[(new.rule_name == "cm_day_share") & (new.series == 1)]
    assert share.tolist() == [200 / 1440]  # 200 maintenance minutes of the day's 1440
    # the meters: the same totals from the pieces as from the grid
    series = [("s", f"c{i}") for i in range(5)]
    channels = {("s", "c3"): ("xf0003", "kg"), ("s", "c4"): ("xf0001", "t/h")}
    meters = {"s/c3": "fuel:coal", "s/c4": "fuel:coke"}
    want = metered_totals(minutes, series, channels, meters)
    assert metered_totals(parts, series, channels, meters) == want
    # the totaliser: 250 kg a minute from the month's first minute to its last = 44,639 x 250 kg = 11,159.75 t
    assert want["fuel:coal"].counted_total == pytest.approx(44_639 * 0.25)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.6), st.floats(0.0, 0.3))
def test_any_gaps_flags_and_repeats_give_the_same_findings(seed, gaps, repeats):
    # two local days of three channels: random gaps (no minute), random F/C/M flags, random runs of repeats
    rng = np.random.default_rng(seed)
    m = 2 * 1440
    x = np.round(rng.normal(10, 1, (3, m)), 1)
    held = rng.random((3, m)) < repeats
    for i in range(3):  # a held value repeats the previous minute's
        idx = np.flatnonzero(held[i])
        idx = idx[idx > 0]
        for j in idx:
            x[i, j] = x[i, j - 1]
    flag = rng.choice(np.array([Flag.N, Flag.N, Flag.N, Flag.F, Flag.C, Flag.M], dtype=np.uint8), (3, m))
    gap = rng.random((3, m)) < gaps
    x[gap], flag[gap] = np.nan, NO_DATA
    start = START
    policy = IndicatorPolicy(flat_min_minutes=3, cm_max_run_minutes=2, lowvar_rel=0.9)
    minutes = Grid(x, start, MINUTE_NS, flag)
    old = scan(minutes, hour_grid(minutes), tz=TZ, policy=policy)
    hours = [hour_partials(Grid(x[:, i:i + 60], start + i * MINUTE_NS, MINUTE_NS, flag[:, i:i + 60]), policy)
             for i in range(0, m, 60)]
    parts = HourPartials(start, *(np.concatenate([getattr(p, a) for p in hours], axis=1) for a in HourPartials.ARRAYS))
    same(old, scan_hours(parts, tz=TZ, policy=policy))


def test_a_clean_day_without_repeats_or_flags_finds_nothing_either_way():
    # noise that never repeats, every minute N: no minute-level run on either path (and no series to run them on)
    x = START // MINUTE_NS % 7 + np.random.default_rng(2).normal(10, 1, (2, 1440))
    minutes = Grid(x, START, MINUTE_NS)
    parts = hour_partials(minutes)
    assert not parts.repeats.any() and not parts.cm.any()
    same(scan(minutes, hour_grid(minutes), tz=TZ), scan_hours(parts, tz=TZ))


def test_hour_partials_by_hand():
    # one hour: minutes 0-29 at 5.0 (29 repeats), 30-59 NaN except 59 = 7.0 flagged C; minute 0 flagged M
    x = np.full((1, 60), np.nan)
    x[0, :30], x[0, 59] = 5.0, 7.0
    flag = np.full((1, 60), NO_DATA, dtype=np.uint8)
    flag[0, :30], flag[0, 0], flag[0, 59] = Flag.N, Flag.M, Flag.C
    p = hour_partials(Grid(x, T0, MINUTE_NS, flag))
    assert p.mean[0, 0] == (30 * 5.0 + 7.0) / 31  # 157 / 31
    assert p.repeats[0, 0] == (1 << 29) - 1  # transitions 0..28 repeat
    assert p.cm[0, 0] == 1 | 1 << 59
    assert p.head[0, 0] == 5.0 and p.tail[0, 0] == 7.0  # both valid and operating (C is not F)
    assert (p.n_valid[0, 0], p.total[0, 0], p.first[0, 0], p.last[0, 0]) == (31, 157.0, 0, 59)
    assert p.lv_count[0, 0] == 31 and p.lv_mean[0, 0] == 157 / 31
    assert p.calibrating[0, 0] and p.operating[0, 0]
    with pytest.raises(ValueError, match="whole hours"):
        hour_partials(Grid(x[:, :30], T0, MINUTE_NS, flag[:, :30]))


def test_a_day_record_round_trips_and_a_cut_one_is_refused():
    assert set(HourPartials.INDICATOR_FIELDS) | set(HourPartials.METER_FIELDS) == set(HourPartials.ARRAYS)
    parts = HourPartials.empty(2, 24, T0 // DAY_NS * DAY_NS)
    (day,) = day_records("e", "s", ["a", "b"], parts, ["b"])
    assert day.closed == (1 << 24) - 1 and day.key == f"s/{day.day_iso}"
    back = IndicatorDay.from_bytes(day.to_bytes())
    assert back.channels == ["a", "b"] and back.meter_channels == ["b"]
    assert all(np.array_equal(back.arrays[k], v, equal_nan=True) for k, v in day.arrays.items())
    assert all(np.array_equal(back.meters[k], v, equal_nan=True) and v.shape == (1, 24) for k, v in day.meters.items())
    # the indicators' 10 fields for 2 channels, the meters' 6 for 1, 24 hours each:
    # (5 float64 + 2 uint64 = 56 B, 1 uint8 + 2 bool = 3 B) x 2 + (3 float64 = 24 B, 1 uint8 + 2 int8 = 3 B) x 1
    # = 145 B per hour, 3,480 B a day, after the header line
    assert len(day.to_bytes()) - day.to_bytes().index(b"\n") - 1 == 145 * 24
    with pytest.raises(ValueError, match="3472 bytes of hours, not the 3480"):
        IndicatorDay.from_bytes(day.to_bytes()[:-8])


def test_the_processor_publishes_the_partials_of_the_minutes_it_closes_through_crashes():
    # two stacks, 3 hours of readings; the processor crashes and restores its saved segments at random
    messages, _ = two_stacks()
    rng = random.Random(3)
    p, saved, pos = processor(), {}, 0
    minutes, days = [], {}
    while pos < len(messages):
        if saved and rng.random() < 0.1:
            p = processor()
            p.restore(saved)
            pos = p.next_offset  # the replay closes the same minutes again: InfluxDB rewrites identical points
        n = rng.randrange(50, 400)
        out = p.process([Message(m.offset, m.value, m.headers, m.timestamp_ms) for m in messages[pos:pos + n]])
        pos += n
        if out.minutes is not None:
            minutes.append(out.minutes)
        for d in out.indicators:
            days[d.key] = d
        if rng.random() < 0.3:
            saved = {k: v for k, v in (saved | p.checkpoint()).items() if v is not None}
    # the minutes as InfluxDB holds them (each minute written once or rewritten identically), as one grid
    reg = p.registry
    n_series = reg.n_series
    grid_mean = np.full((n_series, 3 * 60), np.nan)
    grid_flag = np.full((n_series, 3 * 60), NO_DATA, dtype=np.uint8)
    for t in minutes:
        i = (t.start_ns - T0) // MINUTE_NS
        ok = (i >= 0) & (i < 180)
        grid_mean[t.series[ok], i[ok]] = np.where(t.valid & np.isfinite(t.mean), t.mean, np.nan)[ok]
        grid_flag[t.series[ok], i[ok]] = t.label[ok]
    want = hour_partials(Grid(grid_mean[:, :120], T0, MINUTE_NS, grid_flag[:, :120]))  # hours 0 and 1 closed
    for s, src in enumerate(reg.sources):
        (day,) = [d for d in days.values() if d.source_id == src.id]
        j = (T0 - day.day_start_ns) // HOUR_NS
        assert day.closed >> j & 3 == 3 and not day.stale  # hours 0 and 1 closed, hour 2 still open
        rows = np.flatnonzero(reg.source_of_series == s)
        for name in HourPartials.INDICATOR_FIELDS:
            assert np.array_equal(day.arrays[name][:, j:j + 2], getattr(want, name)[rows], equal_nan=True), name
        meters = [j for j, c in enumerate(src.channels) if c.id in day.meter_channels]
        assert meters and all(src.channels[j].quantity[0] == "x" for j in meters)  # the fixture's fuel meters
        for name in HourPartials.METER_FIELDS:
            assert np.array_equal(day.meters[name][:, j:j + 2], getattr(want, name)[rows[meters]], equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2000))
def test_any_bytes_decode_or_are_refused_with_a_value_error(junk, cut):
    (day,) = day_records("e", "s", ["a"], HourPartials.empty(1, 24, 0), ["a"])
    for data in (junk, day.to_bytes()[:cut], day.to_bytes()[:cut] + junk):
        try:
            IndicatorDay.from_bytes(data)
        except ValueError as exc:
            assert str(exc).startswith("not an indicator day record")


def flux(rows: list[tuple[int, str, str, float | None, str]]) -> bytes:
    """A Flux CSV of one table (what the audit's query returns): _time, channel, flag, mean, source."""
    lines = [",result,table,_time,channel,flag,mean,source"]
    for t, source, channel, mean, letter in rows:
        stamp = datetime.fromtimestamp(t // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f",_result,0,{stamp},{channel},{letter},{'' if mean is None else repr(mean)},{source}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_the_audit_parses_the_flux_csv_by_hand():
    # two series over 3 minutes: s/a minute 0 = 1.5 N, minute 2 invalid (no mean) C; s/b minute 1 = 2.25 M;
    # a row of another series and one outside the range are left out
    data = flux([(T0, "s", "a", 1.5, "N"), (T0 + 2 * MINUTE_NS, "s", "a", None, "C"),
                 (T0 + MINUTE_NS, "s", "b", 2.25, "M"), (T0, "x", "a", 9.0, "N"),
                 (T0 + 3 * MINUTE_NS, "s", "a", 7.0, "N")])
    g = parse_minutes(data, [("s", "a"), ("s", "b")], T0, T0 + 3 * MINUTE_NS)
    assert np.array_equal(g.mean, [[1.5, np.nan, np.nan], [np.nan, 2.25, np.nan]], equal_nan=True)
    assert g.flag.tolist() == [[Flag.N, NO_DATA, Flag.C], [NO_DATA, Flag.M, NO_DATA]]
    assert np.isnan(parse_minutes(b"", [("s", "a")], T0, T0 + MINUTE_NS).mean).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 59), st.one_of(st.none(), st.floats(-1e6, 1e6)),
                          st.sampled_from([f.name for f in Flag])), max_size=80))
def test_the_audit_parse_gives_the_grid_the_rows_say(cells):
    # any rows: the last row of a (series, minute) wins, as the grid is filled in order
    series = [("s", "a"), ("s", "b")]
    want_mean = np.full((2, 60), np.nan)
    want_flag = np.full((2, 60), NO_DATA, dtype=np.uint8)
    rows = []
    for i, minute, mean, letter in cells:
        rows.append((T0 + minute * MINUTE_NS, *series[i], mean, letter))
        want_mean[i, minute] = np.nan if mean is None else mean
        want_flag[i, minute] = Flag[letter]
    g = parse_minutes(flux(rows), series, T0, T0 + HOUR_NS)
    assert np.array_equal(g.mean, want_mean, equal_nan=True) and np.array_equal(g.flag, want_flag)


class Closed:
    """The columns of a closed-minute table IndicatorStream reads (streams.kernels.aggregate.PeriodTable's)."""

    def __init__(self, series, start_ns, mean, label):
        self.series, self.start_ns = np.asarray(series, np.int64), np.asarray(start_ns, np.int64)
        self.mean, self.label = np.asarray(mean, np.float64), np.asarray(label, np.uint8)
        self.valid = np.isfinite(self.mean)

    def __len__(self):
        return self.series.size


def test_late_minutes_recompute_the_hour_while_kept_and_mark_it_stale_after():
    from streams.core.findings import IndicatorStream

    reg = processor().registry
    f = IndicatorStream(reg, lateness_s=600, keep_s=3600)
    s0 = np.flatnonzero(reg.source_of_series == 0)[0]  # source 0's first channel
    now = np.full(len(reg.sources), T0 + HOUR_NS + 11 * MINUTE_NS)  # hour 0 closes at its end + 10 min
    first = Closed([s0] * 30, T0 + np.arange(30) * MINUTE_NS, np.arange(30.0), [Flag.N] * 30)
    (day,) = [d for d in f.update(first, now) if d.source_id == reg.sources[0].id]
    j = (T0 - day.day_start_ns) // HOUR_NS
    assert day.closed == 1 << j and day.revision == 0
    assert day.arrays["mean"][0, j] == 14.5  # minutes 0..29 hold 0..29: mean 435 / 30
    # minutes 30..59 fold 20 minutes later (a hole filled): recomputed from the kept minutes, the next revision
    late = Closed([s0] * 30, T0 + np.arange(30, 60) * MINUTE_NS, np.arange(30.0, 60.0), [Flag.N] * 30)
    (day,) = f.update(late, now + 20 * MINUTE_NS)
    assert day.arrays["mean"][0, j] == 29.5 and day.arrays["lv_count"][0, j] == 60 and day.revision == 1  # 1770 / 60
    assert not day.stale
    # an hour after the close the minutes are let go; a minute for the hour now marks it stale, figures unchanged
    assert f.update(None, now + 2 * HOUR_NS) == [] and not f.minutes
    (day,) = f.update(Closed([s0], [T0], [99.0], [Flag.N]), now + 2 * HOUR_NS)
    assert day.stale == 1 << j and day.arrays["mean"][0, j] == 29.5 and day.revision == 2
    # and the reconciler's assembly counts it
    start = day.day_start_ns
    _, stale = month_partials([(reg.sources[0].id, c.id) for c in reg.sources[0].channels], start, start + DAY_NS,
                              [day])
    assert stale == 1
