"""The indicators from hour partials: what the stream closes hour by hour, enough to give a month's findings exactly.

A month of minutes is 44,640 values per channel; the reconciler should not read them back (issue 19). Every
indicator the reconciliation raises needs less than the minutes themselves, hour by hour:

* the hour-level rules (``co2_o2_inconsistent``, ``level_shift``, ``repeated_profile``) the hour grid cell
  (:func:`~.grid.hour_grid`'s mean, operating, calibrating);
* ``flatline`` the repeat mask of consecutive minutes (59 bits inside the hour) and the hour's first and last
  minute, to evaluate the one transition across each hour boundary;
* ``cm_day_share`` and ``cm_run_long`` the hour's C/M mask (60 bits);
* ``low_variance`` the hour's count, mean and sum of squared deviations of its operating minutes
  (:func:`~.channel.low_variance_days` combines them into days; :func:`~.channel.low_variance` goes through the same
  pieces, so both agree bit for bit);
* the edge meters' totals (:mod:`streams.kernels.meters`) the count, sum, first and last valid minute.

:func:`hour_partials` reduces a minute grid to them (the stream on each closed hour, the audit on a month grid read
from InfluxDB, with the same code); :func:`scan_hours` evaluates the rules on a month of them and returns what
:func:`~.scan.scan` returns on the month's minute grid and its :func:`~.grid.hour_grid`.

``out_of_range`` is not among them: its value is the most extreme minute of a run, which the partials do not keep,
and the reconciliation does not run it (it passes no bounds; the stream flags such readings T at once).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import ClassVar
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from schemas.quantities import Flag
from schemas.records import INDICATOR_HOUR, METER_HOUR

from ..aggregate import HOUR_NS, MINUTE_NS
from .calibration import cm_findings
from .channel import chunk_moments, flat_runs, low_variance_days, repeats
from .co2_o2 import CO2O2Pairs, co2_o2_inconsistency
from .grid import _DAY_S, NO_DATA, Findings, Floats, Grid, Ints
from .level_shift import level_shifts
from .policy import DEFAULT_POLICY, IndicatorPolicy
from .profiles import repeated_profiles
from .scan import _local_seconds, _seconds_to_month_end

__all__ = ["PER_HOUR", "HourPartials", "hour_partials", "scan_hours"]

#: Minutes per hour partial.
PER_HOUR = 60
_BIT = np.left_shift(np.uint64(1), np.arange(PER_HOUR, dtype=np.uint64))


@dataclass(frozen=True, eq=False)
class HourPartials:
    """Per series and hour, ``[n_series, n_hours]`` arrays (hours consecutive from ``start_ns``)."""

    start_ns: int  # start of hour 0 [ns since the epoch], a whole hour
    mean: Floats  # hour mean of the minutes with a value (hour_grid) [the series' unit]
    operating: NDArray[np.bool_]  # any minute operating
    calibrating: NDArray[np.bool_]  # any minute holding a calibration reading
    repeats: NDArray[np.uint64]  # bit j: minute j + 1 repeats minute j (j < 59)
    cm: NDArray[np.uint64]  # bit m: minute m flagged C or M
    head: Floats  # minute 0's value where it is valid and operating, else NaN [the series' unit]
    tail: Floats  # minute 59's, likewise
    lv_count: Ints  # operating minutes with a value
    lv_mean: Floats  # their mean [the series' unit]
    lv_m2: Floats  # their sum of squared deviations from it [unit²]
    n_valid: Ints  # minutes with a value (meters)
    total: Floats  # their sum [the series' unit]
    first: Ints  # minute of the first of them, -1 without
    first_value: Floats
    last: Ints  # minute of the last of them, -1 without
    last_value: Floats

    ARRAYS: ClassVar[tuple[str, ...]] = ("mean", "operating", "calibrating", "repeats", "cm", "head", "tail",
                                         "lv_count", "lv_mean", "lv_m2", "n_valid", "total", "first", "first_value",
                                         "last", "last_value")
    DTYPES: ClassVar[tuple[type[np.generic], ...]] = (
        np.float64, np.bool_, np.bool_, np.uint64, np.uint64, np.float64, np.float64, np.int64, np.float64,
        np.float64, np.int64, np.float64, np.int64, np.float64, np.int64, np.float64)
    #: The indicators' fields (every channel) and the meters' (meter channels only), as the day records carry them.
    INDICATOR_FIELDS: ClassVar[tuple[str, ...]] = INDICATOR_HOUR.names or ()
    METER_FIELDS: ClassVar[tuple[str, ...]] = METER_HOUR.names or ()
    FILL: ClassVar[tuple[float, ...]] = (np.nan, 0, 0, 0, 0, np.nan, np.nan, 0, np.nan, 0.0, 0, 0.0, -1, np.nan, -1,
                                         np.nan)

    @property
    def shape(self) -> tuple[int, int]:
        n, h = self.mean.shape
        return n, h

    @classmethod
    def empty(cls, n_series: int, n_hours: int, start_ns: int) -> HourPartials:
        """Hours without any minute (what an hour the stream never closed looks like)."""
        return cls(start_ns, *(np.full((n_series, n_hours), f, dtype=d) for f, d in zip(cls.FILL, cls.DTYPES,
                                                                                           strict=True)))

    def rows(self, index: list[int] | NDArray[np.int64]) -> HourPartials:
        """The partials of the series ``index`` selects, in that order."""
        return HourPartials(self.start_ns, *(getattr(self, name)[index] for name in self.ARRAYS))

    def arrays(self) -> dict[str, NDArray[np.generic]]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "start_ns"}

    def hours(self) -> Grid:
        """The hour grid (as :func:`~.grid.hour_grid` gives it from the minutes)."""
        flag = np.where(np.isfinite(self.mean), Flag.N, NO_DATA).astype(np.uint8)
        return Grid(self.mean, self.start_ns, HOUR_NS, flag, self.operating, self.calibrating)


def hour_partials(minutes: Grid, policy: IndicatorPolicy = DEFAULT_POLICY) -> HourPartials:
    """Reduce a minute grid of whole hours to its hour partials.

    Parameters
    ----------
    minutes : Grid
        Minute means [each series' unit] with flags and masks, starting on a whole hour, a whole number of hours.
    policy : IndicatorPolicy
        ``flat_rel_tol``, ``flat_abs_tol`` (the repeat test inside each hour).

    Returns
    -------
    HourPartials
        One partial per series and hour.

    References
    ----------
    The rules' own (:mod:`streams.kernels.indicators`); the hour mean as :func:`~.grid.hour_grid`.
    """
    n, m = minutes.shape
    if minutes.period_ns != MINUTE_NS or minutes.start_ns % HOUR_NS or m % PER_HOUR:
        raise ValueError("hour partials need a minute grid of whole hours, starting on an hour")
    h = m // PER_HOUR
    cube = minutes.mean.reshape(n, h, PER_HOUR)
    running = minutes.operating.reshape(n, h, PER_HOUR)
    with warnings.catch_warnings():  # hours without any minute are NaN, as in hour_grid
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(cube, axis=2)
    ok = np.isfinite(cube) & running
    same = repeats(cube[:, :, :-1], ok[:, :, :-1], cube[:, :, 1:], ok[:, :, 1:], policy)
    cm = (minutes.flag == Flag.C) | (minutes.flag == Flag.M)
    lv_count, lv_mean, lv_m2 = chunk_moments(np.where(running, cube, np.nan))
    from ..meters import meter_partials  # meters build on the indicators' grid

    meter = meter_partials(minutes.mean, PER_HOUR)
    return HourPartials(
        minutes.start_ns, mean, np.asarray(running.any(axis=2), dtype=bool),
        np.asarray(minutes.calibrating.reshape(n, h, PER_HOUR).any(axis=2), dtype=bool),
        _pack(same), _pack(cm.reshape(n, h, PER_HOUR)), np.where(ok[:, :, 0], cube[:, :, 0], np.nan),
        np.where(ok[:, :, -1], cube[:, :, -1], np.nan), lv_count, lv_mean, lv_m2, *meter)


def _pack(bits: NDArray[np.bool_]) -> NDArray[np.uint64]:
    return np.asarray(np.bitwise_or.reduce(np.where(bits, _BIT[: bits.shape[-1]], np.uint64(0)), axis=-1),
                      dtype=np.uint64)


def _unpack(words: NDArray[np.uint64], k: int) -> NDArray[np.bool_]:
    """Bits 0..k-1 of each word as a trailing axis (little-endian bytes, least significant bit first)."""
    little = np.ascontiguousarray(words, dtype="<u8")
    bits = np.unpackbits(little.view(np.uint8).reshape(*words.shape, 8), axis=-1, bitorder="little")
    return np.asarray(bits[..., :k], dtype=bool)


def _renumber(found: Findings, rows: Ints) -> Findings:
    """Findings on a subset of the series, numbered as on the whole grid."""
    return Findings(found.rule, rows[found.series], found.start, found.end, found.value, found.threshold, found.ref,
                    found.context, found.origin_ns, found.period_ns)


def scan_hours(parts: HourPartials, *, tz: ZoneInfo | str, policy: IndicatorPolicy = DEFAULT_POLICY,
               pairs: CO2O2Pairs | None = None, typical_cv: Floats | None = None) -> Findings:
    """Every indicator :func:`~.scan.scan` runs on a minute grid and its hour grid (``out_of_range`` aside), from
    the grid's hour partials: the same findings, to the bit, in the same order.

    Parameters
    ----------
    parts : HourPartials
        The hours of the grid, in order, starting at a local midnight (a reconciled month always does).
    tz : ZoneInfo or str
        The entity's time zone (IANA name).
    policy : IndicatorPolicy
        Every threshold (units per field); the repeat tolerances must be the ones the partials were made with.
    pairs : CO2O2Pairs, optional
        CO2 and O2 series per source with CO2max [% by volume]; the CO2/O2 rule is skipped without.
    typical_cv : array of float, shape (n_series,), optional
        Typical daily coefficient of variation per series [1].

    Returns
    -------
    Findings
        Minute-level findings on the minute grid (period 1 min), hour-level ones on the hour grid, sorted by series,
        start and rule.

    References
    ----------
    The rules' own (:mod:`streams.kernels.indicators`).
    """
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    n, h = parts.shape
    start = parts.start_ns
    if _local_seconds(start, 1, HOUR_NS, tz)[0] % _DAY_S:
        raise ValueError("scan_hours needs hours starting at a local midnight")
    if h == 0:
        return Findings.empty()
    a, b = parts.tail[:, :-1], parts.head[:, 1:]
    across = repeats(a, np.isfinite(a), b, np.isfinite(b), policy)  # minute 59 -> the next hour's minute 0
    # the minute-level runs only on the series that have any (most have none): the same findings, less work
    rows = np.flatnonzero(parts.repeats.any(axis=1) | across.any(axis=1))
    same = np.zeros((rows.size, h, PER_HOUR), dtype=bool)
    same[:, :, :-1] = _unpack(parts.repeats[rows], PER_HOUR - 1)
    same[:, :-1, -1] = across[rows]
    out = [_renumber(flat_runs(same.reshape(rows.size, h * PER_HOUR)[:, :-1], policy=policy, start_ns=start,
                               period_ns=MINUTE_NS), rows)]
    per_day = _DAY_S * 10**9 // MINUTE_NS
    rows = np.flatnonzero(parts.cm.any(axis=1))
    cm = _unpack(parts.cm[rows], PER_HOUR).reshape(rows.size, h * PER_HOUR)
    out.append(_renumber(cm_findings(cm, per_day, policy=policy, start_ns=start, period_ns=MINUTE_NS), rows))
    days = -(-h // 24)
    moments = []
    for x, fill in ((parts.lv_count, 0), (parts.lv_mean, np.nan), (parts.lv_m2, 0.0)):
        padded = np.full((n, days * 24), fill, dtype=x.dtype)
        padded[:, :h] = x
        moments.append(padded.reshape(n, days, 24))
    out.append(low_variance_days(moments[0], moments[1], moments[2], per_day, typical_cv=typical_cv, policy=policy,
                                 start_ns=start, period_ns=MINUTE_NS))
    hours = parts.hours()
    if pairs is not None and pairs.co2.size:
        out.append(co2_o2_inconsistency(
            hours.mean[pairs.co2] * pairs.co2_to_pct[:, None], hours.mean[pairs.o2], pairs.co2max_pct,
            hours.operating[pairs.co2] & hours.operating[pairs.o2], policy=policy, co2_series=pairs.co2,
            o2_series=pairs.o2, start_ns=start, period_ns=HOUR_NS))
    near = _seconds_to_month_end(_local_seconds(start, h, HOUR_NS, tz)) <= policy.deadline_window_h * 3600
    out.append(level_shifts(hours.mean, hours.operating, calibrating=hours.calibrating, near_deadline=near,
                            policy=policy, start_ns=start, period_ns=HOUR_NS))
    out.append(repeated_profiles(hours.mean, 24, hours.operating, policy=policy, start_ns=start, period_ns=HOUR_NS))
    return Findings.concat(out).sorted()
