"""Modbus TCP and RTU drivers: a compiled read plan executed over a pymodbus async client.

TCP devices each hold their own connection. Devices on one serial line share a single
:class:`SerialLine` (one port can be opened once, and a Modbus serial line has exactly one master
that speaks to one unit at a time), so their cycles take turns under the line's lock.
"""

from __future__ import annotations

import asyncio

import numpy as np

from schemas._optional import require
from schemas.quantities import Flag

from ..config import status_point
from ..driver import CycleReadings, Driver
from .client import compile_plan, read_plan
from .planner import plan_reads
from .points import ModbusPoint

__all__ = ["ModbusDriver", "SerialLine", "modbus_driver"]


class SerialLine:
    """One serial port: its client, and the lock every device on it polls under."""

    def __init__(self, device) -> None:
        require("serial", extra="edge", purpose="Modbus RTU (pyserial)")
        from pymodbus import FramerType
        from pymodbus.client import AsyncModbusSerialClient

        self.settings = (device.baudrate, device.bytesize, device.parity, device.stopbits)
        self.client = AsyncModbusSerialClient(
            device.serial_port, framer=FramerType.RTU, baudrate=device.baudrate, bytesize=device.bytesize,
            parity=device.parity, stopbits=device.stopbits, timeout=device.timeout_s, retries=0, reconnect_delay=0)
        self.lock = asyncio.Lock()
        self.users = 0


class ModbusDriver(Driver):
    """Reads every point of one device per cycle; the status word, when configured, is read in the same
    plan and flags the cycle's normal readings (calibration, maintenance, fault...)."""

    def __init__(self, device, client, lock: asyncio.Lock | None = None, line: SerialLine | None = None) -> None:
        self.device, self.client, self._lock, self._line = device, client, lock or asyncio.Lock(), line
        self.points: list[ModbusPoint] = list(device.points)
        self.n_points = len(self.points)
        status = status_point(device)
        if status is not None:
            self.points.append(status)
        self.requests = plan_reads(self.points, max_gap_registers=device.max_gap_registers)
        self.plan = compile_plan(self.requests, self.points)
        self._index = np.arange(self.n_points, dtype=np.uint16)

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    async def connect(self) -> bool:
        async with self._lock:
            return self.client.connected or bool(await self.client.connect())

    async def poll(self, now_ns: int) -> CycleReadings:
        async with self._lock:
            result = await read_plan(self.client, self.plan, len(self.points))
        n = self.n_points
        value, flag = result.value[:n], result.flag[:n]
        status = None
        if self.device.status is not None and result.flag[n] == Flag.N:
            status = int(result.value[n])
            flag = np.where(flag == Flag.N, np.uint8(self.device.status.flag_of(status)), flag)
        n_exc = len(result.exception_codes)
        return CycleReadings(np.full(n, now_ns, dtype=np.int64), self._index, value, flag,
                             requests=result.requests, comm_errors=result.failed_requests - n_exc,
                             device_errors=n_exc, status=status, raw={"registers": result.raw,
                                                                       "exception_codes": result.exception_codes})

    async def close(self) -> None:
        if self._line is not None:
            self._line.users -= 1
            if self._line.users > 0:
                return
        self.client.close()


def modbus_driver(device, lines: dict[str, SerialLine]) -> ModbusDriver:
    """A driver for a TCP or RTU device; RTU devices on the same port share ``lines[port]``."""
    if device.protocol == "modbus_tcp":
        from pymodbus.client import AsyncModbusTcpClient

        return ModbusDriver(device, AsyncModbusTcpClient(device.host, port=device.port, timeout=device.timeout_s,
                                                         retries=0, reconnect_delay=0))
    line = lines.get(device.serial_port)
    if line is None:
        line = lines[device.serial_port] = SerialLine(device)
    line.users += 1
    return ModbusDriver(device, line.client, line.lock, line)
