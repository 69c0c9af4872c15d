"""The report model: one emitter's self-reported figures for one month, by sector section.

Each section checks what holds across its fields (one carbon method per fuel, oxides within clinker, one PFC
method); :class:`AccountingReport` checks the sections against the sector. Sources: docs/sources.md ids in each
section's docstring.
"""

from __future__ import annotations

import re

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..errors import CemsError, Location, field_path
from ..site import Identifier, Sector
from .catalogues import (
    _FAMILY_UNIT,
    CURRENT_EFFICIENCY_PLAUSIBLE,
    FUELS,
    MATERIALS,
    NCV_PLAUSIBLE,
    OXIDATION_PLAUSIBLE,
    PARAMETERS,
    CellTechnology,
)
from .units import (
    AEM,
    NCV,
    CarbonContent,
    CarbonPerHeat,
    CO2PerMass,
    Energy,
    Fraction,
    FractionOrMass,
    Mass,
    OvervoltageCoefficient,
    Param,
    Quantity,
    Ratio,
    Slope,
    SpecificMass,
    Voltage,
    _expect_unit,
    _Frozen,
)


class ReportError(CemsError, ValueError):
    """A report that does not validate. ``problems``: ``(location, message)`` pairs, locations as in
    pydantic errors (``("fuels", 0, "ncv")``), so an importer can point at the row or line."""

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{field_path(loc, '(report)')}: {msg}" for loc, msg in self.problems))


# --- sections -----------------------------------------------------------------------------------


class FuelUse(_Frozen):
    """One fuel burned in the month. Carbon as NCV x carbon per unit heat, or as element carbon (CN-COMB [S])."""

    fuel: str
    consumption: Quantity
    ncv: NCV | None = None
    carbon_per_heat: CarbonPerHeat | None = None
    carbon_content: CarbonContent | None = None
    oxidation_rate: Fraction

    @field_validator("fuel")
    @classmethod
    def _known_fuel(cls, fuel: str) -> str:
        if fuel not in FUELS:
            raise ValueError(f"unknown fuel {fuel!r}; known fuels: {', '.join(FUELS)}")
        return fuel

    @field_validator("consumption", "ncv", "carbon_content")
    @classmethod
    def _fits_family(cls, p: Param | None, info: ValidationInfo) -> Param | None:
        fuel = FUELS.get(info.data.get("fuel", ""))
        if fuel is None or p is None:
            return p
        unit = _FAMILY_UNIT[fuel.family]
        name = str(info.field_name)
        per = {"consumption": unit, "ncv": f"GJ/{unit}", "carbon_content": f"tC/{unit}"}[name]
        _expect_unit(p, PARAMETERS[f"fuel.{name}"], per, f"a {fuel.family} fuel ({info.data['fuel']})")
        if name == "ncv" and p.value is not None:
            lo, hi = NCV_PLAUSIBLE[fuel.family]
            if not lo <= p.value <= hi:
                raise ValueError(f"{p.value:g} {per} is outside the plausible {lo:g}-{hi:g} {per} for "
                                 f"{fuel.family} fuels")
        return p

    @field_validator("oxidation_rate")
    @classmethod
    def _plausible_oxidation(cls, p: Param) -> Param:
        lo, hi = OXIDATION_PLAUSIBLE
        if p.value is not None and not lo <= p.value <= hi:
            raise ValueError(f"oxidation rate {p.value:g} is outside the plausible {lo:g}-{hi:g}")
        return p

    @model_validator(mode="after")
    def _one_carbon_method(self) -> FuelUse:
        if self.carbon_per_heat is not None and self.carbon_content is not None:
            raise ValueError("give carbon_per_heat (with ncv) or carbon_content (element carbon), not both")
        if self.carbon_per_heat is None and self.carbon_content is None:
            raise ValueError("missing field: carbon_per_heat (with ncv) or carbon_content (element carbon)")
        if self.carbon_per_heat is not None and self.ncv is None:
            raise ValueError("missing field: ncv (carbon_per_heat is per unit of heat)")
        return self


class CementData(_Frozen):
    """Clinker-based process CO2 with the kiln-dust and bypass-dust terms (``CN-CEM-PROC`` [S]) and raw-meal
    organic carbon (``CN-CEM-TOC`` [U]); see docs/sources.md."""

    clinker_output: Mass
    clinker_cao: Fraction
    clinker_mgo: Fraction
    noncarbonate_cao: FractionOrMass
    noncarbonate_mgo: FractionOrMass
    raw_meal_consumption: Mass | None = None
    raw_meal_toc: Fraction | None = None
    raw_meal_contains_coal_gangue: bool = False  # selects the 0.3 % TOC default instead of 0.1 % (CN-CEM-TOC [U])
    # kiln dust (窑头粉尘) and bypass dust (旁路放风粉尘) leaving the kiln system in the month [t]: calcined like
    # clinker, so they add to the clinker tonnage of the carbonate term (CN-CEM-PROC [S]); absent = none left
    kiln_dust: Mass | None = None
    bypass_dust: Mass | None = None

    @field_validator("noncarbonate_cao", "noncarbonate_mgo")
    @classmethod
    def _within_clinker(cls, p: Param, info: ValidationInfo) -> Param:
        oxide = str(info.field_name).removeprefix("noncarbonate_")
        total, clinker = info.data.get(f"clinker_{oxide}"), info.data.get("clinker_output")
        if p.value is None or total is None or total.value is None or clinker is None or clinker.value is None:
            return p
        if p.unit == "fraction":
            share = p.value
        elif clinker.value > 0:
            share = p.value / clinker.value
        elif p.value > 0:
            raise ValueError(f"{p.value:g} t of non-carbonate {oxide.upper()} with zero clinker_output")
        else:
            share = 0.0
        if share > total.value:
            raise ValueError(f"non-carbonate {oxide.upper()} ({share:g} of clinker) exceeds clinker_{oxide} "
                             f"({total.value:g})")
        return p

    @model_validator(mode="after")
    def _raw_meal_pair(self) -> CementData:
        if (self.raw_meal_consumption is None) != (self.raw_meal_toc is None):
            raise ValueError("missing field: give raw_meal_consumption and raw_meal_toc together (or neither)")
        cao, mgo = self.clinker_cao.value, self.clinker_mgo.value
        if cao is not None and mgo is not None and cao + mgo > 1:
            raise ValueError("clinker_cao + clinker_mgo exceed 1")
        return self


class MaterialFlow(_Frozen):
    """One carbon-bearing input or output of a steel plant's carbon balance (CN-STEEL-CB [S])."""

    material: str
    quantity: Quantity
    carbon_content: CarbonContent

    @field_validator("material")
    @classmethod
    def _known_material(cls, material: str) -> str:
        if material not in MATERIALS:
            raise ValueError(f"unknown material {material!r}; known materials: {', '.join(MATERIALS)}")
        return material

    @field_validator("quantity", "carbon_content")
    @classmethod
    def _fits_phase(cls, p: Param, info: ValidationInfo) -> Param:
        m = MATERIALS.get(info.data.get("material", ""))
        if m is not None:
            unit = _FAMILY_UNIT[m.phase]
            name = str(info.field_name)
            _expect_unit(p, PARAMETERS[f"material.{name}"], unit if name == "quantity" else f"tC/{unit}",
                         f"a {m.phase} material ({info.data['material']})")
        return p


class SteelData(_Frozen):
    """Carbon balance: carbon in inputs - carbon in outputs (CN-STEEL-CB [S])."""

    materials: list[MaterialFlow] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SteelData:
        _no_duplicates([m.material for m in self.materials], "material")
        return self


class AluminiumData(_Frozen):
    """Anode CO2, limestone calcination CO2, and PFC by the slope or the overvoltage method (docs/accounting.md).

    PFC: the slope method needs ``anode_effect_minutes`` and ``slope_cf4`` (``CN-AL-PFC`` [S]); the overvoltage
    method ``overvoltage_coefficient``, ``anode_effect_overvoltage`` and ``current_efficiency`` (``MRR-AIV-8B``
    [P]). A report gives one method's parameters, not both. ``c2f6_cf4_ratio`` serves both.
    """

    cell_technology: CellTechnology
    aluminium_output: Mass
    net_anode_consumption: SpecificMass  # t anode / t Al (see docs/accounting.md on the reference's label)
    anode_sulphur: Fraction
    anode_ash: Fraction
    anode_effect_minutes: AEM | None = None
    slope_cf4: Slope | None = None
    overvoltage_coefficient: OvervoltageCoefficient | None = None
    anode_effect_overvoltage: Voltage | None = None
    current_efficiency: Fraction | None = None
    c2f6_cf4_ratio: Ratio
    limestone_consumption: Mass | None = None  # limestone calcined in the month [t] (CN-AL-LIME [S])
    limestone_factor: CO2PerMass | None = None  # t CO2 per t limestone

    @field_validator("current_efficiency")
    @classmethod
    def _plausible_efficiency(cls, p: Param | None) -> Param | None:
        lo, hi = CURRENT_EFFICIENCY_PLAUSIBLE
        if p is not None and p.value is not None and not lo < p.value <= hi:
            raise ValueError(f"current efficiency {p.value:g} is outside the plausible {lo:g}-{hi:g} "
                             f"(for a percentage use unit '%')")
        return p

    @model_validator(mode="after")
    def _anode_carbon(self) -> AluminiumData:
        s, a = self.anode_sulphur.value, self.anode_ash.value
        if s is not None and a is not None and s + a >= 1:
            raise ValueError("anode_sulphur + anode_ash leave no carbon (their sum must be below 1)")
        slope = {"anode_effect_minutes": self.anode_effect_minutes, "slope_cf4": self.slope_cf4}
        overvoltage = {"overvoltage_coefficient": self.overvoltage_coefficient,
                       "anode_effect_overvoltage": self.anode_effect_overvoltage,
                       "current_efficiency": self.current_efficiency}
        given = {name for name, p in (slope | overvoltage).items() if p is not None}
        if given & set(slope) and given & set(overvoltage):
            raise ValueError(f"PFC: give the slope method ({', '.join(slope)}) or the overvoltage method "
                             f"({', '.join(overvoltage)}), not both")
        method = slope if given & set(slope) or not given else overvoltage
        missing = [name for name, p in method.items() if p is None]
        if missing:
            raise ValueError(f"missing field: {', '.join(missing)} (PFC by the "
                             f"{'slope' if method is slope else 'overvoltage'} method)")
        if (self.limestone_consumption is None) != (self.limestone_factor is None):
            raise ValueError("missing field: give limestone_consumption and limestone_factor together (or neither)")
        return self


class PowerData(_Frozen):
    """Generation; power-sector CO2 is fuel combustion (CN-COMB [S])."""

    gross_generation: Energy
    net_generation: Energy | None = None

    @model_validator(mode="after")
    def _net_below_gross(self) -> PowerData:
        g, n = self.gross_generation.value, self.net_generation.value if self.net_generation else None
        if g is not None and n is not None and n > g:
            raise ValueError(f"net_generation {n:g} MWh exceeds gross_generation {g:g} MWh")
        return self


def _no_duplicates(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"{what} {i!r} appears twice")
        seen.add(i)


class AccountingReport(_Frozen):
    """One emitter's self-reported accounting figures for one month (for one source, or the whole entity)."""

    entity_id: Identifier
    source_id: Identifier | None = None  # stack/unit the figures belong to; None = the whole entity
    month: str = Field(description="Reporting month, YYYY-MM (the entity's local time).")
    sector: Sector
    fuels: list[FuelUse] = Field(default_factory=list)
    cement: CementData | None = None
    steel: SteelData | None = None
    aluminium: AluminiumData | None = None
    power: PowerData | None = None

    @field_validator("month")
    @classmethod
    def _month(cls, month: str) -> str:
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise ValueError(f"month must be YYYY-MM, got {month!r}")
        return month

    @model_validator(mode="after")
    def _sector_section(self) -> AccountingReport:
        for s in Sector:
            if s is not self.sector and getattr(self, s.value) is not None:
                raise ValueError(f"a {self.sector.value} report has no {s.value} section")
        if getattr(self, self.sector.value) is None:
            raise ValueError(f"missing field: {self.sector.value} (a {self.sector.value} report needs its section)")
        _no_duplicates([f.fuel for f in self.fuels], "fuel")
        if self.steel is not None:
            both = {f.fuel for f in self.fuels} & {m.material for m in self.steel.materials}
            if both:
                raise ValueError(f"{sorted(both)} in both fuels and the carbon balance would be counted twice")
        return self

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.entity_id, self.source_id, self.month)
