"""QA records of the monitors (:mod:`schemas.qa`) on the compacted QA topic (``topics.qa``, ``cems.qa.v1``).

``cems qa import`` validates files all or nothing (:mod:`ingest.qa`) and publishes each record under its key:
``site/source/channel/zero|span/time`` for a drift check, ``site/test id`` for a test. A record published again under
the same key replaces the earlier one (compaction keeps the last); nothing else deletes one. The stream worker reads
the topic when it loads a partition and again every ``qa_refresh_s`` (``streams/runtime/worker.py``), and gates the
hours it publishes from then on (``streams/core/qa.py``); hours published before a record arrived are not revised.
"""

from __future__ import annotations

from schemas.qa import DriftCheck, QaRecord, validate_record
from streams.runtime import kafka_io

__all__ = ["publish_records", "read_records", "record_key"]


def record_key(r: QaRecord) -> str:
    """The record's key on the topic (module docstring)."""
    if isinstance(r, DriftCheck):
        return f"{r.site_id}/{r.source_id}/{r.channel_id}/{r.check}/{r.time.isoformat()}"
    return f"{r.site_id}/{r.test_id}"


def publish_records(cfg, records: list[QaRecord]) -> list[str]:
    """Validated records onto the QA topic; returns their keys."""
    keys = [record_key(r) for r in records]
    kafka_io.send_all(cfg.kafka, cfg.topics.qa, [(k.encode(), r.model_dump_json().encode(), [])
                                                 for k, r in zip(keys, records, strict=True)])
    return keys


def read_records(cfg) -> list[QaRecord]:
    """The newest record per key of the QA topic."""
    import json

    return kafka_io.read_latest(cfg.kafka, cfg.topics.qa, lambda raw: validate_record(json.loads(raw)))
