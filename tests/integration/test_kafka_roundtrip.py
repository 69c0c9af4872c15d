"""Reading batches through the real local Kafka broker: kafka-python produces, a faust agent consumes.

This is the wire contract end to end: what an edge agent sends (kafka-python, acks=all) is what a
faust worker (aiokafka) decodes, batch for batch and bit for bit, with bad messages rejected by
reason instead of crashing the agent.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid

import numpy as np
import pytest

from schemas import BatchDecodeError, Flag, ReadingBatch, decode_batch

pytestmark = pytest.mark.integration

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
CHANNELS = [("co2", "a05001", "%"), ("o2", "a19001", "%"), ("moisture", "a01014", "%"), ("temp", "a01012", "degC")]


def make_batch(source: str, seq: int, n_seconds: int = 250) -> ReadingBatch:
    """One reading per channel per second; every 7th reading is a calibration reading."""
    rng = np.random.default_rng(seq)
    n = n_seconds * len(CHANNELS)
    flag = np.where(np.arange(n) % 7 == 0, Flag.C, Flag.N).astype(np.uint8)
    return ReadingBatch.from_columns(
        agent_id="gw-test",
        source_id=source,
        seq=seq,
        channels=CHANNELS,
        ts_ns=T0 + (seq * n_seconds + np.repeat(np.arange(n_seconds), len(CHANNELS))) * 10**9,
        channel=np.tile(np.arange(len(CHANNELS)), n_seconds),
        value=rng.normal(10.0, 0.5, n),
        flag=flag,
    )


@pytest.fixture
def topic(kafka_bootstrap):
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"cems.test.readings.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="cems-tests")
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    yield name
    admin.delete_topics([name])
    admin.close()


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=8 * 2**20)
    futures = [producer.send(topic, key=k, value=v) for k, v in messages]
    producer.flush()
    for f in futures:
        f.get(timeout=30)  # raises if the broker did not acknowledge
    producer.close()


async def consume_with_faust(bootstrap: str, topic: str, expected: int, timeout_s: float = 90.0):
    """Run a faust app in this event loop until ``expected`` messages arrived; return (batches, rejects)."""
    import faust

    app = faust.App(
        f"cems-test-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="cems-faust-"),  # not ./<app id>-data in the repository
        topic_partitions=3,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    batches: list[ReadingBatch] = []
    rejects: list[tuple[bytes, str]] = []
    done = asyncio.Event()

    @app.agent(source)
    async def readings(stream):
        async for events in stream.take_events(200, within=0.5):
            for event in events:
                try:
                    batches.append(decode_batch(event.value))
                except BatchDecodeError as exc:  # issue 5 sends these to the dead-letter topic
                    rejects.append((event.key, exc.reason))
            if len(batches) + len(rejects) >= expected:
                done.set()

    await app.start()
    try:
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        await app.stop()
    return batches, rejects


async def test_batches_round_trip_through_kafka_and_a_faust_agent(kafka_bootstrap, topic):
    sources = ["kiln1-stack", "kiln2-stack", "coal-mill"]
    sent = {(s, seq): make_batch(s, seq) for s in sources for seq in range(20)}
    corrupt = bytearray(sent[("kiln1-stack", 0)].encode())
    corrupt[100] ^= 0x01
    messages = [(s.encode(), b.encode()) for (s, _), b in sent.items()]
    messages.insert(30, (b"kiln1-stack", bytes(corrupt)))
    messages.insert(45, (b"kiln2-stack", b'{"not": "a batch"}'))

    await asyncio.to_thread(produce, kafka_bootstrap, topic, messages)
    batches, rejects = await consume_with_faust(kafka_bootstrap, topic, expected=len(messages))

    assert sorted(rejects) == [(b"kiln1-stack", "checksum"), (b"kiln2-stack", "bad_magic")]
    got = {(b.source_id, b.seq): b for b in batches}
    assert len(batches) == len(sent) == len(got)  # each batch exactly once, nothing else
    for key, b in sent.items():
        assert got[key].equals(b), key
    n_readings = sum(len(b) for b in batches)
    assert n_readings == 3 * 20 * 250 * 4
    n_calibration = sum(int((b.flag == Flag.C).sum()) for b in batches)
    assert n_calibration == 3 * 20 * 143  # ceil(1000 / 7) readings per batch carry flag C


async def test_message_key_routes_a_source_to_one_partition(kafka_bootstrap, topic):
    """Per-source order matters for hour closing (issue 5): one key, one partition, send order kept."""
    from kafka import KafkaConsumer, TopicPartition

    messages = [(b"kiln1-stack", make_batch("kiln1-stack", seq, n_seconds=10).encode()) for seq in range(30)]
    await asyncio.to_thread(produce, kafka_bootstrap, topic, messages)

    def read_all():
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        parts = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out = {}
        for _ in range(50):
            for tp, recs in consumer.poll(timeout_ms=500).items():
                out.setdefault(tp.partition, []).extend(recs)
            if sum(map(len, out.values())) >= 30:
                break
        consumer.close()
        return out

    by_partition = await asyncio.to_thread(read_all)
    assert len(by_partition) == 1
    (records,) = by_partition.values()
    assert [decode_batch(r.value).seq for r in records] == list(range(30))
