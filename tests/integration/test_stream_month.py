"""Exactly-once in effect over a simulated month (issue 5): three stacks, February 2026 (local), through a real
broker (the test's own, ``private_kafka``) and a worker process that is SIGKILLed three times, fed redelivered
batches, lives through a broker restart and receives two outages' data late (one revising hours inside the month,
one revising the closed month). The final hourly and monthly records equal an undisturbed run of the same code and
the kernels applied offline."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import uuid
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml

from edge_agent.outbox import sign
from edge_agent.simulator.generate import CHANNELS, Fault, simulate_stack, simulator_stack_model, source_config
from ingest.batches import KeyRing
from schemas import ReadingBatch
from schemas.kafka import KafkaConnection
from schemas.records import GapReport, HourlyRecord, MonthlyRecord
from schemas.site import Entity
from streams.config import Topics, WorkerConfig
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.kernels import (
    HOUR_NS,
    POLICIES,
    hourly_emissions,
    hours_from_minutes,
    readings_to_minutes,
    rollup,
    substitute,
)
from streams.kernels.substitute import MEASURED, MISSING, STOPPED, HourGrid
from streams.runtime.topics import create_topics
from streams.runtime.worker import checkpoint_lag
from tests.fixtures import caught_up, final, produce, read_all, start_worker, wait_for, worker_files

pytestmark = [pytest.mark.integration]

FEB = 1_769_875_200 * 10**9  # 2026-02-01T00:00 Asia/Shanghai (2026-01-31T16:00Z); February has 672 hours
HOURS = 673  # one hour into March, so February's last hour closes
# A reading every 5 s (the HJ 75 minute rule needs 12 of the 5-s slots), one batch per 5 minutes, as the demo's gateways
# send them (edge_agent/simulator/demo.py): 24,228 batches of 360 readings for the month (one-minute batches made
# 121,140, and the per-batch work of the worker, signatures, decoding, offsets, took most of this test's time)
STEP_S, BATCH_S = 5, 300
NAMES = ["co2", "o2", "moisture", "temp", "pstatic", "velocity"]  # what the mass calculation needs, and O2
AGENTS = {"gw-a": b"a" * 32, "gw-b": b"b" * 32, "gw-c": b"c" * 32}
CN = POLICIES["cn-hj75"]
H = 3600  # seconds


def site() -> Entity:
    return Entity.model_validate({"id": "works", "name": "works", "sector": "cement", "timezone": "Asia/Shanghai",
                                  "sources": [source_config(f"stack{k}", f"stack {k}", names=NAMES)
                                              for k in range(3)]})


FAULTS = {  # something for the monthly rollup to count: missing hours to substitute, a stop, calibrations
    0: (Fault("comm_loss", 300 * H, 6 * H, "velocity"),),
    1: (Fault("stopped", 200 * H, 30 * H),),
    2: tuple(Fault("calibration", d * 24 * H + 3 * H, 20 * 60, "co2", 15.0) for d in range(0, 28, 7)),
}
LATE_B = (470, 476)  # gw-b's hours [470, 476) arrive after hour 504: inside the 48-h revision horizon
LATE_C = (669, 672)  # gw-c's last three February hours arrive after everything: the closed month is revised


@pytest.fixture(scope="module")
def month():
    """(messages in log order, readings per source as columns) for the whole month."""
    per_agent, readings = [], {}
    for k, agent in enumerate(AGENTS):
        model = simulator_stack_model(k)
        model = type(model)(**{**model.__dict__, "faults": FAULTS[k]})
        r, _ = simulate_stack(model, FEB, HOURS * H, seed=k)
        cols = {c: (r[c][0][::STEP_S].copy(), r[c][1][::STEP_S].copy()) for c in NAMES}
        del r
        readings[f"stack{k}"] = cols
        n = BATCH_S // STEP_S
        value = np.stack([cols[c][0] for c in NAMES], axis=1)  # [time, channel]
        flag = np.stack([cols[c][1] for c in NAMES], axis=1)
        channels = [(c, *CHANNELS[c]) for c in NAMES]
        for seq, i in enumerate(range(0, value.shape[0], n)):
            ts = np.repeat(FEB + (np.arange(i, i + n, dtype=np.int64) * STEP_S) * 10**9, len(NAMES))
            data = ReadingBatch.from_columns(agent_id=agent, source_id=f"stack{k}", seq=seq, channels=channels,
                                             ts_ns=ts, channel=np.tile(np.arange(len(NAMES)), n),
                                             value=value[i : i + n].ravel(), flag=flag[i : i + n].ravel()).encode()
            headers = {"cems-agent": agent.encode(), "cems-seq": str(seq).encode(),
                       "cems-sig": sign(AGENTS[agent], data)}
            per_agent.append((data, headers, (FEB + (i * STEP_S + BATCH_S) * 10**9) // 10**6 + 200))
    per_agent.sort(key=lambda m: m[2])
    return [Message(i, d, h, t) for i, (d, h, t) in enumerate(per_agent)], readings


def hour_of(m: Message) -> int:
    return (m.timestamp_ms - 200 - BATCH_S * 1000 - FEB // 10**6) // (H * 1000)


def offline(readings) -> tuple[np.ndarray, dict]:
    """The kernels on all readings at once: hourly CO2 [source, hour], and February's totals per source."""
    reg = Registry([site()])
    parts = []
    for s, cols in readings.items():
        for c, (value, flag) in cols.items():
            parts.append((np.full(value.size, reg.series_of[(s, c)]), FEB + np.arange(value.size) * STEP_S * 10**9,
                          value, flag))
    series, ts, value, flag = (np.concatenate(x) for x in zip(*parts, strict=True))
    hours = hours_from_minutes(readings_to_minutes(series, ts, value, flag, bounds=reg.bounds).close(CN)).close(CN)
    em = hourly_emissions(hours, reg.n_series, reg.layout, FEB, HOURS, CN.reference)
    feb = slice(0, 672)
    status = np.where(em.measured, MEASURED, np.where(em.missing, MISSING, STOPPED)).astype(np.uint8)[:, feb]
    parts = [x[:, feb].astype(np.float32).astype(np.float64) for x in (em.co2_mg_m3, em.flow_m3_h)]  # as kept
    sub = substitute(HourGrid(status, em.co2_kg[:, feb], *parts), "hj75-2017")
    _, months = rollup(np.nan_to_num(sub.co2_kg), em.measured[:, feb], sub.substituted, em.operating[:, feb], FEB,
                       ZoneInfo("Asia/Shanghai"), CN)
    return em.co2_kg, months


def run_undisturbed(messages) -> tuple[dict, dict]:
    p = PartitionProcessor(Registry([site()]), KeyRing(keys=AGENTS))
    hourly, monthly = [], []
    for i in range(0, len(messages), 5000):
        out = p.process(messages[i : i + 5000])
        assert not out.dead_letters
        hourly += out.hourly
        monthly += out.monthly
    return final(hourly), {r.key: r for r in monthly}


def config(tmp_path, bootstrap) -> WorkerConfig:
    tag = uuid.uuid4().hex[:8]
    return WorkerConfig(kafka=KafkaConnection(bootstrap_servers=bootstrap), app_id=f"cems-month-{tag}",
                        topics=Topics.prefixed(f"m.{tag}"), **worker_files(tmp_path, AGENTS, site()),
                        datadir=tmp_path / "faust", snapshot_interval_s=1.0)


def topic_records(cfg: WorkerConfig) -> tuple[dict, dict]:
    hourly = final(HourlyRecord.from_json(r.value) for r in read_all(cfg, cfg.topics.hourly))
    monthly = {}
    for r in read_all(cfg, cfg.topics.monthly):  # latest per key, as compaction keeps it
        rec = MonthlyRecord.from_json(r.value)
        monthly[rec.key] = rec
    return hourly, monthly


def contents(records: dict) -> dict:
    return {k: r.content() for k, r in records.items()}


@pytest.mark.timeout(1200)
async def test_a_month_through_kills_duplicates_late_data_and_a_broker_restart_equals_the_kernels(month, tmp_path,
                                                                                                   private_kafka):
    messages, readings = month
    kafka_bootstrap = private_kafka.bootstrap  # restarted below: the test's own broker, no other test sees it
    # The reference, the processor run undisturbed in this process and the kernels applied offline, is worked out in
    # a thread while the disturbed run goes through the broker and the worker process (they share only the messages,
    # which nobody changes); it is checked, and the disturbed run against it, once both are done.
    reference = asyncio.ensure_future(asyncio.to_thread(lambda: (run_undisturbed(messages), offline(readings))))

    # the disturbed run through the broker
    cfg = config(tmp_path, kafka_bootstrap)
    create_topics(cfg, partitions=2, readings_retention_days=None)  # 2026 data: no time limit
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    rng = random.Random(11)

    def held(m, agent, span):
        return m.headers["cems-agent"] == agent and span[0] <= hour_of(m) < span[1]

    late_b = [m for m in messages if held(m, b"gw-b", LATE_B)]
    late_c = [m for m in messages if held(m, b"gw-c", LATE_C)]
    on_time = [m for m in messages if not held(m, b"gw-b", LATE_B) and not held(m, b"gw-c", LATE_C)]
    segments = [[m for m in on_time if i * 84 <= hour_of(m) < (i + 1) * 84] for i in range(9)]  # 8 x 84 h + March
    assert sum(map(len, segments)) == len(on_time)

    def unsaved() -> int | float:
        lag = checkpoint_lag(cfg)  # empty: the metadata request failed (a loaded machine), nothing known yet
        return sum(lag.values()) if lag else float("inf")

    async def late(batches) -> None:
        """Late means after the worker has handled what came before (within one chunk, order does not matter)."""
        assert await wait_for(lambda: caught_up(cfg), 300), "worker never caught up"
        await asyncio.to_thread(produce, cfg, batches)

    async def kill_mid_stream(worker):
        """SIGKILL once the worker has saved a random 20-80 % of what waits for it, at a random moment of its next
        snapshot interval: it has handled batches it has not saved, which its successor must not count twice."""
        target = await asyncio.to_thread(unsaved) * (1 - rng.uniform(0.2, 0.8))
        assert await wait_for(lambda: unsaved() <= target, 300, every_s=0.2), "worker made no progress"
        await asyncio.sleep(rng.uniform(0.0, cfg.snapshot_interval_s))
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    worker = start_worker(path)
    try:
        for i, seg in enumerate(segments):
            dup = rng.sample(seg, len(seg) // 100)  # 1 % redelivered: the edge retried, or replayed its outbox
            await asyncio.to_thread(produce, cfg, seg + dup)
            if i == 5:  # hours 420-503 are out: gw-b's held-back hours 470-475 arrive, inside the horizon
                await late(late_b)
            if i in (1, 4, 6):  # SIGKILL mid-stream, then restart
                await kill_mid_stream(worker)
                worker = start_worker(path)
            if i == 3:  # the broker goes away and comes back while the worker is consuming
                assert await wait_for(lambda: caught_up(cfg), 300), "worker never caught up before the broker restart"
                await asyncio.to_thread(private_kafka.stop)
                await asyncio.sleep(3)  # the outage itself (the worker's clients find the broker gone)
                await asyncio.to_thread(private_kafka.start)
        await late(late_c)

        (ref_hourly, ref_monthly), (co2_kg, months) = await reference
        # the undisturbed run equals the kernels applied offline, hour by hour and month by month
        for (source, hour_ns), r in ref_hourly.items():
            k, h = int(source[-1]), (hour_ns - FEB) // HOUR_NS
            assert np.array_equal(np.float64(np.nan if r.co2_kg is None else r.co2_kg), co2_kg[k, h], equal_nan=True)
        assert len(ref_hourly) == 3 * 672  # February's hours; March's first is still open
        for k in range(3):
            m = ref_monthly[f"stack{k}/2026-02"]
            assert (m.status, m.hours, m.hours_in_month) == ("closed", 672, 672)
            assert m.co2_t == months.total[k, 0] / 1000 and m.substituted_co2_t == months.substituted_total[k, 0] / 1000
            assert (m.operating_hours, m.measured_hours, m.substituted_hours, m.missing_hours, m.valid_days,
                    m.valid) == (months.operating_hours[k, 0], months.measured_hours[k, 0],
                                 months.substituted_hours[k, 0], months.missing_hours[k, 0], months.valid_parts[k, 0],
                                 months.valid[k, 0])
        # the faults show: stack0's 6 h without velocity substituted, stack1 stopped 30 h, stack2's four 20-minute
        # calibrations each leave 40 valid minutes (< 45): four hours substituted
        assert ref_monthly["stack0/2026-02"].substituted_hours == 6
        assert ref_monthly["stack1/2026-02"].operating_hours == 672 - 30
        assert ref_monthly["stack2/2026-02"].substituted_hours == 4

        def done() -> bool:  # the records equal the reference, and everything sent is saved (so it is all in Kafka)
            hourly, monthly = topic_records(cfg)
            return (contents(hourly) == contents(ref_hourly) and contents(monthly) == contents(ref_monthly)
                    and caught_up(cfg))

        ok = await wait_for(done, 400, every_s=1.0)
        got_hourly, got_monthly = topic_records(cfg)
        assert ok, ({k: (got_hourly.get(k), r) for k, r in ref_hourly.items() if got_hourly.get(k) is None
                     or got_hourly[k].content() != r.content()} or
                    {k: (got_monthly.get(k), r) for k, r in ref_monthly.items()},
                    path.with_suffix(".log").read_text()[-3000:])
    finally:
        private_kafka.kafka_sh("start", "--keep-data", check=False)  # whatever happened: the checks below read it
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        if not reference.done():
            await asyncio.wait([reference])  # a thread cannot be cancelled: let it end before the loop does
    assert not read_all(cfg, cfg.topics.dead_letter)
    # the late hours were published (missing), then revised; the closed month of stack2 was revised too
    revised = [r for (s, h), r in got_hourly.items() if s == "stack1" and LATE_B[0] <= (h - FEB) // HOUR_NS < LATE_B[1]]
    assert len(revised) == 6 and all(r.reason == "late_data" for r in revised)
    reports = [GapReport.from_json(r.value) for r in read_all(cfg, cfg.topics.gaps)]
    assert any(r.agent_id == "gw-b" and r.holes for r in reports)  # the held-back hours showed as a hole...
    assert {r.agent_id: r.missing for r in reports} == {"gw-b": 0, "gw-c": 0}  # ...and both holes closed
    m = got_monthly["stack2/2026-02"]
    assert (m.status, m.reason) == ("closed", "late_data") and m.revision >= 1
