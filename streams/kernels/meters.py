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

from .aggregate import HOUR_NS, MINUTE_NS
from .indicators import Grid
from .indicators.hours import HourPartials

__all__ = ["MINUTES_PER_HOUR", "TOTALISERS", "MeterPartials", "MeterRows", "MeterTotal", "meter_partials",
           "meter_totals", "metered_totals", "totals_from_partials"]

#: Meter quantities that count up (schemas/quantities.py): their month is a difference, never an integral.
TOTALISERS: frozenset[str] = frozenset({"xf0003", "xf0004", "xp0002", "xe0002"})

#: Minutes of an hour: the pieces a month of minutes is reduced in (the stream closes hours).
MINUTES_PER_HOUR = 60


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
    n = x.shape[1]
    per = MINUTES_PER_HOUR if n and n % MINUTES_PER_HOUR == 0 else max(n, 1)  # hours of minutes, as the stream
    return totals_from_partials(meter_partials(x, per), per, totaliser, factor, period_ns)


class MeterPartials(NamedTuple):
    """Per meter row and piece of the grid (an hour of minutes, as the stream closes them): what its month needs."""

    n_valid: NDArray[np.int64]  # periods with a value [1]
    total: NDArray[np.float64]  # sum of their values [the meter's unit]
    first: NDArray[np.int64]  # index in the piece of the first period with a value, -1 without
    first_value: NDArray[np.float64]  # its value (NaN without) [the meter's unit]
    last: NDArray[np.int64]  # ... of the last period with a value
    last_value: NDArray[np.float64]


def meter_partials(values: ArrayLike, per_piece: int) -> MeterPartials:
    """Cut meter rows into pieces of ``per_piece`` periods and reduce each to :class:`MeterPartials`.

    Parameters
    ----------
    values : array_like of float, shape (k, n_pieces x per_piece)
        Period means [the meter's unit], NaN where a period has no valid mean.
    per_piece : int
        Periods per piece [1] (60: an hour of minutes).

    Returns
    -------
    MeterPartials
        Arrays of shape (k, n_pieces).

    References
    ----------
    docs/sources.md ``REC-METER`` [U], ``METER-TOTALISER`` (:func:`meter_totals`).
    """
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    k = x.shape[0]
    cube = x.reshape(k, -1, per_piece)
    ok = np.isfinite(cube)
    count = ok.sum(axis=2).astype(np.int64)
    first = np.argmax(ok, axis=2)
    last = per_piece - 1 - np.argmax(ok[:, :, ::-1], axis=2)
    pick = np.take_along_axis
    none = count == 0
    return MeterPartials(
        count, np.where(ok, cube, 0.0).sum(axis=2),
        np.where(none, -1, first).astype(np.int64), np.where(none, np.nan, pick(cube, first[..., None], 2)[..., 0]),
        np.where(none, -1, last).astype(np.int64), np.where(none, np.nan, pick(cube, last[..., None], 2)[..., 0]))


def totals_from_partials(parts: MeterPartials, per_piece: int, totaliser: ArrayLike, factor: ArrayLike,
                         period_ns: int) -> MeterRows:
    """Month totals of meter rows from their pieces (:func:`meter_partials`): the figures of :func:`meter_totals`,
    from the month grid or from the stream's hour partials alike.

    Parameters
    ----------
    parts : MeterPartials
        Arrays of shape (k, n_pieces), the pieces in time order covering the month.
    per_piece : int
        Periods per piece [1].
    totaliser, factor, period_ns
        As :func:`meter_totals`.

    Returns
    -------
    MeterRows
        As :func:`meter_totals`.

    References
    ----------
    docs/sources.md ``REC-METER`` [U], ``METER-TOTALISER``.
    """
    count_p = np.atleast_2d(parts.n_valid)
    k, pieces = count_p.shape
    n = pieces * per_piece
    is_total = np.broadcast_to(np.asarray(totaliser, dtype=bool), (k,))
    f = np.broadcast_to(np.asarray(factor, dtype=np.float64), (k,))
    if pieces == 0:
        nothing = np.full(k, np.nan)
        return MeterRows(nothing, nothing.copy(), nothing.copy(), nothing.copy())
    has = count_p > 0
    count = count_p.sum(axis=1)
    rows = np.arange(k)
    p0 = np.argmax(has, axis=1)
    p1 = pieces - 1 - np.argmax(has[:, ::-1], axis=1)
    first = p0 * per_piece + np.atleast_2d(parts.first)[rows, p0]
    last = p1 * per_piece + np.atleast_2d(parts.last)[rows, p1]
    coverage = count / n
    with np.errstate(invalid="ignore", divide="ignore"):
        difference = (np.atleast_2d(parts.last_value)[rows, p1] - np.atleast_2d(parts.first_value)[rows, p0]) * f
        integral = np.ascontiguousarray(np.atleast_2d(parts.total)).sum(axis=1) * period_ns / HOUR_NS * f
        counted = np.where(is_total, difference, integral)
        month = np.where(is_total, difference, integral / coverage)
    share = np.where(is_total, (last - first) / max(n - 1, 1), coverage)
    empty = count == 0
    nan = np.float64(np.nan)
    return MeterRows(np.where(empty, nan, counted), np.where(empty, nan, month), np.where(empty, nan, coverage),
                     np.where(empty, nan, share))


def metered_totals(minutes: Grid | HourPartials, series: Sequence[tuple[str, str]],
                   channels: Mapping[tuple[str, str], tuple[str, str]],
                   meters: Mapping[str, str]) -> dict[str, MeterTotal]:
    """Month totals of the configured meters from the month's minute grid, by what they measure.

    Parameters
    ----------
    minutes : Grid or HourPartials
        The entity's minute grid over the month, or its hour partials (the stream's, :mod:`.indicators.hours`);
        row ``i`` is the series ``series[i]`` [the channel's unit].
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
    rows_of = [p[1] for p in picked]
    if isinstance(minutes, Grid):
        rows = meter_totals(minutes.mean[rows_of], [p[2] for p in picked], [p[3] for p in picked], minutes.period_ns)
    else:  # the stream's hour partials of the month
        pieces = MeterPartials(*(getattr(minutes, name)[rows_of] for name in MeterPartials._fields))
        rows = totals_from_partials(pieces, MINUTES_PER_HOUR, [p[2] for p in picked], [p[3] for p in picked],
                                    MINUTE_NS)
    parts: dict[str, list[int]] = {}
    for j, (measures, *_) in enumerate(picked):
        if np.isfinite(rows.coverage[j]):
            parts.setdefault(measures, []).append(j)
    return {measures: MeterTotal(counted_total=sum(float(rows.counted_total[j]) for j in js),
                                 month=sum(float(rows.month[j]) for j in js),
                                 coverage=min(float(rows.coverage[j]) for j in js),
                                 counted_share=min(float(rows.counted_share[j]) for j in js))
            for measures, js in parts.items()}
