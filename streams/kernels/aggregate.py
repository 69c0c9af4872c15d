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

from dataclasses import dataclass, fields

import numpy as np

from schemas.quantities import Flag

from . import exact
from .policy import ValidityPolicy

__all__ = ["MINUTE_NS", "HOUR_NS", "Accumulator", "PeriodTable", "hours_from_minutes", "minutes_from_readings"]

MINUTE_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
_N_FLAGS = len(Flag)
_PERIOD_BITS = 32
_PERIOD_MASK = (1 << _PERIOD_BITS) - 1
_MAX_SLOTS = 16


def cell_keys(series: np.ndarray, ts_ns: np.ndarray, period_ns: int) -> np.ndarray:
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


def _counts(inv: np.ndarray, m: int, weights=None) -> np.ndarray:
    return np.bincount(inv, weights=weights, minlength=m).astype(np.int64)


def _slot_bits(inv: np.ndarray, slot: np.ndarray, m: int) -> np.ndarray:
    """OR of ``1 << slot`` per cell."""
    hit = np.bincount(inv * _MAX_SLOTS + slot, minlength=m * _MAX_SLOTS).reshape(m, _MAX_SLOTS) > 0
    return (hit * (1 << np.arange(_MAX_SLOTS, dtype=np.int64))).sum(axis=1)


@dataclass(frozen=True, eq=False)
class Accumulator:
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
    operating_slots : int64 bitmask of sub-slots with a part taken while the source ran (not F)
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
    batches: frozenset = frozenset()

    _ROW_FIELDS = ("part_flags", "valid_parts", "part_qsum", "sample_flags", "valid_samples", "sample_qsum")
    _OR_FIELDS = ("valid_slots", "operating_slots")

    @classmethod
    def empty(cls, period_ns: int) -> Accumulator:
        z, zf = np.zeros(0, np.int64), np.zeros((0, _N_FLAGS), np.int64)
        return cls(period_ns, z, zf, z, z, zf, z, z, z, z)

    def __len__(self) -> int:
        return int(self.key.size)

    @property
    def series(self) -> np.ndarray:
        return self.key >> _PERIOD_BITS

    @property
    def start_ns(self) -> np.ndarray:
        return (self.key & _PERIOD_MASK) * self.period_ns

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
        batch_id=None,
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
        if sample_flags is None:
            s_flags, s_valid, s_qsum = part_flags, valid_parts, part_qsum
        else:
            s_flags = np.stack([_counts(inv, m, sample_flags[:, f]) for f in range(_N_FLAGS)], axis=1)
            s_valid = exact.segment_sum(inv, sample_valid, m)
            s_qsum = exact.segment_sum(inv, sample_qsum, m)
        valid_slots = _slot_bits(inv[part_valid], slot[part_valid], m)
        operating_slots = _slot_bits(inv[part_operating], slot[part_operating], m)
        batches = frozenset() if batch_id is None else frozenset([batch_id])
        return cls(
            period_ns, uniq, part_flags, valid_parts, part_qsum, s_flags, s_valid, s_qsum, valid_slots,
            operating_slots, batches,
        )

    def absorb_readings(self, series, ts_ns, value, flag, batch_id=None) -> Accumulator:
        """Add raw readings (period must be a minute). A ``batch_id`` already absorbed is a no-op.

        Readings flagged N whose value is NaN, infinite or beyond :data:`exact.MAX_ABS_VALUE` count as
        out of range (T): flagged, never summed.
        """
        if batch_id is not None and batch_id in self.batches:
            return self
        return self.merge(readings_to_minutes(series, ts_ns, value, flag, batch_id))

    # -- combining --------------------------------------------------------------------------

    def merge(self, other: Accumulator) -> Accumulator:
        """Combine two states of the same period. Refuses states that share a batch (double count)."""
        if other.period_ns != self.period_ns:
            raise ValueError(f"cannot merge {self.period_ns} ns periods with {other.period_ns} ns periods")
        shared = self.batches & other.batches
        if shared:
            raise ValueError(f"both states already contain batches {sorted(shared)[:5]}: merging would count them twice")
        if not len(other):
            return Accumulator(**{**self._as_dict(), "batches": self.batches | other.batches})
        if not len(self):
            return Accumulator(**{**other._as_dict(), "batches": self.batches | other.batches})
        key = np.union1d(self.key, other.key)
        ia, ib = np.searchsorted(key, self.key), np.searchsorted(key, other.key)
        out = {"period_ns": self.period_ns, "key": key, "batches": self.batches | other.batches}
        for name in self._ROW_FIELDS + self._OR_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            arr = np.zeros((key.size,) + a.shape[1:], dtype=np.int64)
            arr[ia] = a
            if name in self._OR_FIELDS:
                arr[ib] |= b
            else:
                arr[ib] += b
            out[name] = arr
        return Accumulator(**out)

    def _as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def select(self, mask: np.ndarray) -> Accumulator:
        """The cells where ``mask`` is true (batch ids are kept: they describe the whole stream)."""
        d = self._as_dict()
        for name in ("key",) + self._ROW_FIELDS + self._OR_FIELDS:
            d[name] = d[name][mask]
        return Accumulator(**d)

    def split_closed(self, watermark_ns: int) -> tuple[Accumulator, Accumulator]:
        """(cells whose period ended at or before ``watermark_ns``, the still-open rest)."""
        done = self.start_ns + self.period_ns <= watermark_ns
        return self.select(done), self.select(~done)

    def equals(self, other: Accumulator) -> bool:
        return self.period_ns == other.period_ns and all(
            np.array_equal(getattr(self, n), getattr(other, n)) for n in ("key",) + self._ROW_FIELDS + self._OR_FIELDS
        )

    # -- closing ----------------------------------------------------------------------------

    def close(self, policy: ValidityPolicy) -> PeriodTable:
        """Apply ``policy`` to every cell: the minute rule for minutes, the hour rule for hours."""
        n_parts = self.part_flags.sum(axis=1)
        label = np.where(
            self.part_flags[:, Flag.N] > policy.normal_share * n_parts, Flag.N, policy.non_normal_flag
        ).astype(np.uint8)
        if self.period_ns == MINUTE_NS:
            rule = policy.minute
            valid = (self.valid_parts >= rule.min_valid_samples) & (_popcount(self.valid_slots) >= rule.min_valid_slots)
            mean_q = _div(self.part_qsum, self.valid_parts)
        elif self.period_ns == HOUR_NS:
            valid, mean_q = _hour_rule(self, policy)
        else:
            raise ValueError(f"no validity rule for {self.period_ns} ns periods")
        n_samples = self.sample_flags.sum(axis=1)
        stopped = self.sample_flags[:, Flag.F] > policy.stopped_share * n_samples
        return PeriodTable(
            period_ns=self.period_ns,
            key=self.key,
            mean=np.where(valid, mean_q / exact.SCALE, np.nan),
            valid=valid,
            label=label,
            stopped=stopped,
            part_flags=self.part_flags,
            valid_parts=self.valid_parts,
            sample_flags=self.sample_flags,
            valid_samples=self.valid_samples,
            sample_qsum=self.sample_qsum,
            valid_slots=self.valid_slots,
            operating_slots=self.operating_slots,
            policy=policy.name,
        )


def _div(qsum: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Quantised mean, rounded to the grid (deterministic: a function of the exact integers only)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.rint(qsum / np.where(n > 0, n, 1)).astype(np.int64)


def _popcount(bits: np.ndarray) -> np.ndarray:
    return np.bitwise_count(bits.astype(np.uint64)).astype(np.int64)


def _hour_rule(acc: Accumulator, policy: ValidityPolicy) -> tuple[np.ndarray, np.ndarray]:
    rule = policy.hour
    if rule.method == "min_valid_minutes":  # HJ 212 App. D Eq. (24): mean of valid minute means, k >= 45
        return acc.valid_parts >= rule.min_valid_minutes, _div(acc.part_qsum, acc.valid_parts)
    if rule.method == "pro_rata_points":  # MRR Art. 44: all valid points, if >= 80 % of the possible
        needed = int(np.ceil(rule.min_point_fraction * rule.points_per_hour - 1e-9))
        return acc.valid_samples >= needed, _div(acc.sample_qsum, acc.valid_samples)
    if rule.method == "operating_quadrants":  # 75.10(d): a valid point in every operating quadrant
        op = acc.operating_slots
        return (op != 0) & ((acc.valid_slots & op) == op), _div(acc.part_qsum, acc.valid_parts)
    raise ValueError(f"unknown hour rule method {rule.method!r}")


@dataclass(frozen=True, eq=False)
class PeriodTable:
    """Closed periods (minutes or hours) of many series: one row per cell, with every count kept so
    another policy can be re-evaluated later. ``mean`` is NaN where the period is not valid."""

    period_ns: int
    key: np.ndarray
    mean: np.ndarray
    valid: np.ndarray
    label: np.ndarray  # HJ 212 flag of the aggregate: N when > 75 % of parts are N, else D
    stopped: np.ndarray  # the source did not run (share of F readings above the policy's threshold)
    part_flags: np.ndarray
    valid_parts: np.ndarray
    sample_flags: np.ndarray
    valid_samples: np.ndarray
    sample_qsum: np.ndarray
    valid_slots: np.ndarray
    operating_slots: np.ndarray
    policy: str

    def __len__(self) -> int:
        return int(self.key.size)

    @property
    def series(self) -> np.ndarray:
        return self.key >> _PERIOD_BITS

    @property
    def start_ns(self) -> np.ndarray:
        return (self.key & _PERIOD_MASK) * self.period_ns


def readings_to_minutes(series, ts_ns, value, flag, batch_id=None) -> Accumulator:
    """Group raw readings into minute cells (the first kernel stage)."""
    series = np.asarray(series, dtype=np.int64)
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    flag = np.asarray(flag, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        in_range = np.abs(value) < exact.MAX_ABS_VALUE  # False for NaN and inf as well
    flag = np.where((flag == Flag.N) & ~in_range, np.uint8(Flag.T), flag)
    valid = flag == Flag.N
    q = np.zeros(value.shape, dtype=np.int64)
    q[valid] = exact.quantise(value[valid])
    slot = (ts_ns % MINUTE_NS) // (5 * 10**9)
    keys = cell_keys(series, ts_ns, MINUTE_NS)
    return Accumulator.from_parts(MINUTE_NS, keys, flag, valid, q, slot, flag != Flag.F, batch_id=batch_id)


def minutes_from_readings(series, ts_ns, value, flag, policy: ValidityPolicy) -> PeriodTable:
    """Batch form: readings -> closed minutes."""
    return readings_to_minutes(series, ts_ns, value, flag).close(policy)


def hours_from_minutes(minutes: PeriodTable) -> Accumulator:
    """Closed minutes -> hour cells (parts: minutes, flagged by their label; slots: 15-min quadrants)."""
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
        ~minutes.stopped,
        sample_flags=minutes.sample_flags,
        sample_valid=minutes.valid_samples,
        sample_qsum=minutes.sample_qsum,
    )
