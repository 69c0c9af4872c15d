"""Hours -> local days -> local months: totals, counts and validity, for many sources at once.

Days and months follow the entity's time zone (China reports in UTC+8; an hour's timestamp is its start). Mass totals
add measured and substituted hours (HJ 212 Eq. 34: the daily emission is the sum of hourly emissions, [HJ212-D34]);
stopped hours add zero. Every total carries its counts, so completeness can be judged and rules re-evaluated.

Validity counts only the hours the source ran [P-STOPPED-PERIODS]. HJ 212 App. D Eq. 25 asks for 20 valid hours of
24 [HJ212-D25] and HJ 76-2017 App. B for 25 valid days of a month, 23 in February [HJ76-B]; read as "at most 24 - 20
invalid hours a day" and "at most (days of the month - 25, or - 23) invalid days a month", a stop is not held
against the period: a stopped hour is not an invalid hour, and a day without any operating hour (a *stopped day*) is
neither valid nor invalid. A day is valid when it has operating hours and at most ``24 - min_valid_hours`` of them
are not valid (missing or out of control, substituted or not); a month is valid when at most ``days - min_valid_days``
of its operating days are invalid. For a source that runs all month this is the text's rule exactly. A month in
which the source never ran has no invalid day: ``valid`` is False (no valid day), ``invalid`` False, ``stopped``
True. Policies without a day or month rule (EU, US) count every operating period as valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from .policy import ValidityPolicy

__all__ = ["PeriodTotals", "local_period_index", "rollup"]

_DAY_S = 86_400


def _utc_offsets_s(start_ns: int, n_hours: int, tz: ZoneInfo) -> np.ndarray:
    """UTC offset of every hour [s]. Zones without transitions in the range (China) cost two lookups."""
    def offset(h: int) -> int:
        delta = datetime.fromtimestamp(start_ns // 10**9 + 3600 * h, UTC).astimezone(tz).utcoffset()
        if delta is None:  # never for a ZoneInfo
            raise ValueError(f"time zone {tz} gives no UTC offset")
        return int(delta.total_seconds())

    first, last = offset(0), offset(n_hours - 1)
    if first == last and n_hours < 24 * 200:  # no DST change inside: constant
        return np.full(n_hours, first, dtype=np.int64)
    return np.array([offset(h) for h in range(n_hours)], dtype=np.int64)  # per hour, not per reading


def local_period_index(start_ns: int, n_hours: int, tz: ZoneInfo,
                       period: str) -> tuple[NDArray[np.intp], NDArray[np.datetime64]]:
    """For each hour: the index of its local day, month, calendar quarter or year in the range, and the labels.

    Parameters
    ----------
    start_ns : int
        Start of the first hour [ns since the epoch, UTC].
    n_hours : int
        Hours in the range [1].
    tz : ZoneInfo
        The entity's time zone (local days and months are the reporting periods).
    period : str
        ``day``, ``month``, ``quarter`` or ``year``.

    Returns
    -------
    index : ndarray of int
        Period of each hour, 0 .. number of periods - 1.
    labels : ndarray of datetime64
        Each period's local calendar label (``datetime64[D]`` for days, ``[M]`` for the first month of the others).

    References
    ----------
    docs/sources.md: HJ212-D25 [P] and HJ76-B [S] (days and months are local calendar periods), HJ75-CR [S]
    (calendar quarters).
    """
    local_s = start_ns // 10**9 + 3600 * np.arange(n_hours, dtype=np.int64) + _utc_offsets_s(start_ns, n_hours, tz)
    day = local_s // _DAY_S
    if period == "day":
        labels = day
    elif period in ("month", "quarter", "year"):
        months = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01
        labels = {"month": months, "quarter": months - months % 3, "year": months - months % 12}[period]
    else:
        raise ValueError(f"period must be 'day', 'month', 'quarter' or 'year', not {period!r}")
    uniq, idx = np.unique(labels, return_inverse=True)
    kind = "datetime64[D]" if period == "day" else "datetime64[M]"  # quarters and years: their first month
    return idx, uniq.astype(kind)


@dataclass(frozen=True, eq=False)
class PeriodTotals:
    """``[source, period]`` totals for local days or months."""

    period: str  # "day" or "month"
    labels: NDArray[np.datetime64]  # datetime64[D] or datetime64[M], local calendar
    total: NDArray[np.float64]  # measured + substituted [unit of the hourly values]
    measured_total: NDArray[np.float64]
    substituted_total: NDArray[np.float64]
    hours: NDArray[np.int64]  # clock hours covered
    operating_hours: NDArray[np.int64]
    measured_hours: NDArray[np.int64]  # valid hours
    substituted_hours: NDArray[np.int64]
    missing_hours: NDArray[np.int64]  # operating, neither measured nor substituted (no history)
    valid_parts: NDArray[np.int64]  # valid hours (days) or valid days (months)
    operating_parts: NDArray[np.int64]  # operating hours (days) or days with an operating hour (months)
    valid: NDArray[np.bool_]  # meets the rule, among its operating parts (False when the source never ran)

    @property
    def stopped(self) -> NDArray[np.bool_]:
        """The source never ran in the period: neither valid nor invalid."""
        return np.equal(self.operating_parts, 0)

    @property
    def invalid(self) -> NDArray[np.bool_]:
        return ~self.valid & ~self.stopped

    @property
    def mean(self) -> np.ndarray:
        """Mean of the measured hours, NaN where the period is not valid (HJ 212 App. D Eq. 25: the
        day mean is the mean of the valid hour means; for concentrations, flows, O2...)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.valid & (self.measured_hours > 0), self.measured_total / self.measured_hours, np.nan)

    @property
    def completeness(self) -> np.ndarray:
        """Measured share of operating hours (NaN when the source never ran)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.operating_hours > 0, self.measured_hours / self.operating_hours, np.nan)


def _group_sum(x: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Sum over hours -> periods, for every source row at once."""
    rows = x.shape[0]
    flat = (np.arange(rows)[:, None] * n + idx[None, :]).ravel()
    return np.bincount(flat, weights=x.astype(np.float64).ravel(), minlength=rows * n).reshape(rows, n)


def rollup(
    values: np.ndarray,
    measured: np.ndarray,
    substituted: np.ndarray,
    operating: np.ndarray,
    start_ns: int,
    tz: ZoneInfo,
    policy: ValidityPolicy,
) -> tuple[PeriodTotals, PeriodTotals]:
    """Hourly ``[source, hour]`` arrays -> (daily, monthly) totals in the zone ``tz``.

    Parameters
    ----------
    values : float [source, hour]
        Measured values, substitutes, 0 for stopped hours (see :mod:`.substitute`) [unit of the hourly values].
    measured, substituted, operating : bool [source, hour]
        Valid hours; filled hours; hours the source ran.
    start_ns : int
        UTC start of the first hour [ns].
    tz : ZoneInfo
        The entity's zone: days and months are local.
    policy : ValidityPolicy
        Day and month rules (module docstring).

    Returns
    -------
    (PeriodTotals, PeriodTotals)
        Days and months, ``[source, period]``.

    References
    ----------
    docs/sources.md: HJ212-D25, HJ212-D34, HJ76-B, P-STOPPED-PERIODS.
    """
    n_hours = values.shape[1]
    filled = measured | substituted
    v = np.where(filled, values, 0.0)
    day_idx, day_labels = local_period_index(start_ns, n_hours, tz, "day")
    n_days = day_labels.size

    def totals(idx: NDArray[np.intp], n: int) -> dict[str, NDArray[Any]]:
        return {
            "total": _group_sum(v, idx, n),
            "measured_total": _group_sum(np.where(measured, v, 0.0), idx, n),
            "substituted_total": _group_sum(np.where(substituted & ~measured, v, 0.0), idx, n),
            "hours": _group_sum(np.ones_like(v), idx, n).astype(np.int64),
            "operating_hours": _group_sum(operating, idx, n).astype(np.int64),
            "measured_hours": _group_sum(measured, idx, n).astype(np.int64),
            "substituted_hours": _group_sum(substituted & ~measured, idx, n).astype(np.int64),
            "missing_hours": _group_sum(operating & ~filled, idx, n).astype(np.int64),
        }

    d = totals(day_idx, n_days)
    invalid_hours = d["operating_hours"] - d["measured_hours"]
    if policy.day:
        day_valid = (d["operating_hours"] > 0) & (invalid_hours <= 24 - policy.day.min_valid_hours)
    else:
        day_valid = d["operating_hours"] > 0
    days = PeriodTotals("day", day_labels, valid_parts=d["measured_hours"], operating_parts=d["operating_hours"],
                        valid=day_valid, **d)

    month_idx, month_labels = local_period_index(start_ns, n_hours, tz, "month")
    n_months = month_labels.size
    m = totals(month_idx, n_months)
    # days per month: map each day to its month through the day's first hour
    day_month = np.zeros(n_days, dtype=np.int64)
    day_month[day_idx] = month_idx
    valid_days = _group_sum(day_valid, day_month, n_months).astype(np.int64)
    operating_days = _group_sum(d["operating_hours"] > 0, day_month, n_months).astype(np.int64)
    if policy.month:
        feb = (month_labels.astype(int) % 12) == 1  # datetime64[M] counts months from 1970-01
        need = np.where(feb, policy.month.min_valid_days_february, policy.month.min_valid_days)
        days_in_month = ((month_labels + 1).astype("datetime64[D]") - month_labels.astype("datetime64[D]")).astype(int)
        month_valid = (operating_days > 0) & (operating_days - valid_days <= (days_in_month - need)[None, :])
    else:
        month_valid = operating_days > 0
    months = PeriodTotals("month", month_labels, valid_parts=valid_days, operating_parts=operating_days,
                          valid=month_valid, **m)
    return days, months
