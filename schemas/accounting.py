"""Self-reported monthly accounting data of China ETS emitters (issue 6: reconciliation).

One :class:`AccountingReport` is one emitter's figures for one month, for the whole entity or one of
its sources. Every numeric parameter is a :class:`Param`: a value, its unit, and whether the plant
*measured* it or took a *default*. The reconciliation with CEMS needs that basis: accounting agrees
with CEMS within about 2.5 % when every parameter is measured and only within about 20 % when defaults
are used (docs/sources.md STUDY-CN7 [S]); the reconciliation's tolerance counts each input's uncertainty.

Units: only the units declared per parameter kind (:data:`UNITS`) are accepted; values are converted
to the kind's canonical unit at validation, so everything downstream sees one unit per parameter.
A ``default`` parameter may leave its value out; :func:`fill_defaults` takes it from a versioned
defaults file (``schemas/defaults/<version>.yaml``, :func:`load_defaults`) and records whether that
default is confirmed. Where the project's reference has no number, the file has none either, and a
report must give a measured value.

Parameters are named ``<section>.<field>`` (``fuel.ncv``, ``cement.clinker_cao``): the same names
serve the CSV import (:mod:`ingest.accounting`) and the defaults file. Formulas: ``docs/accounting.md``
and :mod:`streams.kernels.accounting`.
"""

from __future__ import annotations

import functools
import math
import re
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal, NamedTuple, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .configfile import parse_config
from .errors import CemsError, ConfigError
from .site import Identifier, Sector

__all__ = [
    "CELL_TECHNOLOGIES",
    "DEFAULTS_VERSION",
    "FUELS",
    "MATERIALS",
    "PARAMETERS",
    "SETTINGS",
    "UNITS",
    "AccountingDefaults",
    "AccountingReport",
    "AluminiumData",
    "CementData",
    "DefaultValue",
    "FuelUse",
    "MeasuredUncertainty",
    "MaterialFlow",
    "Param",
    "PowerData",
    "ReportError",
    "SteelData",
    "UNCERTAINTY_VERSION",
    "UncertaintyPolicy",
    "fill_defaults",
    "load_defaults",
    "load_uncertainty",
    "validate_report",
]

#: The defaults version :func:`load_defaults` and the importers use unless told otherwise.
DEFAULTS_VERSION = "accounting-cn-2026"
#: The uncertainty policy :func:`load_uncertainty` uses unless told otherwise.
UNCERTAINTY_VERSION = "uncertainty-cn-2026"


class ReportError(CemsError, ValueError):
    """A report that does not validate. ``problems``: ``(location, message)`` pairs, locations as in
    pydantic errors (``("fuels", 0, "ncv")``), so an importer can point at the row or line."""

    def __init__(self, problems: list[tuple[tuple, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in self.problems))


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(report)"


# --- units --------------------------------------------------------------------------------------

#: Parameter kind -> accepted unit -> (canonical unit, numerator, denominator): canonical = value x num / den.
#: Exact integer ratios so that 99 % becomes exactly 0.99.
UNITS: MappingProxyType = MappingProxyType(
    {
        "quantity": {"t": ("t", 1, 1), "kg": ("t", 1, 1000), "10^4Nm3": ("10^4Nm3", 1, 1), "Nm3": ("10^4Nm3", 1, 10_000)},
        "mass": {"t": ("t", 1, 1), "kg": ("t", 1, 1000)},
        "ncv": {
            "GJ/t": ("GJ/t", 1, 1), "MJ/kg": ("GJ/t", 1, 1), "kJ/kg": ("GJ/t", 1, 1000),
            "GJ/10^4Nm3": ("GJ/10^4Nm3", 1, 1), "MJ/Nm3": ("GJ/10^4Nm3", 10, 1), "kJ/Nm3": ("GJ/10^4Nm3", 1, 100),
        },
        "carbon_per_heat": {"tC/GJ": ("tC/GJ", 1, 1), "tC/TJ": ("tC/GJ", 1, 1000), "kgC/GJ": ("tC/GJ", 1, 1000)},
        "carbon_content": {"tC/t": ("tC/t", 1, 1), "%": ("tC/t", 1, 100), "tC/10^4Nm3": ("tC/10^4Nm3", 1, 1)},
        "fraction": {"fraction": ("fraction", 1, 1), "%": ("fraction", 1, 100)},
        # Non-carbonate CaO/MgO: a mass fraction of clinker, or the month's mass (CN-CEM-PROC).
        "fraction_or_mass": {"fraction": ("fraction", 1, 1), "%": ("fraction", 1, 100), "t": ("t", 1, 1), "kg": ("t", 1, 1000)},
        "specific_mass": {"t/t": ("t/t", 1, 1), "kg/t": ("t/t", 1, 1000)},
        "energy": {"MWh": ("MWh", 1, 1), "kWh": ("MWh", 1, 1000), "GWh": ("MWh", 1000, 1), "10^4kWh": ("MWh", 10, 1)},
        "aem": {"min/cell-day": ("min/cell-day", 1, 1)},
        "slope": {"kgCF4/tAl/(min/cell-day)": ("kgCF4/tAl/(min/cell-day)", 1, 1)},
        "ratio": {"kgC2F6/kgCF4": ("kgC2F6/kgCF4", 1, 1)},
        "co2_per_mass": {"tCO2/t": ("tCO2/t", 1, 1), "kgCO2/t": ("tCO2/t", 1, 1000)},
        "voltage": {"mV": ("mV", 1, 1), "V": ("mV", 1000, 1)},
        "overvoltage_coefficient": {"kgCF4/tAl/mV": ("kgCF4/tAl/mV", 1, 1)},
    }
)

#: Parameter name (CSV ``parameter`` column, defaults file) -> kind. ``fuel.*`` rows name a fuel in
#: ``item``, ``material.*`` rows a steel carbon-balance material.
PARAMETERS: MappingProxyType = MappingProxyType(
    {
        "fuel.consumption": "quantity",
        "fuel.ncv": "ncv",
        "fuel.carbon_per_heat": "carbon_per_heat",
        "fuel.carbon_content": "carbon_content",
        "fuel.oxidation_rate": "fraction",
        "material.quantity": "quantity",
        "material.carbon_content": "carbon_content",
        "cement.clinker_output": "mass",
        "cement.clinker_cao": "fraction",
        "cement.clinker_mgo": "fraction",
        "cement.noncarbonate_cao": "fraction_or_mass",
        "cement.noncarbonate_mgo": "fraction_or_mass",
        "cement.raw_meal_consumption": "mass",
        "cement.raw_meal_toc": "fraction",
        "cement.kiln_dust": "mass",
        "cement.bypass_dust": "mass",
        "aluminium.aluminium_output": "mass",
        "aluminium.net_anode_consumption": "specific_mass",
        "aluminium.anode_sulphur": "fraction",
        "aluminium.anode_ash": "fraction",
        "aluminium.anode_effect_minutes": "aem",
        "aluminium.slope_cf4": "slope",
        "aluminium.c2f6_cf4_ratio": "ratio",
        "aluminium.overvoltage_coefficient": "overvoltage_coefficient",
        "aluminium.anode_effect_overvoltage": "voltage",
        "aluminium.current_efficiency": "fraction",
        "aluminium.limestone_consumption": "mass",
        "aluminium.limestone_factor": "co2_per_mass",
        "power.gross_generation": "energy",
        "power.net_generation": "energy",
    }
)
#: Non-numeric parameters (a CSV row with a value and no unit or basis).
SETTINGS = frozenset({"aluminium.cell_technology", "cement.raw_meal_contains_coal_gangue"})


# --- catalogues ---------------------------------------------------------------------------------


class Fuel(NamedTuple):
    family: Literal["solid", "liquid", "gas"]
    name: str


#: Fuel catalogue. Solid and liquid fuels are counted in t, gases in 10^4 Nm3 (CN-COMB [S]).
FUELS: MappingProxyType = MappingProxyType(
    {
        "raw_coal": Fuel("solid", "原煤 raw coal"),
        "washed_coal": Fuel("solid", "洗精煤 washed coal"),
        "coal_gangue": Fuel("solid", "煤矸石 coal gangue"),
        "coke": Fuel("solid", "焦炭 coke"),
        "petroleum_coke": Fuel("solid", "石油焦 petroleum coke"),
        "fuel_oil": Fuel("liquid", "燃料油 fuel oil"),
        "diesel": Fuel("liquid", "柴油 diesel"),
        "gasoline": Fuel("liquid", "汽油 gasoline"),
        "lpg": Fuel("liquid", "液化石油气 LPG"),
        "natural_gas": Fuel("gas", "天然气 natural gas"),
        "coke_oven_gas": Fuel("gas", "焦炉煤气 coke oven gas"),
        "blast_furnace_gas": Fuel("gas", "高炉煤气 blast furnace gas"),
        "converter_gas": Fuel("gas", "转炉煤气 converter gas (LDG)"),
    }
)
_FAMILY_UNIT = {"solid": "t", "liquid": "t", "gas": "10^4Nm3"}
#: Plausible NCV per fuel family, GJ per canonical unit. Project choice: wide physical bounds (coal gangue
#: about 8 GJ/t, CN-COMB [S]; oils about 40-47 GJ/t; blast furnace gas about 30, natural gas about 390
#: GJ/10^4 Nm3), not a regulatory rule.
NCV_PLAUSIBLE = MappingProxyType({"solid": (5.0, 35.0), "liquid": (35.0, 50.0), "gas": (20.0, 500.0)})
#: Plausible carbon oxidation rate. Project choice (no source in the reference): below 0.8 a report is
#: more likely wrong than a furnace that bad; one plant's value is 0.99 (CN-COMB [U]).
OXIDATION_PLAUSIBLE = (0.8, 1.0)
#: Plausible current efficiency of a reduction cell (fraction). Project choice, a wide bound meant to catch a
#: percentage typed as a fraction (94 % entered as 0.94 %): modern cells run at about 0.9-0.96.
CURRENT_EFFICIENCY_PLAUSIBLE = (0.8, 1.0)


class Material(NamedTuple):
    direction: Literal["input", "output"]
    phase: Literal["solid", "gas"]
    name: str


#: Steel carbon-balance materials (CN-STEEL-CB [S]: inputs coking coal, coke, PCI coal, limestone/dolomite,
#: scrap, iron ore, electrodes; outputs products, exported by-product gases, tar, benzol).
MATERIALS: MappingProxyType = MappingProxyType(
    {
        "coking_coal": Material("input", "solid", "炼焦煤 coking coal"),
        "coke": Material("input", "solid", "焦炭 coke (purchased)"),
        "pci_coal": Material("input", "solid", "喷吹煤 PCI coal"),
        "natural_gas": Material("input", "gas", "天然气 natural gas"),
        "limestone": Material("input", "solid", "石灰石 limestone"),
        "dolomite": Material("input", "solid", "白云石 dolomite"),
        "electrodes": Material("input", "solid", "电极 electrodes"),
        "scrap": Material("input", "solid", "废钢 scrap"),
        "purchased_pig_iron": Material("input", "solid", "外购生铁 purchased pig iron"),
        "iron_ore": Material("input", "solid", "铁矿石 iron ore"),
        "crude_steel": Material("output", "solid", "粗钢 crude steel"),
        "steel_products": Material("output", "solid", "钢材 steel products"),
        "pig_iron_sold": Material("output", "solid", "外销生铁 pig iron sold"),
        "tar": Material("output", "solid", "焦油 tar"),
        "benzol": Material("output", "solid", "粗苯 benzol"),
        "bfg_export": Material("output", "gas", "外供高炉煤气 blast furnace gas exported"),
        "cog_export": Material("output", "gas", "外供焦炉煤气 coke oven gas exported"),
        "ldg_export": Material("output", "gas", "外供转炉煤气 converter gas exported"),
    }
)

#: Reduction-cell technologies (IPCC 2006 Vol. 3 Ch. 4 categories; slope defaults exist in the
#: defaults file for CWPB and SWPB only, CN-AL-PFC [U]).
CellTechnology = Literal["CWPB", "SWPB", "VSS", "HSS"]
CELL_TECHNOLOGIES = get_args(CellTechnology)


# --- parameters ---------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Param(_Frozen):
    """A numeric parameter: value, unit, and whether the plant measured it or took a default.

    ``confirmed`` and ``default_version`` are set by :func:`fill_defaults` on defaults, never by a report.
    """

    value: float | None = Field(default=None, allow_inf_nan=False)
    unit: str | None = None
    basis: Literal["measured", "default"]
    confirmed: bool | None = None
    default_version: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Param:
        if self.value is None and self.basis == "measured":
            raise ValueError("missing value (only a 'default' parameter may leave it out)")
        if self.value is not None and not self.unit:
            raise ValueError("missing unit")
        if self.basis == "measured" and (self.confirmed is not None or self.default_version is not None):
            raise ValueError("confirmed/default_version describe defaults; a measured value has neither")
        return self


def _canonical(kind: str, p: Param) -> Param:
    """Check the unit against the kind, convert to the canonical unit, check the kind's range."""
    units = UNITS[kind]
    if p.unit is None:
        return p  # a default to be filled
    if p.unit not in units:
        raise ValueError(f"unit {p.unit!r} is not accepted here; use one of {list(units)}")
    canon, num, den = units[p.unit]
    if p.value is None:
        return p.model_copy(update={"unit": canon})
    value = p.value * num / den
    if value < 0:
        raise ValueError(f"{p.value} {p.unit} is negative")
    if canon == "fraction" and value > 1:
        hint = " (for a percentage use unit '%')" if p.unit == "fraction" and value <= 100 else ""
        raise ValueError(f"{p.value} {p.unit} is above 1{hint}")
    return p.model_copy(update={"value": value, "unit": canon})


@functools.cache
def _typed(kind: str):
    return Annotated[Param, AfterValidator(functools.partial(_canonical, kind))]


Quantity = _typed("quantity")
Mass = _typed("mass")
NCV = _typed("ncv")
CarbonPerHeat = _typed("carbon_per_heat")
CarbonContent = _typed("carbon_content")
Fraction = _typed("fraction")
FractionOrMass = _typed("fraction_or_mass")
SpecificMass = _typed("specific_mass")
Energy = _typed("energy")
AEM = _typed("aem")
Slope = _typed("slope")
Ratio = _typed("ratio")
CO2PerMass = _typed("co2_per_mass")
Voltage = _typed("voltage")
OvervoltageCoefficient = _typed("overvoltage_coefficient")


def _expect_unit(p: Param | None, kind: str, unit: str, why: str) -> None:
    if p is not None and p.unit is not None and p.unit != unit:
        fits = [u for u, (canon, _, _) in UNITS[kind].items() if canon == unit]
        raise ValueError(f"a value in {p.unit} does not fit {why}; use one of {fits}")


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
        per = {"consumption": unit, "ncv": f"GJ/{unit}", "carbon_content": f"tC/{unit}"}[info.field_name]
        kind = PARAMETERS[f"fuel.{info.field_name}"]
        _expect_unit(p, kind, per, f"a {fuel.family} fuel ({info.data['fuel']})")
        if info.field_name == "ncv" and p.value is not None:
            lo, hi = NCV_PLAUSIBLE[fuel.family]
            if not lo <= p.value <= hi:
                raise ValueError(f"{p.value:g} {per} is outside the plausible {lo:g}-{hi:g} {per} for {fuel.family} fuels")
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
        oxide = info.field_name.removeprefix("noncarbonate_")
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
            raise ValueError(f"non-carbonate {oxide.upper()} ({share:g} of clinker) exceeds clinker_{oxide} ({total.value:g})")
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
            _expect_unit(p, PARAMETERS[f"material.{info.field_name}"], unit if info.field_name == "quantity" else f"tC/{unit}",
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


# --- defaults -----------------------------------------------------------------------------------


class DefaultValue(_Frozen):
    """One default with its source. ``value: null`` records that no sourced default exists."""

    parameter: str
    item: str | None = None  # fuel/material id or qualifier (cell technology, coal_gangue); None = any
    sectors: list[Sector] | None = None  # None = every sector
    value: float | None = Field(allow_inf_nan=False)
    unit: str | None = None
    tag: Literal["P", "S", "U"]  # confidence tag (docs/sources.md)
    confirmed: bool
    source: str = Field(min_length=1)
    note: str = ""
    # relative expanded uncertainty of the default (95 %, fraction of the value) and where it comes from; the
    # reconciliation weights it by the CO2 the default carries (docs/reconciliation.md). None: not given
    # (older files), and the uncertainty policy's ``unsourced_default`` stands in
    uncertainty: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    uncertainty_tag: Literal["P", "S", "U"] | None = None
    uncertainty_source: str = ""

    @field_validator("parameter")
    @classmethod
    def _known_parameter(cls, name: str) -> str:
        if name not in PARAMETERS:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> DefaultValue:
        if self.tag != "P" and self.confirmed:
            raise ValueError(f"a [{self.tag}] source cannot give a confirmed default: confirmed means the value "
                             f"was read in a primary text [P]")
        if self.uncertainty is not None and (self.uncertainty_tag is None or not self.uncertainty_source):
            raise ValueError("an uncertainty needs uncertainty_tag and uncertainty_source")
        if self.value is not None:
            self.canonical()  # raises on a wrong unit or range
        catalogue = {"fuel": FUELS, "material": MATERIALS}.get(self.parameter.split(".")[0])
        if catalogue is not None and self.item is not None and self.item not in catalogue:
            raise ValueError(f"unknown item {self.item!r} for {self.parameter}")
        return self

    def canonical(self) -> Param:
        return _canonical(PARAMETERS[self.parameter], Param(value=self.value, unit=self.unit, basis="measured"))


class AccountingDefaults(_Frozen):
    """A versioned set of defaults (one file under ``schemas/defaults/``)."""

    version: str = Field(min_length=1)
    description: str = ""
    defaults: list[DefaultValue]

    @model_validator(mode="after")
    def _unique(self) -> AccountingDefaults:
        seen: set = set()
        for d in self.defaults:
            for s in d.sectors or [None]:
                key = (d.parameter, d.item, s)
                if key in seen:
                    raise ValueError(f"two defaults for {d.parameter} item {d.item} sector {s}")
                seen.add(key)
        return self

    def lookup(self, parameter: str, item: str | None, sector: Sector | str) -> DefaultValue | None:
        """The entry for ``parameter`` and ``item`` (else the one without item) that applies to ``sector``."""
        for want in (item, None) if item is not None else (None,):
            for d in self.defaults:
                if d.parameter == parameter and d.item == want and (d.sectors is None or sector in d.sectors):
                    return d
        return None


def _versioned_file(version: str, path: str | Path | None, model, prefix: str):
    """Parse ``schemas/defaults/<version>.yaml`` (or ``path``) into ``model``; the file's version must match."""
    if path is None:
        ref = resources.files("schemas").joinpath("defaults", f"{version}.yaml")
        if not ref.is_file():
            known = sorted(p.name.removesuffix(".yaml") for p in resources.files("schemas").joinpath("defaults").iterdir()
                           if p.name.startswith(prefix) and p.name.endswith(".yaml"))
            raise ConfigError(f"no {prefix.rstrip('-')} version {version!r}; available: {known}")
        text, source = ref.read_text(encoding="utf-8"), f"schemas/defaults/{version}.yaml"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    parsed = parse_config(text, model, source)
    if path is None and parsed.version != version:
        raise ConfigError(f"{source}: version: {parsed.version!r} does not match the file name")
    return parsed


@functools.cache
def load_defaults(version: str = DEFAULTS_VERSION, path: str | Path | None = None) -> AccountingDefaults:
    """The defaults of ``version`` (``schemas/defaults/<version>.yaml``), or of the file ``path``.

    Raises :class:`ConfigError` naming file, line and field; the file's ``version:`` must match.
    """
    return _versioned_file(version, path, AccountingDefaults, "accounting-")


# --- uncertainties of measured parameters -------------------------------------------------------


class MeasuredUncertainty(_Frozen):
    """The relative expanded uncertainty (95 %, fraction of the value) of a measured parameter."""

    parameter: str
    sectors: list[Sector] | None = None  # None = every sector
    value: float = Field(gt=0, allow_inf_nan=False)
    tag: Literal["P", "S", "U"]
    source: str = Field(min_length=1)  # docs/sources.md id(s)
    note: str = ""

    @field_validator("parameter")
    @classmethod
    def _known_parameter(cls, name: str) -> str:
        if name not in PARAMETERS:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}")
        return name


class UncertaintyPolicy(_Frozen):
    """A versioned set of uncertainties (``schemas/defaults/uncertainty-*.yaml``) for the reconciliation's
    tolerance: one per measured parameter that acts on the CO2, and the stand-in for a default without one
    of its own (defaults carry theirs in the defaults file)."""

    version: str = Field(min_length=1)
    description: str = ""
    unsourced_default: float = Field(gt=0, allow_inf_nan=False)
    unsourced_default_note: str = ""
    measured: list[MeasuredUncertainty]

    @model_validator(mode="after")
    def _complete(self) -> UncertaintyPolicy:
        seen: set = set()
        for m in self.measured:
            for sector in m.sectors or [None]:
                if (m.parameter, sector) in seen:
                    raise ValueError(f"two uncertainties for {m.parameter} sector {sector}")
                seen.add((m.parameter, sector))
        missing = [p for p in CO2_PARAMETERS if (p, None) not in seen]
        if missing:
            raise ValueError(f"no uncertainty (without sectors) for the CO2 parameters {missing}")
        return self

    def measured_uncertainty(self, parameter: str, sector: Sector | str) -> MeasuredUncertainty:
        """The entry for ``parameter`` that applies to ``sector`` (a sector's own entry first)."""
        for want in (sector, None):
            for m in self.measured:
                if m.parameter == parameter and (want in (m.sectors or [None])):
                    return m
        raise KeyError(f"{self.version}: no uncertainty for measured {parameter}")


#: The parameters that act on the calculated CO2 (a CEMS sees): each needs a measured uncertainty.
CO2_PARAMETERS = tuple(p for p in PARAMETERS if not p.startswith("power.") and p not in {
    "aluminium.anode_effect_minutes", "aluminium.slope_cf4", "aluminium.c2f6_cf4_ratio",
    "aluminium.overvoltage_coefficient", "aluminium.anode_effect_overvoltage", "aluminium.current_efficiency"})


@functools.cache
def load_uncertainty(version: str = UNCERTAINTY_VERSION, path: str | Path | None = None) -> UncertaintyPolicy:
    """The uncertainty policy ``version`` (``schemas/defaults/<version>.yaml``), or of the file ``path``."""
    return _versioned_file(version, path, UncertaintyPolicy, "uncertainty-")


# --- validation and defaults filling ------------------------------------------------------------


def _problems(exc: ValidationError, prefix: tuple = ()) -> list[tuple[tuple, str]]:
    out = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "missing field"
        out.append((prefix + tuple(err["loc"]), msg))
    return out


def _parts(report: AccountingReport):
    """(location, parameter section, item, model) of every part holding parameters."""
    for i, f in enumerate(report.fuels):
        yield ("fuels", i), "fuel", f.fuel, f
    if report.cement is not None:
        yield ("cement",), "cement", "coal_gangue" if report.cement.raw_meal_contains_coal_gangue else None, report.cement
    if report.steel is not None:
        for i, m in enumerate(report.steel.materials):
            yield ("steel", "materials", i), "material", m.material, m
    if report.aluminium is not None:
        yield ("aluminium",), "aluminium", report.aluminium.cell_technology, report.aluminium
    if report.power is not None:
        yield ("power",), "power", None, report.power


def fill_defaults(report: AccountingReport, defaults: AccountingDefaults) -> AccountingReport:
    """Fill every ``default`` parameter without a value from ``defaults`` and label each default.

    A default the plant stated itself keeps its value; it is labelled with the file's ``confirmed`` flag
    when it equals the file's default, else unconfirmed. Raises :class:`ReportError` listing every
    default that ``defaults`` lacks (the report must then give a measured value).
    """
    data = report.model_dump()
    problems, changed = [], False
    for loc, section, item, part in _parts(report):
        for name, p in part:
            if not isinstance(p, Param) or p.basis != "default":
                continue
            parameter = f"{section}.{name}"
            d = defaults.lookup(parameter, item, report.sector)
            target = data
            for key in loc:
                target = target[key]
            if p.value is None:
                if d is None or d.value is None:
                    of = f" for {item}" if item else ""
                    why = f" ({d.note})" if d is not None and d.note else ""
                    problems.append((loc + (name,), f"basis 'default' but {defaults.version} has no default for "
                                     f"{parameter}{of}{why}; give a measured value"))
                    continue
                c = d.canonical()
                target[name] = {"value": c.value, "unit": c.unit, "basis": "default",
                                "confirmed": d.confirmed, "default_version": defaults.version}
            else:
                same = d is not None and d.value is not None and d.canonical().unit == p.unit and math.isclose(
                    d.canonical().value, p.value, rel_tol=1e-9)
                target[name] = {**target[name], "confirmed": d.confirmed if same else False,
                                "default_version": defaults.version if same else None}
            changed = True
    if problems:
        raise ReportError(problems)
    if not changed:
        return report
    try:
        return AccountingReport.model_validate(data)  # re-run every check on the filled values
    except ValidationError as exc:
        raise ReportError(_problems(exc)) from None


def validate_report(data: object, defaults: AccountingDefaults | None = None) -> AccountingReport:
    """Validate one report (a mapping, as parsed from JSON) and fill its defaults.

    Raises :class:`ReportError` listing every problem with its location.
    """
    try:
        report = AccountingReport.model_validate(data)
    except ValidationError as exc:
        raise ReportError(_problems(exc)) from None
    return fill_defaults(report, defaults if defaults is not None else load_defaults())
