"""A Modbus TCP server that behaves like the CEMS racks of ``n`` stacks: each second it publishes the
generator's readings (:mod:`.generate`) in holding registers, with an analyser status word.

Register map of stack ``k`` (unit id 1, base ``k * STACK_REGISTERS``), float32 big-endian (ABCD):
co2 0, o2 2, moisture 4, temp 6, pstatic 8, velocity 10, fuel_rate 12; status word at 14 (bit 0
calibration, bit 1 maintenance, bit 2 fault). A reading the generator flags C, M or D sets the
matching status bit, a comm loss (B) shows as NaN with the fault bit, as many analysers do.
:func:`gateway_points` writes the matching point list for a gateway file.
"""

from __future__ import annotations

import asyncio

import numpy as np

from schemas.quantities import Flag

from .generate import CHANNELS, StackModel, simulate_stack

__all__ = ["STACK_REGISTERS", "STATUS_OFFSET", "ModbusSimulator", "gateway_points"]

STACK_REGISTERS = 16
STATUS_OFFSET = 14
_STATUS_BIT = {Flag.C: 0, Flag.M: 1, Flag.D: 2, Flag.B: 2}


def gateway_points(n_stacks: int) -> list[dict]:
    """Point definitions (as in a gateway file) for stack 0..n-1: ``{"stack": k, "channel": ..., ...}``."""
    return [
        {"stack": k, "channel": ch, "address": k * STACK_REGISTERS + 2 * j, "data_type": "float32", "byte_order": "ABCD"}
        for k in range(n_stacks)
        for j, ch in enumerate(CHANNELS)
    ]


class ModbusSimulator:
    """Serve ``n_stacks`` simulated stacks from precomputed 1 Hz series (deterministic from ``seed``)."""

    def __init__(self, n_stacks: int, seconds: int, *, start_ns: int, seed: int = 0, model: StackModel | None = None):
        self.n_stacks, self.seconds = n_stacks, seconds
        regs = np.zeros((seconds, n_stacks * STACK_REGISTERS), dtype=np.uint16)
        for k in range(n_stacks):  # per stack: whole series at once
            readings, _ = simulate_stack(model or StackModel(fuel_t_h=8.0 + k % 7), start_ns, seconds, seed=seed + k)
            status = np.zeros(seconds, dtype=np.uint16)
            for j, (value, flag) in enumerate(readings.values()):
                words = np.array(encode_value_vec(value), dtype=np.uint16)
                regs[:, k * STACK_REGISTERS + 2 * j : k * STACK_REGISTERS + 2 * j + 2] = words
                for f, bit in _STATUS_BIT.items():
                    status |= ((flag == f) << bit).astype(np.uint16)
            regs[:, k * STACK_REGISTERS + STATUS_OFFSET] = status
        self.registers = regs
        self.server = None

    async def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve until cancelled, advancing one row of readings per second."""
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType as SimType
        from pymodbus.simulator import SimData, SimDevice

        n = self.registers.shape[1]
        device = SimDevice(1, simdata=(
            [SimData(0, count=8, values=False, datatype=SimType.BITS)],
            [SimData(0, count=8, values=False, datatype=SimType.BITS)],
            [SimData(0, values=self.registers[0].tolist(), datatype=SimType.REGISTERS)],
            [SimData(0, values=[0] * 8, datatype=SimType.REGISTERS)],
        ))
        self.server = ModbusTcpServer(device, address=(host, port))
        serving = asyncio.create_task(self.server.serve_forever())
        try:
            for t in range(1, self.seconds):
                await asyncio.sleep(1.0)
                await self.server.context.async_setValues(1, 3, 0, self.registers[t, :n].tolist())
            await serving
        finally:
            await self.server.shutdown()
            serving.cancel()


def encode_value_vec(values: np.ndarray) -> np.ndarray:
    """float32 ABCD register pairs of a whole series: ``(n, 2)`` uint16 (vectorised :func:`encode_value`)."""
    return np.asarray(values, dtype=">f4").view(">u2").reshape(-1, 2).astype(np.uint16)

