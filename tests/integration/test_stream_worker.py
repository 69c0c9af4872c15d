"""The faust stream worker against the real broker: hourly records equal the processor run offline on the
same messages, bad batches land in the dead-letter topic with their reason, InfluxDB gets the records and
their minutes. Exactly-once in effect through kills, duplicates, late data and a broker restart, over a
month: ``test_stream_month.py`` (which shares this module's helpers)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from edge_agent.outbox import sign
from schemas.kafka import KafkaConnection
from schemas.records import HourlyRecord, IndicatorDay
from streams.config import Topics, WorkerConfig
from streams.runtime.topics import create_topics
from streams.runtime.worker import StreamWorker
from tests.fixtures import KEYS, caught_up, final, processor, produce, read_all, run, site, two_stacks, wait_for

pytestmark = [pytest.mark.integration]
MESSAGES, _ = two_stacks()


def worker_config(tmp_path: Path, bootstrap: str, **extra) -> WorkerConfig:
    (tmp_path / "keys").mkdir(exist_ok=True)
    for agent, key in KEYS.items():
        (tmp_path / "keys" / f"{agent}.key").write_bytes(key)
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site().model_dump(mode="json"), sort_keys=False))
    tag = uuid.uuid4().hex[:8]
    return WorkerConfig(
        kafka=KafkaConnection(bootstrap_servers=bootstrap), app_id=f"cems-test-{tag}",
        topics=Topics.prefixed(f"t.{tag}"),
        sites=[tmp_path / "site.yaml"], keys_dir=tmp_path / "keys", datadir=tmp_path / "faust",
        snapshot_interval_s=1.0, **extra)


def hourly(cfg: WorkerConfig) -> dict:
    return final(HourlyRecord.from_json(r.value) for r in read_all(cfg, cfg.topics.hourly))


async def run_worker_until_records(cfg: WorkerConfig, messages) -> None:
    """Run an in-process worker until its hourly topic holds what the processor makes of ``messages`` offline and
    it has checkpointed every message (so whatever else it sends, dead letters too, is in Kafka)."""
    expected = {k: r.content() for k, r in final(run(processor(), messages)).items()}
    worker = StreamWorker(cfg)
    await worker.app.start()
    try:
        assert await wait_for(lambda: {k: r.content() for k, r in hourly(cfg).items()} == expected
                              and caught_up(cfg), 120)
    finally:
        await worker.app.stop()


@pytest.mark.timeout(180)
async def test_worker_publishes_the_processors_records_and_dead_letters(tmp_path, kafka_bootstrap):
    cfg = worker_config(tmp_path, kafka_bootstrap)
    create_topics(cfg, partitions=2, readings_retention_days=None)  # 2026 data: no time limit
    forged = MESSAGES[0].headers | {"cems-sig": sign(b"x" * 32, MESSAGES[0].value)}
    produce(cfg, MESSAGES)
    from streams.core.processor import Message

    produce(cfg, [Message(0, MESSAGES[5].value, forged | {"cems-seq": MESSAGES[5].headers["cems-seq"]},
                          MESSAGES[-1].timestamp_ms)])
    await run_worker_until_records(cfg, MESSAGES)
    dlq = read_all(cfg, cfg.topics.dead_letter)
    assert [dict(r.headers)["cems-dlq-reason"] for r in dlq] == [b"bad_signature"]
    assert dlq[0].value == MESSAGES[5].value  # the original bytes, for investigation or replay
    # the indicators' day records, through the same transactions: the last per key equals the processor's offline
    offline = {}
    for d in processor().process(MESSAGES).indicators:
        offline[d.key] = d
    online = {r.key.decode(): IndicatorDay.from_bytes(r.value) for r in read_all(cfg, cfg.topics.indicators)}
    assert online.keys() == offline.keys() and len(online) == 2  # two stacks, one UTC day
    for key, d in offline.items():
        assert online[key].closed == d.closed and online[key].hours.tobytes() == d.hours.tobytes()


@pytest.mark.timeout(180)
async def test_agent_batches_through_the_worker_give_the_records_of_a_batch_per_source(tmp_path, kafka_bootstrap):
    """gw-a sends both stacks as one agent batch (wire version 3) per 5-s interval: the worker publishes the hourly
    records the processor makes of the same readings sent as one batch per source."""
    from schemas.agent_batch import AgentBatch
    from schemas.batch import ReadingBatch, decode_batch
    from streams.core.processor import Message

    by_seq: dict = {}
    for m in MESSAGES:
        b = decode_batch(m.value)
        by_seq.setdefault(b.seq, []).append((b, m.timestamp_ms))
    agent_batches = []
    for seq, got in sorted(by_seq.items()):
        sections = [ReadingBatch.from_columns(agent_id="gw-a", source_id=b.source_id, seq=seq, channels=b.channels,
                                              ts_ns=b.ts_ns, channel=b.channel, value=b.value, flag=b.flag)
                    for b, _ in sorted(got, key=lambda x: x[0].source_id)]
        data = AgentBatch.from_sections(agent_id="gw-a", seq=seq, sections=sections).encode()
        agent_batches.append(Message(seq, data, {"cems-agent": b"gw-a", "cems-seq": str(seq).encode(),
                                                 "cems-sig": sign(KEYS["gw-a"], data)}, max(t for _, t in got)))
    cfg = worker_config(tmp_path, kafka_bootstrap)
    create_topics(cfg, partitions=2, readings_retention_days=None)
    produce(cfg, agent_batches)
    await run_worker_until_records(cfg, agent_batches)
    reference = final(run(processor(), MESSAGES))
    assert {k: r.content() for k, r in hourly(cfg).items()} == {k: r.content() for k, r in reference.items()}
    assert read_all(cfg, cfg.topics.dead_letter) == []


@pytest.mark.timeout(180)
async def test_worker_writes_hourly_records_and_minute_means_to_influxdb(tmp_path, kafka_bootstrap, influx):
    """The same run with the InfluxDB sink: one point per (source, hour) with the record's figures, and the
    minute means behind it (60 minutes x channels per hour)."""
    from influxdb_client import InfluxDBClient

    from streams.sinks.influx import InfluxSink

    bucket = f"t-{uuid.uuid4().hex[:8]}"
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.buckets_api().create_bucket(bucket_name=bucket, org=influx.org)
        cfg = worker_config(tmp_path, kafka_bootstrap)
        create_topics(cfg, partitions=2, readings_retention_days=None)  # 2026 data: no time limit
        produce(cfg, MESSAGES[:2000])  # hour 0 of both stacks becomes due
        expected = final(run(processor(), MESSAGES[:2000]))
        sink = InfluxSink(influx.url, influx.token, influx.org, bucket)
        worker = StreamWorker(cfg, sink=sink)
        await worker.app.start()
        try:
            assert await wait_for(lambda: len(hourly(cfg)) == len(expected), 120)
            await worker.checkpoint()  # flushes the sink
        finally:
            await worker.app.stop()
            sink.close()
        q = client.query_api()
        co2 = q.query(f'from(bucket:"{bucket}") |> range(start: 2025-12-31T00:00:00Z, stop: 2026-01-02T00:00:00Z) '
                      f'|> filter(fn: (r) => r._measurement == "cems_hourly" and r._field == "co2_kg")')
        got = {(rec.values["source"], int(rec.get_time().timestamp()) * 10**9): rec.get_value()
               for table in co2 for rec in table.records}
        assert got == {k: r.co2_kg for k, r in expected.items()}
        minutes = q.query(f'from(bucket:"{bucket}") |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T01:00:00Z)'
                          f' |> filter(fn: (r) => r._measurement == "cems_minute" and r._field == "n") |> count()')
        counts = {rec.values["source"] + "/" + rec.values["channel"]: rec.get_value()
                  for table in minutes for rec in table.records}
        assert len(counts) == 2 * 10 and set(counts.values()) == {60}  # each channel: the 60 minutes of hour 0
        client.buckets_api().delete_bucket(client.buckets_api().find_bucket_by_name(bucket))


@pytest.mark.timeout(180)
async def test_worker_on_the_sasl_ssl_listener_with_its_password_from_the_environment(tmp_path, kafka_sasl,
                                                                                      monkeypatch):
    """SCRAM over TLS (the loopback test broker's listener and CA), the secret only in the environment."""
    plain = worker_config(tmp_path, kafka_sasl.bootstrap)
    data = plain.model_dump(mode="json")
    data["kafka"] = {"bootstrap_servers": kafka_sasl.bootstrap, "security_protocol": "SASL_SSL",
                     "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": kafka_sasl.username,
                     "ssl_cafile": str(kafka_sasl.cafile)}
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert kafka_sasl.password not in path.read_text()
    monkeypatch.setenv("CEMS_STREAM__KAFKA__SASL_PASSWORD", kafka_sasl.password)
    from streams.config import load_worker_config

    cfg = load_worker_config(path)
    create_topics(cfg, partitions=2, readings_retention_days=None)
    produce(cfg, MESSAGES[:2000])  # hour 0 of both stacks becomes due
    await run_worker_until_records(cfg, MESSAGES[:2000])
