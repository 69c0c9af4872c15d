"""The whole edge agent against a real pymodbus server and the real Kafka broker: readings polled,
flagged by the analyser's status word and by a device that goes away, batched, signed, delivered."""

from __future__ import annotations

import asyncio
import logging
import uuid

import numpy as np
import pytest
import yaml

from edge_agent.agent import EdgeAgent
from edge_agent.config import GatewayConfig
from edge_agent.modbus.decode import encode_value
from edge_agent.modbus.points import ByteOrder, DataType
from edge_agent.outbox import verify
from schemas import Flag
from schemas.agent_batch import decode_message
from tests.integration.test_edge_cli import EXAMPLE
from tests.integration.test_modbus_tcp import start_server
from tests.integration.test_uplink import read_topic

pytestmark = pytest.mark.integration
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
KEY = b"k" * 32


def registers() -> list[int]:
    regs = [0] * 48
    regs[0:2] = encode_value(18.5, DataType.float32, ByteOrder.ABCD)
    regs[2:4] = encode_value(7.25, DataType.float32, ByteOrder.ABCD)
    regs[4:6] = encode_value(9.5, DataType.float32, ByteOrder.CDAB)
    regs[6], regs[7], regs[8] = 964, 65536 - 431, 1465
    return regs


@pytest.mark.parametrize("wire_version", [3, 1])  # the default (an agent batch per interval), and one per source
async def test_agent_polls_flags_batches_and_delivers(tmp_path, kafka_bootstrap, wire_version):
    server, task, port = await start_server(registers(), [False] * 8)
    doc = yaml.safe_load(EXAMPLE.read_text())
    topic = f"cems.test.agent.{uuid.uuid4().hex[:8]}"
    doc["agent"] |= {"key_file": str(tmp_path / "key"), "outbox_dir": str(tmp_path / "outbox"), "batch_interval_s": 0.5,
                     "wire_version": wire_version}
    doc["kafka"] = {"bootstrap_servers": kafka_bootstrap, "topic": topic}
    doc["devices"] = doc["devices"][:1]  # the Modbus TCP analyser rack only
    doc["devices"][0] |= {"host": "127.0.0.1", "port": port, "poll_interval_s": 0.1, "timeout_s": 0.5}
    agent = EdgeAgent(GatewayConfig.model_validate(doc), KEY)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))

    await asyncio.sleep(1.5)  # normal readings
    await server.context.async_setValues(1, 3, 40, [0b001])  # analyser enters calibration (status bit 0)
    await asyncio.sleep(1.0)
    await server.shutdown()  # the datalogger goes away
    task.cancel()
    await asyncio.sleep(1.5)
    stop.set()
    await run

    assert agent.outbox.pending() == []  # everything acknowledged by Kafka
    n_batches = agent.outbox.next_seq
    m = agent.metrics
    assert m.value("cems_edge_batches_stored_total") == m.value("cems_edge_batches_sent_total") == n_batches
    assert m.value("cems_edge_outbox_batches") == 0 and m.value("cems_edge_outbox_full") == 0
    assert m.value("cems_edge_last_successful_send_timestamp_seconds") > 0
    assert m.value("cems_edge_readings_total", device="cems-kiln1", flag="C") > 0
    assert m.value("cems_edge_readings_total", device="cems-kiln1", flag="B") > 0
    assert m.value("cems_edge_requests_total", device="cems-kiln1") > 10
    assert m.value("cems_edge_request_errors_total", device="cems-kiln1", kind="comm") > 0
    records = read_topic(kafka_bootstrap, topic, n_batches)
    messages = [decode_message(r.value) for r in records]
    assert {m.version for m in messages} == {wire_version}
    batches = [b for m in messages for b in m.sections]  # one source: one section per agent batch
    assert sorted(b.seq for b in batches) == list(range(n_batches)) and n_batches >= 6
    assert all(verify(KEY, r.value, dict(r.headers)["cems-sig"]) for r in records)
    ts = np.concatenate([b.ts_ns for b in batches])
    flag = np.concatenate([b.flag for b in batches])
    value = np.concatenate([b.value for b in batches])
    channel = np.concatenate([b.channel for b in batches])
    order = np.argsort(ts, kind="stable")
    flag, value, channel = flag[order], value[order], channel[order]
    letters = "".join(Flag(f).name for f in flag[channel == 0])  # the CO2 channel over time
    # normal, then calibration, then communication failure, in that order and nothing else
    assert letters.startswith("N") and "C" in letters and letters.endswith("B")
    assert set(letters) == {"N", "C", "B"} and letters == "".join(sorted(letters, key="NCB".index))
    co2_normal = value[(channel == 0) & (flag == Flag.N)]
    assert (co2_normal == 18.5).all()
    temps = value[(channel == batches[0].channels.index(next(c for c in batches[0].channels if c.id == "temp")))
                  & (flag == Flag.N)]
    assert np.allclose(temps, 96.4)
