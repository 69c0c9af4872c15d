"""Data-quality and falsification indicators from minute and hour grids: what an alert layer raises.

Inputs are regular grids, ``[n_series, n_periods]`` arrays of period means (NaN = no valid mean)
with flag and operating masks (:class:`Grid`; :meth:`Grid.from_table` pivots a closed
:class:`~.aggregate.PeriodTable`). Every rule is one vectorised function returning
:class:`Findings`: per finding the rule, the series, the half-open span ``[start, end)`` of periods
on the grid it was found on, the measured ``value`` and the ``threshold`` it was held against.
:func:`scan` runs them all. No I/O, no loop per reading or per period (loops are over rules and
over the two directions of a range check).

Rules, sources and confidence tags (``shared/reference/cems-standards.md``); every threshold is
in :class:`IndicatorPolicy`, and those marked *heuristic* are this project's choice, not a rule of
any standard:

1. ``flatline``: a channel repeats its value while the source runs. Heuristic.
2. ``out_of_range``: outside physical bounds (:mod:`.plausibility`, this project's wide physical
   limits) or flagged T (HJ 212-2017 Table 8 [P], §1.7).
3. ``co2_o2_inconsistent``: dry CO2 far from ``CO2max x (20.9 - O2) / 20.9``. The relation is the
   O2-based CO2 estimate of 40 CFR 75 App. F (CO2max, 20.9 % O2) [U, §7.2], and exact for complete
   combustion diluted by excess air (derived in :mod:`edge_agent.simulator.physics`, where it holds
   to rounding). CO2max per fuel family: stoichiometric, this project's derivation [U as defaults].
   Tolerance from the CO2 analyser accuracy limits of Environment Canada's reference method
   (10 % or 0.5 % CO2) [S, §3], widened: heuristic.
4. ``level_shift``: step in the level (two line fits meeting at a boundary), in units of the
   local spread. Heuristic; marked when close before a month end (monthly data close there;
   uploads are due 20 days later [S, §4.7]) or right after a calibration.
5. ``repeated_profile``: a day's profile (nearly) equal to an earlier day's. Heuristic.
6. ``low_variance``: a day's coefficient of variation far below the channel's typical. Heuristic.
7. ``cm_day_share`` / ``cm_run_long``: minutes flagged C or M (HJ 212 Table 8 [P]) per day above a
   share (heuristic), or one C/M run longer than 15 min, the "> 15 min" marking window attributed
   to HJ 75-2017 by an operator-portal script [S; clause U, §2].
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from schemas.quantities import Flag

from .aggregate import HOUR_NS, MINUTE_NS, PeriodTable
from .rollup import _utc_offsets_s
from .standardise import MOLAR_MASS_G_MOL, REFERENCE_CONDITIONS, ReferenceConditions, vol_pct_to_mg_m3

__all__ = [
    "AFTER_CALIBRATION",
    "CO2MAX_PCT",
    "DEFAULT_POLICY",
    "NEAR_DEADLINE",
    "NO_DATA",
    "RULES",
    "CO2O2Pairs",
    "Findings",
    "Grid",
    "IndicatorPolicy",
    "calibration_maintenance",
    "co2_o2_inconsistency",
    "effective_co2max",
    "flatline",
    "implied_co2_pct",
    "level_shifts",
    "low_variance",
    "out_of_range",
    "repeated_profiles",
    "scan",
]

#: Rule code -> name. Codes are stable: never renumber.
RULES: dict[int, str] = {
    1: "flatline",
    2: "out_of_range",
    3: "co2_o2_inconsistent",
    4: "level_shift",
    5: "repeated_profile",
    6: "low_variance",
    7: "cm_day_share",
    8: "cm_run_long",
}
_CODE = {name: code for code, name in RULES.items()}

#: ``Findings.context`` bits (level shifts only).
NEAR_DEADLINE = 1  # within ``deadline_window_h`` before a local month end
AFTER_CALIBRATION = 2  # within ``after_calibration_h`` after a period holding calibration readings

#: ``Grid.flag`` of a period without any reading.
NO_DATA = 255

_DAY_S = 86_400

#: Dry stoichiometric CO2 of a fuel family [vol %] (CO2max: complete combustion, no excess air, air of
#: 21 % O2). This project's derivation from typical ultimate analyses with the stoichiometry of
#: ``edge_agent/simulator/physics.py``: methane 11.73; diesel 15.42, heavy fuel oil 16.05; bituminous
#: coal (C 62 %, H 4 %, O 8 %) 18.75, lignite 19.2, anthracite 19.6; coke (C 86 %, H 0.5 %) 20.67;
#: pure carbon 21.0. Typical values [U]: configure a source's own where its fuel is known, and an
#: *effective* value (:func:`effective_co2max`) for sources with process CO2 (cement kilns, lime,
#: blast-furnace gas), which no fuel value describes.
CO2MAX_PCT: dict[str, float] = {
    "natural_gas": 11.7,
    "fuel_oil": 15.7,
    "coal": 18.8,
    "coke": 20.6,
}


class IndicatorPolicy(BaseModel):
    """Thresholds of every indicator. Frozen; each default says where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"

    # 1. flatline (heuristic)
    flat_min_minutes: float = Field(
        30.0, gt=0, description="Shortest reported run of repeated values [min]. Heuristic: live minute means "
        "of an analyser never repeat for half an hour.")
    flat_rel_tol: float = Field(
        1e-6, ge=0, description="Two periods repeat when |a - b| <= rel x max(|a|, |b|) + abs. Minute means are "
        "exact on a 2^-24 grid (kernels.exact), so a stuck reading repeats bit for bit.")
    flat_abs_tol: float = Field(0.0, ge=0, description="Absolute part of the repeat tolerance [unit of the series].")

    # 3. CO2 vs O2
    air_o2_pct: float = Field(
        20.9, gt=0, le=21.0, description="O2 of air in the CO2max relation: 20.9 in 40 CFR 75 App. F [U, §7.2]; "
        "HJ 212 Eq. 26-28 use 21 [P].")
    co2max_pct: dict[str, float] = Field(default_factory=lambda: dict(CO2MAX_PCT),
                                         description="CO2max per fuel family [vol %] (CO2MAX_PCT).")
    co2o2_rel_tol: float = Field(
        0.05, gt=0, description="Allowed |CO2 - implied| as a share of the implied CO2: twice the +/-2.5 % spread "
        "of CO2max within a fuel family (CO2MAX_PCT). Heuristic.")
    co2o2_abs_tol_pct: float = Field(
        0.75, gt=0, description="Allowed |CO2 - implied| at least this [vol %]: 0.5 % CO2 and 0.5 % O2 analyser "
        "error (Environment Canada reference method [S, §3]) combined through the relation. Heuristic.")
    co2o2_max_o2_pct: float = Field(
        14.0, gt=0, description="Hours with more O2 are not judged (start-up, low load, air in-leakage): the "
        "14.0 % O2 cap for boilers of 40 CFR 75 App. F §3.3.4.1 [P, §7.2], borrowed.")
    co2o2_min_hours: float = Field(3.0, gt=0, description="Shortest reported run of inconsistent hours [h]. Heuristic.")

    # 4. level shifts (heuristic)
    shift_window_h: float = Field(
        8.0, gt=0, description="Hours fitted before and after each boundary [h]. Heuristic: on the unit tests' "
        "seeded noisy plant over 400 seeds (7,200 series-days), 6-hour windows gave 6 false steps, 8-hour none.")
    shift_z: float = Field(
        6.0, gt=0, description="|step| / spread at which a step is reported (pure noise: the step's standard "
        "deviation is 1.0 spread for 8-hour windows, so about 6 standard errors). Heuristic.")
    shift_min_rel: float = Field(0.02, ge=0, description="Steps smaller than this share of the level are ignored.")
    shift_min_coverage: float = Field(0.8, gt=0, le=1, description="Share of each window that must hold values.")
    deadline_window_h: float = Field(72.0, ge=0, description="Shifts this close before a local month end are marked.")
    after_calibration_h: float = Field(6.0, ge=0, description="Shifts this soon after a calibration are marked.")

    # 5. repeated daily profiles (heuristic)
    profile_min_corr: float = Field(0.99, gt=-1, le=1, description="Pearson correlation of the two days, at least.")
    profile_max_rel_rms: float = Field(
        0.005, ge=0, description="RMS difference of the two days over the earlier day's mean |level|, at most.")
    profile_typical_share: float = Field(
        0.2, gt=0, description="... and at most this share of the series' median relative RMS difference between "
        "day pairs, so a plant run to a very regular schedule needs a closer match.")
    profile_min_coverage: float = Field(0.9, gt=0, le=1, description="Share of the day both days must hold.")
    profile_lookback_days: int = Field(31, ge=1, description="Earlier days compared with each day.")

    # 6. low variance (heuristic)
    lowvar_rel: float = Field(0.1, gt=0, description="A day is flagged when its CV < this x the channel's typical CV.")
    lowvar_abs_cv: float = Field(0.0, ge=0, description="... or below this absolute CV floor (0 = off).")
    lowvar_min_coverage: float = Field(0.5, gt=0, le=1, description="Share of the day that must hold values.")

    # 7. calibration / maintenance
    cm_max_day_share: float = Field(
        0.10, gt=0, le=1, description="Share of a day's periods flagged C or M, at most. Heuristic; for scale, "
        "4 h (16.7 %) alone would invalidate the day under HJ 212 Eq. 25 (>= 20 valid hours) [P].")
    cm_max_run_minutes: float = Field(
        15.0, gt=0, description="Longest C/M run [min]: the '> 15 min' marking window attributed to HJ 75-2017 "
        "[S; clause U, cems-standards §2].")


DEFAULT_POLICY = IndicatorPolicy()


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Findings:
    """Indicator results, one row per finding. Indices refer to the grid each was found on:
    period ``i`` starts at ``origin_ns + i * period_ns``; spans are half-open ``[start, end)``."""

    rule: np.ndarray  # uint8, RULES code
    series: np.ndarray  # int64; the CO2 series for co2_o2_inconsistent
    start: np.ndarray  # int64, first period
    end: np.ndarray  # int64, one past the last period
    value: np.ndarray  # float64, what was measured (unit per rule: docs/indicators.md)
    threshold: np.ndarray  # float64, what it was held against
    ref: np.ndarray  # int64: earlier day's first period (repeated_profile), O2 series (co2_o2), else -1
    context: np.ndarray  # uint8 bits NEAR_DEADLINE | AFTER_CALIBRATION (level_shift), else 0
    origin_ns: np.ndarray  # int64, start of period 0 of the grid
    period_ns: np.ndarray  # int64, period length of the grid

    _FIELDS = ("rule", "series", "start", "end", "value", "threshold", "ref", "context", "origin_ns", "period_ns")
    _DTYPES = (np.uint8, np.int64, np.int64, np.int64, np.float64, np.float64, np.int64, np.uint8, np.int64, np.int64)

    def __len__(self) -> int:
        return int(self.rule.size)

    @classmethod
    def empty(cls) -> Findings:
        return cls(*(np.zeros(0, dtype=d) for d in cls._DTYPES))

    @classmethod
    def concat(cls, parts: list[Findings]) -> Findings:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls._FIELDS))

    def select(self, mask) -> Findings:
        return Findings(*(getattr(self, f)[mask] for f in self._FIELDS))

    def sorted(self) -> Findings:
        """By series, then start, then rule."""
        return self.select(np.lexsort((self.rule, self.start, self.series)))

    @property
    def rule_name(self) -> np.ndarray:
        names = np.array([""] + [RULES[c] for c in sorted(RULES)])
        lookup = np.zeros(256, dtype=np.int64)
        lookup[sorted(RULES)] = np.arange(1, len(RULES) + 1)
        return names[lookup[self.rule]]

    @property
    def start_time_ns(self) -> np.ndarray:
        return self.origin_ns + self.start * self.period_ns

    @property
    def end_time_ns(self) -> np.ndarray:
        return self.origin_ns + self.end * self.period_ns


def _findings(rule: str, series, start, end, value, threshold, *, start_ns: int, period_ns: int,
              ref=None, context=None) -> Findings:
    series = np.asarray(series, dtype=np.int64)
    m = series.size

    def col(x, dtype, fill):
        return np.full(m, fill, dtype=dtype) if x is None else np.broadcast_to(np.asarray(x, dtype=dtype), (m,)).copy()

    return Findings(
        rule=np.full(m, _CODE[rule], dtype=np.uint8),
        series=series,
        start=col(start, np.int64, 0),
        end=col(end, np.int64, 0),
        value=col(value, np.float64, np.nan),
        threshold=col(threshold, np.float64, np.nan),
        ref=col(ref, np.int64, -1),
        context=col(context, np.uint8, 0),
        origin_ns=np.full(m, start_ns, dtype=np.int64),
        period_ns=np.full(m, period_ns, dtype=np.int64),
    )


# -- grids ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Grid:
    """Regular ``[n_series, n_periods]`` grid of one period length, starting at ``start_ns``.

    ``flag`` is each period's dominant reading flag (HJ 212 Table 8 code; :data:`NO_DATA` where the
    period holds no reading); ``operating``: the source ran (default: not F and not empty);
    ``calibrating``: the period holds at least one C reading (default: ``flag == C``).
    """

    mean: np.ndarray
    start_ns: int = 0
    period_ns: int = MINUTE_NS
    flag: np.ndarray | None = None
    operating: np.ndarray | None = None
    calibrating: np.ndarray | None = None

    def __post_init__(self) -> None:
        mean = np.atleast_2d(np.asarray(self.mean, dtype=np.float64))
        flag = (np.where(np.isfinite(mean), np.uint8(Flag.N), np.uint8(NO_DATA)) if self.flag is None
                else np.asarray(self.flag, dtype=np.uint8).reshape(mean.shape))
        operating = ((flag != Flag.F) & (flag != NO_DATA) if self.operating is None
                     else np.asarray(self.operating, dtype=bool).reshape(mean.shape))
        calibrating = (flag == Flag.C if self.calibrating is None
                       else np.asarray(self.calibrating, dtype=bool).reshape(mean.shape))
        for name, value in (("mean", mean), ("flag", flag), ("operating", operating), ("calibrating", calibrating)):
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mean.shape

    @classmethod
    def from_table(cls, table: PeriodTable, n_series: int, start_ns: int, n_periods: int) -> Grid:
        """Pivot closed periods (minutes or hours) onto a dense grid; absent cells are NaN / NO_DATA."""
        p = table.period_ns
        idx = (table.start_ns - start_ns) // p
        keep = (idx >= 0) & (idx < n_periods) & (table.series < n_series)
        s, i = table.series[keep], idx[keep]
        mean = np.full((n_series, n_periods), np.nan)
        flag = np.full((n_series, n_periods), NO_DATA, dtype=np.uint8)
        operating = np.zeros((n_series, n_periods), dtype=bool)
        calibrating = np.zeros((n_series, n_periods), dtype=bool)
        sample_flags = table.sample_flags[keep]
        mean[s, i] = table.mean[keep]
        flag[s, i] = np.argmax(sample_flags, axis=1)  # most frequent reading flag; ties to the lower code (N first)
        operating[s, i] = ~table.instrument_stopped[keep]
        calibrating[s, i] = sample_flags[:, Flag.C] > 0
        return cls(mean, start_ns, p, flag, operating, calibrating)


# -- helpers --------------------------------------------------------------------------------------


def _as2d(x, dtype=np.float64) -> np.ndarray:
    return np.atleast_2d(np.asarray(x, dtype=dtype))


def _mask(mask, shape) -> np.ndarray:
    return np.ones(shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), shape)


def _periods(duration_ns: float, period_ns: int) -> int:
    """Whole periods covering a duration (at least 1)."""
    return max(1, int(np.ceil(duration_ns / period_ns - 1e-9)))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, end) of every run of True in each row of a 2-D mask, ``[start, end)``, row-major."""
    n, t = mask.shape
    padded = np.zeros((n, t + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edge = np.diff(padded, axis=1)
    rows, start = np.nonzero(edge == 1)
    _, end = np.nonzero(edge == -1)  # per row the same count, in the same order
    return rows.astype(np.int64), start.astype(np.int64), end.astype(np.int64)


def _run_reduce(ufunc, x: np.ndarray, rows, start, end) -> np.ndarray:
    """``ufunc`` reduced over each run ``x[row, start:end]`` in one ``reduceat``."""
    if rows.size == 0:
        return np.zeros(0, dtype=x.dtype)
    t = x.shape[1]
    flat = np.append(x.ravel(), 0)  # sentinel: a run may end at the last element
    idx = np.empty(2 * rows.size, dtype=np.int64)
    idx[0::2] = rows * t + start
    idx[1::2] = rows * t + end
    return ufunc.reduceat(flat, idx)[0::2]


def _nanmedian(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmedian`` without the all-NaN warning (such rows give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=axis)


def _window_max(x: np.ndarray, w: int) -> np.ndarray:
    """``out[:, j] = x[:, j : j + w].max()`` for every full window, in log2(w) passes (doubling)."""
    r, span = x.copy(), 1
    while 2 * span <= w:
        r[:, :-span] = np.maximum(r[:, :-span], r[:, span:])  # r[:, j] = max of x[:, j : j + 2 span]
        span *= 2
    n_out = x.shape[1] - w + 1
    return np.maximum(r[:, :n_out], r[:, w - span : w - span + n_out])


def _day_cube(x: np.ndarray, periods_per_day: int, fill) -> np.ndarray:
    """[n, t] -> [n, days, periods_per_day], the last day padded with ``fill``."""
    n, t = x.shape
    days = -(-t // periods_per_day)
    cube = np.full((n, days * periods_per_day), fill, dtype=x.dtype)
    cube[:, :t] = x
    return cube.reshape(n, days, periods_per_day)


def _periods_per_day(period_ns: int) -> int:
    if (_DAY_S * 10**9) % period_ns:
        raise ValueError(f"a day is not a whole number of {period_ns} ns periods")
    return _DAY_S * 10**9 // period_ns


# -- 1. flatline ----------------------------------------------------------------------------------


def flatline(values, operating=None, *, policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0,
             period_ns: int = MINUTE_NS) -> Findings:
    """Runs of (near) identical consecutive values while the source operates.

    Catches a frozen analyser or datalogger (hung A/D, a PLC register no longer updated, a
    simulator or constant fed in place of the analyser: the simulator's ``stuck`` fault). Two
    periods repeat when ``|b - a| <= flat_rel_tol x max(|a|, |b|) + flat_abs_tol``; runs of at least
    ``flat_min_minutes`` are reported. ``value``/``threshold``: run length / minimum [min].

    False positives: a coarse analyser resolution on a very steady process (identical minute means
    are still rare: 12+ readings per minute), values pinned at a range end (the analyser should flag
    T), a channel the datalogger fills with a held value during a communication loss (flag B
    expected; the run is still worth an alert).
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


def out_of_range(values, low, high, flag=None, *, start_ns: int = 0, period_ns: int = MINUTE_NS) -> Findings:
    """Runs of periods outside the physical bounds ``[low, high]`` of their series, or flagged T.

    ``low``/``high``: per series, as :func:`.plausibility.series_bounds` gives them. Readings beyond
    the bounds are already flagged T by :func:`.aggregate.readings_to_minutes`, so on the kernels'
    own grids this reports T-flagged periods; on grids from elsewhere (a plant's own minute data,
    HJ 212 2051 packets) it checks the values too. ``value``: the most extreme value of the run (NaN
    when only flags); ``threshold``: the bound crossed (``high`` for T).

    Catches a mis-scaled register, a wrong unit, an analyser beyond its range, a tampered device.
    False positives: bounds that do not fit a process (they are deliberately wide and per site
    configurable in :data:`.plausibility.PLAUSIBLE`).
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


# -- 3. CO2 vs O2 ---------------------------------------------------------------------------------


def implied_co2_pct(o2_pct, co2max_pct, air_o2_pct: float = 20.9):
    """Dry CO2 [vol %] that dry O2 implies for a fuel: ``CO2max x (air - O2) / air``.

    40 CFR 75 App. F O2-based CO2 estimate [U, cems-standards §7.2]. Exact for complete combustion
    diluted by excess air: the dry flue gas is the stoichiometric gas (CO2 share CO2max) plus excess
    air (O2 share ``air``), so both shares scale with the same dilution.
    """
    return np.asarray(co2max_pct, dtype=np.float64) * (air_o2_pct - np.asarray(o2_pct, dtype=np.float64)) / air_o2_pct


def effective_co2max(co2_pct, o2_pct, operating=None, *, policy: IndicatorPolicy = DEFAULT_POLICY) -> np.ndarray:
    """Per source, the median of ``CO2 x air / (air - O2)`` over judged hours [vol %].

    For sources whose CO2 is not only from fuel (cement kilns: calcination; lime; blast-furnace gas),
    calibrate on a period of trusted history and pass the result as the source's CO2max. Computed
    from the data it will judge, it would absorb a falsification that lasts most of the period.
    """
    co2, o2 = _as2d(co2_pct), _as2d(o2_pct)
    air = policy.air_o2_pct
    ok = np.isfinite(co2) & np.isfinite(o2) & _mask(operating, co2.shape) & (o2 >= 0) & (o2 <= policy.co2o2_max_o2_pct)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ok, co2 * air / (air - o2), np.nan)
    return _nanmedian(ratio, axis=1)


def co2_o2_inconsistency(co2_pct, o2_pct, co2max_pct, operating=None, *, policy: IndicatorPolicy = DEFAULT_POLICY,
                         co2_series=None, o2_series=None, start_ns: int = 0, period_ns: int = HOUR_NS) -> Findings:
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

    co2: np.ndarray  # int64 [k], CO2 (a05001) series
    o2: np.ndarray  # int64 [k], O2 (a19001) series, %
    co2max_pct: np.ndarray  # float64 [k]
    co2_to_pct: np.ndarray  # float64 [k], multiplier from the CO2 channel's unit to vol %

    @classmethod
    def from_sources(cls, sources, series_of: Mapping[tuple[str, str], int], co2max: Mapping[str, str | float], *,
                     policy: IndicatorPolicy = DEFAULT_POLICY,
                     ref: ReferenceConditions = REFERENCE_CONDITIONS["hj212"]) -> CO2O2Pairs:
        """``co2max``: source id -> fuel family (a key of ``policy.co2max_pct``) or a value [vol %].
        Sources not named there are skipped. CO2 in mg/m³ or g/m³ is taken as standard dry
        (HJ 212 Eq. 20 [P] for the conversion)."""
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


# -- 4. level shifts ------------------------------------------------------------------------------


def level_shifts(values, operating=None, *, calibrating=None, near_deadline=None,
                 policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0, period_ns: int = HOUR_NS) -> Findings:
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

    def csum(y):
        return np.concatenate([zero, np.cumsum(y, axis=1)], axis=1)

    sums = [csum(y) for y in (v, v * tau, v * tau * tau, x0, x0 * tau, x0 * x0)]
    i = np.arange(k, t - k + 1)  # boundaries: before [i - k, i), after [i, i + k)
    at_boundary = i - 0.5 - t / 2  # tau of the boundary

    def fit(lo, hi):
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


# -- 5. repeated daily profiles -------------------------------------------------------------------


def repeated_profiles(values, periods_per_day: int, operating=None, *, policy: IndicatorPolicy = DEFAULT_POLICY,
                      start_ns: int = 0, period_ns: int = HOUR_NS) -> Findings:
    """Days whose profile equals or nearly equals an earlier day's (the grid starts at a local midnight).

    For every pair of days ``j < i <= j + profile_lookback_days``, over the periods both hold
    (at least ``profile_min_coverage`` of the day): Pearson correlation ``>= profile_min_corr``
    **and** relative RMS difference (over the earlier day's mean ``|value|``) at most
    ``min(profile_max_rel_rms, profile_typical_share x the series' median over day pairs)``. Day
    ``i`` is reported once, against its closest earlier match: ``ref`` = that day's first period,
    ``value`` = relative RMS difference, ``threshold`` = the series' limit. All pairs at once through batched matrix products of the
    masked day profiles (sums, sums of squares and cross products over common periods).

    Catches copy-paste falsification: a day of data replaced by an earlier day (exactly, scaled, or
    with a little noise added). False positives: a process run to an identical schedule with very
    low noise (the RMS condition needs near-identical levels too); constant days (zero variance)
    are left to ``flatline`` and ``low_variance``.
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


# -- 6. low variance ------------------------------------------------------------------------------


def low_variance(values, periods_per_day: int, operating=None, *, typical_cv=None,
                 policy: IndicatorPolicy = DEFAULT_POLICY, start_ns: int = 0, period_ns: int = MINUTE_NS) -> Findings:
    """Days whose coefficient of variation is far below the channel's typical (grid starts at a local midnight).

    ``CV = std / |mean|`` of the day's operating periods (at least ``lowvar_min_coverage`` of the
    day). Reported when ``CV < max(lowvar_rel x typical, lowvar_abs_cv)``; ``typical_cv`` per series
    from trusted history, else the median daily CV of the grid itself. ``value``: the day's CV.

    Catches data smoothed or synthesised to look compliant (a constant with a little noise, values
    typed in, a reading "held" by the datalogger with jitter). False positives: a process that really
    ran steadier that day (a typical CV from a varied period; the relative floor keeps this rare);
    quantities whose mean is near zero (static pressure, gauge values), where CV means little.
    If the median day is itself falsified, the grid's own typical CV hides it: pass ``typical_cv``.
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


# -- 7. calibration and maintenance flags ---------------------------------------------------------


def calibration_maintenance(flag, periods_per_day: int, *, policy: IndicatorPolicy = DEFAULT_POLICY,
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
    """
    f = _as2d(flag, np.uint8)
    cm = (f == Flag.C) | (f == Flag.M)
    rows, s, e = _runs(cm)
    per_min = period_ns / MINUTE_NS
    minutes = (e - s) * per_min
    long = minutes > policy.cm_max_run_minutes
    runs = _findings("cm_run_long", rows[long], s[long], e[long], minutes[long], policy.cm_max_run_minutes,
                     start_ns=start_ns, period_ns=period_ns)
    p = int(periods_per_day)
    share = _day_cube(cm, p, False).sum(axis=2) / p
    r, day = np.nonzero(share > policy.cm_max_day_share)
    days = _findings("cm_day_share", r, day * p, (day + 1) * p, share[r, day], policy.cm_max_day_share,
                     start_ns=start_ns, period_ns=period_ns)
    return Findings.concat([days, runs])


# -- all of them ----------------------------------------------------------------------------------


def _local_seconds(start_ns: int, n: int, period_ns: int, tz: ZoneInfo) -> np.ndarray:
    """Local wall-clock seconds since the epoch of each period start."""
    t_ns = start_ns + np.arange(n, dtype=np.int64) * period_ns
    h0 = start_ns // HOUR_NS * HOUR_NS
    n_hours = int((t_ns[-1] - h0) // HOUR_NS) + 1
    offsets = _utc_offsets_s(h0, n_hours, tz)
    return t_ns // 10**9 + offsets[(t_ns - h0) // HOUR_NS]


def _seconds_to_month_end(local_s: np.ndarray) -> np.ndarray:
    local = local_s.astype("datetime64[s]")
    next_month = (local.astype("datetime64[M]") + 1).astype("datetime64[s]")
    return (next_month - local).astype(np.int64)


def _daily(rule, grid: Grid, tz: ZoneInfo, arrays: dict, **kw) -> Findings:
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


def scan(minutes: Grid | None = None, hours: Grid | None = None, *, tz: ZoneInfo | str,
         policy: IndicatorPolicy = DEFAULT_POLICY, bounds: tuple[np.ndarray, np.ndarray] | None = None,
         pairs: CO2O2Pairs | None = None, typical_cv=None) -> Findings:
    """Every indicator over a minute grid and/or an hour grid of the same series numbering.

    Minute-level rules (flatline, out_of_range, C/M flags, low variance) run on ``minutes`` (else
    ``hours``); hour-level rules (CO2/O2, level shifts, repeated profiles) on ``hours`` (else
    ``minutes``). ``tz``: the entity's time zone, for local days and month ends. ``bounds``: per
    series ``(low, high)`` (:func:`.plausibility.series_bounds`), out_of_range is skipped without.
    ``pairs``: CO2/O2 per source (:class:`CO2O2Pairs`), the CO2/O2 rule is skipped without.
    ``typical_cv``: per series, for :func:`low_variance`. Sorted by series, start, rule.
    """
    fine = minutes if minutes is not None else hours
    coarse = hours if hours is not None else minutes
    if fine is None:
        raise ValueError("scan needs a minute grid, an hour grid or both")
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    f_kw = {"start_ns": fine.start_ns, "period_ns": fine.period_ns}
    c_kw = {"start_ns": coarse.start_ns, "period_ns": coarse.period_ns}
    out = [flatline(fine.mean, fine.operating, policy=policy, **f_kw)]
    if bounds is not None:
        out.append(out_of_range(fine.mean, bounds[0], bounds[1], fine.flag, **f_kw))
    out.append(_daily(calibration_maintenance, fine, tz, {"flag": fine.flag}, policy=policy))
    out.append(_daily(low_variance, fine, tz, {"values": fine.mean, "operating": fine.operating}, policy=policy,
                      typical_cv=typical_cv))
    if pairs is not None and pairs.co2.size:
        out.append(co2_o2_inconsistency(
            coarse.mean[pairs.co2] * pairs.co2_to_pct[:, None], coarse.mean[pairs.o2], pairs.co2max_pct,
            coarse.operating[pairs.co2] & coarse.operating[pairs.o2], policy=policy, co2_series=pairs.co2,
            o2_series=pairs.o2, **c_kw))
    local = _local_seconds(coarse.start_ns, coarse.shape[1], coarse.period_ns, tz)
    near = _seconds_to_month_end(local) <= policy.deadline_window_h * 3600
    out.append(level_shifts(coarse.mean, coarse.operating, calibrating=coarse.calibrating, near_deadline=near,
                            policy=policy, **c_kw))
    out.append(_daily(repeated_profiles, coarse, tz, {"values": coarse.mean, "operating": coarse.operating},
                      policy=policy))
    return Findings.concat(out).sorted()
