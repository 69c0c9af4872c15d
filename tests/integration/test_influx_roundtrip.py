"""Points through the real local InfluxDB 2.7 server with influxdb-client: write, query back, overwrite."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import Flag
from schemas.quantities import flag_letters

pytestmark = pytest.mark.integration

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z




def minute_lines(source: str, channel: str, start_ns: int, values: np.ndarray, flags: np.ndarray) -> list[str]:
    """Line protocol for minute averages, built column-wise (numpy string ops, no per-point Point objects)."""
    ts = (start_ns + np.arange(values.size, dtype=np.int64) * 60 * 10**9).astype(str)
    head = f"cems_minute,source={source},channel={channel} value="
    body = np.char.add(np.char.add(head, values.astype(str)), ',flag="')
    return np.char.add(np.char.add(np.char.add(body, flag_letters(flags)), '" '), ts).tolist()


def test_write_and_query_back(client, bucket, influx):
    from influxdb_client import WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    # Hand-made values: a day of minutes for two channels, CO2 12.0 + 0.001 * minute, O2 constant 8.5.
    n = 1440
    co2 = 12.0 + 0.001 * np.arange(n)
    o2 = np.full(n, 8.5)
    flags = np.where(np.arange(n) < 30, Flag.C, Flag.N).astype(np.uint8)  # first half hour: calibration
    lines = minute_lines("kiln1", "co2", T0, co2, flags) + minute_lines("kiln1", "o2", T0, o2, flags)

    write = client.write_api(write_options=SYNCHRONOUS)
    write.write(bucket=bucket, org=influx.org, record=lines, write_precision=WritePrecision.NS)

    query = client.query_api()
    flux = f"""
    from(bucket: "{bucket}")
      |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-02T00:00:00Z)
      |> filter(fn: (r) => r._measurement == "cems_minute" and r._field == "value")
      |> group(columns: ["channel"])
    """
    counts = {r["channel"]: r["_value"] for t in query.query(flux + "|> count()") for r in t.records}
    assert counts == {"co2": 1440, "o2": 1440}
    sums = {r["channel"]: r["_value"] for t in query.query(flux + "|> sum()") for r in t.records}
    # sum(12.0 + 0.001 m, m = 0..1439) = 1440 * 12 + 0.001 * 1439 * 1440 / 2 = 17280 + 1036.08
    assert sums["co2"] == pytest.approx(18316.08, abs=1e-6)
    assert sums["o2"] == pytest.approx(1440 * 8.5, abs=1e-9)

    flag_flux = f"""
    from(bucket: "{bucket}")
      |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-02T00:00:00Z)
      |> filter(fn: (r) => r._field == "flag" and r.channel == "co2" and r._value == "C")
      |> count()
    """
    assert [r["_value"] for t in query.query(flag_flux) for r in t.records] == [30]


def test_rewriting_a_point_overwrites_it(client, bucket, influx):
    """Same measurement, tags and timestamp = the same point: a revised record replaces the old one."""
    from influxdb_client import WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    write = client.write_api(write_options=SYNCHRONOUS)
    hour = T0 + 3 * 3600 * 10**9
    write.write(bucket, influx.org, f"cems_hour,source=kiln1 co2_t=41.25,revision=0i {hour}", WritePrecision.NS)
    write.write(bucket, influx.org, f"cems_hour,source=kiln1 co2_t=43.5,revision=1i {hour}", WritePrecision.NS)

    tables = client.query_api().query(
        f"""from(bucket: "{bucket}") |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-02T00:00:00Z)
            |> filter(fn: (r) => r._measurement == "cems_hour")
            |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")"""
    )
    rows = [r.values for t in tables for r in t.records]
    assert len(rows) == 1
    assert (rows[0]["co2_t"], rows[0]["revision"]) == (43.5, 1)
