"""Block-read planner: coalesce point reads into as few Modbus requests as the register map allows.

A pure function of the point list, so the plan can be logged at start-up, tested exactly, and
reused every poll cycle. Points are grouped by (unit id, register type), sorted by address, and
merged while the next point starts within ``max_gap`` of the current request's end and the request
stays within the protocol limit. Reading a few unused registers in a gap is cheaper than another
round trip on a serial line; ``max_gap=0`` reads only what is configured.

Limits: Modbus Application Protocol Specification V1.1b3, §6.1-6.4: read coils / discrete inputs
1..2000 bits, read holding / input registers 1..125 registers per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from .points import ModbusPoint, RegisterType

__all__ = ["MAX_READ_BITS", "MAX_READ_REGISTERS", "ReadRequest", "plan_reads"]

MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


@dataclass(frozen=True)
class ReadRequest:
    unit_id: int
    register: RegisterType
    address: int  # first wire address
    count: int  # registers or bits
    points: tuple[int, ...]  # indices of the points it serves
    offsets: tuple[int, ...]  # each point's start within the response


def plan_reads(
    points: list[ModbusPoint],
    *,
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
    max_gap_registers: int = 8,
    max_gap_bits: int = 64,
) -> list[ReadRequest]:
    """E.g. holding points at 0 (float32), 2 (float32), 20 (int16) with ``max_gap_registers=8``:
    [0, 4) and [20, 21) -> two requests, ``(0, 4)`` and ``(20, 1)``; with a gap of 16 -> one, ``(0, 21)``."""
    if not 1 <= max_registers <= MAX_READ_REGISTERS or not 1 <= max_bits <= MAX_READ_BITS:
        raise ValueError(f"request limits must be 1..{MAX_READ_REGISTERS} registers and 1..{MAX_READ_BITS} bits")
    groups: dict[tuple[int, RegisterType], list[int]] = {}
    for i, p in enumerate(points):  # configuration, once at start-up
        groups.setdefault((p.unit_id, p.register_type), []).append(i)
    plan: list[ReadRequest] = []
    for (unit, reg), idx in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        limit, gap = (max_bits, max_gap_bits) if reg.is_bits else (max_registers, max_gap_registers)
        idx.sort(key=lambda i: (points[i].wire_address, -points[i].words))
        runs: list[tuple[int, int, list[int]]] = []  # (start, end, members) of each request
        for i in idx:
            a, b = points[i].wire_address, points[i].wire_address + points[i].words
            if runs and a - runs[-1][1] <= gap and max(runs[-1][1], b) - runs[-1][0] <= limit:
                start, end, members = runs[-1]
                runs[-1] = (start, max(end, b), [*members, i])
            else:
                runs.append((a, b, [i]))
        plan += [ReadRequest(unit, reg, start, end - start, tuple(members),
                             tuple(points[i].wire_address - start for i in members)) for start, end, members in runs]
    return plan
