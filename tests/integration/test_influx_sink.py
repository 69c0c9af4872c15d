"""streams.sinks.influx against the real local InfluxDB 2.7 server: overwrite on revision, replay idempotence,
missing figures, minute round trip with odd tag values, batching, and the error paths (down, 5xx/429, 4xx)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from schemas import Flag
from schemas.records import HourlyRecord, MonthlyRecord
from streams.sinks.base import SinkError, SinkRejected
from streams.sinks.influx import InfluxSink
from streams.sinks.line_protocol import MinuteRows, escape_tag, minute_lines
from tests.fixtures import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
HOUR = 3600 * 10**9
MINUTE = 60 * 10**9
RANGE = "range(start: 2025-12-01T00:00:00Z, stop: 2026-02-01T00:00:00Z)"
_META = {"result", "table", "_start", "_stop", "_measurement"}




@pytest.fixture
def make_sink(influx, bucket):
    made = []

    def make(**kw) -> InfluxSink:
        kw.setdefault("backoff_s", 0.05)
        sink = InfluxSink(kw.pop("url", influx.url), kw.pop("token", influx.token), influx.org,
                          kw.pop("bucket", bucket), **kw)
        made.append(sink)
        return sink

    yield make
    for s in made:
        s._client.close()


def points(client, bucket, measurement, extra: str = "") -> list[dict]:
    """Every point of ``measurement``, one dict per (series, time) with its tags and fields."""
    flux = f"""from(bucket: "{bucket}") |> {RANGE}
      |> filter(fn: (r) => r._measurement == "{measurement}"){extra}
      |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")"""
    tables = client.query_api().query(flux)
    rows = [{k: v for k, v in r.values.items() if k not in _META} for t in tables for r in t.records]
    return sorted(rows, key=lambda r: (r["_time"], sorted((k, str(v)) for k, v in r.items())))


def no_figures(r: dict) -> bool:
    """The point has none of the figures (pivot gives None for a field other rows of the series have)."""
    return all(r.get(k) is None for k in ("co2_kg", "co2_mg_m3", "flow_m3_h"))


def hour(source="kiln1", h=3, revision=0, co2_kg=41.25, entity="cement-co", **kw) -> HourlyRecord:
    d = dict(entity_id=entity, source_id=source, hour_start_ns=T0 + h * HOUR, revision=revision,
             reason="closed" if revision == 0 else "late_data", policy="cn-hj75", co2_kg=co2_kg, co2_mg_m3=151_000.5,
             flow_m3_h=271_500.0, operating=True, measured=True, missing=False, readings=2880)
    return HourlyRecord(**(d | kw))


def missing_hour(**kw) -> HourlyRecord:
    return hour(**({"co2_kg": float("nan"), "co2_mg_m3": None, "flow_m3_h": math.nan, "measured": False,
                    "missing": True} | kw))


def minutes(source="kiln1", entity="cement-co", channel="co2", quantity="a05001", unit="mg/m3", start=0, count=60,
            mean=None, labels=None) -> MinuteRows:
    k = np.arange(count)
    mean = 150_000.0 + 0.25 * k if mean is None else np.asarray(mean, dtype=float)
    labels = np.full(count, Flag.N, dtype=np.uint8) if labels is None else np.asarray(labels, dtype=np.uint8)
    valid = labels == Flag.N
    obj = lambda v: np.full(count, v, dtype=object)
    return MinuteRows(entity_id=obj(entity), source_id=obj(source), channel_id=obj(channel), quantity=obj(quantity),
                      unit=obj(unit), start_ns=T0 + (start + k) * MINUTE, mean=np.where(valid, mean, np.nan),
                      valid=valid, label=labels, n=np.where(valid, 12, 3))


# --- hourly -------------------------------------------------------------------------------------------------------


def test_revision_overwrites_the_hour(client, bucket, make_sink):
    sink = make_sink()
    sink.write_hourly([hour(revision=0, co2_kg=41.25)])
    sink.flush()
    sink.write_hourly([hour(revision=1, co2_kg=43.5, readings=2900)])
    sink.flush()
    rows = points(client, bucket, "cems_hourly")
    assert len(rows) == 1
    r = rows[0]
    assert (r["co2_kg"], r["revision"], r["reason"], r["readings"]) == (43.5, 1, "late_data", 2900)
    assert (r["entity"], r["source"], r["policy"], r["missing"], r["measured"]) == ("cement-co", "kiln1", "cn-hj75",
                                                                                    False, True)
    assert r["_time"].isoformat() == "2026-01-01T03:00:00+00:00"
    assert sink.stats.deletes == 0  # a revision with every figure present overwrites field by field


def month(**kw) -> MonthlyRecord:
    base = dict(entity_id="cement-co", source_id="kiln1", month="2026-01", timezone="Asia/Shanghai",
                month_start_ns=T0 - 8 * HOUR, status="open", revision=0, reason="running", policy="cn-hj75",
                substitution="hj75-2017", co2_t=651.0, measured_co2_t=643.5, substituted_co2_t=7.5, hours_in_month=744,
                hours=300, operating_hours=290, measured_hours=285, substituted_hours=5, missing_hours=0, valid_days=11,
                valid=False, completeness=285 / 290)
    return MonthlyRecord(**base | kw)


def test_every_version_of_a_month_lands_on_one_point(client, bucket, make_sink):
    sink = make_sink()
    sink.write_monthly([month()])
    sink.flush()
    sink.write_monthly([month(status="closed", reason="closed", hours=744, co2_t=1600.25, valid=True, valid_days=31)])
    sink.flush()
    sink.write_monthly([month(status="closed", revision=1, reason="late_data", hours=744, co2_t=1601.0, valid=True,
                              valid_days=31)])
    sink.flush()
    (r,) = points(client, bucket, "cems_monthly")
    assert (r["co2_t"], r["revision"], r["reason"], r["status"], r["month"], r["valid"]) == (
        1601.0, 1, "late_data", "closed", "2026-01", True)
    assert r["_time"].isoformat() == "2025-12-31T16:00:00+00:00"  # 2026-01-01T00:00 in Shanghai
    assert r["completeness"] == 285 / 290 and r["substituted_hours"] == 5

    sink.write_monthly([month(status="closed", revision=2, reason="late_data", operating_hours=0, measured_hours=0,
                              completeness=None)])  # a month that turns out never to have run keeps no old share
    sink.flush()
    (r,) = points(client, bucket, "cems_monthly")
    assert r.get("completeness") is None and r["revision"] == 2


def test_replaying_a_batch_gives_the_same_points(client, bucket, make_sink):
    batch = [hour(h=h, co2_kg=40.0 + h) for h in range(24)] + [missing_hour(source="kiln2", h=5)]
    rows = MinuteRows.concat([minutes(channel="co2"), minutes(channel="o2", quantity="a19001", unit="%")])
    first = make_sink(batch_size=100)
    first.write_hourly(batch)
    first.write_minutes(rows)
    first.flush()
    before = points(client, bucket, "cems_hourly"), points(client, bucket, "cems_minute")
    second = make_sink(batch_size=7)  # a restarted worker replays what it had not acked, in other batches
    for _ in range(2):
        second.write_hourly(batch)
        second.write_minutes(rows)
    second.close()
    after = points(client, bucket, "cems_hourly"), points(client, bucket, "cems_minute")
    assert after == before
    assert (len(after[0]), len(after[1])) == (25, 120)


def test_missing_hour_has_no_figures_but_says_missing(client, bucket, make_sink):
    sink = make_sink()
    sink.write_hourly([missing_hour(h=1)])
    sink.flush()
    [r] = points(client, bucket, "cems_hourly")
    assert {"co2_kg", "co2_mg_m3", "flow_m3_h"}.isdisjoint(r)  # not even as a column: never written
    assert (r["missing"], r["measured"], r["operating"], r["revision"], r["readings"]) == (True, False, True, 0, 2880)


def test_revision_to_missing_leaves_no_stale_figures(client, bucket, make_sink):
    """Overwrite replaces only the fields written: the sink deletes the hour before a revision omits a figure."""
    sink = make_sink()
    sink.write_hourly([hour(h=h) for h in range(6)] + [hour(source="kiln2", h=3)])
    sink.flush()
    sink.write_hourly([missing_hour(h=3, revision=1), hour(h=4, revision=1, co2_kg=1.5),
                       missing_hour(h=5, revision=1)])
    sink.flush()
    assert sink.stats.deletes == 1  # hours 3-5 are one run of consecutive hours: one delete
    by = {(r["source"], r["_time"].hour): r for r in points(client, bucket, "cems_hourly")}
    assert len(by) == 7
    for h in (3, 5):
        assert no_figures(by["kiln1", h]), by["kiln1", h]
        assert (by["kiln1", h]["missing"], by["kiln1", h]["revision"]) == (True, 1)
    assert (by["kiln1", 4]["co2_kg"], by["kiln1", 4]["co2_mg_m3"]) == (1.5, 151_000.5)
    assert by["kiln1", 2]["co2_kg"] == 41.25  # neighbours outside the run and other sources untouched
    assert by["kiln2", 3]["co2_kg"] == 41.25


# --- minutes ------------------------------------------------------------------------------------------------------


def test_minute_rows_round_trip_with_odd_tag_values(client, bucket, make_sink):
    odd_source, odd_entity, odd_channel = "kiln 1,line=2", "Cement Co, Ltd. = \"east\"", "co2 dry"
    labels = np.full(60, Flag.N, dtype=np.uint8)
    labels[[0, 1, 2]] = Flag.C
    labels[30] = Flag.D
    mean = 150_000.0 + np.arange(60) / 3  # thirds: not exact in decimal, must round-trip bit for bit
    rows = MinuteRows.concat([
        minutes(source=odd_source, entity=odd_entity, channel=odd_channel, mean=mean, labels=labels),
        minutes(source="kiln2", channel="temp", quantity="a01012", unit='deg"C\\', count=10, mean=np.full(10, 180.5)),
    ])
    sink = make_sink(batch_size=25)
    sink.write_minutes(rows)
    assert sink.stats.requests == 2 and sink.pending == 20  # full batches go out at once, the rest waits for flush
    sink.flush()
    assert (sink.stats.requests, sink.stats.points, sink.pending) == (3, 70, 0)

    got = points(client, bucket, "cems_minute", f' |> filter(fn: (r) => r.source == "{odd_source}")')
    assert len(got) == 60
    assert {(r["entity"], r["source"], r["channel"], r["quantity"], r["unit"]) for r in got} == {
        (odd_entity, odd_source, odd_channel, "a05001", "mg/m3")}
    assert [r["flag"] for r in got] == ["C"] * 3 + ["N"] * 27 + ["D"] + ["N"] * 29
    assert [r["valid"] for r in got] == (labels == Flag.N).tolist()
    assert [r["n"] for r in got] == np.where(labels == Flag.N, 12, 3).tolist()
    assert [r.get("mean") for r in got] == [m if f == Flag.N else None for m, f in zip(mean.tolist(), labels.tolist(), strict=False)]
    assert [int(r["_time"].timestamp()) * 10**9 for r in got] == (T0 + np.arange(60) * MINUTE).tolist()
    other = points(client, bucket, "cems_minute", ' |> filter(fn: (r) => r.source == "kiln2")')
    assert {r["unit"] for r in other} == {'deg"C\\'} and {r["mean"] for r in other} == {180.5}


def test_values_line_protocol_cannot_carry_are_refused_before_writing(client, bucket, make_sink):
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    for bad in ["", "back\\slash", "line\nbreak", "tab\t"]:
        with pytest.raises(SinkRejected):
            escape_tag(bad)
    sink = make_sink()
    with pytest.raises(SinkRejected):
        sink.write_hourly([hour(), hour(source="kiln\\3")])
    with pytest.raises(SinkRejected, match="not HJ 212 flags"):
        sink.write_minutes(minutes(labels=np.full(60, 9)))
    sink.flush()
    assert points(client, bucket, "cems_hourly") == [] and sink.stats.points == 0


def test_invalid_minute_replaces_a_valid_one_only_with_replace(client, bucket, make_sink):
    sink = make_sink()
    sink.write_minutes(minutes(channel="co2", count=10))
    sink.write_minutes(minutes(channel="o2", quantity="a19001", unit="%", count=10))
    sink.flush()
    late = np.full(10, Flag.N, dtype=np.uint8)
    late[[4, 5]] = Flag.D  # late readings made minutes 4 and 5 invalid
    sink.write_minutes(minutes(channel="co2", count=10, labels=late, mean=np.full(10, 7.0)), replace=False)
    sink.write_minutes(minutes(channel="o2", quantity="a19001", unit="%", count=10, labels=late,
                               mean=np.full(10, 7.0)), replace=True)
    sink.flush()
    assert sink.stats.deletes == 1  # one run (minutes 0-9 of o2), only for the replace=True write
    co2 = points(client, bucket, "cems_minute", ' |> filter(fn: (r) => r.channel == "co2")')
    o2 = points(client, bucket, "cems_minute", ' |> filter(fn: (r) => r.channel == "o2")')
    assert len(co2) == len(o2) == 10
    # Without replace the old mean survives next to valid=false (InfluxDB merges fields): `valid` is authoritative.
    assert [(r["valid"], r["mean"]) for r in co2[4:6]] == [(False, 150_001.0), (False, 150_001.25)]
    assert [(r["valid"], r.get("mean"), r["flag"]) for r in o2[4:6]] == [(False, None, "D")] * 2
    assert [r["mean"] for r in o2[:4] + o2[6:]] == [7.0] * 8


def test_line_protocol_build_rate(client, bucket, make_sink):
    """200,000 minute rows (20,000 sources x 10 minutes, 8 channels cycled): encode rate, then a real write."""
    n = 200_000
    rng = np.random.default_rng(7)
    k = np.arange(n)
    sources = np.array([f"S{i:05d}" for i in range(20_000)], dtype=object)
    channels = np.array(["co2", "o2", "flow", "temp", "press", "h2o", "dp", "status"], dtype=object)
    labels = rng.choice(np.array([0, 0, 0, 0, 0, 0, 0, 1, 4, 5], dtype=np.uint8), n)
    valid = labels == 0
    rows = MinuteRows(entity_id=np.full(n, "ent-1", dtype=object), source_id=sources[k % 20_000],
                      channel_id=channels[k % 8], quantity=np.full(n, "a05001", dtype=object),
                      unit=np.full(n, "mg/m3", dtype=object), start_ns=T0 + (k // 20_000) * MINUTE,
                      mean=np.where(valid, rng.normal(150_000, 500, n), np.nan), valid=valid, label=labels,
                      n=np.full(n, 12))
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        body = "\n".join(minute_lines(rows)).encode()
        best = min(best, time.perf_counter() - t)
    print(f"\nline protocol: {n / best:,.0f} minute rows/s ({best * 1e3:.0f} ms for {n:,} rows, "
          f"{len(body) / n:.0f} B/row)")

    sink = make_sink(batch_size=5000)
    t = time.perf_counter()
    sink.write_minutes(rows)
    sink.flush()
    dt = time.perf_counter() - t
    print(f"end to end into InfluxDB: {n / dt:,.0f} rows/s ({dt:.1f} s, {sink.stats.requests} requests, "
          f"encode {sink.stats.encode_s:.2f} s, write {sink.stats.write_s:.2f} s)")
    flux = f'from(bucket: "{bucket}") |> {RANGE} |> filter(fn: (r) => r._field == "valid") |> group() |> count()'
    assert [r.get_value() for t in client.query_api().query(flux) for r in t.records] == [n]


# --- error paths --------------------------------------------------------------------------------------------------


def test_nothing_listening_raises_after_bounded_retries(make_sink):
    slept = []  # the backoffs the sink asked for, in s (waited for by nobody)
    sink = make_sink(url=f"http://127.0.0.1:{free_port()}", max_retries=3, backoff_s=0.05, timeout_s=2,
                     sleep=slept.append)
    sink.write_hourly([hour()])
    with pytest.raises(SinkError) as info:
        sink.flush()
    e = info.value
    assert not isinstance(e, SinkRejected)
    assert (e.attempts, e.retryable, e.status) == (4, True, None)
    assert "failed after 4 attempt(s)" in str(e) and "Connection refused" in str(e)
    # backoff before retry k: 0.05 x 2**k s = 0.05, 0.1, 0.2 s, each jittered down to no less than half
    assert len(slept) == 3 and all(b / 2 <= d <= b for d, b in zip(slept, (0.05, 0.1, 0.2), strict=True)), slept
    assert sink.stats.retries == 3 and sink.pending == 0  # the buffer is dropped: the caller replays


class _Flaky(BaseHTTPRequestHandler):
    """Answers writes with the next status of ``plan`` (then 204); counts requests."""

    plan: list[int] = []
    seen: list[int] = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.plan.pop(0) if self.plan else 204
        self.seen.append(status)
        body = b'{"code":"unavailable","message":"test server says no"}' if status != 204 else b""
        self.send_response(status)
        if status in (429, 503):
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Flaky
    server.shutdown()
    server.server_close()


def test_5xx_and_429_are_retried_then_raise(flaky_server, make_sink):
    url, handler = flaky_server
    handler.plan, handler.seen = [503, 500, 429], []
    sink = make_sink(url=url, max_retries=3, backoff_s=0.01)
    sink.write_hourly([hour()])
    sink.flush()  # three transient failures, the fourth attempt lands
    assert handler.seen == [503, 500, 429, 204] and sink.stats.retries == 3 and sink.stats.points == 1

    handler.plan, handler.seen = [429] * 10, []
    sink.write_hourly([hour()])
    with pytest.raises(SinkError, match="HTTP 429: test server says no") as info:
        sink.flush()
    assert (info.value.status, info.value.attempts, info.value.retryable, len(handler.seen)) == (429, 4, True, 4)


def test_refused_data_raises_at_once_with_influxdb_message(client, bucket, make_sink, influx):
    slept = []
    sink = make_sink(max_retries=5, backoff_s=1.0, sleep=slept.append)
    sink.write_hourly([hour()])
    sink.flush()
    # `revision` is an integer field; a float `revision` on the same series is a type conflict (HTTP 422).
    sink.write_lines([f"cems_hourly,entity=cement-co,source=kiln1 revision=1.5 {T0 + 3 * HOUR}"])
    with pytest.raises(SinkRejected, match="field type conflict") as info:
        sink.flush()
    assert slept == []  # no backoff for a refusal
    assert (info.value.status, info.value.attempts, info.value.retryable) == (422, 1, False)

    with pytest.raises(SinkRejected, match="unable to parse") as info:  # malformed line: 400 with the parse error
        sink.write_lines(["cems_hourly,source= revision=1i 1"])
        sink.flush()
    assert info.value.status == 400

    missing_bucket = make_sink(bucket=f"no-such-bucket-{uuid.uuid4().hex[:6]}")
    missing_bucket.write_hourly([hour()])
    with pytest.raises(SinkRejected, match="not found") as info:
        missing_bucket.flush()
    assert info.value.status == 404

    bad_token = make_sink(token="not-a-token")
    bad_token.write_hourly([hour()])
    with pytest.raises(SinkRejected) as info:
        bad_token.flush()
    assert info.value.status == 401
