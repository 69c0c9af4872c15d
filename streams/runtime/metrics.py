"""Prometheus metrics of the central roles: what an operator watches to know the stream workers keep up and the
reconciler raises what it should (names and meaning: docs/operations.md, "Metrics").

One registry per object (tests and several workers in one process do not collide). ``metrics_port`` in the central
settings (``streams/config.py``; None: no endpoint) makes :func:`serve` expose a registry over HTTP, as the edge agent
and the HJ 212 receiver do. Rates (messages and readings per second) are ``rate()`` of the counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from schemas._optional import needs_extra

with needs_extra("central", "the central roles' metrics"):
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["ReconcilerMetrics", "WorkerMetrics", "serve"]

#: Seconds: a checkpoint is an InfluxDB write and one Kafka round trip per partition, usually well under a second.
CHECKPOINT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    """A stream worker's counters, by readings partition where it helps to see one partition fall behind."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.messages = Counter("cems_worker_messages_total", "Reading batches handled (accepted, duplicate or "
                                "dead-lettered), by readings partition.", ["partition"], registry=r)
        self.readings = Counter("cems_worker_readings_total", "Readings in the accepted batches, by readings "
                                "partition.", ["partition"], registry=r)
        self.dead_letters = Counter("cems_worker_dead_letters_total", "Batches sent to the dead-letter topic, by "
                                    "reason (ingest/batches.py).", ["reason"], registry=r)
        self.duplicates = Counter("cems_worker_duplicates_total", "Batches seen before (same agent and sequence "
                                  "number), ignored.", registry=r)
        self.hourly_records = Counter("cems_worker_hourly_records_total", "Hourly records published (revisions "
                                      "included).", registry=r)
        self.lag = Gauge("cems_worker_consumer_lag_messages", "Messages of an assigned readings partition not yet "
                         "handled (high watermark - next offset).", ["partition"], registry=r)
        self.checkpoint_seconds = Histogram("cems_worker_checkpoint_seconds", "One checkpoint: the sink's points, "
                                            "every changed partition state acknowledged by Kafka, the input acked.",
                                            buckets=CHECKPOINT_BUCKETS, registry=r)
        self.last_checkpoint = Gauge("cems_worker_last_checkpoint_timestamp_seconds", "Unix time the last "
                                     "checkpoint completed.", registry=r)
        self.output_failures = Counter("cems_worker_output_failures_total", "Failed attempts to store counted "
                                       "output (retried until they succeed), by output: kafka (a partition's "
                                       "transaction of outputs and state), influxdb.", ["output"], registry=r)
        self.fenced_saves = Counter("cems_worker_fenced_saves_total", "Saves refused because another worker had "
                                    "taken the partition over (this one was frozen past its session timeout): "
                                    "its state and outputs were never committed.", ["partition"], registry=r)

    def handled(self, partition: int, out) -> None:
        """What one processor call made of a partition's messages (:class:`streams.core.processor.Output`)."""
        p = str(partition)
        self.messages.labels(p).inc(out.accepted + out.duplicates + len(out.dead_letters))
        self.readings.labels(p).inc(out.readings)
        for _, rejection in out.dead_letters:
            self.dead_letters.labels(rejection.reason).inc()
        self.duplicates.inc(out.duplicates)
        self.hourly_records.inc(len(out.hourly))

    def set_lag(self, lags: dict[int, int]) -> None:
        """The lag of the partitions assigned now; partitions that moved away are no longer reported."""
        self.lag.clear()
        for partition, n in lags.items():
            self.lag.labels(str(partition)).set(n)

    def checkpointed(self, seconds: float) -> None:
        self.checkpoint_seconds.observe(seconds)
        self.last_checkpoint.set(time.time())

    def value(self, name: str, **labels) -> float:
        """Current value of a sample (for tests)."""
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v


class ReconcilerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.alerts = Counter("cems_reconciler_alerts_total", "Alert versions published, by rule, severity and "
                              "reason (raised, updated, cleared).", ["rule", "severity", "reason"], registry=r)
        self.run_seconds = Histogram("cems_reconciler_run_seconds", "One reconciliation of every entity-month.",
                                     buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600), registry=r)
        self.last_run = Gauge("cems_reconciler_last_run_timestamp_seconds", "Unix time the last run completed.",
                              registry=r)

    def ran(self, published: Iterable, seconds: float) -> None:
        """One run: the alert versions it published (:class:`schemas.alerts.Alert`) and how long it took."""
        for a in published:
            self.alerts.labels(a.rule, a.severity, a.reason).inc()
        self.run_seconds.observe(seconds)
        self.last_run.set(time.time())

    def value(self, name: str, **labels) -> float:
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v


def serve(registry: CollectorRegistry, port: int | None, address: str = "127.0.0.1",
          announce: Callable[[str], None] | None = None) -> None:
    """Expose ``registry`` on http://address:port/metrics (a daemon thread); ``port`` None: nothing."""
    if port is None:
        return
    start_http_server(port, addr=address, registry=registry)
    if announce is not None:
        announce(f"metrics on http://{address}:{port}/metrics")
