"""Recorded reading batches through the real services: the broker, a stream worker, InfluxDB, the reconciler and the
archive sync, in a fresh, prefixed set of topics. What ``cems demo --config`` runs, and a way to replay a gateway's
recording into a test deployment.

Each agent of the recording is enrolled with a key of this run (its ``<agent>.key`` in ``out/keys``), and its batches
are signed with it: the signature guards the network, and the recording on disk is trusted as it is. Batches are
produced in time order, as the gateways would send them (a partition's clock is the newest timestamp in it).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

from ingest.accounting import load_reports
from schemas import envelope
from schemas.agent_batch import decode_message
from schemas.records import HourlyRecord, MonthlyRecord
from schemas.site import Entity
from streams.archive.store import Archive
from streams.config import ReconcileSettings, Topics, WorkerConfig
from streams.core.figures import calculated
from streams.runtime import kafka_io
from streams.runtime.archive_sync import sync_archive
from streams.runtime.embedded import PlantResult
from streams.runtime.reconciler import Reconciler, publish_reports, read_alerts, read_latest
from streams.runtime.topics import create_topics
from streams.runtime.worker import StreamWorker, checkpoint_lag

__all__ = ["replay_on_services"]


def replay_on_services(cfg: WorkerConfig, entities: list[Entity], files: list[Path], meters: dict[str, str],
                       report_files: list[Path], out: Path, progress: Callable[[str], None] = print,
                       timeout_s: float = 600.0) -> list[PlantResult]:
    """The recording through the services of ``cfg``, then reconciled and archived (``out/archive.sqlite``); the
    results are read back from the topics."""
    cfg = _isolated(cfg, entities, meters, out)
    create_topics(cfg, partitions=3, readings_retention_days=None)  # recorded data: no retention by time
    n = _produce(cfg, files, out / "keys")
    progress(f"  topics {cfg.topics.readings} ... created; {n:,} batches produced")
    reports = [r for f in report_files for r in load_reports(f)]
    publish_reports(cfg, reports)
    asyncio.run(_work_until_saved(cfg, progress, timeout_s))
    progress(f"[2/4] reconciling against {len(report_files)} self-reported file(s) (cems reconcile)")
    Reconciler(cfg).run()
    progress(f"[3/4] archiving the months in {out / 'archive.sqlite'} (cems archive sync)")
    archive = Archive(out / "archive.sqlite")
    try:
        sync_archive(cfg, archive)
    finally:
        archive.close()
    return _results(cfg, entities, reports)


def _isolated(cfg: WorkerConfig, entities: list[Entity], meters: dict[str, str], out: Path) -> WorkerConfig:
    """``cfg`` with topics, consumer group, site files, keys and data directory of this run only."""
    run_id = uuid.uuid4().hex[:8]
    (out / "sites").mkdir(parents=True, exist_ok=True)
    (out / "keys").mkdir(exist_ok=True)
    for entity in entities:
        (out / "sites" / f"{entity.id}.yaml").write_text(yaml.safe_dump(entity.model_dump(mode="json")))
    return cfg.model_copy(update={
        "topics": Topics.prefixed(f"cems-replay.{run_id}"), "app_id": f"cems-replay-{run_id}",
        "sites": [out / "sites"], "keys_dir": out / "keys", "datadir": out / "faust", "snapshot_interval_s": 2.0,
        "reconcile": ReconcileSettings(meters=meters, policy=cfg.reconcile.policy)})


def _produce(cfg: WorkerConfig, files: list[Path], keys_dir: Path) -> int:
    """Every batch, signed with its agent's key of this run, in time order; returns how many."""
    keys: dict[str, bytes] = {}
    rows = []
    for path in files:
        data = path.read_bytes()
        b = decode_message(data)  # any wire version: the worker reads them all
        key = keys.setdefault(b.agent_id, secrets.token_bytes(32))
        stamp_ms = (int(b.ts_ns.max()) // 10**6 + 1000) if b.ts_ns.size else 0
        rows.append((stamp_ms, b.agent_id, data, envelope.headers(b.agent_id, b.seq, key, data)))
    for agent, key in keys.items():
        (keys_dir / f"{agent}.key").write_bytes(key)
    # big batches: a recording is sent as fast as the broker takes it, not a message a request (16 KB by default)
    producer = kafka_io.producer(cfg.kafka, linger_ms=20, batch_size=2**20, max_request_size=8 * 2**20)
    try:
        for stamp_ms, agent, data, headers in sorted(rows, key=lambda r: r[0]):
            producer.send(cfg.topics.readings, key=agent.encode(), value=data, headers=list(headers.items()),
                          timestamp_ms=stamp_ms or None)
        producer.flush(120)
    finally:
        producer.close()
    return len(rows)


async def _work_until_saved(cfg: WorkerConfig, progress: Callable[[str], None], timeout_s: float) -> None:
    """An in-process stream worker (with the InfluxDB sink when configured) until every batch is checkpointed."""
    from streams.sinks.influx import InfluxSink

    sink = None if cfg.influx is None else InfluxSink(cfg.influx.url, cfg.influx.token.get_secret_value(),
                                                      cfg.influx.org, cfg.influx.bucket, max_retries=0)
    worker = StreamWorker(cfg, sink=sink)
    await worker.app.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(3)
            lag = await asyncio.to_thread(checkpoint_lag, cfg)
            progress(f"  stream worker: {sum(lag.values()):,} batches not yet saved")
            if lag and not any(lag.values()):  # no partitions: the metadata request failed (loaded machine)
                return
        raise TimeoutError(f"the worker did not catch up within {timeout_s:.0f} s")
    finally:
        await worker.app.stop()
        if sink is not None:
            sink.close()


def _results(cfg: WorkerConfig, entities: list[Entity], reports: list) -> list[PlantResult]:
    hourly = read_latest(cfg, cfg.topics.hourly, HourlyRecord.from_json)
    monthly = read_latest(cfg, cfg.topics.monthly, MonthlyRecord.from_json)
    alerts = read_alerts(cfg)
    by_entity = {r.entity_id: r for r in reports if r.source_id is None}
    results = []
    for entity in entities:
        res = PlantResult(entity, [h for h in hourly if h.entity_id == entity.id],
                          [m for m in monthly if m.entity_id == entity.id], None, [], {}, 0,
                          alerts=[a for a in alerts if a.entity_id == entity.id and a.severity != "cleared"],
                          report=by_entity.get(entity.id))
        if res.report is not None:
            res.calculated = calculated(res.report)
        results.append(res)
    return results
