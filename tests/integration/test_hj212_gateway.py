"""The gateway's HJ 212 receiver over real sockets: a simulated datalogger pushes minute and real-time data to the
agent, which stores them in its outbox and sends them to the real Kafka broker; retransmissions count once, a
datalogger's history after an outage arrives in order, wrong passwords and CRC failures are refused."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC

import pytest
import yaml
from click.testing import CliRunner

from edge_agent.agent import EdgeAgent
from edge_agent.cli import edge
from edge_agent.config import GatewayConfig
from edge_agent.hj212.receiver import recent_path
from edge_agent.simulator.datalogger import SimulatedDatalogger, minute_uploads, realtime_uploads
from edge_agent.simulator.generate import StackModel, simulate_stack, source_config
from schemas import decode_batch
from schemas.envelope import verify
from schemas.hj212 import build_data_upload, parse_frame
from schemas.quantities import Flag
from tests.fixtures import read_topic

pytestmark = pytest.mark.integration
KEY = b"gateway key for hj212 tests 0001"
MN = "010000A8900016F000169DC0"
PW = "123456"
START_NS = 1_772_323_200 * 10**9  # 2026-03-01T00:00Z, 08:00 in China


def gateway(tmp_path, kafka_bootstrap, topic, **device) -> GatewayConfig:
    src = source_config("kiln1", "kiln 1", StackModel())
    src["hj212"] = {"mn": MN, "figures": "minute"}
    return GatewayConfig.model_validate({
        "agent": {"id": "gw-hj212", "key_file": str(tmp_path / "key"), "outbox_dir": str(tmp_path / "outbox"),
                  "batch_interval_s": 0.5},
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": topic},
        "site": {"id": "plant", "name": "plant", "sector": "cement", "sources": [src]},
        "devices": [{"id": "logger", "protocol": "hj212", "listen": "127.0.0.1", "port": 0,
                     "dataloggers": [{"mn": MN, "password_env": "CEMS_TEST_HJ212_PW"}], **device}],
    })


async def started(agent: EdgeAgent):
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    for _ in range(100):
        if agent.receivers[0].server is not None:
            return stop, run, agent.receivers[0].port
        await asyncio.sleep(0.05)
    raise AssertionError("receiver did not start")


def readings_of(records):
    batches = [decode_batch(r.value) for r in records]
    return sorted(batches, key=lambda b: b.seq)


async def test_datalogger_to_agent_to_kafka(tmp_path, kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("CEMS_TEST_HJ212_PW", PW)
    topic = f"cems.test.hj212gw.{uuid.uuid4().hex[:8]}"
    agent = EdgeAgent(gateway(tmp_path, kafka_bootstrap, topic), KEY)
    stop, run, port = await started(agent)

    readings, _ = simulate_stack(StackModel(), START_NS, 600, seed=3)
    minutes = minute_uploads(readings, START_NS)  # 10 minutes
    realtime = realtime_uploads(readings, START_NS, 30)  # 20 real-time uploads
    logger = SimulatedDatalogger("127.0.0.1", port, MN, PW, overtime_s=2.0)
    assert await logger.send(minutes + realtime) == 30
    # A retransmission: the same minute again (the platform's answer was lost, say), with a new QN.
    again = SimulatedDatalogger("127.0.0.1", port, MN, PW)
    assert await again.send(minutes[:1], qn_base_ns=START_NS + 5 * 10**9) == 1
    # A wrong password and a broken CRC: refused, never answered.
    (bad_pw,) = build_data_upload("2051", minutes[2].records, data_time=_dt(minutes[2].data_time_ns), st="31",
                                  pw="654321", mn=MN, qn="20260301090000000")
    good = logger.frames(minutes[3], "20260301090000001")[0]
    bad_crc = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(bad_pw + bad_crc)
    await w.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r.read(100), 1.0)  # no answer to either
    w.close()

    await asyncio.sleep(1.0)
    stop.set()
    await run
    m = agent.metrics
    assert m.value("cems_edge_hj212_uploads_stored_total", device="logger", cn="2051") == 10
    assert m.value("cems_edge_hj212_uploads_stored_total", device="logger", cn="2011") == 20
    assert m.value("cems_edge_hj212_duplicates_total", device="logger") == 1
    assert m.value("cems_edge_hj212_refused_total", device="logger", reason="bad_password") == 1
    assert m.value("cems_edge_hj212_refused_total", device="logger", reason="crc") == 1
    assert agent.outbox.pending() == []

    records = read_topic(kafka_bootstrap, topic, 30)
    assert len(records) == 30 and all(verify(KEY, r.value, dict(r.headers)["cems-sig"]) for r in records)
    batches = readings_of(records)
    assert [b.seq for b in batches] == list(range(30))  # in the order sent, nothing twice
    minute_batches = [b for b in batches if b.period_s == 60]
    assert len(minute_batches) == 10 and all(b.version == 2 for b in minute_batches)
    assert all(b.period_s == 0 and b.version == 1 for b in batches if b not in minute_batches)
    # The values are the datalogger's rounded minute means, at the minute's start, with its flags.
    co2 = [c.id for c in minute_batches[0].channels].index("co2")
    for b, up in zip(minute_batches, minutes, strict=True):
        sel = b.channel == co2
        rec = next(x for x in up.records if x.code == "a05001")
        assert b.value[sel].tolist() == [rec.avg] and b.ts_ns[sel].tolist() == [up.data_time_ns]
        assert b.flag[sel].tolist() == [Flag.N]
    # cems edge probe's file: the last frames, passwords masked.
    recent = json.loads(recent_path(tmp_path / "outbox", "logger").read_text())
    frames = [e["frame"] for e in recent[MN]]
    assert all("PW=******;" in f and PW not in f for f in frames)
    assert any(e["verdict"].startswith("refused: bad_password") for e in recent[MN])

    # The commissioning commands on the same gateway file.
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(agent.cfg.model_dump(mode="json", by_alias=True)))
    (tmp_path / "key").write_bytes(KEY)
    out = CliRunner().invoke(edge, ["check", str(path)])
    assert out.exit_code == 0, out.output
    assert "hj212 receiver on 127.0.0.1:0" in out.output and f"MN {MN} -> source kiln1: figures from minute" in out.output
    assert "$CEMS_TEST_HJ212_PW (readable)" in out.output and PW not in out.output
    out = CliRunner().invoke(edge, ["probe", str(path), "logger", MN])
    assert out.exit_code == 0 and "stored as batch" in out.output and "PW=******;" in out.output
    assert PW not in out.output.replace("PW=******", "")


async def test_history_after_an_outage_arrives_in_order(tmp_path, kafka_bootstrap, monkeypatch):
    """The agent is down while the datalogger buffers two hours; when it is back, the history is stored in order."""
    monkeypatch.setenv("CEMS_TEST_HJ212_PW", PW)
    topic = f"cems.test.hj212gw.{uuid.uuid4().hex[:8]}"
    cfg = gateway(tmp_path, kafka_bootstrap, topic)
    readings, _ = simulate_stack(StackModel(), START_NS, 7200, seed=5)
    minutes = minute_uploads(readings, START_NS)  # 120 minutes
    agent = EdgeAgent(cfg, KEY)
    stop, run, port = await started(agent)
    logger = SimulatedDatalogger("127.0.0.1", port, MN, PW, overtime_s=1.0, recount=1)
    assert await logger.send(minutes[:30]) == 30
    stop.set()
    await run  # the gateway goes away

    # The datalogger keeps trying (its buffer holds the rest); the gateway comes back on the same port.
    sending = asyncio.create_task(logger.send(minutes[30:], give_up_s=30.0))
    await asyncio.sleep(1.5)
    cfg2 = GatewayConfig.model_validate(cfg.model_dump() | {"devices": [cfg.devices[0].model_dump() | {"port": port}]})
    agent2 = EdgeAgent(cfg2, KEY)
    stop2, run2, _ = await started(agent2)
    assert await sending == 90
    assert logger.stats["connects"] >= 2
    await asyncio.sleep(1.0)
    stop2.set()
    await run2

    batches = readings_of(read_topic(kafka_bootstrap, topic, 120))
    assert [b.seq for b in batches] == list(range(120))
    times = [int(b.ts_ns[0]) for b in batches]
    assert times == [START_NS + i * 60 * 10**9 for i in range(120)]  # every minute once, in order


def _dt(ns):
    from datetime import datetime

    return datetime.fromtimestamp(ns / 1e9, UTC)


def test_probe_frames_parse():
    assert parse_frame(b"##0087QN=20250301090000001;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;"
                       b"CP=&&&&2580\r\n").cn == "9014"


async def test_random_and_mutated_streams_never_crash_the_gateway_receiver(tmp_path, monkeypatch):
    """Fuzz over sockets (no broker needed: the outbox keeps what is stored). Random bytes, mutated and cut frames,
    a candidate that never ends: the receiver stays up, holds no more than its frame limit per connection, and still
    stores a good upload afterwards."""
    import os
    import random

    monkeypatch.setenv("CEMS_TEST_HJ212_PW", PW)
    cfg = gateway(tmp_path, "127.0.0.1:1", "unused", max_frame_bytes=2048, idle_timeout_s=5)
    agent = EdgeAgent(cfg, KEY)
    stop, run, port = await started(agent)
    readings, _ = simulate_stack(StackModel(), START_NS, 120, seed=1)
    ups = minute_uploads(readings, START_NS)
    logger = SimulatedDatalogger("127.0.0.1", port, MN, PW)
    good = logger.frames(ups[0], "20260301080000000")[0]

    async def blast(seed: int) -> None:
        r = random.Random(seed)
        _, w = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(30):
            kind = r.random()
            if kind < 0.3:
                chunk = os.urandom(r.randint(1, 3000))
            elif kind < 0.6:
                b = bytearray(good)
                for _ in range(r.randint(1, 8)):
                    b[r.randrange(len(b))] = r.randrange(256)
                chunk = bytes(b)
            elif kind < 0.8:
                chunk = b"##9999" + b"Q" * r.randint(100, 5000)
            else:
                chunk = good[: r.randint(1, len(good))]
            w.write(chunk)
            await w.drain()
        w.close()

    try:
        await asyncio.gather(*(blast(s) for s in range(12)))
        assert await logger.send(ups[1:2]) == 1  # still serving
    finally:
        stop.set()
        await run
    assert agent.metrics.value("cems_edge_hj212_uploads_stored_total", device="logger", cn="2051") == 1
    assert agent.metrics.value("cems_edge_hj212_garbage_bytes_total", device="logger") > 0
    assert agent.outbox.count == 1  # the one good upload, waiting for a broker
