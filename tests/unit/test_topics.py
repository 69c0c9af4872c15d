"""The central topics' settings (``streams/runtime/topics.py``): compaction where the newest record per key is the
record, ``min.insync.replicas`` on every topic, readings retention; checked without a broker (the replicated cluster
test reads them back from three real nodes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.kafka import KafkaConnection
from streams.config import Topics, WorkerConfig
from streams.runtime.topics import create_topics, default_min_insync, topic_specs


def config(tmp_path) -> WorkerConfig:
    return WorkerConfig(kafka=KafkaConnection(bootstrap_servers="127.0.0.1:1"), topics=Topics.prefixed("u"),
                        sites=[tmp_path], keys_dir=tmp_path, datadir=tmp_path)


@pytest.mark.parametrize(("replication", "isr"), [(1, 1), (2, 1), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_min_insync_is_a_majority_from_three_replicas_up(replication, isr):
    # 3 // 2 + 1 = 2, 4 // 2 + 1 = 3, 5 // 2 + 1 = 3, 7 // 2 + 1 = 4; below three a majority would be every
    # replica (2 of 2), and one broker down would stop all writes: 1
    assert default_min_insync(replication) == isr


@given(st.integers(1, 100))
def test_min_insync_leaves_a_broker_to_lose_from_three_up(replication):
    isr = default_min_insync(replication)
    assert 1 <= isr <= replication
    if replication >= 3:
        assert isr < replication and 2 * isr > replication  # a majority, and one replica may be down


def test_every_topic_carries_min_insync_and_the_compacted_ones_compact(tmp_path):
    cfg = config(tmp_path)
    specs = topic_specs(cfg, partitions=12, readings_retention_days=14, min_insync_replicas=2)
    assert set(specs) == set(cfg.topics.model_dump().values())
    assert {name: c["min.insync.replicas"] for name, (_, c) in specs.items()} == dict.fromkeys(specs, "2")
    compacted = {name for name, (_, c) in specs.items() if c.get("cleanup.policy") == "compact"}
    assert compacted == {"u.hourly", "u.monthly", "u.indicators", "u.gaps", "u.state", "u.accounting", "u.alerts",
                         "u.alert_acks", "u.qa"}  # QA records (qa-gate): one version per record key
    assert specs["u.readings"] == (12, {"min.insync.replicas": "2", "retention.ms": str(14 * 86_400_000)})
    assert specs["u.state"][0] == 12  # state partition p holds readings partition p's state
    assert specs["u.state"][1]["max.message.bytes"] == str(64 * 2**20)


def test_no_min_insync_means_the_brokers_default_and_no_retention_means_none(tmp_path):
    specs = topic_specs(config(tmp_path), partitions=3, readings_retention_days=None)
    assert all("min.insync.replicas" not in c for _, c in specs.values())
    assert specs["u.readings"][1]["retention.ms"] == "-1"


@pytest.mark.parametrize("isr", [0, 4])
def test_a_min_insync_outside_one_to_replication_is_refused_before_any_broker_is_asked(tmp_path, isr):
    with pytest.raises(ValueError, match=f"min_insync_replicas {isr} must be between 1 and replication 3"):
        create_topics(config(tmp_path), replication=3, min_insync_replicas=isr)
