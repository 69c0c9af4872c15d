"""Substitution of missing operating hours, per regime, as named policies. Every filled hour carries a method code.

Input is an :class:`HourGrid`: dense ``[source, hour]`` arrays of the hour status (stopped, measured, missing, out of
control), the measured CO2 mass, and, where the regime substitutes them separately, the standard dry CO2
concentration, the standard dry flow and a load. The grid may start with history: the lookback windows below reach
back over the hours passed in, so pass as much as the rule needs (``streams/core/monthly.py`` does). Work is vectorised
over sources and hours; outages (runs of hours to fill) are handled one run at a time, a loop over outages, never
over readings. Stopped and measured hours are never changed.

Policies (ids refer to ``docs/sources.md``; ``docs/kernels.md`` has the table with confidences):

``hj75-2017``
    The valid-data capture rate of the hour's calendar quarter, a = valid hours / (hours - stopped hours) [HJ75-CR,
    S], chooses the row. *Out-of-control* runs (status ``out_of_control``) substitute the hourly CO2 **mass**
    [HJ75-OOC, S]: a >= 90 % and N <= 24 h: the maximum of the 180 valid hours before the run; a >= 90 % and
    N > 24 h: of the 720 before; 75 % <= a < 90 %: of the 2160 before. *Missing* runs (status ``missing``)
    substitute the **concentration and the flow**, each on its own [HJ75-MISS, U]: a >= 90 % and N <= 24 h: the
    mean of the valid hour before and the valid hour after; a >= 90 % and N > 24 h: the maximum of the 720 valid
    hours before; 75 % <= a < 90 %: of the 2160 before; the mass is then concentration x flow. Below 75 % neither
    table has a row; the 2160-hour maximum is used under its own method code (``*-below-75``) [P-HJ75-BELOW75].
``eu-mrr``
    Art. 45(3) [MRR-45.3, P]: a missing concentration is the mean plus two standard deviations of the valid hourly
    concentrations of the reporting period (the calendar year, to the end of the grid). Art. 45(4) [MRR-45.4, U]:
    another parameter (the flow) comes from a mass or energy balance, checked against the other measured parameters
    over a period as long as the gap. Without process data the project approximates it [P-EU-FLOW]: with a load
    channel, the flow/load ratio of the last N valid hours before an N-hour gap times the hour's load; without one,
    the mean flow of those N hours.
``us-part75``
    CO2 concentration by §75.35(d) -> §75.33(b) [P75-35, P; P75-33b, P]; flow by §75.33(c), load-binned [P75-33c,
    U]. The percent monitor data availability of each parameter is computed hourly over the last 8760 unit
    operating hours up to and including the hour (fewer while fewer exist) [P75-32, P]. Bands: >= 95 %: gap <= 24 h
    the average of the hour before and after (flow: the average of the lookback in the hour's load range), else
    the greater of that and the 90th percentile; 90-95 %: the same with 8 h and the 95th percentile; 80-90 %: the
    lookback maximum; < 80 %: the maximum potential value, which must be configured: an hour is never filled with
    0 t. Lookback: 720 quality-assured hours for CO2 [P75-33b], 2160 for flow [P75-33c]; ten equal load ranges
    between the configured minimum and maximum load [P75-APPC, U].
``none``
    Nothing is filled: missing hours stay missing and totals are measured only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import SupportsIndex

import numpy as np
from numpy.typing import ArrayLike

from .standardise import mass_rate_kg_h

__all__ = ["METHODS", "POLICY_NAMES", "STATUS", "HourGrid", "MaxPotentialMissing", "Part75Limits", "Substituted",
           "substitute"]

#: Hour status codes of an :class:`HourGrid` (``HourlyRecord.status``); 0: no record for the hour.
UNKNOWN, STOPPED, MEASURED, MISSING, OUT_OF_CONTROL = 0, 1, 2, 3, 4
STATUS: dict[str, int] = {"stopped": STOPPED, "measured": MEASURED, "missing": MISSING,
                          "out_of_control": OUT_OF_CONTROL}

#: Method code -> name. 0: not substituted (measured, stopped, or nothing to fill). Mass, concentration and flow each
#: carry their own code; a mass computed from substituted parts carries ``conc-x-flow``.
METHODS: dict[int, str] = {
    0: "none",
    1: "hj75-ooc-180h-max",
    2: "hj75-ooc-720h-max",
    3: "hj75-ooc-2160h-max",
    4: "hj75-ooc-2160h-max-below-75",
    5: "hj75-missing-before-after-mean",
    6: "hj75-missing-720h-max",
    7: "hj75-missing-2160h-max",
    8: "hj75-missing-2160h-max-below-75",
    10: "eu-mean-plus-2sigma",
    11: "eu-flow-load-ratio",
    12: "eu-flow-prior-mean",
    20: "us75-before-after-avg",
    21: "us75-p90-or-avg",
    22: "us75-p95-or-avg",
    23: "us75-lookback-max",
    24: "us75-max-potential",
    25: "us75-flow-load-avg",
    26: "us75-flow-load-p90-or-avg",
    27: "us75-flow-load-p95-or-avg",
    28: "us75-flow-load-max",
    29: "us75-flow-max-potential",
    30: "conc-x-flow",
    98: "max-potential-not-configured",  # Part 75 needs it and it is not configured: left missing, month not closed
    99: "no-history",  # nothing valid to substitute from: left missing, flagged for review
}
_CODE = {name: code for code, name in METHODS.items()}
NOT_CONFIGURED, NO_HISTORY = _CODE["max-potential-not-configured"], _CODE["no-history"]
_UNFILLED = (NOT_CONFIGURED, NO_HISTORY)
POLICY_NAMES = ("hj75-2017", "eu-mrr", "us-part75", "none")


@dataclass(frozen=True)
class Part75Limits:
    """Part 75 configuration of one source (``Settings.part75_limits``): maximum potential values and the range of
    operation of its load channel. A value left None is not configured [P75-MPC]."""

    max_co2_pct: float | None = None  # maximum potential CO2 concentration [% by volume, dry], App. A §2.1.3.1
    max_flow_m3_h: float | None = None  # maximum potential flow [m³/h, standard dry, the pipeline's flow basis]
    load_min: float | None = None  # range of operation of the load channel [its unit]: ten equal load ranges
    load_max: float | None = None


class MaxPotentialMissing(ValueError):
    """Part 75 needs a maximum potential value (availability below 80 %) that is not configured."""


@dataclass(frozen=True, eq=False)
class HourGrid:
    """Dense ``[source, hour]`` inputs of :func:`substitute`.

    Attributes
    ----------
    status : uint8, :data:`STATUS` code of each hour (0: unknown, treated as not operating).
    co2_kg : float, CO2 mass of measured hours [kg]; ignored elsewhere.
    co2_mg_m3 : float or None, standard dry CO2 concentration [mg/m³]; NaN where not valid.
    flow_m3_h : float or None, standard dry flow [m³/h]; NaN where not valid.
    load : float or None, hour mean of the load channel [its unit]; NaN where none (Part 75 load ranges).
    quarter : int [hour] or None, capture-rate period of each hour (HJ 75: the local calendar quarter); None: one.
    year : int [hour] or None, reporting period of each hour (EU MRR: the local calendar year); None: one.
    source_ids : names of the rows, for error messages.
    """

    status: np.ndarray
    co2_kg: np.ndarray
    co2_mg_m3: np.ndarray | None = None
    flow_m3_h: np.ndarray | None = None
    load: np.ndarray | None = None
    quarter: np.ndarray | None = None
    year: np.ndarray | None = None
    source_ids: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        shape = np.shape(self.status)
        if len(shape) != 2:
            raise ValueError(f"HourGrid.status must be [source, hour], not shape {shape}")
        for name in ("co2_kg", "co2_mg_m3", "flow_m3_h", "load"):
            x = getattr(self, name)
            if x is not None and np.shape(x) != shape:
                raise ValueError(f"HourGrid.{name} has shape {np.shape(x)}; status has {shape}")
        for name in ("quarter", "year"):
            x = getattr(self, name)
            if x is not None and np.shape(x) != shape[1:]:
                raise ValueError(f"HourGrid.{name} must have one entry per hour ({shape[1]}), not {np.shape(x)}")

    def name(self, s: int) -> str:
        return self.source_ids[s] if s < len(self.source_ids) else f"#{s}"


@dataclass(frozen=True, eq=False)
class Substituted:
    """Measured and substituted values, ``[source, hour]``, with a method code per value.

    ``co2_kg`` holds the measured mass, substitutes in filled hours, 0 in stopped hours and NaN where an operating
    hour is still missing. ``co2_mg_m3`` and ``flow_m3_h`` hold the valid and the substituted parts (NaN elsewhere).
    ``capture_rate`` (HJ 75 only) is the rate of each hour's quarter over the grid's hours [fraction]. ``refused``
    marks sources for which Part 75 needed a maximum potential value that is not configured.
    """

    policy: str
    co2_kg: np.ndarray
    method: np.ndarray
    co2_mg_m3: np.ndarray
    co2_method: np.ndarray
    flow_m3_h: np.ndarray
    flow_method: np.ndarray
    capture_rate: np.ndarray | None
    refused: np.ndarray

    @property
    def substituted(self) -> np.ndarray:
        """Hours whose mass was filled."""
        return np.asarray(np.not_equal(self.method, 0) & ~np.isin(self.method, _UNFILLED), dtype=bool)


def _runs(mask_row: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.concatenate([[False], mask_row, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _before(ok_row: np.ndarray, start: int, n: int) -> np.ndarray:
    """Indices of the last ``n`` hours before ``start`` where ``ok_row``."""
    return np.flatnonzero(ok_row[:start])[-n:]


def _before_after_mean(values_row: np.ndarray, ok_row: np.ndarray, start: int, end: int) -> float:
    """Mean of the valid hour before and the valid hour after [start, end); one of them when the other is unknown."""
    before, after = np.flatnonzero(ok_row[:start]), np.flatnonzero(ok_row[end:])
    vals = ([values_row[before[-1]]] if before.size else []) + ([values_row[end + after[0]]] if after.size else [])
    return float(np.mean(vals)) if vals else np.nan


def _max(x: np.ndarray) -> float:
    return float(x.max()) if x.size else np.nan


# -- HJ 75-2017 ------------------------------------------------------------------------------------


def _capture_rate(status: np.ndarray, period: np.ndarray | None) -> np.ndarray:
    """[source, hour] capture rate of each hour's period: valid / (hours - stopped), over the known hours of the
    period in the grid [HJ75-CR]. NaN where the period has no operating hour."""
    n_src, n_h = status.shape
    idx = np.zeros(n_h, np.int64) if period is None else np.unique(period, return_inverse=True)[1]
    n_p = int(idx.max()) + 1 if n_h else 0
    flat = (np.arange(n_src)[:, None] * n_p + idx[None, :]).ravel()
    valid = np.bincount(flat, weights=(status == MEASURED).ravel(), minlength=n_src * n_p)
    operating = np.bincount(flat, weights=np.isin(status, (MEASURED, MISSING, OUT_OF_CONTROL)).ravel(),
                            minlength=n_src * n_p)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (valid / operating).reshape(n_src, n_p)
    return rate[:, idx]


def _hj75_row(a: float, n: int, table: str) -> tuple[int, str]:
    """(lookback hours, method name) of the HJ 75 table row for capture rate ``a`` and run length ``n`` [h]."""
    if not a >= 0.75:  # NaN too: a rate cannot be had, take the longest window
        return 2160, f"hj75-{table}-2160h-max-below-75"
    if a < 0.90:
        return 2160, f"hj75-{table}-2160h-max"
    if n > 24:
        return 720, f"hj75-{table}-720h-max"
    return (180, "hj75-ooc-180h-max") if table == "ooc" else (0, "hj75-missing-before-after-mean")


def _neighbours(ok: np.ndarray, need: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per hour, vectorised over sources and hours: the last ``ok`` hour at or before it and the first at or after it
    (-1 / n_hours: none), and the [start, end) of the run of ``need`` hours holding it."""
    n_h = ok.shape[1]
    h = np.arange(n_h)
    prev = np.maximum.accumulate(np.where(ok, h, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(ok, h, n_h)[:, ::-1], axis=1)[:, ::-1]
    start = np.maximum.accumulate(np.where(need, -1, h), axis=1) + 1
    end = np.minimum.accumulate(np.where(need, n_h, h)[:, ::-1], axis=1)[:, ::-1]
    return prev, nxt, start, end


def _hj75(grid: HourGrid, mass: np.ndarray, conc: np.ndarray, flow: np.ndarray, m_mass: np.ndarray,
          m_conc: np.ndarray, m_flow: np.ndarray, rate: np.ndarray) -> None:
    status = grid.status
    mass_ok = status == MEASURED
    for s in np.flatnonzero((status == OUT_OF_CONTROL).any(axis=1)):  # rare: a loop over runs
        for a, b in _runs(status[s] == OUT_OF_CONTROL):
            window, name = _hj75_row(rate[s, a], b - a, "ooc")
            fill = _max(mass[s, _before(mass_ok[s], a, window)])
            _put(mass, m_mass, s, slice(a, b), fill, name)
    rows = np.arange(status.shape[0])[:, None]
    for part, m_part in ((conc, m_conc), (flow, m_flow)):
        ok = np.isfinite(part) & np.isin(status, (MEASURED, MISSING))
        need = (status == MISSING) & ~ok
        if not need.any():
            continue
        # the common row, vectorised: a >= 90 % and N <= 24 h -> mean of the valid hour before and after
        prev, nxt, start, end = _neighbours(ok, need)
        a_run = np.take_along_axis(rate, np.minimum(start, status.shape[1] - 1), axis=1)
        short = need & (a_run >= 0.90) & (end - start <= 24)
        n_h = status.shape[1]
        before = np.where(prev >= 0, part[rows, np.maximum(prev, 0)], np.nan)
        after = np.where(nxt < n_h, part[rows, np.minimum(nxt, n_h - 1)], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # neither known: NaN, no history
            fill = np.nanmean(np.stack([before, after]), axis=0)
        done = short & np.isfinite(fill)
        part[done], m_part[done] = fill[done], _CODE["hj75-missing-before-after-mean"]
        m_part[short & ~done] = _CODE["no-history"]
        rest = need & ~short  # long runs or a low capture rate: a loop over those runs
        for s in np.flatnonzero(rest.any(axis=1)):
            for a, b in _runs(rest[s]):
                window, name = _hj75_row(rate[s, a], b - a, "missing")
                _put(part, m_part, s, slice(a, b), _max(part[s, _before(ok[s], a, window)]), name)


def _put(values: np.ndarray, method: np.ndarray, s: SupportsIndex, where: slice | np.ndarray, fill: ArrayLike,
         name: str) -> None:
    """Fill ``values[s, where]`` with ``fill`` (scalar or array) under ``name``; non-finite fills: no history."""
    filled = np.broadcast_to(np.asarray(fill, dtype=np.float64), values[s, where].shape)
    ok = np.isfinite(filled)
    vals, codes = values[s, where], method[s, where]
    vals[ok] = filled[ok]
    codes[ok] = _CODE[name]
    codes[~ok] = _CODE["no-history"]
    values[s, where], method[s, where] = vals, codes


# -- EU MRR ----------------------------------------------------------------------------------------


def _eu(grid: HourGrid, conc: np.ndarray, flow: np.ndarray, m_conc: np.ndarray, m_flow: np.ndarray,
        operating: np.ndarray, gap: np.ndarray) -> None:
    # Art. 45(3): mean + 2 sigma of the period's valid concentrations, one value per (source, year): vectorised.
    ok = np.isfinite(conc) & operating
    need = gap & ~ok
    n_src, n_h = conc.shape
    idx = np.zeros(n_h, np.int64) if grid.year is None else np.unique(grid.year, return_inverse=True)[1]
    n_p = int(idx.max()) + 1 if n_h else 0
    flat = (np.arange(n_src)[:, None] * n_p + idx[None, :]).ravel()
    v = np.where(ok, conc, 0.0).ravel()
    n = np.bincount(flat, weights=ok.ravel(), minlength=n_src * n_p)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(flat, weights=v, minlength=n_src * n_p) / n
        dev2 = np.where(ok.ravel(), (v - mean[flat]) ** 2, 0.0)
        sigma = np.sqrt(np.bincount(flat, weights=dev2, minlength=n_src * n_p) / (n - 1))  # sample sigma
    fill = np.where(n >= 2, mean + 2 * sigma, np.nan)[flat].reshape(n_src, n_h)
    done = need & np.isfinite(fill)
    conc[done] = fill[done]
    m_conc[done] = _CODE["eu-mean-plus-2sigma"]
    m_conc[need & ~done] = _CODE["no-history"]

    # Art. 45(4), approximated [P-EU-FLOW]: the N valid hours before an N-hour gap stand for normal operation.
    ok = np.isfinite(flow) & operating
    need = gap & ~ok
    load = grid.load
    for s in np.flatnonzero(need.any(axis=1)):
        for a, b in _runs(need[s]):
            prior = _before(ok[s], a, b - a)
            mean_flow = float(flow[s, prior].mean()) if prior.size else np.nan
            if load is not None:
                both = _before(ok[s] & np.isfinite(load[s]), a, b - a)
                total_load = float(load[s, both].sum())
                if both.size and total_load > 0:
                    with np.errstate(over="ignore", invalid="ignore"):
                        scaled = float(flow[s, both].sum()) / total_load * load[s, a:b]
                    has = np.isfinite(scaled)  # no load in the hour (or a ratio beyond float range): the mean
                    _put(flow, m_flow, s, slice(a, b), np.where(has, scaled, np.nan), "eu-flow-load-ratio")
                    rest = np.flatnonzero(~has) + a
                    if rest.size:
                        _put(flow, m_flow, s, rest, mean_flow, "eu-flow-prior-mean")
                    continue
            _put(flow, m_flow, s, slice(a, b), mean_flow, "eu-flow-prior-mean")


# -- US Part 75 ------------------------------------------------------------------------------------

_PMA_HOURS = 8760  # §75.32 Eq. 9: the last 8760 unit operating hours
_BINS = 10  # Appendix C §2: ten load ranges [U]


def _availability(ok_row: np.ndarray, operating_row: np.ndarray) -> np.ndarray:
    """Percent monitor data availability [fraction] of every hour: valid hours / operating hours among the last 8760
    operating hours up to and including the hour (Eq. 8 while fewer exist) [P75-32]."""
    k = np.cumsum(operating_row)  # operating hours up to and including each hour
    v = np.concatenate([[0], np.cumsum((ok_row & operating_row)[operating_row])])  # valid count by operating index
    lo = np.maximum(k - _PMA_HOURS, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((v[k] - v[lo]) / (k - lo), dtype=np.float64)


def _us_bands(pma: np.ndarray, n: int, avg: float, p90: float, p95: float, peak: float, potential: float,
              names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per hour of an n-hour gap: (fill, method code) of the §75.33 band its availability falls in."""
    hi = (avg, names[0]) if n <= 24 else (np.nanmax([p90, avg]), names[1])
    mid = (avg, names[0]) if n <= 8 else (np.nanmax([p95, avg]), names[2])
    bands = [(pma >= 0.95, *hi), (pma >= 0.90, *mid), (pma >= 0.80, peak, names[3]),
             (np.ones_like(pma, bool), potential, names[4])]
    fill, code = np.full(pma.shape, np.nan), np.zeros(pma.shape, np.uint8)
    taken = np.zeros(pma.shape, bool)
    for cond, value, name in bands:
        here = cond & ~taken
        fill[here], code[here] = value, _CODE[name]
        taken |= here
    return fill, code


def _stats(x: np.ndarray) -> tuple[float, float, float, float]:
    if not x.size:
        return (np.nan,) * 4
    return float(x.mean()), float(np.percentile(x, 90)), float(np.percentile(x, 95)), float(x.max())


_CO2_NAMES = ("us75-before-after-avg", "us75-p90-or-avg", "us75-p95-or-avg", "us75-lookback-max", "us75-max-potential")
_FLOW_NAMES = ("us75-flow-load-avg", "us75-flow-load-p90-or-avg", "us75-flow-load-p95-or-avg", "us75-flow-load-max",
               "us75-flow-max-potential")


def _us(grid: HourGrid, conc: np.ndarray, flow: np.ndarray, m_conc: np.ndarray, m_flow: np.ndarray,
        operating: np.ndarray, gap: np.ndarray, max_co2: np.ndarray | None, max_flow: np.ndarray | None,
        load_range: tuple[ArrayLike, ArrayLike] | None, refuse: str, refused: np.ndarray) -> None:
    bins = None
    if grid.load is not None and load_range is not None:
        low, high = (np.asarray(x, np.float64)[:, None] for x in load_range)
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.floor((grid.load - low) / (high - low) * _BINS)
        bins = np.where(np.isfinite(scaled), np.clip(scaled, 0, _BINS - 1), -1).astype(np.int64)  # -1: no load range
    for part, m_part, lookback, potential, names, what in (
            (conc, m_conc, 720, max_co2, _CO2_NAMES, "CO2 concentration (Part75Limits.max_co2_pct)"),
            (flow, m_flow, 2160, max_flow, _FLOW_NAMES, "flow (Part75Limits.max_flow_m3_h)")):
        ok = np.isfinite(part) & operating
        need = gap & ~ok
        for s in np.flatnonzero(need.any(axis=1)):
            pma = _availability(ok[s], operating[s])
            mpc = np.nan if potential is None else float(potential[s])
            for a, b in _runs(need[s]):
                hist = _before(ok[s], a, lookback)
                if part is conc:
                    avg = _before_after_mean(part[s], ok[s], a, b)
                    _, p90, p95, peak = _stats(part[s, hist])
                    fill, code = _us_bands(pma[a:b], b - a, avg, p90, p95, peak, mpc, names)
                else:  # §75.33(c): every statistic from the lookback hours in the hour's load range
                    fill, code = np.full(b - a, np.nan), np.zeros(b - a, np.uint8)
                    hour_bin = np.full(b - a, -1) if bins is None else bins[s, a:b]
                    hist_bin = None if bins is None else bins[s, hist]
                    for k in np.unique(hour_bin):
                        at = hour_bin == k
                        pick = hist if k < 0 or hist_bin is None else _load_range(hist, hist_bin, int(k))
                        avg, p90, p95, peak = _stats(part[s, pick])
                        fill[at], code[at] = _us_bands(pma[a:b][at], b - a, avg, p90, p95, peak, mpc, names)
                lacking = (code == _CODE[names[4]]) & ~np.isfinite(fill)
                if lacking.any():
                    if refuse == "raise":
                        h = a + int(np.flatnonzero(lacking)[0])
                        raise MaxPotentialMissing(
                            f"us-part75: source {grid.name(int(s))}: hour {h} of the grid needs the maximum "
                            f"potential {what} (monitor data availability {pma[h]:.1%} < 80 %, §75.33); it is not "
                            f"configured, and an hour"
                            " is never filled with 0 t: configure it, or the month cannot be closed")
                    refused[s] = True
                ok_fill = np.isfinite(fill)
                seg_v, seg_m = part[s, a:b], m_part[s, a:b]
                seg_v[ok_fill], seg_m[ok_fill] = fill[ok_fill], code[ok_fill]
                seg_m[~ok_fill] = np.where(lacking[~ok_fill], _CODE["max-potential-not-configured"],
                                           _CODE["no-history"])
                part[s, a:b], m_part[s, a:b] = seg_v, seg_m


def _load_range(hist: np.ndarray, hist_bin: np.ndarray, k: int) -> np.ndarray:
    """Lookback hours in load range ``k``; if none, in the next higher range that has some; else all [U]."""
    for j in range(k, _BINS):
        pick = np.asarray(hist[np.equal(hist_bin, j)])
        if pick.size:
            return pick
    return hist


# -- entry point -----------------------------------------------------------------------------------


def substitute(
    grid: HourGrid,
    policy: str = "hj75-2017",
    *,
    max_co2_mg_m3: np.ndarray | None = None,
    max_flow_m3_h: np.ndarray | None = None,
    load_range: tuple[np.ndarray, np.ndarray] | None = None,
    refuse: str = "raise",
) -> Substituted:
    """Fill the missing and out-of-control operating hours of ``grid`` under ``policy``.

    Parameters
    ----------
    grid : HourGrid
        Status, mass [kg], concentration [mg/m³ std dry], flow [m³/h std dry] and load per source and hour.
    policy : str
        ``hj75-2017`` (default), ``eu-mrr``, ``us-part75`` or ``none``; rules in the module docstring.
    max_co2_mg_m3, max_flow_m3_h : float [source] or None
        Part 75 maximum potential CO2 concentration [mg/m³ std dry] and flow [m³/h std dry]; NaN: not configured.
    load_range : (low [source], high [source]) or None
        Part 75 range of operation of the load channel [its unit]: ten equal load ranges; NaN or None: one range.
    refuse : "raise" or "mark"
        What to do when Part 75 needs a maximum potential value that is not configured: raise
        :class:`MaxPotentialMissing`, or leave the hours missing (``max-potential-not-configured``) and set
        ``Substituted.refused`` for the source, so the caller can refuse to close its month.

    Returns
    -------
    Substituted
        Values and method codes per hour (module docstring); never fills a stopped or a measured hour.

    References
    ----------
    docs/sources.md: HJ75-CR, HJ75-OOC, HJ75-MISS, P-HJ75-BELOW75, MRR-45.2, MRR-45.3, MRR-45.4, P-EU-FLOW, P75-32,
    P75-33b, P75-33c, P75-35, P75-APPC.
    """
    if policy not in POLICY_NAMES:
        raise KeyError(f"unknown substitution policy {policy!r}; known: {list(POLICY_NAMES)}")
    if refuse not in ("raise", "mark"):
        raise ValueError(f"refuse must be 'raise' or 'mark', not {refuse!r}")
    status = np.asarray(grid.status, dtype=np.uint8)
    shape = status.shape
    measured = status == MEASURED
    operating = np.isin(status, (MEASURED, MISSING, OUT_OF_CONTROL))
    gap = operating & ~measured

    def part(x: ArrayLike | None) -> np.ndarray:
        return np.full(shape, np.nan) if x is None else np.where(operating, np.asarray(x, np.float64), np.nan)

    mass = np.where(measured, np.asarray(grid.co2_kg, np.float64), np.where(operating, np.nan, 0.0))
    conc, flow = part(grid.co2_mg_m3), part(grid.flow_m3_h)
    m_mass, m_conc, m_flow = (np.zeros(shape, np.uint8) for _ in range(3))
    refused = np.zeros(shape[0], bool)
    rate = None
    if policy == "hj75-2017":
        rate = _capture_rate(status, grid.quarter)
        _hj75(grid, mass, conc, flow, m_mass, m_conc, m_flow, rate)
    elif policy == "eu-mrr":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _eu(grid, conc, flow, m_conc, m_flow, operating, gap)
    elif policy == "us-part75":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmax of all-NaN candidates: no history
            _us(grid, conc, flow, m_conc, m_flow, operating, gap,
                None if max_co2_mg_m3 is None else np.broadcast_to(np.asarray(max_co2_mg_m3, np.float64), shape[:1]),
                None if max_flow_m3_h is None else np.broadcast_to(np.asarray(max_flow_m3_h, np.float64), shape[:1]),
                load_range, refuse, refused)
    if policy != "none":  # a gap hour not filled as a whole: concentration x flow (HJ 212 Eq. 33)
        from_parts = gap & np.isnan(mass) & np.isfinite(conc) & np.isfinite(flow)
        with np.errstate(over="ignore"):
            product = mass_rate_kg_h(conc[from_parts], flow[from_parts])
        mass[from_parts] = np.where(np.isfinite(product), product, np.nan)  # beyond float range: left for review
        m_mass[from_parts] = _CODE["conc-x-flow"]
        left = gap & np.isnan(mass)
        parked = (m_conc == _CODE["max-potential-not-configured"]) | (m_flow == _CODE["max-potential-not-configured"])
        m_mass[left] = np.where(parked[left], _CODE["max-potential-not-configured"], _CODE["no-history"])
    return Substituted(policy, mass, m_mass, conc, m_conc, flow, m_flow, rate, refused)
