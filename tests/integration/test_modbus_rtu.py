"""Modbus RTU over a real serial line: pyserial on pseudo-terminals joined by a null-modem copy thread,
a pymodbus RTU server on one end, the agent's RTU driver on the other (RTU framing, CRC, timeouts)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
import yaml

from edge_agent.config import GatewayConfig, ModbusRtuDevice
from edge_agent.modbus.decode import encode_value
from edge_agent.modbus.driver import modbus_driver
from edge_agent.modbus.points import ByteOrder, DataType
from edge_agent.simulator.nullmodem import NullModem
from schemas import Flag
from schemas.errors import ConfigError
from tests.integration.test_edge_cli import EXAMPLE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
T0 = 1_767_225_600 * 10**9


def rtu_device(dev_id: str, port: str, unit: int, **extra) -> ModbusRtuDevice:
    return ModbusRtuDevice.model_validate({
        "id": dev_id, "protocol": "modbus_rtu", "serial_port": port, "baudrate": 19200, "parity": "N", "stopbits": 2,
        "timeout_s": 0.3, "source": "kiln1-stack",
        "points": [
            {"channel": "co2", "unit_id": unit, "address": 0, "data_type": "float32", "byte_order": "CDAB"},
            {"channel": "o2", "unit_id": unit, "address": 2, "data_type": "int16", "scale": 0.01},
            {"channel": "temp", "unit_id": unit, "address": 3, "data_type": "uint32", "byte_order": "DCBA",
             "scale": 0.1},
        ], **extra})


async def serve_units(port: str, registers: dict[int, list[int]]):
    from pymodbus import FramerType
    from pymodbus.server import ModbusSerialServer
    from pymodbus.simulator import DataType as SimType
    from pymodbus.simulator import SimData, SimDevice

    devices = [SimDevice(unit, simdata=([SimData(0, count=8, values=False, datatype=SimType.BITS)],
                                        [SimData(0, count=8, values=False, datatype=SimType.BITS)],
                                        [SimData(0, values=regs, datatype=SimType.REGISTERS)],
                                        [SimData(0, values=[0] * 8, datatype=SimType.REGISTERS)]))
               for unit, regs in registers.items()]
    server = ModbusSerialServer(devices, framer=FramerType.RTU, port=port, baudrate=19200, parity="N",
                               stopbits=2)
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.3)
    return server, task


def unit_registers(co2: float, o2: float, temp: float) -> list[int]:
    regs = [0] * 16
    regs[0:2] = encode_value(co2, DataType.float32, ByteOrder.CDAB)
    regs[2:3] = encode_value(round(o2 / 0.01), DataType.int16, ByteOrder.ABCD)
    regs[3:5] = encode_value(round(temp / 0.1), DataType.uint32, ByteOrder.DCBA)
    return regs


async def test_two_units_share_one_line_and_take_turns():
    with NullModem() as cable:
        server, task = await serve_units(cable.a, {1: unit_registers(18.5, 7.25, 96.4),
                                                   2: unit_registers(11.0, -0.5, 150.3)})
        lines: dict = {}
        d1, d2 = (modbus_driver(rtu_device(f"an{u}", cable.b, u), lines) for u in (1, 2))
        try:
            assert len(lines) == 1 and d1.client is d2.client  # one port, one connection
            assert await d1.connect() and await d2.connect()
            r1, r2 = await asyncio.gather(d1.poll(T0), d2.poll(T0))  # concurrent cycles serialise on the line
            # hand-encoded above: float32 18.5 word-swapped, int16 725 x 0.01, uint32 964 little-endian x 0.1
            np.testing.assert_allclose(r1.value, [18.5, 7.25, 96.4])
            np.testing.assert_allclose(r2.value, [11.0, -0.5, 150.3])
            assert (r1.flag == Flag.N).all() and (r2.flag == Flag.N).all()
            assert r1.requests == r2.requests == 1  # 5 registers in one read per unit
            assert (r1.ts_ns == T0).all() and r1.point.tolist() == [0, 1, 2]
        finally:
            await d1.close()
            assert d2.client.connected  # still used by the other device
            await d2.close()
            await server.shutdown()
            task.cancel()


async def test_cut_line_flags_comm_failure_and_recovers():
    with NullModem() as cable:
        server, task = await serve_units(cable.a, {3: unit_registers(18.5, 7.25, 96.4)})
        driver = modbus_driver(rtu_device("an3", cable.b, 3), {})
        try:
            assert await driver.connect()
            assert ((await driver.poll(T0)).flag == Flag.N).all()
            cable.unplug()
            cut = await driver.poll(T0 + 10**9)  # no answer within timeout_s
            assert (cut.flag == Flag.B).all() and np.isnan(cut.value).all() and cut.comm_errors == 1
            cable.plug()
            await asyncio.sleep(0.2)
            if not driver.connected:
                assert await driver.connect()
            back = await driver.poll(T0 + 2 * 10**9)
            assert (back.flag == Flag.N).all()
            np.testing.assert_allclose(back.value, [18.5, 7.25, 96.4])
        finally:
            await driver.close()
            await server.shutdown()
            task.cancel()


async def test_simulator_over_rtu_matches_the_generator():
    from edge_agent.simulator.generate import simulate_stack, simulator_stack_model
    from edge_agent.simulator.modbus_server import STATUS_OFFSET, ModbusSimulator, gateway_points

    sim = ModbusSimulator(1, 5, start_ns=T0, seed=7)
    with NullModem() as cable:
        serving = asyncio.create_task(sim.serve_rtu(cable.a, baudrate=19200, parity="N", stopbits=2))
        await asyncio.sleep(0.3)
        device = ModbusRtuDevice.model_validate({
            "id": "rack", "protocol": "modbus_rtu", "serial_port": cable.b, "baudrate": 19200, "parity": "N",
            "stopbits": 2, "source": "s",
            "status": {"address": STATUS_OFFSET, "bits": {0: "C", 1: "M", 2: "D"}},
            "points": [{k: v for k, v in p.items() if k != "stack"} for p in gateway_points(1)]})
        driver = modbus_driver(device, {})
        try:
            assert await driver.connect()
            r = await driver.poll(T0)
        finally:
            await driver.close()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    readings, _ = simulate_stack(simulator_stack_model(0), T0, 5, seed=7)
    expected = [readings[p["channel"]][0][0] for p in gateway_points(1)]
    np.testing.assert_allclose(r.value, expected, rtol=1e-6)  # float32 registers; totalisers float64
    assert r.requests == 1 and r.status == 0 and (r.flag == Flag.N).all()


def test_devices_on_one_port_must_agree_on_line_settings(tmp_path):
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["devices"] = [
        {"id": "a", "protocol": "modbus_rtu", "serial_port": "/dev/ttyS1", "source": "kiln1-stack",
         "points": [{"channel": "co2", "address": 0}]},
        {"id": "b", "protocol": "modbus_rtu", "serial_port": "/dev/ttyS1", "baudrate": 19200, "source": "kiln1-stack",
         "points": [{"channel": "o2", "unit_id": 2, "address": 0}]},
    ]
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    from edge_agent.config import load_gateway_config

    with pytest.raises(ConfigError, match=r"devices\[1\].baudrate.*share one line"):
        load_gateway_config(path)
    assert GatewayConfig.model_validate(doc).devices[0].parity == "E"  # Modbus serial line default: 8E1
