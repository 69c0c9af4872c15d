"""Days that repeat an earlier day's profile: ``repeated_profile``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..aggregate import HOUR_NS
from .grid import Findings, _as2d, _day_cube, _findings, _mask, _nanmedian
from .policy import DEFAULT_POLICY, IndicatorPolicy

# -- 5. repeated daily profiles -------------------------------------------------------------------


def repeated_profiles(values: ArrayLike, periods_per_day: int, operating: ArrayLike | None = None, *,
                      policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0,
                      period_ns: int = HOUR_NS) -> Findings:
    """Days whose profile equals or nearly equals an earlier day's (the grid starts at a local midnight).

    For every pair of days ``j < i <= j + profile_lookback_days``, over the periods both hold
    (at least ``profile_min_coverage`` of the day): Pearson correlation ``>= profile_min_corr``
    **and** relative RMS difference (over the earlier day's mean ``|value|``) at most
    ``min(profile_max_rel_rms, profile_typical_share x the series' median over day pairs)``. Day
    ``i`` is reported once, against its closest earlier match: ``ref`` = that day's first period,
    ``value`` = relative RMS difference, ``threshold`` = the series' limit. All pairs at once through batched
    matrix products of the masked day profiles (sums, sums of squares and cross products over common periods).

    Catches copy-paste falsification: a day of data replaced by an earlier day (exactly, scaled, or
    with a little noise added). False positives: a process run to an identical schedule with very
    low noise (the RMS condition needs near-identical levels too); constant days (zero variance)
    are left to ``flatline`` and ``low_variance``.

    Parameters
    ----------
    values : array_like of float, shape (n_series, n_periods)
        Period means [the series' unit], the grid starting at a local midnight.
    periods_per_day : int
        Periods in a day [1] (24 for hours).
    operating : array_like of bool, shape (n_series, n_periods), optional
        Periods in which the source ran (default: all); only those are compared.
    policy : IndicatorPolicy
        ``profile_min_corr`` [1], ``profile_max_rel_rms`` [1], ``profile_typical_share`` [1],
        ``profile_min_coverage`` [fraction of a day], ``profile_lookback_days`` [days].
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``repeated_profile`` per day: ``value`` the relative RMS difference, ``threshold`` the series' limit [1];
        ``ref`` the first period of the earlier day.

    References
    ----------
    Heuristic (no standard sets a limit).
    """
    x = _as2d(values)
    x = np.where(_mask(operating, x.shape), x, np.nan)
    p = int(periods_per_day)
    cube = _day_cube(x, p, np.nan)  # [n, d, p]
    n, d, _ = cube.shape
    if d < 2:
        return Findings.empty()
    centre = _nanmedian(x, axis=1)
    present = np.isfinite(cube)
    m = present.astype(np.float64)
    level = np.sum(np.where(present, np.abs(cube), 0.0), axis=2) / np.maximum(m.sum(axis=2), 1)  # [n, d]
    xc = np.where(present, cube - np.where(np.isfinite(centre), centre, 0.0)[:, None, None], 0.0)
    mt = m.transpose(0, 2, 1)
    cnt = m @ mt  # [n, i, j]: periods both days hold
    sx = xc @ mt  # sum of day i over the common periods; day j's is its transpose
    sxx = (xc * xc) @ mt
    sxy = xc @ xc.transpose(0, 2, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mi, mj = sx / cnt, sx.transpose(0, 2, 1) / cnt
        vi = sxx / cnt - mi * mi
        vj = sxx.transpose(0, 2, 1) / cnt - mj * mj
        corr = (sxy / cnt - mi * mj) / np.sqrt(vi * vj)
        msd = (sxx + sxx.transpose(0, 2, 1) - 2.0 * sxy) / cnt
        rel = np.sqrt(np.maximum(msd, 0.0)) / level[:, None, :]
        lag = np.arange(d)[:, None] - np.arange(d)[None, :]  # i - j
        pair = ((lag > 0) & (lag <= policy.profile_lookback_days) & (cnt >= policy.profile_min_coverage * p)
                & (vi > 0) & (vj > 0))
        typical = _nanmedian(np.where(pair, rel, np.nan).reshape(n, d * d), axis=1)
        limit = np.fmin(policy.profile_max_rel_rms, policy.profile_typical_share * typical)  # [n]
        match = pair & (corr >= policy.profile_min_corr) & (rel <= limit[:, None, None])
    rel_m = np.where(match, rel, np.inf)
    best = np.argmin(rel_m, axis=2)  # [n, i]
    rows, day = np.nonzero(match.any(axis=2))
    j = best[rows, day]
    return _findings("repeated_profile", rows, day * p, (day + 1) * p, rel_m[rows, day, j], limit[rows],
                     ref=j * p, start_ns=start_ns, period_ns=period_ns)
