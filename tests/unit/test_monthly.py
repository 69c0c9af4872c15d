"""The stream's monthly rollup: hourly records in, monthly records out, with hand-worked totals."""

from __future__ import annotations

import random
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from schemas.records import HourlyRecord, MonthlyRecord
from schemas.site import Entity
from streams.kernels import HOUR_NS, POLICIES
from streams.monthly import MonthlyRollup, month_bounds
from streams.processor import Registry
from tests.unit.test_processor import MESSAGES, T0, final, offline_co2_kg, processor

FEB = 1_769_875_200 * 10**9  # 2026-02-01T00:00 Asia/Shanghai = 2026-01-31T16:00Z
SHANGHAI = ZoneInfo("Asia/Shanghai")


def registry() -> Registry:
    ch = [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
          {"id": "q", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}]
    return Registry([Entity.model_validate({"id": "plant", "name": "p", "sector": "cement", "sources": [
        {"id": "k1", "name": "kiln", "duct_area_m2": 10.0, "channels": ch}]})])


def hour(i: int, co2_kg: float | None = 1000.0, state: str = "measured", revision: int = 0) -> HourlyRecord:
    """Hour ``i`` of February 2026 (local), as the processor publishes it."""
    measured, operating = state == "measured", state != "stopped"
    return HourlyRecord(
        entity_id="plant", source_id="k1", hour_start_ns=FEB + i * HOUR_NS, revision=revision,
        reason="closed" if revision == 0 else "late_data", policy="cn-hj75",
        co2_kg=co2_kg if measured else (0.0 if not operating else None), co2_mg_m3=None, flow_m3_h=None,
        operating=operating, measured=measured, missing=operating and not measured, readings=3600)


def february() -> list[HourlyRecord]:
    """672 hours: 1,000 kg each, 1,500 kg at hour 50; hours 100-104 missing (local day 5: 96-119); all of local
    day 9 (hours 192-215) stopped."""
    out = []
    for i in range(672):
        if 100 <= i < 105:
            out.append(hour(i, state="missing"))
        elif 192 <= i < 216:
            out.append(hour(i, state="stopped"))
        else:
            out.append(hour(i, 1500.0 if i == 50 else 1000.0))
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
    # HJ 75 substitution: capture (672 - 24 stopped - 5 missing) / 672 = 95.7 % >= 90 % and a 5-h gap -> the maximum
    # of the previous 180 valid hours, which hold hour 50's 1,500 kg: 5 x 1,500 = 7,500 kg
    assert (rec.status, rec.reason, rec.revision) == ("closed", "closed", 0)
    assert rec.measured_co2_t == pytest.approx((642 * 1000 + 1500) / 1000, abs=1e-9)  # 643.5 t
    assert rec.substituted_co2_t == pytest.approx(7.5, abs=1e-9)
    assert rec.co2_t == pytest.approx(651.0, abs=1e-9)
    assert (rec.hours_in_month, rec.hours, rec.operating_hours, rec.measured_hours, rec.substituted_hours,
            rec.missing_hours) == (672, 672, 648, 643, 5, 0)
    # day 5 has 19 valid hours (< 20) and day 9 none: 26 valid days >= 23 needed in February (HJ 76 App. B)
    assert (rec.valid_days, rec.valid) == (26, True)
    assert rec.completeness == pytest.approx(643 / 648)
    assert (rec.key, rec.timezone, rec.month_start_ns, rec.substitution) == ("k1/2026-02", "Asia/Shanghai", FEB, "hj75-2017")
    assert MonthlyRecord.from_json(rec.to_json()) == rec

    # late data measures hour 101 after all: revision 1, day 5 back to 20 valid hours
    (rev,) = roll.update([hour(101, 1000.0, revision=1)])
    assert (rev.status, rev.reason, rev.revision) == ("closed", "late_data", 1)
    assert (rev.measured_hours, rev.substituted_hours, rev.valid_days) == (644, 4, 27)
    assert rev.co2_t == pytest.approx((643 * 1000 + 1500 + 4 * 1500) / 1000, abs=1e-9)  # 650.5 t
    assert roll.update([hour(101, 1000.0, revision=2)]) == []  # no change, no revision


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
    assert roll.hours["k1"].origin == FEB + (672 - 24) * HOUR_NS  # February is gone but for the lookback


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
