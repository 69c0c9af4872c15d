"""CO2 against the CO2 the O2 reading implies for the fuel: ``co2_o2_inconsistent``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.site import EmissionSource

from ..aggregate import HOUR_NS
from ..standardise import (
    MOLAR_MASS_G_MOL,
    REFERENCE_CONDITIONS,
    ReferenceConditions,
    vol_pct_to_mg_m3,
)
from .grid import (
    Findings,
    Floats,
    _as2d,
    _findings,
    _mask,
    _nanmedian,
    _periods,
    _run_reduce,
    _runs,
)
from .policy import DEFAULT_POLICY, IndicatorPolicy

# -- 3. CO2 vs O2 ---------------------------------------------------------------------------------


def implied_co2_pct(o2_pct: ArrayLike, co2max_pct: ArrayLike, air_o2_pct: float = 20.9) -> Floats:
    """Dry CO2 [vol %] that dry O2 implies for a fuel: ``CO2max x (air - O2) / air``.

    The O2-based CO2 estimate of 40 CFR 75 App. F. Exact for complete combustion
    diluted by excess air: the dry flue gas is the stoichiometric gas (CO2 share CO2max) plus excess
    air (O2 share ``air``), so both shares scale with the same dilution.

    Parameters
    ----------
    o2_pct : array_like of float
        Dry O2 [% by volume].
    co2max_pct : array_like of float
        CO2max of the fuel: dry CO2 of stoichiometric combustion [% by volume].
    air_o2_pct : float
        O2 of air in the relation [% by volume].

    Returns
    -------
    ndarray of float
        The dry CO2 the O2 implies [% by volume].

    References
    ----------
    docs/sources.md ``P75-F-CO2MAX`` [U].
    """
    return np.asarray(co2max_pct, dtype=np.float64) * (air_o2_pct - np.asarray(o2_pct, dtype=np.float64)) / air_o2_pct


def effective_co2max(co2_pct: ArrayLike, o2_pct: ArrayLike, operating: ArrayLike | None = None, *,
                     policy: IndicatorPolicy = DEFAULT_POLICY) -> Floats:
    """Per source, the median of ``CO2 x air / (air - O2)`` over judged hours [vol %].

    For sources whose CO2 is not only from fuel (cement kilns: calcination; lime; blast-furnace gas),
    calibrate on a period of trusted history and pass the result as the source's CO2max. Computed
    from the data it will judge, it would absorb a falsification that lasts most of the period.

    Parameters
    ----------
    co2_pct, o2_pct : array_like of float, shape (n_sources, n_periods)
        Dry CO2 and dry O2 [% by volume].
    operating : array_like of bool, shape (n_sources, n_periods), optional
        Periods in which the source ran (default: all).
    policy : IndicatorPolicy
        ``air_o2_pct`` [% by volume]; hours above ``co2o2_max_o2_pct`` [% by volume] are left out.

    Returns
    -------
    ndarray of float, shape (n_sources,)
        Effective CO2max [% by volume]; NaN for a source without a judged hour.

    References
    ----------
    docs/sources.md ``P75-F-CO2MAX`` [U], ``CO2MAX-FAMILY`` [U].
    """
    co2, o2 = _as2d(co2_pct), _as2d(o2_pct)
    air = policy.air_o2_pct
    ok = np.isfinite(co2) & np.isfinite(o2) & _mask(operating, co2.shape) & (o2 >= 0) & (o2 <= policy.co2o2_max_o2_pct)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ok, co2 * air / (air - o2), np.nan)
    return _nanmedian(ratio, axis=1)


def co2_o2_inconsistency(co2_pct: ArrayLike, o2_pct: ArrayLike, co2max_pct: ArrayLike,
                         operating: ArrayLike | None = None, *, policy: IndicatorPolicy = DEFAULT_POLICY,
                         co2_series: ArrayLike | None = None, o2_series: ArrayLike | None = None, start_ns: int = 0,
                         period_ns: int = HOUR_NS) -> Findings:
    """Runs of hours whose measured dry CO2 deviates from the CO2 that O2 implies for the fuel.

    ``co2_pct``, ``o2_pct``: ``[source, period]`` dry vol %; ``co2max_pct``: per source. An hour is
    inconsistent when ``|CO2 - implied| > max(co2o2_rel_tol x implied, co2o2_abs_tol_pct)``, judged
    only while operating with ``0 <= O2 <= co2o2_max_o2_pct``; runs of ``co2o2_min_hours`` or more
    are reported. ``value``: mean ``CO2 - implied`` of the run [vol %]; ``threshold``: mean tolerance
    [vol %]; ``series``/``ref``: the CO2 / O2 series (``co2_series``/``o2_series``, else the row).

    Catches a tampered or drifting CO2 (or O2) analyser, diluted sample lines, CO2 numbers edited
    without the O2 (the simulator's ``bias`` fault). False positives: a CO2max that does not fit the
    fuel (blends, biomass co-firing), process CO2 (use :func:`effective_co2max`), incomplete
    combustion (CO), CO2 and O2 measured at different points with air in-leakage between them,
    wet-basis analysers (convert to dry first), analysers with different response times during
    fast load changes (hourly means damp this).

    Parameters
    ----------
    co2_pct, o2_pct : array_like of float, shape (n_sources, n_periods)
        Dry CO2 and dry O2 [% by volume].
    co2max_pct : array_like of float, shape (n_sources,)
        CO2max of each source's fuel [% by volume].
    operating : array_like of bool, shape (n_sources, n_periods), optional
        Periods in which the source ran (default: all).
    policy : IndicatorPolicy
        ``co2o2_rel_tol`` [1], ``co2o2_abs_tol_pct`` and ``co2o2_max_o2_pct`` [% by volume], ``co2o2_min_hours`` [h].
    co2_series, o2_series : array_like of int, shape (n_sources,), optional
        Series numbers the findings name (default: the row).
    start_ns : int
        Start of period 0 of the grid [ns since the epoch].
    period_ns : int
        Period length of the grid [ns].

    Returns
    -------
    Findings
        One ``co2_o2_inconsistent`` per run: ``value`` the mean CO2 - implied, ``threshold`` the mean tolerance
        [% by volume]; ``series`` the CO2 series, ``ref`` the O2 series.

    References
    ----------
    docs/sources.md ``P75-F-CO2MAX`` [U] (the relation), ``P75-F-O2CAP`` [P] (the 14 % O2 cap, borrowed),
    ``EC-CO2CEMS`` [S] (analyser error behind the absolute tolerance); the tolerances are heuristic.
    """
    co2, o2 = _as2d(co2_pct), _as2d(o2_pct)
    co2max = np.broadcast_to(np.asarray(co2max_pct, dtype=np.float64), (co2.shape[0],))
    implied = implied_co2_pct(o2, co2max[:, None], policy.air_o2_pct)
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(co2) & np.isfinite(o2) & _mask(operating, co2.shape) & (o2 >= 0)
              & (o2 <= policy.co2o2_max_o2_pct))
        tol = np.maximum(policy.co2o2_rel_tol * implied, policy.co2o2_abs_tol_pct)
        dev = co2 - implied
        bad = ok & (np.abs(dev) > tol)
    rows, s, e = _runs(bad)
    length = e - s
    keep = length >= _periods(policy.co2o2_min_hours * HOUR_NS, period_ns)
    rows, s, e, length = rows[keep], s[keep], e[keep], length[keep]
    mean_dev = _run_reduce(np.add, np.where(bad, dev, 0.0), rows, s, e) / np.maximum(length, 1)
    mean_tol = _run_reduce(np.add, np.where(bad, tol, 0.0), rows, s, e) / np.maximum(length, 1)
    co2_idx = rows if co2_series is None else np.asarray(co2_series, dtype=np.int64)[rows]
    o2_idx = rows if o2_series is None else np.asarray(o2_series, dtype=np.int64)[rows]
    return _findings("co2_o2_inconsistent", co2_idx, s, e, mean_dev, mean_tol, ref=o2_idx,
                     start_ns=start_ns, period_ns=period_ns)


@dataclass(frozen=True, eq=False)
class CO2O2Pairs:
    """Per source with both a CO2 and an O2 channel: the two series, CO2max and the CO2 unit factor."""

    co2: NDArray[np.int64]  # [k], CO2 (a05001) series
    o2: NDArray[np.int64]  # [k], O2 (a19001) series, %
    co2max_pct: Floats  # [k], % by volume
    co2_to_pct: Floats  # [k], multiplier from the CO2 channel's unit to % by volume

    @classmethod
    def from_sources(cls, sources: Iterable[EmissionSource], series_of: Mapping[tuple[str, str], int],
                     co2max: Mapping[str, str | float], *,
                     policy: IndicatorPolicy = DEFAULT_POLICY,
                     ref: ReferenceConditions = REFERENCE_CONDITIONS["hj212"]) -> CO2O2Pairs:
        """``co2max``: source id -> fuel family (a key of ``policy.co2max_pct``) or a value [vol %].
        Sources not named there are skipped. CO2 in mg/m³ or g/m³ is taken as standard dry
        (HJ 212 Eq. 20, ``HJ212-D20`` [P], for the conversion)."""
        mg_per_pct = float(vol_pct_to_mg_m3(1.0, MOLAR_MASS_G_MOL["a05001"], ref))
        to_pct = {"%": 1.0, "ppm": 1e-4, "mg/m3": 1.0 / mg_per_pct, "g/m3": 1000.0 / mg_per_pct}
        co2, o2, cmax, factor = [], [], [], []
        for src in sources:  # configuration, not readings
            if src.id not in co2max:
                continue
            by_q = {}
            for ch in src.channels:
                if ch.quantity in ("a05001", "a19001"):
                    if ch.quantity in by_q:
                        raise ValueError(f"source {src.id!r} has two {ch.quantity} channels; say which one to use")
                    by_q[ch.quantity] = ch
            if set(by_q) != {"a05001", "a19001"}:
                raise ValueError(f"source {src.id!r} needs a CO2 (a05001) and an O2 (a19001) channel")
            spec = co2max[src.id]
            if isinstance(spec, str):
                if spec not in policy.co2max_pct:
                    raise ValueError(f"unknown fuel family {spec!r}; known: {sorted(policy.co2max_pct)}")
                spec = policy.co2max_pct[spec]
            co2.append(series_of[(src.id, by_q["a05001"].id)])
            o2.append(series_of[(src.id, by_q["a19001"].id)])
            cmax.append(float(spec))
            factor.append(to_pct[by_q["a05001"].unit])
        return cls(np.array(co2, dtype=np.int64), np.array(o2, dtype=np.int64), np.array(cmax, dtype=np.float64),
                   np.array(factor, dtype=np.float64))
