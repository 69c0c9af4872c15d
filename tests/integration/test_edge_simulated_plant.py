"""The agent against both protocol simulators at once, as `cems edge simulate --gateway-out` wires them:
stack 0 over Modbus TCP, stack 1 over an OPC UA subscription; every batch reaches the real broker, and
the OPC UA readings carry the simulator's source timestamps and the generator's values."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edge_agent.agent import EdgeAgent
from edge_agent.cli import _simulated_gateway
from edge_agent.config import GatewayConfig
from edge_agent.simulator.generate import simulate_stack, simulator_stack_model
from edge_agent.simulator.modbus_server import ModbusSimulator
from edge_agent.simulator.opcua_server import OpcUaSimulator
from schemas import Flag
from schemas.agent_batch import decode_message
from streams.cli import main
from tests.integration.test_modbus_tcp import free_port
from tests.integration.test_uplink import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
logging.getLogger("asyncua").setLevel(logging.CRITICAL)
KEY = b"p" * 32


async def test_agent_reads_modbus_and_opcua_simulators_into_kafka(tmp_path, kafka_bootstrap):
    start_ns = time.time_ns() // 10**9 * 10**9
    mb_port, ua_port = free_port(), free_port()
    modbus = ModbusSimulator(2, 120, start_ns=start_ns, seed=5)
    opcua = OpcUaSimulator(2, 120, start_ns=start_ns, seed=5)
    servers = [asyncio.create_task(modbus.serve(mb_port)), asyncio.create_task(opcua.serve(ua_port))]
    for _ in range(100):
        if opcua.ready.is_set():
            break
        await asyncio.sleep(0.1)

    doc = yaml.safe_load(_simulated_gateway(2, "127.0.0.1", mb_port, ua_port, None))
    assert [d["protocol"] for d in doc["devices"]] == ["modbus_tcp", "opcua"]
    topic = f"cems.test.plant.{uuid.uuid4().hex[:8]}"
    (tmp_path / "key").write_bytes(KEY)
    doc["agent"] |= {"key_file": str(tmp_path / "key"), "outbox_dir": str(tmp_path / "outbox"), "batch_interval_s": 1}
    doc["kafka"] = {"bootstrap_servers": kafka_bootstrap, "topic": topic}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    probe = await asyncio.to_thread(CliRunner().invoke, main, ["edge", "probe", str(path), "stack1-opcua", "co2"])
    assert probe.exit_code == 0 and "Double" in probe.output and "status Good" in probe.output, probe.output

    agent = EdgeAgent(GatewayConfig.model_validate(doc), KEY)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(5.0)
    stop.set()
    await run
    for s in servers:
        s.cancel()
    await asyncio.gather(*servers, return_exceptions=True)

    assert agent.outbox.count == 0
    messages = [decode_message(r.value) for r in read_topic(kafka_bootstrap, topic, agent.outbox.next_seq)]
    batches = [b for m in messages for b in m.sections]  # one agent batch per interval, a section per stack
    assert {m.version for m in messages} == {3} and max(len(m.sections) for m in messages) == 2
    assert {b.seq for b in batches} == set(range(agent.outbox.next_seq))
    by_source = {s: [b for b in batches if b.source_id == s] for s in ("stack0", "stack1")}
    assert all(by_source.values())

    # OPC UA: readings stamped with the simulator's source time, whole seconds after start, values as generated
    opc = by_source["stack1"]
    ts = np.concatenate([b.ts_ns for b in opc])
    ch = np.concatenate([b.channel for b in opc])
    val = np.concatenate([b.value for b in opc])
    flag = np.concatenate([b.flag for b in opc])
    names = [c.id for c in opc[0].channels]
    t = (ts - start_ns) // 10**9
    assert ((ts - start_ns) % 10**9 == 0).all() and (flag == Flag.N).all()
    assert len(np.unique(t)) >= 3  # several simulated seconds arrived
    readings, _ = simulate_stack(simulator_stack_model(1), start_ns, 120, seed=6)  # stack 1: seed 5 + 1
    expected = np.array([readings[names[c]][0][s] for c, s in zip(ch, t, strict=True)])
    np.testing.assert_array_equal(val, expected)  # Double variables: the generator's float64, bit for bit

    # Modbus: one reading per point per poll cycle, stamped with the poll time (float32 registers)
    mb = by_source["stack0"]
    assert sum(b.ts_ns.size for b in mb) >= 3 * 10
