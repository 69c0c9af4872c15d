"""A day-long broker outage at 1 Hz: every reading of the day waits on disk, and after the broker returns
the outbox drains in order, complete, signed. The day is compressed: the agent's own batch cutting is
fed a simulated day (10 channels at 1 Hz, 5 s batches = 17,280 fsync'd batches) while a real broker (the
test's own: ``private_kafka``) is stopped; then the broker is restarted and the same agent drains. Prints
the disk the day took and the drain rate."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import GatewayConfig
from edge_agent.outbox import verify
from edge_agent.simulator.generate import simulate_stack, simulator_stack_model, source_config
from edge_agent.simulator.modbus_server import gateway_points
from schemas.agent_batch import decode_message
from tests.integration.test_uplink import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
DAY, BATCH_S = 86_400, 5
KEY = b"d" * 32


def test_day_long_outage_is_kept_on_disk_and_drained_in_order(tmp_path, fast_tmp, private_kafka):
    kafka_bootstrap = private_kafka.bootstrap
    topic = f"cems.test.dayoutage.{uuid.uuid4().hex[:8]}"
    (tmp_path / "key").write_bytes(KEY)
    # The outbox on tmpfs where there is one: its 34,560 fsyncs (file and directory per batch) cost about a minute on
    # this disk and prove nothing here (a process killed loses nothing from the page cache; test_outbox.py kills one).
    cfg = GatewayConfig.model_validate({
        "agent": {"id": "gw-day", "key_file": str(tmp_path / "key"), "outbox_dir": str(fast_tmp / "outbox"),
                  "batch_interval_s": BATCH_S},
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": topic},
        "site": {"id": "site", "name": "site", "sector": "cement", "sources": [
            source_config("stack0", "stack 0")]},
        "devices": [{"id": "rack0", "host": "127.0.0.1", "port": 1, "source": "stack0",
                     "points": [{k: v for k, v in p.items() if k != "stack"} for p in gateway_points(1)]}],
    })
    agent = EdgeAgent(cfg, KEY)
    buf = agent.buffers["stack0"]
    readings, _ = simulate_stack(simulator_stack_model(0), T0, DAY, seed=1)
    order = [c.id for c in buf.channels]
    value = np.stack([readings[c][0] for c in order], axis=1)  # (second, channel)
    flag = np.stack([readings[c][1] for c in order], axis=1)
    channel = np.tile(np.arange(len(order), dtype=np.uint16), BATCH_S)
    ts = np.repeat(T0 + np.arange(DAY, dtype=np.int64) * 10**9, len(order))

    private_kafka.stop()
    try:
        for start in range(0, DAY, BATCH_S):  # the agent's batch cutting, once per 5 s of the day
            rows = slice(start * len(order), (start + BATCH_S) * len(order))
            buf.add(ts[rows], channel, value[start : start + BATCH_S].ravel(), flag[start : start + BATCH_S].ravel())
            assert agent.cut_batches() == 1
        n = DAY // BATCH_S
        assert agent.outbox.count == n and agent._drain() == 0  # broker down: nothing leaves the disk
        assert agent.outbox.pending(3) == [0, 1, 2]
        print(f"\na day at 1 Hz x {len(order)} channels: {n} batches, "
              f"{agent.outbox.size_bytes / 2**20:.1f} MiB on disk")
    finally:
        private_kafka.start()

    t = time.perf_counter()
    while agent.outbox.count:
        if agent._drain() == 0:
            time.sleep(1.0)  # the producer reconnects with its own backoff
    print(f"drained {n} batches in {time.perf_counter() - t:.1f} s after the broker returned")
    agent.uplink.close()

    records = read_topic(kafka_bootstrap, topic, n)
    seqs = [int(dict(r.headers)["cems-seq"]) for r in records]
    assert seqs == list(range(n))  # one partition per source: Kafka holds them in sequence order, none twice
    assert all(verify(KEY, r.value, dict(r.headers)["cems-sig"]) for r in records)
    messages = [decode_message(r.value) for r in records]  # the agent's wire version (3: one section, stack0)
    assert all(m.source_ids == ("stack0",) for m in messages)
    batches = [m.sections[0] for m in messages]
    got_ts = np.concatenate([b.ts_ns for b in batches])
    got_value = np.concatenate([b.value for b in batches])
    np.testing.assert_array_equal(got_ts, ts)  # every second of the day, every channel, once
    np.testing.assert_array_equal(got_value, value.ravel())
