"""Calculation-based (accounting) emissions of many entity-months at once, from self-reported parameters.

The reconciliation compares these with the CEMS monthly CO2. Formulas, all in ``cems-standards.md``:

* fuel combustion, every sector (§4.3 [S]): ``FC x NCV x CC x OF x 44/12``, or with element carbon
  ``FC x C_element x OF x 44/12``;
* cement process CO2 (§4.4 [S], GB/T 32151.8): ``Q_clinker x [(CaO - CaO_nc) x 44/56 + (MgO - MgO_nc) x 44/40]``,
  plus raw-meal organic carbon ``raw_meal x TOC x 44/12`` (§4.4 [U]: one plant's code);
* steel carbon balance (§4.5 [S]): ``(sum inputs x C - sum outputs x C) x 44/12``;
* aluminium anode CO2 (§4.6 [U]: form inferred from 40 CFR 98.63's variables):
  ``NAC x MP x (1 - S - Ash) x 44/12``, with S and Ash as fractions;
* aluminium PFC, slope method (§4.6 [S]): ``CF4 = S_CF4 x AEM x MP x 0.001`` t, ``C2F6 = CF4 x F_C2F6/CF4``,
  to CO2e with a versioned GWP set (:mod:`.gwp`).

Inputs are flat arrays: per-report parameters of shape ``(n,)`` (zero where a sector does not apply),
and fuel and carbon-balance rows with the index of their report, summed by ``np.bincount``. Each input
may carry a basis code per element (0 measured, 1 confirmed default, 2 unconfirmed default); the
result says, per report, which inputs were defaults, so the reconciliation can widen its tolerance
(§3 [S]: 2.5 % agreement with all parameters measured, about 20 % with defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from schemas.accounting import MATERIALS

from .gwp import DEFAULT_GWP_SET, co2e

__all__ = [
    "COMPONENT_INPUTS",
    "DEFAULT",
    "INPUTS",
    "MEASURED",
    "UNCONFIRMED",
    "AccountingEmissions",
    "AccountingInputs",
    "accounting_emissions",
    "anode_co2_t",
    "clinker_process_co2_t",
    "fuel_co2_t",
    "inputs_from_reports",
    "pfc_slope_t",
]

#: Basis codes: measured, default with confirmed source, default with unconfirmed source (or unknown).
MEASURED, DEFAULT, UNCONFIRMED = 0, 1, 2

C_TO_CO2 = 44.0 / 12.0  # §4.3-4.6 [S]
CAO_TO_CO2 = 44.0 / 56.0  # §4.4 [S]
MGO_TO_CO2 = 44.0 / 40.0  # §4.4 [S]

_FUEL = ("fuel_consumption", "fuel_ncv", "fuel_carbon_per_heat", "fuel_carbon_element", "fuel_oxidation")
_MATERIAL = ("material_quantity", "material_carbon")
_CEMENT = ("clinker_t", "clinker_cao", "clinker_mgo", "noncarbonate_cao", "noncarbonate_mgo", "raw_meal_t", "raw_meal_toc")
_ALUMINIUM = ("aluminium_t", "anode_consumption", "anode_sulphur", "anode_ash", "anode_effect_minutes", "slope_cf4",
              "c2f6_cf4_ratio")
#: Every input that can be a default, in the column order of :attr:`AccountingEmissions.basis`.
INPUTS = _FUEL + _MATERIAL + _CEMENT + _ALUMINIUM
#: Which inputs each component depends on (to widen only what a default touches).
COMPONENT_INPUTS = MappingProxyType(
    {
        "combustion": _FUEL,
        "process": _CEMENT,
        "carbon_balance": _MATERIAL,
        "anode": _ALUMINIUM[:4],
        "cf4": ("aluminium_t", "anode_effect_minutes", "slope_cf4"),
        "c2f6": ("aluminium_t", "anode_effect_minutes", "slope_cf4", "c2f6_cf4_ratio"),
    }
)


def fuel_co2_t(consumption, oxidation, ncv=None, carbon_per_heat=None, carbon_element=None) -> np.ndarray:
    """CO2 [t] per fuel row: ``FC x NCV x CC x OF x 44/12``, or ``FC x C_element x OF x 44/12`` where
    ``carbon_element`` is finite (§4.3 [S]). Units: FC t or 10^4 Nm3, NCV GJ per that unit, CC tC/GJ,
    C_element tC per unit, OF fraction."""
    fc, of = np.asarray(consumption, np.float64), np.asarray(oxidation, np.float64)
    nan = np.full(np.shape(fc), np.nan)
    element = nan if carbon_element is None else np.asarray(carbon_element, np.float64)
    per_heat = (nan if ncv is None else np.asarray(ncv, np.float64)) * (
        nan if carbon_per_heat is None else np.asarray(carbon_per_heat, np.float64))
    carbon = np.where(np.isfinite(element), element, per_heat)
    return fc * carbon * of * C_TO_CO2


def clinker_process_co2_t(clinker_t, cao, mgo, cao_noncarbonate, mgo_noncarbonate) -> np.ndarray:
    """Carbonate CO2 [t] from clinker oxides (mass fractions of clinker), §4.4 [S] (GB/T 32151.8)."""
    return np.asarray(clinker_t, np.float64) * (
        (np.asarray(cao) - cao_noncarbonate) * CAO_TO_CO2 + (np.asarray(mgo) - mgo_noncarbonate) * MGO_TO_CO2)


def anode_co2_t(aluminium_t, anode_t_per_t, sulphur, ash) -> np.ndarray:
    """Anode CO2 [t]: ``NAC x MP x (1 - S - Ash) x 44/12``, NAC in t anode/t Al, S and Ash fractions (§4.6 [U])."""
    return np.asarray(aluminium_t, np.float64) * anode_t_per_t * (1.0 - np.asarray(sulphur) - ash) * C_TO_CO2


def pfc_slope_t(aluminium_t, aem, slope_cf4, c2f6_cf4_ratio) -> tuple[np.ndarray, np.ndarray]:
    """(CF4 t, C2F6 t) by the slope method: ``S x AEM x MP x 0.001`` (kg -> t), C2F6 = CF4 x ratio (§4.6 [S])."""
    cf4 = np.asarray(slope_cf4, np.float64) * aem * aluminium_t * 0.001
    return cf4, cf4 * np.asarray(c2f6_cf4_ratio, np.float64)


def _arr(x=()) -> np.ndarray:
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
    aluminium_t: np.ndarray | None = None
    anode_consumption: np.ndarray | None = None  # t anode / t Al
    anode_sulphur: np.ndarray | None = None  # fraction
    anode_ash: np.ndarray | None = None
    anode_effect_minutes: np.ndarray | None = None  # min/cell-day
    slope_cf4: np.ndarray | None = None  # (kg CF4/t Al)/(min/cell-day)
    c2f6_cf4_ratio: np.ndarray | None = None  # kg C2F6/kg CF4
    basis: Mapping[str, np.ndarray] = field(default_factory=dict)

    def per_report(self, name: str) -> np.ndarray:
        v = getattr(self, name)
        return np.zeros(self.n_reports) if v is None else np.asarray(v, np.float64)


@dataclass(frozen=True)
class AccountingEmissions:
    """Per report: CO2 [t] by component, PFC [t] and their CO2e [t], totals, and the basis of each input."""

    combustion_co2_t: np.ndarray
    process_co2_t: np.ndarray  # cement: carbonates + raw-meal organic carbon
    carbon_balance_co2_t: np.ndarray  # steel
    anode_co2_t: np.ndarray  # aluminium
    cf4_t: np.ndarray
    c2f6_t: np.ndarray
    cf4_co2e_t: np.ndarray
    c2f6_co2e_t: np.ndarray
    co2_t: np.ndarray  # all CO2: the most a CO2 CEMS can see (it does not see PFC, §9 item 7)
    total_co2e_t: np.ndarray
    gwp_set: str
    basis: np.ndarray  # int8 (n_reports, len(INPUTS)): highest basis code among the inputs the report used

    @property
    def defaults(self) -> np.ndarray:
        """bool (n_reports, len(INPUTS)): the input was a default."""
        return self.basis >= DEFAULT

    @property
    def unconfirmed(self) -> np.ndarray:
        """bool (n_reports, len(INPUTS)): the input was a default whose source is unconfirmed."""
        return self.basis == UNCONFIRMED

    def default_inputs(self, report: int) -> tuple[str, ...]:
        return tuple(name for name, d in zip(INPUTS, self.defaults[report]) if d)

    def unconfirmed_inputs(self, report: int) -> tuple[str, ...]:
        return tuple(name for name, u in zip(INPUTS, self.unconfirmed[report]) if u)


def accounting_emissions(x: AccountingInputs, gwp_set: str = DEFAULT_GWP_SET) -> AccountingEmissions:
    """Calculation-based emissions of every report in ``x`` (formulas in the module docstring)."""
    n = x.n_reports
    fuel_report = np.asarray(x.fuel_report, np.int64)
    element = np.isfinite(np.asarray(x.fuel_carbon_element, np.float64))
    fuel = fuel_co2_t(x.fuel_consumption, x.fuel_oxidation, x.fuel_ncv, x.fuel_carbon_per_heat, x.fuel_carbon_element)
    combustion = np.bincount(fuel_report, weights=fuel, minlength=n)

    material_report = np.asarray(x.material_report, np.int64)
    carbon = np.asarray(x.material_sign, np.float64) * x.material_quantity * x.material_carbon
    carbon_balance = np.bincount(material_report, weights=carbon, minlength=n) * C_TO_CO2

    r = x.per_report
    process = clinker_process_co2_t(r("clinker_t"), r("clinker_cao"), r("clinker_mgo"), r("noncarbonate_cao"),
                                    r("noncarbonate_mgo")) + r("raw_meal_t") * r("raw_meal_toc") * C_TO_CO2
    anode = anode_co2_t(r("aluminium_t"), r("anode_consumption"), r("anode_sulphur"), r("anode_ash"))
    cf4, c2f6 = pfc_slope_t(r("aluminium_t"), r("anode_effect_minutes"), r("slope_cf4"), r("c2f6_cf4_ratio"))

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


# --- from validated reports ---------------------------------------------------------------------


def _code(p) -> int:
    if p is None or p.basis == "measured":
        return MEASURED
    return DEFAULT if p.confirmed else UNCONFIRMED


def _value(p, where: str) -> float:
    if p is None:
        return np.nan
    if p.value is None:
        raise ValueError(f"{where}: default not filled (run schemas.accounting.fill_defaults first)")
    return p.value


def inputs_from_reports(reports: Sequence) -> AccountingInputs:
    """Validated, default-filled :class:`schemas.accounting.AccountingReport` objects -> column arrays.

    The report order is kept: row ``i`` of every result is ``reports[i]``. (A thin Python pass over
    the reports and their rows; the arithmetic is in :func:`accounting_emissions`.)
    """
    n = len(reports)
    cols: dict[str, list] = {k: [] for k in ("fuel_report", *_FUEL, "material_report", *_MATERIAL, "material_sign")}
    fuel_basis: dict[str, list] = {k: [] for k in (*_FUEL, *_MATERIAL)}
    per = {k: np.zeros(n) for k in _CEMENT + _ALUMINIUM}
    per_basis = {k: np.zeros(n, np.int8) for k in _CEMENT + _ALUMINIUM}

    def put(name: str, i: int, p, where: str, value: float | None = None) -> None:
        per[name][i] = _value(p, where) if value is None else value
        per_basis[name][i] = _code(p)

    for i, rep in enumerate(reports):
        for f in rep.fuels:
            where = f"{rep.key} fuel {f.fuel}"
            cols["fuel_report"].append(i)
            for name, p in zip(_FUEL, (f.consumption, f.ncv, f.carbon_per_heat, f.carbon_content, f.oxidation_rate)):
                cols[name].append(_value(p, where))
                fuel_basis[name].append(_code(p))
        if rep.steel is not None:
            for m in rep.steel.materials:
                where = f"{rep.key} material {m.material}"
                cols["material_report"].append(i)
                cols["material_sign"].append(1.0 if MATERIALS[m.material].direction == "input" else -1.0)
                for name, p in zip(_MATERIAL, (m.quantity, m.carbon_content)):
                    cols[name].append(_value(p, where))
                    fuel_basis[name].append(_code(p))
        c = rep.cement
        if c is not None:
            clinker = _value(c.clinker_output, f"{rep.key} clinker_output")
            for name, p in (("clinker_t", c.clinker_output), ("clinker_cao", c.clinker_cao),
                            ("clinker_mgo", c.clinker_mgo), ("raw_meal_t", c.raw_meal_consumption),
                            ("raw_meal_toc", c.raw_meal_toc)):
                put(name, i, p, f"{rep.key} cement.{name}", 0.0 if p is None else None)
            for name, p in (("noncarbonate_cao", c.noncarbonate_cao), ("noncarbonate_mgo", c.noncarbonate_mgo)):
                v = _value(p, f"{rep.key} cement.{name}")
                put(name, i, p, "", v if p.unit == "fraction" else (v / clinker if clinker else 0.0))
        a = rep.aluminium
        if a is not None:
            for name, p in (("aluminium_t", a.aluminium_output), ("anode_consumption", a.net_anode_consumption),
                            ("anode_sulphur", a.anode_sulphur), ("anode_ash", a.anode_ash),
                            ("anode_effect_minutes", a.anode_effect_minutes), ("slope_cf4", a.slope_cf4),
                            ("c2f6_cf4_ratio", a.c2f6_cf4_ratio)):
                put(name, i, p, f"{rep.key} aluminium.{name}")
    arrays = {k: np.asarray(v, np.int64 if k.endswith("_report") else np.float64) for k, v in cols.items()}
    basis = {k: np.asarray(v, np.int8) for k, v in fuel_basis.items()} | per_basis
    return AccountingInputs(n_reports=n, **arrays, **per, basis=basis)
