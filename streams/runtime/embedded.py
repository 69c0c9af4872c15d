"""The whole pipeline in one process, with no Kafka and no InfluxDB: for a single site, a first look, or the demo.

Recorded reading batches (files in the wire format, e.g. an edge outbox's ``*.batch``) go as signed messages through
the same :class:`~streams.core.processor.PartitionProcessor` the faust worker drives, so the hourly and monthly
records are the stream's; the closed minutes become the grids of the data-quality indicators and the meters' totals;
the self-reported files are reconciled by :func:`streams.core.reconcile.reconcile_month`; every closed month lands in
the file-based :class:`~streams.archive.store.Archive` (SQLite), which ``cems archive serve`` and ``cems console
serve`` put on localhost. The demo (``streams/cli/demo.py``) records its simulated plants as an edge outbox and
comes through here like any recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ingest.accounting import load_reports
from ingest.batches import KeyRing
from schemas import envelope
from schemas.accounting import AccountingReport
from schemas.records import HourlyRecord, MonthlyRecord
from schemas.site import Entity
from streams.archive.store import Archive
from streams.core.figures import alert_figures, calculated, hourly_figures, month_figures
from streams.core.monthly import month_bounds, month_range
from streams.core.processor import Message, PartitionProcessor, Registry, Settings
from streams.core.reconcile import MonthEvidence, ReconcilePolicy, metered_totals, reconcile_month
from streams.kernels.aggregate import MINUTE_NS, PeriodTable, concat_tables
from streams.kernels.indicators import Grid

__all__ = ["PlantResult", "archive_plants", "batch_files", "process_entity", "reconcile_plants", "run_recorded",
           "write_records"]

@dataclass
class PlantResult:
    """One entity's records, minute grid and reconciliation, as the report, the archive and the CLI use them."""

    entity: Entity
    hourly: list[HourlyRecord]
    monthly: list[MonthlyRecord]
    minutes: Grid | None  # None: records read back from the services (their minutes are in InfluxDB)
    series: list[tuple[str, str]]
    metered: dict[str, float]
    readings: int
    alerts: list = field(default_factory=list)
    report: AccountingReport | None = None
    meters: dict[str, str] = field(default_factory=dict)  # "source/channel" -> what the meter measures
    calculated: dict[str, float] = field(default_factory=dict)


def _channels(entity: Entity) -> dict:
    return {(s.id, c.id): (c.quantity, c.unit) for s in entity.sources for c in s.channels}


def process_entity(entity: Entity, messages: list[Message], keys: dict[str, bytes], start: int, end: int,
                   settings: Settings = Settings()) -> PlantResult:
    """One entity's messages (time order) through a partition processor: records, and the closed minutes as a
    grid over [start, end) for the indicators and meters."""
    registry = Registry([entity])
    proc = PartitionProcessor(registry, KeyRing(keys=keys), settings)
    hourly: list[HourlyRecord] = []
    monthly: dict[str, MonthlyRecord] = {}  # key -> the newest version
    minutes: list[PeriodTable] = []
    readings = 0
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
    grid = (Grid.from_table(concat_tables(minutes), registry.n_series, start, n) if minutes
            else Grid(np.full((len(series), n), np.nan), start))
    return PlantResult(entity, hourly, list(monthly.values()), grid, series, {}, readings)


def batch_files(paths: list[Path]) -> list[Path]:
    """The reading batches to run: files as given, and every ``*.batch`` under a directory (an edge outbox, or a
    folder of outboxes, one per gateway), in path order."""
    out: list[Path] = []
    for p in paths:
        out += sorted(p.rglob("*.batch")) if p.is_dir() else [p]
    return out


def run_recorded(entities: list[Entity], files: list[Path], meters: dict[str, str] | None = None,
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
    for path in files:
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
        res = process_entity(entity, messages, dict.fromkeys(agents[entity.id], key), start, end, settings)
        res.meters = dict(meters or {})
        results.append(res)
    return results


def reconcile_plants(results: list[PlantResult], report_files: list[Path],
                     policy: ReconcilePolicy = ReconcilePolicy()) -> None:
    """Reconcile each entity's months against its reports (all files validated together, all or nothing)."""
    reports = {(r.entity_id, r.month): r for f in report_files for r in load_reports(f) if r.source_id is None}
    for res in results:
        res.alerts = []
        g = res.minutes
        if g is None:
            raise ValueError(f"{res.entity.id}: no minute grid to reconcile (records read back from the services)")
        for label in sorted({m.month for m in res.monthly}):  # one bundle per month, every source of it
            ms = [m for m in res.monthly if m.month == label]
            m = ms[0]
            report = reports.get((res.entity.id, m.month))
            _, start, end = month_bounds(m.month_start_ns, res.entity.tz)
            a, b = ((x - g.start_ns) // MINUTE_NS for x in (start, end))
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
        names = list(cls.__dataclass_fields__)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow((["hour_start"] if cls is HourlyRecord else []) + names)
            for r in sorted(latest.values(), key=lambda r: r.key):
                values = ["" if v is None or (isinstance(v, float) and v != v) else v
                          for v in (getattr(r, n) for n in names)]
                w.writerow(([r.hour_iso] if isinstance(r, HourlyRecord) else []) + values)
    return paths
