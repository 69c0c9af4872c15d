"""A Modbus TCP server that behaves like the CEMS racks of ``n`` stacks: each second it publishes the
generator's readings (:mod:`.generate`) in holding registers, with an analyser status word.

Register map of stack ``k`` (unit id 1, base ``k * STACK_REGISTERS``), big-endian (ABCD), offsets in
:data:`REGISTER_MAP`: the analysers and the fuel flow rate as float32 (co2 0, o2 2, moisture 4, temp 6,
pstatic 8, velocity 10, fuel_rate 12), the status word at 14 (bit 0 calibration, bit 1 maintenance,
bit 2 fault), the fuel totaliser as float64 at 16, the weigher's rate (float32) at 20 and totaliser
(float64) at 22: totalisers need float64 (a float32 holds 7 digits, 0.01 t resolution ends at 100,000 t).
A reading the generator flags C, M or D sets the matching status bit; a comm loss (B) shows as NaN with
the fault bit, as many analysers do. :func:`gateway_points` writes the matching point list for a gateway
file. The same server runs over TCP (:meth:`ModbusSimulator.serve`) or a serial line (:meth:`serve_rtu`).
"""

from __future__ import annotations

import asyncio

import numpy as np

from schemas.quantities import Flag

from .generate import CHANNELS, StackModel, simulate_stack, simulator_stack_model

__all__ = ["STACK_REGISTERS", "STATUS_OFFSET", "ModbusSimulator", "gateway_points"]

STACK_REGISTERS = 32
STATUS_OFFSET = 14
#: Channel -> (register offset within a stack, data type).
REGISTER_MAP = {
    "co2": (0, "float32"), "o2": (2, "float32"), "moisture": (4, "float32"), "temp": (6, "float32"),
    "pstatic": (8, "float32"), "velocity": (10, "float32"), "fuel_rate": (12, "float32"),
    "fuel_total": (16, "float64"), "product_rate": (20, "float32"), "product_total": (22, "float64"),
}
assert set(REGISTER_MAP) == set(CHANNELS)
_STATUS_BIT = {Flag.C: 0, Flag.M: 1, Flag.D: 2, Flag.B: 2}


def gateway_points(n_stacks: int) -> list[dict]:
    """Point definitions (as in a gateway file) for stack 0..n-1: ``{"stack": k, "channel": ..., ...}``."""
    return [
        {"stack": k, "channel": ch, "address": k * STACK_REGISTERS + offset, "data_type": dtype, "byte_order": "ABCD"}
        for k in range(n_stacks)
        for ch, (offset, dtype) in REGISTER_MAP.items()
    ]


class ModbusSimulator:
    """Serve ``n_stacks`` simulated stacks from precomputed 1 Hz series (deterministic from ``seed``)."""

    def __init__(self, n_stacks: int, seconds: int, *, start_ns: int, seed: int = 0, model: StackModel | None = None,
                 models: list[StackModel] | None = None):
        """``model`` for every stack, or ``models`` one per stack; default :func:`simulator_stack_model`."""
        self.n_stacks, self.seconds = n_stacks, seconds
        regs = np.zeros((seconds, n_stacks * STACK_REGISTERS), dtype=np.uint16)
        for k in range(n_stacks):  # per stack: whole series at once
            stack_model = models[k] if models else model or simulator_stack_model(k)
            readings, _ = simulate_stack(stack_model, start_ns, seconds, seed=seed + k)
            status = np.zeros(seconds, dtype=np.uint16)
            for ch, (value, flag) in readings.items():
                offset, dtype = REGISTER_MAP[ch]
                words = encode_value_vec(value, dtype)
                base = k * STACK_REGISTERS + offset
                regs[:, base : base + words.shape[1]] = words
                for f, bit in _STATUS_BIT.items():
                    status |= ((flag == f) << bit).astype(np.uint16)
            regs[:, k * STACK_REGISTERS + STATUS_OFFSET] = status
        self.registers = regs
        self.server = None

    def _device(self):
        from pymodbus.simulator import DataType as SimType
        from pymodbus.simulator import SimData, SimDevice

        return SimDevice(1, simdata=(
            [SimData(0, count=8, values=False, datatype=SimType.BITS)],
            [SimData(0, count=8, values=False, datatype=SimType.BITS)],
            [SimData(0, values=self.registers[0].tolist(), datatype=SimType.REGISTERS)],
            [SimData(0, values=[0] * 8, datatype=SimType.REGISTERS)],
        ))

    async def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve Modbus TCP until cancelled, advancing one row of readings per second."""
        from pymodbus.server import ModbusTcpServer

        await self._run(ModbusTcpServer(self._device(), address=(host, port)))

    async def serve_rtu(self, serial_port: str, *, baudrate: int = 9600, parity: str = "E", stopbits: int = 1) -> None:
        """Serve Modbus RTU on a serial port (8 data bits) until cancelled."""
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer

        await self._run(ModbusSerialServer(self._device(), framer=FramerType.RTU, port=serial_port,
                                           baudrate=baudrate, parity=parity, stopbits=stopbits))

    async def _run(self, server) -> None:
        self.server = server
        serving = asyncio.create_task(server.serve_forever())
        try:
            for t in range(1, self.seconds):
                await asyncio.sleep(1.0)
                await server.context.async_setValues(1, 3, 0, self.registers[t].tolist())
            await serving
        finally:
            await server.shutdown()
            serving.cancel()


def encode_value_vec(values: np.ndarray, data_type: str = "float32") -> np.ndarray:
    """ABCD registers of a whole float series: ``(n, 2)`` for float32, ``(n, 4)`` for float64, uint16."""
    dtype, words = {"float32": (">f4", 2), "float64": (">f8", 4)}[data_type]
    return np.asarray(values, dtype=dtype).view(">u2").reshape(-1, words).astype(np.uint16)

