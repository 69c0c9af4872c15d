"""The Modbus poll path against a real pymodbus TCP server on 127.0.0.1: planned requests over real
sockets, every data type and byte order decoded from known register contents, and device behaviour
(exception responses, NaN, out of range, a server that goes away) mapped to HJ 212 flags."""

from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np
import pytest

from edge_agent.modbus.client import compile_plan, read_plan
from edge_agent.modbus.decode import decode_block, encode_value
from edge_agent.modbus.planner import plan_reads
from edge_agent.modbus.points import ByteOrder, DataType, ModbusPoint
from schemas.quantities import Flag

pytestmark = pytest.mark.integration
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # exception responses log tracebacks by design


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_server(holding: list[int], coils: list[bool]):
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType as SimType
    from pymodbus.simulator import SimData, SimDevice

    device = SimDevice(1, simdata=(
        [SimData(0, values=coils, datatype=SimType.BITS)],
        [SimData(0, count=16, values=False, datatype=SimType.BITS)],
        [SimData(0, values=holding, datatype=SimType.REGISTERS)],
        [SimData(0, values=[0] * 8, datatype=SimType.REGISTERS)],
    ))
    port = free_port()
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    task = asyncio.create_task(server.serve_forever())
    for _ in range(50):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return server, task, port


VALUES = {DataType.float32: 123.25, DataType.float64: -98765.4321, DataType.int32: -123456789,
          DataType.uint32: 3_000_000_000, DataType.int16: -2, DataType.uint16: 65534}


def register_map():
    """Every data type in every byte order, laid out back to back from address 0; the points and the
    register contents that hold their values."""
    points, regs = [], []
    for dtype, value in VALUES.items():
        for order in ByteOrder:
            points.append(ModbusPoint(channel=f"{dtype}-{order}", address=len(regs), data_type=dtype, byte_order=order))
            regs += encode_value(value, dtype, order)
    return points, regs


async def test_every_type_and_order_over_a_real_socket():
    from pymodbus.client import AsyncModbusTcpClient

    points, regs = register_map()
    assert len(regs) == 4 * (2 + 4 + 2 + 2 + 1 + 1)  # 48 registers
    # scale/offset and a range check on one extra point; one coil
    points.append(ModbusPoint(channel="temp", address=len(regs), data_type="int16", scale=0.1, offset=-40.0,
                              low=-40.0, high=400.0))
    regs += [1364]  # 1364 x 0.1 - 40 = 96.4 °C
    points.append(ModbusPoint(channel="run", register="coil", address=2, data_type="bool"))
    server, task, port = await start_server(regs + [0] * 10, [False, False, True, False])
    try:
        plan = plan_reads(points)
        assert sorted((r.register.value, r.address, r.count) for r in plan) == [("coil", 2, 1), ("holding", 0, 49)]
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        result = await read_plan(client, compile_plan(plan, points), len(points))
        client.close()
    finally:
        await server.shutdown()
        task.cancel()
    assert result.requests == 2 and result.failed_requests == 0
    assert (result.flag == Flag.N).all()
    for i, p in enumerate(points[:-2]):
        assert result.value[i] == VALUES[p.data_type], p.channel
    assert result.value[-2] == pytest.approx(96.4)
    assert result.value[-1] == 1.0


async def test_device_behaviour_becomes_flags_never_exceptions():
    from pymodbus.client import AsyncModbusTcpClient

    regs = [0] * 20
    regs[0:2] = encode_value(float("nan"), DataType.float32, ByteOrder.ABCD)  # analyser writes NaN on fault
    regs[2:4] = encode_value(25.0, DataType.float32, ByteOrder.ABCD)  # O2 25 % > configured high 21 %
    points = [
        ModbusPoint(channel="co2", address=0),
        ModbusPoint(channel="o2", address=2, high=21.0),
        ModbusPoint(channel="beyond-map", address=100, data_type="int16"),  # exception 2: illegal address
        ModbusPoint(channel="other-unit", unit_id=9, address=0, data_type="int16"),  # no such device
    ]
    server, task, port = await start_server(regs, [False] * 8)
    plan = compile_plan(plan_reads(points), points)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    try:
        assert await client.connect()
        first = await read_plan(client, plan, len(points))
    finally:
        await server.shutdown()
        task.cancel()
    assert first.flag.tolist() == [Flag.D, Flag.T, Flag.D, Flag.D]
    assert np.isnan(first.value[0]) and first.value[1] == 25.0
    assert sorted(first.exception_codes.values()) == [2, 4]  # illegal address; device failure

    # The server is gone: every point is a communication failure, and nothing raises.
    await asyncio.sleep(0.1)
    second = await read_plan(client, plan, len(points))
    client.close()
    assert (second.flag == Flag.B).all() and np.isnan(second.value).all()
    assert second.failed_requests == second.requests == 3


async def test_simulator_server_publishes_the_generator_readings():
    from pymodbus.client import AsyncModbusTcpClient

    from edge_agent.simulator.generate import simulate_stack, simulator_stack_model
    from edge_agent.simulator.modbus_server import STACK_REGISTERS, STATUS_OFFSET, ModbusSimulator, gateway_points

    t0 = 1_767_225_600 * 10**9
    sim = ModbusSimulator(2, 5, start_ns=t0, seed=3)
    port = free_port()
    serving = asyncio.create_task(sim.serve(port))
    await asyncio.sleep(0.3)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert await client.connect()
        rr = await client.read_holding_registers(0, count=2 * STACK_REGISTERS, device_id=1)
    finally:
        client.close()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    points = gateway_points(2)
    assert len(points) == 20 and points[10] == {"stack": 1, "channel": "co2", "address": 32, "data_type": "float32",
                                                "byte_order": "ABCD"}
    assert points[17] == {"stack": 1, "channel": "fuel_total", "address": 48, "data_type": "float64",
                          "byte_order": "ABCD"}
    readings, _ = simulate_stack(simulator_stack_model(1), t0, 5, seed=4)  # stack 1: seed 3 + 1
    co2 = decode_block(rr.registers, [STACK_REGISTERS], DataType.float32, ByteOrder.ABCD)[0]
    assert co2 == pytest.approx(readings["co2"][0][0], rel=1e-6)  # float32 of the generated second 0
    fuel_total = decode_block(rr.registers, [48], DataType.float64, ByteOrder.ABCD)[0]
    assert fuel_total == readings["fuel_total"][0][0]  # float64: exact
    assert 20_000 < fuel_total < 20_001  # stack 1 starts at 20,000 t and adds about 9 t/h / 3600 per second
    assert rr.registers[STACK_REGISTERS + STATUS_OFFSET] == 0  # no fault at t = 0
