"""Bad input to the archive (issue 15): ``cems archive verify`` on stores whose data are gone, altered or not an archive
at all; the archive API's ranges, pages, unknown and repeated parameters; ``cems archive serve`` on a port in use.
Never "intact" for lost data, never a traceback, never a 500, never a file created by a read."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from streams.archive.api import DEFAULT_LIMIT, MAX_LIMIT, make_app
from streams.archive.store import Archive, ArchiveError, StoreError
from streams.cli import main
from tests.fixtures import cems_process, free_port, wait_until

AT = datetime(2026, 3, 5, tzinfo=UTC)
FIG = {"co2_t": 60467.3, "operating_hours": 672, "completeness": 1.0, "alerts": []}


def filled(path: Path) -> Archive:
    """A small archive: 1 entity (a record), 2 months of the total with a revision and 1 source-month (4 versions),
    an hourly series and an evidence file (2 more records); the chain's last link is the revision of February."""
    a = Archive(path)
    a.register("e1", "Asia/Shanghai", "2026-01", "320000", "320500", at=AT)  # seq 1 (record: entity)
    a.put("e1", None, "2026-01", FIG, "cems", at=AT)  # seq 2
    a.put("e1", "s1", "2026-01", FIG, "cems", at=AT)  # seq 3
    a.put_hourly("e1", "s1", "2026-01", {"start": "2025-12-31T16:00:00Z", "co2_kg": [1.5], "status": "V"}, at=AT)  # 4
    digest = a.put_blob(b"lab report")
    a.append("evidence", "e1", "2026-01", {"sha256": digest, "name": "lab.pdf"}, at=AT)  # seq 5
    a.put("e1", None, "2026-02", FIG, "cems", at=AT)  # seq 6
    a.put("e1", None, "2026-02", FIG | {"co2_t": 60500.0}, "late_data", at=AT)  # seq 7: the head
    return a


def verify(store: Path, *args: str):
    return CliRunner().invoke(main, ["archive", "verify", "--store", str(store), *args])


@pytest.fixture
def store(tmp_path) -> Path:
    filled(tmp_path / "a.sqlite").close()
    return tmp_path / "a.sqlite"


def sql(store: Path, statement: str, params: tuple = ()) -> None:
    with sqlite3.connect(store) as db:
        db.execute(statement, params)


def head_of(store: Path) -> str:
    return Archive(store, read_only=True).head()


# -- cems archive verify ------------------------------------------------------------------------------------------


def test_verify_prints_the_head_and_how_many_versions_and_records(store):
    head = head_of(store)
    res = verify(store, "--expect-head", head)
    # versions: seq 2, 3, 6, 7 (4); records: entity, hourly, evidence (3)
    assert res.exit_code == 0, res.output
    assert res.output == f"intact: head {head}, 4 monthly version(s), 3 record(s)\n"


def test_deleting_the_last_version_is_caught_by_the_expected_head(store):
    head = head_of(store)
    sql(store, "DELETE FROM versions WHERE seq = 7")
    assert verify(store).exit_code == 0  # a shorter chain is a valid chain: only the published head tells
    res = verify(store, "--expect-head", head)
    shorter = head_of(store)
    assert res.exit_code == 1
    assert f"head is {shorter}, expected {head} (versions or records were cut off the end" in res.output
    assert f"BROKEN: 1 problem(s); head {shorter}, 3 monthly version(s), 3 record(s)" in res.output
    assert verify(store, "--head", head).exit_code == 1  # the older option: the published head must be in the chain


def test_deleting_every_version_and_record_is_an_empty_archive_not_an_intact_one(store):
    sql(store, "DELETE FROM versions")
    sql(store, "DELETE FROM records")
    res = verify(store)
    assert res.exit_code == 1
    assert "the archive holds no versions and no records (empty" in res.output
    assert "entity e1: in the entities table but not in the chain (added outside the archive)" in res.output
    assert "intact" not in res.output


def test_deleting_every_version_breaks_the_records_after_them(store):
    sql(store, "DELETE FROM versions")
    res = verify(store)
    assert res.exit_code == 1
    # the hourly record (seq 4) chained to version seq 3, now gone
    assert "seq 4 (hourly e1/2026-01): prev_hash does not match the entry before it" in res.output


@pytest.mark.parametrize("table", ["versions", "records", "entities", "blobs"])
def test_a_dropped_table_is_a_clear_failure(store, table):
    sql(store, f"DROP TABLE {table}")
    res = verify(store)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # an exit, not an uncaught error
    assert f"not a CEMS archive, or a damaged one: table(s) {table} missing" in res.output
    assert "Traceback" not in res.output


def test_a_mistyped_store_path_fails_and_creates_nothing(tmp_path):
    missing = tmp_path / "archve.sqlite"
    for command in (["verify"], ["serve", "--port", str(free_port())]):
        res = CliRunner().invoke(main, ["archive", *command, "--store", str(missing)])
        assert res.exit_code == 2 and f"File '{missing}' does not exist" in res.output
    with pytest.raises(StoreError, match="no archive there"):
        Archive(missing, read_only=True)
    assert not missing.exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"entity_id,month\ne1,2026-01\n", "not a readable SQLite archive (file is not a database)"),
    (b"", "not a CEMS archive, or a damaged one: table(s) versions, records, entities, blobs missing"),  # 0 bytes
])
def test_a_file_that_is_not_an_archive_is_named_not_a_traceback(tmp_path, content, message):
    path = tmp_path / "a.sqlite"
    path.write_bytes(content)
    res = verify(path)
    assert res.exit_code == 1 and message in res.output
    assert path.read_bytes() == content  # read-only: not turned into an archive


def test_verify_and_reads_change_nothing(store):
    before = store.read_bytes()
    assert verify(store).exit_code == 0
    a = Archive(store, read_only=True)
    assert len(a.latest()) == 3 and a.deadlines(AT)  # 2026-01 total and source, 2026-02 total
    with pytest.raises(StoreError, match="opened read-only"):
        a.put("e1", None, "2026-03", FIG, "cems")
    assert store.read_bytes() == before


def test_figures_that_are_not_json_are_a_problem_and_a_clear_read_error(store):
    sql(store, "UPDATE versions SET figures = '{\"co2_t\": 6' WHERE seq = 6")
    res = verify(store)
    assert res.exit_code == 1 and "versions seq 6: figures is not a JSON object (altered or damaged)" in res.output
    with pytest.raises(StoreError, match="versions seq 6: figures is not a JSON object"):
        Archive(store, read_only=True).history("e1", "2026-02")


@pytest.mark.parametrize(("value", "why"), [
    ("NaN", "NaN: Python's json reads it, canonical JSON refuses it"),
    ("[60467.3]", "JSON, but not an object"),
    ("[" * 100_000, "deeper than the parser recurses"),
])
def test_figures_that_decode_to_no_object_are_reported(store, value, why):
    sql(store, "UPDATE versions SET figures = ? WHERE seq = 2", (value,))
    res = verify(store)
    assert res.exit_code == 1 and "versions seq 2: figures is not a JSON object" in res.output, why


def test_text_that_is_not_utf8_is_a_problem_not_a_traceback(store):
    sql(store, "UPDATE versions SET reason = CAST(x'6c617465ff' AS TEXT) WHERE seq = 7")  # "late" + a stray 0xff
    res = verify(store)
    assert res.exit_code == 1 and "seq 7 (e1/-/2026-02 v1): content does not match its hash (altered)" in res.output
    with pytest.raises(StoreError, match="not UTF-8"):
        Archive(store, read_only=True).latest()


def test_a_column_of_the_wrong_type_is_named(store):
    sql(store, "UPDATE versions SET hash = x'00' WHERE seq = 3")  # a blob where the hash (text) was
    res = verify(store)
    assert res.exit_code == 1 and "versions seq 3: hash is bytes b'\\x00', not str (altered or damaged)" in res.output


@pytest.mark.parametrize(("change", "problem"), [
    ("UPDATE entities SET first_month = '2026-02'",  # February on: January would drop out of the deadline report
     "entity e1: first month in the entities table does not match the chain (altered)"),
    ("UPDATE entities SET timezone = 'UTC'",  # the local months' ends move by 8 h
     "entity e1: time zone or region in the entities table does not match the chain (altered)"),
    ("INSERT INTO entities VALUES ('e2', 'UTC', '2026-01', '', '')",
     "entity e2: in the entities table but not in the chain (added outside the archive)"),
    ("DELETE FROM entities", "entity e1: in the chain but not in the entities table (removed)"),
])
def test_the_entity_rows_that_change_how_figures_are_read_are_checked_against_the_chain(store, change, problem):
    sql(store, change)
    res = verify(store)
    assert res.exit_code == 1 and problem in res.output


def test_an_entity_chained_before_its_first_month_was_is_reported_and_chained_again(store):
    sql(store, "UPDATE records SET data = ?, hash = ? WHERE seq = 1", ("{}", "x"))  # stands for an old record
    a = Archive(store)
    old = a.records("entity")[0]
    legacy = {"timezone": "Asia/Shanghai", "province": "320000", "municipality": "320500"}
    # re-hash the whole chain as an archive made before first months were chained (its entity record without one)
    from streams.archive.store import GENESIS, Record, _canonical, _hash

    prev = GENESIS
    for e in sorted([*a._rows(), *a.records()], key=lambda e: e.seq):
        e = Record(**{**old.__dict__, "data": legacy, "prev_hash": prev}) if e.seq == 1 else e
        digest = _hash(type(e)(**{**e.__dict__, "prev_hash": prev}))
        table, blob = ("records", "data") if isinstance(e, Record) else ("versions", "figures")
        body = _canonical(e.data if isinstance(e, Record) else e.figures)
        a.db.execute(f"UPDATE {table} SET {blob}=?, prev_hash=?, hash=? WHERE seq=?", (body, prev, digest, e.seq))
        prev = digest
    assert a.verify() == ["entity e1: its first month is not in the chain (archived before it was; register the "
                          "entity again, e.g. by cems archive sync, to chain it)"]
    a.register("e1", "Asia/Shanghai", "2026-02", "320000", "320500")  # what the next sync or embedded run does
    assert a.verify() == [] and a.records("entity")[-1].data["first_month"] == "2026-01"


def test_the_first_month_only_moves_earlier(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    a.register("e1", "UTC", "2026-03")
    a.register("e1", "UTC", "2026-05")  # a later run: March stays due in the deadline report
    a.register("e1", "UTC", "2026-01")  # earlier data found: January and February join it
    assert [(r.data["first_month"]) for r in a.records("entity")] == ["2026-03", "2026-01"]
    assert a.entities()[0]["first_month"] == "2026-01" and a.verify() == []


@pytest.mark.parametrize("bad", ["abc", "A" * 64, "0" * 63])
def test_a_head_that_is_not_a_sha256_is_a_usage_error(store, bad):
    res = verify(store, "--expect-head", bad)
    assert res.exit_code == 2 and "a head hash is 64 lowercase hex digits (sha256)" in res.output


# -- months and time zones bounded --------------------------------------------------------------------------------


@pytest.mark.parametrize("month", ["1999-12", "2100-01", "9999-12", "0001-01", "2026-1", "+2026-01", "２０２６-01",
                                   "2026-+1", "2026-00", "2026-13", " 2026-01", "2026-01-01"])
def test_months_outside_2000_to_2099_or_not_yyyy_mm_are_refused(tmp_path, month):
    a = Archive(tmp_path / "a.sqlite")
    with pytest.raises(ArchiveError, match="month must be YYYY-MM from 2000-01 to 2099-12"):
        a.put("e1", None, month, FIG, "cems")
    with pytest.raises(ArchiveError):
        a.register("e1", "UTC", month)
    assert a.put("e1", None, "2000-01", FIG, "cems") and a.put("e1", None, "2099-12", FIG, "cems")  # the bounds


def test_an_unknown_time_zone_is_refused(tmp_path):
    with pytest.raises(ArchiveError, match="unknown time zone 'Mars/Olympus'"):
        Archive(tmp_path / "a.sqlite").register("e1", "Mars/Olympus", "2026-01")


# -- the archive API ----------------------------------------------------------------------------------------------


def api(archive: Archive, *paths: str) -> dict[str, tuple[int, object, str | None]]:
    """(status, JSON body, Link header) of each path."""

    async def run():
        out = {}
        async with TestClient(TestServer(make_app(archive))) as client:
            for path in paths:
                r = await client.get(path)
                out[path] = (r.status, await r.json(), r.headers.get("Link"))
        return out

    return asyncio.run(run())


@pytest.mark.parametrize(("path", "message"), [
    ("/v1/deadlines?as_of=9999-12-31", "as_of must be a date-time from 2000-01-01T00:00:00Z up to (not including) "
                                       "2100-01-01T00:00:00Z, got 9999-12-31T00:00:00+00:00"),
    ("/v1/deadlines?as_of=9990-01-01", "up to (not including) 2100-01-01T00:00:00Z, got 9990-01-01"),
    ("/v1/deadlines?as_of=2100-01-01T00:00:00Z", "up to (not including) 2100-01-01T00:00:00Z"),  # the bound itself
    ("/v1/deadlines?as_of=1999-12-31T23:59:59Z", "from 2000-01-01T00:00:00Z"),
    ("/v1/deadlines?as_of=yesterday", "as_of must be an ISO 8601 date-time from 2000-01-01T00:00:00Z"),
    ("/v1/months?month=9999-12", "month must be YYYY-MM from 2000-01 to 2099-12, got '9999-12'"),
    ("/v1/months?colour=red", "unknown parameter 'colour': /v1/months takes entity, source, month, format, limit, "
                              "cursor"),
    ("/v1/deadlines?asof=2026-01-01", "unknown parameter 'asof': /v1/deadlines takes as_of, limit, cursor"),
    ("/v1/verify?head=", "head must be a head hash, 64 lowercase hex digits, got ''"),
    ("/openapi.json?x=1", "unknown parameter 'x': /openapi.json takes none"),
    ("/v1/months?entity=e1&entity=e2", "parameter 'entity' given 2 times: give it once"),
    ("/v1/months/e1/2026-02?format=csv&format=json", "parameter 'format' given 2 times"),
    ("/v1/deadlines?as_of=2026-01-01&as_of=2027-01-01", "parameter 'as_of' given 2 times"),
    ("/v1/months?limit=0", "limit must be an integer from 1 to 1000, got '0'"),
    (f"/v1/months?limit={MAX_LIMIT + 1}", "limit must be an integer from 1 to 1000, got '1001'"),
    ("/v1/months?limit=%D9%A3", "limit must be an integer from 1 to 1000, got '٣'"),  # Arabic-Indic 3: int() takes it
    ("/v1/deadlines?cursor=-1", "cursor must be an integer from 0 to 999999999999999999, got '-1'"),
    ("/v1/months?cursor=1e3", "cursor must be an integer from 0"),
])
def test_the_api_refuses_out_of_range_unknown_and_repeated_parameters_naming_them(store, path, message):
    status, body, _ = api(Archive(store, read_only=True), path)[path]
    assert status == 400 and message in body["error"]


def test_deadlines_far_ahead_come_in_bounded_pages(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    a.register("e1", "UTC", "2000-01")
    a.register("e2", "UTC", "2026-01")
    # as_of 2026-06-01: e1 has 2000-01..2026-05 = 26 * 12 + 5 = 317 ended months, e2 2026-01..05 = 5: 322 rows
    rows, path, pages = [], "/v1/deadlines?as_of=2026-06-01T00:00:00Z&limit=100", 0
    while path:
        status, body, link = api(a, path)[path]
        assert status == 200 and len(body) <= 100
        rows += body
        pages += 1
        path = link and link.split(">")[0].lstrip("<")
    assert pages == 4 and len(rows) == 322  # 100 + 100 + 100 + 22
    assert [(r["entity_id"], r["month"]) for r in rows[:1] + rows[316:318] + rows[-1:]] == [
        ("e1", "2000-01"), ("e1", "2026-05"), ("e2", "2026-01"), ("e2", "2026-05")]
    full = api(a, "/v1/deadlines?as_of=2099-12-31T23:59:59Z")["/v1/deadlines?as_of=2099-12-31T23:59:59Z"]
    assert len(full[1]) == DEFAULT_LIMIT and "cursor=500" in full[2]


def test_months_and_versions_come_in_pages(store):
    a = Archive(store, read_only=True)
    got = api(a, "/v1/months?limit=2", "/v1/months/e1/2026-02?limit=1")
    status, body, link = got["/v1/months?limit=2"]
    # the newest versions in chain order: 2026-01 total (seq 2), source s1 (seq 3), 2026-02's revision (seq 7)
    assert status == 200 and [e["seq"] for e in body] == [2, 3] and link == '</v1/months?limit=2&cursor=3>; rel="next"'
    nxt = api(a, "/v1/months?limit=2&cursor=3")["/v1/months?limit=2&cursor=3"]
    assert [e["seq"] for e in nxt[1]] == [7] and nxt[2] is None
    status, body, link = got["/v1/months/e1/2026-02?limit=1"]
    assert [e["version"] for e in body] == [0] and "cursor=6" in link


def test_sqlite_work_runs_off_the_event_loop(store, monkeypatch):
    a = Archive(store, read_only=True)
    threads = []
    real = a.latest

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(a, "latest", spy)
    assert api(a, "/v1/months")["/v1/months"][0] == 200
    assert threads and threads[0].startswith("archive") and threads[0] != threading.main_thread().name


def test_a_damaged_archive_answers_503_naming_it_and_the_unforeseen_a_json_500(store, monkeypatch, caplog):
    sql(store, "UPDATE versions SET figures = 'oops' WHERE seq = 2")
    a = Archive(store, read_only=True)
    status, body, _ = api(a, "/v1/months")["/v1/months"]
    assert status == 503 and "versions seq 2: figures is not a JSON object" in body["error"]
    verdict = api(a, "/v1/verify")["/v1/verify"][1]
    assert verdict["intact"] is False and verdict["versions"] == 4

    def boom(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(a, "deadlines", boom)
    status, body, _ = api(a, "/v1/deadlines")["/v1/deadlines"]
    assert (status, body) == (500, {"error": "internal error (logged on the server)"})
    assert "ZeroDivisionError: a bug" in caplog.text  # logged with its traceback, on the server only


@pytest.mark.parametrize(("change", "message"), [
    ("UPDATE entities SET timezone = 'Mars/Olympus'", "entity 'e1' has time zone 'Mars/Olympus' and first month"),
    ("UPDATE entities SET first_month = 'soon'", "and first month 'soon' (altered or damaged"),
    ("UPDATE versions SET archived_at = 'yesterday' WHERE month = '2026-01'",  # MIN() would hide one of the two
     "month 2026-01: archived_at 'yesterday' is not a UTC time"),
])
def test_a_tampered_entity_or_time_answers_503_on_deadlines_not_500(store, change, message):
    sql(store, change)
    path = "/v1/deadlines?as_of=2026-06-01T00:00:00Z"
    status, body, _ = api(Archive(store, read_only=True), path)[path]
    assert status == 503 and message in body["error"]


def test_verify_over_the_api_takes_the_expected_head(store):
    head = head_of(store)
    a = Archive(store, read_only=True)
    ok = api(a, f"/v1/verify?expect_head={head}")[f"/v1/verify?expect_head={head}"][1]
    assert ok == {"intact": True, "head": head, "versions": 4, "records": 3, "problems": []}
    other = "f" * 64
    assert api(a, f"/v1/verify?expect_head={other}")[f"/v1/verify?expect_head={other}"][1]["intact"] is False


# -- cems archive serve -------------------------------------------------------------------------------------------


def test_serve_on_a_port_in_use_is_a_usage_error_naming_the_port(store):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = CliRunner().invoke(main, ["archive", "serve", "--store", str(store), "--port", str(port)])
    assert res.exit_code == 2, res.output
    assert f"port {port} on 127.0.0.1 cannot be used: Address already in use" in res.output
    assert "Traceback" not in res.output


def test_serve_answers_read_only_and_leaves_the_file_unchanged(store, tmp_path):
    before, port = store.read_bytes(), free_port()
    server = cems_process("archive", "serve", "--store", str(store), "--port", str(port), log=tmp_path / "serve.log")
    try:
        def answered():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/verify", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        assert wait_until(answered, 30), (tmp_path / "serve.log").read_text()
        assert answered()["intact"] is True
    finally:
        server.terminate()
        server.wait(10)
    assert store.read_bytes() == before


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_serve_on_no_port_is_a_usage_error(store, port):
    res = CliRunner().invoke(main, ["archive", "serve", "--store", str(store), "--port", port])
    assert res.exit_code == 2 and "Invalid value for '--port'" in res.output


def test_json_figures_round_trip_unchanged(store):
    # what verify certifies is what the API serves: the figures as archived
    a = Archive(store, read_only=True)
    body = api(a, "/v1/months/e1/2026-02")["/v1/months/e1/2026-02"][1]
    assert [e["figures"]["co2_t"] for e in body] == [60467.3, 60500.0]
    assert json.loads(a.export(a.latest(month="2026-02"), "json")[0])[0]["figures"]["co2_t"] == 60500.0
