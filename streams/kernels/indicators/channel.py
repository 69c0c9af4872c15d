"""Rules on one channel's own values: ``flatline``, ``out_of_range`` and ``low_variance``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from schemas.quantities import Flag

from ..aggregate import MINUTE_NS
from .grid import (
    Bools,
    Findings,
    Floats,
    Ints,
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
    return flat_runs(repeats(x[:, :-1], ok[:, :-1], x[:, 1:], ok[:, 1:], policy), policy=policy, start_ns=start_ns,
                     period_ns=period_ns)


def repeats(a: Floats, a_ok: Bools, b: Floats, b_ok: Bools, policy: IndicatorPolicy = DEFAULT_POLICY) -> Bools:
    """Whether period ``b`` repeats period ``a`` (both valid, ``|b - a| <= rel x max(|a|, |b|) + abs``), elementwise.

    The one definition of a repeat, shared by :func:`flatline` on a grid and by the in-stream hour partials
    (:mod:`.hours`), which evaluate it inside each hour and across the boundary of consecutive hours.

    Parameters
    ----------
    a, b : ndarray of float
        The earlier and the later period's means [the series' unit].
    a_ok, b_ok : ndarray of bool
        Each period valid and operating.
    policy : IndicatorPolicy
        ``flat_rel_tol`` [1], ``flat_abs_tol`` [the series' unit].

    Returns
    -------
    ndarray of bool
        True where ``b`` repeats ``a``.

    References
    ----------
    Heuristic (:func:`flatline`).
    """
    with np.errstate(invalid="ignore"):
        tol = policy.flat_rel_tol * np.maximum(np.abs(a), np.abs(b)) + policy.flat_abs_tol
        return np.asarray(a_ok & b_ok & (np.abs(b - a) <= tol), dtype=bool)


def flat_runs(same: Bools, *, policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0,
              period_ns: int = MINUTE_NS) -> Findings:
    """``flatline`` findings from the repeat mask of a grid's consecutive periods.

    Parameters
    ----------
    same : ndarray of bool, shape (n_series, n_periods - 1)
        Transition ``j`` True where period ``j + 1`` repeats period ``j`` (:func:`repeats`).
    policy : IndicatorPolicy
        ``flat_min_minutes`` [min].
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``flatline`` per run of at least ``flat_min_minutes``: ``value`` its length, ``threshold`` the minimum
        [min].

    References
    ----------
    Heuristic (:func:`flatline`).
    """
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
    chunk = p // 24 if p % 24 == 0 else p  # hours of a day: the pieces the stream closes (hour_moments)
    cube = _day_cube(x, p, np.nan).reshape(x.shape[0], -1, p // chunk, chunk)
    cnt, mean, m2 = chunk_moments(cube)
    return low_variance_days(cnt, mean, m2, p, typical_cv=typical_cv, policy=policy, start_ns=start_ns,
                             period_ns=period_ns)


def chunk_moments(cube: Floats) -> tuple[Ints, Floats, Floats]:
    """Count, mean and sum of squared deviations from the mean of the finite values along the last axis.

    Two passes (mean, then deviations), so the sum of squares loses nothing to cancellation.

    Parameters
    ----------
    cube : ndarray of float, shape (..., k)
        Values [the series' unit], NaN where there is none.

    Returns
    -------
    tuple of ndarray, shape (...)
        Count [1], mean [the series' unit] (NaN without values), sum of squared deviations [unit²].

    References
    ----------
    Standard two-pass moments; no regulation involved.
    """
    present = np.isfinite(cube)
    cnt = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(present, cube, 0.0).sum(axis=-1) / cnt
        m2 = np.sum(np.where(present, (cube - mean[..., None]) ** 2, 0.0), axis=-1)
    return cnt.astype(np.int64), mean, m2


def low_variance_days(cnt: ArrayLike, mean: ArrayLike, m2: ArrayLike, periods_per_day: int, *,
                      typical_cv: ArrayLike | None = None, policy: IndicatorPolicy = DEFAULT_POLICY,
                      start_ns: int = 0, period_ns: int = MINUTE_NS) -> Findings:
    """``low_variance`` from the moments of each day's pieces (hours of minutes: what the stream closes).

    The day's moments combine the pieces' exactly in the algebra (Chan et al.'s pairwise update, all pieces at once:
    ``n = sum n_i``, ``mean = sum n_i mean_i / n``, ``M2 = sum M2_i + sum n_i (mean_i - mean)²``), so a month grid and
    the stream's hour partials give the same figures bit for bit when they give the same pieces.

    Parameters
    ----------
    cnt, mean, m2 : array_like, shape (n_series, n_days, n_pieces)
        Per piece of a day: operating periods with a value [1], their mean [the series' unit] and sum of squared
        deviations [unit²] (:func:`chunk_moments`).
    periods_per_day : int
        Periods in a day [1] (1440 for minutes).
    typical_cv : array_like of float, shape (n_series,), optional
        Each series' typical daily coefficient of variation [1]; default the median day of the grid.
    policy : IndicatorPolicy
        ``lowvar_rel`` [1], ``lowvar_abs_cv`` [1], ``lowvar_min_coverage`` [fraction of a day].
    start_ns : int
        Start of period 0 of the grid (a local midnight) [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``low_variance`` per day: ``value`` the day's CV, ``threshold`` the floor [1].

    References
    ----------
    Heuristic (:func:`low_variance`); the combination of the pieces' moments, docs/sources.md ``CHAN-VAR`` [S].
    """
    n_i = np.asarray(cnt, dtype=np.int64)
    mu_i, m2_i = np.asarray(mean, dtype=np.float64), np.asarray(m2, dtype=np.float64)
    p = int(periods_per_day)
    c = n_i.sum(axis=2)
    has = n_i > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        day_mean = np.where(has, n_i * mu_i, 0.0).sum(axis=2) / c
        dev = np.where(has, n_i * (mu_i - day_mean[:, :, None]) ** 2, 0.0).sum(axis=2)
        var = np.maximum((np.where(has, m2_i, 0.0).sum(axis=2) + dev) / c, 0.0)
        cv = np.where((c >= policy.lowvar_min_coverage * p) & (np.abs(day_mean) > 0), np.sqrt(var) / np.abs(day_mean),
                      np.nan)
    typical = _nanmedian(cv, axis=1) if typical_cv is None else np.broadcast_to(
        np.asarray(typical_cv, dtype=np.float64), (cv.shape[0],))
    floor = np.fmax(policy.lowvar_rel * typical, policy.lowvar_abs_cv)
    with np.errstate(invalid="ignore"):
        low = cv < floor[:, None]
    rows, day = np.nonzero(low)
    return _findings("low_variance", rows, day * p, (day + 1) * p, cv[rows, day], floor[rows],
                     start_ns=start_ns, period_ns=period_ns)
