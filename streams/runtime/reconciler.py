"""The reconciler's shell: gather each entity-month's evidence from Kafka and InfluxDB, run
:func:`streams.core.reconcile.reconcile_month`, publish what changed to the alerts topic.

``cems reconcile CONFIG [--month YYYY-MM]`` runs it once (after a month closes, and again when late data or a
corrected report arrives); ``--every SECONDS`` keeps it running. What it reads:

* the accounting topic (the last report per entity, source and month; ``cems accounting import|serve``);
* the monthly topic: the CEMS CO2 of each source and month, compared only once the month is ``closed`` (an open
  month is not a month's figure yet);
* the indicators topic: the stream's hour partials per source and UTC day (``schemas.records.IndicatorDay``), from
  which the month's indicators and the edge meters' totals are evaluated (``reconcile.meters`` in the config says
  which channel measures what), exactly as from the minutes; the minutes are never read back for a normal run;
* InfluxDB ``cems_minute`` only for an audit (``recompute=True``, ``cems reconcile --recompute``): the entity's
  minutes over the local month, parsed column-wise (pyarrow), reduced to hour partials by the same kernel, and
  reconciled; where its alerts differ from the stream's, ``stream_recompute_mismatch`` says so. A month holding a
  stale hour (minutes the stream folded after it let the hour's minutes go) is recomputed the same way when
  InfluxDB is configured;
* the dead-letter topic (``bad_signature`` per entity and month) and the gap reports (``sequence_holes``).

It publishes through :class:`~streams.core.alerts.AlertBook`, read back from the compacted alerts topic first, so a
rerun publishes nothing that did not change: restarts and reruns never repeat an alert.
"""

from __future__ import annotations

import io
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np

from schemas import envelope
from schemas._optional import needs_extra
from schemas.accounting import AccountingReport
from schemas.alerts import Ack, Alert
from schemas.quantities import Flag
from schemas.records import GapReport, IndicatorDay, MonthlyRecord
from streams.config import WorkerConfig, load_sites
from streams.core.alerts import AlertBook
from streams.core.findings import DAY_NS, month_partials
from streams.core.monthly import month_bounds, month_range
from streams.core.reconcile import MonthEvidence, audit_mismatch, metered_totals, reconcile_month
from streams.kernels.aggregate import HOUR_NS, MINUTE_NS
from streams.kernels.indicators import NO_DATA, Grid, HourPartials, hour_partials
from streams.runtime import kafka_io
from streams.runtime.metrics import ReconcilerMetrics

__all__ = ["Reconciler", "parse_minutes", "publish_reports", "read_acks", "read_alerts", "read_latest", "read_topic"]

log = logging.getLogger(__name__)


def read_topic(cfg: WorkerConfig, topic: str) -> list:
    """Every record of ``topic`` up to its current end (kafka-python records), all partitions."""
    return kafka_io.read_topic(cfg.kafka, topic)


def read_latest(cfg: WorkerConfig, topic: str, parse) -> list:
    """The newest value per key of a compacted topic, parsed (``parse(bytes)``); deleted keys left out."""
    return kafka_io.read_latest(cfg.kafka, topic, parse)


def read_alerts(cfg: WorkerConfig) -> list[Alert]:
    return read_latest(cfg, cfg.topics.alerts, Alert.from_json)


def read_acks(cfg: WorkerConfig) -> list[Ack]:
    return [Ack.from_json(r.value) for r in read_topic(cfg, cfg.topics.alert_acks) if r.value is not None]


def publish_reports(cfg: WorkerConfig, reports: list[AccountingReport]) -> list[str]:
    """Accepted reports onto the compacted accounting topic, keyed ``entity/source or -/month``."""
    keys = [f"{r.entity_id}/{r.source_id or '-'}/{r.month}" for r in reports]
    kafka_io.send_all(cfg.kafka, cfg.topics.accounting, [(k.encode(), r.model_dump_json().encode(), [])
                                           for k, r in zip(keys, reports, strict=True)])
    return keys


class Reconciler:
    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.entities = {e.id: e for e in load_sites(cfg.sites)}
        self.entity_of = {s.id: e.id for e in self.entities.values() for s in e.sources}
        self.metrics = ReconcilerMetrics()  # served by `cems reconcile --every` when metrics_port is set

    def run(self, month: str | None = None, *, recompute: bool = False) -> list[Alert]:
        """Reconcile every entity-month with a report, a closed CEMS month or ingest findings (or only
        ``month``); publish the alerts that changed and return them. ``recompute``: the audit, from the minutes in
        InfluxDB instead of the stream's hour partials, with ``stream_recompute_mismatch`` where they differ."""
        if recompute and self.cfg.influx is None:
            raise ValueError("a recompute reads the minutes from InfluxDB: the config has no influx section")
        started = time.perf_counter()
        cfg = self.cfg
        reports = read_latest(cfg, cfg.topics.accounting, AccountingReport.model_validate_json)
        monthly = read_latest(cfg, cfg.topics.monthly, MonthlyRecord.from_json)
        self._days = self._indicator_days()
        self._recompute = recompute
        signatures = self._signature_failures()
        holes = self._missing_batches()
        scopes: dict[tuple[str, str], list[AccountingReport]] = defaultdict(list)
        for r in reports:
            scopes[(r.entity_id, r.month)].append(r)
        for m in monthly:
            if m.entity_id in self.entities:
                scopes.setdefault((m.entity_id, m.month), [])
        for key in list(signatures) + list(holes):
            scopes.setdefault(key, [])
        book = AlertBook(read_alerts(cfg))
        out = []
        for (entity_id, label), reps in sorted(scopes.items()):
            if (month is not None and label != month) or entity_id not in self.entities:
                continue
            alerts = self._reconcile(entity_id, label, reps, monthly, signatures, holes)
            out += book.update(alerts, (entity_id, label))
        if out:
            kafka_io.send_all(cfg.kafka, cfg.topics.alerts, [(a.id.encode(), a.to_json(), a.headers()) for a in out])
        log.info("reconciled %d entity-month(s): %d alert version(s) published", len(scopes), len(out),
                 extra={"event": "reconciled", "published": len(out)})
        self.metrics.ran(out, time.perf_counter() - started)
        return out

    def _reconcile(self, entity_id, label, reports, monthly, signatures, holes) -> list[Alert]:
        entity = self.entities[entity_id]
        start, end = month_range(label, entity.tz)
        series = [(s.id, c.id) for s in entity.sources for c in s.channels]
        days = self._days.get((entity_id, label), [])
        partials, stale = month_partials(series, start, end, days) if start % HOUR_NS == 0 else (None, 0)
        if self._recompute or (stale and self.cfg.influx is not None) or (partials is None and self.cfg.influx):
            grid = self._minutes(entity, series, start, end)
            audit = self._alerts(entity, label, reports, monthly, signatures, holes, series, grid)
            if partials is None or not days:
                return audit
            stream = self._alerts(entity, label, reports, monthly, signatures, holes, series, partials)
            return audit + audit_mismatch(MonthEvidence(entity=entity, month=label), stream, audit)
        return self._alerts(entity, label, reports, monthly, signatures, holes, series, partials if days else None)

    def _alerts(self, entity, label, reports, monthly, signatures, holes, series,
                evidence: Grid | HourPartials | None) -> list[Alert]:
        """The alerts of one entity-month from the minute grid (audit) or the stream's hour partials."""
        settings = self.cfg.reconcile
        channels = {(s.id, c.id): (c.quantity, c.unit) for s in entity.sources for c in s.channels}
        co2max = {s: v for s, v in settings.co2max.items() if s in {src.id for src in entity.sources}}
        by_source = {m.source_id: m for m in monthly if m.entity_id == entity.id and m.month == label}
        bundles = []
        for i, report in enumerate(reports or [None]):
            scope = [report.source_id] if report is not None and report.source_id else [s.id for s in entity.sources]
            meters = {k: v for k, v in settings.meters.items() if k.partition("/")[0] in scope}
            stacks = [s.id for s in entity.sources if s.id in scope and any(c.quantity == "a05001" for c in s.channels)]
            # the CEMS stacks among them (meters have no CO2), compared only once every one's month is closed
            closed = [m for s in stacks if (m := by_source.get(s)) is not None and m.status == "closed"]
            records = closed if stacks and len(closed) == len(stacks) else []
            first = i == 0  # indicators and ingest findings once per entity-month
            bundles.append(MonthEvidence(
                entity=entity, month=label, report=report, monthly=records,
                metered=metered_totals(evidence, series, channels, meters) if evidence is not None else {},
                minutes=evidence if first and isinstance(evidence, Grid) else None,
                partials=evidence if first and isinstance(evidence, HourPartials) else None,
                series=series, co2max=co2max,
                signature_failures=signatures.get((entity.id, label), 0) if first else 0,
                missing_batches=holes.get((entity.id, label), 0) if first else 0,
                evidence={"measured_vs_calculated": f"{self.cfg.topics.monthly}:{scope[0]}/{label}",
                          "insufficient_measured_data": f"{self.cfg.topics.monthly}:{scope[0]}/{label}",
                          "bad_signature": f"{self.cfg.topics.dead_letter}:reason=bad_signature",
                          "sequence_holes": f"{self.cfg.topics.gaps}"}))
        return [a for ev in bundles for a in reconcile_month(ev, settings.policy)]

    def _indicator_days(self) -> dict[tuple[str, str], list[IndicatorDay]]:
        """The stream's day records (newest per key) by entity and every local month a UTC day overlaps."""
        out: dict[tuple[str, str], list[IndicatorDay]] = defaultdict(list)
        bad = 0
        for day in read_latest(self.cfg, self.cfg.topics.indicators, _or_none):
            if day is None:
                bad += 1
                continue
            entity = self.entities.get(day.entity_id)
            if entity is None:
                continue
            first, _, _ = month_bounds(day.day_start_ns, entity.tz)
            last, _, _ = month_bounds(day.day_start_ns + DAY_NS - 1, entity.tz)
            for label in dict.fromkeys((first, last)):
                out[(day.entity_id, label)].append(day)
        if bad:  # a record no worker of this version wrote: its hours are left out (the audit reads the minutes)
            log.error("%d record(s) on %s could not be decoded and were left out", bad, self.cfg.topics.indicators,
                      extra={"event": "bad_indicator_records", "count": bad})
        return out

    def _minutes(self, entity, series: list[tuple[str, str]], start: int, end: int) -> Grid | HourPartials:
        """The entity's minute means over [start, end) from InfluxDB (the audit), reduced to hour partials by the
        stream's own kernel where the month starts on a whole hour (else the minute grid itself)."""
        assert self.cfg.influx is not None
        flux = f'''from(bucket: "{self.cfg.influx.bucket}")
  |> range(start: {_rfc3339(start)}, stop: {_rfc3339(end)})
  |> filter(fn: (r) => r._measurement == "cems_minute" and r.entity == "{entity.id}")
  |> filter(fn: (r) => r._field == "mean" or r._field == "flag")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> keep(columns: ["_time", "source", "channel", "mean", "flag"])
  |> group()'''
        from influxdb_client import Dialect, InfluxDBClient

        with InfluxDBClient(url=self.cfg.influx.url, token=self.cfg.influx.token.get_secret_value(),
                            org=self.cfg.influx.org, timeout=120_000) as client:
            data = client.query_api().query_raw(flux, dialect=Dialect(header=True, annotations=[])).data
        grid = parse_minutes(data, series, start, end)
        return hour_partials(grid) if start % HOUR_NS == 0 else grid

    def _signature_failures(self) -> dict[tuple[str, str], int]:
        """Dead letters with reason bad_signature, per entity (configured agent, else the claimed source) and
        local month (of the claimed readings, else of the dead-lettering)."""
        from schemas.agent_batch import decode_message

        out: dict[tuple[str, str], int] = defaultdict(int)
        for r in read_topic(self.cfg, self.cfg.topics.dead_letter):
            headers = dict(r.headers or [])
            if headers.get("cems-dlq-reason") != b"bad_signature":
                continue
            agent = headers.get(envelope.AGENT, b"").decode("utf-8", "replace")
            entity_id, when = self.cfg.reconcile.agent_entities.get(agent), r.timestamp * 1_000_000
            try:  # what the batch claims (not trusted, but the best place and time to file it under)
                batch = decode_message(r.value)  # any wire version; an agent batch under its first source
                entity_id = entity_id or next((self.entity_of[s] for s in batch.source_ids if s in self.entity_of),
                                              None)
                when = int(batch.ts_ns.min()) if batch.ts_ns.size else when
            except Exception:
                pass
            if entity_id in self.entities:
                label, _, _ = month_bounds(when, self.entities[entity_id].tz)
                out[(entity_id, label)] += 1
        return dict(out)

    def _missing_batches(self) -> dict[tuple[str, str], int]:
        """Batches missing now per entity (agents configured in ``reconcile.agent_entities``), at the month of
        the report."""
        out: dict[tuple[str, str], int] = defaultdict(int)
        for gap in read_latest(self.cfg, self.cfg.topics.gaps, GapReport.from_json):
            entity_id = self.cfg.reconcile.agent_entities.get(gap.agent_id)
            if entity_id in self.entities and gap.missing:
                label, _, _ = month_bounds(gap.as_of_ns, self.entities[entity_id].tz)
                out[(entity_id, label)] += gap.missing
        return dict(out)


def _or_none(data: bytes) -> IndicatorDay | None:
    try:
        return IndicatorDay.from_bytes(data)
    except ValueError:
        return None


def parse_minutes(data: bytes, series: list[tuple[str, str]], start: int, end: int) -> Grid:
    """A Flux CSV of minute means (one table: ``_time``, ``source``, ``channel``, ``mean``, ``flag``) -> the minute
    grid of ``series`` over ``[start, end)``, parsed column-wise with pyarrow (no loop per row)."""
    n = (end - start) // MINUTE_NS
    mean = np.full((len(series), n), np.nan)
    flag = np.full((len(series), n), NO_DATA, dtype=np.uint8)
    if not data.strip():
        return Grid(mean, start, MINUTE_NS, flag)
    with needs_extra("parquet", "the InfluxDB recompute (pyarrow's CSV reader)"):
        import pyarrow as pa
        from pyarrow import csv as pacsv

    table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
        column_types={"_time": pa.timestamp("ns", tz="UTC"), "mean": pa.float64(), "flag": pa.string(),
                      "source": pa.string(), "channel": pa.string()},
        include_columns=["_time", "source", "channel", "mean", "flag"], include_missing_columns=True))
    if table.num_rows == 0:
        return Grid(mean, start, MINUTE_NS, flag)
    row = _codes(table["source"], table["channel"], {key: i for i, key in enumerate(series)})
    known = row >= 0
    t = (table["_time"].cast(pa.int64()).to_numpy(zero_copy_only=False) - start) // MINUTE_NS
    keep = known & (t >= 0) & (t < n)
    values = table["mean"].to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
    lookup = {f.name: int(f) for f in Flag}
    letters = table["flag"].combine_chunks().dictionary_encode()
    codes = np.array([lookup.get(x, NO_DATA) for x in letters.dictionary.to_pylist()] + [NO_DATA], dtype=np.uint8)
    codes = codes[letters.indices.fill_null(len(codes) - 1).to_numpy()]  # per distinct letter, not per row
    mean[row[keep], t[keep]] = values[keep]
    flag[row[keep], t[keep]] = codes[keep]
    return Grid(mean, start, MINUTE_NS, flag)


def _codes(source, channel, index: dict[tuple[str, str], int]) -> np.ndarray:
    """Grid row of each (source, channel) cell of two arrow string columns, -1 for a series not asked for; the
    lookup runs once per distinct source and channel."""
    s, c = source.combine_chunks().dictionary_encode(), channel.combine_chunks().dictionary_encode()
    names_s, names_c = s.dictionary.to_pylist(), c.dictionary.to_pylist()
    table = np.full((len(names_s) + 1, len(names_c) + 1), -1, dtype=np.int64)  # the last row/column: null
    for i, a in enumerate(names_s):
        for j, b in enumerate(names_c):
            table[i, j] = index.get((a, b), -1)
    return table[s.indices.fill_null(len(names_s)).to_numpy(), c.indices.fill_null(len(names_c)).to_numpy()]


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
