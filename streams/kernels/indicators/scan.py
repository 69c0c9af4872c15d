"""Every indicator over an entity's minute and hour grids, in local days and months: :func:`scan`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..aggregate import HOUR_NS
from ..rollup import _utc_offsets_s
from .calibration import calibration_maintenance
from .channel import flatline, low_variance, out_of_range
from .co2_o2 import CO2O2Pairs, co2_o2_inconsistency
from .grid import _DAY_S, NO_DATA, Findings, Floats, Grid, Ints, _periods_per_day
from .level_shift import level_shifts
from .policy import DEFAULT_POLICY, IndicatorPolicy
from .profiles import repeated_profiles

# -- all of them ----------------------------------------------------------------------------------


def _local_seconds(start_ns: int, n: int, period_ns: int, tz: ZoneInfo) -> Ints:
    """Local wall-clock seconds since the epoch of each period start."""
    t_ns = start_ns + np.arange(n, dtype=np.int64) * period_ns
    h0 = start_ns // HOUR_NS * HOUR_NS
    n_hours = int((t_ns[-1] - h0) // HOUR_NS) + 1
    offsets = _utc_offsets_s(h0, n_hours, tz)
    return np.asarray(t_ns // 10**9 + offsets[(t_ns - h0) // HOUR_NS], dtype=np.int64)


def _seconds_to_month_end(local_s: Ints) -> Ints:
    local = local_s.astype("datetime64[s]")
    next_month = (local.astype("datetime64[M]") + 1).astype("datetime64[s]")
    return np.asarray((next_month - local).astype(np.int64), dtype=np.int64)


def _daily(rule: Callable[..., Findings], grid: Grid, tz: ZoneInfo, arrays: dict[str, NDArray[Any]],
           **kw: Any) -> Findings:
    """Run a daily rule on a grid padded at the front to the local midnight, then shift indices back."""
    p = _periods_per_day(grid.period_ns)
    lead = int((_local_seconds(grid.start_ns, 1, grid.period_ns, tz)[0] % _DAY_S) * 10**9 // grid.period_ns)
    fills = {"values": np.nan, "flag": NO_DATA, "operating": False}
    padded = {k: np.concatenate([np.full((v.shape[0], lead), fills[k], dtype=v.dtype), v], axis=1)
              for k, v in arrays.items()}
    f = rule(**padded, periods_per_day=p, start_ns=grid.start_ns, period_ns=grid.period_ns, **kw)
    ref = np.where(f.ref >= 0, np.maximum(f.ref - lead, 0), -1)  # daily rules' refs are periods (earlier days)
    return Findings(f.rule, f.series, np.maximum(f.start - lead, 0), f.end - lead, f.value, f.threshold, ref,
                    f.context, f.origin_ns, f.period_ns)


def _fine_and_coarse(minutes: Grid | None, hours: Grid | None) -> tuple[Grid, Grid]:
    """The grid of the minute-level rules and the grid of the hour-level rules (each falls back on the other)."""
    if minutes is not None:
        return minutes, hours if hours is not None else minutes
    if hours is not None:
        return hours, hours
    raise ValueError("scan needs a minute grid, an hour grid or both")


def scan(minutes: Grid | None = None, hours: Grid | None = None, *, tz: ZoneInfo | str,
         policy: IndicatorPolicy = DEFAULT_POLICY, bounds: tuple[Floats, Floats] | None = None,
         pairs: CO2O2Pairs | None = None, typical_cv: ArrayLike | None = None) -> Findings:
    """Every indicator over a minute grid and/or an hour grid of the same series numbering.

    Minute-level rules (flatline, out_of_range, C/M flags, low variance) run on ``minutes`` (else
    ``hours``); hour-level rules (CO2/O2, level shifts, repeated profiles) on ``hours`` (else
    ``minutes``). ``tz``: the entity's time zone, for local days and month ends. ``bounds``: per
    series ``(low, high)`` (:func:`streams.kernels.plausibility.series_bounds`), out_of_range is skipped without.
    ``pairs``: CO2/O2 per source (:class:`CO2O2Pairs`), the CO2/O2 rule is skipped without.
    ``typical_cv``: per series, for :func:`low_variance`. Sorted by series, start, rule.

    Parameters
    ----------
    minutes, hours : Grid, optional
        The entity's minute and hour grids, the same series numbering [each series' unit]; at least one.
    tz : ZoneInfo or str
        The entity's time zone (IANA name).
    policy : IndicatorPolicy
        Every threshold (units per field).
    bounds : tuple of two arrays of float, shape (n_series,), optional
        Physical bounds per series [the series' unit].
    pairs : CO2O2Pairs, optional
        CO2 and O2 series per source with CO2max [% by volume].
    typical_cv : array_like of float, shape (n_series,), optional
        Typical daily coefficient of variation per series [1].

    Returns
    -------
    Findings
        Every rule's findings, sorted by series, start and rule.

    References
    ----------
    The rules' own (:mod:`streams.kernels.indicators`); local days and month ends from the time zone database.
    """
    fine, coarse = _fine_and_coarse(minutes, hours)
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    out = [flatline(fine.mean, fine.operating, policy=policy, start_ns=fine.start_ns, period_ns=fine.period_ns)]
    if bounds is not None:
        out.append(out_of_range(fine.mean, bounds[0], bounds[1], fine.flag, start_ns=fine.start_ns,
                                period_ns=fine.period_ns))
    out.append(_daily(calibration_maintenance, fine, tz, {"flag": fine.flag}, policy=policy))
    out.append(_daily(low_variance, fine, tz, {"values": fine.mean, "operating": fine.operating}, policy=policy,
                      typical_cv=typical_cv))
    if pairs is not None and pairs.co2.size:
        out.append(co2_o2_inconsistency(
            coarse.mean[pairs.co2] * pairs.co2_to_pct[:, None], coarse.mean[pairs.o2], pairs.co2max_pct,
            coarse.operating[pairs.co2] & coarse.operating[pairs.o2], policy=policy, co2_series=pairs.co2,
            o2_series=pairs.o2, start_ns=coarse.start_ns, period_ns=coarse.period_ns))
    local = _local_seconds(coarse.start_ns, coarse.shape[1], coarse.period_ns, tz)
    near = _seconds_to_month_end(local) <= policy.deadline_window_h * 3600
    out.append(level_shifts(coarse.mean, coarse.operating, calibrating=coarse.calibrating, near_deadline=near,
                            policy=policy, start_ns=coarse.start_ns, period_ns=coarse.period_ns))
    out.append(_daily(repeated_profiles, coarse, tz, {"values": coarse.mean, "operating": coarse.operating},
                      policy=policy))
    return Findings.concat(out).sorted()
