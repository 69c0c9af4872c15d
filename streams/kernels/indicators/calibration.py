"""Calibration and maintenance flags that hide data: ``cm_day_share`` and ``cm_run_long``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from schemas.quantities import Flag

from ..aggregate import MINUTE_NS
from .grid import Bools, Findings, _as2d, _day_cube, _findings, _runs
from .policy import DEFAULT_POLICY, IndicatorPolicy

# -- 7. calibration and maintenance flags ---------------------------------------------------------


def calibration_maintenance(flag: ArrayLike, periods_per_day: int, *, policy: IndicatorPolicy = DEFAULT_POLICY,
                            start_ns: int = 0, period_ns: int = MINUTE_NS) -> Findings:
    """Days with too large a share of periods flagged C or M, and C/M runs that last too long.

    ``flag``: each period's dominant reading flag (grid starts at a local midnight). ``cm_day_share``:
    share of the day's periods (all of them, operating or not) flagged C or M above
    ``cm_max_day_share``. ``cm_run_long``: one uninterrupted C/M run longer than
    ``cm_max_run_minutes`` (value and threshold in minutes; a run may cross midnight).

    Catches flags used to hide data: C/M periods are excluded from valid averages (HJ 75/76), so
    flagging an exceedance or an unwanted reading as calibration removes it and may trigger a
    substitution. Also a faulty autocalibration stuck in its cycle. False positives: genuine
    maintenance (analyser repair, a QAL2/RATA campaign, a probe change) that takes hours, which
    should be documented in the maintenance log the alert asks for.

    Parameters
    ----------
    flag : array_like of uint8, shape (n_series, n_periods)
        Dominant reading flag of each period (HJ 212 code), the grid starting at a local midnight.
    periods_per_day : int
        Periods in a day [1].
    policy : IndicatorPolicy
        ``cm_max_day_share`` [fraction of a day], ``cm_max_run_minutes`` [min].
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        ``cm_day_share`` per day (``value`` the share, ``threshold`` the limit [fraction]) and ``cm_run_long``
        per run (``value`` its length, ``threshold`` the limit [min]).

    References
    ----------
    docs/sources.md ``HJ212-T8`` [P] (flags C and M), ``HJ75-CM15`` [S; clause U] (the 15-minute run limit),
    ``HJ212-D25`` [P] (for scale: 20 valid hours make a day); the day share is heuristic.
    """
    f = _as2d(flag, np.uint8)
    return cm_findings((f == Flag.C) | (f == Flag.M), periods_per_day, policy=policy, start_ns=start_ns,
                       period_ns=period_ns)


def cm_findings(cm: Bools, periods_per_day: int, *, policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0,
                period_ns: int = MINUTE_NS) -> Findings:
    """``cm_day_share`` and ``cm_run_long`` from the mask of periods flagged C or M (the stream's hour partials
    carry it as bits, :mod:`.hours`).

    Parameters
    ----------
    cm : ndarray of bool, shape (n_series, n_periods)
        Periods whose dominant flag is C or M, the grid starting at a local midnight.
    periods_per_day : int
        Periods in a day [1].
    policy : IndicatorPolicy
        ``cm_max_day_share`` [fraction of a day], ``cm_max_run_minutes`` [min].
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        As :func:`calibration_maintenance`.

    References
    ----------
    As :func:`calibration_maintenance`.
    """
    rows, s, e = _runs(cm)
    per_min = period_ns / MINUTE_NS
    minutes = (e - s) * per_min
    long = minutes > policy.cm_max_run_minutes
    runs = _findings("cm_run_long", rows[long], s[long], e[long], minutes[long], policy.cm_max_run_minutes,
                     start_ns=start_ns, period_ns=period_ns)
    p = int(periods_per_day)
    share = _day_cube(cm, p, 0).sum(axis=2) / p
    r, day = np.nonzero(share > policy.cm_max_day_share)
    days = _findings("cm_day_share", r, day * p, (day + 1) * p, share[r, day], policy.cm_max_day_share,
                     start_ns=start_ns, period_ns=period_ns)
    return Findings.concat([days, runs])
