"""Nothing lost: the agent SIGKILLed mid-run and the broker stopped and restarted mid-stream; every
sequence number the agent ever assigned arrives in Kafka at least once (duplicates are the centre's
to remove), and every batch is intact and signed."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from edge_agent.outbox import Outbox, verify
from schemas.agent_batch import decode_message
from tests.fixtures import wait_for
from tests.integration.test_edge_agent import KEY, registers
from tests.integration.test_edge_cli import CEMS, EXAMPLE
from tests.integration.test_modbus_tcp import start_server
from tests.integration.test_uplink import read_topic

pytestmark = pytest.mark.integration
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
REPO = Path(__file__).resolve().parents[2]


def gateway(tmp_path, port, bootstrap, topic) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    (tmp_path / "key").write_bytes(KEY)
    doc["agent"] |= {"key_file": str(tmp_path / "key"), "outbox_dir": str(tmp_path / "outbox"), "batch_interval_s": 0.3}
    doc["kafka"] = {"bootstrap_servers": bootstrap, "topic": topic}
    doc["devices"] = doc["devices"][:1]  # the Modbus TCP analyser rack only
    doc["devices"][0] |= {"host": "127.0.0.1", "port": port, "poll_interval_s": 0.1, "timeout_s": 0.5}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def stored(outbox: Path) -> int:
    """Batches stored so far, from the names alone (opening an Outbox would touch its files)."""
    names = [int(p.stem) for p in outbox.glob("*.batch")]
    kept = outbox / "next_seq"  # written before the newest batch is acknowledged and removed
    return max([n + 1 for n in names] + [int(kept.read_text() or 0) if kept.exists() else 0])


async def start_agent(config: Path):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CEMS, "edge", "run", str(config), "--metrics-port", "0", "--log-level", "ERROR",
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def assert_all_delivered(bootstrap, topic, outbox_dir):
    n = Outbox(outbox_dir).next_seq
    assert Outbox(outbox_dir).pending() == []
    records = read_topic(bootstrap, topic)  # everything in the topic (up to its end: nothing more is coming)
    seqs = {decode_message(r.value).seq for r in records}
    assert seqs == set(range(n)), f"missing {sorted(set(range(n)) - seqs)[:10]}"
    assert all(verify(KEY, r.value, dict(r.headers)["cems-sig"]) for r in records)
    return n, len(records)


async def test_sigkill_at_random_moments_loses_nothing(tmp_path, kafka_bootstrap):
    server, task, port = await start_server(registers(), [False] * 8)
    topic = f"cems.test.crash.{uuid.uuid4().hex[:8]}"
    config = gateway(tmp_path, port, kafka_bootstrap, topic)
    rng = random.Random(11)
    try:
        for _ in range(3):
            agent = await start_agent(config)
            await asyncio.sleep(rng.uniform(2.0, 4.0))
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
        before = stored(tmp_path / "outbox")
        agent = await start_agent(config)  # the last run ends cleanly: SIGTERM once it stored ~3 s of batches of its
        # own (it runs and has its handler in place, however slow its start on a loaded machine)
        assert await wait_for(lambda: stored(tmp_path / "outbox") >= before + 10, 60), "the agent stored nothing"
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 60) == 0
    finally:
        await server.shutdown()
        task.cancel()
    n, received = assert_all_delivered(kafka_bootstrap, topic, tmp_path / "outbox")
    assert n >= 10 and received >= n


async def test_broker_stopped_and_restarted_mid_stream(tmp_path, private_kafka):
    kafka_bootstrap = private_kafka.bootstrap  # the test's own broker: stopping it disturbs no other test
    server, task, port = await start_server(registers(), [False] * 8)
    topic = f"cems.test.outage.{uuid.uuid4().hex[:8]}"
    config = gateway(tmp_path, port, kafka_bootstrap, topic)
    agent = await start_agent(config)
    try:
        assert await wait_for(lambda: stored(tmp_path / "outbox") >= 5, 60), "the agent stored nothing"  # streaming...
        await asyncio.to_thread(private_kafka.stop)
        # batches pile up in the outbox
        assert await wait_for(lambda: len(list((tmp_path / "outbox").glob("*.batch"))) >= 5, 60)
        await asyncio.to_thread(private_kafka.start)
    finally:
        # give the agent time to drain after the outage (its uplink backs off up to 60 s)
        await wait_for(lambda: not list((tmp_path / "outbox").glob("*.batch")), 60)
        agent.send_signal(signal.SIGTERM)
        await asyncio.wait_for(agent.wait(), 90)
        await server.shutdown()
        task.cancel()
    assert_all_delivered(kafka_bootstrap, topic, tmp_path / "outbox")
