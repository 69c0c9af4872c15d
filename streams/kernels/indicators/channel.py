"""Rules on one channel's own values: ``flatline``, ``out_of_range`` and ``low_variance``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from schemas.quantities import Flag

from ..aggregate import MINUTE_NS
from .grid import (
    Findings,
    _as2d,
    _day_cube,
    _findings,
    _mask,
    _nanmedian,
    _periods,
    _run_reduce,
    _runs,
)
from .policy import DEFAULT_POLICY, IndicatorPolicy

# -- 1. flatline ----------------------------------------------------------------------------------


def flatline(values: ArrayLike, operating: ArrayLike | None = None, *, policy: IndicatorPolicy = DEFAULT_POLICY,
             start_ns: int = 0, period_ns: int = MINUTE_NS) -> Findings:
    """Runs of (near) identical consecutive values while the source operates.

    Catches a frozen analyser or datalogger (hung A/D, a PLC register no longer updated, a
    simulator or constant fed in place of the analyser: the simulator's ``stuck`` fault). Two
    periods repeat when ``|b - a| <= flat_rel_tol x max(|a|, |b|) + flat_abs_tol``; runs of at least
    ``flat_min_minutes`` are reported. ``value``/``threshold``: run length / minimum [min].

    False positives: a coarse analyser resolution on a very steady process (identical minute means
    are still rare: 12+ readings per minute), values pinned at a range end (the analyser should flag
    T), a channel the datalogger fills with a held value during a communication loss (flag B
    expected; the run is still worth an alert).

    Parameters
    ----------
    values : array_like of float, shape (n_series, n_periods)
        Period means [the series' unit]; NaN where a period has no valid mean.
    operating : array_like of bool, shape (n_series, n_periods), optional
        Periods in which the source ran (default: all); repeats while it is stopped are expected.
    policy : IndicatorPolicy
        ``flat_min_minutes`` [min], ``flat_rel_tol`` [1], ``flat_abs_tol`` [the series' unit].
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``flatline`` per run: ``value`` its length, ``threshold`` the minimum [min].

    References
    ----------
    Heuristic (no standard sets a limit); the repeat tolerance rests on the exact minute means of
    :mod:`streams.kernels.exact`.
    """
    x = _as2d(values)
    ok = np.isfinite(x) & _mask(operating, x.shape)
    a, b = x[:, :-1], x[:, 1:]
    with np.errstate(invalid="ignore"):
        tol = policy.flat_rel_tol * np.maximum(np.abs(a), np.abs(b)) + policy.flat_abs_tol
        same = ok[:, :-1] & ok[:, 1:] & (np.abs(b - a) <= tol)
    rows, s, e = _runs(same)  # transition j joins periods j and j + 1: the run covers periods [s, e + 1)
    length = e + 1 - s
    min_periods = max(2, _periods(policy.flat_min_minutes * MINUTE_NS, period_ns))
    keep = length >= min_periods
    per_min = period_ns / MINUTE_NS
    return _findings("flatline", rows[keep], s[keep], e[keep] + 1, length[keep] * per_min, min_periods * per_min,
                     start_ns=start_ns, period_ns=period_ns)


# -- 2. out of range ------------------------------------------------------------------------------


def out_of_range(values: ArrayLike, low: ArrayLike, high: ArrayLike, flag: ArrayLike | None = None, *,
                 start_ns: int = 0, period_ns: int = MINUTE_NS) -> Findings:
    """Runs of periods outside the physical bounds ``[low, high]`` of their series, or flagged T.

    ``low``/``high``: per series, as :func:`streams.kernels.plausibility.series_bounds` gives them. Readings beyond
    the bounds are already flagged T by :func:`streams.kernels.aggregate.readings_to_minutes`, so on the kernels'
    own grids this reports T-flagged periods; on grids from elsewhere (a plant's own minute data,
    HJ 212 2051 packets) it checks the values too. ``value``: the most extreme value of the run (NaN
    when only flags); ``threshold``: the bound crossed (``high`` for T).

    Catches a mis-scaled register, a wrong unit, an analyser beyond its range, a tampered device.
    False positives: bounds that do not fit a process (they are deliberately wide and per site
    configurable in :data:`streams.kernels.plausibility.PLAUSIBLE`).

    Parameters
    ----------
    values : array_like of float, shape (n_series, n_periods)
        Period means [the series' unit].
    low, high : array_like of float, shape (n_series,)
        Inclusive physical bounds of each series [the series' unit]; -inf / inf where none is known.
    flag : array_like of uint8, shape (n_series, n_periods), optional
        Dominant reading flag of each period (HJ 212 code); T counts as above the range.
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``out_of_range`` per run and direction: ``value`` the most extreme value [the series' unit],
        ``threshold`` the bound crossed.

    References
    ----------
    docs/sources.md ``HJ212-T8`` [P] (flag T); the bounds are this project's wide physical limits
    (:data:`streams.kernels.plausibility.PLAUSIBLE`).
    """
    x = _as2d(values)
    lo = np.broadcast_to(np.asarray(low, dtype=np.float64), (x.shape[0],))
    hi = np.broadcast_to(np.asarray(high, dtype=np.float64), (x.shape[0],))
    with np.errstate(invalid="ignore"):
        above = (x > hi[:, None]) | (_as2d(flag, np.uint8) == Flag.T if flag is not None else False)
        below = x < lo[:, None]
    parts = []
    for mask, extreme, bound in ((above, np.fmax, hi), (below, np.fmin, lo)):  # two directions
        rows, s, e = _runs(mask)
        parts.append(_findings("out_of_range", rows, s, e, _run_reduce(extreme, x, rows, s, e), bound[rows],
                               start_ns=start_ns, period_ns=period_ns))
    return Findings.concat(parts)


# -- 6. low variance ------------------------------------------------------------------------------


def low_variance(values: ArrayLike, periods_per_day: int, operating: ArrayLike | None = None, *,
                 typical_cv: ArrayLike | None = None, policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0,
                 period_ns: int = MINUTE_NS) -> Findings:
    """Days whose coefficient of variation is far below the channel's typical (grid starts at a local midnight).

    ``CV = std / |mean|`` of the day's operating periods (at least ``lowvar_min_coverage`` of the
    day). Reported when ``CV < max(lowvar_rel x typical, lowvar_abs_cv)``; ``typical_cv`` per series
    from trusted history, else the median daily CV of the grid itself. ``value``: the day's CV.

    Catches data smoothed or synthesised to look compliant (a constant with a little noise, values
    typed in, a reading "held" by the datalogger with jitter). False positives: a process that really
    ran steadier that day (a typical CV from a varied period; the relative floor keeps this rare);
    quantities whose mean is near zero (static pressure, gauge values), where CV means little.
    If the median day is itself falsified, the grid's own typical CV hides it: pass ``typical_cv``.

    Parameters
    ----------
    values : array_like of float, shape (n_series, n_periods)
        Period means [the series' unit], the grid starting at a local midnight.
    periods_per_day : int
        Periods in a day [1] (1440 for minutes).
    operating : array_like of bool, shape (n_series, n_periods), optional
        Periods in which the source ran (default: all); only those count.
    typical_cv : array_like of float, shape (n_series,), optional
        Each series' typical daily coefficient of variation [1], from trusted history.
    policy : IndicatorPolicy
        ``lowvar_rel`` [1], ``lowvar_abs_cv`` [1], ``lowvar_min_coverage`` [fraction of a day].
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``low_variance`` per day: ``value`` the day's CV, ``threshold`` the floor [1].

    References
    ----------
    Heuristic (no standard sets a limit).
    """
    x = _as2d(values)
    x = np.where(_mask(operating, x.shape), x, np.nan)
    p = int(periods_per_day)
    cube = _day_cube(x, p, np.nan)
    present = np.isfinite(cube)
    cnt = present.sum(axis=2)
    x0 = np.where(present, cube, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x0.sum(axis=2) / cnt
        var = np.maximum(np.sum(np.where(present, (cube - mean[:, :, None]) ** 2, 0.0), axis=2) / cnt, 0.0)
        cv = np.where((cnt >= policy.lowvar_min_coverage * p) & (np.abs(mean) > 0), np.sqrt(var) / np.abs(mean),
                      np.nan)
    typical = _nanmedian(cv, axis=1) if typical_cv is None else np.broadcast_to(
        np.asarray(typical_cv, dtype=np.float64), (cv.shape[0],))
    floor = np.fmax(policy.lowvar_rel * typical, policy.lowvar_abs_cv)
    with np.errstate(invalid="ignore"):
        low = cv < floor[:, None]
    rows, day = np.nonzero(low)
    return _findings("low_variance", rows, day * p, (day + 1) * p, cv[rows, day], floor[rows],
                     start_ns=start_ns, period_ns=period_ns)
