"""Poll shell: run a read plan against a device with pymodbus and turn every outcome into flagged values.

Nothing a device does crashes the poll: a transport failure (timeout, refused or dropped connection)
flags the request's points B (communication failure, HJ 212-2017 Table 8); a Modbus exception
response flags them D (instrument fault); a NaN or infinite float is D; a value outside the point's
configured range is T. Decoding is vectorised per (data type, byte order) within each response.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas._optional import needs_extra
from schemas.quantities import Flag

from .decode import _BIG_ENDIAN
from .planner import ReadRequest
from .points import WORDS, DataType, ModbusPoint, RegisterType

with needs_extra("edge", "a Modbus device"):
    from pymodbus.exceptions import ModbusException

__all__ = ["CompiledRequest", "PollResult", "compile_plan", "read_plan"]

_N, _D, _T = np.uint8(Flag.N), np.uint8(Flag.D), np.uint8(Flag.T)

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
    """Points of one request sharing a data type and byte order, with everything precomputed as arrays:
    which registers to gather (word order already applied), and scale, offset and range only when used."""

    data_type: DataType
    points: np.ndarray  # indices into the point list
    gather: np.ndarray  # (points, words) register indices into the response, in big-endian word order
    bytes_swapped: bool
    scale: np.ndarray | None
    offset: np.ndarray | None
    low: np.ndarray | None
    high: np.ndarray | None

    def decode(self, block: np.ndarray) -> np.ndarray:
        """Values of these points from one response (uint16 registers or bits)."""
        w = block[self.gather]
        if self.data_type == DataType.bool:
            values = (w[:, 0] != 0).astype(np.float64)
        else:
            if self.bytes_swapped:
                w = w.byteswap()
            values = w.astype(">u2").view(_BIG_ENDIAN[self.data_type]).reshape(-1).astype(np.float64)
        if self.scale is not None:
            values = values * self.scale + self.offset
        return values


@dataclass(frozen=True)
class CompiledRequest:
    request: ReadRequest
    members: np.ndarray
    decoders: tuple[_Decoder, ...]


def compile_plan(plan: list[ReadRequest], points: list[ModbusPoint]) -> list[CompiledRequest]:
    """Precompute, once at start-up, every array the poll loop needs (Telegraf compiles its converters
    the same way): the loop then only indexes responses and calls numpy a few times per request."""
    out = []
    for req in plan:
        groups: dict[tuple, list[int]] = {}
        for j, i in enumerate(req.points):
            groups.setdefault((points[i].data_type, points[i].byte_order), []).append(j)
        decoders = []
        for (dtype, order), js in groups.items():
            pts = [points[req.points[j]] for j in js]
            k = WORDS[dtype]
            words = np.arange(k)[::-1] if order.words_swapped and dtype != DataType.bool else np.arange(k)
            gather = np.array([req.offsets[j] for j in js])[:, None] + words
            scale, offset = np.array([p.scale for p in pts]), np.array([p.offset for p in pts])
            low = np.array([-np.inf if p.low is None else p.low for p in pts])
            high = np.array([np.inf if p.high is None else p.high for p in pts])
            identity = bool((scale == 1).all() and (offset == 0).all())
            bounded = bool(np.isfinite(low).any() or np.isfinite(high).any())
            decoders.append(_Decoder(dtype, np.array([req.points[j] for j in js]), gather, order.bytes_swapped,
                                     None if identity else scale, None if identity else offset,
                                     low if bounded else None, high if bounded else None))
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
        except (TimeoutError, ModbusException, ConnectionError, OSError):
            result.failed_requests += 1
            continue  # points stay flagged B
        if resp.isError():
            result.failed_requests += 1
            result.flag[compiled.members] = Flag.D
            result.exception_codes[r] = int(getattr(resp, "exception_code", 0) or 0)
            continue
        block = np.array(resp.bits[: req.count] if req.register.is_bits else resp.registers, dtype=np.uint16)
        result.raw[r] = block
        for d in compiled.decoders:
            values = d.decode(block)
            finite = np.isfinite(values)
            flag = np.where(finite, _N, _D)
            if d.low is not None:
                flag[finite & ((values < d.low) | (values > d.high))] = _T
            result.value[d.points] = np.where(finite, values, np.nan)
            result.flag[d.points] = flag
    return result
