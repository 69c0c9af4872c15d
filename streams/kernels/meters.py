"""Edge meters' month totals: totaliser differences and rate integrals, in the accounting report's units.

The reconciliation compares what a plant reports (fuel burned, clinker, aluminium, electricity) with what the
edge meters counted (``fuel_metered_vs_reported``, ``production_metered_vs_reported``). A meter is a channel of
one of the meter quantities of :mod:`schemas.quantities`: a *totaliser* (a counter that only grows: xf0003,
xf0004, xp0002, xe0002) or a *rate* per hour (xf0001, xf0002, xp0001, xe0001). Their month differs in kind:

* a totaliser's month is its last valid minute less its first, wherever they fall: a hole between them loses
  nothing and only lowers the coverage; it counts the share of the month between those two minutes;
* a rate's month is its integral over the minutes with data: a gap is unknown flow, not zero flow, so it lowers
  the coverage, and the month estimate scales the integral at the mean rate of the minutes with data (the policy
  decides which of the two the reconciliation compares: ``ReconcilePolicy.meter_gaps``).

Figures are converted with :data:`schemas.quantities.REPORT_UNITS` to the report's canonical units (t, 10^4 Nm3,
MWh). Pure: numpy in, numpy out; the only loops are over the configured meters. Sources: docs/sources.md
``REC-METER`` [U] (coverage threshold, gaps at the mean rate), ``METER-TOTALISER`` (project choice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.quantities import REPORT_UNITS

from .aggregate import HOUR_NS
from .indicators import Grid

__all__ = ["TOTALISERS", "MeterRows", "MeterTotal", "meter_totals", "metered_totals"]

#: Meter quantities that count up (schemas/quantities.py): their month is a difference, never an integral.
TOTALISERS: frozenset[str] = frozenset({"xf0003", "xf0004", "xp0002", "xe0002"})


class MeterTotal(NamedTuple):
    """An edge meter's month, as its data count it (several meters of one quantity summed)."""

    counted_total: float
    """What the data count [report unit]: a totaliser's last - first valid reading, a rate's integral."""
    month: float
    """The month's estimate [report unit]: rate meters scaled at the mean rate of the minutes with data,
    totalisers as read (last - first valid reading, wherever they fall)."""
    coverage: float
    """Minutes with data / minutes of the month [fraction] (the lowest of the meters)."""
    counted_share: float
    """Share of the month the total counts [fraction] (a totaliser: between its first and last reading)."""


class MeterRows(NamedTuple):
    """Per meter row of :func:`meter_totals`; rows without any data are NaN in every field."""

    counted_total: NDArray[np.float64]  # [report unit]
    month: NDArray[np.float64]  # [report unit]
    coverage: NDArray[np.float64]  # [fraction]
    counted_share: NDArray[np.float64]  # [fraction]


def meter_totals(values: ArrayLike, totaliser: ArrayLike, factor: ArrayLike, period_ns: int) -> MeterRows:
    """Month totals of meter series on a regular grid, one row per meter.

    Parameters
    ----------
    values : array_like of float, shape (k, n)
        Period means of each meter over the month [the meter's unit: t, kg, m3 for a totaliser; t/h, kg/h, m3/h,
        MW for a rate]; NaN where a period has no valid mean.
    totaliser : array_like of bool, shape (k,)
        True where the row is a counter (its month is a difference), False for a rate per hour (an integral).
    factor : array_like of float, shape (k,)
        Report units per meter unit [report unit / meter unit, or (report unit) / (meter unit x h) for a rate]:
        :data:`schemas.quantities.REPORT_UNITS`.
    period_ns : int
        Length of one period of the grid [ns]; a rate's integral is the sum of its means x period / 1 h.

    Returns
    -------
    MeterRows
        ``counted_total`` and ``month`` [report unit], ``coverage`` (periods with data / periods) and
        ``counted_share`` (share of the month the total counts: a totaliser's span between its first and last
        valid period over ``n - 1`` periods, a rate's coverage) [fraction]. A rate's ``month`` is
        ``counted_total / coverage`` (a gap is unknown flow at the mean rate, not zero flow); a totaliser's is its
        ``counted_total``.

    References
    ----------
    docs/sources.md ``REC-METER`` [U] (a rate's gaps at the mean rate of the minutes with data), ``METER-TOTALISER``
    (project choice: a totaliser's month from its first and last valid readings).
    """
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    k, n = x.shape
    is_total = np.broadcast_to(np.asarray(totaliser, dtype=bool), (k,))
    f = np.broadcast_to(np.asarray(factor, dtype=np.float64), (k,))
    if n == 0:
        nothing = np.full(k, np.nan)
        return MeterRows(nothing, nothing.copy(), nothing.copy(), nothing.copy())
    ok = np.isfinite(x)
    count = ok.sum(axis=1)
    rows = np.arange(k)
    first = np.argmax(ok, axis=1)
    last = n - 1 - np.argmax(ok[:, ::-1], axis=1)
    coverage = count / n
    with np.errstate(invalid="ignore", divide="ignore"):
        difference = (x[rows, last] - x[rows, first]) * f
        integral = np.where(ok, x, 0.0).sum(axis=1) * period_ns / HOUR_NS * f
        counted = np.where(is_total, difference, integral)
        month = np.where(is_total, difference, integral / coverage)
    share = np.where(is_total, (last - first) / max(n - 1, 1), coverage)
    empty = count == 0
    nan = np.float64(np.nan)
    return MeterRows(np.where(empty, nan, counted), np.where(empty, nan, month), np.where(empty, nan, coverage),
                     np.where(empty, nan, share))


def metered_totals(minutes: Grid, series: Sequence[tuple[str, str]],
                   channels: Mapping[tuple[str, str], tuple[str, str]],
                   meters: Mapping[str, str]) -> dict[str, MeterTotal]:
    """Month totals of the configured meters from the month's minute grid, by what they measure.

    Parameters
    ----------
    minutes : Grid
        The entity's minute grid over the month; row ``i`` is the series ``series[i]`` [the channel's unit].
    series : sequence of (str, str)
        (source id, channel id) of each grid row.
    channels : mapping of (str, str) to (str, str)
        (source id, channel id) -> (quantity code, unit) of each channel (the site file's).
    meters : mapping of str to str
        ``"source/channel"`` -> what it measures (``"fuel:<id>"``, ``"material:<id>"``, ``"product"``).

    Returns
    -------
    dict of str to MeterTotal
        Per measured quantity, its meters summed (counted total and month estimate [report unit], the lowest
        coverage and counted share [fraction]). A meter without a grid row or without any data is left out, so
        its rule is skipped rather than compared with zero. A unit :data:`~schemas.quantities.REPORT_UNITS` does
        not know is taken as the report's unit (factor 1).

    References
    ----------
    docs/sources.md ``REC-METER`` [U], ``METER-TOTALISER``.
    """
    index = {key: i for i, key in enumerate(series)}
    picked: list[tuple[str, int, bool, float]] = []  # (measures, row, totaliser, factor), in configuration order
    for name, measures in meters.items():  # configuration, not readings
        source, _, channel = name.partition("/")
        row = index.get((source, channel))
        if row is None:
            continue
        quantity, unit = channels[(source, channel)]
        picked.append((measures, row, quantity in TOTALISERS, REPORT_UNITS.get(unit, (unit, 1.0))[1]))
    if not picked:
        return {}
    rows = meter_totals(minutes.mean[[p[1] for p in picked]], [p[2] for p in picked], [p[3] for p in picked],
                        minutes.period_ns)
    parts: dict[str, list[int]] = {}
    for j, (measures, *_) in enumerate(picked):
        if np.isfinite(rows.coverage[j]):
            parts.setdefault(measures, []).append(j)
    return {measures: MeterTotal(counted_total=sum(float(rows.counted_total[j]) for j in js),
                                 month=sum(float(rows.month[j]) for j in js),
                                 coverage=min(float(rows.coverage[j]) for j in js),
                                 counted_share=min(float(rows.counted_share[j]) for j in js))
            for measures, js in parts.items()}
