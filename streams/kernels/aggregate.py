"""Incremental, exact aggregation: readings -> minutes -> hours, for many series at once.

A *series* is one channel of one source, numbered by the caller (``series`` index arrays). A *cell*
is one series in one period (minute or hour), keyed ``series << 32 | period_index`` with periods
counted from the Unix epoch, so minutes and hours are UTC-aligned (they coincide with local minutes
and hours for whole-hour zones such as China's UTC+8).

:class:`Accumulator` is the state: per cell, counts of parts by flag, counts and exact (quantised,
see :mod:`.exact`) sums of valid values, and bitmasks of sub-slots holding valid or operating parts.
Every field combines by integer addition or bitwise OR, so absorbing readings in any batch split or
order, and merging partial states, gives bit-identical results. Closing a cell applies a
:class:`~.policy.ValidityPolicy` and produces a :class:`PeriodTable`; closed minutes are the parts
of hours. Everything is vectorised over cells: ``np.bincount`` over a dense local index, never a
Python loop per reading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.quantities import Flag

from . import exact
from .policy import ValidityPolicy

__all__ = ["HOUR_NS", "MINUTE_NS", "ROUND_NS", "Accumulator", "PeriodTable", "combine", "hours_from_minutes",
           "readings_to_minutes"]

MINUTE_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
_N_FLAGS = len(Flag)
_PERIOD_BITS = 32
_PERIOD_MASK = (1 << _PERIOD_BITS) - 1
_MAX_SLOTS = 16
_MINUTE_SLOTS = 12  # 5-s slots of a minute (HJ 212 App. D Eq. 23: sampled at most every 5 s)
#: A reading belongs to the minute (and 5-s slot) of its timestamp rounded to the nearest second: sampling is
#: nominally on whole seconds, and clock jitter of a few hundred milliseconds around a minute's edge must not move a
#: reading into the neighbouring minute (``docs/sources.md`` ROUND-S). Applied as a half-second shift before flooring.
ROUND_NS = 500_000_000


def cell_keys(series: ArrayLike, ts_ns: ArrayLike, period_ns: int) -> NDArray[np.int64]:
    """Keys of the cells readings fall in: ``series << 32 | period index since the epoch``.

    Parameters
    ----------
    series : array_like of int
        Series number of each reading [1].
    ts_ns : array_like of int
        Reading times [ns since the epoch, UTC].
    period_ns : int
        Period length [ns] (a minute or an hour).

    Returns
    -------
    ndarray of int64
        One key per reading; periods are UTC-aligned.

    References
    ----------
    Project layout of the state (module docstring); no regulation involved.
    """
    return (np.asarray(series, dtype=np.int64) << _PERIOD_BITS) | (np.asarray(ts_ns, dtype=np.int64) // period_ns)


def _factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, index of each key in them). O(n) through a dense local index when the
    keys span a compact block of series x periods (the normal case), else a sort."""
    if keys.size == 0:
        return keys, np.zeros(0, dtype=np.int64)
    series, period = keys >> _PERIOD_BITS, keys & _PERIOD_MASK
    s0, p0 = int(series.min()), int(period.min())
    span = int(period.max()) - p0 + 1
    size = (int(series.max()) - s0 + 1) * span
    if size > 4 * keys.size + 4096:  # e.g. one stray reading from last year: do not allocate the gap
        uniq, inv = np.unique(keys, return_inverse=True)
        return uniq, inv.astype(np.int64)
    local = (series - s0) * span + (period - p0)
    present = np.zeros(size, dtype=bool)
    present[local] = True
    dense_to_cell = np.cumsum(present) - 1
    cells = np.flatnonzero(present)
    uniq = ((cells // span + s0) << _PERIOD_BITS) | (cells % span + p0)
    return uniq, dense_to_cell[local]


def _grouped_sum(inv: np.ndarray, m: int, x: np.ndarray) -> np.ndarray:
    """Exact int64 sums of the rows of ``x`` per group. Parts arrive sorted by key (minutes of a
    closed table), so groups are contiguous runs and one ``np.add.reduceat`` sums every column."""
    x = np.asarray(x, dtype=np.int64)
    if inv.size and np.all(inv[1:] >= inv[:-1]):
        starts = np.flatnonzero(np.concatenate(([True], inv[1:] != inv[:-1])))
        return np.add.reduceat(x, starts, axis=0)
    if x.ndim == 1:
        return exact.segment_sum(inv, x, m)
    return np.stack([exact.segment_sum(inv, x[:, j], m) for j in range(x.shape[1])], axis=1)


def _counts(inv: np.ndarray, m: int, weights: ArrayLike | None = None) -> np.ndarray:
    return np.bincount(inv, weights=weights, minlength=m).astype(np.int64)


def _slot_bits(inv: np.ndarray, slot: np.ndarray, m: int) -> np.ndarray:
    """OR of ``1 << slot`` per cell."""
    return _pack_bits(np.bincount(inv * _MAX_SLOTS + slot, minlength=m * _MAX_SLOTS).reshape(m, _MAX_SLOTS) > 0)


class _Cells:
    """Accessors shared by everything keyed ``series << 32 | period index`` (needs ``key``, ``period_ns``)."""

    key: np.ndarray
    period_ns: int

    def __len__(self) -> int:
        return int(self.key.size)

    @property
    def series(self) -> np.ndarray:
        return self.key >> _PERIOD_BITS

    @property
    def start_ns(self) -> np.ndarray:
        return (self.key & _PERIOD_MASK) * self.period_ns


@dataclass(frozen=True, eq=False)
class Accumulator(_Cells):
    """Running state of many cells of one period length. Immutable: operations return new states.

    Attributes (one row per cell, sorted by ``key``)
    ----------
    key : int64, ``series << 32 | period index``
    part_flags : int64 [m, 8], parts (readings, or minutes for hours) by flag code
    valid_parts : int64, parts that are valid (normal readings; minutes valid under the minute rule)
    part_qsum : int64, exact sum of the valid parts' quantised values (readings; minute means)
    sample_flags : int64 [m, 8], readings by flag (the same as ``part_flags`` for minutes)
    valid_samples : int64, normal readings
    sample_qsum : int64, exact sum of normal readings' quantised values
    valid_slots : int64 bitmask of sub-slots with a valid part (5-s slots; 15-minute quadrants)
    operating_slots : int64 bitmask of sub-slots holding any part (the DAHS recorded something then)
    recorded_samples : int64, readings with a recorded value: normal, or flagged F (instrument stopped) with a
        finite, plausible value. Dataloggers keep recording under F during a shutdown, so these values are the
        process evidence of whether the source runs (``docs/sources.md`` HJ212-T8-F); never part of a valid mean
    recorded_qsum : int64, exact sum of those readings' quantised values
    batches : frozenset of batch ids absorbed (dedup: a batch applied twice changes nothing)
    """

    period_ns: int
    key: np.ndarray
    part_flags: np.ndarray
    valid_parts: np.ndarray
    part_qsum: np.ndarray
    sample_flags: np.ndarray
    valid_samples: np.ndarray
    sample_qsum: np.ndarray
    valid_slots: np.ndarray
    operating_slots: np.ndarray
    recorded_samples: np.ndarray
    recorded_qsum: np.ndarray
    batches: frozenset[Hashable] = frozenset()

    _ROW_FIELDS: ClassVar[tuple[str, ...]] = ("part_flags", "valid_parts", "part_qsum", "sample_flags",
                                              "valid_samples", "sample_qsum", "recorded_samples", "recorded_qsum")
    _OR_FIELDS: ClassVar[tuple[str, ...]] = ("valid_slots", "operating_slots")
    _ARRAYS: ClassVar[tuple[str, ...]] = ("key", *_ROW_FIELDS, *_OR_FIELDS)  # every per-cell array
    #: Fields equal to another unless some reading says otherwise (samples are the parts of a minute; recorded
    #: values are the valid ones when no reading is flagged F): shared, not copied, while they are equal.
    _TWINS: ClassVar[Mapping[str, str]] = {
        "sample_flags": "part_flags", "valid_samples": "valid_parts", "sample_qsum": "part_qsum",
        "recorded_samples": "valid_samples", "recorded_qsum": "sample_qsum"}

    @classmethod
    def empty(cls, period_ns: int) -> Accumulator:
        z, zf = np.zeros(0, np.int64), np.zeros((0, _N_FLAGS), np.int64)
        return cls(period_ns, z, zf, z, z, zf, z, z, z, z, z, z)

    @classmethod
    def from_arrays(cls, period_ns: int, arrays: Mapping[str, np.ndarray]) -> Accumulator:
        """State from saved arrays (``arrays[name]`` for each of :attr:`_ARRAYS`). Arrays saved before a field
        existed are taken from its twin, which is what they equalled then."""
        got: dict[str, Any] = {n: arrays[n] for n in cls._ARRAYS if n in arrays}
        for name in cls._ARRAYS:
            if name not in got:
                got[name] = got[cls._TWINS[name]]
        return cls(period_ns, **got)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in self._ARRAYS)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_parts(
        cls,
        period_ns: int,
        keys: np.ndarray,
        part_flag: np.ndarray,
        part_valid: np.ndarray,
        part_q: np.ndarray,
        slot: np.ndarray,
        part_operating: np.ndarray,
        sample_flags: np.ndarray | None = None,
        sample_valid: np.ndarray | None = None,
        sample_qsum: np.ndarray | None = None,
        batch_id: Hashable | None = None,
        recorded_samples: np.ndarray | None = None,
        recorded_qsum: np.ndarray | None = None,
    ) -> Accumulator:
        """Group parts into cells. ``slot``: sub-slot of each part (5-s slot, 15-min quadrant);
        ``part_operating``: the source ran when the part was taken. For readings leave the
        ``sample_*`` arguments None (the parts are the samples)."""
        uniq, inv = _factorize(keys)
        m = uniq.size
        part_flags = np.bincount(inv * _N_FLAGS + part_flag, minlength=m * _N_FLAGS).reshape(m, _N_FLAGS)
        part_flags = part_flags.astype(np.int64)
        valid_parts = _counts(inv, m, part_valid)
        part_qsum = exact.segment_sum(inv[part_valid], part_q[part_valid], m)
        if sample_flags is None or sample_valid is None or sample_qsum is None:
            s_flags, s_valid, s_qsum = part_flags, valid_parts, part_qsum
        else:
            s_flags, s_valid, s_qsum = (
                _grouped_sum(inv, m, x) for x in (sample_flags, sample_valid, sample_qsum)
            )
        if (recorded_samples is None or recorded_qsum is None
                or (recorded_samples is sample_valid and recorded_qsum is sample_qsum)):
            r_n, r_qsum = s_valid, s_qsum
        else:
            r_n, r_qsum = (_grouped_sum(inv, m, x) for x in (recorded_samples, recorded_qsum))
        valid_slots = _slot_bits(inv[part_valid], slot[part_valid], m)
        operating_slots = _slot_bits(inv[part_operating], slot[part_operating], m)
        batches: frozenset[Hashable] = frozenset() if batch_id is None else frozenset([batch_id])
        return cls(
            period_ns, uniq, part_flags, valid_parts, part_qsum, s_flags, s_valid, s_qsum, valid_slots,
            operating_slots, r_n, r_qsum, batches,
        )

    def absorb_readings(self, series: ArrayLike, ts_ns: ArrayLike, value: ArrayLike, flag: ArrayLike,
                        batch_id: Hashable | None = None, bounds: tuple[ArrayLike, ArrayLike] | None = None,
                        set_values_valid: ArrayLike | None = None) -> Accumulator:
        """Add raw readings (period must be a minute). A ``batch_id`` already absorbed is a no-op.

        Out-of-range handling as in :func:`readings_to_minutes`.
        """
        if batch_id is not None and batch_id in self.batches:
            return self
        return self.merge(readings_to_minutes(series, ts_ns, value, flag, batch_id, bounds, set_values_valid))

    # -- combining --------------------------------------------------------------------------

    def merge(self, other: Accumulator) -> Accumulator:
        """Combine two states of the same period. Refuses states that share a batch (double count)."""
        return combine([self, other])

    def _as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def select(self, mask: np.ndarray) -> Accumulator:
        """The cells where ``mask`` is true (batch ids are kept: they describe the whole stream)."""
        d = self._as_dict()
        for name in self._ARRAYS:  # twins after their originals: a shared array stays shared
            twin = self._TWINS.get(name)
            d[name] = d[twin] if twin and getattr(self, name) is getattr(self, twin) else d[name][mask]
        return Accumulator(**d)

    def split_closed(self, watermark_ns: int) -> tuple[Accumulator, Accumulator]:
        """(cells whose period ended at or before ``watermark_ns``, the still-open rest)."""
        done = self.start_ns + self.period_ns <= watermark_ns
        return self.select(done), self.select(~done)

    def equals(self, other: Accumulator) -> bool:
        return self.period_ns == other.period_ns and all(
            np.array_equal(getattr(self, n), getattr(other, n)) for n in self._ARRAYS
        )

    # -- closing ----------------------------------------------------------------------------

    def close(self, policy: ValidityPolicy) -> PeriodTable:
        """Apply ``policy`` to every cell: the minute rule for minutes, the hour rule for hours."""
        n_parts = self.part_flags @ np.ones(_N_FLAGS, dtype=np.int64)
        label = np.where(
            self.part_flags[:, Flag.N] > policy.normal_share * n_parts, Flag.N, policy.non_normal_flag
        ).astype(np.uint8)
        if self.period_ns == MINUTE_NS:  # HJ 212 App. D Eq. 23: n >= 12 valid values (docs/sources.md HJ212-D23)
            rule = policy.minute
            valid = self.valid_parts >= rule.min_valid_samples
            if rule.min_valid_slots:  # opt-in: each 5-s slot must hold a valid value (no source requires it)
                valid &= _popcount(self.valid_slots) >= rule.min_valid_slots
            mean_q = _div(self.part_qsum, self.valid_parts)
        elif self.period_ns == HOUR_NS:
            valid, mean_q = _hour_rule(self, policy)
        else:
            raise ValueError(f"no validity rule for {self.period_ns} ns periods")
        n_samples = self.sample_flags @ np.ones(_N_FLAGS, dtype=np.int64)
        instrument_stopped = self.sample_flags[:, Flag.F] > policy.instrument_stopped_share * n_samples
        return PeriodTable(
            period_ns=self.period_ns,
            key=self.key,
            mean=np.where(valid, mean_q / exact.SCALE, np.nan),
            valid=valid,
            label=label,
            instrument_stopped=instrument_stopped,
            part_flags=self.part_flags,
            valid_parts=self.valid_parts,
            sample_flags=self.sample_flags,
            valid_samples=self.valid_samples,
            sample_qsum=self.sample_qsum,
            valid_slots=self.valid_slots,
            operating_slots=self.operating_slots,
            recorded_samples=self.recorded_samples,
            recorded_qsum=self.recorded_qsum,
            policy=policy.name,
        )


def combine(states: list[Accumulator]) -> Accumulator:
    """Merge any number of states of one period length in one pass (sums add, slot masks OR).

    Integer sums and bit masks make merging exact and order-independent, which is what lets a stream aggregate in
    pieces and still give the figures of aggregating whole.

    Parameters
    ----------
    states : list of Accumulator
        States of one period length [ns]; they must not share a batch id.

    Returns
    -------
    Accumulator
        The merged state (counts [1], exact quantised sums [2^-24 of the series' unit], slot masks).

    Raises
    ------
    ValueError
        States of different periods, or sharing a batch id (that batch would be counted twice).

    References
    ----------
    :mod:`streams.kernels.exact` (why the sums are integers); no regulation involved.
    """
    period = {a.period_ns for a in states}
    if len(period) != 1:
        raise ValueError(f"cannot merge states of different periods: {sorted(period)} ns")
    batches: frozenset[Hashable] = frozenset()
    for a in states:
        shared = batches & a.batches
        if shared:
            raise ValueError(f"states share batches {sorted(shared, key=repr)[:5]}: merging would count them twice")
        batches |= a.batches
    states = [a for a in states if len(a)]
    if len(states) <= 1:
        base = states[0] if states else Accumulator.empty(period.pop())
        return dataclasses.replace(base, batches=batches)
    keys = np.concatenate([a.key for a in states])
    uniq, inv = _factorize(keys)  # O(n) when the keys form a compact block, else a sort
    m = uniq.size
    # Keys are unique within each state, so per-state fancy-index updates are exact scatter-adds.
    at = np.split(inv, np.cumsum([len(a) for a in states])[:-1])
    out: dict[str, Any] = {"period_ns": states[0].period_ns, "key": uniq, "batches": batches}
    for name in Accumulator._ROW_FIELDS + Accumulator._OR_FIELDS:
        twin = Accumulator._TWINS.get(name)
        if twin and all(getattr(a, name) is getattr(a, twin) for a in states):  # minutes: samples are the parts
            out[name] = out[twin]
            continue
        first = getattr(states[0], name)
        acc = np.zeros((m, *first.shape[1:]), dtype=np.int64)
        for a, idx in zip(states, at, strict=True):
            if name in Accumulator._OR_FIELDS:
                acc[idx] |= getattr(a, name)
            else:
                acc[idx] += getattr(a, name)
        out[name] = acc
    return Accumulator(**out)


def _div(qsum: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Quantised mean, rounded to the grid (deterministic: a function of the exact integers only)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.rint(qsum / np.where(n > 0, n, 1)).astype(np.int64)


def _popcount(bits: np.ndarray) -> np.ndarray:
    return np.bitwise_count(bits.astype(np.uint64)).astype(np.int64)


def _hour_rule(acc: Accumulator, policy: ValidityPolicy) -> tuple[np.ndarray, np.ndarray]:
    """(valid, quantised mean) of every hour cell under the policy's :class:`~.policy.HourRule`.

    References: docs/sources.md HJ212-D24, MRR-44, P-EU-POINTS, P75-10d.
    """
    rule = policy.hour
    if rule.method == "min_valid_minutes":  # HJ 212 App. D Eq. (24): mean of valid minute means, k >= 45
        return acc.valid_parts >= rule.min_valid_minutes, _div(acc.part_qsum, acc.valid_parts)
    if rule.method == "pro_rata_points":  # MRR Art. 44: all valid points, if >= 80 % of the possible ones
        if rule.sample_interval_s:
            possible = np.full(len(acc), 3600.0 / rule.sample_interval_s)
        else:  # the channel's own rate: readings of any flag per minute that holds readings, x 60
            readings = acc.sample_flags @ np.ones(_N_FLAGS, dtype=np.int64)
            minutes = acc.part_flags @ np.ones(_N_FLAGS, dtype=np.int64)
            possible = 60.0 * readings / np.maximum(minutes, 1)
        needed = np.ceil(rule.min_point_fraction * possible - 1e-9)
        return (acc.valid_samples > 0) & (acc.valid_samples >= needed), _div(acc.sample_qsum, acc.valid_samples)
    if rule.method == "operating_quadrants":  # 75.10(d): a valid point in every operating quadrant
        op, ok = acc.operating_slots, acc.valid_slots
        valid = (op != 0) & ((ok & op) == op)
        if rule.qa_two_points:  # QA hour (C or M readings), source ran > 1 quadrant: two valid points >= 15 min apart
            qa = (acc.sample_flags[:, Flag.C] + acc.sample_flags[:, Flag.M]) > 0
            # Hours keep quadrant bits, not minute times. Proven 15 min apart: valid minutes in quadrants two or three
            # apart, or 16 valid minutes (16 distinct minutes span >= 15). Anything else is not proven: invalid.
            apart = ((ok & (ok >> 2)) != 0) | ((ok & (ok >> 3)) != 0) | (acc.valid_parts >= 16)
            valid |= qa & (_popcount(op) >= 2) & apart
        return valid, _div(acc.part_qsum, acc.valid_parts)
    raise ValueError(f"unknown hour rule method {rule.method!r}")


@dataclass(frozen=True, eq=False)
class PeriodTable(_Cells):
    """Closed periods (minutes or hours) of many series: one row per cell, with every count kept so
    another policy can be re-evaluated later. ``mean`` is NaN where the period is not valid."""

    period_ns: int
    key: np.ndarray
    mean: np.ndarray
    valid: np.ndarray
    label: np.ndarray  # HJ 212 flag of the aggregate: N when > 75 % of parts are N, else D
    instrument_stopped: np.ndarray  # the instrument was stopped (F readings above the policy's share); says nothing
    #                                 about the source, whose running is judged from process evidence (emissions.py)
    part_flags: np.ndarray
    valid_parts: np.ndarray
    sample_flags: np.ndarray
    valid_samples: np.ndarray
    sample_qsum: np.ndarray
    valid_slots: np.ndarray
    operating_slots: np.ndarray
    recorded_samples: np.ndarray
    recorded_qsum: np.ndarray
    policy: str

    @property
    def recorded_mean(self) -> np.ndarray:
        """Mean of the recorded values (normal or F-flagged), NaN where there are none: the process evidence."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.recorded_samples > 0, _div(self.recorded_qsum, self.recorded_samples) / exact.SCALE,
                            np.nan)


#: Readings per chunk: temporaries of 8 MiB are reused by the allocator (below glibc's mmap threshold), where
#: batch-sized ones would be fresh pages every time (measured: page faults cost more than the math).
CHUNK = 1 << 20


def readings_to_minutes(series: ArrayLike, ts_ns: ArrayLike, value: ArrayLike, flag: ArrayLike,
                        batch_id: Hashable | None = None, bounds: tuple[ArrayLike, ArrayLike] | None = None,
                        set_values_valid: ArrayLike | None = None) -> Accumulator:
    """Group raw readings into minute cells (the first kernel stage, and the hot path).

    Readings flagged N whose value is NaN, infinite or beyond :data:`exact.MAX_ABS_VALUE` count as
    out of range (T): flagged, never summed. Cells are addressed through a dense ``(series, minute)`` index over
    each chunk's span, so every statistic is one ``np.bincount``. A reading belongs to the minute (and 5-s slot) of
    its timestamp rounded to the nearest second.

    Parameters
    ----------
    series : array_like of int
        Series number of each reading [1].
    ts_ns : array_like of int
        Reading times [ns since the epoch, UTC].
    value : array_like of float
        Reading values [the series' unit].
    flag : array_like of uint8
        HJ 212 flag code of each reading.
    batch_id : hashable, optional
        The batch these readings came in: a state that already holds it refuses to take it twice.
    bounds : tuple of two arrays of float, optional
        ``(low, high)`` per series [the series' unit] (:func:`streams.kernels.plausibility.series_bounds`); normal
        readings outside them are flagged T.
    set_values_valid : array_like of bool, optional
        Per series: readings flagged S (entered by hand) count as valid values of that channel (the site file's
        ``manual_values`` policy); elsewhere only N readings are valid.

    Returns
    -------
    Accumulator
        Minute cells: counts of readings by flag and of valid readings [1], exact sums of valid values
        [2^-24 of the series' unit], masks of 5-s slots with valid or any readings.

    References
    ----------
    docs/sources.md: HJ212-D23 [P] (minute means from samples at most 5 s apart), HJ212-T8 [P], HJ212-T8-S [P/U],
    ROUND-S (project choice).
    """
    s = np.asarray(series, dtype=np.int64)
    t = np.asarray(ts_ns, dtype=np.int64)
    v = np.asarray(value, dtype=np.float64)
    f = np.asarray(flag, dtype=np.uint8)
    if not s.shape == t.shape == v.shape == f.shape:
        raise ValueError("series, ts_ns, value and flag must have the same length")
    limits = (None if bounds is None
              else (np.asarray(bounds[0], dtype=np.float64), np.asarray(bounds[1], dtype=np.float64)))
    if limits is not None and s.size and s.max() >= limits[0].size:
        raise ValueError(f"bounds cover {limits[0].size} series; readings name series {int(s.max())}")
    accept_s = None if set_values_valid is None or not np.any(set_values_valid) else np.asarray(set_values_valid, bool)
    chunks = [  # a few chunks per batch, not a loop per reading
        _minutes_of_chunk(s[lo : lo + CHUNK], t[lo : lo + CHUNK], v[lo : lo + CHUNK], f[lo : lo + CHUNK], limits,
                          accept_s)
        for lo in range(0, t.size, CHUNK)
    ]
    acc = combine(chunks) if chunks else Accumulator.empty(MINUTE_NS)
    batches: frozenset[Hashable] = frozenset() if batch_id is None else frozenset([batch_id])
    return dataclasses.replace(acc, batches=batches)


Bounds = tuple[NDArray[np.float64], NDArray[np.float64]]


def _minutes_of_chunk(series: NDArray[np.int64], ts_ns: NDArray[np.int64], value: NDArray[np.float64],
                      flag: NDArray[np.uint8], bounds: Bounds | None,
                      accept_s: NDArray[np.bool_] | None = None) -> Accumulator:
    valid = flag == Flag.N
    set_valid = accept_s is not None and bool(((flag == Flag.S) & np.take(accept_s, series)).any())
    if set_valid and accept_s is not None:
        valid |= (flag == Flag.S) & np.take(accept_s, series)
    if bounds is not None:
        with np.errstate(invalid="ignore"):
            implausible = valid & ~((value >= np.take(bounds[0], series)) & (value <= np.take(bounds[1], series)))
        if implausible.any():
            flag = np.where(implausible, np.uint8(Flag.T), flag)
            valid &= ~implausible
    qf = np.where(valid, value, 0.0)
    vmax = max(qf.max(), -qf.min())
    if not vmax < exact.MAX_ABS_VALUE:  # NaN, inf or huge among normal readings: flag them T
        with np.errstate(invalid="ignore"):
            bad = valid & ~(np.abs(value) < exact.MAX_ABS_VALUE)
        flag = np.where(bad, np.uint8(Flag.T), flag)
        valid &= ~bad
        qf[bad] = 0.0
        vmax = max(qf.max(), -qf.min())
    m0 = (int(ts_ns.min()) + ROUND_NS) // MINUTE_NS
    t5 = ts_ns - (m0 * MINUTE_NS - ROUND_NS)  # nearest second, then floor: (ts + 0.5 s) // 5 s
    t5 //= 5 * 10**9  # 5-s slots since the chunk's first minute: minute * 12 + slot
    s0 = int(series.min())
    span = int(t5.max()) // _MINUTE_SLOTS + 1
    size = (int(series.max()) - s0 + 1) * span
    recorded_f = _recorded_under_f(series, value, flag, bounds)
    if size > 4 * ts_ns.size + 4096:  # sparse batch (a stray old reading): the general path
        q = exact.quantise(qf)  # zero where not valid
        keys = cell_keys(series, ts_ns + ROUND_NS, MINUTE_NS)
        slot = t5 % _MINUTE_SLOTS
        recorded = {} if recorded_f is None else {
            "recorded_samples": valid | recorded_f,
            "recorded_qsum": q + exact.quantise(np.where(recorded_f, value, 0.0))}
        return Accumulator.from_parts(MINUTE_NS, keys, flag, valid, q, slot, np.ones(flag.size, bool), **recorded)

    # (cell, slot) index = (series - s0) * span * 12 + t5; the cell is that // 12. In place: these
    # arrays are the size of the chunk.
    cell_slot = series * (span * _MINUTE_SLOTS)
    cell_slot += t5
    cell_slot -= s0 * span * _MINUTE_SLOTS
    cell = cell_slot // _MINUTE_SLOTS
    idx = cell * _N_FLAGS
    idx += flag
    part_flags = np.bincount(idx, minlength=size * _N_FLAGS).reshape(size, _N_FLAGS)
    qf *= exact.SCALE
    np.rint(qf, out=qf)  # integer-valued floats on the 2**-24 grid
    if (vmax * exact.SCALE + 1) * int(part_flags.max()) < 2.0**53:  # all partial sums exact integers
        qsum = np.bincount(cell, weights=qf, minlength=size).astype(np.int64)
    else:
        qsum = exact.segment_sum(cell, qf.astype(np.int64), size)
    # Per (cell, 5-s slot): readings + 2**20 x valid readings, in one pass. Exact (counts << 2**53).
    per_slot = np.bincount(cell_slot, weights=np.where(valid, 1048577.0, 1.0), minlength=size * _MINUTE_SLOTS)
    per_slot = per_slot.reshape(size, _MINUTE_SLOTS)
    valid_slots = _pack_bits(per_slot >= 1048576.0)
    operating_slots = _pack_bits(per_slot > 0)

    cells = np.flatnonzero(part_flags.any(axis=1))
    part_flags = part_flags[cells].astype(np.int64)
    keys = ((cells // span + s0) << _PERIOD_BITS) | (cells % span + m0)
    qsum = qsum[cells]
    if set_valid:  # accepted set values are valid without being N
        valid_parts = np.bincount(cell, weights=valid, minlength=size).astype(np.int64)[cells]
    else:
        valid_parts = part_flags[:, Flag.N].copy()
    valid_slots, operating_slots = valid_slots[cells], operating_slots[cells]
    if recorded_f is None:  # nothing recorded under F: the recorded values are the valid ones
        rec_n, rec_qsum = valid_parts, qsum
    else:
        rq = np.where(recorded_f, np.rint(np.where(recorded_f, value, 0.0) * exact.SCALE), qf)
        rec_n = np.bincount(cell, weights=valid | recorded_f, minlength=size).astype(np.int64)[cells]
        rec_qsum = exact.segment_sum(cell, rq.astype(np.int64), size)[cells]
    return Accumulator(
        MINUTE_NS, keys, part_flags, valid_parts, qsum, part_flags, valid_parts, qsum, valid_slots, operating_slots,
        rec_n, rec_qsum,
    )


def _recorded_under_f(series: NDArray[np.int64], value: NDArray[np.float64], flag: NDArray[np.uint8],
                      bounds: Bounds | None) -> np.ndarray | None:
    """Readings flagged F (instrument stopped) that still carry a finite, plausible value, or None if there are
    none (the common case, at the cost of one comparison)."""
    f = flag == Flag.F
    if not f.any():
        return None
    with np.errstate(invalid="ignore"):
        f &= np.abs(value) < exact.MAX_ABS_VALUE
        if bounds is not None:
            f &= (value >= np.take(bounds[0], series)) & (value <= np.take(bounds[1], series))
    return f if f.any() else None


_SLOT_BIT_VALUES = (1 << np.arange(_MAX_SLOTS)).astype(np.float64)


def _pack_bits(hit: np.ndarray) -> np.ndarray:
    """Boolean [cells, k <= 16] -> int64 bitmask per cell (bit i = slot i). A float matrix-vector
    product (exact: at most 2**16 - 1) measured 3x faster here than np.packbits."""
    return (hit @ _SLOT_BIT_VALUES[: hit.shape[1]]).astype(np.int64)


def hours_from_minutes(minutes: PeriodTable) -> Accumulator:
    """Closed minutes -> hour cells (parts: minutes, flagged by their label; slots: 15-min quadrants).

    Parameters
    ----------
    minutes : PeriodTable
        Closed minutes of many series, their validity judged by a policy [the series' unit].

    Returns
    -------
    Accumulator
        Hour cells whose parts are the minutes (counts by the minutes' labels, valid minutes, exact sums of the
        valid minute means [2^-24 of the series' unit]) with the readings' own counts carried along, and masks of
        15-minute quadrants with valid or operating minutes (for Part 75's hour rule).

    References
    ----------
    docs/sources.md: HJ212-D24 [P] (an hour mean is the mean of its valid minute means), HJ212-AC [P], P75-10d [P].
    """
    if minutes.period_ns != MINUTE_NS:
        raise ValueError("hours are built from minutes")
    start = minutes.start_ns
    q = np.zeros(len(minutes), dtype=np.int64)
    q[minutes.valid] = _div(minutes.sample_qsum, minutes.valid_samples)[minutes.valid]
    quadrant = (start % HOUR_NS) // (15 * MINUTE_NS)
    return Accumulator.from_parts(
        HOUR_NS,
        cell_keys(minutes.series, start, HOUR_NS),
        minutes.label,
        minutes.valid,
        q,
        quadrant,
        np.ones(len(minutes), dtype=bool),
        sample_flags=minutes.sample_flags,
        sample_valid=minutes.valid_samples,
        sample_qsum=minutes.sample_qsum,
        recorded_samples=minutes.recorded_samples,
        recorded_qsum=minutes.recorded_qsum,
    )


# --- period data: minute means computed upstream (HJ 212 2051; issue 16) -----------------------------------------

#: Averaging periods whose means can stand for minutes [s]: whole minutes that tile an hour (HJ 212 MinInterval).
AVERAGE_PERIODS_S = frozenset(60 * k for k in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30))


def minutes_from_averages(series: ArrayLike, start_ns: ArrayLike, period_s: int, value: ArrayLike, flag: ArrayLike,
                          bounds: tuple[ArrayLike, ArrayLike] | None = None,
                          set_values_valid: ArrayLike | None = None) -> PeriodTable:
    """Means a datalogger computed over whole minutes (HJ 212 2051 minute data) -> closed minute cells.

    A minute mean is not a sample: folding it through :func:`readings_to_minutes` would make it one reading of a
    minute that then fails the 12-values rule. Here each mean *is* the closed minute: valid when its flag is N (or
    S where ``set_values_valid``), finite and plausible, with its value as the minute mean and the datalogger's flag
    as the minute's label, so :func:`hours_from_minutes`, the hour rule (>= 45 valid minutes), substitution and the
    rollups apply unchanged. The datalogger counted the samples behind its mean; they are not on the wire, so the
    cell records one part, its mean (``valid_parts`` 1): the minute rule is not evaluated again. A mean over
    ``period_s`` = k minutes (MinInterval k) stands for each of its k minutes, with the same value and flag, so the
    hour mean of equal-length means is unchanged and the hour counts k valid minutes per valid mean.

    Parameters
    ----------
    series : array of int
        Series number of each mean.
    start_ns : array of int64
        Start of each mean's interval [ns since the epoch, UTC]; must be a multiple of ``period_s`` (to the nearest
        second), so that intervals tile the hour.
    period_s : int
        Length of every interval [s], one of :data:`AVERAGE_PERIODS_S`.
    value : array of float64
        The means [the channel's unit]; NaN where none was sent.
    flag : array of uint8
        :class:`~schemas.quantities.Flag` of each mean, as the datalogger set it.
    bounds : (array, array), optional
        Plausibility bounds per series (:func:`.plausibility.series_bounds`): a valid mean outside is flagged T.
    set_values_valid : array of bool, optional
        Per series: S-flagged means count as valid (``manual_values: valid``).

    Returns
    -------
    PeriodTable
        One closed minute per (series, minute), keys sorted. Raises ``ValueError`` for an unsupported period, an
        unaligned start or a (series, minute) given twice.

    References
    ----------
    docs/sources.md HJ212-T4 (DataTime is the interval start, MinInterval), HJ212-D23, HJ212-D24, HJ212-AC,
    HJ212-PERIOD (the project's rule for means as minutes).
    """
    if period_s not in AVERAGE_PERIODS_S:
        raise ValueError(f"{period_s} s means cannot stand for minutes; periods: {sorted(AVERAGE_PERIODS_S)}")
    series = np.asarray(series, dtype=np.int64)
    start = (np.asarray(start_ns, dtype=np.int64) + ROUND_NS) // 10**9 * 10**9  # to the nearest second
    value = np.asarray(value, dtype=np.float64)
    flag = np.asarray(flag, dtype=np.uint8)
    if not series.shape == start.shape == value.shape == flag.shape:
        raise ValueError("series, start_ns, value and flag must have the same length")
    period_ns = period_s * 10**9
    if (start % period_ns).any():
        i = int(np.argmax(start % period_ns != 0))
        raise ValueError(f"mean {i} starts at {int(start[i])} ns, not on a {period_s} s boundary")
    valid = flag == Flag.N
    if set_values_valid is not None:
        valid |= (flag == Flag.S) & np.take(np.asarray(set_values_valid, dtype=bool), series)
    with np.errstate(invalid="ignore"):
        plausible = np.abs(value) < exact.MAX_ABS_VALUE
        if bounds is not None:
            low, high = (np.asarray(b, dtype=np.float64) for b in bounds)
            plausible &= (value >= np.take(low, series)) & (value <= np.take(high, series))
    flag = np.where(valid & ~plausible, np.uint8(Flag.T), flag)
    valid &= plausible
    recorded = valid | ((flag == Flag.F) & plausible)
    k = period_s // 60  # each mean stands for its k minutes
    minute = np.repeat(start // MINUTE_NS, k) + np.tile(np.arange(k, dtype=np.int64), series.size)
    series, value, flag, valid, recorded = (np.repeat(x, k) for x in (series, value, flag, valid, recorded))
    keys = cell_keys(series, minute * MINUTE_NS, MINUTE_NS)
    order = np.argsort(keys, kind="stable")
    keys, value, flag, valid, recorded = keys[order], value[order], flag[order], valid[order], recorded[order]
    if keys.size > 1 and (keys[1:] == keys[:-1]).any():
        i = int(np.argmax(keys[1:] == keys[:-1]))
        raise ValueError(f"series {int(keys[i] >> _PERIOD_BITS)} has two means for the minute starting at "
                         f"{int(keys[i] & _PERIOD_MASK) * MINUTE_NS} ns")
    m = keys.size
    one_hot = np.zeros((m, _N_FLAGS), dtype=np.int64)
    one_hot[np.arange(m), flag] = 1
    q = np.where(valid, exact.quantise(np.where(valid, value, 0.0)), 0)
    rq = np.where(recorded, exact.quantise(np.where(recorded, value, 0.0)), 0)
    ones = valid.astype(np.int64)
    return PeriodTable(
        period_ns=MINUTE_NS, key=keys, mean=np.where(valid, q / exact.SCALE, np.nan), valid=valid, label=flag,
        instrument_stopped=flag == Flag.F, part_flags=one_hot, valid_parts=ones, sample_flags=one_hot,
        valid_samples=ones, sample_qsum=q, valid_slots=ones, operating_slots=np.ones(m, dtype=np.int64),
        recorded_samples=recorded.astype(np.int64), recorded_qsum=rq, policy=f"hj212-mean-{period_s}s")


def concat_tables(tables: list[PeriodTable]) -> PeriodTable:
    """Closed periods of one length from several tables (disjoint cells), in one table.

    Parameters
    ----------
    tables : list of PeriodTable
        Tables of one period length [ns] and one policy, holding different cells.

    Returns
    -------
    PeriodTable
        Their rows, table by table, in the units they had.

    References
    ----------
    No regulation involved (bookkeeping).
    """
    names = [f.name for f in fields(PeriodTable) if f.name not in ("period_ns", "policy")]
    columns = {n: np.concatenate([getattr(t, n) for t in tables]) for n in names}
    return PeriodTable(period_ns=tables[0].period_ns, policy=tables[0].policy, **columns)

# --- end of period data -------------------------------------------------------------------------------------------
