"""The design proof of HJ 212 period data (docs/decisions.md): a simulated month of one stack, sent once as 1 Hz
readings and once as a datalogger's 2051 minute means over real sockets to ``cems hj212 serve``, gives the same
hourly figures through the stream processor, within the rounding the frames carry.

The rounding: the simulated datalogger writes CO2 with 3 decimals (%), velocity, moisture and O2 with 2, the
temperature with 1 and the static pressure with 3 (kPa). An hour mean of rounded minute means is off by at most
half a unit of the last decimal, and the hourly CO2 mass (HJ212-D33, with the flow of D30/D31 from velocity,
temperature, pressure and moisture) is a product of hour means, so to first order its relative error is at most

    0.0005/CO2 + 0.005/v + 0.05/(273 + t) + 0.0005/(Ba + Ps) + 0.00005/(1 - Xsw)

with each quantity the hour's mean (CO2 in %, v in m/s, t in degC, pressures in kPa, Xsw as a fraction). The test
holds each hour to that bound (times 1.01), and requires the same status (measured, stopped, missing) every hour.
Faults are scripted on whole minutes: a calibration, a communication loss and a 30-hour stop, with the stop's values
recorded under F. (A minute split between N and another flag is valid by its sample count, HJ212-D23, but flagged
non-normal by the datalogger's 75 % rule, HJ212-AC: such minutes could differ, so none is simulated.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from edge_agent.simulator.datalogger import DECIMALS, SimulatedDatalogger, minute_uploads
from edge_agent.simulator.generate import CHANNELS, Fault, StackModel, simulate_stack, source_config
from ingest.batches import KeyRing
from ingest.hj212_server import Hj212Server, Hj212ServerConfig, MemorySink, agent_id_of
from schemas import envelope
from schemas.batch import ReadingBatch
from schemas.quantities import Flag
from schemas.site import Entity
from streams.core.processor import Message, PartitionProcessor, Registry, Settings

pytestmark = pytest.mark.integration
MN = "0123456789ABCDEF01234567"
PW = "654321"
DAY_S = 86_400
START_NS = 1_769_875_200 * 10**9  # 2026-01-31T16:00Z = 2026-02-01 00:00 in China
DAYS = 28  # February 2026
KEY_A, KEY_B = b"a" * 32, b"b" * 32
MODEL = StackModel()
#: (kind, day, start second of the day, duration s, channel): on whole minutes.
FAULTS = [("calibration", 3, 36_000, 900, "co2"), ("comm_loss", 10, 50_400, 5_400, "velocity"),
          ("stopped", 15, 43_200, 30 * 3600, "co2")]


def site(hj212: bool) -> Entity:
    src = source_config("kiln1", "kiln 1", MODEL)
    if hj212:
        src["hj212"] = {"mn": MN, "figures": "minute"}
    return Entity.model_validate({"id": "plant", "name": "plant", "sector": "cement", "sources": [src]})


def day_readings(d: int):
    faults = []
    for kind, day, start, dur, ch in FAULTS:  # a fault may run over midnight: cut it per day
        a, b = (day - d) * DAY_S + start, (day - d) * DAY_S + start + dur
        a, b = max(a, 0), min(b, DAY_S)
        if a < b:
            faults.append(Fault(kind, a, b - a, ch, 12.0 if kind == "calibration" else 0.0))
    model = dataclasses.replace(MODEL, faults=tuple(faults))
    readings, _ = simulate_stack(model, START_NS + d * DAY_S * 10**9, DAY_S, seed=100 + d)
    return readings


def sample_messages(readings, day_ns: int, offset: int, channels) -> list[Message]:
    """5-minute signed batches of every channel, as an edge agent would send them."""
    out = []
    ids = [c[0] for c in channels]
    for k, lo in enumerate(range(0, DAY_S, 300)):
        ts = day_ns + np.arange(lo, lo + 300, dtype=np.int64) * 10**9
        cols = [(np.full(300, j), readings[c][0][lo:lo + 300], readings[c][1][lo:lo + 300]) for j, c in enumerate(ids)]
        seq = offset + k
        b = ReadingBatch.from_columns(agent_id="gw-a", source_id="kiln1", seq=seq, channels=channels,
                                      ts_ns=np.tile(ts, len(ids)), channel=np.concatenate([c[0] for c in cols]),
                                      value=np.concatenate([c[1] for c in cols]),
                                      flag=np.concatenate([c[2] for c in cols]))
        data = b.encode()
        out.append(Message(seq, data, envelope.headers("gw-a", seq, KEY_A, data), int(ts[-1] // 10**6) + 1000))
    return out


def hour_means(readings, day_ns: int) -> dict[str, np.ndarray]:
    """Per hour of the day: the mean of the valid minute means of each channel (for the rounding bound)."""
    out = {}
    for ch in ("co2", "velocity", "temp", "pstatic", "moisture"):
        v, f = readings[ch]
        m = v.reshape(-1, 60)
        ok = (f.reshape(-1, 60) == Flag.N)
        with np.errstate(invalid="ignore", divide="ignore"):
            minute = np.where(ok.sum(1) >= 12, np.where(ok, m, 0).sum(1) / np.maximum(ok.sum(1), 1), np.nan)
        hourly = minute.reshape(24, 60)
        n = np.isfinite(hourly).sum(axis=1)
        out[ch] = np.where(n > 0, np.nansum(hourly, axis=1) / np.maximum(n, 1), np.nan)
    return out


def final(records) -> dict[int, object]:
    last = {}
    for r in records:
        if r.hour_start_ns not in last or r.revision > last[r.hour_start_ns].revision:
            last[r.hour_start_ns] = r
    return last


def readings_path() -> tuple[list, dict[str, list[np.ndarray]]]:
    """The month as 1 Hz readings in 5-minute signed batches through the stream processor (path A): its hourly
    records, with the partition clock moved past the end so the last hours are published too, and each day's hour
    means of the channels (for the rounding bound)."""
    entity_a = site(False)
    channels = [(c.id, c.quantity, c.unit) for c in entity_a.sources[0].channels]
    proc_a = PartitionProcessor(Registry([entity_a]), KeyRing(keys={"gw-a": KEY_A}), Settings())
    records_a, means = [], {}
    for d in range(DAYS):
        day_ns = START_NS + d * DAY_S * 10**9
        readings = day_readings(d)
        for ch, m in hour_means(readings, day_ns).items():
            means.setdefault(ch, []).append(m)
        msgs = sample_messages(readings, day_ns, d * 288, channels)
        for i in range(0, len(msgs), 96):
            records_a += proc_a.process(msgs[i:i + 96]).hourly
    end_ms = (START_NS + (DAYS + 1) * DAY_S * 10**9) // 10**6
    records_a += proc_a.process([_tick("gw-a", DAYS * 288, KEY_A, end_ms)]).hourly
    return records_a, means


async def test_a_month_as_2051_minutes_gives_the_hourly_figures_of_the_same_month_as_readings(tmp_path, fast_tmp):
    entity_b = site(True)
    proc_b = PartitionProcessor(Registry([entity_b]), KeyRing(keys={agent_id_of(MN): KEY_B}), Settings())
    # Path A (readings) shares nothing with path B (minute frames over the sockets) but the simulated month, which
    # both make from the same seeds: it runs in a process of its own meanwhile (a month of either takes about as long).
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    path_a = asyncio.get_running_loop().run_in_executor(pool, readings_path)

    sink = MemorySink()
    # The receiver's durable numbers on tmpfs where there is one: it fsyncs its log once per frame (40,320 here),
    # which is what its restart tests (test_hj212_central.py) are about, and here only the disk's latency.
    cfg = Hj212ServerConfig.model_validate({
        "listen": "127.0.0.1", "port": 0, "kafka": {"bootstrap_servers": "127.0.0.1:1"}, "sites": [str(tmp_path)],
        "keys_dir": str(tmp_path), "passwords_dir": str(tmp_path), "metrics_port": 0,
        "state_dir": str(fast_tmp / "state")})
    server = Hj212Server(cfg, [entity_b], {agent_id_of(MN): KEY_B}, {MN: PW}, sink)
    await server.start()
    logger = SimulatedDatalogger("127.0.0.1", server.port, MN, PW, overtime_s=10.0)
    records_b = []
    offset_b = 0
    try:
        for d in range(DAYS):
            day_ns = START_NS + d * DAY_S * 10**9
            readings = day_readings(d)
            uploads = minute_uploads(readings, day_ns, channels=list(CHANNELS))
            assert await logger.send(uploads, qn_base_ns=day_ns) == len(uploads)
            msgs_b = [Message(offset_b + i, v, dict(h), _minute_end_ms(v)) for i, (v, _, h) in enumerate(sink.records)]
            offset_b += len(msgs_b)
            sink.records.clear()
            for i in range(0, len(msgs_b), 240):
                records_b += proc_b.process(msgs_b[i:i + 240]).hourly
        records_a, means = await path_a
    finally:
        await server.stop()
        pool.shutdown(cancel_futures=True)
    # Move path B's partition clock past the end too, so the last hours are published.
    end_ms = (START_NS + (DAYS + 1) * DAY_S * 10**9) // 10**6
    records_b += proc_b.process([_tick(agent_id_of(MN), offset_b, KEY_B, end_ms)]).hourly

    a, b = final(records_a), final(records_b)
    hours = START_NS + np.arange(DAYS * 24, dtype=np.int64) * 3600 * 10**9
    assert set(hours.tolist()) <= set(a) and set(hours.tolist()) <= set(b)  # every hour of the month, in both
    m = {ch: np.concatenate(v) for ch, v in means.items()}
    ba_kpa = MODEL.ambient_pressure_pa / 1000.0
    statuses = {"measured": 0, "stopped": 0, "missing": 0}
    worst = 0.0
    for j, h in enumerate(hours.tolist()):
        ra, rb = a[h], b[h]
        assert (ra.status, ra.measured, ra.operating, ra.missing) == (rb.status, rb.measured, rb.operating,
                                                                      rb.missing), (j, ra, rb)
        statuses[ra.status] += 1
        if not ra.measured:
            continue
        # the rounding bound of this hour (module docstring)
        bound = (0.5 * 10 ** -DECIMALS["a05001"] / m["co2"][j] + 0.5 * 10 ** -DECIMALS["a01011"] / m["velocity"][j]
                 + 0.5 * 10 ** -DECIMALS["a01012"] / (273 + m["temp"][j])
                 + 0.5 * 10 ** -DECIMALS["a01013"] / (ba_kpa + m["pstatic"][j])
                 + 0.5 * 10 ** -DECIMALS["a01014"] / 100 / (1 - m["moisture"][j] / 100))
        rel = abs(rb.co2_kg - ra.co2_kg) / ra.co2_kg
        worst = max(worst, rel / bound)
        assert rel <= 1.01 * bound, (j, ra.co2_kg, rb.co2_kg, rel, bound)
        assert abs(rb.flow_m3_h - ra.flow_m3_h) / ra.flow_m3_h <= 1.01 * bound
    # the month has every kind of hour, and the mass agrees
    assert statuses["measured"] > 600 and statuses["stopped"] >= 29 and statuses["missing"] >= 1, statuses
    total_a = sum(r.co2_kg for r in a.values() if r.measured)
    total_b = sum(r.co2_kg for r in b.values() if r.measured)
    assert abs(total_b - total_a) / total_a < 1e-4
    print(f"month: {statuses}; worst hour at {worst:.2f} of its rounding bound; totals {total_a:.1f} vs "
          f"{total_b:.1f} kg ({(total_b - total_a) / total_a:+.2e})")


def _minute_end_ms(value: bytes) -> int:
    from schemas.batch import decode_batch

    b = decode_batch(value)
    return int(b.ts_ns.max() // 10**6) + 60_000 if len(b) else 0


def _tick(agent: str, seq: int, key: bytes, at_ms: int) -> Message:
    """An empty batch with a late Kafka timestamp: the partition clock moves on, the due hours are published."""
    data = ReadingBatch.from_columns(agent_id=agent, source_id="kiln1", seq=seq, channels=[], ts_ns=[], channel=[],
                                     value=[], flag=[]).encode()
    return Message(seq, data, envelope.headers(agent, seq, key, data), at_ms)
