"""Substitution policies and day/month rollups, with hand-worked expectations (docs/kernels.md for the rules)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.kernels.policy import POLICIES
from streams.kernels.rollup import rollup
from streams.kernels.substitute import (
    MEASURED,
    METHODS,
    MISSING,
    OUT_OF_CONTROL,
    POLICY_NAMES,
    STOPPED,
    HourGrid,
    MaxPotentialMissing,
    substitute,
)

CN, EU = POLICIES["cn-hj75"], POLICIES["eu-mrr"]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def grid(n_hours, gaps=(), status=MISSING, spikes=None, stopped=(), conc=None, flow=None, **kw):
    """One source: mass = hour index [kg], measured; ``gaps`` [a, b) get ``status``; optional spikes and stops."""
    mass = np.arange(n_hours, dtype=float)
    for h, v in (spikes or {}).items():
        mass[h] = v
    s = np.full(n_hours, MEASURED, np.uint8)
    for a, b in gaps:
        s[a:b] = status
    s[list(stopped)] = STOPPED
    def row(x):
        return (None if x is None else np.asarray(x, float)[None])
    return HourGrid(s[None], mass[None], row(conc), row(flow), **kw)


def names(codes) -> list[str]:
    return [METHODS[int(c)] for c in np.ravel(codes)]


# --- HJ 75-2017: out of control -> the mass table [HJ75-OOC, S] ----------------------------------


def test_hj75_short_out_of_control_run_takes_the_max_of_the_previous_180_valid_hours():
    # 300 h, out of control 250..259 (10 h): capture 290/300 = 96.7 % >= 90 %, N <= 24 -> 180 h window: valid hours
    # 70..249, max 249. The spike of 1000 at hour 10 is outside the window.
    sub = substitute(grid(300, [(250, 260)], OUT_OF_CONTROL, {10: 1000.0}), "hj75-2017")
    assert sub.co2_kg[0, 250:260].tolist() == [249.0] * 10
    assert set(names(sub.method)) == {"none", "hj75-ooc-180h-max"}
    assert sub.co2_kg[0, 260] == 260.0  # measured hours untouched
    assert sub.capture_rate[0, 0] == pytest.approx(290 / 300)


def test_hj75_long_out_of_control_run_takes_the_max_of_the_previous_720_valid_hours():
    # 250..279 (30 h): capture 270/300 = 90 % (>= 90 %), N > 24 -> 720 h window, which holds the spike
    sub = substitute(grid(300, [(250, 280)], OUT_OF_CONTROL, {10: 1000.0}), "hj75-2017")
    assert sub.co2_kg[0, 250] == 1000.0 and set(names(sub.method)) == {"none", "hj75-ooc-720h-max"}


def test_hj75_capture_rate_between_75_and_90_takes_the_2160_hour_max():
    # 20 stopped hours and a 40 h run: capture (300 - 20 - 40) / (300 - 20) = 240/280 = 85.7 % -> 2160 h window
    sub = substitute(grid(300, [(250, 290)], OUT_OF_CONTROL, {25: 1000.0}, stopped=range(20)), "hj75-2017")
    assert sub.co2_kg[0, 250] == 1000.0 and set(names(sub.method)) == {"none", "hj75-ooc-2160h-max"}
    assert (sub.co2_kg[0, :20] == 0.0).all() and (sub.method[0, :20] == 0).all()  # stopped: zero, not filled


def test_hj75_capture_rate_is_per_calendar_quarter_without_stopped_hours():
    """Two quarters of 1000 h. Q1: hours 0..299 missing (capture 700/1000 = 70 %), a spike of 9000 kg at 500.
    Q2: 100 stopped hours (1100..1199) and a 20-h out-of-control run at 1500..1519.
    Q2's rate = (1000 - 100 - 20) / (1000 - 100) = 880/900 = 97.8 % >= 90 % and N = 20 <= 24: the 180-h row, the
    last 180 valid hours before 1500 = 1320..1499, max 1499 kg. The old formula, (hours - stopped - invalid) / hours
    over the whole window, gave (2000 - 100 - 320) / 2000 = 79 %: the 2160-h row and the spike (9000 kg)."""
    quarter = np.repeat([0, 1], 1000)
    g = grid(2000, [(0, 300)], MISSING, {500: 9000.0}, stopped=range(1100, 1200), quarter=quarter)
    g.status[0, 1500:1520] = OUT_OF_CONTROL
    sub = substitute(g, "hj75-2017")
    assert sub.co2_kg[0, 1500:1520].tolist() == [1499.0] * 20
    assert set(names(sub.method[0, 1500:1520])) == {"hj75-ooc-180h-max"}
    assert sub.capture_rate[0, 1500] == pytest.approx(880 / 900) and sub.capture_rate[0, 10] == pytest.approx(0.7)


def test_hj75_below_75_percent_has_no_row_and_is_marked():
    # 300 h, 100-h run: capture 200/300 = 66.7 % < 75 %: the 2160-h maximum under its own code
    sub = substitute(grid(300, [(150, 250)], OUT_OF_CONTROL, {20: 800.0}), "hj75-2017")
    assert sub.co2_kg[0, 150] == 800.0 and set(names(sub.method[0, 150:250])) == {"hj75-ooc-2160h-max-below-75"}


def test_outage_with_no_history_is_left_missing_and_marked():
    sub = substitute(grid(50, [(0, 5)], OUT_OF_CONTROL), "hj75-2017")
    assert np.isnan(sub.co2_kg[0, :5]).all() and set(names(sub.method)) == {"none", "no-history"}
    assert not sub.substituted[0, :5].any()


# --- HJ 75-2017: missing -> concentration and flow, each on its own [HJ75-MISS, U] ----------------


def conc_flow(n, conc=10_000.0, flow=100_000.0):
    """Concentration [mg/m³] and flow [m³/h] of n measured hours: 10,000 x 100,000 x 1e-6 = 1,000 kg an hour."""
    return np.full(n, conc), np.full(n, flow)


def test_hj75_short_missing_run_takes_the_mean_of_the_hours_before_and_after_for_each_part():
    c, q = conc_flow(100)
    c[49], q[49] = 9_000.0, 90_000.0  # the hour before
    c[53], q[53] = 11_000.0, 130_000.0  # the hour after
    c[50:53] = q[50:53] = np.nan
    sub = substitute(grid(100, [(50, 53)], MISSING, conc=c, flow=q), "hj75-2017")
    # concentration (9,000 + 11,000)/2 = 10,000; flow (90,000 + 130,000)/2 = 110,000
    # -> 10,000 x 110,000 x 1e-6 = 1,100 kg
    assert sub.co2_mg_m3[0, 50:53].tolist() == [10_000.0] * 3 and sub.flow_m3_h[0, 50:53].tolist() == [110_000.0] * 3
    assert sub.co2_kg[0, 50:53] == pytest.approx([1100.0] * 3)
    assert set(names(sub.co2_method[0, 50:53])) == set(names(sub.flow_method[0, 50:53])) == {
        "hj75-missing-before-after-mean"}
    assert set(names(sub.method[0, 50:53])) == {"conc-x-flow"}


def test_hj75_missing_flow_alone_keeps_the_measured_concentration():
    c, q = conc_flow(100)
    c[50] = 12_000.0  # the concentration of the gap hour is valid
    q[50] = np.nan
    q[49], q[51] = 80_000.0, 120_000.0
    sub = substitute(grid(100, [(50, 51)], MISSING, conc=c, flow=q), "hj75-2017")
    # 12,000 x (80,000 + 120,000)/2 x 1e-6 = 12,000 x 100,000 x 1e-6 = 1,200 kg
    assert sub.co2_kg[0, 50] == pytest.approx(1200.0)
    assert names(sub.co2_method[0, 50]) == ["none"]
    assert names(sub.flow_method[0, 50]) == ["hj75-missing-before-after-mean"]


def test_hj75_long_missing_run_takes_the_720_hour_maximum_of_each_part():
    c, q = conc_flow(1000)
    c[100], c[500], q[200] = 15_000.0, 14_000.0, 150_000.0
    c[900:930] = q[900:930] = np.nan
    sub = substitute(grid(1000, [(900, 930)], MISSING, conc=c, flow=q), "hj75-2017")
    # capture 970/1000 = 97 %, N = 30 > 24: max of the 720 valid hours before 900 = hours 180..899:
    # concentration 14,000 (hour 500; the 15,000 at hour 100 is outside), flow 150,000 (hour 200)
    assert sub.co2_mg_m3[0, 900] == 14_000.0 and sub.flow_m3_h[0, 900] == 150_000.0
    assert sub.co2_kg[0, 900] == pytest.approx(14_000 * 150_000 * 1e-6)  # 2,100 kg
    assert set(names(sub.co2_method[0, 900:930])) == {"hj75-missing-720h-max"}


def test_hj75_out_of_control_and_missing_are_filled_by_their_own_tables():
    c, q = conc_flow(300)
    mass = np.full(300, 1000.0)
    mass[100] = 1500.0
    s = np.full(300, MEASURED, np.uint8)
    s[200:205] = OUT_OF_CONTROL  # QA: after a failed drift check
    s[250:255] = MISSING
    c[250:255] = q[250:255] = np.nan
    sub = substitute(HourGrid(s[None], mass[None], c[None], q[None]), "hj75-2017")
    # capture 290/300 >= 90 %, both runs 5 h: out of control -> max mass of the 180 valid hours before 200 (20..199,
    # holds 1,500 at 100) = 1,500 kg; missing -> before/after mean of concentration and flow = 1,000 kg
    assert sub.co2_kg[0, 200:205].tolist() == [1500.0] * 5 and sub.co2_kg[0, 250:255] == pytest.approx([1000.0] * 5)
    assert set(names(sub.method[0, 200:205])) == {"hj75-ooc-180h-max"}
    assert set(names(sub.method[0, 250:255])) == {"conc-x-flow"}
    assert (sub.co2_method[0, 200:205] == 0).all()  # out of control: the mass, not the parts


# --- EU MRR: Art. 45(3) concentration, Art. 45(4) flow ---------------------------------------------


def test_eu_missing_concentration_is_mean_plus_two_sigma_of_the_reporting_year_times_the_measured_flow():
    # year 0: a concentration of 100 must not count; year 1: valid 10, 12, 14 and a missing hour with flow 1,000.
    # mean 12, sample sigma sqrt(((-2)^2 + 0 + 2^2)/2) = 2 -> 12 + 2 x 2 = 16 mg/m3; 16 x 1,000 x 1e-6 = 0.016 kg
    c = np.array([100.0, 10.0, 12.0, 14.0, np.nan])
    q = np.array([1000.0] * 5)
    g = grid(5, [(4, 5)], MISSING, conc=c, flow=q, year=np.array([0, 1, 1, 1, 1]))
    sub = substitute(g, "eu-mrr")
    assert sub.co2_mg_m3[0, 4] == pytest.approx(16.0) and names(sub.co2_method[0, 4]) == ["eu-mean-plus-2sigma"]
    assert sub.co2_kg[0, 4] == pytest.approx(0.016) and names(sub.flow_method[0, 4]) == ["none"]


def test_eu_missing_flow_from_the_flow_load_ratio_of_as_many_hours_before_the_gap():
    # a 2-h flow gap (hours 4, 5); the 2 valid hours before (2, 3): flows 1,000 and 1,200 at loads 100 and 100:
    # ratio 2,200/200 = 11 m3/h per load unit; gap loads 90 and 110 -> 990 and 1,210 m3/h; concentration 10,000:
    # 10,000 x 990 x 1e-6 = 9.9 kg and 12.1 kg
    q = np.array([5000.0, 5000.0, 1000.0, 1200.0, np.nan, np.nan, 1000.0])
    load = np.array([100.0, 100.0, 100.0, 100.0, 90.0, 110.0, 100.0])
    c = np.full(7, 10_000.0)
    sub = substitute(grid(7, [(4, 6)], MISSING, conc=c, flow=q, load=load[None]), "eu-mrr")
    assert sub.flow_m3_h[0, 4:6] == pytest.approx([990.0, 1210.0]) and sub.co2_kg[0, 4:6] == pytest.approx([9.9, 12.1])
    assert set(names(sub.flow_method[0, 4:6])) == {"eu-flow-load-ratio"}
    # without a load channel: the mean flow of those 2 hours, (1,000 + 1,200)/2 = 1,100 m3/h
    sub = substitute(grid(7, [(4, 6)], MISSING, conc=c, flow=q), "eu-mrr")
    assert sub.flow_m3_h[0, 4:6].tolist() == [1100.0, 1100.0] and set(names(sub.flow_method[0, 4:6])) == {
        "eu-flow-prior-mean"}


# --- US Part 75: CO2 concentration (§75.35 -> §75.33(b)), load-binned flow (§75.33(c)) ------------


def us_grid(n, gap, values, flow=100_000.0, **kw):
    """CO2 concentration = ``values`` [mg/m³], missing in ``gap``; flow measured; mass = c x q x 1e-6."""
    c = np.asarray(values, float).copy()
    c[gap[0]:gap[1]] = np.nan
    q = np.full(n, flow)
    return grid(n, [gap], MISSING, conc=c, flow=q, **kw)


def test_us_short_gap_with_high_availability_averages_the_hours_around_it():
    # 100 h, gap 50..51: availability at 50 = 50/51 = 98 %, at 51 = 50/52 = 96 % (>= 95 %), gap <= 24 h:
    # (49 + 52)/2 = 50.5
    sub = substitute(us_grid(100, (50, 52), np.arange(100)), "us-part75")
    assert sub.co2_mg_m3[0, 50:52].tolist() == [50.5, 50.5]
    assert set(names(sub.co2_method[0, 50:52])) == {"us75-before-after-avg"}
    assert sub.co2_kg[0, 50] == pytest.approx(50.5 * 100_000 * 1e-6)


def test_us_long_gap_with_high_availability_takes_p90_or_average():
    # 1000 h, gap 900..929 (30 h): availability >= 900/930 = 96.8 % all through; lookback = 720 valid hours before 900:
    # 180..899; 90th percentile (linear) = 180 + 0.9 x 719 = 827.1; before/after (899 + 930)/2 = 914.5 -> the greater
    sub = substitute(us_grid(1000, (900, 930), np.arange(1000)), "us-part75")
    assert sub.co2_mg_m3[0, 900] == pytest.approx(914.5)
    assert set(names(sub.co2_method[0, 900:930])) == {"us75-p90-or-avg"}
    v = np.arange(1000.0)
    v[930] = 0.0  # a low value after the gap: the percentile wins, 827.1
    assert substitute(us_grid(1000, (900, 930), v), "us-part75").co2_mg_m3[0, 900] == pytest.approx(827.1)


def test_us_availability_is_computed_hourly_and_moves_the_gap_through_the_bands():
    """100 h, values = hour index, a 15-h gap at 40..54. Availability at hour h = 40 valid / (h + 1) operating:
    40: 97.6 %, 41: 95.2 % (>= 95 %, N <= 24: before/after (39 + 55)/2 = 47); 42: 93.0 %, 43: 90.9 % (90-95 %, N > 8:
    the greater of the 95th percentile of 0..39 = 0.95 x 39 = 37.05 and 47 -> 47); 44..49: 88.9 % .. 80.0 % (the
    lookback maximum, 39); 50..54: 78.4 % .. 72.7 % (< 80 %: the maximum potential concentration)."""
    g = us_grid(100, (40, 55), np.arange(100))
    sub = substitute(g, "us-part75", max_co2_mg_m3=np.array([500.0]))
    assert sub.co2_mg_m3[0, 40:55].tolist() == [47.0] * 4 + [39.0] * 6 + [500.0] * 5
    assert names(sub.co2_method[0, 40:55]) == (["us75-before-after-avg"] * 2 + ["us75-p95-or-avg"] * 2
                                               + ["us75-lookback-max"] * 6 + ["us75-max-potential"] * 5)


def test_us_missing_max_potential_is_refused_never_a_zero_hour():
    g = us_grid(100, (40, 55), np.arange(100))
    with pytest.raises(MaxPotentialMissing,
                       match=r"maximum potential CO2 concentration.*78\.4%.*never filled with 0 t"):
        substitute(g, "us-part75")
    sub = substitute(g, "us-part75", refuse="mark")  # for the monthly rollup: the hours stay missing, the month open
    assert sub.refused.tolist() == [True]
    assert np.isnan(sub.co2_kg[0, 50:55]).all() and set(names(sub.method[0, 50:55])) == {"max-potential-not-configured"}
    assert not sub.substituted[0, 50:55].any() and sub.substituted[0, 40:50].all()


def test_us_availability_counts_the_last_8760_operating_hours():
    """10,000 h: concentration missing 0..999, stopped 5000..5999, a 10-h gap at 9981..9990; values 100 except
    spikes of 1,000 at 9500 and 9600 and 50 at 9980 and 9991 (the hours around the gap).
    The last 8760 operating hours up to 9981 are 7982 hours from 1000 on (minus the 1000 stopped) and 778 of the
    missing hours before 1000: valid 7981 / 8760 = 91.1 % (and still 7981/8760 at 9990: each gap hour pushes one
    old missing hour out). 90-95 % with N = 10 > 8: the greater of the 95th percentile of the 720 valid hours
    before (9261..9980: 50, 717 x 100, 2 x 1,000 -> sorted[683.05] = 100) and (50 + 50)/2 = 50 -> 100.
    8760 clock hours would give >= 99.8 % (the average, 50); all the operating history 7981/8982 = 88.9 % (the
    maximum, 1,000)."""
    v = np.full(10_000, 100.0)
    v[[9500, 9600]] = 1000.0
    v[[9980, 9991]] = 50.0
    v[:1000] = np.nan
    g = us_grid(10_000, (9981, 9991), v, stopped=range(5000, 6000))
    g.status[0, :1000] = MISSING  # (these need the maximum potential value: no availability yet)
    sub = substitute(g, "us-part75", max_co2_mg_m3=np.array([20_000.0]))
    assert sub.co2_mg_m3[0, 9981:9991].tolist() == [100.0] * 10
    assert set(names(sub.co2_method[0, 9981:9991])) == {"us75-p95-or-avg"}


def test_us_flow_is_substituted_from_the_hours_in_the_same_load_range():
    """100 h: even hours at load 15 (range 1 of ten over 0..100) with flow 1,000 or 1,200 (h % 4 == 0 or not), odd
    hours at load 85 (range 8) with flow 5,000; a 2-h flow gap at 100, 101 with loads 12 and 88. Availability
    100/101 >= 95 %, N <= 24: the average of the lookback in the hour's range: range 1 (25 x 1,000 + 25 x 1,200)/50
    = 1,100; range 8: 5,000. Without a configured range, all 100 hours: (25 x 1,000 + 25 x 1,200 + 50 x 5,000)/100
    = 3,050."""
    h = np.arange(102)
    load = np.where(h % 2 == 0, 15.0, 85.0)
    load[100], load[101] = 12.0, 88.0
    q = np.where(h % 2 == 1, 5000.0, np.where(h % 4 == 0, 1000.0, 1200.0))
    q[100:] = np.nan
    g = grid(102, [(100, 102)], MISSING, conc=np.full(102, 10_000.0), flow=q, load=load[None])
    sub = substitute(g, "us-part75", load_range=(np.array([0.0]), np.array([100.0])))
    assert sub.flow_m3_h[0, 100:102].tolist() == [1100.0, 5000.0]
    assert set(names(sub.flow_method[0, 100:102])) == {"us75-flow-load-avg"}
    assert sub.co2_kg[0, 100:102] == pytest.approx([11.0, 50.0])  # 10,000 x 1,100 x 1e-6; 10,000 x 5,000 x 1e-6
    assert substitute(g, "us-part75").flow_m3_h[0, 100:102].tolist() == [3050.0, 3050.0]


# --- none -------------------------------------------------------------------------------------------


def test_none_leaves_missing_hours_missing_and_totals_measured_only():
    start = int(np.datetime64("2026-02-28T16:00", "ns").astype(np.int64))  # 2026-03-01 00:00 local
    g = grid(48, [(10, 20)], MISSING, conc=np.full(48, 1.0), flow=np.full(48, 1.0))
    sub = substitute(g, "none")
    assert np.isnan(sub.co2_kg[0, 10:20]).all() and (sub.method == 0).all() and not sub.substituted.any()
    measured = g.status == MEASURED
    _days, months = rollup(np.nan_to_num(sub.co2_kg), measured, sub.substituted, g.status != STOPPED, start,
                           SHANGHAI, CN)
    # measured: 0 + 1 + ... + 47 - (10 + ... + 19) = 1128 - 145 = 983 kg; nothing substituted; 10 hours missing
    assert months.total[0, 0] == months.measured_total[0, 0] == 983.0 and months.missing_hours[0, 0] == 10


def test_unknown_policy():
    with pytest.raises(KeyError, match="unknown substitution policy"):
        substitute(grid(2), "average")


# --- property: what any policy may and may not do ---------------------------------------------------


@st.composite
def hour_grids(draw):
    n_src, n_h = draw(st.integers(1, 3)), draw(st.integers(1, 80))
    status = np.array(draw(st.lists(st.sampled_from([STOPPED, MEASURED, MEASURED, MISSING, OUT_OF_CONTROL]),
                                    min_size=n_src * n_h, max_size=n_src * n_h)), np.uint8).reshape(n_src, n_h)
    pos = st.one_of(st.just(0.0), st.floats(1e-3, 1e6))  # physical magnitudes: kg, mg/m3, m3/h, load
    maybe = st.one_of(pos, st.just(np.nan))

    def arr(strategy):
        return np.array(draw(st.lists(strategy, min_size=n_src * n_h, max_size=n_src * n_h))).reshape(n_src, n_h)

    quarter = np.sort(np.array(draw(st.lists(st.integers(0, 2), min_size=n_h, max_size=n_h))))
    return HourGrid(status, arr(pos), arr(maybe), arr(maybe), arr(maybe), quarter=quarter, year=quarter // 2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hour_grids(), st.sampled_from(POLICY_NAMES))
def test_substitution_never_touches_stopped_or_measured_hours_and_adds_up(g, policy):
    n_src = g.status.shape[0]
    sub = substitute(g, policy, max_co2_mg_m3=np.full(n_src, 5e5), max_flow_m3_h=np.full(n_src, 5e6),
                     load_range=(np.zeros(n_src), np.full(n_src, 1e6)))
    measured, stopped = g.status == MEASURED, g.status == STOPPED
    assert np.array_equal(sub.co2_kg[measured], g.co2_kg[measured]) and (sub.method[measured] == 0).all()
    assert (sub.co2_kg[stopped] == 0).all() and (sub.method[stopped] == 0).all() and not sub.substituted[stopped].any()
    filled = sub.co2_kg[sub.substituted]
    assert np.isfinite(filled).all() and (filled >= 0).all()
    for part in (sub.co2_mg_m3, sub.flow_m3_h):
        assert (part[np.isfinite(part)] >= 0).all()
    assert np.isnan(sub.co2_kg[~measured & ~stopped & ~sub.substituted]).all()  # left missing, never 0 t
    start = int(np.datetime64("2026-01-01T00:00", "ns").astype(np.int64))
    _, months = rollup(np.nan_to_num(sub.co2_kg), measured, sub.substituted, ~stopped, start, SHANGHAI, CN)
    total = np.nansum(np.where(measured | sub.substituted, sub.co2_kg, 0.0), axis=1)
    assert months.total.sum(axis=1) == pytest.approx(total)
    assert months.total.sum(axis=1) == pytest.approx(months.measured_total.sum(axis=1)
                                                     + months.substituted_total.sum(axis=1))
    assert months.measured_total.sum(axis=1) == pytest.approx(np.where(measured, g.co2_kg, 0.0).sum(axis=1))


# --- rollups ---------------------------------------------------------------------------------------

FEB_START_UTC = int(np.datetime64("2026-01-31T16:00", "ns").astype(np.int64))  # = 2026-02-01 00:00 in UTC+8
MAR_START_UTC = int(np.datetime64("2026-02-28T16:00", "ns").astype(np.int64))  # = 2026-03-01 00:00 in UTC+8


def feb_month(valid_hours_per_day: list[int]):
    """One source, February 2026 in Shanghai; 1.0 kg per hour; day d has the given number of valid
    hours, the rest of its 24 hours substituted at 2.0 kg."""
    n = 28 * 24
    measured = np.zeros((1, n), bool)
    for d, k in enumerate(valid_hours_per_day):
        measured[0, d * 24 : d * 24 + k] = True
    substituted = ~measured
    values = np.where(measured, 1.0, 2.0)
    return rollup(values, measured, substituted, np.ones((1, n), bool), FEB_START_UTC, SHANGHAI, CN)


def test_days_follow_the_local_calendar_and_need_20_valid_hours():
    days, months = feb_month([20] + [19] + [24] * 26)
    assert days.labels[0] == np.datetime64("2026-02-01") and days.labels.size == 28
    assert days.valid[0].tolist()[:3] == [True, False, True]  # 4 invalid hours are allowed, 5 are not
    # day 0: 20 measured x 1.0 + 4 substituted x 2.0 = 28.0
    assert days.total[0, 0] == 28.0 and days.measured_total[0, 0] == 20.0 and days.substituted_hours[0, 0] == 4
    # day mean of the valid hours: 20 x 1.0 / 20 = 1.0; day 1 (19 valid hours) has no mean
    assert days.mean[0, 0] == 1.0 and np.isnan(days.mean[0, 1])
    assert months.labels.tolist() == [np.datetime64("2026-02", "M")]


def test_february_needs_23_valid_days():
    _, ok = feb_month([24] * 23 + [10] * 5)  # 5 invalid days <= 28 - 23
    assert ok.valid_parts[0, 0] == 23 and ok.valid[0, 0]
    _, short = feb_month([24] * 22 + [10] * 6)  # 6 > 5
    assert short.valid_parts[0, 0] == 22 and not short.valid[0, 0] and short.invalid[0, 0]
    # totals: 22 x 24 + 6 x 10 = 588 measured hours at 1.0; 84 substituted at 2.0 -> 588 + 168 = 756
    assert short.total[0, 0] == 756.0 and short.measured_hours[0, 0] == 588 and short.hours[0, 0] == 672
    assert short.completeness[0, 0] == pytest.approx(588 / 672)


def test_other_months_need_25_valid_days():
    n = 31 * 24
    for good_days, expected in ((25, True), (24, False)):  # 6 invalid days of 31 allowed, 7 not
        measured = np.zeros((1, n), bool)
        measured[0, : good_days * 24] = True
        _, months = rollup(np.ones((1, n)), measured, ~measured, np.ones((1, n), bool), MAR_START_UTC, SHANGHAI, CN)
        assert months.labels[0] == np.datetime64("2026-03", "M")
        assert months.valid[0, 0] == expected


def test_a_kiln_with_a_seven_day_shutdown_still_has_a_valid_month():
    """March (31 days): days 10..16 stopped, every other hour valid. 24 operating days, all valid, none invalid
    (<= 31 - 25 = 6 allowed): valid. Under the old rule (>= 25 valid days) the stop alone made it invalid (24)."""
    n = 31 * 24
    operating = np.ones((1, n), bool)
    operating[0, 10 * 24:17 * 24] = False
    days, months = rollup(np.where(operating, 1.0, 0.0), operating, np.zeros((1, n), bool), operating,
                          MAR_START_UTC, SHANGHAI, CN)
    assert (months.valid_parts[0, 0], months.operating_parts[0, 0], months.valid[0, 0]) == (24, 24, True)
    # stopped days are neither valid nor invalid
    assert not days.valid[0, 10:17].any() and not days.invalid[0, 10:17].any() and days.stopped[0, 10:17].all()
    # ... and with 7 invalid days on top of the stop the month is invalid: 7 > 6
    measured = operating.copy()
    for d in range(7):  # days 0..6 invalid: 5 missing hours each
        measured[0, d * 24:d * 24 + 5] = False
    _, months = rollup(np.ones((1, n)), measured, np.zeros((1, n), bool), operating, MAR_START_UTC, SHANGHAI, CN)
    assert (months.valid_parts[0, 0], months.invalid[0, 0]) == (17, True)


def test_a_partly_stopped_day_is_judged_on_its_operating_hours():
    # day 0: 12 operating hours, 10 valid (2 invalid <= 4): valid; day 1: 12 operating, 7 valid (5 invalid): invalid
    n = 48
    operating = np.zeros((1, n), bool)
    operating[0, 0:12] = operating[0, 24:36] = True
    measured = operating.copy()
    measured[0, 10:12] = False
    measured[0, 24:29] = False
    days, _ = rollup(np.ones((1, n)), measured, np.zeros((1, n), bool), operating, FEB_START_UTC, SHANGHAI, CN)
    assert days.valid[0].tolist() == [True, False] and days.invalid[0].tolist() == [False, True]


def test_a_month_without_operating_hours_is_stopped_not_invalid():
    n = 28 * 24
    none = np.zeros((1, n), bool)
    _, months = rollup(np.zeros((1, n)), none, none, none, FEB_START_UTC, SHANGHAI, CN)
    assert (months.valid[0, 0], months.invalid[0, 0], months.stopped[0, 0], months.valid_parts[0, 0]) == (
        False, False, True, 0)


def test_policies_without_day_or_month_rules_count_every_operating_period_valid():
    n = 48
    operating = np.ones((1, n), bool)
    operating[0, 24:] = False
    measured = np.zeros((1, n), bool)  # nothing valid at all on day 0: there is no rule to fail
    days, months = rollup(np.zeros((1, n)), measured, np.zeros((1, n), bool), operating, FEB_START_UTC, SHANGHAI, EU)
    assert days.valid[0].tolist() == [True, False] and days.stopped[0].tolist() == [False, True] and months.valid[0, 0]


def test_stopped_hours_add_nothing_and_are_not_missing():
    n = 48
    operating = np.ones((1, n), bool)
    operating[0, 24:] = False
    measured = operating.copy()
    values = np.where(measured, 3.0, 0.0)
    days, _ = rollup(values, measured, np.zeros((1, n), bool), operating, FEB_START_UTC, SHANGHAI, CN)
    assert days.total[0].tolist() == [72.0, 0.0]
    assert days.operating_hours[0].tolist() == [24, 0] and days.missing_hours[0].tolist() == [0, 0]
    assert np.isnan(days.completeness[0, 1])
