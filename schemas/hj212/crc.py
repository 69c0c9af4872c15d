"""The HJ 212 CRC16 (HJ 212-2017 and HJ 212-2025 Appendix A), table-driven.

It is **not** the Modbus CRC16 (CRC-16/MODBUS) although both use the reflected polynomial 0xA001 and start at
0xFFFF: here each byte is XORed into the register *after* it is shifted right by 8 (``crc = (crc >> 8) ^ byte``,
then eight shift/XOR rounds), so only the high byte carries over between bytes. The eight rounds then depend on an
8-bit value alone, which makes one 256-entry table the whole computation: ``crc = T[(crc >> 8) ^ byte]``.
Test vector of the standard (HJ212-CRC): the 101-character data segment of its Appendix A example gives 0x1C80.
"""

from __future__ import annotations

__all__ = ["crc16", "crc16_hex"]


def _round8(x: int) -> int:
    for _ in range(8):
        x = (x >> 1) ^ 0xA001 if x & 1 else x >> 1
    return x


_TABLE = tuple(_round8(i) for i in range(256))


def crc16(data: bytes) -> int:
    """HJ 212 CRC16 of ``data`` (the data segment only: not ``##``, the length, the CRC or the trailer).

    References: docs/sources.md HJ212-CRC.
    """
    crc = 0xFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc >> 8) ^ b]
    return crc


def crc16_hex(data: bytes) -> str:
    """The CRC as written on the wire: 4 upper-case hex digits, high byte first (HJ212-CRC)."""
    return f"{crc16(data):04X}"
