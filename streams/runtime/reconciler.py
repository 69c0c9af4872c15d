"""The reconciler's shell: gather each entity-month's evidence from Kafka and InfluxDB, run
:func:`streams.core.reconcile.reconcile_month`, publish what changed to the alerts topic.

``cems reconcile CONFIG [--month YYYY-MM]`` runs it once (after a month closes, and again when late data or a
corrected report arrives); ``--every SECONDS`` keeps it running. What it reads:

* the accounting topic (the last report per entity, source and month; ``cems accounting import|serve``);
* the monthly topic: the CEMS CO2 of each source and month, compared only once the month is ``closed`` (an open
  month is not a month's figure yet);
* InfluxDB ``cems_minute``: the entity's channels over the local month, as minute grids for the indicators and
  for the edge meters' totals (``reconcile.meters`` in the config says which channel measures what);
* the dead-letter topic (``bad_signature`` per entity and month) and the gap reports (``sequence_holes``).

It publishes through :class:`~streams.core.alerts.AlertBook`, read back from the compacted alerts topic first, so a
rerun publishes nothing that did not change: restarts and reruns never repeat an alert.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np

from schemas import envelope
from schemas.accounting import AccountingReport
from schemas.alerts import Ack, Alert
from schemas.quantities import Flag
from schemas.records import GapReport, MonthlyRecord
from streams.config import WorkerConfig, load_sites
from streams.core.alerts import AlertBook
from streams.core.monthly import month_bounds, month_range
from streams.core.reconcile import MonthEvidence, metered_totals, reconcile_month
from streams.kernels.aggregate import MINUTE_NS
from streams.kernels.indicators import NO_DATA, Grid
from streams.runtime import kafka_io
from streams.runtime.metrics import ReconcilerMetrics

__all__ = ["Reconciler", "publish_reports", "read_acks", "read_alerts", "read_latest", "read_topic"]

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

    def run(self, month: str | None = None) -> list[Alert]:
        """Reconcile every entity-month with a report, a closed CEMS month or ingest findings (or only
        ``month``); publish the alerts that changed and return them."""
        started = time.perf_counter()
        cfg = self.cfg
        reports = read_latest(cfg, cfg.topics.accounting, AccountingReport.model_validate_json)
        monthly = read_latest(cfg, cfg.topics.monthly, MonthlyRecord.from_json)
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
        settings = self.cfg.reconcile
        start, end = month_range(label, entity.tz)
        grid, series = self._minutes(entity, start, end)
        channels = {(s.id, c.id): (c.quantity, c.unit) for s in entity.sources for c in s.channels}
        co2max = {s: v for s, v in settings.co2max.items() if s in {src.id for src in entity.sources}}
        by_source = {m.source_id: m for m in monthly if m.entity_id == entity_id and m.month == label}
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
                metered=metered_totals(grid, series, channels, meters) if grid is not None else {},
                minutes=grid if first else None, series=series, co2max=co2max,
                signature_failures=signatures.get((entity_id, label), 0) if first else 0,
                missing_batches=holes.get((entity_id, label), 0) if first else 0,
                evidence={"measured_vs_calculated": f"{self.cfg.topics.monthly}:{scope[0]}/{label}",
                          "insufficient_measured_data": f"{self.cfg.topics.monthly}:{scope[0]}/{label}",
                          "bad_signature": f"{self.cfg.topics.dead_letter}:reason=bad_signature",
                          "sequence_holes": f"{self.cfg.topics.gaps}"}))
        return [a for ev in bundles for a in reconcile_month(ev, settings.policy)]

    def _minutes(self, entity, start: int, end: int) -> tuple[Grid | None, list[tuple[str, str]]]:
        """The entity's minute means over [start, end) from InfluxDB, as a grid (None without InfluxDB)."""
        series = [(s.id, c.id) for s in entity.sources for c in s.channels]
        if self.cfg.influx is None or not series:
            return None, series
        flux = f'''from(bucket: "{self.cfg.influx.bucket}")
  |> range(start: {_rfc3339(start)}, stop: {_rfc3339(end)})
  |> filter(fn: (r) => r._measurement == "cems_minute" and r.entity == "{entity.id}")
  |> filter(fn: (r) => r._field == "mean" or r._field == "flag")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> keep(columns: ["_time", "source", "channel", "mean", "flag"])'''
        n = (end - start) // MINUTE_NS
        mean = np.full((len(series), n), np.nan)
        flag = np.full((len(series), n), NO_DATA, dtype=np.uint8)
        index = {key: i for i, key in enumerate(series)}
        letters = {f.name: int(f) for f in Flag}
        from influxdb_client import Dialect, InfluxDBClient

        with InfluxDBClient(url=self.cfg.influx.url, token=self.cfg.influx.token.get_secret_value(),
                            org=self.cfg.influx.org, timeout=120_000) as client:
            text = client.query_api().query_raw(flux, dialect=Dialect(header=True, annotations=[])).data.decode()
        header: dict[str, int] = {}  # column name -> index, of the result table being read
        for row in csv.reader(io.StringIO(text)):  # one header row per result table, then its rows
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
        return Grid(mean, start, MINUTE_NS, flag), series

    def _signature_failures(self) -> dict[tuple[str, str], int]:
        """Dead letters with reason bad_signature, per entity (configured agent, else the claimed source) and
        local month (of the claimed readings, else of the dead-lettering)."""
        from schemas.batch import decode_batch

        out: dict[tuple[str, str], int] = defaultdict(int)
        for r in read_topic(self.cfg, self.cfg.topics.dead_letter):
            headers = dict(r.headers or [])
            if headers.get("cems-dlq-reason") != b"bad_signature":
                continue
            agent = headers.get(envelope.AGENT, b"").decode("utf-8", "replace")
            entity_id, when = self.cfg.reconcile.agent_entities.get(agent), r.timestamp * 1_000_000
            try:  # what the batch claims (not trusted, but the best place and time to file it under)
                batch = decode_batch(r.value)
                entity_id = entity_id or self.entity_of.get(batch.source_id)
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


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ns(text: str) -> int:
    """RFC 3339 from InfluxDB (UTC, optional fraction) -> ns."""
    text = text.rstrip("Z")
    whole, _, frac = text.partition(".")
    base = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return base * 10**9 + int((frac + "000000000")[:9])
