"""QA records through the real broker: published to the compacted QA topic, read back, and the stream worker's
hourly records gated by them exactly as the processor run offline with the same QA state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.batches import KeyRing
from schemas.qa import DriftCheck
from schemas.records import HourlyRecord
from streams.core.processor import PartitionProcessor, Registry, Settings
from streams.core.qa import QaState
from streams.runtime.qa_topic import publish_records, read_records
from streams.runtime.topics import create_topics
from streams.runtime.worker import StreamWorker
from tests.fixtures import KEYS, T0, caught_up, final, produce, read_all, run, site, two_stacks, wait_for
from tests.integration.test_stream_worker import worker_config

pytestmark = [pytest.mark.integration]


def span(minutes: int, measured: float) -> DriftCheck:
    """A span check of stack0's CO2 analyser ``minutes`` after T0 (2026-01-01T00:00Z) on a 15 % gas, full scale 25 %:
    the HJ 75 limit is 2.5 % of 25 = 0.625 % CO2."""
    return DriftCheck(site_id="plant", source_id="stack0", channel_id="co2", quantity="a05001", unit="%",
                      time=datetime.fromtimestamp(T0 / 1e9 + minutes * 60, UTC), check="span", reference_value=15.0,
                      measured_value=measured, full_scale=25.0)


@pytest.mark.timeout(240)
async def test_the_worker_gates_hours_by_the_qa_topic(tmp_path, kafka_bootstrap):
    # 00:05 passes (e = 0.1); 01:10 fails (e = 1.0 % CO2 = 4 % of full scale): stack0's hours from 01:00 are out of
    # control, stack1 untouched. Of the 3 recorded hours 0 and 1 are published (the last one's end plus the allowed
    # lateness is beyond the data): hour 1 of stack0 is out of control.
    records = [span(5, 15.1), span(70, 16.0)]
    cfg = worker_config(tmp_path, kafka_bootstrap)
    create_topics(cfg, partitions=2, readings_retention_days=None)
    publish_records(cfg, records)
    assert sorted(r.time for r in read_records(cfg)) == sorted(r.time for r in records)
    publish_records(cfg, records[1:])  # the same record again: compaction keeps one per key
    assert len(read_records(cfg)) == 2

    messages, _ = two_stacks()
    registry = Registry([site()])
    offline = PartitionProcessor(registry, KeyRing(keys=KEYS), Settings(), QaState(records, registry))
    expected = {k: r.content() for k, r in final(run(offline, messages)).items()}
    gated = final(run(PartitionProcessor(registry, KeyRing(keys=KEYS), Settings(), QaState(records, registry)),
                      messages))
    assert [(s, h) for (s, h), r in sorted(gated.items()) if r.status == "out_of_control"] == [
        ("stack0", T0 + 3600 * 10**9)]

    produce(cfg, messages)
    worker = StreamWorker(cfg)
    await worker.app.start()
    try:
        def hourly() -> dict:
            return {k: r.content() for k, r in
                    final(HourlyRecord.from_json(m.value) for m in read_all(cfg, cfg.topics.hourly)).items()}

        assert await wait_for(lambda: hourly() == expected and caught_up(cfg), 180)
    finally:
        await worker.app.stop()
