"""Outbox + uplink through the real local Kafka broker: a broker outage keeps everything on disk, the
drain after it delivers every batch in order, signed, and only acknowledged batches leave the disk."""

from __future__ import annotations

import uuid

import pytest

from edge_agent.outbox import Outbox, verify
from edge_agent.uplink import KafkaUplink
from schemas import decode_batch
from tests.fixtures import batch_bytes, read_topic

pytestmark = pytest.mark.integration
KEY = b"gw-1 secret key"


def test_outage_then_drain_delivers_every_batch_in_order_signed(tmp_path, kafka_bootstrap):
    topic = f"cems.test.uplink.{uuid.uuid4().hex[:8]}"
    outbox = Outbox(tmp_path)
    for _ in range(40):
        outbox.put(batch_bytes)

    # Broker unreachable (nothing listens on port 1): nothing is sent, nothing leaves the disk.
    down = KafkaUplink(outbox, topic=topic, agent_id="gw-1", key=KEY,
                       producer_config={"bootstrap_servers": "127.0.0.1:1", "bootstrap_timeout_ms": 2000})
    assert down.drain() == 0
    assert outbox.pending() == list(range(40))

    # More readings arrive during the outage, then the broker is back.
    for _ in range(10):
        outbox.put(batch_bytes)
    up = KafkaUplink(outbox, topic=topic, agent_id="gw-1", key=KEY,
                     producer_config={"bootstrap_servers": kafka_bootstrap})
    assert up.drain() == 50
    up.close()
    assert outbox.pending() == [] and outbox.next_seq == 50

    records = read_topic(kafka_bootstrap, topic, 50)
    seqs = [decode_batch(r.value).seq for r in records]
    assert seqs == list(range(50))  # one key, one partition: in order
    for r in records:
        headers = dict(r.headers)
        assert headers["cems-agent"] == b"gw-1" and int(headers["cems-seq"]) == decode_batch(r.value).seq
        assert verify(KEY, r.value, headers["cems-sig"])
        assert r.key == b"gw-1"
