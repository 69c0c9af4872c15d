"""Reconciliation at national scale: a month of 3,700 entities with 20,000 stacks, on one core (issue 19).

    python bench/bench_national_reconcile.py [--entities 3700] [--stacks 20000] [--batch 100]
                                             [--old-sample 1] [--kafka-fraction 0.02]

The population: ``--entities`` entities of the four sectors with ``--stacks`` stacks between them (5 or 6 each), one
month (2026-02, 672 hours). Each stack has the six CEMS channels of the simulator's sector months
(``edge_agent/simulator/sector_month.py``) and the first stack of each entity its fuel and production totalisers
(8 channels). Every entity has a report, a closed monthly record per stack and its stacks' day records (the hour
partials the stream publishes on ``cems.indicators.v1``). The data come from 12 simulated sector months (three
per sector; one with a stuck channel, one with under-reported fuel), reduced to hour partials by the stream's
kernel and given to the stacks in turn: the reconciler's work depends on the number of series and hours, not on the
values.

Timed: ``Reconciler.run`` itself (parsing the reports, monthly records and day records from their bytes, grouping,
assembling each entity-month, every indicator and rule, the alert book), with the Kafka reads served from memory,
one batch of ``--batch`` entities at a time so that the population never has to be held at once (the real run
holds its month's records: the sizes are printed). Beside it, on the same machine in the same run:

* the old path (minutes read back from InfluxDB, the Flux CSV parsed row by row, the indicators on the minute grid),
  measured on ``--old-sample`` entities and extrapolated by series count; the database's own query time is not in
  it (the old figure is a floor);
* the audit path (``--recompute``: the same CSV parsed with pyarrow, reduced to hour partials), likewise;
* reading the day records from the real Kafka (``CEMS_KAFKA_BOOTSTRAP``, default 127.0.0.1:19092): a fraction of
  the population (``--kafka-fraction``, 0 to skip) produced to a topic of its own, read back with the reconciler's
  reader, extrapolated to the whole; the topic is deleted afterwards.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.simulator.sector_month import SECTORS, SectorMonth, simulate_month
from schemas.accounting import validate_report
from schemas.kafka import KafkaConnection
from schemas.quantities import Flag
from schemas.records import IndicatorDay, MonthlyRecord
from schemas.site import Entity
from streams.config import ReconcileSettings, Topics, WorkerConfig
from streams.core.findings import day_records, is_meter
from streams.core.reconcile import MonthEvidence, metered_totals, reconcile_month
from streams.kernels.aggregate import MINUTE_NS
from streams.kernels.indicators import NO_DATA, Grid, hour_partials
from streams.runtime import kafka_io
from streams.runtime import reconciler as rec_mod
from streams.runtime.metrics import ReconcilerMetrics
from tests.unit.test_reconcile import co2max, grid

TEMPLATE_FAULTS = ((), ("stuck_channel",), ("fuel_underreport",))
SEND_ALL, READ_LATEST = kafka_io.send_all, kafka_io.read_latest  # the real ones (the timed runs serve from memory)


#: Channels a stack has besides the simulator's CO2, O2 and flow, made from its flow (scaled): six per stack.
EXTRA = (("moisture", "a01014", "%", 0.08), ("temp", "a01012", "degC", 1.3), ("pstatic", "a01013", "kPa", 0.02))


class Template:
    """One simulated sector month, as the stream would have published it."""

    def __init__(self, sm: SectorMonth) -> None:
        self.sm = sm
        src = sm.entity["sources"][0]
        src["channels"] = src["channels"] + [{"id": i, "quantity": q, "unit": u} for i, q, u, _ in EXTRA]
        self.channels = [c["id"] for c in src["channels"]]
        self.meters = [c["id"] for c in src["channels"] if is_meter(c["quantity"])]
        self.stack_channels = [c for c in self.channels if c not in self.meters]
        g = grid(dataclass_replace(sm, entity={**sm.entity, "sources": [{**src, "channels": src["channels"][:-3]}]}))
        flow = g.mean[self.channels.index("flow")]
        self.grid = Grid(np.vstack([g.mean] + [flow * k for *_, k in EXTRA]), g.start_ns, MINUTE_NS,
                         np.vstack([g.flag] + [g.flag[:1]] * 3), np.vstack([g.operating] + [g.operating[:1]] * 3),
                         np.vstack([g.calibrating] + [g.calibrating[:1]] * 3))
        self.parts = hour_partials(self.grid)
        self.co2max = co2max(sm.sector)
        self.measures = {"fuel_total": next((k for k in sm.metered if k != "product"), None),
                         "product_total": "product"}


def templates() -> list[Template]:
    return [Template(simulate_month(sector, 200_000 + i, faults, entity_id="t"))
            for sector in SECTORS for i, faults in enumerate(TEMPLATE_FAULTS)]


class Population:
    """Entities, reports, monthly records and day records of entities ``[lo, hi)``, built on demand."""

    def __init__(self, temps: list[Template], n_entities: int, n_stacks: int) -> None:
        base, extra = divmod(n_stacks, n_entities)
        self.stacks = np.full(n_entities, base, dtype=np.int64)
        self.stacks[:extra] += 1
        self.temps = temps

    def batch(self, lo: int, hi: int):
        store: dict[str, list[bytes]] = {"accounting": [], "monthly": [], "indicators": []}
        entities, meters, cmax = [], {}, {}
        for i in range(lo, hi):
            t = self.temps[i % len(self.temps)]
            n = int(self.stacks[i])
            e = dict(t.sm.entity, id=f"e{i:05d}")
            src = t.sm.entity["sources"][0]
            e["sources"] = [dict(src, id=f"e{i:05d}-s{j}", channels=[c for c in src["channels"]
                                                                      if j == 0 or not is_meter(c["quantity"])])
                            for j in range(n)]
            entity = Entity.model_validate(e)
            entities.append(entity)
            report = dict(t.sm.report, entity_id=entity.id)
            store["accounting"].append(validate_report(report).model_dump_json().encode())
            for j, s in enumerate(entity.sources):
                m = MonthlyRecord(
                    entity_id=entity.id, source_id=s.id, month=t.sm.month, timezone="Asia/Shanghai",
                    month_start_ns=t.sm.start_ns, status="closed", revision=0, reason="closed", policy="cn-hj75",
                    substitution="hj75-2017", co2_t=t.sm.measured_co2_t / n, measured_co2_t=t.sm.measured_co2_t / n,
                    substituted_co2_t=0.0, hours_in_month=672, hours=672, operating_hours=650, measured_hours=650,
                    substituted_hours=0, missing_hours=0, valid_days=27, valid=True, completeness=1.0)
                store["monthly"].append(m.to_json())
                cmax[s.id] = t.co2max
                chans = t.channels if j == 0 else t.stack_channels
                rows = [t.channels.index(c) for c in chans]
                store["indicators"] += [d.to_bytes() for d in day_records(
                    entity.id, s.id, chans, t.parts.rows(rows), t.meters if j == 0 else [])]
            for channel, measures in t.measures.items():
                if measures is not None and channel in t.meters:
                    meters[f"{entity.id}-s0/{channel}"] = measures
        return entities, store, meters, cmax


def reconciler(entities: list[Entity], store: dict, meters: dict, cmax: dict) -> rec_mod.Reconciler:
    """A Reconciler over ``entities`` whose Kafka reads are served from ``store`` (topic -> values)."""
    cfg = WorkerConfig(kafka=KafkaConnection(bootstrap_servers="unused:1"), topics=Topics(), sites=[Path("unused")],
                       keys_dir=Path("unused"), reconcile=ReconcileSettings(meters=meters, co2max=cmax))
    topic = {cfg.topics.accounting: "accounting", cfg.topics.monthly: "monthly", cfg.topics.indicators: "indicators"}
    def read_latest(cfg: WorkerConfig, topic_name: str, parse):
        return [parse(v) for v in store.get(topic.get(topic_name, ""), [])]

    rec_mod.read_latest = read_latest  # type: ignore[assignment]  # served from memory: the reconciler, not Kafka
    rec_mod.read_topic = lambda cfg, topic: []  # type: ignore[assignment]
    kafka_io.send_all = lambda *a, **k: None
    r = rec_mod.Reconciler.__new__(rec_mod.Reconciler)
    r.cfg, r.entities = cfg, {e.id: e for e in entities}
    r.entity_of = {s.id: e.id for e in entities for s in e.sources}
    r.metrics = ReconcilerMetrics()
    return r


# -- the old path, as the reconciler had it before issue 19 (kept here to measure it) ----------------------------


def flux_csv(entity: Entity, t: Template, tables: bool) -> bytes:
    """The entity's month of minutes as InfluxDB's query_raw returns them (``tables``: one table per series, as
    the old query; else one table, as the audit's ``group()``)."""
    letters = np.array([f.name for f in Flag] + [""], dtype=object)
    times = np.array([datetime.fromtimestamp((t.sm.start_ns + k * MINUTE_NS) // 10**9, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ") for k in range(t.grid.shape[1])], dtype=object)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    table = 0
    if not tables:
        w.writerow(["", "result", "table", "_time", "channel", "flag", "mean", "source"])
    for s in entity.sources:
        for c in s.channels:
            row = t.channels.index(c.id)
            if tables:
                w.writerow(["", "result", "table", "_time", "channel", "flag", "mean", "source"])
            mean, flag = t.grid.mean[row], t.grid.flag[row]
            ok = flag != NO_DATA
            fl = letters[np.minimum(flag, len(letters) - 1)]
            for k in np.flatnonzero(ok).tolist():
                m = mean[k]
                w.writerow(["", "_result", table, times[k], c.id, fl[k], repr(float(m)) if np.isfinite(m) else "",
                            s.id])
            if tables:
                w.writerow([])
                table += 1
    return out.getvalue().encode()


def old_parse(text: str, series: list[tuple[str, str]], start: int, end: int) -> Grid:
    """The pre-issue-19 reconciler's row-by-row parse of the Flux CSV (``Reconciler._minutes``)."""
    n = (end - start) // MINUTE_NS
    mean = np.full((len(series), n), np.nan)
    flag = np.full((len(series), n), NO_DATA, dtype=np.uint8)
    index = {key: i for i, key in enumerate(series)}
    letters = {f.name: int(f) for f in Flag}
    header: dict[str, int] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if "_time" in row:
            header = {name: k for k, name in enumerate(row)}
            continue
        i = index.get((row[header["source"]], row[header["channel"]]))
        if i is None:
            continue
        t = (_ns(row[header["_time"]]) - start) // MINUTE_NS
        if 0 <= t < n:
            if row[header["mean"]]:
                mean[i, t] = float(row[header["mean"]])
            flag[i, t] = letters.get(row[header["flag"]], NO_DATA)
    return Grid(mean, start, MINUTE_NS, flag)


def _ns(text: str) -> int:
    text = text.rstrip("Z")
    whole, _, frac = text.partition(".")
    base = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return base * 10**9 + int((frac + "000000000")[:9])


def old_and_audit(pop: Population, sample: int) -> tuple[float, float, int]:
    """Seconds per series of the old path and of the audit's parse, measured on ``sample`` entities."""
    old_s = audit_s = 0.0
    n_series = 0
    for i in range(sample):
        entities, _, meters, cmax = pop.batch(i, i + 1)
        (entity,) = entities
        t = pop.temps[i % len(pop.temps)]
        series = [(s.id, c.id) for s in entity.sources for c in s.channels]
        n_series += len(series)
        end = t.sm.start_ns + t.grid.shape[1] * MINUTE_NS
        text = flux_csv(entity, t, tables=True).decode()
        began = time.process_time()
        g = old_parse(text, series, t.sm.start_ns, end)
        channels = {(s.id, c.id): (c.quantity, c.unit) for s in entity.sources for c in s.channels}
        report = validate_report(dict(t.sm.report, entity_id=entity.id))
        reconcile_month(MonthEvidence(entity=entity, month=t.sm.month, report=report, minutes=g, series=series,
                                      metered=metered_totals(g, series, channels, meters),
                                      co2max=cmax))
        old_s += time.process_time() - began
        data = flux_csv(entity, t, tables=False)
        began = time.process_time()
        hour_partials(rec_mod.parse_minutes(data, series, t.sm.start_ns, end))
        audit_s += time.process_time() - began
    return old_s / n_series, audit_s / n_series, n_series


def kafka_read(pop: Population, fraction: float, n_entities: int) -> None:
    bootstrap = os.environ.get("CEMS_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    k = max(1, int(n_entities * fraction))
    _, store, _, _ = pop.batch(0, k)
    records = store["indicators"]
    topic = f"bench.indicators.{uuid.uuid4().hex[:8]}"
    conn = KafkaConnection(bootstrap_servers=bootstrap)
    from kafka.admin import NewTopic

    admin = kafka_io.admin(conn)
    admin.create_topics([NewTopic(topic, 12, 1, topic_configs={"cleanup.policy": "compact"})])
    try:
        size = sum(len(r) for r in records)
        SEND_ALL(conn, topic, [(IndicatorDay.from_bytes(r).key.encode(), r, []) for r in records], timeout_s=300,
                 max_request_size=4 << 20)
        for _ in range(10):  # a fresh topic's partitions reach the reader's metadata a moment later
            began, cpu = time.perf_counter(), time.process_time()
            got = READ_LATEST(conn, topic, IndicatorDay.from_bytes)
            wall, cpu = time.perf_counter() - began, time.process_time() - cpu
            if len(got) == len(records):
                break
            time.sleep(1)
        scale = n_entities / k
        print(f"kafka: {len(got):,} day records of {k} entities ({size / 1e6:,.0f} MB) read back in "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU; x {scale:.0f} for the population: ~{wall * scale / 60:.1f} min "
              f"wall, {cpu * scale / 60:.1f} min CPU (extrapolated)")
    finally:
        admin.delete_topics([topic])
        admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=3700)
    ap.add_argument("--stacks", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--old-sample", type=int, default=1)
    ap.add_argument("--kafka-fraction", type=float, default=0.02)
    args = ap.parse_args()
    if args.stacks < args.entities:
        ap.error("--stacks must be at least --entities")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min) on "
          f"{os.cpu_count()} cores")
    temps = templates()
    pop = Population(temps, args.entities, args.stacks)
    spent = cpu = 0.0
    alerts: Counter[str] = Counter()
    n_records = n_bytes = n_series = 0
    for lo in range(0, args.entities, args.batch):
        entities, store, meters, cmax = pop.batch(lo, min(lo + args.batch, args.entities))
        n_records += len(store["indicators"])
        n_bytes += sum(len(v) for values in store.values() for v in values)
        n_series += sum(len(s.channels) for e in entities for s in e.sources)
        r = reconciler(entities, store, meters, cmax)
        began, c0 = time.perf_counter(), time.process_time()
        out = r.run()
        spent, cpu = spent + time.perf_counter() - began, cpu + time.process_time() - c0
        alerts.update(a.rule for a in out)
    print(f"population: {args.entities:,} entities, {int(pop.stacks.sum()):,} stacks, {n_series:,} series, one month "
          f"(672 h); {n_records:,} day records, {n_bytes / 1e9:.2f} GB of records in all")
    print(f"reconciliation from the compacted records: {spent:.1f} s wall, {cpu:.1f} s CPU on one core "
          f"({cpu / args.entities * 1e3:.1f} ms per entity); target < 300 s: {'met' if cpu < 300 else 'NOT met'}")
    print(f"  alerts: {dict(sorted(alerts.items()))}")
    if args.old_sample:
        per_old, per_audit, sampled = old_and_audit(pop, args.old_sample)
        print(f"old path (minutes from InfluxDB parsed row by row, measured on {args.old_sample} entity/ies, "
              f"{sampled} series; InfluxDB's query time not included): {per_old * 1e3:.0f} ms per series -> "
              f"~{per_old * n_series / 3600:.1f} h for the population (extrapolated), "
              f"{per_old * n_series / cpu:.0f}x the new path")
        print(f"audit path (--recompute; the same CSV parsed with pyarrow, reduced to hour partials): "
              f"{per_audit * 1e3:.1f} ms per series -> ~{per_audit * n_series / 60:.1f} min for the population "
              f"(extrapolated, InfluxDB's query time not included)")
    if args.kafka_fraction > 0:
        kafka_read(pop, args.kafka_fraction, args.entities)


if __name__ == "__main__":
    main()
