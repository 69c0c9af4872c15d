"""The HJ 212 CRC16 (HJ 212-2017 and HJ 212-2025 Appendix A).

It is **not** the Modbus CRC16 (CRC-16/MODBUS) although both use the reflected polynomial 0xA001 and start at
0xFFFF: here each byte is XORed into the register *after* it is shifted right by 8 (``crc = (crc >> 8) ^ byte``,
then eight shift/XOR rounds), so only the high byte carries over between bytes. The eight rounds then depend on an
8-bit value alone, which makes one 256-entry table the whole step: ``crc = T[(crc >> 8) ^ byte]``.
Test vector of the standard (HJ212-CRC): the 101-character data segment of its Appendix A example gives 0x1C80.

Speed: the step is linear over GF(2) (``T[x ^ y] = T[x] ^ T[y]``), so the CRC of n bytes is the XOR of each
byte's contribution ``S^d(T[b])`` (d = bytes after it, ``S(c) = T[c >> 8]``) and of the start value's ``S^n(0xFFFF)``.
Both are tabled once (numpy), and a frame's CRC becomes one gather and one XOR-reduction instead of a Python loop
per byte; short inputs keep the loop.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crc16", "crc16_hex"]

#: Longest input served by the tables: a whole 4-digit-length data segment.
_MAX_TABLED = 9999
_LOOP_BELOW = 128  # bytes; below this the plain loop is as fast (a receiver's answers: about 90 bytes), and
# it does not touch the 5 MB table, whose cache misses cost more on a busy machine


def _round8(x: int) -> int:
    for _ in range(8):
        x = (x >> 1) ^ 0xA001 if x & 1 else x >> 1
    return x


_TABLE = tuple(_round8(i) for i in range(256))
_tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.array(_TABLE, dtype=np.uint16)
    contrib = np.empty((_MAX_TABLED, 256), dtype=np.uint16)  # row d: a byte followed by d more bytes
    contrib[0] = t
    for d in range(1, _MAX_TABLED):
        contrib[d] = t[contrib[d - 1] >> 8]
    init = np.empty(_MAX_TABLED + 1, dtype=np.uint16)  # S^n(0xFFFF)
    init[0] = 0xFFFF
    for n in range(1, _MAX_TABLED + 1):
        init[n] = _TABLE[int(init[n - 1]) >> 8]
    flat = contrib[::-1].reshape(-1).copy()  # row _MAX_TABLED-1-d, so a message's rows are one ascending run
    offsets = np.arange(_MAX_TABLED, dtype=np.int64) * 256
    return flat, offsets, init


def crc16(data: bytes) -> int:
    """HJ 212 CRC16 of ``data`` (the data segment only: not ``##``, the length, the CRC or the trailer).

    References: docs/sources.md HJ212-CRC.
    """
    n = len(data)
    if n < _LOOP_BELOW or n > _MAX_TABLED:
        crc = 0xFFFF
        table = _TABLE
        for b in data:
            crc = table[(crc >> 8) ^ b]
        return crc
    global _tables
    if _tables is None:
        _tables = _build_tables()
    flat, offsets, init = _tables
    idx = offsets[_MAX_TABLED - n:] + np.frombuffer(data, dtype=np.uint8)
    return int(np.bitwise_xor.reduce(flat[idx])) ^ int(init[n])


def crc16_hex(data: bytes) -> str:
    """The CRC as written on the wire: 4 upper-case hex digits, high byte first (HJ212-CRC)."""
    return f"{crc16(data):04X}"
