"""Grids, findings and the array helpers every indicator shares.

:class:`Grid` holds ``[n_series, n_periods]`` period means with their flags and masks; :class:`Findings` is what
every rule returns, one row per finding. The helpers find runs, reduce over them and cut grids into local days,
all vectorised."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from schemas.quantities import Flag

from ..aggregate import HOUR_NS, MINUTE_NS, PeriodTable

#: Rule code -> name. Codes are stable: never renumber.
RULES: dict[int, str] = {
    1: "flatline",
    2: "out_of_range",
    3: "co2_o2_inconsistent",
    4: "level_shift",
    5: "repeated_profile",
    6: "low_variance",
    7: "cm_day_share",
    8: "cm_run_long",
}
_CODE = {name: code for code, name in RULES.items()}

#: ``Findings.context`` bits (level shifts only).
NEAR_DEADLINE = 1  # within ``deadline_window_h`` before a local month end
AFTER_CALIBRATION = 2  # within ``after_calibration_h`` after a period holding calibration readings

#: ``Grid.flag`` of a period without any reading.
NO_DATA = 255

_DAY_S = 86_400

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]
Codes = NDArray[np.uint8]


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Findings:
    """Indicator results, one row per finding. Indices refer to the grid each was found on:
    period ``i`` starts at ``origin_ns + i * period_ns``; spans are half-open ``[start, end)``."""

    rule: Codes  # RULES code
    series: Ints  # the CO2 series for co2_o2_inconsistent
    start: Ints  # first period
    end: Ints  # one past the last period
    value: Floats  # what was measured (unit per rule: docs/indicators.md)
    threshold: Floats  # what it was held against
    ref: Ints  # earlier day's first period (repeated_profile), O2 series (co2_o2), else -1
    context: Codes  # bits NEAR_DEADLINE | AFTER_CALIBRATION (level_shift), else 0
    origin_ns: Ints  # start of period 0 of the grid [ns]
    period_ns: Ints  # period length of the grid [ns]

    _FIELDS: ClassVar[tuple[str, ...]] = ("rule", "series", "start", "end", "value", "threshold", "ref", "context",
                                          "origin_ns", "period_ns")
    _DTYPES: ClassVar[tuple[type[np.generic], ...]] = (np.uint8, np.int64, np.int64, np.int64, np.float64, np.float64,
                                                       np.int64, np.uint8, np.int64, np.int64)

    def __len__(self) -> int:
        return int(self.rule.size)

    @classmethod
    def _of(cls, columns: list[NDArray[Any]]) -> Findings:
        return cls(*columns)

    @classmethod
    def empty(cls) -> Findings:
        return cls._of([np.zeros(0, dtype=d) for d in cls._DTYPES])

    @classmethod
    def concat(cls, parts: list[Findings]) -> Findings:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls._of([np.concatenate([getattr(p, f) for p in parts]) for f in cls._FIELDS])

    def select(self, mask: ArrayLike) -> Findings:
        """The findings ``mask`` selects (a boolean mask or indices)."""
        index = np.asarray(mask)
        return self._of([getattr(self, f)[index] for f in self._FIELDS])

    def sorted(self) -> Findings:
        """By series, then start, then rule."""
        return self.select(np.lexsort((self.rule, self.start, self.series)))

    @property
    def rule_name(self) -> NDArray[np.str_]:
        names = np.array([""] + [RULES[c] for c in sorted(RULES)])
        lookup = np.zeros(256, dtype=np.int64)
        lookup[sorted(RULES)] = np.arange(1, len(RULES) + 1)
        return names[lookup[self.rule]]

    @property
    def start_time_ns(self) -> Ints:
        return self.origin_ns + self.start * self.period_ns

    @property
    def end_time_ns(self) -> Ints:
        return self.origin_ns + self.end * self.period_ns


def _column(x: ArrayLike | None, m: int, dtype: DTypeLike, fill: float) -> NDArray[Any]:
    """``x`` broadcast to ``m`` rows of ``dtype`` (its own copy), or ``fill`` everywhere."""
    if x is None:
        return np.full(m, fill, dtype=dtype)
    return np.broadcast_to(np.asarray(x, dtype=dtype), (m,)).copy()


def _findings(rule: str, series: ArrayLike, start: ArrayLike, end: ArrayLike, value: ArrayLike,
              threshold: ArrayLike, *, start_ns: int, period_ns: int, ref: ArrayLike | None = None,
              context: ArrayLike | None = None) -> Findings:
    rows = np.asarray(series, dtype=np.int64)
    m = rows.size
    return Findings(
        rule=np.full(m, _CODE[rule], dtype=np.uint8),
        series=rows,
        start=_column(start, m, np.int64, 0),
        end=_column(end, m, np.int64, 0),
        value=_column(value, m, np.float64, np.nan),
        threshold=_column(threshold, m, np.float64, np.nan),
        ref=_column(ref, m, np.int64, -1),
        context=_column(context, m, np.uint8, 0),
        origin_ns=np.full(m, start_ns, dtype=np.int64),
        period_ns=np.full(m, period_ns, dtype=np.int64),
    )


# -- grids ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, init=False)
class Grid:
    """Regular ``[n_series, n_periods]`` grid of one period length, starting at ``start_ns``.

    ``mean``: period means [the series' unit], NaN where a period has no valid mean; ``flag`` each period's
    dominant reading flag (HJ 212 Table 8 code, ``HJ212-T8``; :data:`NO_DATA` where the period holds no reading);
    ``operating``: the source ran (default: not F and not empty); ``calibrating``: the period holds at least one C
    reading (default: ``flag == C``). ``start_ns`` and ``period_ns`` in ns since the epoch / ns.
    """

    mean: Floats
    start_ns: int
    period_ns: int
    flag: Codes
    operating: Bools
    calibrating: Bools

    def __init__(self, mean: ArrayLike, start_ns: int = 0, period_ns: int = MINUTE_NS, flag: ArrayLike | None = None,
                 operating: ArrayLike | None = None, calibrating: ArrayLike | None = None) -> None:
        values = np.atleast_2d(np.asarray(mean, dtype=np.float64))
        codes = (np.where(np.isfinite(values), np.uint8(Flag.N), np.uint8(NO_DATA)) if flag is None
                 else np.asarray(flag, dtype=np.uint8).reshape(values.shape))
        ran = ((codes != Flag.F) & (codes != NO_DATA) if operating is None
               else np.asarray(operating, dtype=bool).reshape(values.shape))
        cal = codes == Flag.C if calibrating is None else np.asarray(calibrating, dtype=bool).reshape(values.shape)
        for name, value in (("mean", values), ("start_ns", start_ns), ("period_ns", period_ns), ("flag", codes),
                            ("operating", ran), ("calibrating", cal)):
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        n, t = self.mean.shape
        return n, t

    @classmethod
    def from_table(cls, table: PeriodTable, n_series: int, start_ns: int, n_periods: int) -> Grid:
        """Pivot closed periods (minutes or hours) onto a dense grid; absent cells are NaN / NO_DATA."""
        p = table.period_ns
        idx = (table.start_ns - start_ns) // p
        keep = (idx >= 0) & (idx < n_periods) & (table.series < n_series)
        s, i = table.series[keep], idx[keep]
        mean = np.full((n_series, n_periods), np.nan)
        flag = np.full((n_series, n_periods), NO_DATA, dtype=np.uint8)
        operating = np.zeros((n_series, n_periods), dtype=bool)
        calibrating = np.zeros((n_series, n_periods), dtype=bool)
        sample_flags = table.sample_flags[keep]
        mean[s, i] = table.mean[keep]
        flag[s, i] = np.argmax(sample_flags, axis=1)  # most frequent reading flag; ties to the lower code (N first)
        operating[s, i] = ~table.instrument_stopped[keep]
        calibrating[s, i] = sample_flags[:, Flag.C] > 0
        return cls(mean, start_ns, p, flag, operating, calibrating)


def hour_grid(minutes: Grid) -> Grid:
    """Hour means of a minute grid that starts on an hour.

    Parameters
    ----------
    minutes : Grid
        Minute means [the series' unit], starting on a whole hour; a last incomplete hour is left out.

    Returns
    -------
    Grid
        Hour means: the mean of the hour's minutes with a value (NaN where none has one) [the series' unit],
        flagged N where there is a mean and NO_DATA elsewhere; operating where any minute was, calibrating where
        any minute held a calibration reading.

    References
    ----------
    Project choice for the indicators' hour grid (not the validity rules of an hourly figure, which are the
    aggregation's: docs/sources.md ``HJ212-D24``).
    """
    per_hour = HOUR_NS // minutes.period_ns
    n, m = minutes.shape
    h = m // per_hour
    cube = minutes.mean[:, :h * per_hour].reshape(n, h, per_hour)
    with warnings.catch_warnings():  # hours without any minute are NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(cube, axis=2)
    operating = minutes.operating[:, :h * per_hour].reshape(n, h, per_hour).any(axis=2)
    calibrating = minutes.calibrating[:, :h * per_hour].reshape(n, h, per_hour).any(axis=2)
    flag = np.where(np.isfinite(mean), Flag.N, NO_DATA).astype(np.uint8)
    return Grid(mean, minutes.start_ns, per_hour * minutes.period_ns, flag, operating, calibrating)


# -- helpers --------------------------------------------------------------------------------------


def _as2d(x: ArrayLike, dtype: DTypeLike = np.float64) -> NDArray[Any]:
    return np.atleast_2d(np.asarray(x, dtype=dtype))


def _mask(mask: ArrayLike | None, shape: tuple[int, ...]) -> Bools:
    return np.ones(shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), shape)


def _periods(duration_ns: float, period_ns: int) -> int:
    """Whole periods covering a duration (at least 1)."""
    return max(1, int(np.ceil(duration_ns / period_ns - 1e-9)))


def _runs(mask: NDArray[np.bool_]) -> tuple[Ints, Ints, Ints]:
    """(row, start, end) of every run of True in each row of a 2-D mask, ``[start, end)``, row-major."""
    n, t = mask.shape
    padded = np.zeros((n, t + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edge = np.diff(padded, axis=1)
    rows, start = np.nonzero(edge == 1)
    _, end = np.nonzero(edge == -1)  # per row the same count, in the same order
    return rows.astype(np.int64), start.astype(np.int64), end.astype(np.int64)


def _run_reduce(ufunc: np.ufunc, x: NDArray[Any], rows: Ints, start: Ints, end: Ints) -> NDArray[Any]:
    """``ufunc`` reduced over each run ``x[row, start:end]`` in one ``reduceat``."""
    if rows.size == 0:
        return np.zeros(0, dtype=x.dtype)
    t = x.shape[1]
    flat = np.append(x.ravel(), 0)  # sentinel: a run may end at the last element
    idx = np.empty(2 * rows.size, dtype=np.int64)
    idx[0::2] = rows * t + start
    idx[1::2] = rows * t + end
    return np.asarray(ufunc.reduceat(flat, idx))[0::2]


def _nanmedian(x: NDArray[np.floating[Any]], axis: int) -> Floats:
    """``np.nanmedian`` without the all-NaN warning (such rows give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(x, axis=axis), dtype=np.float64)


def _window_max(x: Floats, w: int) -> Floats:
    """``out[:, j] = x[:, j : j + w].max()`` for every full window, in log2(w) passes (doubling)."""
    r, span = x.copy(), 1
    while 2 * span <= w:
        r[:, :-span] = np.maximum(r[:, :-span], r[:, span:])  # r[:, j] = max of x[:, j : j + 2 span]
        span *= 2
    n_out = x.shape[1] - w + 1
    return np.maximum(r[:, :n_out], r[:, w - span : w - span + n_out])


def _day_cube(x: NDArray[Any], periods_per_day: int, fill: float) -> NDArray[Any]:
    """[n, t] -> [n, days, periods_per_day], the last day padded with ``fill``."""
    n, t = x.shape
    days = -(-t // periods_per_day)
    cube = np.full((n, days * periods_per_day), fill, dtype=x.dtype)
    cube[:, :t] = x
    return cube.reshape(n, days, periods_per_day)


def _periods_per_day(period_ns: int) -> int:
    if (_DAY_S * 10**9) % period_ns:
        raise ValueError(f"a day is not a whole number of {period_ns} ns periods")
    return _DAY_S * 10**9 // period_ns
