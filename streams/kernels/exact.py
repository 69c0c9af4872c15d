"""Exact, order-independent sums at numpy speed.

Floating-point addition is not associative, so a float sum of the same readings split into batches
differently can differ in the last bits, and a stream could never promise "aggregating in pieces
gives exactly the result of aggregating whole". Every running sum in the kernels is therefore an
integer sum of values quantised to a fixed grid of 2⁻²⁴ (about 6e-8 of the value's unit: far below
any analyser's resolution). Integer sums are exact, so accumulators merge associatively and
commutatively, and means are computed once, from the final integers.

``segment_sum`` computes per-group int64 sums with ``np.bincount`` (the fastest grouped reduction in
numpy, but float64-weighted) by splitting each integer into a high and a low part whose float sums
stay below 2⁵³ and are therefore exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_ABS_VALUE", "SCALE", "dequantise", "quantise", "segment_sum"]

SCALE_BITS = 24
SCALE = float(2**SCALE_BITS)
#: Largest magnitude a value may have to be summed exactly [its unit]. Larger values are out of range.
MAX_ABS_VALUE = float(2**38)

_SPLIT = 26
_LOW_MASK = (1 << _SPLIT) - 1
_MAX_PER_GROUP = 1 << 16  # |high part| < 2**36, so 2**16 of them sum below 2**53 exactly


def quantise(values: np.ndarray) -> np.ndarray:
    """Values -> int64 multiples of 2⁻²⁴, the grid every running sum uses.

    Parameters
    ----------
    values : ndarray of float
        Values [any unit]; callers must have excluded NaN and ``|v| >= MAX_ABS_VALUE``.

    Returns
    -------
    ndarray of int64
        ``round(v x 2^24)`` [2^-24 of the unit].

    References
    ----------
    Module docstring (exact, order-independent sums); no regulation involved.
    """
    return np.rint(np.asarray(values, dtype=np.float64) * SCALE).astype(np.int64)


def dequantise(q: np.ndarray) -> np.ndarray:
    """Quantised integers back to values.

    Parameters
    ----------
    q : ndarray of int
        Multiples of 2⁻²⁴ [2^-24 of the unit].

    Returns
    -------
    ndarray of float
        ``q / 2^24`` [the unit].

    References
    ----------
    Module docstring; no regulation involved.
    """
    return np.asarray(q, dtype=np.int64) / SCALE


def segment_sum(index: np.ndarray, q: np.ndarray, size: int) -> np.ndarray:
    """Exact ``out[i] = sum(q[index == i])`` for int64 ``q``, ``0 <= index < size``.

    Parameters
    ----------
    index : ndarray of int
        Group of each element, ``0 <= index < size``.
    q : ndarray of int64
        Quantised values [2^-24 of their unit].
    size : int
        Number of groups.

    Returns
    -------
    ndarray of int64
        Exact sum per group [2^-24 of the unit].

    References
    ----------
    Module docstring (why integer sums); no regulation involved.
    """
    if q.size == 0:
        return np.zeros(size, dtype=np.int64)
    counts = np.bincount(index, minlength=size)
    if counts.max() > _MAX_PER_GROUP:  # never for CEMS cells; stay exact anyway
        out = np.zeros(size, dtype=np.int64)
        np.add.at(out, index, q)
        return out
    high = np.bincount(index, weights=(q >> _SPLIT).astype(np.float64), minlength=size)
    low = np.bincount(index, weights=(q & _LOW_MASK).astype(np.float64), minlength=size)
    return (high.astype(np.int64) << _SPLIT) + low.astype(np.int64)
