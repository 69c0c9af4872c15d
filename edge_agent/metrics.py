"""Prometheus metrics of the edge agent: what an operator watches to know the gateway is doing its job.

One registry per agent (tests and several agents in one process do not collide); ``cems edge run
--metrics-port`` serves it on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from schemas._optional import needs_extra

with needs_extra("edge", "the edge agent's metrics"):
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["AgentMetrics"]


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.poll_seconds = Histogram("cems_edge_poll_seconds", "Duration of one poll cycle of a device.", ["device"],
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)
        self.requests = Counter("cems_edge_requests_total", "Modbus requests sent.", ["device"], registry=r)
        self.request_errors = Counter("cems_edge_request_errors_total",
                                      "Failed requests: comm (no answer) or exception (device said no).",
                                      ["device", "kind"], registry=r)
        self.readings = Counter("cems_edge_readings_total", "Readings taken, by HJ 212 flag.", ["device", "flag"],
                                registry=r)
        self.outbox_batches = Gauge("cems_edge_outbox_batches", "Batches waiting in the outbox.", registry=r)
        self.outbox_bytes = Gauge("cems_edge_outbox_bytes", "Bytes waiting in the outbox.", registry=r)
        self.outbox_full = Gauge("cems_edge_outbox_full", "1 while the outbox refuses batches (alarm).", registry=r)
        self.batches_stored = Counter("cems_edge_batches_stored_total", "Batches written to the outbox.", registry=r)
        self.batches_sent = Counter("cems_edge_batches_sent_total", "Batches acknowledged by Kafka.", registry=r)
        self.last_send = Gauge("cems_edge_last_successful_send_timestamp_seconds",
                               "Unix time of the last batch Kafka acknowledged.", registry=r)

    def value(self, name: str, **labels) -> float:
        """Current value of a sample (for tests and the check command)."""
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v
