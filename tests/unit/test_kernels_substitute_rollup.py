"""Substitution policies and day/month rollups, with hand-worked expectations."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pytest

from streams.kernels.policy import POLICIES
from streams.kernels.rollup import rollup
from streams.kernels.substitute import METHODS, substitute

CN = POLICIES["cn-hj75"]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def series_with_gap(n_hours, gap, spike_at=None, stopped=()):
    """values = hour index (a rising mass), one missing gap [a, b), optional spike and stopped hours."""
    values = np.arange(n_hours, dtype=float)
    if spike_at is not None:
        values[spike_at] = 1000.0
    measured = np.ones(n_hours, bool)
    missing = np.zeros(n_hours, bool)
    measured[gap[0] : gap[1]] = False
    missing[gap[0] : gap[1]] = True
    for h in stopped:
        measured[h] = missing[h] = False
    return values[None], measured[None], missing[None]


def method_names(sub):
    return {METHODS[int(c)] for c in np.unique(sub.method)}


# --- HJ 75-2017 (unconfirmed rule, as documented) ------------------------------------------------


def test_hj75_short_outage_takes_the_max_of_the_previous_180_valid_hours():
    # 300 h, gap 250..259 (10 h): capture (300 - 0 - 10)/300 = 96.7 % >= 90 %, N <= 24 -> 180 h window:
    # valid hours 70..249, max 249. The spike of 1000 at hour 10 is outside the window.
    sub = substitute(*series_with_gap(300, (250, 260), spike_at=10), policy="hj75-2017")
    assert sub.values[0, 250:260].tolist() == [249.0] * 10
    assert method_names(sub) == {"none", "hj75-180h-max"}
    assert sub.values[0, 260] == 260.0  # measured hours untouched


def test_hj75_long_outage_takes_the_max_of_the_previous_720_valid_hours():
    # gap 250..279 (30 h): capture 270/300 = 90 % (>= 90 %), N > 24 -> 720 h window, which holds the spike
    sub = substitute(*series_with_gap(300, (250, 280), spike_at=10), policy="hj75-2017")
    assert sub.values[0, 250] == 1000.0 and method_names(sub) == {"none", "hj75-720h-max"}


def test_hj75_low_capture_rate_takes_the_2160_hour_max():
    # 20 stopped hours and a 40 h gap: capture (300 - 20 - 40)/300 = 80 % -> 2160 h window
    sub = substitute(*series_with_gap(300, (250, 290), spike_at=25, stopped=range(20)), policy="hj75-2017")
    assert sub.values[0, 250] == 1000.0 and method_names(sub) == {"none", "hj75-2160h-max"}
    assert (sub.values[0, :20] == 0.0).all() and (sub.method[0, :20] == 0).all()  # stopped: zero, not filled


def test_outage_with_no_history_is_left_missing_and_marked():
    sub = substitute(*series_with_gap(50, (0, 5)), policy="hj75-2017")
    assert np.isnan(sub.values[0, :5]).all() and method_names(sub) == {"none", "no-history"}
    assert not sub.substituted[0, :5].any()


# --- EU MRR mean + 2 sigma -----------------------------------------------------------------------


def test_eu_mean_plus_two_sigma():
    # valid 10, 12, 14: mean 12, sample standard deviation sqrt(((-2)^2 + 0 + 2^2)/2) = 2 -> 12 + 2 x 2 = 16
    values = np.array([[10.0, 12.0, 14.0, np.nan]])
    measured = np.array([[True, True, True, False]])
    sub = substitute(values, measured, ~measured, policy="eu-mrr")
    assert sub.values[0, 3] == pytest.approx(16.0) and METHODS[int(sub.method[0, 3])] == "eu-mean-plus-2sigma"


# --- US Part 75 availability bands ---------------------------------------------------------------


def test_us_short_gap_with_high_availability_averages_the_hours_around_it():
    # 100 h, gap 50..51: PMA 98/100 >= 95 %, gap <= 24 h -> (49 + 52)/2 = 50.5
    sub = substitute(*series_with_gap(100, (50, 52)), policy="us-part75")
    assert sub.values[0, 50:52].tolist() == [50.5, 50.5]
    assert method_names(sub) == {"none", "us75-before-after-avg"}


def test_us_long_gap_with_high_availability_takes_p90_or_average():
    # 1000 h, gap 900..929 (30 h): PMA 970/1000 = 97 %; lookback = 720 valid hours before 900: 180..899;
    # 90th percentile (linear) = 180 + 0.9 x 719 = 827.1; before/after (899 + 930)/2 = 914.5 -> the greater
    sub = substitute(*series_with_gap(1000, (900, 930)), policy="us-part75")
    assert sub.values[0, 900] == pytest.approx(914.5) and method_names(sub) == {"none", "us75-p90-or-avg"}
    # with a low value after the gap the percentile wins: 827.1
    v, m, miss = series_with_gap(1000, (900, 930))
    v[0, 930] = 0.0
    sub = substitute(v, m, miss, policy="us-part75")
    assert sub.values[0, 900] == pytest.approx(827.1)


def test_us_availability_bands_below_95():
    # 100 h with a 15 h gap: PMA 85 % -> maximum of the lookback (hours 0..39 -> 39)... gap at 40..54
    sub = substitute(*series_with_gap(100, (40, 55)), policy="us-part75")
    assert sub.values[0, 40] == 39.0 and method_names(sub) == {"none", "us75-lookback-max"}
    # 25 h gap: PMA 75 % -> maximum potential value, which must be configured
    with pytest.raises(ValueError, match="max_potential"):
        substitute(*series_with_gap(100, (40, 65)), policy="us-part75")
    sub = substitute(*series_with_gap(100, (40, 65)), policy="us-part75", max_potential=500.0)
    assert sub.values[0, 40] == 500.0 and method_names(sub) == {"none", "us75-max-potential"}


def test_unknown_policy():
    with pytest.raises(KeyError, match="unknown substitution policy"):
        substitute(np.zeros((1, 2)), np.ones((1, 2), bool), np.zeros((1, 2), bool), policy="average")


# --- rollups ---------------------------------------------------------------------------------------

FEB_START_UTC = int(np.datetime64("2026-01-31T16:00", "ns").astype(np.int64))  # = 2026-02-01 00:00 in UTC+8


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
    assert days.valid[0].tolist()[:3] == [True, False, True]
    # day 0: 20 measured x 1.0 + 4 substituted x 2.0 = 28.0
    assert days.total[0, 0] == 28.0 and days.measured_total[0, 0] == 20.0 and days.substituted_hours[0, 0] == 4
    # day mean of the valid hours: 20 x 1.0 / 20 = 1.0; day 1 (19 valid hours) has no mean
    assert days.mean[0, 0] == 1.0 and np.isnan(days.mean[0, 1])
    assert months.labels.tolist() == [np.datetime64("2026-02", "M")]


def test_february_needs_23_valid_days():
    _, ok = feb_month([24] * 23 + [10] * 5)
    assert ok.valid_parts[0, 0] == 23 and ok.valid[0, 0]
    _, short = feb_month([24] * 22 + [10] * 6)
    assert short.valid_parts[0, 0] == 22 and not short.valid[0, 0]
    # totals: 22 x 24 + 6 x 10 = 588 measured hours at 1.0; 84 substituted at 2.0 -> 588 + 168 = 756
    assert short.total[0, 0] == 756.0 and short.measured_hours[0, 0] == 588 and short.hours[0, 0] == 672
    assert short.completeness[0, 0] == pytest.approx(588 / 672)


def test_other_months_need_25_valid_days():
    start = int(np.datetime64("2026-02-28T16:00", "ns").astype(np.int64))  # 2026-03-01 00:00 local
    n = 31 * 24
    for good_days, expected in ((25, True), (24, False)):
        measured = np.zeros((1, n), bool)
        measured[0, : good_days * 24] = True
        _, months = rollup(np.ones((1, n)), measured, ~measured, np.ones((1, n), bool), start, SHANGHAI, CN)
        assert months.labels[0] == np.datetime64("2026-03", "M")
        assert months.valid[0, 0] == expected


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
