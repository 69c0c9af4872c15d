"""Aggregation kernels (streams/kernels/aggregate.py): validity rules at their boundaries, flags,
hand-computed means, and split/merge/order invariance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.quantities import Flag
from streams.kernels.aggregate import (
    HOUR_NS,
    MINUTE_NS,
    Accumulator,
    hours_from_minutes,
    readings_to_minutes,
)
from streams.kernels.policy import POLICIES, get_policy

CN, EU, US = POLICIES["cn-hj75"], POLICIES["eu-mrr"], POLICIES["us-part75"]
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, a whole hour
S = 10**9


def minutes(ts_s, values, flags=None, series=None, policy=CN):
    ts = T0 + np.asarray(ts_s, dtype=np.int64) * S
    flags = np.zeros(ts.size, np.uint8) if flags is None else np.asarray(flags, np.uint8)
    series = np.zeros(ts.size, np.int64) if series is None else np.asarray(series)
    return readings_to_minutes(series, ts, np.asarray(values, float), flags).close(policy)


def hour_from_minute_values(valid_minute_values: dict[int, float], policy=CN, per_minute=12, flag_of=None):
    """One series, one hour: minute m gets ``per_minute`` readings of its value at 5-s spacing."""
    ts, vals, flags = [], [], []
    for minute in range(60):
        f = (flag_of or {}).get(minute, Flag.N if minute in valid_minute_values else Flag.D)
        for k in range(per_minute):
            ts.append(minute * 60 + k * (60 // per_minute))
            vals.append(valid_minute_values.get(minute, np.nan) if f == Flag.N else np.nan)
            flags.append(f)
    m = minutes(ts, vals, flags, policy=policy)
    return hours_from_minutes(m).close(policy)


# --- samples -> minute (HJ 212 App. D Eq. 23: n >= 12 at <= 5 s) ----------------------------------


def test_minute_mean_of_valid_samples_only():
    # 12 samples every 5 s with values 1..12, plus a calibration reading at :02 that must not count.
    # mean = (1 + 2 + ... + 12)/12 = 78/12 = 6.5
    m = minutes([*list(range(0, 60, 5)), 2], [*list(range(1, 13)), 999.0], [0] * 12 + [Flag.C])
    assert len(m) == 1 and m.valid[0]
    assert m.mean[0] == 6.5
    assert m.valid_parts[0] == 12 and m.part_flags[0, Flag.C] == 1
    assert m.label[0] == Flag.N  # 12 of 13 normal = 92 % > 75 %


def test_minute_needs_twelve_valid_samples():
    eleven = minutes(list(range(0, 55, 5)), [1.0] * 11)
    assert not eleven.valid[0] and np.isnan(eleven.mean[0])
    assert minutes(list(range(0, 60, 5)), [1.0] * 12).valid[0]


def test_one_hz_with_a_six_second_dropout_is_a_valid_minute():
    # 1 Hz with a 6-second gap (:05..:10 missing): 54 valid samples >= 12 (Eq. 23 counts values, not slots).
    ts = [t for t in range(60) if not 5 <= t <= 10]
    assert len(ts) == 54
    cn = minutes(ts, [1.0] * 54)
    assert cn.valid[0] and bin(int(cn.valid_slots[0])).count("1") == 11  # slot [5 s, 10 s) is empty
    # the opt-in policy that wants one value in each 5-s slot refuses it
    assert not minutes(ts, [1.0] * 54, policy=POLICIES["cn-hj75-slots"]).valid[0]
    assert minutes(ts, [1.0] * 54, policy=EU).valid[0]


def test_five_second_data_jittered_around_the_slot_edges_is_valid():
    # 12 samples at 5-s spacing, each 50 ms early or late around the slot edges: -0.05, 5.05, 9.95, 15.05 ... 55.05 s.
    # The first is stamped 50 ms before the minute: it belongs to the minute of its time rounded to the nearest
    # second (ROUND_NS), so the minute has its 12 valid values (Eq. 23); slots of raw times would hold 2, 0, 2 ...
    t_ms = [5000 * k + (50 if k % 2 else -50) for k in range(12)]
    ts = T0 + np.array(t_ms, dtype=np.int64) * 10**6
    table = readings_to_minutes(np.zeros(12, np.int64), ts, np.ones(12), np.zeros(12, np.uint8))
    m = table.close(CN)
    assert len(m) == 1 and m.valid[0] and m.valid_parts[0] == 12
    # with rounded times every 5-s slot holds one value, so even the opt-in slot rule accepts the minute
    assert bin(int(m.valid_slots[0])).count("1") == 12 and table.close(POLICIES["cn-hj75-slots"]).valid[0]
    # 0.6 s early is no longer jitter around this minute's first second: that reading belongs to the minute before
    late = readings_to_minutes(np.zeros(2, np.int64), T0 + np.array([-600, 400]) * 10**6, np.ones(2),
                               np.zeros(2, np.uint8))
    assert (late.start_ns - T0).tolist() == [-60 * S, 0]


def test_minute_label_needs_more_than_75_percent_normal():
    # 12 N + 4 C = 75.0 % normal: not "more than 75 %" -> D.  13 N + 4 C = 76.5 % -> N.
    ts = [*list(range(0, 60, 5)), 1, 2, 3, 4]
    exactly = minutes(ts, [1.0] * 12 + [0.0] * 4, [0] * 12 + [Flag.C] * 4)
    assert exactly.label[0] == Flag.D and exactly.valid[0]
    more = minutes([*ts, 6], [1.0] * 12 + [0.0] * 4 + [1.0], [0] * 12 + [Flag.C] * 4 + [0])
    assert more.label[0] == Flag.N


def test_non_finite_and_huge_normal_readings_are_flagged_out_of_range():
    m = minutes([0, 1, 2], [np.nan, np.inf, 1e300], policy=EU)
    assert m.part_flags[0, Flag.T] == 3 and m.valid_parts[0] == 0 and np.isnan(m.mean[0])


# --- minutes -> hour -----------------------------------------------------------------------------


def test_cn_hour_needs_45_valid_minutes():
    # 44 valid minutes of value 10.0: invalid. 45: valid, mean 10.0.
    assert not hour_from_minute_values(dict.fromkeys(range(44), 10.0)).valid[0]
    h = hour_from_minute_values(dict.fromkeys(range(45), 10.0))
    assert h.valid[0] and h.mean[0] == 10.0 and h.valid_parts[0] == 45


def test_cn_hour_mean_is_the_mean_of_valid_minute_means():
    # minutes 0..44 at 10.0 and minutes 45..59 at 20.0: (45 x 10 + 15 x 20)/60 = 750/60 = 12.5
    values = {m: (10.0 if m < 45 else 20.0) for m in range(60)}
    assert hour_from_minute_values(values).mean[0] == 12.5


def test_hour_label_more_than_75_percent_of_minutes_normal():
    # 45 N minutes of 60 = 75 % -> D; 46 -> N (HJ 212-2017 App. C)
    assert hour_from_minute_values(dict.fromkeys(range(45), 1.0)).label[0] == Flag.D
    assert hour_from_minute_values(dict.fromkeys(range(46), 1.0)).label[0] == Flag.N


def test_eu_hour_needs_80_percent_of_possible_points_pro_rata():
    # 1 Hz, 3600 possible points. 2879 valid = 79.97 %: invalid. 2880 = 80.0 %: valid.
    def hour(n_valid):
        ts = np.arange(3600)
        flags = np.where(ts < n_valid, Flag.N, Flag.M).astype(np.uint8)
        values = np.where(ts < n_valid, 5.0 + (ts % 2), np.nan)  # alternating 5, 6: mean 5.5
        return hours_from_minutes(minutes(ts, values, flags, policy=EU)).close(EU)

    assert not hour(2879).valid[0]
    h = hour(2880)
    assert h.valid[0] and h.valid_samples[0] == 2880
    assert h.mean[0] == 5.5  # pro rata: mean of all 2880 valid points


def test_eu_pro_rata_weights_points_not_minutes():
    # minute 0: 60 points at 1.0; minute 1: 10 points at 4.0 (rest missing). Points mean:
    # (60 x 1 + 10 x 4)/70 = 100/70 = 1.4285714; a mean of minute means would give 2.5.
    rule = get_policy("eu-mrr")
    import dataclasses

    lenient = dataclasses.replace(rule, hour=dataclasses.replace(rule.hour, min_point_fraction=0.0))
    ts = list(range(60)) + list(range(60, 70))
    h = hours_from_minutes(minutes(ts, [1.0] * 60 + [4.0] * 10, policy=lenient)).close(lenient)
    assert h.mean[0] == pytest.approx(100 / 70, abs=2**-24)


def test_us_hour_needs_a_point_in_each_operating_quadrant():
    # One valid minute in each quadrant (minutes 0, 15, 30, 45): valid. Mean (1 + 2 + 3 + 4)/4 = 2.5.
    h = hour_from_minute_values({0: 1.0, 15: 2.0, 30: 3.0, 45: 4.0}, policy=US)
    assert h.valid[0] and h.mean[0] == 2.5 and h.valid_slots[0] == 0b1111
    # Empty third quadrant: invalid.
    assert not hour_from_minute_values({0: 1.0, 15: 2.0, 45: 4.0}, policy=US).valid[0]
    # The analyser flagged F (instrument stopped, HJ 212-2017 Table 8) for the whole third quadrant: the DAHS
    # recorded readings there, so the quadrant counts, and without a valid point in it the hour is invalid.
    stopped = dict.fromkeys(range(30, 45), Flag.F)
    h = hour_from_minute_values({0: 1.0, 15: 2.0, 45: 4.0}, policy=US, flag_of=stopped)
    assert not h.valid[0] and h.operating_slots[0] == 0b1111


def test_an_instrument_stopped_most_of_the_hour_is_marked_so():
    h = hour_from_minute_values({}, flag_of=dict.fromkeys(range(60), Flag.F))
    assert h.instrument_stopped[0] and not h.valid[0]
    h = hour_from_minute_values(dict.fromkeys(range(31), 1.0), flag_of=dict.fromkeys(range(31, 60), Flag.F))
    assert not h.instrument_stopped[0]  # 29 of 60 minutes under F: not more than half


def test_values_recorded_under_f_are_kept_apart_as_process_evidence():
    # 12 N readings of 10.0 and 12 F readings of 0.5 (a velocity probe recording during a stop), one minute
    ts = list(range(0, 60, 5)) + list(range(2, 62, 5))
    m = minutes(ts, [10.0] * 12 + [0.5] * 12, [0] * 12 + [Flag.F] * 12)
    assert m.valid[0] and m.mean[0] == 10.0  # F values never enter the valid mean
    assert m.recorded_samples[0] == 24
    assert m.recorded_mean[0] == pytest.approx((12 * 10.0 + 12 * 0.5) / 24, abs=2**-24)  # 126 / 24 = 5.25
    # NaN or implausible values under F are not evidence
    m = minutes([0, 1], [np.nan, 3.0], [Flag.F, Flag.F])
    assert m.recorded_samples[0] == 1 and m.recorded_mean[0] == 3.0
    # without any F reading the recorded values are the valid ones (shared arrays, no extra work)
    plain = readings_to_minutes(np.zeros(12, np.int64), T0 + np.arange(12) * 5 * S, np.ones(12), np.zeros(12, np.uint8))
    assert plain.recorded_samples is plain.valid_samples
    hour = hours_from_minutes(m).close(CN)
    assert hour.recorded_samples[0] == 1 and hour.recorded_mean[0] == 3.0


def test_many_series_and_hours_at_once():
    # 3 series x 2 hours at 1 Hz; series s has value s + hour index
    ts = np.arange(7200)
    series = np.repeat([0, 1, 2], ts.size)
    t_all = np.tile(ts, 3)
    values = series + t_all // 3600
    h = hours_from_minutes(minutes(t_all, values, series=series)).close(CN)
    assert len(h) == 6
    np.testing.assert_array_equal(h.series, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(h.start_ns, np.tile([T0, T0 + HOUR_NS], 3))
    np.testing.assert_array_equal(h.mean, [0.0, 1.0, 1.0, 2.0, 2.0, 3.0])


# --- incremental: split, merge, order, duplicates ------------------------------------------------


@st.composite
def reading_streams(draw):
    n = draw(st.integers(1, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    series = rng.integers(0, 3, n)
    ts = T0 + rng.integers(0, 2 * 3600, n) * S  # two hours, random seconds (duplicated seconds allowed)
    values = rng.normal(100.0, 30.0, n)
    flags = rng.choice(np.array([0, 0, 0, 0, 5, 2, 1, 4], np.uint8), n)
    return series, ts, values, flags


def _batches(stream, cuts, order):
    series, ts, values, flags = stream
    bounds = [0, *sorted(cuts), len(ts)]
    parts = [(i, slice(a, b)) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    return [(i, series[s], ts[s], values[s], flags[s]) for i, s in (parts[k] for k in order(len(parts)))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reading_streams(), st.lists(st.integers(0, 400), max_size=6), st.randoms(use_true_random=False))
def test_any_split_and_order_gives_identical_state_and_records(stream, cuts, rnd):
    cuts = [c for c in cuts if c <= len(stream[1])]
    whole = readings_to_minutes(*stream)

    def shuffled(k):
        order = list(range(k))
        rnd.shuffle(order)
        return order

    inc = Accumulator.empty(MINUTE_NS)
    for i, *cols in _batches(stream, cuts, shuffled):
        inc = inc.absorb_readings(*cols, batch_id=("gw", i))
    assert inc.equals(whole)

    # merge of two independently built halves, in both orders
    parts = _batches(stream, cuts, lambda k: list(range(k)))
    left, right = Accumulator.empty(MINUTE_NS), Accumulator.empty(MINUTE_NS)
    for i, *cols in parts:
        target = rnd.choice(["l", "r"])
        if target == "l":
            left = left.absorb_readings(*cols, batch_id=("gw", i))
        else:
            right = right.absorb_readings(*cols, batch_id=("gw", i))
    assert left.merge(right).equals(whole) and right.merge(left).equals(whole)

    for policy in (CN, EU, US):
        a = hours_from_minutes(whole.close(policy)).close(policy)
        b = hours_from_minutes(inc.close(policy)).close(policy)
        assert np.array_equal(a.mean, b.mean, equal_nan=True)
        assert np.array_equal(a.valid, b.valid) and np.array_equal(a.label, b.label)


def test_a_batch_applied_twice_counts_once():
    ts = T0 + np.arange(120) * S
    cols = (np.zeros(120, int), ts, np.ones(120), np.zeros(120, np.uint8))
    once = Accumulator.empty(MINUTE_NS).absorb_readings(*cols, batch_id=("gw-1", 7))
    twice = once.absorb_readings(*cols, batch_id=("gw-1", 7))
    assert twice.equals(once) and twice.valid_samples.sum() == 120
    with pytest.raises(ValueError, match="count them twice"):
        once.merge(once)


def test_split_closed_by_watermark():
    acc = readings_to_minutes(np.zeros(180, int), T0 + np.arange(180) * S, np.ones(180), np.zeros(180, np.uint8))
    done, still_open = acc.split_closed(T0 + 2 * MINUTE_NS)
    assert done.start_ns.tolist() == [T0, T0 + MINUTE_NS]
    assert still_open.start_ns.tolist() == [T0 + 2 * MINUTE_NS]
    assert done.merge(still_open).equals(acc)


def test_a_stray_reading_far_away_does_not_blow_up_memory():
    ts = np.concatenate([T0 + np.arange(60) * S, [T0 - 365 * 24 * HOUR_NS]])
    acc = readings_to_minutes(np.zeros(61, int), ts, np.ones(61), np.zeros(61, np.uint8))
    assert len(acc) == 2


def test_unknown_policy_name():
    with pytest.raises(KeyError, match="unknown validity policy 'cn'"):
        get_policy("cn")


def test_physically_implausible_readings_are_flagged_out_of_range():
    from streams.kernels.plausibility import series_bounds

    bounds = series_bounds([("a19001", "%"), ("a01014", "%")])  # O2 0..21 %, moisture 0..100 %
    ts = T0 + np.array([0, 5, 0, 5]) * S
    acc = readings_to_minutes([0, 0, 1, 1], ts, [20.5, 22.0, -1.0, 40.0], np.zeros(4, np.uint8), bounds=bounds)
    # O2 22 % (above air) and moisture -1 % are T; 20.5 % O2 and 40 % moisture are kept
    assert acc.part_flags[:, Flag.T].tolist() == [1, 1]
    assert acc.valid_parts.tolist() == [1, 1]
    assert (acc.part_qsum / 2**24).tolist() == [20.5, 40.0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reading_streams(), st.sampled_from([1, 7, 64]))
def test_chunked_processing_equals_one_chunk(stream, chunk):
    import streams.kernels.aggregate as agg

    whole = readings_to_minutes(*stream)
    saved, agg.CHUNK = agg.CHUNK, chunk
    try:
        chunked = readings_to_minutes(*stream)
    finally:
        agg.CHUNK = saved
    assert chunked.equals(whole)


def test_set_values_follow_the_channel_policy():
    """HJ 212-2017 Table 8: S is a value entered by hand. Invalid by default; valid only where the channel says so."""
    ts, vals, flags = list(range(0, 60, 5)), [8.0] * 12, [Flag.S] * 12  # a moisture set value of 8 %, 12 per minute
    assert not minutes(ts, vals, flags).valid[0]
    table = readings_to_minutes(np.zeros(12, np.int64), T0 + np.array(ts, np.int64) * S, np.array(vals),
                                np.array(flags, np.uint8), set_values_valid=np.array([True])).close(CN)
    assert table.valid[0] and table.mean[0] == 8.0 and table.part_flags[0, Flag.S] == 12  # the flag is kept
    assert table.label[0] == Flag.D  # not more than 75 % N: the minute is labelled as not normal
