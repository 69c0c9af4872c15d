"""What a report may name: the parameters (by section: fuel, material, cement, aluminium, power), the fuels, the
steel carbon-balance materials and the cell technologies, (their plausible values: :mod:`.plausibility`)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Literal, NamedTuple, get_args

from pydantic import AfterValidator

PARAMETERS: MappingProxyType[str, str] = MappingProxyType(
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


def _known_parameter(name: str) -> str:
    if name not in PARAMETERS:
        raise ValueError(f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}")
    return name


#: A parameter name of :data:`PARAMETERS` (a table row of defaults or plausible ranges names one), refused otherwise
#: with the known names.
ParameterName = Annotated[str, AfterValidator(_known_parameter)]
#: Non-numeric parameters (a CSV row with a value and no unit or basis).
SETTINGS = frozenset({"aluminium.cell_technology", "cement.raw_meal_contains_coal_gangue"})

# --- catalogues ---------------------------------------------------------------------------------


class Fuel(NamedTuple):
    family: Literal["solid", "liquid", "gas"]
    name: str


#: Fuel catalogue. Solid and liquid fuels are counted in t, gases in 10^4 Nm3 (CN-COMB [S]).
FUELS: MappingProxyType[str, Fuel] = MappingProxyType(
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


class Material(NamedTuple):
    direction: Literal["input", "output"]
    phase: Literal["solid", "gas"]
    name: str


#: Steel carbon-balance materials (CN-STEEL-CB [S]: inputs coking coal, coke, PCI coal, limestone/dolomite,
#: scrap, iron ore, electrodes; outputs products, exported by-product gases, tar, benzol).
MATERIALS: MappingProxyType[str, Material] = MappingProxyType(
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

#: The parameters that act on the calculated CO2 (a CEMS sees): each needs a measured uncertainty.
CO2_PARAMETERS = tuple(p for p in PARAMETERS if not p.startswith("power.") and p not in {
    "aluminium.anode_effect_minutes", "aluminium.slope_cf4", "aluminium.c2f6_cf4_ratio",
    "aluminium.overvoltage_coefficient", "aluminium.anode_effect_overvoltage", "aluminium.current_efficiency"})
