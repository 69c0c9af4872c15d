"""Units of the accounting parameters, and :class:`Param`, a value with its unit and basis.

Only the units declared per parameter kind (:data:`UNITS`) are accepted; values are converted to the kind's
canonical unit at validation (exact integer ratios), so everything downstream sees one unit per parameter.
"""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# --- units --------------------------------------------------------------------------------------

#: Parameter kind -> accepted unit -> (canonical unit, numerator, denominator): canonical = value x num / den.
#: Exact integer ratios so that 99 % becomes exactly 0.99.
UNITS: MappingProxyType[str, dict[str, tuple[str, int, int]]] = MappingProxyType(
    {
        "quantity": {
            "t": ("t", 1, 1), "kg": ("t", 1, 1000), "10^4Nm3": ("10^4Nm3", 1, 1), "Nm3": ("10^4Nm3", 1, 10_000),
        },
        "mass": {"t": ("t", 1, 1), "kg": ("t", 1, 1000)},
        "ncv": {
            "GJ/t": ("GJ/t", 1, 1), "MJ/kg": ("GJ/t", 1, 1), "kJ/kg": ("GJ/t", 1, 1000),
            "GJ/10^4Nm3": ("GJ/10^4Nm3", 1, 1), "MJ/Nm3": ("GJ/10^4Nm3", 10, 1), "kJ/Nm3": ("GJ/10^4Nm3", 1, 100),
        },
        "carbon_per_heat": {"tC/GJ": ("tC/GJ", 1, 1), "tC/TJ": ("tC/GJ", 1, 1000), "kgC/GJ": ("tC/GJ", 1, 1000)},
        "carbon_content": {"tC/t": ("tC/t", 1, 1), "%": ("tC/t", 1, 100), "tC/10^4Nm3": ("tC/10^4Nm3", 1, 1)},
        "fraction": {"fraction": ("fraction", 1, 1), "%": ("fraction", 1, 100)},
        # Non-carbonate CaO/MgO: a mass fraction of clinker, or the month's mass (CN-CEM-PROC).
        "fraction_or_mass": {
            "fraction": ("fraction", 1, 1), "%": ("fraction", 1, 100), "t": ("t", 1, 1), "kg": ("t", 1, 1000),
        },
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


def _in(kind: str) -> AfterValidator:
    """The validator that checks a :class:`Param` against ``kind`` and converts it to its canonical unit."""
    return AfterValidator(functools.partial(_canonical, kind))


#: A :class:`Param` of each kind, checked and converted at validation.
Quantity = Annotated[Param, _in("quantity")]
Mass = Annotated[Param, _in("mass")]
NCV = Annotated[Param, _in("ncv")]
CarbonPerHeat = Annotated[Param, _in("carbon_per_heat")]
CarbonContent = Annotated[Param, _in("carbon_content")]
Fraction = Annotated[Param, _in("fraction")]
FractionOrMass = Annotated[Param, _in("fraction_or_mass")]
SpecificMass = Annotated[Param, _in("specific_mass")]
Energy = Annotated[Param, _in("energy")]
AEM = Annotated[Param, _in("aem")]
Slope = Annotated[Param, _in("slope")]
Ratio = Annotated[Param, _in("ratio")]
CO2PerMass = Annotated[Param, _in("co2_per_mass")]
Voltage = Annotated[Param, _in("voltage")]
OvervoltageCoefficient = Annotated[Param, _in("overvoltage_coefficient")]


def _expect_unit(p: Param | None, kind: str, unit: str, why: str) -> None:
    if p is not None and p.unit is not None and p.unit != unit:
        fits = [u for u, (canon, _, _) in UNITS[kind].items() if canon == unit]
        raise ValueError(f"a value in {p.unit} does not fit {why}; use one of {fits}")
