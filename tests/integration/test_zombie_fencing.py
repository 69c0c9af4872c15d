"""A zombie worker is fenced (issue 19): two stream workers of one consumer group share a one-partition readings
topic; the one that owns it is SIGSTOPped with events handled but not yet saved, for longer than its session timeout.
The other takes the partition over (its transactional writer fences the frozen one's), catches up and checkpoints;
more batches arrive. Then the first is SIGCONTed: it tries to save its stale state and outputs, Kafka refuses them
(``cems_worker_fenced_saves_total``, scraped from its metrics port, and its log say so), and the hourly and monthly
topics and the newest committed state stay the successor's. The rest of the stream then arrives; every total equals
one processor fed the whole stream without Kafka.

On the single local broker (127.0.0.1:19092), about a minute.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import uuid

import pytest
import yaml

from schemas.kafka import KafkaConnection
from schemas.records import HourlyRecord
from streams.config import Topics, WorkerConfig
from streams.runtime import kafka_io
from streams.runtime.state_store import KafkaLog, read_manifest
from streams.runtime.topics import create_topics
from streams.runtime.worker import checkpoint_lag
from tests.fixtures import (
    KEYS,
    caught_up,
    contents,
    final,
    free_port,
    processor,
    produce,
    read_all,
    scrape,
    site,
    start_worker,
    topic_records,
    two_stacks,
    wait_for,
    worker_files,
)

pytestmark = [pytest.mark.integration]
MESSAGES, _ = two_stacks()  # 2 agents x 2,160 five-second batches (3 h), in the order one partition holds them
A, B, C = 1440, 1640, 2640  # the stream's cuts: [0, A) before the freeze, [A, B) handled but unsaved when it
#                             freezes, [B, C) while it is frozen, [C, end) after it woke
SESSION_S, SNAPSHOT_S = 6.0, 5.0


@functools.cache
def expected(n: int) -> tuple[dict, dict]:
    """What one processor makes of the first ``n`` messages, no Kafka: hourly records (latest revision) and
    monthly totals (latest per key), by content."""
    p = processor()
    hourly: list = []
    monthly: dict = {}
    for i in range(0, n, 200):
        out = p.process(MESSAGES[i : min(i + 200, n)])
        assert not out.dead_letters
        hourly += out.hourly
        monthly |= {r.key: r for r in out.monthly}
    return contents(final(hourly)), contents(monthly)


def published(cfg: WorkerConfig) -> tuple[dict, dict]:
    hourly, monthly = topic_records(cfg)
    return contents(hourly), contents(monthly)


def compacted_hourly(cfg: WorkerConfig) -> dict:
    """The hourly topic as the log cleaner will leave it: the last record per key, whatever its revision (a stale
    record written last would win here, not in :func:`final`)."""
    last = [HourlyRecord.from_json(r.value) for r in kafka_io.last_per_key(read_all(cfg, cfg.topics.hourly)).values()]
    return contents({(r.source_id, r.hour_start_ns): r for r in last})


def config(tmp_path, bootstrap: str) -> dict:
    tag = uuid.uuid4().hex[:8]
    return dict(kafka=KafkaConnection(bootstrap_servers=bootstrap), app_id=f"cems-fence-{tag}",
                topics=Topics.prefixed(f"f.{tag}"), **worker_files(tmp_path, KEYS, site()),
                snapshot_interval_s=SNAPSHOT_S, session_timeout_s=SESSION_S)


def handled(port: int) -> float:
    return sum(v for (name, _), v in scrape(port).items() if name == "cems_worker_messages_total")


def refused(port: int) -> float:
    return sum(v for (name, _), v in scrape(port).items() if name == "cems_worker_fenced_saves_total")


def responds(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def newest_state_offset(cfg: WorkerConfig) -> int:
    log = KafkaLog(cfg.kafka.producer_config(), cfg.topics.state, 0)
    try:
        state = read_manifest(log, f"{cfg.topics.readings}/0")
    finally:
        log.close()
    assert state is not None
    return state.next_offset


@pytest.mark.timeout(300)
async def test_a_worker_frozen_past_its_session_timeout_cannot_overwrite_its_successor(tmp_path, kafka_bootstrap):
    settings = config(tmp_path, kafka_bootstrap)
    cfg = WorkerConfig(**settings, datadir=tmp_path / "faust")
    create_topics(cfg, partitions=1, readings_retention_days=None)  # 2026 data: no time limit
    procs, ports = [], []
    for i in range(2):
        ports.append(free_port())
        path = tmp_path / f"worker{i}.yaml"
        worker_cfg = WorkerConfig(**settings, datadir=tmp_path / f"faust{i}", metrics_port=ports[-1])
        path.write_text(yaml.safe_dump(worker_cfg.model_dump(mode="json"), sort_keys=False))
        procs.append(start_worker(path))
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    frozen = None
    try:
        assert await wait_for(lambda: all(responds(p) for p in ports), 60)
        # both in the group (each has had an assignment, the partition to one of them), then the first part
        assert await wait_for(lambda: all("Setting newly assigned partitions" in f.read_text() for f in logs), 60)
        produce(cfg, MESSAGES[:A])
        assert await wait_for(lambda: caught_up(cfg), 90)

        before = [handled(p) for p in ports]
        produce(cfg, MESSAGES[A:B])
        assert await wait_for(lambda: B - A in [handled(p) - b for p, b in zip(ports, before, strict=True)], 30,
                              every_s=0.1)
        owner = next(i for i, (p, b) in enumerate(zip(ports, before, strict=True)) if handled(p) - b == B - A)
        procs[owner].send_signal(signal.SIGSTOP)
        frozen = procs[owner]
        # what it handled since its last save is not saved: that is the stale save it will try when it wakes
        assert checkpoint_lag(cfg) == {0: B - A}

        # the other takes over after the session timeout, loads the last committed state, handles, checkpoints
        assert await wait_for(lambda: caught_up(cfg), 90)
        produce(cfg, MESSAGES[B:C])
        assert await wait_for(lambda: caught_up(cfg) and published(cfg) == expected(C), 90)
        successor = ports[1 - owner]
        assert handled(successor) >= C - A  # it replayed [A, B) from the committed state and went on

        mark = len(logs[owner].read_text())
        frozen.send_signal(signal.SIGCONT)
        frozen = None
        # Woken, the zombie either tries its stale save first, and is refused (fenced), or first learns from the group
        # that its partition was revoked, and drops the unsaved save with it (then rejoins): which comes first is up
        # to the scheduler. Either way nothing of the stale save may be visible (below).
        def woke() -> bool:
            return refused(ports[owner]) >= 1 or "Setting newly assigned partitions" in logs[owner].read_text()[mark:]
        assert await wait_for(woke, 60), logs[owner].read_text()[-3000:]
        if refused(ports[owner]) >= 1:
            assert "save refused, another worker has taken it over" in logs[owner].read_text()
        # nothing of the stale save is visible: not its state (the newest committed manifest covers [0, C)), not its
        # outputs (the last record per hour key, what compaction keeps, is the successor's)
        assert newest_state_offset(cfg) >= C
        assert compacted_hourly(cfg) == expected(C)[0]
        assert published(cfg)[1] == expected(C)[1]

        produce(cfg, MESSAGES[C:])
        n = len(MESSAGES)
        assert await wait_for(lambda: caught_up(cfg) and published(cfg) == expected(n), 90)
        assert compacted_hourly(cfg) == expected(n)[0]
        assert newest_state_offset(cfg) == n
        assert not read_all(cfg, cfg.topics.dead_letter)
    finally:
        if frozen is not None:
            frozen.send_signal(signal.SIGCONT)
        for w in procs:
            w.terminate()
        for w in procs:
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
