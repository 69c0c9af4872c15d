"""The whole pipeline in one process, with no Kafka and no InfluxDB: for a single site, a first look, or a demo.

Readings (the vectorised plant simulator here, or recorded reading batches) go as signed batches through the same
:class:`~streams.core.processor.PartitionProcessor` the faust worker drives, so the hourly and monthly records are the
stream's; the closed minutes become the grids of the data-quality indicators and the meters' totals; the
self-reported files are reconciled by :func:`streams.core.reconcile.reconcile_month`; every month lands in the
file-based :class:`~streams.archive.store.Archive` (SQLite), which ``cems archive serve`` puts on localhost.

:data:`DEMO_PLANTS`: a cement kiln, a steel plant's main stack and an aluminium pot line, each with its CEMS
(CO2, O2, moisture, temperature, static pressure, velocity), fuel or anode meter and product weigher, in three
regions (GB/T 2260: Suzhou 320500 and Nanjing 320100 in Jiangsu 320000, Baotou 150200 in Inner Mongolia 150000) so
that the console's regional isolation shows. Their
physics (``edge_agent/simulator``) is tuned to the accounting formulas, so honest reports reconcile.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from edge_agent.simulator.generate import CHANNELS, Fault, StackModel, simulate_stack, source_config
from edge_agent.simulator.physics import COAL, Fuel
from ingest.accounting import load_reports
from ingest.batches import KeyRing
from schemas import envelope
from schemas.accounting import AccountingReport
from schemas.batch import ChannelSpec, ReadingBatch
from schemas.records import HourlyRecord, MonthlyRecord
from schemas.site import Entity

from streams.archive.store import Archive
from streams.core.figures import alert_figures, calculated, hourly_figures, month_figures
from streams.kernels.aggregate import MINUTE_NS, PeriodTable
from streams.kernels.indicators import Grid
from streams.core.monthly import month_bounds, month_range
from streams.core.processor import Message, PartitionProcessor, Registry, Settings
from streams.core.reconcile import MonthEvidence, ReconcilePolicy, metered_totals, reconcile_month

__all__ = ["DEMO_PLANTS", "Plant", "PlantResult", "process_entity", "run_on_services", "run_plants", "run_recorded"]

SAMPLE_S = 5  # HJ 212 App. D: at least one value per 5 s; 12 per minute make a valid minute
BATCH_S = 300  # one signed batch per 5 minutes per stack


@dataclass(frozen=True)
class Plant:
    sector: str
    entity_id: str
    name: str
    model: StackModel
    seed: int
    meters: dict[str, str]  # channel -> "fuel:<id>" | "material:<id>" | "product"
    province: str = "320000"
    municipality: str = "320500"

    def entity(self) -> Entity:
        return Entity.model_validate({
            "id": self.entity_id, "name": self.name, "sector": self.sector,
            "region": {"province": self.province, "municipality": self.municipality},
            "sources": [source_config(f"{self.entity_id}-stack", "main stack", self.model)]})


def _daily_calibrations(days: int) -> tuple[Fault, ...]:
    """A 10-minute CO2 span check every day at 03:00 local (19:00 UTC), flagged C."""
    return tuple(Fault("calibration", d * 86_400 + 19 * 3600, 600, "co2", 15.0) for d in range(days))


# Cement: coal 14 t/h, clinker 7.8 t per t coal, calcination 93.6 kmol CO2 per t coal (0.528 t CO2 per t clinker:
# CaO 65 %, MgO 2 %, non-carbonate CaO 0.6 %, by the clinker formula). Steel: PCI coal 20 t/h, 6.5 t crude steel per
# t, 157.9 kmol CO2 per t from the rest of the carbon balance (coke 0.33 t/t steel at 86 % C, limestone 0.1 t/t at
# 12 % C, steel 0.4 % C). Aluminium: the "fuel" is anode carbon plus the humidity the pot gas carries (the physics
# takes water only from the fuel): 0.6 kg C, 12.3 g S and 0.38 kg water per kg, i.e. 0.615 kg of anode (C 97.6 %,
# S 2 %, ash 0.4 %); 1.4637 t aluminium per t, which makes 0.42 t anode per t aluminium; pot gas mostly air.
ANODE_MIX = Fuel("anode carbon + pot-gas humidity", carbon=0.6, hydrogen=0.0, oxygen=0.0, nitrogen=0.0,
                 sulphur=0.0123, moisture=0.38)
DEMO_PLANTS = (
    Plant("cement", "demo-cement", "Demo Cement Co. kiln line 1",
          StackModel(fuel=COAL, fuel_t_h=14.0, process_co2_kmol_h_per_fuel_t_h=93.57, product_t_per_fuel_t=7.8,
                     fuel_total_start_t=52_000.0, product_total_start_t=410_000.0, duct_area_m2=12.57),
          seed=11, meters={"fuel_total": "fuel:raw_coal", "product_total": "product"}),
    Plant("steel", "demo-steel", "Demo Iron & Steel blast furnace stack",
          StackModel(fuel=COAL, fuel_t_h=20.0, process_co2_kmol_h_per_fuel_t_h=157.9, product_t_per_fuel_t=6.5,
                     fuel_total_start_t=88_000.0, product_total_start_t=2_150_000.0, duct_area_m2=28.0),
          seed=12, meters={"fuel_total": "material:pci_coal", "product_total": "product"}, municipality="320100"),
    Plant("aluminium", "demo-aluminium", "Demo Aluminium potline 2",
          StackModel(fuel=ANODE_MIX, fuel_t_h=6.0, excess_air=15.0, product_t_per_fuel_t=1.4637, duct_area_m2=40.0,
                     fuel_total_start_t=12_000.0, product_total_start_t=300_000.0),
          seed=13, meters={"product_total": "product"}, province="150000", municipality="150200"),
)


@dataclass
class PlantResult:
    plant: Plant | None  # None: recorded data
    entity: Entity
    hourly: list[HourlyRecord]
    monthly: list[MonthlyRecord]
    minutes: Grid
    series: list[tuple[str, str]]
    metered: dict[str, float]
    readings: int
    alerts: list = field(default_factory=list)
    report: AccountingReport | None = None
    meters: dict[str, str] = field(default_factory=dict)  # "source/channel" -> what the meter measures
    calculated: dict[str, float] = field(default_factory=dict)


def _messages(plant: Plant, start_ns: int, seconds: int, key: bytes, run_on_s: int = 0) -> list[Message]:
    """The plant's readings every SAMPLE_S seconds as signed 5-minute batches, and ``run_on_s`` more seconds after
    them, simulated apart (so the first ``seconds`` are the same whatever the run-on) with the totalisers going on
    from where they stood."""
    model = StackModel(**{**plant.model.__dict__, "faults": plant.model.faults + _daily_calibrations(seconds // 86_400)})
    readings, _ = simulate_stack(model, start_ns, seconds, seed=plant.seed)
    names = list(CHANNELS)
    idx = np.arange(0, seconds, SAMPLE_S)
    value = np.stack([readings[c][0][idx] for c in names])  # [channel, sample]
    flag = np.stack([readings[c][1][idx] for c in names])
    ts = start_ns + idx.astype(np.int64) * 10**9
    if run_on_s:
        more = StackModel(**{**plant.model.__dict__, "fuel_total_start_t": float(readings["fuel_total"][0][-1]),
                             "product_total_start_t": float(readings["product_total"][0][-1])})
        tail, _ = simulate_stack(more, start_ns + seconds * 10**9, run_on_s, seed=plant.seed + 1000)
        t_idx = np.arange(0, run_on_s, SAMPLE_S)
        value = np.concatenate([value, np.stack([tail[c][0][t_idx] for c in names])], axis=1)
        flag = np.concatenate([flag, np.stack([tail[c][1][t_idx] for c in names])], axis=1)
        ts = np.concatenate([ts, start_ns + (seconds + t_idx.astype(np.int64)) * 10**9])
    channels = tuple(ChannelSpec(c, *CHANNELS[c]) for c in names)
    per = BATCH_S // SAMPLE_S
    agent, source = f"{plant.entity_id}-gw", f"{plant.entity_id}-stack"
    out = []
    for seq, a in enumerate(range(0, ts.size, per)):
        b = slice(a, a + per)
        n = ts[b].size
        batch = ReadingBatch.from_columns(
            agent_id=agent, source_id=source, seq=seq, channels=channels, ts_ns=np.tile(ts[b], len(names)),
            channel=np.repeat(np.arange(len(names)), n), value=value[:, b].ravel(), flag=flag[:, b].ravel())
        data = batch.encode()
        headers = envelope.headers(agent, seq, key, data)
        out.append(Message(seq, data, headers, int(ts[b][-1] // 10**6) + 1000))
    return out


def _simulated(plant: Plant, month: str, lateness_s: float):
    """The plant's entity, local month [start, end), agent key and its messages: the month, and the plant running on
    past its end for the allowed lateness, so that the month closes by the data's own clock (as it would on the
    real stream; nothing closes a month but data later than its end plus the lateness)."""
    entity = plant.entity()
    start, end = month_range(month, entity.tz)
    key = hashlib.sha256(plant.entity_id.encode()).digest()
    run_on = -(-int(lateness_s) // BATCH_S) * BATCH_S + BATCH_S  # whole batches past the end plus the lateness
    return entity, start, end, key, _messages(plant, start, (end - start) // 10**9, key, run_on)


def _concat(tables: list[PeriodTable]) -> PeriodTable:
    names = ("key", "mean", "valid", "label", "instrument_stopped", "part_flags", "valid_parts", "sample_flags", "valid_samples",
             "sample_qsum", "valid_slots", "operating_slots", "recorded_samples", "recorded_qsum")
    return PeriodTable(tables[0].period_ns, *(np.concatenate([getattr(t, n) for t in tables]) for n in names),
                       tables[0].policy)


def run_plants(plants=DEMO_PLANTS, month: str = "2026-02", progress: Callable[[str], None] = print,
               settings: Settings = Settings()) -> list[PlantResult]:
    """Simulate each plant for the local month and run it through the stream processor."""
    results = []
    for plant in plants:
        t0 = time.perf_counter()
        entity, start, end, key, messages = _simulated(plant, month, settings.allowed_lateness_s)
        t1 = time.perf_counter()
        res = process_entity(entity, messages, {f"{plant.entity_id}-gw": key}, start, end, settings)
        res.plant = plant
        res.meters = {f"{plant.entity_id}-stack/{ch}": what for ch, what in plant.meters.items()}
        res.metered = metered_totals(res.minutes, res.series, _channels(entity), res.meters)
        progress(f"  {plant.sector:<10} {res.readings / 1e6:5.1f} M readings simulated in {t1 - t0:4.1f} s, "
                 f"processed in {time.perf_counter() - t1:4.1f} s: {len(res.hourly)} hourly records")
        results.append(res)
    return results


def _channels(entity: Entity) -> dict:
    return {(s.id, c.id): (c.quantity, c.unit) for s in entity.sources for c in s.channels}


def process_entity(entity: Entity, messages: list[Message], keys: dict[str, bytes], start: int, end: int,
                   settings: Settings = Settings()) -> PlantResult:
    """One entity's messages (time order) through a partition processor: records, and the closed minutes as a
    grid over [start, end) for the indicators and meters."""
    registry = Registry([entity])
    proc = PartitionProcessor(registry, KeyRing(keys=keys), settings)
    hourly, monthly, minutes, readings = [], {}, [], 0
    for i in range(0, len(messages), 500):
        out = proc.process(messages[i:i + 500])
        if out.dead_letters:
            raise RuntimeError(f"{entity.id}: batch rejected: {out.dead_letters[0][1]}")
        hourly += out.hourly
        monthly |= {r.key: r for r in out.monthly}
        readings += out.readings
        if out.minutes is not None and len(out.minutes):
            minutes.append(out.minutes)
    series = [(s.id, c.id) for s in entity.sources for c in s.channels]
    n = (end - start) // MINUTE_NS
    grid = (Grid.from_table(_concat(minutes), registry.n_series, start, n) if minutes
            else Grid(np.full((len(series), n), np.nan), start))
    return PlantResult(None, entity, hourly, list(monthly.values()), grid, series, {}, readings)


def run_recorded(entities: list[Entity], batch_files: list[Path], meters: dict[str, str] | None = None,
                 settings: Settings = Settings()) -> list[PlantResult]:
    """Recorded reading batches (files in the wire format, e.g. an edge outbox's ``*.batch``) through the
    processor, per entity. Local files are trusted as they are: they are signed here with a key of this run
    (the signature guards the network, not the disk). Each batch is stamped as produced one second after its
    newest reading. Months close by the data's own clock, as on the stream: a month whose end plus the allowed
    lateness the recording does not reach stays open (a recording of part of a month is never a whole month)."""
    import secrets

    from schemas.batch import decode_batch

    key = secrets.token_bytes(32)
    entity_of = {s.id: e for e in entities for s in e.sources}
    by_entity: dict[str, list] = {e.id: [] for e in entities}
    agents: dict[str, set] = {e.id: set() for e in entities}
    for path in batch_files:
        data = path.read_bytes()
        b = decode_batch(data)
        entity = entity_of.get(b.source_id)
        if entity is None:
            raise ValueError(f"{path}: source {b.source_id!r} is in none of the site files")
        if b.ts_ns.size:
            headers = envelope.headers(b.agent_id, b.seq, key, data)
            by_entity[entity.id].append((int(b.ts_ns.max()) // 10**6 + 1000, data, headers, int(b.ts_ns.min())))
            agents[entity.id].add(b.agent_id)
    results = []
    for entity in entities:
        rows = sorted(by_entity[entity.id], key=lambda r: r[0])
        if not rows:
            continue
        _, start, _ = month_bounds(min(r[3] for r in rows), entity.tz)
        _, _, end = month_bounds(rows[-1][0] * 10**6 - 1, entity.tz)
        messages = [Message(i, data, headers, ts) for i, (ts, data, headers, _) in enumerate(rows)]
        res = process_entity(entity, messages, {a: key for a in agents[entity.id]}, start, end, settings)
        res.meters = dict(meters or {})
        results.append(res)
    return results


def reconcile_plants(results: list[PlantResult], report_files: list[Path],
                     policy: ReconcilePolicy = ReconcilePolicy()) -> None:
    """Reconcile each entity's months against its reports (all files validated together, all or nothing)."""
    reports = {(r.entity_id, r.month): r for f in report_files for r in load_reports(f) if r.source_id is None}
    for res in results:
        res.alerts = []
        for label in sorted({m.month for m in res.monthly}):  # one bundle per month, every source of it
            ms = [m for m in res.monthly if m.month == label]
            m = ms[0]
            report = reports.get((res.entity.id, m.month))
            _, start, end = month_bounds(m.month_start_ns, res.entity.tz)
            a, b = ((x - res.minutes.start_ns) // MINUTE_NS for x in (start, end))
            g = res.minutes
            month_grid = Grid(g.mean[:, a:b], start, g.period_ns, g.flag[:, a:b], g.operating[:, a:b],
                              g.calibrating[:, a:b])
            res.alerts += reconcile_month(MonthEvidence(
                entity=res.entity, month=m.month, report=report,
                monthly=ms if all(x.status == "closed" for x in ms) else [], minutes=month_grid,
                metered=metered_totals(month_grid, res.series, _channels(res.entity), res.meters),
                series=res.series), policy)  # no CO2max: no trusted history to calibrate on
            if report is not None:  # the report of the (last) month, for the summary and the archive
                res.report, res.calculated = report, calculated(report)


def archive_plants(results: list[PlantResult], archive: Archive, at: datetime | None = None) -> None:
    """Each plant's closed months into the archive: the entity's total with the report and alerts, and each source.
    A month still open (its end plus the allowed lateness not yet reached by the data) is not archived."""
    for res in results:
        alerts = [alert_figures(a) for a in res.alerts]
        for label in sorted({m.month for m in res.monthly}):
            ms = [m for m in res.monthly if m.month == label]
            if any(m.status != "closed" for m in ms):  # open months are not archived
                continue
            region = res.entity.region
            archive.register(res.entity.id, res.entity.timezone, label, region.province if region else "",
                             region.municipality if region else "", at)
            reason = "report" if res.report else "cems"
            archive.put(res.entity.id, None, label, month_figures(ms, res.calculated, alerts), reason, at)
            start, end = month_range(label, res.entity.tz)
            for m in ms:
                archive.put(res.entity.id, m.source_id, label, month_figures([m]), reason, at)
                hours = [h for h in res.hourly if h.source_id == m.source_id]
                archive.put_hourly(res.entity.id, m.source_id, label, hourly_figures(hours, m, start, end), at)


def write_records(results: list[PlantResult], out: Path) -> tuple[Path, Path]:
    """Every hour's and month's latest record as CSV (``hourly.csv``, ``monthly.csv`` in ``out``): what a user or an
    independent check compares, hour by hour (status, CO2, concentration, flow) and month by month."""
    import csv

    from schemas.records import HourlyRecord, MonthlyRecord

    paths = out / "hourly.csv", out / "monthly.csv"
    for path, cls, rows in ((paths[0], HourlyRecord, [r for res in results for r in res.hourly]),
                            (paths[1], MonthlyRecord, [r for res in results for r in res.monthly])):
        latest = {}
        for r in rows:  # revisions in order: the last one of each key wins
            latest[r.key] = r
        names = [f for f in cls.__dataclass_fields__]
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow((["hour_start"] if cls is HourlyRecord else []) + names)
            for r in sorted(latest.values(), key=lambda r: r.key):
                values = ["" if v is None or (isinstance(v, float) and v != v) else v
                          for v in (getattr(r, n) for n in names)]
                w.writerow(([r.hour_iso] if cls is HourlyRecord else []) + values)
    return paths


def run_on_services(cfg, out: Path, month: str = "2026-02", report_files: list[Path] = (),
                    progress: Callable[[str], None] = print, timeout_s: float = 600.0) -> list[PlantResult]:
    """The demo on the real services of ``cfg`` (broker, InfluxDB): the plants' batches into a fresh, prefixed set
    of topics, an in-process stream worker until every month is closed and saved, ``cems reconcile`` and
    ``cems archive sync``; the results read back from the topics for the report."""
    import asyncio
    import uuid

    import yaml

    from streams.runtime.archive_sync import sync_archive
    from streams.runtime.reconciler import Reconciler, publish_reports, read_alerts, read_latest
    from streams.runtime.topics import create_topics
    from streams.runtime.worker import StreamWorker, checkpoint_lag
    from streams.config import ReconcileSettings, Topics

    run_id = uuid.uuid4().hex[:8]
    (out / "sites").mkdir(parents=True, exist_ok=True)
    (out / "keys").mkdir(exist_ok=True)
    plants, streams = {}, {}
    for plant in DEMO_PLANTS:
        entity, _, _, key, messages = _simulated(plant, month, cfg.processing.allowed_lateness_s)
        (out / "keys" / f"{plant.entity_id}-gw.key").write_bytes(key)
        (out / "sites" / f"{plant.entity_id}.yaml").write_text(yaml.safe_dump(entity.model_dump(mode="json")))
        plants[plant.entity_id], streams[plant.entity_id] = (plant, entity), messages
    meters = {f"{p.entity_id}-stack/{ch}": what for p in DEMO_PLANTS for ch, what in p.meters.items()}
    cfg = cfg.model_copy(update={
        "topics": Topics.prefixed(f"cems-demo.{run_id}"), "app_id": f"cems-demo-{run_id}", "sites": [out / "sites"],
        "keys_dir": out / "keys", "datadir": out / "faust", "snapshot_interval_s": 2.0,
        "reconcile": ReconcileSettings(meters=meters, policy=cfg.reconcile.policy)})
    create_topics(cfg, partitions=3, readings_retention_days=None)  # February data: no retention by time
    progress(f"  topics {cfg.topics.readings} ... created; producing {sum(map(len, streams.values())):,} batches")
    from kafka import KafkaProducer

    producer = KafkaProducer(**cfg.kafka.producer_config(), acks="all", linger_ms=20, max_request_size=8 * 2**20)
    # in time order, as the gateways would send them: a partition's clock is the newest timestamp in it, and an
    # agent whose month came after another's in the same partition would be weeks "too late"
    for m in sorted((m for ms in streams.values() for m in ms), key=lambda m: m.timestamp_ms):
        producer.send(cfg.topics.readings, key=m.headers[envelope.AGENT], value=m.value,
                      headers=list(m.headers.items()), timestamp_ms=m.timestamp_ms)
    producer.flush(120)
    producer.close()
    reports = [r for f in report_files for r in load_reports(f)]
    publish_reports(cfg, reports)

    async def work() -> None:
        from streams.sinks.influx import InfluxSink

        sink = None if cfg.influx is None else InfluxSink(cfg.influx.url, cfg.influx.token.get_secret_value(),
                                                          cfg.influx.org, cfg.influx.bucket)
        worker = StreamWorker(cfg, sink=sink)
        await worker.app.start()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(3)
                lag = await asyncio.to_thread(checkpoint_lag, cfg)
                progress(f"  stream worker: {sum(lag.values()):,} batches not yet saved")
                if not any(lag.values()):
                    return
            raise TimeoutError(f"the worker did not catch up within {timeout_s:.0f} s")
        finally:
            await worker.app.stop()
            if sink is not None:
                sink.close()

    asyncio.run(work())
    progress(f"[2/4] reconciling against {len(report_files)} self-reported file(s) (cems reconcile)")
    Reconciler(cfg).run()
    progress(f"[3/4] archiving the months in {out / 'archive.sqlite'} (cems archive sync)")
    archive = Archive(out / "archive.sqlite")
    sync_archive(cfg, archive)
    archive.close()
    hourly = read_latest(cfg, cfg.topics.hourly, HourlyRecord.from_json)
    monthly = read_latest(cfg, cfg.topics.monthly, MonthlyRecord.from_json)
    alerts = read_alerts(cfg)
    by_entity = {r.entity_id: r for r in reports}
    results = []
    for entity_id, (plant, entity) in plants.items():
        res = PlantResult(plant, entity, [h for h in hourly if h.entity_id == entity_id],
                          [m for m in monthly if m.entity_id == entity_id], None, [], {}, 0,
                          alerts=[a for a in alerts if a.entity_id == entity_id and a.severity != "cleared"],
                          report=by_entity.get(entity_id))
        if res.report is not None:
            res.calculated = calculated(res.report)
        results.append(res)
    return results
