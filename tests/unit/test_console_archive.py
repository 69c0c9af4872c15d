"""What the console adds to the archive: regions in the chain, hourly series, records sharing the ledger."""

from __future__ import annotations

from types import SimpleNamespace

from streams.archive.store import Archive
from streams.core.figures import hourly_figures

H = 3_600_000_000_000  # one hour [ns]


def _hour(i, status, co2):
    return SimpleNamespace(hour_start_ns=i * H, status=status, co2_kg=co2)


def test_hourly_figures_one_letter_per_hour():
    hours = [_hour(0, "measured", 100.0), _hour(1, "missing", None), _hour(2, "stopped", 0.0),
             _hour(1, "missing", None), _hour(4, "out_of_control", None)]  # hour 3 has no record; hour 5 is outside
    month = SimpleNamespace(missing_hours=0, timezone="Asia/Shanghai")
    got = hourly_figures(hours + [_hour(5, "measured", 1.0)], month, 0, 5 * H)  # a 5-hour "month"
    assert got == {"start": "1970-01-01T00:00:00Z", "timezone": "Asia/Shanghai",
                   "co2_kg": [100.0, None, 0.0, None, None], "status": "VSP-O"}
    # with a missing hour left in the month, the rollup did not fill them all: shown as missing (M)
    assert hourly_figures(hours, SimpleNamespace(missing_hours=1, timezone="UTC"), 0, 5 * H)["status"] == "VMP-O"


def test_regions_and_hourly_series_are_in_the_chain_and_written_only_when_changed(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    a.register("e1", "Asia/Shanghai", "2026-02", "320000", "320500")
    a.register("e1", "Asia/Shanghai", "2026-03", "320000", "320500")  # same region: no new record
    a.register("e1", "Asia/Shanghai", "2026-03", "320000", "320100")  # moved: a new record
    assert [r.data["municipality"] for r in a.records("entity")] == ["320500", "320100"]
    # the first month stays 2026-02: a later one would drop February from the deadline report
    assert a.entities() == [{"entity_id": "e1", "timezone": "Asia/Shanghai", "first_month": "2026-02",
                             "province": "320000", "municipality": "320100"}]
    series = {"start": "2026-01-31T16:00:00Z", "timezone": "Asia/Shanghai", "co2_kg": [1.5, None], "status": "VS"}
    assert a.put_hourly("e1", "s1", "2026-02", series) is not None
    assert a.put_hourly("e1", "s1", "2026-02", dict(series)) is None
    assert a.put_hourly("e1", "s1", "2026-02", series | {"status": "VM"}).data["status"] == "VM"
    assert a.hourly("e1", "2026-02") == {"s1": {"source_id": "s1", **series, "status": "VM"}}
    v = a.put("e1", None, "2026-02", {"co2_t": 1.0}, "cems")
    assert v.seq == 5 and v.prev_hash == a.records()[-1].hash  # versions and records share one sequence
    assert a.head() == v.hash and a.verify() == []
    a.db.execute("UPDATE entities SET municipality='320500'")  # moving an entity behind the chain's back
    assert a.verify() == ["entity e1: time zone or region in the entities table does not match the chain (altered)"]
