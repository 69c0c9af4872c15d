"""The monthly archive: versions, the hash chain (tampering detected), exports, deadlines, and the API's 4xx."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime

import pytest

from streams.archive.api import OPENAPI, make_app
from streams.archive.store import Archive, ArchiveError, deadline_of

FIG = {"co2_t": 60467.3, "measured_co2_t": 60467.3, "substituted_co2_t": 0.0, "cf4_t": 0.0, "c2f6_t": 0.0,
       "co2e_t": 60467.3, "operating_hours": 672, "completeness": 1.0, "alerts": []}
JAN15 = datetime(2026, 1, 15, tzinfo=UTC)


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path / "archive.sqlite")
    yield a
    a.close()


def test_a_revision_is_a_new_version_and_an_unchanged_month_is_not(archive):
    first = archive.put("e1", None, "2026-02", FIG, "cems", at=JAN15)
    assert (first.version, first.reason, first.source_id) == (0, "first", "-")
    assert archive.put("e1", None, "2026-02", dict(FIG), "cems", at=JAN15) is None  # same figures: nothing new
    late = archive.put("e1", None, "2026-02", FIG | {"co2_t": 60500.0}, "late_data", at=JAN15)
    assert (late.version, late.reason, late.prev_hash) == (1, "late_data", first.hash)
    assert [e.version for e in archive.history("e1", "2026-02")] == [0, 1]
    assert [e.figures["co2_t"] for e in archive.latest(entity_id="e1")] == [60500.0]


def test_the_chain_detects_an_altered_or_removed_version(archive):
    for i, month in enumerate(("2026-01", "2026-02", "2026-03")):
        archive.put("e1", None, month, FIG | {"co2_t": 1000.0 + i}, "cems", at=JAN15)
    assert archive.verify() == []
    archive.db.execute("UPDATE versions SET figures = ? WHERE seq = 2", (json.dumps(FIG | {"co2_t": 1.0}),))
    assert archive.verify() == ["seq 2 (e1/-/2026-02 v0): content does not match its hash (altered)"]
    archive.db.execute("UPDATE versions SET figures = ? WHERE seq = 2", (json.dumps(FIG | {"co2_t": 1001.0},
                                                                                   sort_keys=True, separators=(",", ":")),))
    assert archive.verify() == []  # put back exactly: intact again
    archive.db.execute("DELETE FROM versions WHERE seq = 2")
    assert archive.verify() == ["seq 3 (e1/-/2026-03 v0): prev_hash does not match the version before it "
                                "(a version was removed or inserted)"]


def test_exports(archive):
    archive.put("e1", None, "2026-02", FIG | {"alerts": [{"rule": "flatline"}]}, "cems", at=JAN15)
    body, media = archive.export(archive.latest(), "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert media.startswith("text/csv") and rows[0]["co2_t"] == "60467.3" and rows[0]["month"] == "2026-02"
    assert json.loads(rows[0]["alerts"]) == [{"rule": "flatline"}]
    body, _ = archive.export(archive.latest(), "json")
    assert json.loads(body)[0]["figures"]["operating_hours"] == 672
    import pyarrow.parquet as pq

    body, media = archive.export(archive.latest(), "parquet")
    table = pq.read_table(io.BytesIO(body))
    assert media == "application/vnd.apache.parquet" and table.column("co2_t").to_pylist() == [60467.3]
    with pytest.raises(ArchiveError):
        archive.export([], "xlsx")


def test_deadlines_are_40_days_after_the_local_month_end(archive):
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    # February 2026 ends 2026-03-01T00:00 local; plus 40 days: 2026-04-10T00:00 local = 2026-04-09T16:00Z
    assert deadline_of("2026-02", tz) == datetime(2026, 4, 10, tzinfo=tz)
    archive.register("e1", "Asia/Shanghai", "2026-01")
    archive.put("e1", None, "2026-01", FIG, "cems", at=datetime(2026, 2, 20, tzinfo=UTC))  # in time (by 2026-03-13)
    archive.put("e1", None, "2026-02", FIG, "cems", at=datetime(2026, 4, 20, tzinfo=UTC))  # after 2026-04-10: late
    rows = {r["month"]: r for r in archive.deadlines(datetime(2026, 6, 1, tzinfo=UTC))}
    # March is due by 2026-05-11 (missing on 2026-06-01), April by 2026-06-10 and May by 2026-07-11 (both still due)
    assert {m: r["status"] for m, r in rows.items()} == {"2026-01": "in_time", "2026-02": "late",
                                                        "2026-03": "missing", "2026-04": "due", "2026-05": "due"}
    assert rows["2026-05"]["days_left"] == 39  # 2026-07-11T00:00 local is 39 days and 16 h after 2026-06-01Z


def test_the_api_answers_bad_requests_with_4xx_and_serves_exports(archive):
    from aiohttp.test_utils import TestClient, TestServer

    archive.put("e1", None, "2026-02", FIG, "cems", at=JAN15)

    async def run():
        async with TestClient(TestServer(make_app(archive))) as client:
            got = {}
            for path in ("/v1/months?month=2026-13", "/v1/months?format=xlsx", "/v1/months?color=red",
                         "/v1/months/e1/2026-02?format=pdf", "/v1/months/nobody/2026-02", "/v1/months/e1/Feb",
                         "/v1/deadlines?as_of=yesterday", "/v1/nothing-here"):
                r = await client.get(path)
                got[path] = (r.status, (await r.json())["error"])
            ok = await client.get("/v1/months?entity=e1&format=csv")
            text = await ok.text()
            verify = await (await client.get("/v1/verify")).json()
            spec = await (await client.get("/openapi.json")).json()
            return got, ok.status, text, verify, spec

    got, status, text, verify, spec = asyncio.run(run())
    assert {p: s for p, (s, _) in got.items()} == {
        "/v1/months?month=2026-13": 400, "/v1/months?format=xlsx": 400, "/v1/months?color=red": 400,
        "/v1/months/e1/2026-02?format=pdf": 400, "/v1/months/nobody/2026-02": 404, "/v1/months/e1/Feb": 400,
        "/v1/deadlines?as_of=yesterday": 400, "/v1/nothing-here": 404}
    assert "YYYY-MM" in got["/v1/months?month=2026-13"][1]
    assert status == 200 and text.splitlines()[1].startswith("e1,-,2026-02,0,first,")
    assert verify["intact"] and verify["head"] == archive.head()
    assert spec == OPENAPI and "/v1/deadlines" in spec["paths"]
