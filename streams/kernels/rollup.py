"""Hours -> local days -> local months: totals, counts and validity, for many sources at once.

Days and months follow the entity's time zone (``ARCHITECTURE.md``: China reports in UTC+8; an
hour's timestamp is its start). Validity (``cems-standards.md`` §2, §1.11): a day is valid with
>= 20 valid hours (HJ 212 App. D Eq. 25 [P]); a month with >= 25 valid days, >= 23 in February
(HJ 76-2017 App. B [S]); thresholds come from the :class:`~.policy.ValidityPolicy` (EU and US
policies have none, so every period is valid there). Mass totals add measured and substituted
hours (HJ 212 Eq. 34: the daily emission is the sum of hourly emissions); stopped hours add zero.
Every total carries its counts, so completeness can be judged and rules re-evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

from .policy import ValidityPolicy

__all__ = ["PeriodTotals", "local_period_index", "rollup"]

_DAY_S = 86_400


def _utc_offsets_s(start_ns: int, n_hours: int, tz: ZoneInfo) -> np.ndarray:
    """UTC offset of every hour [s]. Zones without transitions in the range (China) cost two lookups."""
    def offset(h: int) -> int:
        return int(datetime.fromtimestamp(start_ns // 10**9 + 3600 * h, timezone.utc).astimezone(tz).utcoffset().total_seconds())

    first, last = offset(0), offset(n_hours - 1)
    if first == last and n_hours < 24 * 200:  # no DST change inside: constant
        return np.full(n_hours, first, dtype=np.int64)
    return np.array([offset(h) for h in range(n_hours)], dtype=np.int64)  # per hour, not per reading


def local_period_index(start_ns: int, n_hours: int, tz: ZoneInfo, period: str):
    """For each hour: (index of its local day or month in the range, label of that period)."""
    local_s = start_ns // 10**9 + 3600 * np.arange(n_hours, dtype=np.int64) + _utc_offsets_s(start_ns, n_hours, tz)
    day = local_s // _DAY_S
    if period == "day":
        labels = day
    elif period == "month":
        d = day.astype("datetime64[D]")
        labels = d.astype("datetime64[M]").astype(np.int64)
    else:
        raise ValueError(f"period must be 'day' or 'month', not {period!r}")
    uniq, idx = np.unique(labels, return_inverse=True)
    kind = "datetime64[D]" if period == "day" else "datetime64[M]"
    return idx, uniq.astype(kind)


@dataclass(frozen=True, eq=False)
class PeriodTotals:
    """``[source, period]`` totals for local days or months."""

    period: str  # "day" or "month"
    labels: np.ndarray  # datetime64[D] or datetime64[M], local calendar
    total: np.ndarray  # measured + substituted [unit of the hourly values]
    measured_total: np.ndarray
    substituted_total: np.ndarray
    hours: np.ndarray  # clock hours covered
    operating_hours: np.ndarray
    measured_hours: np.ndarray  # valid hours
    substituted_hours: np.ndarray
    missing_hours: np.ndarray  # operating, neither measured nor substituted (no history)
    valid_parts: np.ndarray  # valid hours (days) or valid days (months)
    valid: np.ndarray

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

    ``values`` holds measured values, substitutes, and 0 for stopped hours (see :mod:`.substitute`).
    """
    n_hours = values.shape[1]
    filled = measured | substituted
    v = np.where(filled, values, 0.0)
    day_idx, day_labels = local_period_index(start_ns, n_hours, tz, "day")
    n_days = day_labels.size

    def totals(idx, n):
        return dict(
            total=_group_sum(v, idx, n),
            measured_total=_group_sum(np.where(measured, v, 0.0), idx, n),
            substituted_total=_group_sum(np.where(substituted & ~measured, v, 0.0), idx, n),
            hours=_group_sum(np.ones_like(v), idx, n).astype(np.int64),
            operating_hours=_group_sum(operating, idx, n).astype(np.int64),
            measured_hours=_group_sum(measured, idx, n).astype(np.int64),
            substituted_hours=_group_sum(substituted & ~measured, idx, n).astype(np.int64),
            missing_hours=_group_sum(operating & ~filled, idx, n).astype(np.int64),
        )

    d = totals(day_idx, n_days)
    day_valid = d["measured_hours"] >= (policy.day.min_valid_hours if policy.day else 1)
    days = PeriodTotals("day", day_labels, valid_parts=d["measured_hours"], valid=day_valid, **d)

    month_idx, month_labels = local_period_index(start_ns, n_hours, tz, "month")
    n_months = month_labels.size
    m = totals(month_idx, n_months)
    # valid days per month: map each day to its month through the day's first hour
    day_month = np.zeros(n_days, dtype=np.int64)
    day_month[day_idx] = month_idx
    valid_days = _group_sum(day_valid, day_month, n_months).astype(np.int64)
    if policy.month:
        feb = (month_labels.astype(int) % 12) == 1  # datetime64[M] counts months from 1970-01
        need = np.where(feb, policy.month.min_valid_days_february, policy.month.min_valid_days)[None, :]
    else:
        need = 1
    months = PeriodTotals("month", month_labels, valid_parts=valid_days, valid=valid_days >= need, **m)
    return days, months
