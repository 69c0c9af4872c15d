"""The central topics, created with the settings the worker relies on (``cems stream topics``).

Kafka would auto-create topics with broker defaults (one partition, delete policy), which silently breaks
two things: the state and hourly topics must be *compacted* (only the newest snapshot per partition and
the newest revision per source-hour and source-month are kept), and the state topic needs as many partitions as the
readings topic (snapshot of readings partition *p* lives in state partition *p*).

Retention of the readings topic counts from each batch's Kafka timestamp, which is when the edge agent made
the batch, not when it arrived: a batch an agent drains after a longer outage than ``readings_retention_days``,
or historical data replayed for recomputation, is deleted at the broker's next retention check (every 5 min),
possibly before a worker read it. Keep the retention above the longest edge outage the outbox is sized for,
and replay history into a topic created with ``readings_retention_days=None`` (no time limit).

Replication: every topic gets ``replication`` replicas and ``min.insync.replicas`` (a majority of them from three
replicas up, else 1), so that a write acknowledged with ``acks=all`` is on at least two brokers in production
(replication 3, min ISR 2: one broker may fail or restart without losing or refusing a batch; docs/operations.md).
"""

from __future__ import annotations

import logging

from streams.config import MAX_STATE_BYTES, WorkerConfig
from streams.runtime import kafka_io

__all__ = ["create_topics", "default_min_insync", "topic_specs"]

log = logging.getLogger(__name__)
_DAY_MS = 86_400_000


def default_min_insync(replication: int) -> int:
    """A majority of the replicas from three up (3 -> 2, 5 -> 3); 1 below that, where a majority would be every
    replica and one broker down would stop all writes."""
    return replication // 2 + 1 if replication >= 3 else 1


def topic_specs(cfg: WorkerConfig, partitions: int, readings_retention_days: float | None = 14,
                min_insync_replicas: int | None = None) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic -> (partitions, configs). ``readings_retention_days=None``: readings kept without time limit;
    ``min_insync_replicas=None``: the broker's default ``min.insync.replicas``."""
    keep = "-1" if readings_retention_days is None else str(int(readings_retention_days * _DAY_MS))
    t = cfg.topics
    every = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
    compacted = every | {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3_600_000)}
    return {
        t.readings: (partitions, every | {"retention.ms": keep}),  # replay window for recomputation
        t.dead_letter: (1, every | {"retention.ms": str(90 * _DAY_MS)}),  # long enough to investigate and replay
        t.hourly: (partitions, compacted),
        t.monthly: (partitions, compacted),
        t.indicators: (partitions, compacted),  # one record per source and UTC day, the last revision
        t.gaps: (1, compacted),  # one report per agent, small
        t.state: (partitions, compacted | {"max.message.bytes": str(MAX_STATE_BYTES)}),
        t.accounting: (1, compacted),  # one report per entity, source and month
        t.alerts: (1, compacted),  # one version per alert id, the last
        t.alert_acks: (1, compacted),
        t.qa: (1, compacted),  # one version per QA record key, the last
    }


def create_topics(cfg: WorkerConfig, partitions: int = 12, replication: int = 1,
                  readings_retention_days: float | None = 14, min_insync_replicas: int | None = None) -> list[str]:
    """Create the missing topics; return the names created. Existing topics are left as they are.

    ``min_insync_replicas`` None: :func:`default_min_insync` of ``replication`` (1 for a single broker)."""
    from kafka.admin import NewTopic

    if min_insync_replicas is None:
        min_insync_replicas = default_min_insync(replication)
    if not 1 <= min_insync_replicas <= replication:
        raise ValueError(f"min_insync_replicas {min_insync_replicas} must be between 1 and replication {replication}")

    specs = topic_specs(cfg, partitions, readings_retention_days, min_insync_replicas)
    admin = kafka_io.admin(cfg.kafka)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, n, replication, topic_configs=configs) for name, (n, configs) in specs.items()
               if name not in existing]
        if new:
            admin.create_topics(new)
        for topic in new:
            log.info("created topic %s (%d partitions, replication %d, min.insync.replicas %d)", topic.name,
                     topic.num_partitions, replication, min_insync_replicas)
        return [t.name for t in new]
    finally:
        admin.close()
