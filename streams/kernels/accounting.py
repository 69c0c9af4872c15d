"""Calculation-based (accounting) emissions of many entity-months at once, from self-reported parameters.

The reconciliation compares these with the CEMS monthly CO2. Formulas (ids are docs/sources.md entries):

* fuel combustion, every sector (``CN-COMB`` [S]): ``FC x NCV x CC x OF x 44/12``, or with element carbon
  ``FC x C_element x OF x 44/12``;
* cement process CO2 (``CN-CEM-PROC`` [S], GB/T 32151.8 form):
  ``(Q_clinker + Q_kiln_dust + Q_bypass_dust) x [(CaO - CaO_nc) x 44/56 + (MgO - MgO_nc) x 44/40]``, plus raw-meal
  organic carbon ``raw_meal x TOC x 44/12`` (``CN-CEM-TOC`` [U]: one plant's code);
* steel carbon balance (``CN-STEEL-CB`` [S]): ``(sum inputs x C - sum outputs x C) x 44/12``;
* aluminium anode CO2 (``CN-AL-ANODE`` [U]: form inferred from 40 CFR 98.63's variables):
  ``NAC x MP x (1 - S - Ash) x 44/12``, with S and Ash as fractions; limestone calcination
  ``Q_limestone x EF`` (``CN-AL-LIME`` [S]);
* aluminium PFC, slope method (``CN-AL-PFC`` [S]): ``CF4 = S_CF4 x AEM x MP x 0.001`` t, or overvoltage method
  (``MRR-AIV-8B`` [P]): ``CF4 = OVC x (AEO/CE) x MP x 0.001`` t with CE in %; ``C2F6 = CF4 x F_C2F6/CF4``; to CO2e
  with a versioned GWP set (:mod:`.gwp`).

Inputs are flat arrays: per-report parameters of shape ``(n,)`` (zero where a sector does not apply),
and fuel and carbon-balance rows with the index of their report, summed by ``np.bincount``. Each input
may carry a basis code per element (0 measured, 1 confirmed default, 2 unconfirmed default) and a relative
uncertainty; :func:`co2_variance_t2` propagates the uncertainties to the CO2, each input weighted by the
CO2 it carries, which is what the reconciliation tolerates (docs/reconciliation.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.accounting import MATERIALS

if TYPE_CHECKING:
    from schemas.accounting import AccountingReport, AluminiumData, CementData, Param

from .gwp import DEFAULT_GWP_SET, co2e

Floats = NDArray[np.float64]

__all__ = [
    "CO2_INPUTS",
    "COMPONENT_INPUTS",
    "DEFAULT",
    "INPUTS",
    "MEASURED",
    "PARAMETER_OF",
    "UNCONFIRMED",
    "AccountingEmissions",
    "AccountingInputs",
    "accounting_emissions",
    "anode_co2_t",
    "clinker_process_co2_t",
    "co2_variance_t2",
    "fuel_co2_t",
    "inputs_from_reports",
    "limestone_co2_t",
    "pfc_overvoltage_t",
    "pfc_slope_t",
]

#: Basis codes: measured, default with confirmed source, default with unconfirmed source (or unknown).
MEASURED, DEFAULT, UNCONFIRMED = 0, 1, 2

C_TO_CO2 = 44.0 / 12.0  # CONST-MOLAR [S]
CAO_TO_CO2 = 44.0 / 56.0  # CONST-MOLAR [S]
MGO_TO_CO2 = 44.0 / 40.0  # CONST-MOLAR [S]

_FUEL = ("fuel_consumption", "fuel_ncv", "fuel_carbon_per_heat", "fuel_carbon_element", "fuel_oxidation")
_MATERIAL = ("material_quantity", "material_carbon")
_CEMENT = ("clinker_t", "clinker_cao", "clinker_mgo", "noncarbonate_cao", "noncarbonate_mgo", "raw_meal_t",
           "raw_meal_toc", "kiln_dust_t", "bypass_dust_t")
_ALUMINIUM = ("aluminium_t", "anode_consumption", "anode_sulphur", "anode_ash", "limestone_t", "limestone_factor",
              "anode_effect_minutes", "slope_cf4", "overvoltage_coefficient", "anode_effect_overvoltage",
              "current_efficiency", "c2f6_cf4_ratio")
_PFC = ("aluminium_t", "anode_effect_minutes", "slope_cf4", "overvoltage_coefficient", "anode_effect_overvoltage",
        "current_efficiency", "c2f6_cf4_ratio")
#: Every input that can be a default, in the column order of :attr:`AccountingEmissions.basis`.
INPUTS = _FUEL + _MATERIAL + _CEMENT + _ALUMINIUM
#: Which inputs each component depends on (to widen only what a default touches).
COMPONENT_INPUTS = MappingProxyType(
    {
        "combustion": _FUEL,
        "process": (*_CEMENT, "limestone_t", "limestone_factor"),
        "carbon_balance": _MATERIAL,
        "anode": _ALUMINIUM[:4],
        "cf4": _PFC[:-1],
        "c2f6": _PFC,
    }
)
#: The inputs of the CO2 a CEMS sees (every component but the PFCs).
CO2_INPUTS = tuple(dict.fromkeys(n for c in ("combustion", "process", "carbon_balance", "anode")
                                 for n in COMPONENT_INPUTS[c]))
#: The report parameter (``schemas.accounting.PARAMETERS``) behind each input.
PARAMETER_OF = MappingProxyType({
    "fuel_consumption": "fuel.consumption", "fuel_ncv": "fuel.ncv", "fuel_carbon_per_heat": "fuel.carbon_per_heat",
    "fuel_carbon_element": "fuel.carbon_content", "fuel_oxidation": "fuel.oxidation_rate",
    "material_quantity": "material.quantity", "material_carbon": "material.carbon_content",
    "clinker_t": "cement.clinker_output", "clinker_cao": "cement.clinker_cao", "clinker_mgo": "cement.clinker_mgo",
    "noncarbonate_cao": "cement.noncarbonate_cao", "noncarbonate_mgo": "cement.noncarbonate_mgo",
    "raw_meal_t": "cement.raw_meal_consumption", "raw_meal_toc": "cement.raw_meal_toc",
    "kiln_dust_t": "cement.kiln_dust", "bypass_dust_t": "cement.bypass_dust",
    "aluminium_t": "aluminium.aluminium_output", "anode_consumption": "aluminium.net_anode_consumption",
    "anode_sulphur": "aluminium.anode_sulphur", "anode_ash": "aluminium.anode_ash",
    "limestone_t": "aluminium.limestone_consumption", "limestone_factor": "aluminium.limestone_factor",
    "anode_effect_minutes": "aluminium.anode_effect_minutes", "slope_cf4": "aluminium.slope_cf4",
    "overvoltage_coefficient": "aluminium.overvoltage_coefficient",
    "anode_effect_overvoltage": "aluminium.anode_effect_overvoltage",
    "current_efficiency": "aluminium.current_efficiency", "c2f6_cf4_ratio": "aluminium.c2f6_cf4_ratio"})


def fuel_co2_t(consumption: ArrayLike, oxidation: ArrayLike, ncv: ArrayLike | None = None,
               carbon_per_heat: ArrayLike | None = None, carbon_element: ArrayLike | None = None) -> Floats:
    """CO2 [t] per fuel row: ``FC x NCV x CC x OF x 44/12``, or ``FC x C_element x OF x 44/12`` where
    ``carbon_element`` is finite.

    A plant either measures the fuel's element carbon or takes its carbon per unit of heat (and then needs the
    NCV); the row says which by which values it has.

    Parameters
    ----------
    consumption : array_like
        Fuel burned, FC [t, or 10^4 Nm3 for gases].
    oxidation : array_like
        Carbon oxidation rate, OF [fraction].
    ncv : array_like, optional
        Net calorific value [GJ per unit of FC].
    carbon_per_heat : array_like, optional
        Carbon per unit of heat, CC [tC/GJ].
    carbon_element : array_like, optional
        Element carbon [tC per unit of FC]; NaN where not measured.

    Returns
    -------
    ndarray of float
        CO2 [t]; NaN where a row has neither carbon figure.

    References
    ----------
    docs/sources.md: CN-COMB [S], CONST-MOLAR [S].
    """
    fc, of = np.asarray(consumption, np.float64), np.asarray(oxidation, np.float64)
    nan = np.full(np.shape(fc), np.nan)
    element = nan if carbon_element is None else np.asarray(carbon_element, np.float64)
    per_heat = (nan if ncv is None else np.asarray(ncv, np.float64)) * (
        nan if carbon_per_heat is None else np.asarray(carbon_per_heat, np.float64))
    carbon = np.where(np.isfinite(element), element, per_heat)
    return fc * carbon * of * C_TO_CO2


def clinker_process_co2_t(clinker_t: ArrayLike, cao: ArrayLike, mgo: ArrayLike, cao_noncarbonate: ArrayLike,
                          mgo_noncarbonate: ArrayLike, kiln_dust_t: ArrayLike = 0.0,
                          bypass_dust_t: ArrayLike = 0.0) -> Floats:
    """Carbonate CO2 [t] of a clinker kiln: ``(Q_clinker + Q_ckd + Q_bypass) x [(CaO - CaO_nc) x 44/56 +
    (MgO - MgO_nc) x 44/40]``.

    Kiln dust and bypass dust leave the kiln calcined (the oxides as clinker's), so their carbonate CO2 was
    emitted too and counts with the clinker's: without them the formula understates a kiln that discards dust.

    Parameters
    ----------
    clinker_t, kiln_dust_t, bypass_dust_t : array_like
        Clinker produced, kiln (head) dust and bypass dust leaving the kiln system [t].
    cao, mgo, cao_noncarbonate, mgo_noncarbonate : array_like
        Oxide mass fractions of clinker [-], total and from non-carbonate raw materials.

    Returns
    -------
    numpy.ndarray
        CO2 [t].

    References
    ----------
    docs/sources.md: CN-CEM-PROC [S] (GB/T 32151.8 form, kiln-dust and bypass-dust terms), CONST-MOLAR [S].
    """
    calcined = _arr(clinker_t) + _arr(kiln_dust_t) + _arr(bypass_dust_t)
    return calcined * ((_arr(cao) - _arr(cao_noncarbonate)) * CAO_TO_CO2
                       + (_arr(mgo) - _arr(mgo_noncarbonate)) * MGO_TO_CO2)


def anode_co2_t(aluminium_t: ArrayLike, anode_t_per_t: ArrayLike, sulphur: ArrayLike, ash: ArrayLike) -> Floats:
    """Anode CO2 [t]: ``NAC x MP x (1 - S - Ash) x 44/12``.

    Parameters
    ----------
    aluminium_t : array_like
        Primary aluminium produced, MP [t].
    anode_t_per_t : array_like
        Net anode consumption, NAC [t anode / t Al].
    sulphur, ash : array_like
        Sulphur and ash mass fractions of the anode [-]: what of the anode is not carbon.

    Returns
    -------
    ndarray of float
        CO2 [t].

    References
    ----------
    docs/sources.md: CN-AL-ANODE [U] (form inferred from 40 CFR 98.63's variables).
    """
    return _arr(aluminium_t) * _arr(anode_t_per_t) * (1.0 - _arr(sulphur) - _arr(ash)) * C_TO_CO2


def limestone_co2_t(limestone_t: ArrayLike, t_co2_per_t: ArrayLike) -> Floats:
    """CO2 [t] of limestone calcined at an aluminium smelter: ``Q_limestone x EF``.

    Parameters
    ----------
    limestone_t : array_like
        Limestone calcined [t].
    t_co2_per_t : array_like
        Emission factor EF [t CO2 / t limestone].

    Returns
    -------
    ndarray of float
        CO2 [t].

    References
    ----------
    docs/sources.md: CN-AL-LIME [S] (the term and its 0.405 default in an implementation of the Chinese
    electrolytic-aluminium guideline).
    """
    return _arr(limestone_t) * _arr(t_co2_per_t)


def pfc_slope_t(aluminium_t: ArrayLike, aem: ArrayLike, slope_cf4: ArrayLike,
                c2f6_cf4_ratio: ArrayLike) -> tuple[Floats, Floats]:
    """(CF4 t, C2F6 t) by the slope method: ``S x AEM x MP x 0.001``, C2F6 = CF4 x ratio.

    Parameters
    ----------
    aluminium_t : array_like
        MP [t Al].
    aem : array_like
        Anode-effect minutes per cell-day [min/cell-day].
    slope_cf4 : array_like
        S [(kg CF4/t Al)/(min/cell-day)]; 0.001 turns kg into t.
    c2f6_cf4_ratio : array_like
        [kg C2F6/kg CF4].

    Returns
    -------
    tuple of two ndarrays of float
        CF4 and C2F6 [t].

    References
    ----------
    docs/sources.md: CN-AL-PFC [S].
    """
    cf4 = _arr(slope_cf4) * _arr(aem) * _arr(aluminium_t) * 0.001
    return cf4, cf4 * _arr(c2f6_cf4_ratio)


def pfc_overvoltage_t(aluminium_t: ArrayLike, ovc: ArrayLike, aeo_mv: ArrayLike, current_efficiency: ArrayLike,
                      c2f6_cf4_ratio: ArrayLike) -> tuple[Floats, Floats]:
    """(CF4 t, C2F6 t) by the overvoltage method: ``OVC x (AEO/CE) x MP x 0.001``, C2F6 = CF4 x ratio.

    For cells whose control system records the anode-effect overvoltage instead of anode-effect minutes.

    Parameters
    ----------
    aluminium_t : array_like
        MP [t Al].
    ovc : array_like
        Overvoltage coefficient [kg CF4 / t Al / mV].
    aeo_mv : array_like
        Anode-effect overvoltage per cell [mV] (time-integrated overvoltage over the collection time).
    current_efficiency : array_like
        Current efficiency as a fraction [-]. The regulation writes AEO/CE with CE in %, so it enters as
        ``100 x fraction``; a zero efficiency (a report without this method) gives zero, not a division error.
    c2f6_cf4_ratio : array_like
        [t C2F6 / t CF4].

    Returns
    -------
    tuple of two ndarrays of float
        CF4 and C2F6 [t].

    References
    ----------
    docs/sources.md: MRR-AIV-8B [P] (Regulation 601/2012 Annex IV section 8, calculation method B).
    """
    ce_pct = _arr(current_efficiency) * 100.0
    aeo = _arr(aeo_mv)
    per_pct = np.divide(aeo, ce_pct, out=np.zeros(np.broadcast(aeo, ce_pct).shape), where=ce_pct > 0)
    cf4 = _arr(ovc) * per_pct * _arr(aluminium_t) * 0.001
    return cf4, cf4 * _arr(c2f6_cf4_ratio)


def _arr(x: ArrayLike = ()) -> Floats:
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class AccountingInputs:
    """Column arrays for ``n_reports`` reports, in canonical units (:mod:`schemas.accounting`).

    ``basis`` maps an input name (:data:`INPUTS`) to int8 codes of the same shape; a missing name is
    all measured.
    """

    n_reports: int
    # fuel rows, any sector
    fuel_report: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fuel_consumption: np.ndarray = field(default_factory=_arr)  # t or 10^4 Nm3
    fuel_ncv: np.ndarray = field(default_factory=_arr)  # GJ/t or GJ/10^4 Nm3
    fuel_carbon_per_heat: np.ndarray = field(default_factory=_arr)  # tC/GJ
    fuel_carbon_element: np.ndarray = field(default_factory=_arr)  # tC/t or tC/10^4 Nm3; NaN = use NCV x CC
    fuel_oxidation: np.ndarray = field(default_factory=_arr)  # fraction
    # steel carbon-balance rows
    material_report: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    material_quantity: np.ndarray = field(default_factory=_arr)  # t or 10^4 Nm3
    material_carbon: np.ndarray = field(default_factory=_arr)  # tC per unit
    material_sign: np.ndarray = field(default_factory=_arr)  # +1 input, -1 output
    # per report (zeros where the sector does not apply)
    clinker_t: np.ndarray | None = None
    clinker_cao: np.ndarray | None = None
    clinker_mgo: np.ndarray | None = None
    noncarbonate_cao: np.ndarray | None = None  # fraction of clinker
    noncarbonate_mgo: np.ndarray | None = None
    raw_meal_t: np.ndarray | None = None
    raw_meal_toc: np.ndarray | None = None  # fraction
    kiln_dust_t: np.ndarray | None = None  # t leaving the kiln system
    bypass_dust_t: np.ndarray | None = None  # t
    aluminium_t: np.ndarray | None = None
    anode_consumption: np.ndarray | None = None  # t anode / t Al
    anode_sulphur: np.ndarray | None = None  # fraction
    anode_ash: np.ndarray | None = None
    limestone_t: np.ndarray | None = None  # t limestone calcined
    limestone_factor: np.ndarray | None = None  # t CO2 / t limestone
    anode_effect_minutes: np.ndarray | None = None  # min/cell-day (slope method)
    slope_cf4: np.ndarray | None = None  # (kg CF4/t Al)/(min/cell-day)
    overvoltage_coefficient: np.ndarray | None = None  # kg CF4/t Al/mV (overvoltage method)
    anode_effect_overvoltage: np.ndarray | None = None  # mV
    current_efficiency: np.ndarray | None = None  # fraction
    c2f6_cf4_ratio: np.ndarray | None = None  # kg C2F6/kg CF4
    basis: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: input name -> relative expanded uncertainty (95 %, fraction of the value) per element, for
    #: :func:`co2_variance_t2`; a missing name has none (an error where that input acts on the CO2)
    uncertainty: Mapping[str, np.ndarray] = field(default_factory=dict)

    def per_report(self, name: str) -> np.ndarray:
        v = getattr(self, name)
        return np.zeros(self.n_reports) if v is None else np.asarray(v, np.float64)


@dataclass(frozen=True)
class AccountingEmissions:
    """Per report: CO2 [t] by component, PFC [t] and their CO2e [t], totals, and the basis of each input."""

    combustion_co2_t: np.ndarray
    process_co2_t: np.ndarray  # cement: carbonates (dusts included) + raw-meal organic carbon; aluminium: limestone
    carbon_balance_co2_t: np.ndarray  # steel
    anode_co2_t: np.ndarray  # aluminium
    cf4_t: np.ndarray
    c2f6_t: np.ndarray
    cf4_co2e_t: np.ndarray
    c2f6_co2e_t: np.ndarray
    co2_t: np.ndarray  # all CO2: the most a CO2 CEMS can see (it does not see PFC)
    total_co2e_t: np.ndarray
    gwp_set: str
    basis: NDArray[np.int8]  # (n_reports, len(INPUTS)): highest basis code among the inputs the report used

    @property
    def defaults(self) -> NDArray[np.bool_]:
        """bool (n_reports, len(INPUTS)): the input was a default."""
        return np.greater_equal(self.basis, DEFAULT)

    @property
    def unconfirmed(self) -> NDArray[np.bool_]:
        """bool (n_reports, len(INPUTS)): the input was a default whose source is unconfirmed."""
        return np.equal(self.basis, UNCONFIRMED)

    def default_inputs(self, report: int) -> tuple[str, ...]:
        return tuple(name for name, d in zip(INPUTS, self.defaults[report], strict=False) if d)

    def unconfirmed_inputs(self, report: int) -> tuple[str, ...]:
        return tuple(name for name, u in zip(INPUTS, self.unconfirmed[report], strict=False) if u)


def accounting_emissions(x: AccountingInputs, gwp_set: str = DEFAULT_GWP_SET) -> AccountingEmissions:
    """Calculation-based emissions of every report in ``x`` (formulas in the module docstring).

    Parameters
    ----------
    x : AccountingInputs
        Column arrays of the reports' parameters in canonical units (t or 10^4 Nm3, GJ per unit, tC per unit or per
        GJ, fractions, min/cell-day, mV) with their basis codes.
    gwp_set : str
        The GWP set (:data:`streams.kernels.gwp.GWP_SETS`) that turns CF4 and C2F6 into CO2e.

    Returns
    -------
    AccountingEmissions
        Per report: CO2 by component [t], CF4 and C2F6 [t] and their CO2e [t CO2e], totals [t], and the highest basis
        code among the inputs each report used.

    References
    ----------
    docs/sources.md: CN-COMB [S], CN-CEM-PROC [S], CN-CEM-TOC [U], CN-STEEL-CB [S], CN-AL-ANODE [U], CN-AL-LIME [S],
    CN-AL-PFC [S], MRR-AIV-8B [P], CONST-MOLAR [S]; the GWP sets' own (GWP-SAR, GWP-AR4, GWP-AR5, GWP-AR6).
    """
    n = x.n_reports
    fuel_report = np.asarray(x.fuel_report, np.int64)
    element = np.isfinite(np.asarray(x.fuel_carbon_element, np.float64))
    fuel = fuel_co2_t(x.fuel_consumption, x.fuel_oxidation, x.fuel_ncv, x.fuel_carbon_per_heat, x.fuel_carbon_element)
    combustion = np.bincount(fuel_report, weights=fuel, minlength=n)

    material_report = np.asarray(x.material_report, np.int64)
    carbon = np.asarray(x.material_sign, np.float64) * x.material_quantity * x.material_carbon
    carbon_balance = np.bincount(material_report, weights=carbon, minlength=n) * C_TO_CO2

    r = x.per_report
    process = (clinker_process_co2_t(r("clinker_t"), r("clinker_cao"), r("clinker_mgo"), r("noncarbonate_cao"),
                                     r("noncarbonate_mgo"), r("kiln_dust_t"), r("bypass_dust_t"))
               + r("raw_meal_t") * r("raw_meal_toc") * C_TO_CO2
               + limestone_co2_t(r("limestone_t"), r("limestone_factor")))
    anode = anode_co2_t(r("aluminium_t"), r("anode_consumption"), r("anode_sulphur"), r("anode_ash"))
    # a report uses one PFC method (schemas.accounting); the other's inputs are zero and give zero
    cf4_s, c2f6_s = pfc_slope_t(r("aluminium_t"), r("anode_effect_minutes"), r("slope_cf4"), r("c2f6_cf4_ratio"))
    cf4_o, c2f6_o = pfc_overvoltage_t(r("aluminium_t"), r("overvoltage_coefficient"), r("anode_effect_overvoltage"),
                                      r("current_efficiency"), r("c2f6_cf4_ratio"))
    cf4, c2f6 = cf4_s + cf4_o, c2f6_s + c2f6_o

    co2 = combustion + process + carbon_balance + anode
    basis = np.zeros((n, len(INPUTS)), np.int8)
    used = {"fuel_ncv": ~element, "fuel_carbon_per_heat": ~element, "fuel_carbon_element": element}
    for j, name in enumerate(INPUTS):  # a column per input, not a loop over reports
        codes = x.basis.get(name)
        if codes is None:
            continue
        codes = np.asarray(codes, np.int8)
        rows = fuel_report if name in _FUEL else material_report if name in _MATERIAL else np.arange(n)
        mask = used.get(name, np.ones(codes.shape, bool))
        col = np.zeros(n, np.int8)
        np.maximum.at(col, rows[mask], codes[mask])
        basis[:, j] = col
    return AccountingEmissions(
        combustion_co2_t=combustion,
        process_co2_t=process,
        carbon_balance_co2_t=carbon_balance,
        anode_co2_t=anode,
        cf4_t=cf4,
        c2f6_t=c2f6,
        cf4_co2e_t=co2e({"CF4": cf4}, gwp_set),
        c2f6_co2e_t=co2e({"C2F6": c2f6}, gwp_set),
        co2_t=co2,
        total_co2e_t=co2e({"CO2": co2, "CF4": cf4, "C2F6": c2f6}, gwp_set),
        gwp_set=gwp_set,
        basis=basis,
    )


def co2_variance_t2(x: AccountingInputs) -> np.ndarray:
    """Variance contributions [t²] of each input to each report's calculated CO2 (the part a CEMS sees).

    First-order error propagation for uncorrelated inputs: ``u(E)² = Σ_i (x_i · ∂E/∂x_i · u_i)²`` with ``u_i``
    the input's relative uncertainty (``x.uncertainty``). ``x_i · ∂E/∂x_i`` is the CO2 the input carries: for a
    factor of a product term (fuel quantity, carbon content, clinker, anode consumption) it is that term's CO2,
    so each input is weighted by its share of the calculated CO2 (IPCC's product and sum rules); for a
    subtracted quantity (non-carbonate oxides, anode sulphur and ash) it is the (negative) CO2 it removes. Each
    fuel and material row is its own variable (two fuels' carbon analyses are independent), so rows are
    squared before they are summed per report.

    Parameters
    ----------
    x : AccountingInputs
        The inputs, with ``uncertainty`` per element as a relative expanded uncertainty (95 %, fraction).

    Returns
    -------
    numpy.ndarray
        float (n_reports, len(INPUTS)) [t²]; ``sqrt(sum(axis=1))`` is the expanded uncertainty of the CO2 [t].

    Raises
    ------
    ValueError
        Naming an input that acts on some report's CO2 but has no uncertainty.

    References
    ----------
    docs/sources.md: IPCC-V1C3-AP1 [S] (Approach 1, propagation of error), and the formulas' own entries.
    """
    n = x.n_reports
    element = np.isfinite(np.asarray(x.fuel_carbon_element, np.float64))
    fuel = fuel_co2_t(x.fuel_consumption, x.fuel_oxidation, x.fuel_ncv, x.fuel_carbon_per_heat, x.fuel_carbon_element)
    material = np.asarray(x.material_sign, np.float64) * x.material_quantity * x.material_carbon * C_TO_CO2
    r = x.per_report
    oxide = ((r("clinker_cao") - r("noncarbonate_cao")) * CAO_TO_CO2
             + (r("clinker_mgo") - r("noncarbonate_mgo")) * MGO_TO_CO2)
    calcined = r("clinker_t") + r("kiln_dust_t") + r("bypass_dust_t")
    toc = r("raw_meal_t") * r("raw_meal_toc") * C_TO_CO2
    anode = anode_co2_t(r("aluminium_t"), r("anode_consumption"), r("anode_sulphur"), r("anode_ash"))
    carbon_t = r("aluminium_t") * r("anode_consumption") * C_TO_CO2  # anode mass x 44/12
    lime = limestone_co2_t(r("limestone_t"), r("limestone_factor"))
    sensitivity = {  # x_i dE/dx_i [t]
        "fuel_consumption": fuel, "fuel_oxidation": fuel, "fuel_ncv": np.where(element, 0.0, fuel),
        "fuel_carbon_per_heat": np.where(element, 0.0, fuel), "fuel_carbon_element": np.where(element, fuel, 0.0),
        "material_quantity": material, "material_carbon": material,
        "clinker_t": r("clinker_t") * oxide, "kiln_dust_t": r("kiln_dust_t") * oxide,
        "bypass_dust_t": r("bypass_dust_t") * oxide,
        "clinker_cao": calcined * r("clinker_cao") * CAO_TO_CO2,
        "noncarbonate_cao": -calcined * r("noncarbonate_cao") * CAO_TO_CO2,
        "clinker_mgo": calcined * r("clinker_mgo") * MGO_TO_CO2,
        "noncarbonate_mgo": -calcined * r("noncarbonate_mgo") * MGO_TO_CO2,
        "raw_meal_t": toc, "raw_meal_toc": toc,
        "aluminium_t": anode, "anode_consumption": anode,
        "anode_sulphur": -carbon_t * r("anode_sulphur"), "anode_ash": -carbon_t * r("anode_ash"),
        "limestone_t": lime, "limestone_factor": lime,
    }
    rows = {name: np.asarray(x.fuel_report, np.int64) for name in _FUEL} | {
        name: np.asarray(x.material_report, np.int64) for name in _MATERIAL}
    out = np.zeros((n, len(INPUTS)))
    for j, name in enumerate(INPUTS):  # a column per input, not a loop over reports
        s = sensitivity.get(name)
        if s is None:
            continue  # not a CO2 input (PFC)
        u = x.uncertainty.get(name)
        if u is None:
            if np.any(s != 0):
                raise ValueError(f"input {name} ({PARAMETER_OF[name]}) acts on the CO2 but has no uncertainty")
            continue
        contribution = (s * np.asarray(u, np.float64)) ** 2
        out[:, j] = np.bincount(rows[name], weights=contribution, minlength=n) if name in rows else contribution
    return out


# --- from validated reports ---------------------------------------------------------------------


def _code(p: Param | None) -> int:
    if p is None or p.basis == "measured":
        return MEASURED
    return DEFAULT if p.confirmed else UNCONFIRMED


def _value(p: Param | None, where: str) -> float:
    if p is None:
        return float("nan")
    if p.value is None:
        raise ValueError(f"{where}: default not filled (run schemas.accounting.fill_defaults first)")
    return p.value


#: ``uncertainty(report, parameter, item, param) -> relative expanded uncertainty`` (see inputs_from_reports)
UncertaintyOf = Callable[["AccountingReport", str, "str | None", "Param"], float]


class _Columns:
    """The columns :func:`inputs_from_reports` builds: rows of fuels and materials (a list per input), and one value
    per report of the cement and aluminium inputs, each with its basis code and uncertainty."""

    def __init__(self, n: int, uncertainty: UncertaintyOf | None) -> None:
        self.uncertainty = uncertainty
        self.rows: dict[str, list[float]] = {k: [] for k in ("fuel_report", *_FUEL, "material_report", *_MATERIAL,
                                                             "material_sign")}
        self.row_basis: dict[str, list[int]] = {k: [] for k in (*_FUEL, *_MATERIAL)}
        self.row_u: dict[str, list[float]] = {k: [] for k in (*_FUEL, *_MATERIAL)}
        self.per = {k: np.zeros(n) for k in _CEMENT + _ALUMINIUM}
        self.per_basis = {k: np.zeros(n, np.int8) for k in _CEMENT + _ALUMINIUM}
        self.per_u = {k: np.zeros(n) for k in _CEMENT + _ALUMINIUM}

    def u_of(self, rep: AccountingReport, name: str, item: str | None, p: Param | None) -> float:
        if p is None or self.uncertainty is None:
            return 0.0
        return float(self.uncertainty(rep, PARAMETER_OF[name], item, p))

    def put(self, rep: AccountingReport, i: int, name: str, p: Param | None, item: str | None = None,
            value: float | None = None) -> None:
        """One per-report input of report ``i`` (``value`` in place of the parameter's, when given)."""
        if value is None:
            value = 0.0 if p is None else _value(p, f"{rep.key} {PARAMETER_OF[name]}")
        self.per[name][i] = value
        self.per_basis[name][i] = _code(p)
        self.per_u[name][i] = self.u_of(rep, name, item, p)

    def put_row(self, rep: AccountingReport, names: Sequence[str], params: Sequence[Param | None], item: str) -> None:
        """One fuel or material row."""
        for name, p in zip(names, params, strict=True):
            self.rows[name].append(_value(p, f"{rep.key} {PARAMETER_OF[name]} [{item}]"))
            self.row_basis[name].append(_code(p))
            self.row_u[name].append(self.u_of(rep, name, item, p))

    def report(self, i: int, rep: AccountingReport) -> None:
        for f in rep.fuels:
            self.rows["fuel_report"].append(i)
            self.put_row(rep, _FUEL, (f.consumption, f.ncv, f.carbon_per_heat, f.carbon_content, f.oxidation_rate),
                         f.fuel)
        if rep.steel is not None:
            for m in rep.steel.materials:
                self.rows["material_report"].append(i)
                self.rows["material_sign"].append(1.0 if MATERIALS[m.material].direction == "input" else -1.0)
                self.put_row(rep, _MATERIAL, (m.quantity, m.carbon_content), m.material)
        if rep.cement is not None:
            self.cement(i, rep, rep.cement)
        if rep.aluminium is not None:
            self.aluminium(i, rep, rep.aluminium)

    def cement(self, i: int, rep: AccountingReport, c: CementData) -> None:
        item = "coal_gangue" if c.raw_meal_contains_coal_gangue else None
        clinker = _value(c.clinker_output, f"{rep.key} cement.clinker_output")
        for name, p in (("clinker_t", c.clinker_output), ("clinker_cao", c.clinker_cao),
                        ("clinker_mgo", c.clinker_mgo), ("raw_meal_t", c.raw_meal_consumption),
                        ("raw_meal_toc", c.raw_meal_toc), ("kiln_dust_t", c.kiln_dust),
                        ("bypass_dust_t", c.bypass_dust)):
            self.put(rep, i, name, p, item)
        for name, p in (("noncarbonate_cao", c.noncarbonate_cao), ("noncarbonate_mgo", c.noncarbonate_mgo)):
            v = _value(p, f"{rep.key} {PARAMETER_OF[name]}")  # a mass becomes a fraction of clinker
            self.put(rep, i, name, p, item, v if p.unit == "fraction" else (v / clinker if clinker else 0.0))

    def aluminium(self, i: int, rep: AccountingReport, a: AluminiumData) -> None:
        for name, p in (("aluminium_t", a.aluminium_output), ("anode_consumption", a.net_anode_consumption),
                        ("anode_sulphur", a.anode_sulphur), ("anode_ash", a.anode_ash),
                        ("limestone_t", a.limestone_consumption), ("limestone_factor", a.limestone_factor),
                        ("anode_effect_minutes", a.anode_effect_minutes), ("slope_cf4", a.slope_cf4),
                        ("overvoltage_coefficient", a.overvoltage_coefficient),
                        ("anode_effect_overvoltage", a.anode_effect_overvoltage),
                        ("current_efficiency", a.current_efficiency), ("c2f6_cf4_ratio", a.c2f6_cf4_ratio)):
            self.put(rep, i, name, p, a.cell_technology)


def inputs_from_reports(reports: Sequence[AccountingReport],
                        uncertainty: UncertaintyOf | None = None) -> AccountingInputs:
    """Validated, default-filled :class:`schemas.accounting.AccountingReport` objects -> column arrays.

    The report order is kept: row ``i`` of every result is ``reports[i]``. (A thin Python pass over
    the reports and their rows; the arithmetic is in :func:`accounting_emissions`.)

    Parameters
    ----------
    reports : sequence of AccountingReport
        Validated reports with their defaults filled (:func:`schemas.accounting.validate_report`); values are in
        the canonical units of :data:`schemas.accounting.UNITS`.
    uncertainty : callable, optional
        ``uncertainty(report, parameter, item, param)`` -> the parameter's relative expanded uncertainty [fraction,
        95 %], ``item`` being the fuel or material id, the cell technology, or ``coal_gangue`` for a raw mix with
        coal gangue (the keys the defaults use); parameters a report does not give have none (0).

    Returns
    -------
    AccountingInputs
        Per-report inputs of shape ``(n,)`` (zero where a sector does not apply) and fuel and material rows with the
        index of their report, each with basis codes (and uncertainties when given), in the same units.

    References
    ----------
    docs/sources.md: the parameters' own (docs/accounting.md); uncertainties IPCC-V1C3-AP1 [S] and the policy file's.
    """
    n = len(reports)
    c = _Columns(n, uncertainty)
    for i, rep in enumerate(reports):
        c.report(i, rep)
    arrays = {k: np.asarray(v, np.int64 if k.endswith("_report") else np.float64) for k, v in c.rows.items()}
    basis = {k: np.asarray(v, np.int8) for k, v in c.row_basis.items()} | c.per_basis
    u = ({k: np.asarray(v, np.float64) for k, v in c.row_u.items()} | c.per_u) if uncertainty is not None else {}
    return AccountingInputs(n_reports=n, **arrays, **c.per, basis=basis, uncertainty=u)
