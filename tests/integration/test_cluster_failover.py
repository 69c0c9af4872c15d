"""A broker of a replicated cluster SIGKILLed mid-stream (issue 19): three KRaft nodes on loopback
(``deploy/local/kafka-cluster.sh``: replication 3, ``min.insync.replicas=2``), three edge agents streaming two
simulated days across a month end through their own outbox and uplink (``acks=all``), two stream workers. The node
that leads the most of the pipeline's partitions is SIGKILLed while batches flow, its leaderships move to the other
two (seen in the cluster's metadata), it is started again later and rejoins every ISR. The monthly and hourly records
then equal an undisturbed run of the same batches through the processor; every batch number of every agent is in
the readings topic, no gap report keeps a hole, nothing is dead-lettered, and the workers' metrics agree.

Two days in a minute or two: the agents' batch cutting is fed the simulated readings minute by minute, and their
producer stamps each record with the simulated time its batch was cut (a live agent sends a batch as it cuts it; with
the wall clock, the workers would see the readings as months late). Everything else is the agents' and workers' own
code: outbox, uplink drain loop, acks=all and idempotence, faust consumer group, transactional checkpoints (their
transaction coordinator may be on the node killed too).

The cluster is the module's own: started by its fixture on private ports and in a private run directory (about 15 s;
the jars are kafka.sh's cache) and stopped after. It runs beside the single broker the other tests use, and beside
any other run's cluster, never touching them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid

import numpy as np
import pytest
import yaml

from edge_agent.agent import EdgeAgent
from edge_agent.config import GatewayConfig
from edge_agent.simulator.generate import Fault, simulate_stack, simulator_stack_model, source_config
from edge_agent.simulator.modbus_server import gateway_points
from ingest.batches import KeyRing
from schemas import ReadingBatch, envelope
from schemas.agent_batch import decode_message
from schemas.kafka import KafkaConnection
from schemas.records import GapReport
from schemas.site import Entity
from streams.config import Topics, WorkerConfig
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.runtime import kafka_io
from streams.runtime.topics import create_topics
from tests.fixtures import (
    DEPLOY,
    caught_up,
    contents,
    final,
    free_port,
    private_ports,
    scrape,
    start_worker,
    topic_records,
    wait_for,
    worker_files,
)

pytestmark = [pytest.mark.integration]

CLUSTER = DEPLOY / "kafka-cluster.sh"
START = 1_769_788_800 * 10**9  # 2026-01-31T00:00 Asia/Shanghai (2026-01-30T16:00Z)
HOURS = 49  # January 31, February 1, and one hour of February 2, so that February 1's last hour closes
H, STEP_S, BATCH_S = 3600, 5, 60  # a reading every 5 s, one batch a minute (the agent cuts what it buffered)
MINUTES = HOURS * 60
# One agent per readings partition (3): kafka-python's murmur2 partitioner puts gw-0, gw-6 and gw-2 on 0, 1 and 2.
AGENTS = {"gw-0": b"0" * 32, "gw-6": b"6" * 32, "gw-2": b"2" * 32}
FAULTS = {0: (Fault("comm_loss", 10 * H, 3 * H, "velocity"),),  # January hours to substitute
          2: (Fault("calibration", 30 * H, 20 * 60, "co2", 15.0),)}  # a February hour short of valid minutes
PARTITIONS = 3
LATENCY_MS = 200  # from a batch's last reading to its Kafka timestamp


def cut_time_ms(batch: bytes) -> int:
    """The simulated moment a batch was cut and sent: its last reading, plus the latency."""
    return int(decode_message(batch).ts_ns.max()) // 10**6 + LATENCY_MS  # any wire version (the agent's: 3)


@pytest.fixture
def simulated_send_time(monkeypatch):
    """The agents' producer (kafka-python, looked up when the uplink connects) stamps records with cut_time_ms."""
    import kafka

    class Stamped(kafka.KafkaProducer):
        def send(self, topic, value=None, key=None, headers=None, partition=None, timestamp_ms=None):
            return super().send(topic, value=value, key=key, headers=headers, partition=partition,
                                timestamp_ms=cut_time_ms(value) if timestamp_ms is None else timestamp_ms)

    monkeypatch.setattr(kafka, "KafkaProducer", Stamped)


CLUSTER_ENV: dict[str, str] = {}  # the module's cluster: its ports and run directory (set by ``bootstrap``)


def cluster(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER), *args], capture_output=True, text=True, timeout=180, env=CLUSTER_ENV or None)


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory, kafka_bootstrap):
    """The bootstrap servers of the module's own cluster, started here and stopped after (``kafka_bootstrap``: it
    uses the jars the shared broker's kafka.sh fetched)."""
    clients, controllers = private_ports(3), private_ports(3)
    CLUSTER_ENV.update(os.environ, CEMS_RUN=str(tmp_path_factory.mktemp("cluster-run")),
                       CEMS_CLUSTER_PORTS=" ".join(map(str, clients)),
                       CEMS_CLUSTER_CONTROLLER_PORTS=" ".join(map(str, controllers)))
    try:
        up = cluster("up")
        assert up.returncode == 0, f"kafka-cluster.sh up failed:\n{up.stderr[-3000:]}"
        env = dict(line.split("=", 1) for line in cluster("env").stdout.splitlines())
        yield env["CEMS_CLUSTER_BOOTSTRAP"]
    finally:
        cluster("down")
        CLUSTER_ENV.clear()


def site() -> Entity:
    return Entity.model_validate({"id": "works", "name": "works", "sector": "cement", "timezone": "Asia/Shanghai",
                                  "sources": [source_config(f"stack{k}", f"stack {k}") for k in range(len(AGENTS))]})


def agent_for(k: int, agent_id: str, tmp_path, bootstrap: str, topic: str) -> EdgeAgent:
    """An edge agent of stack ``k`` whose batch cutting the test feeds (its device is never polled)."""
    key_file = tmp_path / f"{agent_id}.agent-key"
    key_file.write_bytes(AGENTS[agent_id])
    cfg = GatewayConfig.model_validate({
        "agent": {"id": agent_id, "key_file": str(key_file), "outbox_dir": str(tmp_path / f"outbox-{agent_id}"),
                  "batch_interval_s": BATCH_S},
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic},
        "site": {"id": "works", "name": "works", "sector": "cement",
                 "sources": [source_config(f"stack{k}", f"stack {k}")]},
        "devices": [{"id": "rack", "host": "127.0.0.1", "port": 1, "source": f"stack{k}",
                     "points": [{n: v for n, v in p.items() if n != "stack"} for p in gateway_points(1)]}],
    })
    return EdgeAgent(cfg, AGENTS[agent_id])


def minutes(k: int, channels: list[str]):
    """Stack ``k``'s readings as one (ts, channel, value, flag) tuple per minute, in the agent's channel order."""
    model = simulator_stack_model(k)
    model = type(model)(**{**model.__dict__, "faults": FAULTS.get(k, ())})
    r, _ = simulate_stack(model, START, HOURS * H, seed=k)
    value = np.stack([r[c][0][::STEP_S] for c in channels], axis=1)  # [time, channel]
    flag = np.stack([r[c][1][::STEP_S] for c in channels], axis=1)
    n = BATCH_S // STEP_S
    channel = np.tile(np.arange(len(channels), dtype=np.uint16), n)
    for i in range(0, value.shape[0], n):
        ts = np.repeat(START + np.arange(i, i + n, dtype=np.int64) * STEP_S * 10**9, len(channels))
        yield ts, channel, value[i : i + n].ravel(), flag[i : i + n].ravel()


def reference(agents: dict[str, EdgeAgent], feeds: dict[str, list]) -> tuple[dict, dict]:
    """The undisturbed run: the same batches (minute ``s`` is batch ``s`` of its agent), in time order, through one
    processor, no Kafka."""
    messages = []
    for agent_id, agent in agents.items():
        buf = next(iter(agent.buffers.values()))
        for seq, (ts, channel, value, flag) in enumerate(feeds[agent_id]):
            data = ReadingBatch.from_columns(agent_id=agent_id, source_id=buf.source_id, seq=seq, channels=buf.channels,
                                             ts_ns=ts, channel=channel, value=value, flag=flag).encode()
            messages.append((seq, agent_id, data))
    messages.sort(key=lambda m: m[:2])
    p = PartitionProcessor(Registry([site()]), KeyRing(keys=AGENTS))
    hourly, monthly = [], []
    for i in range(0, len(messages), 3000):
        out = p.process([Message(i + j, data, envelope.headers(a, seq, AGENTS[a], data), cut_time_ms(data))
                         for j, (seq, a, data) in enumerate(messages[i : i + 3000])])
        assert not out.dead_letters
        hourly += out.hourly
        monthly += out.monthly
    return final(hourly), {r.key: r for r in monthly}


def leaders(conn: KafkaConnection, topics: list[str]) -> dict[tuple[str, int], tuple[int, tuple[int, ...]]]:
    """(topic, partition) -> (leader node, ISR) from the cluster's metadata. kafka-python's admin client asks one
    node and gives up if that one is the dead node: ask again (it picks another)."""
    from kafka.errors import KafkaError

    for attempt in range(20):
        admin = None
        try:
            admin = kafka_io.admin(conn)
            return {(t["name"], p["partition_index"]): (p["leader_id"], tuple(sorted(p["isr_nodes"])))
                    for t in admin.describe_topics(topics) for p in t["partitions"]}
        except KafkaError:
            if attempt == 19:
                raise
            time.sleep(0.5)
        finally:
            if admin is not None:
                admin.close()
    raise AssertionError("unreachable")


def isr_setting(conn: KafkaConnection, topic: str) -> str | None:
    """The topic's own min.insync.replicas (None: the broker's default applies)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = kafka_io.admin(conn)
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    finally:
        admin.close()
    entry = configs.get("min.insync.replicas")
    return entry["value"] if entry and entry["config_source"] == "DYNAMIC_TOPIC_CONFIG" else None


def total(samples: list[dict], name: str) -> float:
    return sum(v for m in samples for (n, _), v in m.items() if n == name)


def pipeline(tmp_path, conn: KafkaConnection) -> dict:
    """The workers' settings (keys, site file, a fresh set of topics) as WorkerConfig keywords."""
    tag = uuid.uuid4().hex[:8]
    return dict(kafka=conn, app_id=f"cems-cluster-{tag}", topics=Topics.prefixed(f"c.{tag}"),
                **worker_files(tmp_path, AGENTS, site()), snapshot_interval_s=1.0)


def start_workers(tmp_path, settings: dict, n: int) -> tuple[list, list[int]]:
    """``n`` worker processes of one consumer group, each with its own metrics port."""
    procs, ports = [], []
    for i in range(n):
        ports.append(free_port())
        path = tmp_path / f"worker{i}.yaml"
        cfg = WorkerConfig(**settings, datadir=tmp_path / f"faust{i}", metrics_port=ports[-1])
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        procs.append(start_worker(path))
    return procs, ports


def stop(procs) -> None:
    for w in procs:
        w.terminate()
    for w in procs:
        try:
            w.wait(60)
        except subprocess.TimeoutExpired:
            w.kill()


async def kill_the_busiest_node(conn: KafkaConnection, topics: list[str]) -> tuple[int, int]:
    """SIGKILL the node that leads the most partitions; wait until the others lead them all. Returns (the node,
    how many partitions it led)."""
    counts = np.bincount([leader for leader, _ in leaders(conn, topics).values()], minlength=4)
    node = int(np.argmax(counts))
    assert cluster("kill", str(node)).returncode == 0
    moved = await wait_for(lambda: all(leader not in (node, -1) for leader, _ in leaders(conn, topics).values()), 60)
    assert moved, f"leaders stay on node {node}: {leaders(conn, topics)}"
    assert {isr for _, isr in leaders(conn, topics).values()} == {tuple(n for n in (1, 2, 3) if n != node)}
    return node, int(counts[node])


async def stream_through_a_node_failure(agents: dict[str, EdgeAgent], feeds: dict, conn, topics) -> tuple[int, int]:
    """Feed the agents in ten steps; SIGKILL the node leading the most partitions after the third and check that
    its leaderships moved, start it again after the seventh, wait until the outboxes are empty and every ISR is
    whole again. Returns (the node, how many partitions it led)."""
    def feed(first: int, last: int) -> None:
        """Minutes [first, last) of every agent through its buffer and batch cutting into its outbox."""
        for m in range(first, last):
            for a, agent in agents.items():
                next(iter(agent.buffers.values())).add(*feeds[a][m])
                assert agent.cut_batches() == 1

    steps = np.linspace(0, MINUTES, 11).astype(int)
    victim, led = 0, 0
    for i in range(10):
        await asyncio.to_thread(feed, steps[i], steps[i + 1])
        await asyncio.sleep(1.0)
        if i == 2:  # batches flow (agents sending, workers consuming)
            victim, led = await kill_the_busiest_node(conn, topics)
        if i == 6:  # back, on its kept log: it catches up and rejoins every ISR
            restarted = cluster("start", str(victim))
            assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert await wait_for(lambda: not any(a.outbox.count for a in agents.values()), 180), \
        {a: agent.outbox.count for a, agent in agents.items()}
    assert await wait_for(lambda: all(isr == (1, 2, 3) for _, isr in leaders(conn, topics).values()), 120)
    return victim, led


@pytest.mark.timeout(600)
async def test_a_node_killed_mid_stream_loses_and_doubles_nothing(bootstrap, tmp_path, simulated_send_time):
    conn = KafkaConnection(bootstrap_servers=bootstrap)
    settings = pipeline(tmp_path, conn)
    cfg = WorkerConfig(**settings, datadir=tmp_path / "faust")
    assert create_topics(cfg, partitions=PARTITIONS, replication=3, readings_retention_days=None)
    topics = list(cfg.topics.model_dump().values())
    assert {isr for _, isr in leaders(conn, topics).values()} == {(1, 2, 3)}
    assert {t: isr_setting(conn, t) for t in topics} == dict.fromkeys(topics, "2")  # on each topic, not by default

    agents = {a: agent_for(k, a, tmp_path, bootstrap, cfg.topics.readings) for k, a in enumerate(AGENTS)}
    feeds = {a: list(minutes(k, [c.id for c in next(iter(agents[a].buffers.values())).channels]))
             for k, a in enumerate(AGENTS)}
    ref_hourly, ref_monthly = reference(agents, feeds)
    # the month end is in the data: January closed (its last hour has closed), February open
    assert {k: r.status for k, r in ref_monthly.items()} == {
        **{f"stack{k}/2026-01": "closed" for k in range(3)}, **{f"stack{k}/2026-02": "open" for k in range(3)}}

    workers, ports = start_workers(tmp_path, settings, 2)
    uplinks = [asyncio.create_task(a._uplink()) for a in agents.values()]  # the agents' own drain loops
    try:
        victim, led = await stream_through_a_node_failure(agents, feeds, conn, topics)

        def done() -> bool:
            hourly, monthly = topic_records(cfg)
            return contents(hourly) == contents(ref_hourly) and contents(monthly) == contents(ref_monthly)

        ok = await wait_for(done, 240, every_s=3)
        got_hourly, got_monthly = topic_records(cfg)
        assert ok, diagnosis(tmp_path, got_hourly, got_monthly, ref_hourly, ref_monthly)
        assert await wait_for(lambda: caught_up(cfg), 60)
        await asyncio.sleep(2.0)  # a timer tick of each worker after its last chunk: the lag gauges are current
        metrics = [scrape(p) for p in ports]
    finally:
        for t in uplinks:
            t.cancel()
        await asyncio.gather(*uplinks, return_exceptions=True)
        for a in agents.values():
            a.uplink.close()
        stop(workers)  # a node still down is the fixture's to start again
    repeats = assert_delivered_once(conn, cfg)
    # the workers' metrics: every batch handled (a partition that moved between them replays from its snapshot,
    # so at least once), the repeated sends ignored, no dead letter, no lag, checkpoints taken
    assert total(metrics, "cems_worker_messages_total") >= len(AGENTS) * MINUTES
    assert total(metrics, "cems_worker_duplicates_total") >= repeats
    assert total(metrics, "cems_worker_dead_letters_total") == 0
    assert total(metrics, "cems_worker_consumer_lag_messages") == 0
    assert total(metrics, "cems_worker_checkpoint_seconds_count") > 0
    print(f"\nnode {victim} killed (it led {led} of {len(leaders(conn, topics))} partitions); {repeats} batch(es) "
          f"sent twice; worker output retries: {total(metrics, 'cems_worker_output_failures_total'):.0f}")


@pytest.mark.timeout(300)
async def test_a_writer_whose_transaction_coordinator_dies_commits_once_kafka_has_moved_it(bootstrap):
    """A partition's writer in the middle of a transaction when the node that coordinates it is SIGKILLed: the
    records it sends next (to a partition not yet in the transaction, so the dead coordinator must be asked again)
    and its commit go through once Kafka has moved the coordinator, and a reader of committed records sees them.
    kafka-python 3.0.12 alone dropped that request and never sent again (``state_store._coordinator_safe``)."""
    from kafka.admin import NewTopic

    from streams.runtime.state_store import PartitionWriter

    conn = KafkaConnection(bootstrap_servers=bootstrap)
    topic = f"tx.{uuid.uuid4().hex[:8]}"
    admin = kafka_io.admin(conn)
    try:
        admin.create_topics([NewTopic(topic, 3, 3)])
    finally:
        admin.close()
    writer = await asyncio.to_thread(PartitionWriter, conn.producer_config(), f"{topic}/writer", topic, 2)
    coordinator = int(str(writer.producer._transaction_manager.coordinator(1)).rsplit("-", 1)[-1])  # TRANSACTION
    try:
        await asyncio.to_thread(writer.begin, [(topic, {"key": b"before", "value": b"1", "partition": 0})])
        assert cluster("kill", str(coordinator)).returncode == 0
        try:
            await asyncio.wait_for(asyncio.to_thread(writer.send_state, b"after", b"2"), 120)
            await asyncio.wait_for(asyncio.to_thread(writer.commit), 120)
        except TimeoutError:
            pytest.fail(f"the writer never sent again after its coordinator, node {coordinator}, died")
        got = {r.key: r.value for r in kafka_io.read_topic(conn, topic, idle_polls=3)}
        assert got == {b"before": b"1", b"after": b"2"}
    finally:
        await asyncio.to_thread(writer.producer.close, 0)
        assert cluster("start", str(coordinator)).returncode == 0
        assert await wait_for(lambda: all(isr == (1, 2, 3) for _, isr in leaders(conn, [topic]).values()), 120)


def diagnosis(tmp_path, got_hourly: dict, got_monthly: dict, ref_hourly: dict, ref_monthly: dict) -> str:
    """What differs, per source, and the workers' own account (the pipeline's log lines, not the clients' retries)."""
    def per_source(got: dict, ref: dict) -> dict:
        wrong = [k for k, r in ref.items() if k not in got or got[k].content() != r.content()]
        of = {k: k[0] if isinstance(k, tuple) else k.split("/")[0] for k in wrong}  # hourly: (source, hour); monthly
        return {s: sorted(k for k in wrong if of[k] == s)[:6] for s in sorted(set(of.values()))}

    lines = [f"hourly: {len(got_hourly)} of {len(ref_hourly)}; wrong or missing: {per_source(got_hourly, ref_hourly)}",
             f"monthly wrong or missing: {per_source(got_monthly, ref_monthly)}"]
    for log in sorted(tmp_path.glob("worker*.log")):
        own = [line[:300] for line in log.read_text(errors="replace").splitlines()
               if " streams." in line or "faust.app" in line or "Traceback" in line or "Crash" in line]
        lines += [f"--- {log.name} ({len(own)} lines of the pipeline's own)", *own[-60:]]
    return "\n".join(lines)


def assert_delivered_once(conn: KafkaConnection, cfg: WorkerConfig) -> int:
    """Every batch number of every agent is in the readings topic (at least once: a send retried after the node
    died may repeat one), no gap report keeps a hole, nothing was dead-lettered. Returns the repeats."""
    seen: dict[str, list[int]] = {}
    for r in kafka_io.read_topic(conn, cfg.topics.readings):
        h = dict(r.headers)
        seen.setdefault(h[envelope.AGENT].decode(), []).append(int(h[envelope.SEQ]))
    assert {a: sorted(set(s)) for a, s in seen.items()} == {a: list(range(MINUTES)) for a in AGENTS}
    gaps = {g.agent_id: g for g in kafka_io.read_latest(conn, cfg.topics.gaps, GapReport.from_json)}
    # a report is published when an agent's holes change; the last of each (if any) says the sequence is whole
    assert {a: (g.missing, g.holes) for a, g in gaps.items()} == dict.fromkeys(gaps, (0, []))
    assert not kafka_io.read_topic(conn, cfg.topics.dead_letter, idle_polls=2)
    return sum(len(s) - len(set(s)) for s in seen.values())
