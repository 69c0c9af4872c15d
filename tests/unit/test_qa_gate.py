"""QA state gates validity: failed drift checks open out-of-control periods, overdue tests expire, and the month's
substitution and capture rate follow (streams/kernels/qa_state.py, streams/core/qa.py, streams/core/monthly.py).
Every expected figure is worked by hand in the comments."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.qa import ComparisonRun, ComparisonTest, DriftCheck, TraversePoint, TraverseRun, VelocityTraverse
from schemas.records import HourlyRecord
from schemas.site import Entity
from streams.core.monthly import MonthlyRollup
from streams.core.processor import Registry
from streams.core.qa import QaState, due_after
from streams.kernels import HOUR_NS, POLICIES
from streams.kernels.qa_state import KINDS, NEVER, REASONS, channel_state, get_schedule, source_state

SHANGHAI = ZoneInfo("Asia/Shanghai")
FEB = 1_769_875_200 * 10**9  # 2026-02-01T00:00 Asia/Shanghai
FLOW = 100_000.0  # m3/h std dry; 10,000 mg/m3 x 100,000 m3/h x 1e-6 = 1,000 kg an hour


def registry() -> Registry:
    ch = [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
          {"id": "o2", "quantity": "a19001", "unit": "%"},
          {"id": "q", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}]
    return Registry([Entity.model_validate({"id": "plant", "name": "p", "sector": "cement", "timezone": "Asia/Shanghai",
                                            "sources": [{"id": "k1", "name": "kiln", "duct_area_m2": 10.0,
                                                         "channels": ch}]})])


def hour(i: int, co2_kg: float = 1000.0, state: str = "measured") -> HourlyRecord:
    measured, operating = state == "measured", state != "stopped"
    return HourlyRecord(
        entity_id="plant", source_id="k1", hour_start_ns=FEB + i * HOUR_NS, revision=0, reason="closed",
        policy="cn-hj75", co2_kg=co2_kg if measured else (0.0 if not operating else None),
        co2_mg_m3=co2_kg * 1e6 / FLOW if measured else None, flow_m3_h=FLOW if measured else None,
        operating=operating, measured=measured, missing=operating and not measured, readings=3600, status=state)


def february() -> list[HourlyRecord]:
    """672 measured hours of 1,000 kg, except hour 20 (2,000 kg) and hour 100 (1,500 kg)."""
    return [hour(i, 2000.0 if i == 20 else 1500.0 if i == 100 else 1000.0) for i in range(672)]


def at(day: int, hh: int = 0, mm: int = 30) -> datetime:
    return datetime(2026, 2, day, hh, mm, tzinfo=SHANGHAI)


def span(t: datetime, measured: float, channel: str = "co2", quantity: str = "a05001") -> DriftCheck:
    """A span check on a 20.0 % CO2 gas, full scale 25 %: the HJ 75 limit 2.5 % of 25 = 0.625 % CO2."""
    return DriftCheck(site_id="plant", source_id="k1", channel_id=channel, quantity=quantity, unit="%", time=t,
                      check="span", reference_value=20.0, measured_value=measured, full_scale=25.0)


def daily(fail: set[int] = frozenset(), skip: set[int] = frozenset(), days: range = range(1, 29),
          hh: int = 0, mm: int = 30, **late: tuple[int, int]) -> list[DriftCheck]:
    """One span check a day at hh:mm local: 20.3 (e = 0.3, passes) or 21.0 on the days in ``fail``
    (e = 1.0 % CO2 = 4 % of full scale > 2.5 %); none on the days in ``skip``; ``late``: day -> (hh, mm)."""
    out = []
    for d in days:
        if d in skip:
            continue
        h, m = late.get(f"d{d}", (hh, mm))
        out.append(span(at(d, h, m), 21.0 if d in fail else 20.3))
    return out


def month(qa: QaState | None):
    roll = MonthlyRollup(registry(), POLICIES["cn-hj75"])
    hours = february() if qa is None else qa.gate(february())
    (rec,) = roll.update(hours)
    return rec, hours


# --- the kernel ---------------------------------------------------------------------------------------------------


def test_channel_state_failed_until_the_next_pass_then_overdue():
    # One channel, span drift (kind 1). Hours 0..9 of a grid at 0. A pass at 0:30 due at 3:30; a failure at 5:10;
    # a pass at 8:20 (never due). Hours 0..3 in control (hour 3 starts at 3:00 < 3:30), hour 4 overdue (4:00 >= 3:30)
    # only because overdue span checks invalidate; hours 5..7 failed; hours 8, 9 in control.
    h, m = HOUR_NS, HOUR_NS // 60
    reason = channel_state([0, 0, 0], [1, 1, 1], [30 * m, 5 * h + 10 * m, 8 * h + 20 * m], [True, False, True],
                           [3 * h + 30 * m, 0, NEVER], [False, True, False, False], 1, 0, 10).reason[0]
    failed, overdue = KINDS.index("span_drift") + 1, len(KINDS) + KINDS.index("span_drift") + 1
    assert reason.tolist() == [0, 0, 0, 0, overdue, failed, failed, failed, 0, 0]
    assert REASONS[failed] == "span_drift_failed" and REASONS[overdue] == "span_drift_overdue"
    # the same events where an overdue span check is only reported: hour 4 in control
    reason = channel_state([0, 0, 0], [1, 1, 1], [30 * m, 5 * h + 10 * m, 8 * h + 20 * m], [True, False, True],
                           [3 * h + 30 * m, 0, NEVER], [False] * 4, 1, 0, 10).reason[0]
    assert reason.tolist() == [0, 0, 0, 0, 0, failed, failed, failed, 0, 0]


def test_channel_state_before_the_first_record_is_not_gated_and_the_last_event_of_an_hour_wins():
    h, m = HOUR_NS, HOUR_NS // 60
    # A failure at 2:10 corrected by a pass at 2:50: the hour's last event passed, nothing is out of control.
    reason = channel_state([0, 0], [0, 0], [2 * h + 50 * m, 2 * h + 10 * m], [True, False], [NEVER, 0],
                           [True] * 4, 2, 0, 4).reason
    assert reason.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]


def test_source_state_gates_the_parts_an_analyser_feeds():
    # channels: 0 CO2 (conc) and 1 O2 (neither) of source 0; 2 flow of source 1. All out of control in hour 1.
    reason = np.array([[0, 2], [0, 1], [0, 3]], np.uint8)
    conc, flow, code = source_state(reason, [0, 0, 1], [True, False, False], [False, False, True], 2)
    assert conc.tolist() == [[False, True], [False, False]]
    assert flow.tolist() == [[False, False], [False, True]]
    assert code.tolist() == [[0, 2], [0, 3]]  # the O2 channel's code 1 gates nothing, so it is not the reason


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(-5 * 60, 30 * 60), st.booleans(),
                          st.integers(0, 40 * 60)), max_size=25),
       st.integers(0, 24))
def test_channel_state_agrees_with_a_plain_reading_of_the_rule(events, n_hours):
    """Property: each hour's state is that of the last event at or before it, per (channel, kind)."""
    m = HOUR_NS // 60
    ch, kd, t, ok, due = (np.array(x, np.int64) for x in zip(*events, strict=True)) if events else [np.zeros(0)] * 5
    t, due = t * m, (t + due) * m
    inval = np.array([True, False, True, True])
    got = channel_state(ch, kd, t, ok.astype(bool), due, inval, 3, 0, n_hours).reason
    for c in range(3):
        for h in range(n_hours):
            codes = []
            for k in range(4):
                mine = [i for i in range(len(ch)) if ch[i] == c and kd[i] == k and t[i] // HOUR_NS <= h]
                if not mine:
                    continue
                last = max(mine, key=lambda i: (t[i], i))
                if not ok[last]:
                    codes.append(1 + k)
                elif h * HOUR_NS >= due[last] and inval[k]:
                    codes.append(5 + k)
            assert got[c, h] == (min(codes) if codes else 0)


# --- the month: drift failure on day 10, passing check on day 12 ----------------------------------------------------


def test_a_drift_failure_on_day_10_puts_days_10_and_11_out_of_control_until_the_pass_on_day_12():
    # Span checks daily at 00:30 local. Day 10: 21.0 on a 20.0 gas, e = 1.0 % CO2 = 4 % of full scale > 2.5 %:
    # failed. Day 11: no check (under repair). Day 12: 20.3, e = 1.2 % of full scale: passed.
    # Out of control: from the hour of the failure (day 10 00:00-01:00 = hour 9 x 24 = 216) to the hour of the pass
    # (day 12 00:00 = hour 264, in control again): hours 216..263 = 48 hours = local days 10 and 11.
    qa = QaState(daily(fail={10}, skip={11}), registry())
    rec, hours = month(qa)
    ooc = [i for i, h in enumerate(hours) if h.status == "out_of_control"]
    assert ooc == list(range(216, 264))
    assert all(h.co2_kg is None and h.co2_mg_m3 is None and h.flow_m3_h == FLOW for h in hours[216:264])
    # Capture rate of the quarter (its hours so far are February's): valid 672 - 48 = 624 of 672 operating hours
    # = 92.857 % >= 90 %, and the run is N = 48 h > 24 h: the maximum hourly mass of the 720 valid hours before the
    # run (all 216 hours before it, hours 0..215: the largest is hour 20, 2,000 kg): 48 x 2,000 = 96,000 kg.
    assert rec.out_of_control_hours == 48 and rec.measured_hours == 624 and rec.substituted_hours == 48
    assert rec.capture_rate == pytest.approx(624 / 672)
    # measured: 622 hours x 1,000 + 2,000 + 1,500 = 625,500 kg; total 625.5 + 96 = 721.5 t
    assert rec.measured_co2_t == pytest.approx(625.5)
    assert rec.substituted_co2_t == pytest.approx(96.0)
    assert rec.co2_t == pytest.approx(721.5)
    assert rec.missing_hours == 0


def test_a_24_hour_period_takes_the_180_hour_row_and_25_hours_the_720_hour_row():
    # Failure day 10 00:30, pass day 11 00:30: hours 216..239, N = 24 <= 24 -> the maximum of the 180 valid hours
    # before the run (hours 36..215: hour 100, 1,500 kg; hour 20 is out of reach): 24 x 1,500 = 36,000 kg.
    rec, _ = month(QaState(daily(fail={10}), registry()))
    assert rec.out_of_control_hours == 24 and rec.substituted_co2_t == pytest.approx(36.0)
    # The pass an hour later (day 11 01:30): N = 25 > 24 -> the 720-hour row: 25 x 2,000 = 50,000 kg.
    rec, _ = month(QaState(daily(fail={10}, d11=(1, 30)), registry()))
    assert rec.out_of_control_hours == 25 and rec.substituted_co2_t == pytest.approx(50.0)
    # capture rate (672 - 25) / 672 = 96.28 %
    assert rec.capture_rate == pytest.approx(647 / 672)


@pytest.mark.parametrize(("measured", "out"), [(20.625, 0), (20.626, 24), (19.375, 0), (19.374, 24)])
def test_the_drift_limit_is_a_boundary_of_the_gate(measured, out):
    # HJ 75: |e| <= 2.5 % of 25 % = 0.625 % CO2 passes; 20.625 and 19.375 are exactly at it, 0.001 beyond fails
    # (the day-10 check replaced; day 11 passes again at 00:30: 24 hours).
    checks = [c if c.time != at(10) else span(at(10), measured) for c in daily()]
    rec, _ = month(QaState(checks, registry()))
    assert rec.out_of_control_hours == out


def test_an_overdue_daily_check_invalidates_from_24_hours_after_the_last_pass():
    # cn-hj75: a passing check keeps the analyser in control for 24 h [U]. Checks at 00:30 daily, none on days 10
    # and 11: the day-9 check (00:30) is due at day 10 00:30; hour day 10 00:00 starts before that (in control),
    # hours day 10 01:00 .. day 12 00:00 (excluded: the day-12 check passes in it) are overdue: 23 + 24 = 47 hours.
    qa = QaState(daily(skip={10, 11}), registry())
    rec, hours = month(qa)
    assert [i for i, h in enumerate(hours) if h.status == "out_of_control"] == list(range(217, 264))
    assert rec.out_of_control_hours == 47
    # A check an hour late (day 10 01:29 instead of 00:30) leaves no hour uncovered: hour 01:00 holds the new pass.
    rec, _ = month(QaState(daily(d10=(1, 29)), registry()))
    assert rec.out_of_control_hours == 0
    # Two hours late (02:10): hour 01:00 starts after the due 00:30 and holds no check: 1 hour out of control.
    rec, _ = month(QaState(daily(d10=(2, 10)), registry()))
    assert rec.out_of_control_hours == 1


def test_an_o2_drift_failure_is_reported_but_does_not_gate_the_co2_mass():
    checks = daily() + [DriftCheck(site_id="plant", source_id="k1", channel_id="o2", quantity="a19001", unit="%",
                                   time=at(10), check="span", reference_value=20.9, measured_value=23.0,
                                   full_scale=25.0)]  # e = 2.1 = 8.4 % of full scale: failed
    qa = QaState(checks, registry())
    rec, _ = month(qa)
    assert rec.out_of_control_hours == 0
    start, end = FEB, FEB + 672 * HOUR_NS
    (period,) = [p for p in qa.periods("k1", start, end) if p["channel_id"] == "o2"]
    # from day 10 00:00 (hour 216) to the end of the month: no later O2 check
    assert (period["reason"], period["hours"], period["gates_co2"]) == ("span_drift_failed", 672 - 216, False)


def test_stopped_hours_stay_stopped_and_records_of_unknown_analysers_are_refused():
    qa = QaState(daily(fail={10}), registry())
    gated = qa.gate([hour(216, state="stopped"), hour(217, state="missing")])
    assert [h.status for h in gated] == ["stopped", "out_of_control"]
    with pytest.raises(ValueError, match="channel 'nox' is not a channel of source 'k1'"):
        QaState([span(at(1), 20.3, channel="nox")], registry())
    with pytest.raises(ValueError, match="the record is about a05001, the channel measures a19001"):
        QaState([span(at(1), 20.3, channel="o2")], registry())


def test_part75_schedules_and_grace_periods():
    sched = get_schedule("us-part75")
    t = int(datetime(2026, 2, 10, 9, 0, tzinfo=SHANGHAI).timestamp()) * 10**9
    # daily calibration: 26 clock hours
    assert due_after(sched.due["span_drift"], t, SHANGHAI) == t + 26 * HOUR_NS
    # linearity, quarterly: the end of the quarter after the test's (Q1 2026 -> the end of Q2, 2026-07-01 local)
    # plus 168 h of grace = 2026-07-08 00:00 local
    july8 = int(datetime(2026, 7, 8, tzinfo=SHANGHAI).timestamp()) * 10**9
    assert due_after(sched.due["linearity"], t, SHANGHAI) == july8
    # RATA: semiannual (the end of the 2nd quarter after: 2026-10-01) unless RA <= 7.5 % (annual: the 4th, 2027-04-01),
    # plus 720 h = 30 days of grace
    rata = sched.due["comparison"]
    assert due_after(rata, t, SHANGHAI, 7.6) == int((datetime(2026, 10, 1, tzinfo=SHANGHAI)
                                                     + timedelta(days=30)).timestamp()) * 10**9
    assert due_after(rata, t, SHANGHAI, 7.5) == int((datetime(2027, 4, 1, tzinfo=SHANGHAI)
                                                     + timedelta(days=30)).timestamp()) * 10**9
    # China: periodic verification 6 months after (2026-08-10 09:00), reported and not gated
    cn = get_schedule("cn-hj75").due["comparison"]
    assert due_after(cn, t, SHANGHAI) == int(datetime(2026, 8, 10, 9, tzinfo=SHANGHAI).timestamp()) * 10**9
    assert not cn.invalidates


def test_a_failed_comparison_test_puts_the_analyser_out_of_control_until_a_passing_one():
    def test(test_id: str, day: int, cems: float) -> ComparisonTest:
        # six runs, reference 12.0 % CO2; CEMS constant: d = 12 - cems each run, s_d = 0, cc = 0
        runs = [ComparisonRun(run=k + 1, start=at(day, 9 + k, 0), end=at(day, 9 + k, 50), reference_value=12.0,
                              cems_value=cems) for k in range(6)]
        return ComparisonTest(site_id="plant", source_id="k1", channel_id="co2", quantity="a05001", unit="%",
                              test_id=test_id, runs=runs)

    # RA = |12 - 10| / 12 = 16.7 % > 15 % [U]: failed (day 5, last run ends 14:50 -> hour 4 x 24 + 14 = 110);
    # RA = 0.5 / 12 = 4.2 %: passed (day 7, 14:50 -> hour 6 x 24 + 14 = 158). Out of control 110..157: 48 hours.
    qa = QaState(daily() + [test("R1", 5, 10.0), test("R2", 7, 11.5)], registry())
    _, hours = month(qa)
    assert [i for i, h in enumerate(hours) if h.status == "out_of_control"] == list(range(110, 158))
    timeline = qa.timeline("k1", FEB, FEB + 672 * HOUR_NS)
    (co2,) = timeline["channels"]
    assert [t["test"] for t in co2["tests"] if t["kind"] == "comparison"] == ["R1", "R2"]
    assert [p["reason"] for p in co2["periods"]] == ["comparison_failed"]
    assert co2["next_due"]["comparison"] == "2026-08-07T14:50:00+08:00"  # 6 months after the pass


# --- results applied from a stated date: Kv and the bias adjustment factor ------------------------------------------


def velocity_registry(kv: float = 1.0) -> Registry:
    from edge_agent.simulator.generate import StackModel, source_config

    source = source_config("k1", "kiln", StackModel(velocity_field_coefficient=kv))
    return Registry([Entity.model_validate({"id": "plant", "name": "p", "sector": "cement",
                                            "timezone": "Asia/Shanghai", "sources": [source]})])


def traverse(apply_from: datetime | None) -> VelocityTraverse:
    # run 1: points 10.5, 10.7, 10.6, 10.6 -> mean 10.6 against the CEMS 10.0 m/s: Kv 1.06; run 2: 10.4, 10.4 ->
    # 1.04; the test's Kv is the mean of its runs, 1.05. Completed 2026-02-14 16:00 local.
    runs = [TraverseRun(run=1, start=at(14, 14, 0), end=at(14, 15, 0), cems_velocity_m_s=10.0,
                        points=[TraversePoint(point=k + 1, reference_velocity_m_s=v)
                                for k, v in enumerate((10.5, 10.7, 10.6, 10.6))]),
            TraverseRun(run=2, start=at(14, 15, 0), end=at(14, 16, 0), cems_velocity_m_s=10.0,
                        points=[TraversePoint(point=k + 1, reference_velocity_m_s=10.4) for k in range(2)])]
    return VelocityTraverse(test_id="T1", site_id="plant", source_id="k1", channel_id="velocity", runs=runs,
                            apply_from=apply_from)


def velocity_month(qa: QaState):
    roll = MonthlyRollup(velocity_registry(), POLICIES["cn-hj75"])
    hours = qa.gate(february())
    (rec,) = roll.update(hours)
    return rec, hours


def test_a_traverse_updates_kv_from_its_date_and_not_before():
    # Kv 1.05 against the site file's 1.0: factor 1.05 on the flow, and so on the mass, from 2026-02-15 00:00 local
    # (hour 14 x 24 = 336): 1,000 kg -> 1,050 kg, 100,000 -> 105,000 m3/h. Hours before keep their figures.
    qa = QaState([traverse(at(15, 0, 0))], velocity_registry())
    (adj,) = qa.adjustments
    assert (adj.kind, adj.value, adj.factor) == ("kv", pytest.approx(1.05), pytest.approx(1.05))
    rec, hours = velocity_month(qa)
    assert hours[335].co2_kg == 1000.0 and hours[336].co2_kg == pytest.approx(1050.0)
    assert hours[336].flow_m3_h == pytest.approx(105_000.0)
    # measured: hours 0..335 = 334 x 1,000 + 2,000 + 1,500 = 337,500 kg; hours 336..671 = 336 x 1,050 = 352,800 kg
    assert rec.measured_co2_t == pytest.approx(690.3)
    assert qa.timeline("k1", FEB, FEB + 672 * HOUR_NS)["adjustments"][0]["from"] == "2026-02-15T00:00:00+08:00"


def test_a_result_applied_before_its_test_is_an_explicit_recomputation_kept_as_a_new_archive_version(tmp_path):
    from streams.archive.store import Archive
    from streams.core.figures import month_figures

    # apply_from 2026-02-10, the traverse was completed 2026-02-14 16:00: refused unless asked for
    with pytest.raises(ValueError, match="never rewritten silently"):
        QaState([traverse(at(10, 0, 0))], velocity_registry())
    archive = Archive(tmp_path / "archive.sqlite")
    before, _ = velocity_month(QaState([traverse(None)], velocity_registry()))  # recorded, nothing applied
    assert before.measured_co2_t == pytest.approx(673.5)  # 670 x 1,000 + 2,000 + 1,500 kg
    archive.put("plant", "k1", "2026-02", month_figures([before]), "cems")
    # recomputed from hour 9 x 24 = 216: 214 x 1,000 + 2,000 + 1,500 = 217,500 kg, then 456 x 1,050 = 478,800 kg
    after, _ = velocity_month(QaState([traverse(at(10, 0, 0))], velocity_registry(), recompute=True))
    assert after.measured_co2_t == pytest.approx(696.3)
    archive.put("plant", "k1", "2026-02", month_figures([after]), "qa_recompute")
    history = archive.history("plant", "2026-02", "k1")
    assert [(e.version, e.reason, round(e.figures["co2_t"], 1)) for e in history] == [
        (0, "first", 673.5), (1, "qa_recompute", 696.3)]
    assert archive.verify() == []


def test_only_a_passed_velocity_comparison_updates_kv_and_part75_flow_takes_a_bias_factor():
    def velocity_test(cems: float, apply_from: datetime | None = at(20, 0, 0)) -> ComparisonTest:
        refs = (9.9, 10.1, 10.0, 9.8, 10.2, 10.0)  # mean 10.0 m/s; the CEMS follows each run, offset to mean cems
        runs = [ComparisonRun(run=k + 1, start=at(18, 9 + k, 0), end=at(18, 9 + k, 50), reference_value=ref,
                              cems_value=cems + (ref - 10.0)) for k, ref in enumerate(refs)]
        return ComparisonTest(site_id="plant", source_id="k1", channel_id="velocity", quantity="a01011", unit="m/s",
                              test_id="V1", runs=runs, apply_from=apply_from)

    # HJ 75: CEMS 9.6 against a mean reference of 10.0 m/s: RE = -4 %, within 12 % at <= 10 m/s [U]: passed.
    # The new Kv = 1.0 x 10.0 / 9.6 = 1.041667 from 2026-02-20 (hour 19 x 24 = 456).
    qa = QaState([velocity_test(9.6)], velocity_registry())
    (adj,) = qa.adjustments
    assert adj.kind == "kv" and adj.factor == pytest.approx(10.0 / 9.6)
    assert qa.factors(FEB, 672)[0, 455] == 1.0 and qa.factors(FEB, 672)[0, 456] == pytest.approx(10.0 / 9.6)
    # CEMS 8.5: RE = -15 % fails; a failed test changes nothing and says so
    with pytest.raises(ValueError, match="only a passed test can change the figures"):
        QaState([velocity_test(8.5)], velocity_registry())
    # CO2 takes no adjustment under any policy
    co2 = ComparisonTest(site_id="plant", source_id="k1", channel_id="co2", quantity="a05001", unit="%",
                         test_id="C1", apply_from=at(20, 0, 0),
                         runs=[ComparisonRun(run=k + 1, start=at(18, 9 + k, 0), end=at(18, 9 + k, 50),
                                             reference_value=12.0, cems_value=11.9) for k in range(6)])
    with pytest.raises(ValueError, match="applies no bias adjustment to a05001"):
        QaState([co2], velocity_registry())
    # Part 75 velocity: a bias test. Nine runs, d_i = 0.4 m/s each (s_d = 0, cc = 0 < d-bar: biased low):
    # BAF = 1 + 0.4 / 9.6 = 1.041667 (RA = 0.4 / 10.0 = 4 % passes by the principal criterion: no cap)
    runs = [ComparisonRun(run=k + 1, start=at(18, 9 + k, 0), end=at(18, 9 + k, 50), reference_value=10.0,
                          cems_value=9.6) for k in range(9)]
    rata = ComparisonTest(site_id="plant", source_id="k1", channel_id="velocity", quantity="a01011", unit="m/s",
                          test_id="R1", runs=runs, apply_from=at(20, 0, 0))
    (adj,) = QaState([rata], velocity_registry(), "us-part75").adjustments
    assert (adj.kind, adj.value) == ("baf", pytest.approx(1 + 0.4 / 9.6))


# --- reports: the quarter's capture rate and availability, QA findings as alerts --------------------------------------


def entity():
    return registry().entities["plant"]


def test_quarter_capture_rate_and_availability():
    from streams.core.qa import quarter_figures

    qa = QaState(daily(fail={10}, skip={11}), registry())
    rec, hours = month(qa)
    q = quarter_figures("k1", "2026-02", SHANGHAI, [rec], hours)
    # Q1 to the end of February (no January hours): 672 operating hours, 624 valid (48 out of control): HJ 75 capture
    # rate 624 / 672 = 92.86 %; the CO2 concentration is available in the 624 (cleared while out of control), the
    # flow, whose monitor was in control, in all 672 (100 %).
    assert (q["quarter"], q["months"], q["operating_hours"], q["valid_hours"], q["out_of_control_hours"]) == (
        "2026-Q1", ["2026-01", "2026-02"], 672, 624, 48)
    assert q["capture_rate"] == pytest.approx(624 / 672)
    assert q["availability_co2_concentration"] == pytest.approx(624 / 672) and q["availability_flow"] == 1.0


def rules(qa: QaState) -> list[tuple[str, str]]:
    return [(a.rule, a.severity) for a in qa.findings(entity(), "2026-02", FEB, FEB + 672 * HOUR_NS)]


def test_a_failed_check_not_corrected_within_24_hours_is_a_finding():
    # failed on day 28, the last check of the month: nothing passes before its end, critical
    assert rules(QaState(daily(fail={28}), registry())) == [("qa_failed_uncorrected", "critical")]
    # failed on day 10, passed on day 12: 48 h later > 24 h: warning
    qa = QaState(daily(fail={10}, skip={11}), registry())
    (finding,) = qa.findings(entity(), "2026-02", FEB, FEB + 672 * HOUR_NS)
    assert (finding.rule, finding.severity, finding.source_id) == ("qa_failed_uncorrected", "warning", "k1")
    assert "48 h later" in finding.explanation and finding.id.endswith("/2026-02/qa_failed_uncorrected:co2/span_drift")
    # passed again on day 11, exactly 24 h later: corrected in time, no finding (the boundary)
    assert rules(QaState(daily(fail={10}), registry())) == []


@pytest.mark.parametrize(("last", "found"), [(20.5, True), (20.49, False)])
def test_drift_growing_towards_its_limit_is_a_finding(last, found):
    # The month's last three span checks read 20.4, 20.45 and `last` on the 20.0 gas: 100 x e / 25 % of the 2.5 %
    # limit = 0.64, 0.72, then 0.8 (20.5: at the 80 % threshold, reported) or 0.784 (20.49, not reported).
    checks = daily(days=range(1, 26)) + [span(at(26), 20.4), span(at(27), 20.45), span(at(28), last)]
    qa = QaState(checks, registry())
    got = qa.findings(entity(), "2026-02", FEB, FEB + 672 * HOUR_NS)
    assert [(a.rule, a.severity) for a in got] == ([("qa_drift_trend", "warning")] if found else [])
    if found:
        assert got[0].measured == pytest.approx(0.8) and got[0].allowed == 1.0


def test_an_overdue_comparison_test_is_a_finding():
    # cn-hj75: the next periodic comparison is due 6 months after a pass [U]; a pass on 2025-08-10 is due on
    # 2026-02-10 09:50, within February: a warning (overdue comparisons are reported, not gated, under cn-hj75).
    # six hourly runs from 04:00, the last ending 09:50
    runs = [ComparisonRun(run=k + 1, start=datetime(2025, 8, 10, 4, 0, tzinfo=SHANGHAI) + timedelta(hours=k),
                          end=datetime(2025, 8, 10, 4, 50, tzinfo=SHANGHAI) + timedelta(hours=k),
                          reference_value=12.0, cems_value=11.9) for k in range(6)]
    test = ComparisonTest(site_id="plant", source_id="k1", channel_id="co2", quantity="a05001", unit="%",
                          test_id="R-2025-08", runs=runs)
    qa = QaState(daily() + [test], registry())
    (finding,) = qa.findings(entity(), "2026-02", FEB, FEB + 672 * HOUR_NS)
    assert (finding.rule, finding.severity) == ("qa_test_overdue", "warning")
    assert "2026-02-10T09:50:00+08:00" in finding.explanation
    assert month(qa)[0].out_of_control_hours == 0  # reported, not gated


# --- properties and refusals -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-3 * 60, 30 * 60), st.floats(0.5, 2.0)), max_size=8),
       st.integers(0, 30))
def test_step_factor_is_the_latest_adjustment_whose_date_an_hour_has_reached(adjustments, n_hours):
    """Property: an hour takes the factor of the latest adjustment dated at or before its start, else 1."""
    from streams.kernels.qa_state import step_factor

    m = HOUR_NS // 60
    src = [a[0] for a in adjustments]
    t = [a[1] * m for a in adjustments]
    f = [a[2] for a in adjustments]
    got = step_factor(src, t, f, 2, 0, n_hours)
    for s in range(2):
        for h in range(n_hours):
            mine = [i for i in range(len(src)) if src[i] == s and t[i] <= h * HOUR_NS]
            want = f[max(mine, key=lambda i: (t[i], i))] if mine else 1.0
            assert got[s, h] == want


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["measured", "missing", "stopped"]), min_size=1, max_size=72),
       st.lists(st.tuples(st.integers(0, 80), st.booleans()), max_size=6))
def test_the_gate_never_adds_valid_hours_and_never_touches_stopped_ones(states, checks):
    """Property: gating only turns operating hours out of control, never the other way, keeps stopped hours, and
    gating twice gives the same hours."""
    qa = QaState([span(datetime.fromtimestamp((FEB + i * HOUR_NS) / 1e9, SHANGHAI), 20.3 if ok else 21.0)
                  for i, ok in checks], registry())
    hours = [hour(i, state=s) for i, s in enumerate(states)]
    gated = qa.gate(hours)
    for before, after in zip(hours, gated, strict=True):
        assert after.status == before.status or (before.status in ("measured", "missing")
                                                 and after.status == "out_of_control")
        assert after.measured <= before.measured
    assert qa.gate(gated) == gated


def test_a_check_the_policy_cannot_judge_is_refused_with_the_record_named():
    # HJ 75 writes the drift limit as a % of full scale: a check without full_scale cannot be judged
    check = DriftCheck(site_id="plant", source_id="k1", channel_id="co2", quantity="a05001", unit="%", time=at(3),
                       check="span", reference_value=20.0, measured_value=20.3)
    with pytest.raises(ValueError, match=r"QA record plant/k1/co2 \(drift_check\): .*full scale is missing"):
        QaState([check], registry())
    # ... which Part 75, with its limit in % CO2, judges: e = 0.3 <= 1.0 % CO2
    (event,) = QaState([check], registry(), "us-part75").events
    assert event.passed and event.figure == pytest.approx(0.3)
    with pytest.raises(ValueError, match="site 'elsewhere' is not a registered site"):
        QaState([check.model_copy(update={"site_id": "elsewhere"})], registry())
