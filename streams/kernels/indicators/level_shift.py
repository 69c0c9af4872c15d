"""Steps in a channel's level: ``level_shift``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..aggregate import HOUR_NS
from .grid import (
    AFTER_CALIBRATION,
    NEAR_DEADLINE,
    Findings,
    Floats,
    Ints,
    _as2d,
    _findings,
    _mask,
    _nanmedian,
    _periods,
    _window_max,
)
from .policy import DEFAULT_POLICY, IndicatorPolicy

# -- 4. level shifts ------------------------------------------------------------------------------


def level_shifts(values: ArrayLike, operating: ArrayLike | None = None, *, calibrating: ArrayLike | None = None,
                 near_deadline: ArrayLike | None = None, policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0,
                 period_ns: int = HOUR_NS) -> Findings:
    """Step changes of the level at a period boundary, in units of the local spread.

    At each boundary a straight line is fitted (least squares) to the ``k`` periods before and to
    the ``k`` after; the step is the difference of the two lines at the boundary, and ``z = step /
    spread``. Spread: the pooled residual standard deviation of the two fits, but at least the
    series' short-term noise over the whole grid (``1.4826 x median |diff| / sqrt 2``, robust): the
    local estimate has few degrees of freedom, and the floor keeps a quiet pair of windows from
    inflating ``z``.
    Lines rather than window means keep smooth change out: a ramp or a daily load cycle runs
    through the boundary and gives no step, where the difference of window means reaches 4-6
    spreads on a 15 % daily cycle. For pure noise the step's standard deviation is
    ``sqrt(2 (1/k + 3k/(k² - 1)))`` spreads: 1.17 for ``k`` = 6, 1.01 for 8. One finding per step (largest
    ``|z|`` within ``k`` periods) where ``|z| >= shift_z``, the step is at least
    ``shift_min_rel`` of the level and both windows are ``shift_min_coverage`` full (and hold at
    least 3 values). ``start``: first period at the new level; ``end = start + k``; ``value``:
    signed ``z``. ``context`` marks steps in a period of ``near_deadline`` (bool per period, e.g.
    close before a month end) and steps within ``after_calibration_h`` after (or in) a
    ``calibrating`` period of the series.

    Catches an analyser re-spanned or "adjusted" to read low (a step right after a calibration,
    or just before the month closes), a changed scaling factor, a swapped signal. False
    positives: real process steps (fuel switch, a mill or burner tripped, a kiln feed change,
    start-up and shut-down); flows and masses step with load, so concentrations are the better
    input; series whose noise is strongly autocorrelated, or grids holding long abnormally quiet
    stretches (a smoothed or frozen day, itself a finding), both of which lower the noise floor.

    Parameters
    ----------
    values : array_like of float, shape (n_series, n_periods)
        Period means [the series' unit].
    operating : array_like of bool, shape (n_series, n_periods), optional
        Periods in which the source ran (default: all); only those are fitted.
    calibrating : array_like of bool, shape (n_series, n_periods), optional
        Periods holding calibration readings, for the ``AFTER_CALIBRATION`` mark.
    near_deadline : array_like of bool, shape (n_periods,) or (n_series, n_periods), optional
        Periods close before a month end, for the ``NEAR_DEADLINE`` mark.
    policy : IndicatorPolicy
        ``shift_window_h`` [h], ``shift_z`` [1], ``shift_min_rel`` [1], ``shift_min_coverage`` [fraction],
        ``after_calibration_h`` [h].
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``level_shift`` per step: ``value`` the signed z, ``threshold`` ``shift_z`` [1]; ``context`` the marks.

    References
    ----------
    Heuristic (thresholds calibrated on the unit tests' seeded plant); the month-end mark follows the monthly
    upload deadline, docs/sources.md ``CN-EVIDENCE-20D`` [S].
    """
    x = _as2d(values)
    n, t = x.shape
    k = max(3, _periods(policy.shift_window_h * HOUR_NS, period_ns))
    if t < 2 * k:
        return Findings.empty()
    x = np.where(np.isfinite(x) & _mask(operating, x.shape), x, np.nan)
    centre = _nanmedian(x, axis=1)
    c = np.where(np.isfinite(centre), centre, 0.0)[:, None]
    valid = np.isfinite(x)
    v = valid.astype(np.float64)
    x0 = np.where(valid, x - c, 0.0)  # centred: sums of squares lose less
    tau = np.arange(t, dtype=np.float64) - t / 2  # period index, centred likewise
    zero = np.zeros((n, 1))

    def csum(y: NDArray[Any]) -> Floats:
        return np.concatenate([zero, np.cumsum(y, axis=1)], axis=1)

    sums = [csum(y) for y in (v, v * tau, v * tau * tau, x0, x0 * tau, x0 * x0)]
    i = np.arange(k, t - k + 1)  # boundaries: before [i - k, i), after [i, i + k)
    at_boundary = i - 0.5 - t / 2  # tau of the boundary

    def fit(lo: Ints, hi: Ints) -> tuple[Floats, Floats, Floats, Floats]:
        """Line through the window in time w = tau - boundary: (count, value at w = 0, residual SS, mean)."""
        cnt, st, stt, sx, stx, sxx = (s[:, hi] - s[:, lo] for s in sums)
        sw = st - cnt * at_boundary
        sww = stt - 2 * at_boundary * st + cnt * at_boundary**2
        swx = stx - at_boundary * sx
        slope = (cnt * swx - sw * sx) / (cnt * sww - sw * sw)
        icpt = (sx - slope * sw) / cnt
        return cnt, icpt, np.maximum(sxx - icpt * sx - slope * swx, 0.0), sx / cnt

    with np.errstate(invalid="ignore", divide="ignore"):
        nb, ib, ssb, mb = fit(i - k, i)
        na, ia, ssa, ma = fit(i, i + k)
        pooled = np.sqrt((ssb + ssa) / (nb + na - 4))
        noise = 1.4826 * _nanmedian(np.abs(np.diff(x, axis=1)), axis=1) / np.sqrt(2.0)
        spread = np.fmax(pooled, noise[:, None])
        step = ia - ib
        level = np.maximum(np.abs(mb + c), np.abs(ma + c))
        need = max(3.0, policy.shift_min_coverage * k)
        eligible = (nb >= need) & (na >= need) & (spread > 0) & (np.abs(step) >= policy.shift_min_rel * level)
        z = np.where(eligible, step / spread, 0.0)
    a = np.abs(z)
    # a peak beats the k - 1 boundaries before it and is not beaten by the k - 1 after
    wmax = _window_max(np.pad(a, ((0, 0), (k - 1, k - 1))), k - 1)  # wmax[:, j] = max of padded[:, j : j + k - 1]
    m = a.shape[1]
    left, right = wmax[:, :m], wmax[:, k : k + m]
    rows, col = np.nonzero((a >= policy.shift_z) & (a > left) & (a >= right))
    at = i[col]
    context = np.zeros(rows.size, dtype=np.uint8)
    if near_deadline is not None:
        near = np.broadcast_to(np.asarray(near_deadline, dtype=bool), (n, t))
        context |= np.where(near[rows, at], NEAR_DEADLINE, 0).astype(np.uint8)
    if calibrating is not None:
        cal = csum(_mask(calibrating, (n, t)))
        w = _periods(policy.after_calibration_h * HOUR_NS, period_ns) if policy.after_calibration_h > 0 else 0
        recent = cal[rows, at + 1] - cal[rows, np.maximum(at - w, 0)] > 0  # a calibration in [at - w, at]
        context |= np.where(recent, AFTER_CALIBRATION, 0).astype(np.uint8)
    return _findings("level_shift", rows, at, at + k, z[rows, col], policy.shift_z, context=context,
                     start_ns=start_ns, period_ns=period_ns)
