"""Registers <-> engineering values, vectorised over points of one data type and byte order.

The decoder never loops over points: it gathers every point's words from a response block into a
``(points, words)`` array, undoes the device's word and byte order, reinterprets the rows as
big-endian numbers with ``ndarray.view`` and applies ``raw * scale + offset``.
"""

from __future__ import annotations

import numpy as np

from .points import WORDS, ByteOrder, DataType

__all__ = ["decode_block", "decode_words", "encode_value"]

_BIG_ENDIAN = {
    DataType.int16: ">i2",
    DataType.uint16: ">u2",
    DataType.int32: ">i4",
    DataType.uint32: ">u4",
    DataType.float32: ">f4",
    DataType.float64: ">f8",
}


def decode_words(words, data_type: DataType, order: ByteOrder) -> np.ndarray:
    """``(points, k)`` register values as received -> raw numbers (float64), one per row."""
    w = np.asarray(words, dtype=np.uint16).reshape(-1, WORDS[data_type])
    if data_type == DataType.bool:
        return (w[:, 0] != 0).astype(np.float64)
    if order.words_swapped:
        w = w[:, ::-1]
    if order.bytes_swapped:
        w = w.byteswap()
    as_bytes = np.ascontiguousarray(w.astype(">u2"))  # each register high byte first, as on the wire
    return as_bytes.view(_BIG_ENDIAN[data_type]).reshape(-1).astype(np.float64)


def decode_block(block, offsets, data_type: DataType, order: ByteOrder, scale=1.0, offset=0.0) -> np.ndarray:
    """Values of the points starting at ``offsets`` (registers or bits) within one response ``block``."""
    block = np.asarray(block)
    offsets = np.asarray(offsets, dtype=np.int64)
    k = WORDS[data_type]
    raw = decode_words(block[offsets[:, None] + np.arange(k)], data_type, order)
    return raw * np.asarray(scale, dtype=np.float64) + np.asarray(offset, dtype=np.float64)


def encode_value(value: float, data_type: DataType, order: ByteOrder) -> list[int]:
    """Inverse of :func:`decode_words` for one raw value: the register values a device would hold."""
    if data_type == DataType.bool:
        return [int(bool(value))]
    as_bytes = np.array([value]).astype(_BIG_ENDIAN[data_type]).view(">u2").astype(np.uint16)
    if order.bytes_swapped:
        as_bytes = as_bytes.byteswap()
    if order.words_swapped:
        as_bytes = as_bytes[::-1]
    return [int(x) for x in as_bytes]
