"""Data-quality and falsification indicators (streams/kernels/indicators/): hand-built grids with
hand-computed findings, and a seeded, noisy three-day plant that raises nothing until a fault is
injected, after which exactly the expected findings appear."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from schemas.quantities import Flag
from schemas.site import EmissionSource
from streams.kernels.aggregate import HOUR_NS, MINUTE_NS, readings_to_minutes
from streams.kernels.indicators import (
    AFTER_CALIBRATION,
    NEAR_DEADLINE,
    NO_DATA,
    CO2O2Pairs,
    Findings,
    Grid,
    IndicatorPolicy,
    calibration_maintenance,
    co2_o2_inconsistency,
    effective_co2max,
    flatline,
    implied_co2_pct,
    level_shifts,
    low_variance,
    out_of_range,
    repeated_profiles,
    scan,
)
from streams.kernels.indicators.grid import _runs, _window_max
from streams.kernels.plausibility import series_bounds
from streams.kernels.policy import POLICIES

CN = POLICIES["cn-hj75"]
S = 10**9
#: 2026-01-29 00:00 in Asia/Shanghai (2026-01-28 16:00 UTC). The local month ends 72 h later.
T0 = 1_769_616_000 * S
TZ = "Asia/Shanghai"


def rows(f: Findings) -> list[tuple]:
    """(rule, series, start, end) of each finding, for exact comparisons."""
    return list(zip(f.rule_name.tolist(), f.series.tolist(), f.start.tolist(), f.end.tolist(), strict=True))


# --- helpers --------------------------------------------------------------------------------------


def test_runs_are_half_open_per_row():
    mask = np.array([[0, 1, 1, 0, 1], [1, 1, 1, 0, 0]], dtype=bool)
    r, s, e = _runs(mask)
    assert r.tolist() == [0, 0, 1] and s.tolist() == [1, 4, 0] and e.tolist() == [3, 5, 3]


def test_window_max_matches_a_sliding_window():
    x = np.random.default_rng(3).normal(size=(2, 40))
    for w in (1, 2, 5, 7, 8, 13):
        assert np.array_equal(_window_max(x, w), np.lib.stride_tricks.sliding_window_view(x, w, axis=1).max(axis=2))


def test_findings_concat_names_and_times():
    f = flatline([[2.0, 2.0, 2.0]], policy=IndicatorPolicy(flat_min_minutes=2), start_ns=T0)
    both = Findings.concat([Findings.empty(), f, f])
    assert len(both) == 2 and both.rule_name.tolist() == ["flatline", "flatline"]
    assert both.start_time_ns[0] == T0 and both.end_time_ns[0] == T0 + 3 * MINUTE_NS  # [0, 3) minutes


def test_policy_is_frozen_and_validated():
    p = IndicatorPolicy()
    with pytest.raises(ValidationError, match="frozen"):
        p.shift_z = 1.0  # frozen
    with pytest.raises(ValidationError, match="cm_max_day_share"):
        IndicatorPolicy(cm_max_day_share=1.5)  # a share above 1
    with pytest.raises(ValidationError, match="unknown_threshold"):
        IndicatorPolicy(unknown_threshold=1)  # extra fields are refused


# --- 1. flatline ----------------------------------------------------------------------------------


def test_flatline_by_hand():
    x = [[1.0, 1.1, 2.0, 2.0, 2.0, 2.0, 1.3, 1.3, 1.4]]
    policy = IndicatorPolicy(flat_min_minutes=3)
    f = flatline(x, policy=policy)
    # 2.0 repeats in minutes 2..5 -> [2, 6), 4 minutes >= 3. 1.3 in minutes 6..7 is only 2 minutes.
    assert rows(f) == [("flatline", 0, 2, 6)]
    assert f.value.tolist() == [4.0] and f.threshold.tolist() == [3.0]
    # The source stopped in minute 4: the repeats 2-3 and 5 are 2 and 1 minutes long, nothing reported.
    operating = np.ones((1, 9), bool)
    operating[0, 4] = False
    assert len(flatline(x, operating, policy=policy)) == 0
    # On an hour grid a run needs max(2, ceil(30 min / 60 min)) = 2 hours: 1.3, 1.3 counts (120 min).
    h = flatline(x, policy=IndicatorPolicy(), period_ns=HOUR_NS)
    assert rows(h) == [("flatline", 0, 2, 6), ("flatline", 0, 6, 8)]
    assert h.value.tolist() == [240.0, 120.0] and h.threshold.tolist() == [120.0, 120.0]


def test_flatline_tolerance_is_relative():
    x = [[5.0, 5.000001, 5.000002, 5.000003]]
    # |step| = 1e-6 <= 1e-6 x 5.000003 = 5.0e-6: one run of 4 minutes.
    assert rows(flatline(x, policy=IndicatorPolicy(flat_min_minutes=3))) == [("flatline", 0, 0, 4)]
    # With rel 1e-8 the tolerance is 5.0e-8 < 1e-6: nothing repeats.
    assert len(flatline(x, policy=IndicatorPolicy(flat_min_minutes=3, flat_rel_tol=1e-8))) == 0


# --- 2. out of range ------------------------------------------------------------------------------


def test_out_of_range_by_hand():
    low, high = series_bounds([("a19001", "%"), ("a05001", "%")])  # O2 [0, 21], CO2 [0, 100]
    x = np.array([[6.0, 22.0, 22.5, 6.0, -0.5, 6.0], [10.0, 10.0, np.nan, 10.0, 10.0, 10.0]])
    flag = np.zeros((2, 6), np.uint8)
    flag[1, 2] = Flag.T  # the analyser's own over-range flag, no value
    f = out_of_range(x, low, high, flag).sorted()
    assert rows(f) == [("out_of_range", 0, 1, 3), ("out_of_range", 0, 4, 5), ("out_of_range", 1, 2, 3)]
    assert f.value[0] == 22.5 and f.threshold[0] == 21.0  # the most extreme of 22.0, 22.5 vs the high bound
    assert f.value[1] == -0.5 and f.threshold[1] == 0.0
    assert np.isnan(f.value[2]) and f.threshold[2] == 100.0  # T without a value: reported against high


# --- 3. CO2 vs O2 ---------------------------------------------------------------------------------


def test_implied_co2_and_effective_co2max_by_hand():
    # coal 18.8 x (20.9 - 6)/20.9 = 18.8 x 14.9/20.9 = 13.40287; natural gas 11.7 x 17.9/20.9 = 10.02057
    assert implied_co2_pct(6.0, 18.8) == pytest.approx(13.402871, rel=1e-6)
    assert implied_co2_pct(3.0, 11.7) == pytest.approx(10.020574, rel=1e-6)
    # a kiln reading 20 % CO2 at 6 % O2: 20 x 20.9/14.9 = 28.0537 (calcination CO2 on top of the fuel's)
    eff = effective_co2max([[20.0, 20.0, 20.0]], [[6.0, 6.0, 16.0]])  # O2 16 > 14: not used
    assert eff.tolist() == pytest.approx([28.053691], rel=1e-6)


def test_co2_o2_inconsistency_by_hand():
    # O2 6.0 -> implied 13.40287; tolerance max(0.05 x 13.40287 = 0.670, 0.75) = 0.75 vol %.
    co2 = [[13.4, 13.3, 12.06, 12.06, 12.06, 12.06, 13.5, 12.0, 13.4, 5.0]]
    o2 = [[6.0] * 9 + [15.0]]  # the last hour is above the 14 % O2 cap: not judged
    f = co2_o2_inconsistency(co2, o2, [18.8], co2_series=[3], o2_series=[4], start_ns=T0)
    # hours 2-5: 12.06 - 13.40287 = -1.34287 (-10 %), 4 h >= 3 h. Hour 7 (-1.40) is alone.
    assert rows(f) == [("co2_o2_inconsistent", 3, 2, 6)]
    assert f.value[0] == pytest.approx(-1.342871, rel=1e-6) and f.threshold[0] == 0.75
    assert f.ref.tolist() == [4] and f.start_time_ns[0] == T0 + 2 * HOUR_NS


def test_co2o2_pairs_from_sources():
    src = EmissionSource(id="kiln1", name="Kiln 1", duct_area_m2=10.0, velocity_field_coefficient=1.0,
                         moisture_pct=8.0, static_pressure_kpa=0.0, ambient_pressure={"kpa": 101.3}, channels=[
        {"id": "co2", "quantity": "a05001", "unit": "mg/m3", "basis": "dry"},
        {"id": "o2", "quantity": "a19001", "unit": "%", "basis": "dry"},
        {"id": "v", "quantity": "a01011", "unit": "m/s"},
        {"id": "t", "quantity": "a01012", "unit": "degC"},
    ])
    boiler = EmissionSource(id="b1", name="Boiler", duct_area_m2=20.0, channels=[
        {"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
        {"id": "o2", "quantity": "a19001", "unit": "%"},
        {"id": "q", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}])
    series_of = {("kiln1", "co2"): 0, ("kiln1", "o2"): 1, ("kiln1", "v"): 2, ("b1", "co2"): 3, ("b1", "o2"): 4}
    p = CO2O2Pairs.from_sources([src, boiler], series_of, {"kiln1": 28.0, "b1": "coal"})
    assert p.co2.tolist() == [0, 3] and p.o2.tolist() == [1, 4] and p.co2max_pct.tolist() == [28.0, 18.8]
    # 1 vol % CO2 = 1e4 x 44.009/22.4 = 19646.875 mg/m3 (HJ 212 Eq. 20)
    assert p.co2_to_pct.tolist() == pytest.approx([1 / 19646.875, 1.0])
    assert CO2O2Pairs.from_sources([src], series_of, {}).co2.size == 0  # not configured: skipped
    with pytest.raises(ValueError, match="fuel family"):
        CO2O2Pairs.from_sources([src], series_of, {"kiln1": "peat"})


# --- 4. level shifts ------------------------------------------------------------------------------

#: Six-hour noise pattern with zero mean and zero slope: sum (j - 2.5) x_j = -0.25 + 0.15 - 0.15 + 0.25 = 0.
PATTERN = np.array([0.1, -0.1, 0.0, 0.0, -0.1, 0.1])
W6 = IndicatorPolicy(shift_window_h=6)  # six-hour windows, matching the pattern


def test_level_shift_by_hand():
    noise = np.tile(PATTERN, 4)
    x = np.stack([np.r_[np.full(12, 10.0), np.full(12, 12.0)] + noise] * 2)
    # At boundary 12 both 6-hour lines are flat (slope 0), at 10 and at 12: step 2.0. Residual SS per
    # window = 4 x 0.01 = 0.04, pooled sqrt(0.08 / (12 - 4)) = 0.1. |diffs|: per block 0.2, 0.1, 0, 0.1,
    # 0.2, junctions 0, 2.0, 0 -> 23 values, median 0.1 -> noise 1.4826 x 0.1 / sqrt 2 = 0.104836.
    # z = 2.0 / max(0.1, 0.104836) = 19.0774.
    calibrating = np.zeros((2, 24), bool)
    calibrating[0, 8] = True  # within 6 h before the step: marked
    calibrating[1, 3] = True  # 9 h before: not marked
    near = np.arange(24) >= 10  # e.g. the last hours of the month
    f = level_shifts(x, calibrating=calibrating, near_deadline=near, policy=W6)
    assert rows(f) == [("level_shift", 0, 12, 18), ("level_shift", 1, 12, 18)]  # one finding per step
    assert f.value.tolist() == pytest.approx([19.0774, 19.0774], rel=1e-5) and f.threshold.tolist() == [6.0, 6.0]
    assert f.context.tolist() == [NEAR_DEADLINE | AFTER_CALIBRATION, NEAR_DEADLINE]
    down = level_shifts(x[:, ::-1], policy=W6)  # the same step downwards: boundary 12 again, negative z
    assert rows(down)[0][2] == 12 and down.value[0] == pytest.approx(-19.0774, rel=1e-5)


def test_level_shift_ignores_ramps_and_small_steps():
    t = np.arange(24)
    # A ramp of 0.5 per hour: both lines have slope 0.5 and meet at the boundary, step 0 (a difference
    # of window means would read 3.0 / 0.1 = 30 spreads).
    assert len(level_shifts([10.0 + 0.5 * t + np.tile(PATTERN, 4)], policy=W6)) == 0
    # A 1.5 % step (10 -> 10.15) under almost no noise: z = 143 but below shift_min_rel = 2 %.
    x = np.r_[np.full(12, 10.0), np.full(12, 10.15)] + np.tile(PATTERN, 4) / 100
    assert len(level_shifts([x], policy=W6)) == 0
    w6_1pct = IndicatorPolicy(shift_window_h=6, shift_min_rel=0.01)
    assert rows(level_shifts([x], policy=w6_1pct)) == [("level_shift", 0, 12, 18)]
    # Gaps: with hours 12-14 missing the after-window holds 3 of 6 < 80 % -> not judged there.
    y = np.r_[np.full(12, 10.0), np.full(12, 12.0)] + np.tile(PATTERN, 4)
    y[12:15] = np.nan
    assert all(r[2] != 12 for r in rows(level_shifts([y], policy=W6)))


# --- 5. repeated daily profiles -------------------------------------------------------------------


def test_repeated_profile_exact_copy():
    rng = np.random.default_rng(5)
    days = rng.normal(100.0, 10.0, (4, 24))
    days[3] = days[1]  # day 3 is a copy of day 1
    f = repeated_profiles(days.reshape(1, -1), 24)
    assert rows(f) == [("repeated_profile", 0, 72, 96)] and f.ref.tolist() == [24]
    assert f.value.tolist() == [0.0] and 0 < f.threshold[0] <= 0.005


def test_repeated_profile_near_copy_by_hand():
    a = np.tile([100.0, 110.0], 12)  # mean 105, rms sqrt((100² + 110²)/2) = 105.1190
    b = np.random.default_rng(1).normal(100.0, 10.0, 24)
    x = np.r_[a, b, a * 1.001][None]
    # day 2 vs day 0: correlation 1, rms difference 0.001 x 105.1190 = 0.1051190, / 105 = 0.00100113.
    # Day pairs' relative rms: (0,1) and (1,2) large, (0,2) 0.001: median large -> limit 0.005.
    f = repeated_profiles(x, 24)
    assert rows(f) == [("repeated_profile", 0, 48, 72)] and f.ref.tolist() == [0]
    assert f.value[0] == pytest.approx(0.00100113, rel=1e-5) and f.threshold[0] == 0.005
    # Same shape 2 units higher: correlation 1 but rms 2 / 105 = 0.019 > 0.005: not a copy.
    assert len(repeated_profiles(np.r_[a, b, a + 2.0][None], 24)) == 0
    # Constant days (zero variance) are left to flatline and low_variance.
    assert len(repeated_profiles(np.full((1, 72), 7.0), 24)) == 0


# --- 6. low variance ------------------------------------------------------------------------------


def test_low_variance_by_hand():
    day = np.tile([105.0, 95.0], 12)  # mean 100, population std 5: CV 0.05
    quiet = np.tile([100.2, 99.8], 12)  # CV 0.002
    x = np.r_[np.tile(day, 6), quiet, np.tile(day, 3)][None]  # day 6 is the quiet one
    # typical = median of nine 0.05 and one 0.002 = 0.05; floor 0.1 x 0.05 = 0.005 > 0.002
    f = low_variance(x, 24)
    assert rows(f) == [("low_variance", 0, 144, 168)]
    assert f.value[0] == pytest.approx(0.002) and f.threshold[0] == pytest.approx(0.005)
    assert len(low_variance(x, 24, typical_cv=[0.01])) == 0  # floor 0.001 from a given typical CV
    assert len(low_variance(x, 24, policy=IndicatorPolicy(lowvar_abs_cv=0.06))) == 10  # absolute floor
    sparse = x.copy()
    sparse[0, 144:158] = np.nan  # 10 of 24 hours left: below 50 % coverage, not judged
    assert len(low_variance(sparse, 24)) == 0


# --- 7. calibration and maintenance flags ---------------------------------------------------------


def test_calibration_maintenance_by_hand():
    flag = np.zeros((2, 1440), np.uint8)
    flag[0, 100:110] = Flag.C  # 10 min
    for b in range(14):  # 14 maintenance runs of 10 min, every 90 min from 02:00
        flag[0, 120 + 90 * b : 130 + 90 * b] = Flag.M
    flag[1, 500:520] = Flag.M  # one run of 20 min
    flag[1, 600:615] = Flag.C  # exactly 15 min: not longer than 15
    f = calibration_maintenance(flag, 1440).sorted()
    # series 0: (10 + 140) / 1440 = 0.104167 > 0.10, no run over 15 min; series 1: one run of 20 min,
    # share 35 / 1440 = 0.0243.
    assert rows(f) == [("cm_day_share", 0, 0, 1440), ("cm_run_long", 1, 500, 520)]
    assert f.value.tolist() == pytest.approx([150 / 1440, 20.0]) and f.threshold.tolist() == [0.10, 15.0]


def test_calibration_run_across_midnight_is_one_run():
    flag = np.zeros((1, 2880), np.uint8)
    flag[0, 1430:1450] = Flag.C
    assert rows(calibration_maintenance(flag, 1440)) == [("cm_run_long", 0, 1430, 1450)]


# --- grids from the kernels' own tables ----------------------------------------------------------


def test_grid_from_minute_table():
    t = T0 + np.arange(12) * 5 * S  # one reading per 5-s slot
    ser = np.r_[np.zeros(36, int), np.ones(12, int)]
    ts = np.r_[t, t + 60 * S, t + 120 * S, t]
    flag = np.r_[np.zeros(12), np.zeros(8), np.full(4, Flag.C), np.full(12, Flag.F), np.zeros(12)].astype(np.uint8)
    minutes = readings_to_minutes(ser, ts, np.full(48, 5.0), flag).close(CN)
    g = Grid.from_table(minutes, 2, T0, 3)
    # series 0: minute 0 valid; minute 1 has 8 N + 4 C (not 12 valid readings: NaN), mostly N, calibrating;
    # minute 2 all F: stopped. Series 1: minute 0 only.
    assert np.array_equal(g.mean, [[5.0, np.nan, np.nan], [5.0, np.nan, np.nan]], equal_nan=True)
    assert g.flag.tolist() == [[Flag.N, Flag.N, Flag.F], [Flag.N, NO_DATA, NO_DATA]]
    assert g.calibrating.tolist() == [[False, True, False], [False, False, False]]
    assert g.operating.tolist() == [[True, True, False], [True, False, False]]


# --- a seeded, noisy plant: nothing when clean, exactly the injected faults otherwise --------------

DAYS = 3
N_MIN = DAYS * 1440
CHANNELS = [("a05001", "%"), ("a19001", "%"), ("a01011", "m/s")] * 2  # CO2, O2, velocity of two stacks
SOURCES = [  # complete stacks (the site model refuses others); the pairs use only their CO2 and O2 channels
    EmissionSource(id=f"s{i}", name=f"Stack {i}", duct_area_m2=10.0, velocity_field_coefficient=1.0,
                   moisture_pct=8.0, static_pressure_kpa=0.0, ambient_pressure={"kpa": 101.3}, channels=[
        {"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
        {"id": "o2", "quantity": "a19001", "unit": "%", "basis": "dry"},
        {"id": "v", "quantity": "a01011", "unit": "m/s"},
        {"id": "t", "quantity": "a01012", "unit": "degC"},
    ])
    for i in range(2)
]
SERIES_OF = {(f"s{i}", c): 3 * i + j for i in range(2) for j, c in enumerate(("co2", "o2", "v"))}
PAIRS = CO2O2Pairs.from_sources(SOURCES, SERIES_OF, {"s0": "coal", "s1": "coal"})
BOUNDS = series_bounds(CHANNELS)


def smooth_noise(rng, size, n, sigma, tau=10):
    """Autocorrelated noise (white noise through an exponential kernel of ``tau`` minutes), std ``sigma``."""
    k = np.exp(-np.arange(5 * tau) / tau)
    k /= np.sqrt((k**2).sum())
    w = rng.normal(0.0, sigma, (size, n + k.size - 1))
    return np.stack([np.convolve(r, k, mode="valid") for r in w])


def plant(seed):
    """Minute means and flags of two coal-fired stacks: O2 6 % +- 0.2, CO2 from O2 through CO2max 18.8
    plus 0.05 analyser noise, velocity 15 m/s with a 15 % daily load cycle; a 5-minute autocalibration
    of CO2 and O2 at 08:00 every day (flag C, no value)."""
    rng = np.random.default_rng(seed)
    o2 = 6.0 + smooth_noise(rng, 2, N_MIN, 0.2)
    co2 = 18.8 * (20.9 - o2) / 20.9 + rng.normal(0.0, 0.05, (2, N_MIN))
    vel = 15.0 * (1 + 0.15 * np.sin(2 * np.pi * np.arange(N_MIN) / 1440)) + smooth_noise(rng, 2, N_MIN, 0.3)
    mean = np.stack([co2[0], o2[0], vel[0], co2[1], o2[1], vel[1]])
    flag = np.zeros(mean.shape, np.uint8)
    for d in range(DAYS):
        flag[[0, 1, 3, 4], d * 1440 + 480 : d * 1440 + 485] = Flag.C
    return mean, flag


def hours_of(mean, flag):
    """Hour grid as the kernels would close it: mean of >= 45 valid minutes, dominant flag, any C."""
    valid = (flag == Flag.N) & np.isfinite(mean)
    m = np.where(valid, mean, 0.0).reshape(6, -1, 60)
    n = valid.reshape(6, -1, 60).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        hour = np.where(n >= 45, m.sum(axis=2) / n, np.nan)
    counts = (flag.reshape(6, -1, 60)[..., None] == np.arange(8)).sum(axis=2)
    f = flag.reshape(6, -1, 60)
    return Grid(hour, T0, HOUR_NS, np.argmax(counts, axis=2), (f != Flag.F).any(axis=2), (f == Flag.C).any(axis=2))


def run_scan(mean, flag, **kw):
    mean = np.where(flag == Flag.N, mean, np.nan)
    return scan(Grid(mean, T0, MINUTE_NS, flag), hours_of(mean, flag), tz=TZ, bounds=BOUNDS, pairs=PAIRS, **kw)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_clean_noisy_plant_raises_nothing(seed):
    assert rows(run_scan(*plant(seed))) == []


def test_stuck_o2_analyser():
    mean, flag = plant(11)
    mean[1, 2000:2100] = 6.0  # O2 of stack 0 frozen for 100 minutes
    f = run_scan(mean, flag)
    assert rows(f) == [("flatline", 1, 2000, 2100)] and f.value.tolist() == [100.0]


def test_o2_out_of_range():
    mean, flag = plant(11)
    mean[1, 3000:3005] = 23.0  # O2 above air for 5 minutes (a mis-scaled register)
    # The hour's O2 mean (55 x 6 + 5 x 23)/60 = 7.42 shifts the implied CO2 by 1.27 > 0.75, but for one
    # hour only (< 3 h): no CO2/O2 finding.
    f = run_scan(mean, flag)
    assert rows(f) == [("out_of_range", 1, 3000, 3005)]
    assert f.value.tolist() == [23.0] and f.threshold.tolist() == [21.0]


def test_co2_analyser_reading_ten_percent_low_for_a_day():
    mean, flag = plant(11)
    mean[0, 1440:2880] *= 0.9  # stack 0's CO2 reads 10 % low on day 1 (implied CO2 ~13.4: about -1.34)
    f = run_scan(mean, flag)
    # level shifts: 8-hour windows after each boundary
    assert rows(f) == [("co2_o2_inconsistent", 0, 24, 48), ("level_shift", 0, 24, 32), ("level_shift", 0, 48, 56)]
    co2o2, down, up = f.select([0]), f.select([1]), f.select([2])
    assert co2o2.value[0] == pytest.approx(-1.34, abs=0.05) and co2o2.ref[0] == 1  # against stack 0's O2
    assert down.value[0] < -6 and up.value[0] > 6
    # Both steps lie within 72 h before the local month end (hour 72): 48 h and 24 h before it.
    assert f.context.tolist() == [0, NEAR_DEADLINE, NEAR_DEADLINE]
    near36 = run_scan(mean, flag, policy=IndicatorPolicy(deadline_window_h=36))
    assert near36.context.tolist() == [0, 0, NEAR_DEADLINE]


def test_day_copied_from_an_earlier_day():
    mean, flag = plant(11)
    mean[3:6, 2880:4320] = mean[3:6, 0:1440]  # stack 1's day 2 is day 0 pasted in
    flag[3:6, 2880:4320] = flag[3:6, 0:1440]
    f = run_scan(mean, flag)
    assert rows(f) == [("repeated_profile", s, 48, 72) for s in (3, 4, 5)]
    assert f.ref.tolist() == [0, 0, 0] and f.value.max() < 1e-8  # 0 up to rounding of the pair sums


def test_day_smoothed_to_a_constant():
    mean, flag = plant(11)
    rng = np.random.default_rng(99)
    mean[4, 1440:2880] = 6.0 + rng.normal(0.0, 0.001, 1440)  # stack 1's O2 typed in as 6.0 +- 0.001
    f = run_scan(mean, flag)
    assert rows(f) == [("low_variance", 4, 1440, 2880)]
    assert f.value[0] < 0.001 and f.threshold[0] > 0.002  # CV ~0.00017 vs 0.1 x a typical ~0.03


def test_calibration_flags_hiding_data():
    mean, flag = plant(11)
    flag[0, 600:630] = Flag.C  # 30 minutes of "calibration" at 10:00 on stack 0's CO2
    for b in range(12):  # and 12 maintenance marks of 15 min, every 2 h, on stack 0's O2 on day 0
        flag[1, 60 + 120 * b : 75 + 120 * b] = Flag.M
    f = run_scan(mean, flag)
    # CO2: one run of 30 > 15 min (share (30 + 5)/1440 = 2.4 %). O2: runs of 15 min are not longer than
    # 15, but (180 + 5)/1440 = 12.8 % of day 0 is C or M > 10 %.
    assert rows(f) == [("cm_run_long", 0, 600, 630), ("cm_day_share", 1, 0, 1440)]
    assert f.value.tolist() == pytest.approx([30.0, 185 / 1440])


def test_daily_rules_follow_local_midnight():
    # A minute grid starting at local noon: day 0 of the grid is the second half of a local day.
    flag = np.zeros((1, 1440), np.uint8)
    for b in range(15):  # 15 x 10 min in the afternoon: 150/1440 = 10.4 % of that local day
        flag[0, 40 * b : 40 * b + 10] = Flag.M
    g = Grid(np.full((1, 1440), np.nan), T0 + 12 * 3600 * S, MINUTE_NS, flag)
    f = scan(g, tz=TZ)
    # Day [-720, 720) on the grid, clipped at its start; the next local day starts at grid minute 720.
    assert rows(f) == [("cm_day_share", 0, 0, 720)]
