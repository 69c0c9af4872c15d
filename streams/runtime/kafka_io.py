"""The Kafka clients of the central tools, built in one place: connection settings (TLS, SASL) come from
:class:`schemas.kafka.KafkaConnection`, and every producer waits for all in-sync replicas (``acks="all"``), since
nothing is reported done before Kafka has it. The faust worker's own consumer and producer are faust's (built from
the same settings in ``streams/runtime/worker.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from schemas.kafka import KafkaConnection

__all__ = ["admin", "consumer", "last_per_key", "producer", "read_latest", "read_topic", "send_all"]

T = TypeVar("T")


def consumer(conn: KafkaConnection, **options: Any):
    """A kafka-python consumer outside any group, committing nothing (readers of compacted topics and state).

    Committed records only: the stream workers write their outputs in transactions, and a fenced worker's are
    aborted (streams/runtime/state_store.py, "Fencing")."""
    from kafka import KafkaConsumer

    return KafkaConsumer(**conn.producer_config(), group_id=None, enable_auto_commit=False,
                         **({"isolation_level": "read_committed"} | options))


def producer(conn: KafkaConnection, **options: Any):
    """A kafka-python producer that waits for every in-sync replica (``acks="all"``)."""
    from kafka import KafkaProducer

    return KafkaProducer(**conn.producer_config(), **({"acks": "all"} | options))


def admin(conn: KafkaConnection):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**conn.producer_config())


def read_topic(conn: KafkaConnection, topic: str, idle_polls: int = 30) -> list:
    """Every record of ``topic`` up to its end when called (kafka-python records), all partitions; gives up after
    ``idle_polls`` empty one-second polls."""
    from kafka import TopicPartition

    c = consumer(conn, auto_offset_reset="earliest")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not parts:
            return []
        c.assign(parts)
        c.seek_to_beginning(*parts)
        ends = c.end_offsets(parts)
        out: list = []
        idle = 0
        while any(c.position(tp) < ends[tp] for tp in parts) and idle < idle_polls:
            batch = c.poll(timeout_ms=1000)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                out += records
        return out
    finally:
        c.close()


def last_per_key(records: Iterable) -> dict[bytes, Any]:
    """What compaction keeps: the newest record per key, a tombstone (``value`` None) deleting it."""
    last: dict[bytes, Any] = {}
    for r in records:
        if r.value is None:
            last.pop(r.key, None)
        else:
            last[r.key] = r
    return last


def read_latest(conn: KafkaConnection, topic: str, parse: Callable[[bytes], T]) -> list[T]:
    """The newest value per key of a compacted topic, parsed; deleted keys left out."""
    return [parse(r.value) for r in last_per_key(read_topic(conn, topic)).values()]


def send_all(conn: KafkaConnection, topic: str, messages: Iterable[tuple[bytes | None, bytes, list]],
             timeout_s: float = 30.0, **options: Any) -> None:
    """Send ``(key, value, headers)`` messages and wait for every acknowledgement."""
    p = producer(conn, **({"linger_ms": 5} | options))
    try:
        futures = [p.send(topic, key=k, value=v, headers=h) for k, v, h in messages]
        for f in futures:
            f.get(timeout=timeout_s)
    finally:
        p.close()
