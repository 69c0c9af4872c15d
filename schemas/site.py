"""Site model: entity -> emission sources (stacks) -> channels.

An *entity* is a key emitter of the national carbon market (one legal/reporting unit, one sector).
Its *emission sources* are stacks measured by a CEMS or process sources accounted by calculation.
Each source has *channels*: one measured quantity in one unit (an HJ 212 factor code, see
:mod:`schemas.quantities`). Reporting periods (hour, day, month) follow the entity's time zone;
timestamps on the wire stay UTC (``ARCHITECTURE.md``, "Contracts").

Load a file with :func:`load_site`; the JSON Schema for editors is ``schemas/json/site.schema.json``
(regenerate with ``cems schema export``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .configfile import load_config
from .quantities import QUANTITIES

__all__ = ["Channel", "EmissionSource", "Entity", "ExcludedCO2", "Region", "Sector", "load_site", "site_json_schema"]

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="1-64 characters: letters, digits, '_', '.', '-'; starts with a letter or digit.",
    ),
]


class Sector(StrEnum):
    """Sectors of China's national ETS (power since 2021; steel, cement, aluminium since 2025)."""

    power = "power"
    steel = "steel"
    cement = "cement"
    aluminium = "aluminium"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique_ids(items, what: str, owner: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"{what} id {item.id!r} appears twice in {owner}")
        seen.add(item.id)


class Channel(_Frozen):
    """One measured quantity of a source, in one unit."""

    id: Identifier = Field(description="Channel id, unique within its source, e.g. 'co2_dry'.")
    quantity: str = Field(description="HJ 212-2017 Table B.2 factor code (e.g. a05001 CO2) or project extension code.")
    unit: str = Field(description="Unit of the values, one of the quantity's allowed units (schemas.quantities).")
    description: str = ""

    @field_validator("quantity")
    @classmethod
    def _known_quantity(cls, code: str) -> str:
        if code not in QUANTITIES:
            raise ValueError(f"unknown quantity code {code!r}; known codes: {', '.join(sorted(QUANTITIES))}")
        return code

    @field_validator("unit")
    @classmethod
    def _unit_fits_quantity(cls, unit: str, info: ValidationInfo) -> str:
        q = QUANTITIES.get(info.data.get("quantity", ""))  # absent when the quantity itself was invalid
        if q is not None and unit not in q.units:
            raise ValueError(f"unit {unit!r} is not valid for {q.code} ({q.name}); use one of {list(q.units)}")
        return unit


class ExcludedCO2(_Frozen):
    """CO2 a stack's CEMS measures that the accounting excludes, declared so the reconciliation compares like with
    like (docs/reconciliation.md): the biomass share of a fuel (biomass, or the biomass fraction of an
    alternative fuel), or the CO2 of a flue-gas desulphurisation sorbent where the guideline leaves it out."""

    kind: Literal["biomass", "desulphurisation"] = Field(description="What the excluded CO2 is.")
    share: float = Field(gt=0, allow_inf_nan=False, description="The excluded share, in ``unit``.")
    unit: Literal["fraction", "%"] = Field(default="fraction", description="Unit of ``share``.")
    of: Literal["stack_co2", "fuel_co2"] = Field(
        description="stack_co2: a share of the CO2 this stack's CEMS measures; fuel_co2: a share of the CO2 of the "
                    "fuel burnt here (fossil and biomass), of which the report's combustion CO2 is the fossil rest.")
    uncertainty: float = Field(ge=0, allow_inf_nan=False,
                               description="Relative expanded uncertainty of the share (95 %, fraction of it).")
    basis: str = Field(min_length=1, description="Where the share comes from (analysis, design figure, permit).")

    @model_validator(mode="after")
    def _a_share_below_one(self) -> ExcludedCO2:
        fraction = self.fraction
        if not 0 < fraction < 1:
            hint = " (for a percentage use unit '%')" if self.unit == "fraction" and 1 <= self.share < 100 else ""
            raise ValueError(f"share {self.share:g} {self.unit} is not between 0 and 1{hint}")
        return self

    @property
    def fraction(self) -> float:
        return self.share / 100 if self.unit == "%" else self.share


def _excluded_shares(items: list[ExcludedCO2]) -> list[ExcludedCO2]:
    for of in ("stack_co2", "fuel_co2"):
        total = sum(e.fraction for e in items if e.of == of)
        if total >= 1:
            raise ValueError(f"the excluded shares of {of} add up to {total:g}: nothing would be left to account")
    return items


class EmissionSource(_Frozen):
    """A stack (measured by CEMS) or a process source (accounted by calculation)."""

    id: Identifier
    name: str = Field(min_length=1)
    kind: Literal["stack", "process"] = "stack"
    duct_area_m2: float | None = Field(
        default=None, gt=0, description="Duct cross-section at the flow measurement plane [m2] (HJ 75 Eq. 30)."
    )
    channels: list[Channel] = Field(default_factory=list)
    # -- CO2 the accounting excludes (reconciliation, issue 13) --
    excluded_co2: Annotated[list[ExcludedCO2], AfterValidator(_excluded_shares)] = Field(
        default_factory=list, description="CO2 this stack's CEMS measures that the accounting excludes.")

    @model_validator(mode="after")
    def _unique_channels(self) -> EmissionSource:
        _unique_ids(self.channels, "channel", f"source {self.id!r}")
        return self

    def channel(self, channel_id: str) -> Channel:
        return next(c for c in self.channels if c.id == channel_id)


class Region(_Frozen):
    """Where the entity reports in the national-provincial-municipal review."""

    province: str = Field(min_length=1, description="Province name or GB/T 2260 code, e.g. '320000'.")
    municipality: str = Field(default="", description="Municipality name or GB/T 2260 code, e.g. '320100'.")


class Entity(_Frozen):
    """A key emitter: the root of a site file."""

    id: Identifier
    name: str = Field(min_length=1)
    sector: Sector
    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone of the reporting periods.")
    region: Region | None = None
    sources: list[EmissionSource] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            near = sorted(z for z in available_timezones() if z.split("/")[-1].lower() == tz.split("/")[-1].lower())
            hint = f"; did you mean {near[0]!r}?" if near else " (use an IANA name such as 'Asia/Shanghai')"
            raise ValueError(f"unknown time zone {tz!r}{hint}") from None
        return tz

    @model_validator(mode="after")
    def _unique_sources(self) -> Entity:
        _unique_ids(self.sources, "source", f"entity {self.id!r}")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def source(self, source_id: str) -> EmissionSource:
        return next(s for s in self.sources if s.id == source_id)


def load_site(path: str | Path) -> Entity:
    """Load and validate a site file (YAML or JSON); raises :class:`~schemas.errors.ConfigError`."""
    return load_config(path, Entity)


def site_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of a site file, for editors and non-Python tools."""
    schema = Entity.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CEMS site (entity -> emission sources -> channels)",
        **{k: v for k, v in schema.items() if k != "title"},
    }
