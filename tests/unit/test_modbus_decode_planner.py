"""Modbus decoding (every data type x byte order, from hand-written register contents) and the block planner."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edge_agent.modbus.decode import decode_block, decode_words, encode_value
from edge_agent.modbus.planner import MAX_READ_REGISTERS, plan_reads
from edge_agent.modbus.points import ByteOrder, DataType, ModbusPoint

# 123.25 as IEEE-754 float32 is 0x42F68000: bytes A=42 B=F6 C=80 D=00.
# -123456789 as int32 is 0xF8A432EB: A=F8 B=A4 C=32 D=EB. 3000000000 as uint32 is 0xB2D05E00.
# 1.5 as float64 is 0x3FF8000000000000. -2 as int16 is 0xFFFE; 65534 as uint16 is 0xFFFE.
TABLE = [
    (DataType.float32, 123.25, {"ABCD": [0x42F6, 0x8000], "CDAB": [0x8000, 0x42F6],
                                "BADC": [0xF642, 0x0080], "DCBA": [0x0080, 0xF642]}),
    (DataType.int32, -123456789, {"ABCD": [0xF8A4, 0x32EB], "CDAB": [0x32EB, 0xF8A4],
                                  "BADC": [0xA4F8, 0xEB32], "DCBA": [0xEB32, 0xA4F8]}),
    (DataType.uint32, 3_000_000_000, {"ABCD": [0xB2D0, 0x5E00], "CDAB": [0x5E00, 0xB2D0],
                                      "BADC": [0xD0B2, 0x005E], "DCBA": [0x005E, 0xD0B2]}),
    (DataType.float64, 1.5, {"ABCD": [0x3FF8, 0, 0, 0], "CDAB": [0, 0, 0, 0x3FF8],
                             "BADC": [0xF83F, 0, 0, 0], "DCBA": [0, 0, 0, 0xF83F]}),
    (DataType.int16, -2, {"ABCD": [0xFFFE], "CDAB": [0xFFFE], "BADC": [0xFEFF], "DCBA": [0xFEFF]}),
    (DataType.uint16, 65534, {"ABCD": [0xFFFE], "CDAB": [0xFFFE], "BADC": [0xFEFF], "DCBA": [0xFEFF]}),
]
CASES = [(dt, value, ByteOrder(o), regs) for dt, value, by_order in TABLE for o, regs in by_order.items()]


@pytest.mark.parametrize(("data_type", "value", "order", "registers"), CASES)
def test_decode_known_register_contents(data_type, value, order, registers):
    assert decode_words([registers], data_type, order)[0] == value
    assert encode_value(value, data_type, order) == registers


def test_decode_block_many_points_with_scale_and_offset():
    # block: [float32 ABCD 123.25][int16 -2][uint16 1234]
    block = [0x42F6, 0x8000, 0xFFFE, 1234]
    f = decode_block(block, [0], DataType.float32, ByteOrder.ABCD)
    assert f.tolist() == [123.25]
    # two int16 points at offsets 2 and 3 with per-point scale: -2 x 0.5 + 10 = 9.0 and 1234 x 0.1 = 123.4
    i = decode_block(block, [2, 3], DataType.int16, ByteOrder.ABCD, scale=[0.5, 0.1], offset=[10.0, 0.0])
    np.testing.assert_allclose(i, [9.0, 123.4])


def test_nan_register_contents_decode_to_nan():
    assert np.isnan(decode_words([[0x7FC0, 0x0000]], DataType.float32, ByteOrder.ABCD)[0])


def hr(channel, address, data_type="float32", **kw):
    return ModbusPoint(channel=channel, address=address, data_type=data_type, **kw)


def test_planner_merges_within_gap_and_splits_beyond():
    pts = [hr("a", 0), hr("b", 2), hr("c", 20, "int16")]
    plan = plan_reads(pts, max_gap_registers=8)  # [0,4) and [20,21): gap 16 > 8
    assert [(r.address, r.count, r.points, r.offsets) for r in plan] == [(0, 4, (0, 1), (0, 2)), (20, 1, (2,), (0,))]
    plan = plan_reads(pts, max_gap_registers=16)
    assert [(r.address, r.count, r.offsets) for r in plan] == [(0, 21, (0, 2, 20))]


def test_planner_respects_the_125_register_limit():
    # 100 float32 points back to back: 200 registers -> 125 + 75... but points never straddle:
    # 62 points (124 registers) fit in the first request, 38 points (76 registers) in the second.
    pts = [hr(f"p{i}", 2 * i) for i in range(100)]
    plan = plan_reads(pts)
    assert [(r.address, r.count) for r in plan] == [(0, 124), (124, 76)]
    assert all(r.count <= MAX_READ_REGISTERS for r in plan)


def test_planner_separates_units_and_register_types_and_handles_overlaps():
    pts = [
        hr("a", 10),
        hr("b", 10, unit_id=2),
        ModbusPoint(channel="c", register="input", address=10, data_type="int16"),
        ModbusPoint(channel="d", register="coil", address=3, data_type="bool"),
        ModbusPoint(channel="e", register="coil", address=67, data_type="bool"),  # 63 bits after bit 3's end
        hr("f", 11, "uint16"),  # overlaps a's second register: same request, offset 1
    ]
    plan = plan_reads(pts, max_gap_bits=64)
    got = {(r.unit_id, r.register.value, r.address, r.count, r.points) for r in plan}
    assert got == {
        (1, "holding", 10, 2, (0, 5)),
        (1, "input", 10, 1, (2,)),
        (1, "coil", 3, 65, (3, 4)),  # bits 3..67
        (2, "holding", 10, 2, (1,)),
    }


def test_one_based_addresses_from_manuals():
    p = ModbusPoint(channel="x", address=1, address_base=1, data_type="int16")
    assert p.wire_address == 0
    with pytest.raises(ValidationError, match="below the base"):
        ModbusPoint(channel="x", address=0, address_base=1)


def test_point_validation():
    with pytest.raises(ValidationError, match="coil registers hold bits"):
        ModbusPoint(channel="x", register="coil", address=0, data_type="float32")
    with pytest.raises(ValidationError, match="runs past 65535"):
        ModbusPoint(channel="x", address=65534, data_type="float64")
