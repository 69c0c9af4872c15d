"""Poll shell: run a read plan against a device with pymodbus and turn every outcome into flagged values.

Nothing a device does crashes the poll: a transport failure (timeout, refused or dropped connection)
flags the request's points B (communication failure, HJ 212-2017 Table 8); a Modbus exception
response flags them D (instrument fault); a NaN or infinite float is D; a value outside the point's
configured range is T. Decoding is vectorised per (data type, byte order) within each response.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from schemas.quantities import Flag

from .decode import decode_block
from .planner import ReadRequest
from .points import ByteOrder, DataType, ModbusPoint, RegisterType

try:
    from pymodbus.exceptions import ModbusException
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("edge_agent.modbus needs the 'edge' extra: pip install 'cems-pipeline[edge]'") from exc

__all__ = ["CompiledRequest", "PollResult", "compile_plan", "read_plan"]

_READ = {
    RegisterType.holding: "read_holding_registers",
    RegisterType.input: "read_input_registers",
    RegisterType.coil: "read_coils",
    RegisterType.discrete: "read_discrete_inputs",
}


class PollResult:
    """Values and flags of every point after one poll cycle, plus what the cycle cost."""

    def __init__(self, n: int) -> None:
        self.value = np.full(n, np.nan)
        self.flag = np.full(n, Flag.B, dtype=np.uint8)
        self.requests = 0
        self.failed_requests = 0
        self.exception_codes: dict[int, int] = {}  # request index -> Modbus exception code
        self.raw: dict[int, np.ndarray] = {}  # request index -> registers or bits as received


@dataclass(frozen=True)
class _Decoder:
    """Points of one request sharing a data type and byte order, with their constants as arrays."""

    data_type: DataType
    order: ByteOrder
    points: np.ndarray  # indices into the point list
    offsets: np.ndarray  # starts within the response
    scale: np.ndarray
    offset: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class CompiledRequest:
    request: ReadRequest
    members: np.ndarray
    decoders: tuple[_Decoder, ...]


def compile_plan(plan: list[ReadRequest], points: list[ModbusPoint]) -> list[CompiledRequest]:
    """Precompute, once at start-up, every array the poll loop needs (Telegraf compiles its converters
    the same way): the loop then only slices responses and calls numpy."""
    out = []
    for req in plan:
        groups: dict[tuple, list[int]] = {}
        for j, i in enumerate(req.points):
            groups.setdefault((points[i].data_type, points[i].byte_order), []).append(j)
        decoders = []
        for (dtype, order), js in groups.items():
            idx = [req.points[j] for j in js]
            decoders.append(_Decoder(
                dtype, order, np.array(idx), np.array([req.offsets[j] for j in js]),
                np.array([points[i].scale for i in idx]), np.array([points[i].offset for i in idx]),
                np.array([-np.inf if points[i].low is None else points[i].low for i in idx]),
                np.array([np.inf if points[i].high is None else points[i].high for i in idx]),
            ))
        out.append(CompiledRequest(req, np.array(req.points), tuple(decoders)))
    return out


async def read_plan(client, plan: list[CompiledRequest], n_points: int) -> PollResult:
    """Execute a compiled plan with a connected pymodbus async client; never raises for device behaviour."""
    result = PollResult(n_points)
    for r, compiled in enumerate(plan):  # one round trip per request: the planner keeps these few
        req = compiled.request
        result.requests += 1
        try:
            resp = await getattr(client, _READ[req.register])(req.address, count=req.count, device_id=req.unit_id)
        except (ModbusException, ConnectionError, asyncio.TimeoutError, OSError):
            result.failed_requests += 1
            continue  # points stay flagged B
        if resp.isError():
            result.failed_requests += 1
            result.flag[compiled.members] = Flag.D
            result.exception_codes[r] = int(getattr(resp, "exception_code", 0) or 0)
            continue
        block = np.asarray(resp.bits[: req.count] if req.register.is_bits else resp.registers)
        result.raw[r] = block
        for d in compiled.decoders:
            values = decode_block(block, d.offsets, d.data_type, d.order, d.scale, d.offset)
            finite = np.isfinite(values)
            result.value[d.points] = np.where(finite, values, np.nan)
            out_of_range = (values < d.low) | (values > d.high)
            result.flag[d.points] = np.where(~finite, Flag.D, np.where(out_of_range, Flag.T, Flag.N))
    return result
