"""Hour validity per regime (streams/kernels/aggregate.py ``_hour_rule``): EU MRR points at the channel's real
sampling interval, Part 75's QA-hour exception. Hand-counted readings; boundaries at each limit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from schemas.quantities import Flag
from streams.kernels.aggregate import hours_from_minutes, readings_to_minutes
from streams.kernels.policy import POLICIES

EU, US = POLICIES["eu-mrr"], POLICIES["us-part75"]
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
S = 10**9


def hour(ts_s, flags, policy):
    """One series, one hour: readings at ``ts_s`` [s into the hour] of value 1.0, flagged ``flags``."""
    ts = T0 + np.asarray(ts_s, np.int64) * S
    flags = np.asarray(flags, np.uint8)
    values = np.where(flags == Flag.N, 1.0, np.nan)
    minutes = readings_to_minutes(np.zeros(ts.size, np.int64), ts, values, flags).close(policy)
    return hours_from_minutes(minutes).close(policy)


def flags_with(n, n_valid, other=Flag.D):
    return [Flag.N] * n_valid + [other] * (n - n_valid)


# --- EU MRR Art. 44: >= 80 % of the points possible at the channel's sampling interval ---------------


@pytest.mark.parametrize("n_valid, valid", [(576, True), (575, False)])
def test_eu_five_second_sampling_needs_80_percent_of_720_points(n_valid, valid):
    # every 5 s: 12 a minute x 60 = 720 possible; 80 % = 576. (With 3,600 assumed, 576 < 2,880: always invalid.)
    ts = np.arange(0, 3600, 5)
    h = hour(ts, flags_with(720, n_valid), EU)
    assert h.valid[0] == valid


@pytest.mark.parametrize("n_valid, valid", [(2880, True), (2879, False)])
def test_eu_one_hertz_sampling_needs_80_percent_of_3600_points(n_valid, valid):
    h = hour(np.arange(3600), flags_with(3600, n_valid), EU)
    assert h.valid[0] == valid


@pytest.mark.parametrize("minutes_with_data, valid", [(48, True), (47, False)])
def test_eu_minutes_without_any_reading_are_missing_points(minutes_with_data, valid):
    # 5-s sampling, the analyser out of operation (no readings) for the other minutes: 12 per minute with data ->
    # 720 possible; 48 minutes x 12 = 576 valid (= 80 %): valid; 47 x 12 = 564: not
    ts = np.concatenate([m * 60 + np.arange(0, 60, 5) for m in range(minutes_with_data)])
    assert hour(ts, [Flag.N] * ts.size, EU).valid[0] == valid


def test_eu_configured_sampling_interval():
    # 2-minute sampling cannot be told from gaps by the data: configured, 3600/120 = 30 possible, 80 % = 24
    rule = dataclasses.replace(EU.hour, sample_interval_s=120.0)
    policy = dataclasses.replace(EU, hour=rule)
    ts = np.arange(0, 3600, 120)
    assert hour(ts, flags_with(30, 24), policy).valid[0] and not hour(ts, flags_with(30, 23), policy).valid[0]
    assert not hour(ts, flags_with(30, 24), EU).valid[0]  # derived: 1 a minute with data -> 60 possible, 24 < 48


def test_eu_hour_mean_is_the_mean_of_all_valid_points():
    ts = np.arange(0, 3600, 5)
    fl = np.array(flags_with(720, 600), np.uint8)
    values = np.where(fl == Flag.N, ts % 2 * 2.0 + 1.0, np.nan)
    minutes = readings_to_minutes(np.zeros(720, np.int64), T0 + ts * S, values, fl).close(EU)
    h = hours_from_minutes(minutes).close(EU)
    # valid points at t = 0, 5, ..., 2995 s: t % 2 alternates 0, 1 -> values 1, 3: mean 2.0
    assert h.valid[0] and h.mean[0] == 2.0


# --- US Part 75 §75.10(d): quadrants, and two points 15 minutes apart in a QA hour -------------------


def one_a_minute(flag_of_minute):
    ts = np.arange(60) * 60
    return ts, [flag_of_minute(m) for m in range(60)]


def test_us_qa_hour_with_two_valid_points_15_minutes_apart_is_valid():
    # calibration (C) all hour but minutes 5 and 35 (quadrants 0 and 2, 30 min apart): the source ran all 4
    # quadrants, so the normal rule fails (quadrants 1 and 3 hold no valid point); the QA exception holds
    ts, fl = one_a_minute(lambda m: Flag.N if m in (5, 35) else Flag.C)
    assert hour(ts, fl, US).valid[0]
    # the same hour without QA evidence (D instead of C): the normal rule, invalid
    ts, fl = one_a_minute(lambda m: Flag.N if m in (5, 35) else Flag.D)
    assert not hour(ts, fl, US).valid[0]


def test_us_qa_hour_needs_the_points_15_minutes_apart():
    ts, fl = one_a_minute(lambda m: Flag.N if m in (14, 15) else Flag.C)  # 1 minute apart: invalid
    assert not hour(ts, fl, US).valid[0]
    # minutes 5 and 25 are 20 min apart, but in adjacent quadrants: the hour state keeps quadrants, not minutes,
    # so this cannot be proven and is treated as invalid (conservative; substitution follows)
    ts, fl = one_a_minute(lambda m: Flag.N if m in (5, 25) else Flag.C)
    assert not hour(ts, fl, US).valid[0]
    # 16 valid minutes in a row (20..35) span 15 minutes: proven
    ts, fl = one_a_minute(lambda m: Flag.N if 20 <= m <= 35 else Flag.M)
    assert hour(ts, fl, US).valid[0]


def test_us_normal_hour_needs_a_valid_point_in_every_operating_quadrant():
    ts, fl = one_a_minute(lambda m: Flag.N if m in (5, 20, 35, 50) else Flag.D)
    assert hour(ts, fl, US).valid[0]
    ts, fl = one_a_minute(lambda m: Flag.N if m in (5, 20, 35) else Flag.D)
    assert not hour(ts, fl, US).valid[0]
    # without the exception configured, a QA hour is judged by the normal rule
    policy = dataclasses.replace(US, hour=dataclasses.replace(US.hour, qa_two_points=False))
    ts, fl = one_a_minute(lambda m: Flag.N if m in (5, 35) else Flag.C)
    assert not hour(ts, fl, policy).valid[0]
