"""QA evaluation of the monitors as pure, vectorised kernels: drift, relative accuracy, bias and bias
adjustment factor, HJ 75 relative error, linearity error, velocity-field coefficient Kv.

Every function takes numpy arrays holding many checks, tests or runs at once and returns arrays; nothing
here reads files or loops per check. Limits are not constants of the formulas: they belong to a named
:class:`QaPolicy` (``cn-hj75`` default, ``eu-en14181``, ``us-part75``), each limit labelled with its
source id in ``docs/sources.md`` and how sure it is ([P] primary text read, [S] secondary, [U]
unconfirmed). Formulas, units and the limits per regime: ``docs/qa.md``.

Sign convention: a comparison difference is d_i = reference_i - CEMS_i (Part 75 App. A Eq. A-7, and the
sign of the mean differences in EPA's published RATA records, ``P75-RATA-DATA``). A positive mean
difference means the CEMS reads low. A drift error is measured - reference (positive: reads high).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "POLICIES",
    "T_TABLE",
    "Comparison",
    "Limit",
    "Linearity",
    "PairedStatistics",
    "QaPolicy",
    "QuantityRules",
    "Traverse",
    "Verdict",
    "bias_adjustment_factor",
    "biased_low",
    "confidence_coefficient",
    "drift_error",
    "evaluate_comparison",
    "evaluate_drift",
    "evaluate_linearity",
    "get_policy",
    "judge",
    "level_means",
    "linearity_error",
    "paired_statistics",
    "relative_accuracy",
    "relative_error",
    "t_value",
    "traverse_kv",
    "velocity_field_coefficient",
]

#: Student t for the confidence coefficient, by degrees of freedom n - 1 = 1..29: the 0.025 one-tailed
#: value (the same as the two-sided 95 % value HJ 75 uses). Part 75 App. A Table 7-1 ``P75-A-T7-1`` [S]
#: (its values for 8, 9 and 10 degrees of freedom appear in EPA's published RATA records); the same
#: three-decimal figures as the 97.5 % column of 10 CFR 429 Subpart B App. A for 1-20 [P], ``T-TABLE``.
T_TABLE = MappingProxyType({
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
    20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
    29: 2.045,
})
_T = np.full(max(T_TABLE) + 1, np.nan)
_T[list(T_TABLE)] = list(T_TABLE.values())
_T.setflags(write=False)

#: Relative guard on limit comparisons: a figure exactly at its limit passes even when binary floating
#: point lands it a few ulps above (100 * 0.3 / 12 = 2.5000000000000004). Far below any reported digit.
_GUARD = 1e-12


def _a(x: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(x, dtype=float)


# --- policies -----------------------------------------------------------------------------------

Basis = Literal["absolute", "percent_full_scale", "percent_reference"]


@dataclass(frozen=True)
class Limit:
    """One acceptance criterion, as a regime writes it. Criteria given together as alternatives pass when
    any applicable one passes ("RA <= 10 % or |mean difference| <= 1.0 % CO2").

    ``basis``: ``absolute`` compares the magnitude of a difference in ``unit``; ``percent_full_scale``
    compares 100 x |difference| / full scale; ``percent_reference`` compares the relative figure itself
    (relative accuracy, relative error, linearity error) in %. ``above`` / ``at_most`` restrict the
    criterion to tests whose mean reference value is above / at most that value (in ``band_unit``), as
    HJ 75 does for velocity and moisture.
    """

    value: float
    basis: Basis
    unit: str | None = None
    above: float | None = None
    at_most: float | None = None
    band_unit: str | None = None
    source: str = ""
    confidence: Literal["P", "S", "U"] = "U"


@dataclass(frozen=True)
class QuantityRules:
    """The criteria of one regime for one quantity. An empty tuple: the regime sets no such limit."""

    zero_drift: tuple[Limit, ...] = ()
    span_drift: tuple[Limit, ...] = ()
    relative_accuracy: tuple[Limit, ...] = ()
    relative_error: tuple[Limit, ...] = ()
    linearity: tuple[Limit, ...] = ()
    bias_test: bool = False  # the regime applies a bias test and adjustment factor to this quantity


@dataclass(frozen=True)
class QaPolicy:
    """A named QA regime: criteria per quantity (HJ 212 code), the runs a comparison test needs, and the
    cap on the bias adjustment factor of a test that passed only by an alternative criterion."""

    name: str
    quantities: Mapping[str, QuantityRules]
    min_runs: int
    min_runs_source: str = ""
    baf_cap_alternative: float | None = None
    source: str = field(default="", compare=False)

    def rules(self, quantity: str) -> QuantityRules:
        return self.quantities.get(quantity, QuantityRules())


def _L(value: float, basis: Basis, source: str, confidence: Literal["P", "S", "U"], unit: str | None = None, *,
       above: float | None = None, at_most: float | None = None, band_unit: str | None = None) -> Limit:
    return Limit(float(value), basis, unit, above=above, at_most=at_most, band_unit=band_unit, source=source,
                 confidence=confidence)


def _cn_hj75() -> QaPolicy:
    fs = _L(2.5, "percent_full_scale", "HJ75-DRIFT", "U")
    o2 = QuantityRules(zero_drift=(fs,), span_drift=(fs,),
                       relative_accuracy=(_L(15.0, "percent_reference", "HJ75-RA-O2", "S"),),
                       linearity=(_L(5.0, "percent_reference", "HJ75-LIN", "U"),))
    # No national CO2-CEMS specification was found: the O2 rules are applied by analogy (CN-CO2-QA).
    co2 = QuantityRules(zero_drift=(_L(2.5, "percent_full_scale", "CN-CO2-QA", "U"),),
                        span_drift=(_L(2.5, "percent_full_scale", "CN-CO2-QA", "U"),),
                        relative_accuracy=(_L(15.0, "percent_reference", "CN-CO2-QA", "U"),),
                        linearity=(_L(5.0, "percent_reference", "CN-CO2-QA", "U"),))
    velocity = QuantityRules(relative_error=(
        _L(10.0, "percent_reference", "HJ75-VEL", "U", above=10.0, band_unit="m/s"),
        _L(12.0, "percent_reference", "HJ75-VEL", "U", at_most=10.0, band_unit="m/s"),
    ))
    moisture = QuantityRules(relative_error=(
        _L(25.0, "percent_reference", "HJ75-H2O", "U", above=5.0, band_unit="%"),
        _L(1.5, "absolute", "HJ75-H2O", "U", unit="%", at_most=5.0, band_unit="%"),
    ))
    return QaPolicy("cn-hj75", MappingProxyType({"a19001": o2, "a05001": co2, "a01011": velocity, "a01014": moisture}),
                    min_runs=6, min_runs_source="HJ75-N",
                    source="HJ 75-2017 / HJ 76-2017 (limits unconfirmed against the primary text, see docs/qa.md)")


def _us_part75() -> QaPolicy:
    daily = _L(1.0, "absolute", "P75-B-2.1.4", "U", unit="%")  # out of control above twice the 0.5 % spec
    gas_ra = (_L(10.0, "percent_reference", "P75-A-3.3", "S"), _L(1.0, "absolute", "P75-A-3.3", "S", unit="%"))
    gas_lin = (_L(5.0, "percent_reference", "P75-A-3.2", "U"), _L(0.5, "absolute", "P75-A-3.2", "U", unit="%"))
    gas = QuantityRules(zero_drift=(daily,), span_drift=(daily,), relative_accuracy=gas_ra, linearity=gas_lin)
    flow_daily = _L(6.0, "percent_full_scale", "P75-B-2.1.4", "U")
    flow = QuantityRules(zero_drift=(flow_daily,), span_drift=(flow_daily,),
                         relative_accuracy=(_L(10.0, "percent_reference", "P75-A-3.3", "U"),), bias_test=True)
    velocity = QuantityRules(zero_drift=(flow_daily,), span_drift=(flow_daily,), bias_test=True, relative_accuracy=(
        _L(10.0, "percent_reference", "P75-A-3.3", "U"),
        # Low-flow alternative: |mean difference| <= 2.0 ft/s where the mean velocity is <= 10.0 ft/s.
        _L(0.6096, "absolute", "P75-A-3.3", "U", unit="m/s", at_most=3.048, band_unit="m/s"),
    ))
    moisture = QuantityRules(relative_accuracy=(_L(10.0, "percent_reference", "P75-A-3.3", "S"),
                                                _L(1.5, "absolute", "P75-A-3.3", "S", unit="%")))
    return QaPolicy("us-part75", MappingProxyType({"a05001": gas, "a19001": gas, "a00000": flow, "a01011": velocity,
                                                    "a01014": moisture}),
                    min_runs=9, min_runs_source="P75-A-6.5", baf_cap_alternative=1.111,
                    source="40 CFR Part 75 Appendices A and B (see docs/qa.md for what was confirmed)")


def _eu_en14181() -> QaPolicy:
    # EN 14181 judges an AMS by its QAL2 calibration function and variability test, QAL3 control charts and
    # the AST, not by fixed drift or relative-accuracy limits (EN14181, EN14181-QAL3). None is invented here.
    return QaPolicy("eu-en14181", MappingProxyType({}), min_runs=15, min_runs_source="EN14181",
                    source="EN 14181 (no fixed limits; its variability test is not implemented, see docs/qa.md)")


POLICIES: Mapping[str, QaPolicy] = MappingProxyType({p.name: p for p in (_cn_hj75(), _eu_en14181(), _us_part75())})


def get_policy(name: str = "cn-hj75") -> QaPolicy:
    """The named QA policy; ``cn-hj75`` unless told otherwise.

    Parameters
    ----------
    name : str
        ``cn-hj75``, ``us-part75`` or ``eu-en14181``.

    Returns
    -------
    QaPolicy
        The regime's criteria per quantity.

    References
    ----------
    docs/sources.md: each criterion's own id (:class:`Limit`); HJ75-* [S/U], P75-A-* [S/U], EN14181-QAL3 [S].
    """
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown QA policy {name!r}; known: {', '.join(POLICIES)}") from None


# --- judging a figure against its limits ---------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """``judged``: some criterion applied (False where the regime sets none, or none of its bands
    covers the test). ``passed``: judged and some applicable criterion met. ``by_first``: the first
    (principal) criterion was met; ``passed & ~by_first`` passed only by an alternative."""

    judged: np.ndarray
    passed: np.ndarray
    by_first: np.ndarray


def _at_most(measure: np.ndarray, limit: float) -> np.ndarray:
    return measure <= limit * (1 + _GUARD)


def judge(limits: tuple[Limit, ...], *, difference: ArrayLike, unit: str, relative_percent: ArrayLike | None = None,
          full_scale: ArrayLike | None = None, reference: ArrayLike | None = None) -> Verdict:
    """Judge figures against alternative criteria, vectorised.

    Parameters
    ----------
    limits : tuple of Limit
        The alternatives, principal first.
    difference : array_like
        The difference each criterion of basis ``absolute`` or ``percent_full_scale`` compares (a drift
        error, a mean difference, |R - A|), in ``unit``. Its sign is ignored.
    unit : str
        Unit of ``difference``, ``full_scale`` and ``reference``. An ``absolute`` criterion in another
        unit is refused: converting % CO2 to mg/m3 needs a molar volume the records do not carry.
    relative_percent : array_like, optional
        The relative figure a ``percent_reference`` criterion compares [%]; its sign is ignored.
    full_scale : array_like, optional
        Range upper limit (span) in ``unit``, for ``percent_full_scale`` criteria; NaN where unknown.
    reference : array_like, optional
        Mean reference value in ``unit``, for criteria restricted to a band.

    Returns
    -------
    Verdict
        Boolean arrays shaped like ``difference``.

    Raises
    ------
    ValueError
        A criterion needs a figure that was not given (full scale, relative figure, reference), or its
        unit differs from ``unit``.

    References
    ----------
    docs/sources.md: the source id on each :class:`Limit`.
    """
    diff = np.abs(_a(difference))
    judged = np.zeros(diff.shape, dtype=bool)
    passed = np.zeros(diff.shape, dtype=bool)
    by_first = np.zeros(diff.shape, dtype=bool)
    for i, lim in enumerate(limits):  # loop over configuration (at most a few alternatives)
        applies = _applies(lim, diff.shape, unit, reference)
        measure = _measure(lim, diff, applies, unit, relative_percent, full_scale)
        ok = applies & _at_most(measure, lim.value)
        judged |= applies
        passed |= ok
        if i == 0:
            by_first = ok
    return Verdict(judged, passed & judged, by_first)


def _applies(lim: Limit, shape: tuple[int, ...], unit: str, reference: ArrayLike | None) -> NDArray[np.bool_]:
    """Where a criterion applies: everywhere, or where the mean reference value is in its band."""
    applies = np.ones(shape, dtype=bool)
    if lim.above is None and lim.at_most is None:
        return applies
    if reference is None:
        raise ValueError(f"criterion {lim.source} applies by reference band; the reference values are needed")
    if lim.band_unit != unit:
        raise ValueError(f"criterion {lim.source} has its band in {lim.band_unit}, the values are in {unit}")
    ref = _a(reference)
    if lim.above is not None:
        applies &= ref > lim.above
    if lim.at_most is not None:
        applies &= ref <= lim.at_most
    return applies


def _measure(lim: Limit, diff: NDArray[np.float64], applies: NDArray[np.bool_], unit: str,
             relative_percent: ArrayLike | None, full_scale: ArrayLike | None) -> NDArray[np.float64]:
    """The figure a criterion compares with its value, by its basis (see :class:`Limit`)."""
    if lim.basis == "absolute":
        if lim.unit != unit:
            raise ValueError(f"criterion {lim.source} is {lim.value} {lim.unit}; the values are in {unit}")
        return diff
    if lim.basis == "percent_full_scale":
        fs = np.broadcast_to(_a(np.nan if full_scale is None else full_scale), diff.shape)
        missing = applies & ~(fs > 0)
        if missing.any():
            raise ValueError(f"criterion {lim.source} is {lim.value} % of full scale; full scale is missing "
                             f"for {int(missing.sum())} of {diff.size} checks")
        with np.errstate(divide="ignore", invalid="ignore"):
            return 100.0 * diff / fs
    if relative_percent is None:
        raise ValueError(f"criterion {lim.source} compares a relative figure; none was given")
    return np.abs(_a(relative_percent))


# --- drift ---------------------------------------------------------------------------------------


def drift_error(reference: ArrayLike, measured: ArrayLike) -> NDArray[np.float64]:
    """Drift (calibration error) of zero or span checks: measured - reference.

    Parameters
    ----------
    reference, measured : array_like
        Reference value of the zero or span standard, and the analyser's reading of it [record unit].

    Returns
    -------
    ndarray
        Error in the record unit; positive when the analyser reads high.

    References
    ----------
    docs/sources.md: HJ75-DRIFT (24-h zero and span drift), P75-A-3.1 (calibration error |R - A|).
    """
    return _a(measured) - _a(reference)


def evaluate_drift(policy: QaPolicy, quantity: str, check: Literal["zero", "span"], reference: ArrayLike,
                   measured: ArrayLike, *, unit: str,
                   full_scale: ArrayLike | None = None) -> tuple[NDArray[np.float64], Verdict]:
    """Drift errors of many checks of one quantity and kind, and the policy's verdict on them.

    Parameters
    ----------
    policy : QaPolicy
    quantity : str
        HJ 212 code of the analysers (a05001, a19001, ...).
    check : {"zero", "span"}
    reference, measured : array_like
        Reference values and readings [``unit``].
    unit : str
        Unit of the values (the records' ``unit``).
    full_scale : array_like, optional
        Range upper limit [``unit``], NaN where unknown; needed by % of full scale limits.

    Returns
    -------
    error : ndarray
        measured - reference [``unit``].
    verdict : Verdict

    References
    ----------
    docs/sources.md: HJ75-DRIFT, P75-B-2.1.4, EN14181-QAL3, and the limits' own ids.
    """
    rules = policy.rules(quantity)
    error = drift_error(reference, measured)
    limits = rules.zero_drift if check == "zero" else rules.span_drift
    return error, judge(limits, difference=error, unit=unit, full_scale=full_scale)


# --- comparison tests: relative accuracy, bias, relative error -----------------------------------


@dataclass(frozen=True)
class PairedStatistics:
    """Summary statistics of comparison tests, one element per test.

    ``n`` used runs; ``mean_difference`` d-bar and ``sd_difference`` s_d of d = reference - CEMS;
    ``mean_reference`` and ``mean_cems``; all values in the tests' unit.
    """

    n: np.ndarray
    mean_difference: np.ndarray
    sd_difference: np.ndarray
    mean_reference: np.ndarray
    mean_cems: np.ndarray


def paired_statistics(reference: ArrayLike, cems: ArrayLike, used: ArrayLike | None = None) -> PairedStatistics:
    """Statistics of many comparison tests at once from their paired runs.

    Parameters
    ----------
    reference, cems : array_like, shape (tests, runs)
        Reference-method and CEMS values per run [test unit]; pad shorter tests with anything and mark
        the padding unused.
    used : array_like of bool, shape (tests, runs), optional
        Runs that enter the statistics (all by default).

    Returns
    -------
    PairedStatistics
        d-bar = sum(d_i)/n (Eq. A-7), s_d = sqrt(sum((d_i - d-bar)^2)/(n - 1)) (Eq. A-8), means of both.

    Raises
    ------
    ValueError
        A test has fewer than two used runs.

    References
    ----------
    docs/sources.md: P75-A-7.3, HJ75-RA.
    """
    ref, cem = np.atleast_2d(_a(reference)), np.atleast_2d(_a(cems))
    if ref.shape != cem.shape:
        raise ValueError(f"reference {ref.shape} and CEMS {cem.shape} values differ in shape")
    mask = np.ones(ref.shape, dtype=bool) if used is None else np.broadcast_to(np.asarray(used, dtype=bool), ref.shape)
    n = mask.sum(axis=1)
    if (n < 2).any():
        raise ValueError(f"tests {np.flatnonzero(n < 2).tolist()} have fewer than two used runs")
    d = np.where(mask, ref - cem, 0.0)
    mean_d = d.sum(axis=1) / n
    sd = np.sqrt(np.where(mask, (d - mean_d[:, None]) ** 2, 0.0).sum(axis=1) / (n - 1))
    return PairedStatistics(n, mean_d, sd, np.where(mask, ref, 0.0).sum(axis=1) / n,
                            np.where(mask, cem, 0.0).sum(axis=1) / n)


def t_value(n: ArrayLike) -> NDArray[np.float64]:
    """t(0.025 one-tailed, n - 1 degrees of freedom) from :data:`T_TABLE`, for run counts n = 2..30.

    Parameters
    ----------
    n : array_like of int
        Runs of each test [1].

    Returns
    -------
    ndarray of float
        The t-value of each [1].

    Raises
    ------
    ValueError
        A run count outside the table: no value is extrapolated.

    References
    ----------
    docs/sources.md: P75-A-T7-1, T-TABLE.
    """
    df = np.asarray(n) - 1
    bad = (df < 1) | (df >= len(_T))
    if np.any(bad):
        raise ValueError(f"no t-value for {sorted(set((np.asarray(df)[bad] + 1).ravel().tolist()))} runs; "
                         f"the table covers 2 to {len(_T)} runs")
    return np.asarray(_T[df], dtype=np.float64)


def confidence_coefficient(n: ArrayLike, sd_difference: ArrayLike) -> NDArray[np.float64]:
    """Confidence coefficient cc = t(0.025, n - 1) x s_d / sqrt(n) (Part 75 App. A Eq. A-9).

    Parameters
    ----------
    n : array_like of int
        Used runs per test.
    sd_difference : array_like
        Standard deviation of the differences [test unit].

    Returns
    -------
    ndarray
        cc [test unit].

    References
    ----------
    docs/sources.md: P75-A-7.3, P75-A-T7-1, HJ75-RA.
    """
    n = np.asarray(n)
    return t_value(n) * _a(sd_difference) / np.sqrt(_a(n))


def relative_accuracy(mean_difference: ArrayLike, cc: ArrayLike, mean_reference: ArrayLike) -> NDArray[np.float64]:
    """Relative accuracy RA = (|d-bar| + |cc|) / RM-bar x 100 (Part 75 App. A Eq. A-10; HJ 75 the same).

    Parameters
    ----------
    mean_difference, cc, mean_reference : array_like
        d-bar, confidence coefficient and mean reference value [test unit].

    Returns
    -------
    ndarray
        RA [%]; NaN where the mean reference value is not positive (RA is undefined there).

    References
    ----------
    docs/sources.md: P75-A-7.3, HJ75-RA.
    """
    rm = _a(mean_reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rm > 0, (np.abs(_a(mean_difference)) + np.abs(_a(cc))) / rm * 100.0, np.nan)


def biased_low(mean_difference: ArrayLike, cc: ArrayLike) -> NDArray[np.bool_]:
    """Bias test: the CEMS is biased low where d-bar > |cc| (d = reference - CEMS). A mean difference at
    most |cc| passes; a negative one (CEMS reading high) is never adjusted.

    Parameters
    ----------
    mean_difference : array_like of float
        d-bar of each test, reference - CEMS [the test's unit].
    cc : array_like of float
        Confidence coefficient of each test [the test's unit].

    Returns
    -------
    ndarray of bool
        True where the CEMS is biased low.

    References
    ----------
    docs/sources.md: P75-A-7.6 (checked on EPA's published RATA records, P75-RATA-DATA).
    """
    return np.greater(_a(mean_difference), np.abs(_a(cc)))


def bias_adjustment_factor(mean_difference: ArrayLike, cc: ArrayLike, mean_cems: ArrayLike, *, cap: float | None = None,
                           capped: ArrayLike = False) -> NDArray[np.float64]:
    """Bias adjustment factor BAF = 1 + |d-bar| / CEM-bar where the bias test fails, else 1.

    Parameters
    ----------
    mean_difference, cc, mean_cems : array_like
        d-bar, confidence coefficient and mean CEMS value [test unit].
    cap : float, optional
        Largest factor for the tests marked ``capped`` (Part 75: 1.111 for a test that met its relative
        accuracy only by the alternative criterion).
    capped : array_like of bool
        Tests the cap applies to.

    Returns
    -------
    ndarray
        BAF [-], >= 1. Data are multiplied by it until the next test.

    References
    ----------
    docs/sources.md: P75-A-7.6, P75-RATA-DATA.
    """
    d, cem = _a(mean_difference), _a(mean_cems)
    with np.errstate(divide="ignore", invalid="ignore"):
        baf = np.where(biased_low(d, cc), 1.0 + np.abs(d) / cem, 1.0)
    if cap is not None:
        baf = np.where(np.asarray(capped, dtype=bool), np.minimum(baf, cap), baf)
    return baf


def relative_error(mean_reference: ArrayLike, mean_cems: ArrayLike) -> NDArray[np.float64]:
    """Relative error of a comparison test, HJ 75: RE = (CEMS-bar - reference-bar) / reference-bar x 100.

    Parameters
    ----------
    mean_reference : array_like of float
        Mean of the reference method [the test's unit].
    mean_cems : array_like of float
        Mean of the CEMS over the same runs [the test's unit].

    Returns
    -------
    ndarray
        RE [%], signed (positive: the CEMS reads high); NaN where the mean reference is not positive.

    References
    ----------
    docs/sources.md: HJ75-RE.
    """
    ref = _a(mean_reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref > 0, (_a(mean_cems) - ref) / ref * 100.0, np.nan)


@dataclass(frozen=True)
class Comparison:
    """A policy's evaluation of comparison tests, one element per test.

    ``cc`` and ``mean_difference`` in the test unit; ``relative_accuracy`` and ``relative_error`` in %;
    ``enough_runs``: at least the policy's minimum used runs; ``accuracy`` / ``error``: verdicts on the
    relative accuracy and relative-error criteria (``judged`` False where the regime sets none);
    ``biased_low`` and ``baf`` (1 where the regime applies no bias test).
    """

    mean_difference: np.ndarray
    cc: np.ndarray
    relative_accuracy: np.ndarray
    relative_error: np.ndarray
    enough_runs: np.ndarray
    accuracy: Verdict
    error: Verdict
    biased_low: np.ndarray
    baf: np.ndarray


def evaluate_comparison(policy: QaPolicy, quantity: str, stats: PairedStatistics, *, unit: str) -> Comparison:
    """Relative accuracy, relative error, bias test and BAF of comparison tests of one quantity.

    Takes summary statistics, so it serves published results (n, d-bar, s_d, means) as well as
    :func:`paired_statistics` of the runs.

    Parameters
    ----------
    policy : QaPolicy
    quantity : str
        HJ 212 code of the analysers.
    stats : PairedStatistics
        Per-test statistics [``unit``].
    unit : str
        Unit of the statistics.

    Returns
    -------
    Comparison

    References
    ----------
    docs/sources.md: P75-A-3.3, P75-A-7.3, P75-A-7.6, HJ75-RA, HJ75-RE and the limits' own ids.
    """
    rules = policy.rules(quantity)
    cc = confidence_coefficient(stats.n, stats.sd_difference)
    ra = relative_accuracy(stats.mean_difference, cc, stats.mean_reference)
    re = relative_error(stats.mean_reference, stats.mean_cems)
    accuracy = judge(rules.relative_accuracy, difference=stats.mean_difference, unit=unit, relative_percent=ra,
                     reference=stats.mean_reference)
    error = judge(rules.relative_error, difference=_a(stats.mean_cems) - _a(stats.mean_reference), unit=unit,
                  relative_percent=re, reference=stats.mean_reference)
    if rules.bias_test:
        low = biased_low(stats.mean_difference, cc)
        baf = bias_adjustment_factor(stats.mean_difference, cc, stats.mean_cems, cap=policy.baf_cap_alternative,
                                     capped=accuracy.passed & ~accuracy.by_first)
    else:
        low = np.zeros(np.shape(cc), dtype=bool)
        baf = np.ones(np.shape(cc))
    return Comparison(_a(stats.mean_difference), cc, ra, re, np.asarray(stats.n) >= policy.min_runs, accuracy,
                      error, low, baf)


# --- linearity -----------------------------------------------------------------------------------


def level_means(group: ArrayLike, reference: ArrayLike, measured: ArrayLike,
                n_groups: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean reference value and mean response per gas level, for many checks at once.

    Parameters
    ----------
    group : array_like of int
        Index of (check, level) of each injection, 0 .. n_groups - 1.
    reference, measured : array_like
        Reference value and response of each injection [check unit].
    n_groups : int
        Number of (check, level) groups [1].

    Returns
    -------
    reference_mean, measured_mean : ndarray, shape (n_groups,)
        Means [check unit]; NaN for a group without injections.

    References
    ----------
    docs/sources.md: P75-A-3.2 [U] (a level's error is that of its mean response), HJ75-LIN [U].
    """
    g = np.asarray(group, dtype=np.intp)
    count = np.bincount(g, minlength=n_groups).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.bincount(g, _a(reference), n_groups) / count, np.bincount(g, _a(measured), n_groups) / count)


def linearity_error(reference_mean: ArrayLike, measured_mean: ArrayLike) -> NDArray[np.float64]:
    """Linearity error LE = |R - A| / R x 100 at one gas level (Part 75 App. A Eq. A-4).

    Parameters
    ----------
    reference_mean : array_like
        Reference gas value R (mean over the injections) [check unit], > 0.
    measured_mean : array_like
        Mean response A over the injections [check unit].

    Returns
    -------
    ndarray
        LE [%].

    References
    ----------
    docs/sources.md: P75-A-3.2, HJ75-LIN.
    """
    r = _a(reference_mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, np.abs(r - _a(measured_mean)) / r * 100.0, np.nan)


@dataclass(frozen=True)
class Linearity:
    """Linearity error per gas level [%] and the policy's verdict on it."""

    error_percent: np.ndarray
    verdict: Verdict


def evaluate_linearity(policy: QaPolicy, quantity: str, reference_mean: ArrayLike, measured_mean: ArrayLike, *,
                       unit: str) -> Linearity:
    """Linearity errors of many gas levels of one quantity and the policy's verdict (a check passes when
    each of its levels does).

    Parameters
    ----------
    policy : QaPolicy
        The regime whose linearity criteria judge the levels.
    quantity : str
        HJ 212 code of the analyser's quantity.
    reference_mean, measured_mean : array_like of float
        Mean reference value and mean response of each level [``unit``].
    unit : str
        Unit of the values, for absolute criteria.

    Returns
    -------
    Linearity
        The errors [%] and the verdict per level.

    References
    ----------
    docs/sources.md: P75-A-3.2, HJ75-LIN.
    """
    le = linearity_error(reference_mean, measured_mean)
    verdict = judge(policy.rules(quantity).linearity, difference=_a(measured_mean) - _a(reference_mean), unit=unit,
                    relative_percent=le)
    return Linearity(le, verdict)


# --- velocity-field coefficient ------------------------------------------------------------------


def velocity_field_coefficient(reference_mean_velocity: ArrayLike, cems_velocity: ArrayLike) -> NDArray[np.float64]:
    """Kv = mean reference velocity over the cross-section / CEMS point velocity Vp, so that Vs = Kv x Vp
    (HJ 212-2017 App. D Eq. (29)).

    Parameters
    ----------
    reference_mean_velocity : array_like
        Mean of the traverse-point reference velocities of a run [m/s].
    cems_velocity : array_like
        CEMS point (or path) velocity over the same run [m/s], > 0.

    Returns
    -------
    ndarray
        Kv [-].

    References
    ----------
    docs/sources.md: HJ212-D29, HJ75-KV.
    """
    return _a(reference_mean_velocity) / _a(cems_velocity)


@dataclass(frozen=True)
class Traverse:
    """Per run: mean reference velocity [m/s] and Kv. Per test: Kv (mean of its runs' Kv) and the
    relative standard deviation of the runs' Kv [%] (NaN for a single run)."""

    run_reference_mean_m_s: np.ndarray
    run_kv: np.ndarray
    kv: np.ndarray
    kv_rsd_percent: np.ndarray


def traverse_kv(run_of_point: ArrayLike, reference_velocity_m_s: ArrayLike, cems_velocity_m_s: ArrayLike,
                test_of_run: ArrayLike, n_tests: int) -> Traverse:
    """Kv of many traverse tests at once.

    Parameters
    ----------
    run_of_point : array_like of int
        Run index (0 .. runs - 1) of each traverse point.
    reference_velocity_m_s : array_like
        Reference velocity at each point [m/s].
    cems_velocity_m_s : array_like, shape (runs,)
        CEMS point velocity of each run [m/s].
    test_of_run : array_like of int, shape (runs,)
        Test index (0 .. n_tests - 1) of each run.
    n_tests : int

    Returns
    -------
    Traverse

    References
    ----------
    docs/sources.md: HJ212-D29, HJ75-KV.
    """
    cems = _a(cems_velocity_m_s)
    runs = len(cems)
    p = np.asarray(run_of_point, dtype=np.intp)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_mean = np.bincount(p, _a(reference_velocity_m_s), runs) / np.bincount(p, minlength=runs)
        run_kv = velocity_field_coefficient(ref_mean, cems)
        t = np.asarray(test_of_run, dtype=np.intp)
        k = np.bincount(t, minlength=n_tests).astype(float)
        kv = np.bincount(t, run_kv, n_tests) / k
        var = np.bincount(t, (run_kv - kv[t]) ** 2, n_tests) / (k - 1)
        rsd = np.where(k > 1, np.sqrt(var) / kv * 100.0, np.nan)
    return Traverse(ref_mean, run_kv, kv, rsd)
