"""The stream's monthly rollup: hourly records in, monthly records out, with hand-worked totals."""

from __future__ import annotations

import random
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from schemas.records import HourlyRecord, MonthlyRecord
from schemas.site import Entity
from streams.core.monthly import MonthlyRollup, month_bounds
from streams.core.processor import Registry
from streams.kernels import HOUR_NS, POLICIES
from streams.kernels.substitute import Part75Limits
from tests.fixtures import T0, final, offline_co2_kg, processor, two_stacks

MESSAGES, _ = two_stacks()
FEB = 1_769_875_200 * 10**9  # 2026-02-01T00:00 Asia/Shanghai = 2026-01-31T16:00Z
SHANGHAI = ZoneInfo("Asia/Shanghai")


def registry() -> Registry:
    ch = [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
          {"id": "q", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}]
    return Registry([Entity.model_validate({"id": "plant", "name": "p", "sector": "cement", "sources": [
        {"id": "k1", "name": "kiln", "duct_area_m2": 10.0, "channels": ch}]})])


FLOW = 100_000.0  # m3/h std dry in every measured hour: 10,000 mg/m3 x 100,000 m3/h x 1e-6 = 1,000 kg


def hour(i: int, co2_kg: float | None = 1000.0, state: str = "measured", revision: int = 0, start: int = FEB,
         policy: str = "cn-hj75", **extra) -> HourlyRecord:
    """Hour ``i`` of the month from ``start`` (February 2026, local), as the processor publishes it: a measured hour's
    concentration and flow give its mass (kg = mg/m3 x m3/h x 1e-6); other hours have neither."""
    measured, operating = state == "measured", state != "stopped"
    return HourlyRecord(
        entity_id="plant", source_id="k1", hour_start_ns=start + i * HOUR_NS, revision=revision,
        reason="closed" if revision == 0 else "late_data", policy=policy,
        co2_kg=co2_kg if measured else (0.0 if not operating else None),
        co2_mg_m3=co2_kg * 1e6 / FLOW if measured else None, flow_m3_h=FLOW if measured else None,
        operating=operating, measured=measured, missing=operating and not measured, readings=3600, status=state,
        **extra)


def february(gap_state: str = "missing", start: int = FEB, n: int = 672, **kw) -> list[HourlyRecord]:
    """672 hours: 1,000 kg each, 1,500 kg at hour 50; hours 100-104 ``gap_state`` (local day 5: 96-119); all of
    local day 9 (hours 192-215) stopped."""
    out = []
    for i in range(n):
        if 100 <= i < 105:
            out.append(hour(i, state=gap_state, start=start, **kw))
        elif 192 <= i < 216:
            out.append(hour(i, state="stopped", start=start, **kw))
        else:
            out.append(hour(i, 1500.0 if i == 50 else 1000.0, start=start, **kw))
    return out


def test_month_bounds_follow_the_local_calendar():
    assert month_bounds(FEB, SHANGHAI) == ("2026-02", FEB, FEB + 672 * HOUR_NS)
    assert month_bounds(FEB - HOUR_NS, SHANGHAI)[0] == "2026-01"  # 2026-01-31T23:00 local
    assert month_bounds(FEB, ZoneInfo("UTC"))[0] == "2026-01"  # the same instant is still January in UTC


def test_a_month_is_open_while_hours_come_then_closed_with_hand_worked_totals():
    roll = MonthlyRollup(registry(), POLICIES["cn-hj75"])
    records = february()
    first = roll.update(records[:336])
    assert [(r.month, r.status, r.reason, r.hours, r.revision) for r in first] == [("2026-02", "open", "running", 336, 0)]

    (rec,) = roll.update(records[336:])
    # HJ 75 substitution: capture rate of the quarter (known from February 1) = (672 - 24 stopped - 5 missing) /
    # (672 - 24) = 643/648 = 99.2 % >= 90 % and a 5-h gap of *missing* hours: concentration and flow each the mean
    # of the hour before (99) and after (105): 10,000 mg/m3 and 100,000 m3/h -> 1,000 kg an hour, 5 x 1,000 = 5,000 kg.
    # (The rule changed: the 180-h maximum of the mass, 7.5 t, is the out-of-control table; see the next test.)
    assert (rec.status, rec.reason, rec.revision) == ("closed", "closed", 0)
    assert rec.measured_co2_t == pytest.approx((642 * 1000 + 1500) / 1000, abs=1e-9)  # 643.5 t
    assert rec.substituted_co2_t == pytest.approx(5.0, abs=1e-9)
    assert rec.co2_t == pytest.approx(648.5, abs=1e-9)
    assert (rec.hours_in_month, rec.hours, rec.operating_hours, rec.measured_hours, rec.substituted_hours,
            rec.missing_hours) == (672, 672, 648, 643, 5, 0)
    assert (rec.stopped_hours, rec.out_of_control_hours, rec.capture_rate) == (24, 0, pytest.approx(643 / 648))
    # day 5 has 5 invalid hours (> 24 - 20) and day 9 is stopped (neither valid nor invalid): 26 valid days, 1
    # invalid of 27 operating days <= 28 - 23 allowed in February (HJ 76 App. B)
    assert (rec.valid_days, rec.valid) == (26, True)
    assert rec.completeness == pytest.approx(643 / 648)
    assert (rec.key, rec.timezone, rec.month_start_ns, rec.substitution) == ("k1/2026-02", "Asia/Shanghai", FEB, "hj75-2017")
    assert MonthlyRecord.from_json(rec.to_json()) == rec

    # late data measures hour 101 after all: revision 1, day 5 back to 4 invalid hours (valid); two gaps of 1 and 3 h,
    # each the before/after mean, 1,000 kg an hour: 644.5 t measured + 4 t substituted
    (rev,) = roll.update([hour(101, 1000.0, revision=1)])
    assert (rev.status, rev.reason, rev.revision) == ("closed", "late_data", 1)
    assert (rev.measured_hours, rev.substituted_hours, rev.valid_days) == (644, 4, 27)
    assert rev.co2_t == pytest.approx((643 * 1000 + 1500 + 4 * 1000) / 1000, abs=1e-9)  # 648.5 t
    assert roll.update([hour(101, 1000.0, revision=2)]) == []  # no change, no revision


def test_out_of_control_hours_take_the_mass_table_and_are_counted_apart_from_missing_ones():
    (rec,) = MonthlyRollup(registry(), POLICIES["cn-hj75"]).update(february("out_of_control"))
    # out of control (e.g. after a failed drift check), capture 643/648 >= 90 %, 5 h: the maximum mass of the 180
    # valid hours before hour 100 (all of 0..99, with hour 50's 1,500 kg): 5 x 1,500 = 7,500 kg
    assert rec.substituted_co2_t == pytest.approx(7.5, abs=1e-9) and rec.co2_t == pytest.approx(651.0, abs=1e-9)
    assert (rec.out_of_control_hours, rec.missing_hours, rec.substituted_hours, rec.operating_hours) == (5, 0, 5, 648)


def test_the_capture_rate_counts_the_quarter_to_the_month_end_even_beyond_the_lookback():
    """January 2026 (744 h, from 2026-01-01 local) with hours 0..99 out of control, then February all measured. With a
    24-h lookback the window still starts at the quarter: February's rate = (744 + 672 - 100) / (744 + 672) =
    1316/1416 = 92.9 %; January's = 644/744 = 86.6 % (its hours only: nothing after a month counts)."""
    jan = FEB - 744 * HOUR_NS
    records = [hour(i, state="out_of_control" if i < 100 else "measured", start=jan) for i in range(744)]
    records += [hour(i, start=FEB) for i in range(672)]
    roll = MonthlyRollup(registry(), POLICIES["cn-hj75"], lookback_h=24)
    out = {r.month: r for r in roll.update(records)}
    assert out["2026-01"].capture_rate == pytest.approx(644 / 744)
    assert out["2026-02"].capture_rate == pytest.approx(1316 / 1416)


def test_a_kiln_with_a_seven_day_shutdown_has_a_valid_month():
    # March 2026 (31 days, from 2026-03-01 local): days 10..16 stopped, everything else measured: 24 valid days of 24
    # operating days, 0 invalid <= 31 - 25: valid (the old rule, >= 25 valid days, failed it for the stop alone)
    mar = FEB + 672 * HOUR_NS
    records = [hour(i, state="stopped" if 240 <= i < 408 else "measured", start=mar, analyser_off=240 <= i < 408)
               for i in range(744)]
    (rec,) = MonthlyRollup(registry(), POLICIES["cn-hj75"]).update(records)
    assert (rec.valid_days, rec.valid, rec.stopped_hours, rec.operating_hours) == (24, True, 168, 576)
    assert rec.analyser_off_hours == 0  # analyser-off hours count operating hours only


def test_analyser_off_and_ambient_hours_are_counted():
    records = february()
    records[300] = replace(records[300], analyser_off=True)
    records[301] = replace(records[301], co2_ambient=True)
    records[302] = replace(records[302], co2_ambient=True)
    (rec,) = MonthlyRollup(registry(), POLICIES["cn-hj75"]).update(records)
    assert (rec.analyser_off_hours, rec.co2_ambient_hours) == (1, 2)


def test_none_substitution_leaves_the_gap_missing():
    (rec,) = MonthlyRollup(registry(), POLICIES["cn-hj75"], substitution="none").update(february())
    assert (rec.co2_t, rec.substituted_co2_t, rec.missing_hours, rec.substituted_hours) == (
        pytest.approx(643.5), 0.0, 5, 0)
    assert (rec.status, rec.capture_rate) == ("closed", None)


def test_part75_month_is_not_closed_without_a_needed_max_potential():
    """February under us-part75 with the CO2 concentration missing at 100..399 (flow measured; stopped day 9, hours
    192..215, stays stopped): 276 missing hours. Availability at gap hour h = 100 valid / operating hours so far:
    100..104 >= 95 % (100/105), 105..110 >= 90 % (100/111): N = 276 > 24 (> 8), the greater of the 90th (95th)
    percentile of the 100 valid hours (10,000 mg/m3) and the before/after average (10,000): 1,000 kg an hour;
    111..124 >= 80 % (100/125): the maximum, 15,000 mg/m3 (hour 50): 1,500 kg; 125..399 less the 24 stopped = 251
    hours < 80 %: the maximum potential concentration."""
    def us(records):
        return [replace(r, policy="us-part75", status="missing", co2_kg=None, co2_mg_m3=None, measured=False,
                        missing=True) if 100 <= i < 400 and r.status != "stopped" else replace(r, policy="us-part75")
                for i, r in enumerate(records)]

    records = us(february())
    (rec,) = MonthlyRollup(registry(), POLICIES["us-part75"]).update(records)
    assert (rec.status, rec.reason) == ("open", "needs_max_potential")  # never a 0-t hour: the month is not closed
    assert (rec.missing_hours, rec.substituted_hours) == (251, 25)
    assert rec.substituted_co2_t == pytest.approx((11 * 1000 + 14 * 1500) / 1000)  # 32 t
    limits = {"k1": Part75Limits(max_co2_pct=10.0, max_flow_m3_h=200_000.0)}
    (ok,) = MonthlyRollup(registry(), POLICIES["us-part75"], part75_limits=limits).update(records)
    # 10 % CO2 at 293.15 K (24.055 L/mol): 10 x 1e4 ppm x 44.009 / 24.055 = 182,951.6 mg/m3; x 100,000 m3/h x 1e-6
    # = 18,295.2 kg an hour
    assert (ok.status, ok.reason, ok.missing_hours, ok.substituted_hours) == ("closed", "closed", 0, 276)
    assert ok.substituted_co2_t == pytest.approx((11 * 1000 + 14 * 1500 + 251 * 10 * 1e4 * 44.009 / 24.055 * 0.1) / 1000)
    with pytest.raises(ValueError, match="not sources"):
        MonthlyRollup(registry(), POLICIES["us-part75"], part75_limits={"nope": Part75Limits(max_co2_pct=10.0)})


def test_state_saved_segment_by_segment_restores_to_the_same_records():
    """Each save writes only the changed segments over the store (and drops those gone); restoring what is
    saved continues with the same records as the rollup that never stopped."""
    records = february()
    rng = random.Random(3)
    roll, store = MonthlyRollup(registry(), POLICIES["cn-hj75"]), {}
    for i in range(0, 400, 50):
        roll.update(records[i:i + 50])
        changed, live = roll.segments(full=False)
        store = {name: data for name, data in (store | changed).items() if name in live}
        assert set(changed) <= {"monthly"} | {f"mday:{d}" for d in range((FEB + i * HOUR_NS) // (24 * HOUR_NS),
                                                                         (FEB + (i + 50) * HOUR_NS) // (24 * HOUR_NS) + 1)}
    again = MonthlyRollup(registry(), POLICIES["cn-hj75"])
    again.restore_segments(store)
    tail = records[400:]
    cut = rng.randrange(1, len(tail))
    assert again.update(tail[:cut]) + again.update(tail[cut:]) == roll.update(tail[:cut]) + roll.update(tail[cut:])


def test_months_beyond_the_revision_horizon_are_forgotten():
    roll = MonthlyRollup(registry(), POLICIES["cn-hj75"], lookback_h=24, revision_horizon_ns=48 * HOUR_NS)
    march = [replace(h, hour_start_ns=h.hour_start_ns + 672 * HOUR_NS) for h in february()]
    roll.update(february() + march)
    assert list(roll.published["k1"]) == ["2026-03"]
    # February's hours stay: they are in March's calendar quarter, whose capture rate HJ 75 judges by
    assert roll.hours["k1"].origin == FEB
    april = [replace(h, hour_start_ns=h.hour_start_ns + (672 + 744) * HOUR_NS) for h in february()]
    roll.update(april)
    assert list(roll.published["k1"]) == ["2026-04"]
    assert roll.hours["k1"].origin == FEB + (672 + 744 - 24) * HOUR_NS  # a new quarter: only the lookback stays


def test_the_processor_publishes_monthly_records_with_its_hours():
    p = processor()
    hourly, monthly = [], []
    for i in range(0, len(MESSAGES), 300):
        out = p.process(MESSAGES[i : i + 300])
        hourly += out.hourly
        monthly += out.monthly
    expected = offline_co2_kg()
    latest = {r.source_id: r for r in monthly}
    assert set(latest) == {"stack0", "stack1"} and len(final(hourly)) == 4
    for k in range(2):
        r = latest[f"stack{k}"]
        # T0 is 2026-01-01T08:00 in Shanghai: January; two hours published, both measured
        assert (r.month, r.status, r.hours, r.measured_hours) == ("2026-01", "open", 2, 2)
        assert r.co2_t == (expected[k, 0] + expected[k, 1]) / 1000
    assert T0 > 0


def test_published_json_has_exactly_the_committed_schema_fields():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "schemas" / "json"
    rec = MonthlyRollup(registry(), POLICIES["cn-hj75"]).update(february()[:3])[0]
    for record, name in ((rec, "monthly-record"), (hour(0), "hourly-record")):
        schema = json.loads((root / f"{name}.schema.json").read_text())
        assert set(json.loads(record.to_json())) == set(schema["properties"]) >= set(schema["required"])
