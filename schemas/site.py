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

from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .configfile import load_config
from .quantities import QUANTITIES

__all__ = ["AmbientPressure", "Channel", "EmissionSource", "Entity", "ExcludedCO2", "Hj212Link", "MassInputs",
           "OperatingEvidence", "Region", "Sector", "load_site", "site_json_schema", "standard_atmosphere_pa"]

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="1-64 characters: letters, digits, '_', '.', '-'; starts with a letter or digit.",
    ),
]


ChannelBasis = Literal["dry", "wet", "actual_wet", "standard_dry", "standard_wet"]
_BASES: dict[str, tuple[str, ...]] = {
    "a05001": ("dry", "wet"),
    "a19001": ("dry", "wet"),
    "a00000": ("actual_wet", "standard_dry", "standard_wet"),
}


#: Quantities a value entered by hand (flag S) may never stand in for (docs/sources.md HJ212-T8-S).
_MEASURED_ONLY = frozenset({"a05001", "a00000", "a01011"})


class Sector(StrEnum):
    """Sectors of China's national ETS (power since 2021; steel, cement, aluminium since 2025)."""

    power = "power"
    steel = "steel"
    cement = "cement"
    aluminium = "aluminium"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


def _unique_ids(items: Iterable[_Identified], what: str, owner: str) -> None:
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

    basis: ChannelBasis | None = Field(
        default=None,
        description="Gas basis of the values. CO2 (a05001) and O2 (a19001): 'dry' or 'wet'. Flow (a00000): "
                    "'actual_wet' (stack conditions), 'standard_dry' (标干, what most Chinese dataloggers send) or "
                    "'standard_wet'. Required for CO2 and flow channels of a stack: never assumed.")
    manual_values: Literal["invalid", "valid"] = Field(
        default="invalid",
        description="Readings flagged S (a value entered by hand, HJ 212-2017 Table 8): not measurements, so invalid "
                    "by default; 'valid' lets an auxiliary parameter set at the datalogger (moisture, pressure, "
                    "temperature, O2) count. Never for CO2, flow or velocity, which must be measured.")
    conditions: Literal["standard", "actual"] = Field(
        default="standard",
        description="For a CO2 mass concentration (mg/m3, g/m3): at standard state, as the unit means in HJ 212, "
                    "or at actual stack conditions.")

    @field_validator("unit")
    @classmethod
    def _unit_fits_quantity(cls, unit: str, info: ValidationInfo) -> str:
        q = QUANTITIES.get(info.data.get("quantity", ""))  # absent when the quantity itself was invalid
        if q is not None and unit not in q.units:
            raise ValueError(f"unit {unit!r} is not valid for {q.code} ({q.name}); use one of {list(q.units)}")
        return unit

    @model_validator(mode="after")
    def _basis_fits_quantity(self) -> Channel:
        allowed = _BASES.get(self.quantity, ())
        if self.basis is not None and self.basis not in allowed:
            what = f"one of {list(allowed)}" if allowed else "no basis (only CO2, O2 and flow channels have one)"
            raise ValueError(f"basis {self.basis!r} does not fit {self.quantity}; it takes {what}")
        if self.manual_values == "valid" and self.quantity in _MEASURED_ONLY:
            raise ValueError(f"manual_values 'valid' is refused for {self.quantity}: a value entered by hand is not a "
                             f"measurement of the CO2 or the flow")
        if self.conditions == "actual" and not (self.quantity == "a05001" and self.unit in ("mg/m3", "g/m3")):
            raise ValueError("conditions 'actual' applies to a CO2 mass concentration (mg/m3, g/m3) only")
        return self


class AmbientPressure(_Frozen):
    """Where the barometric pressure Ba at the CEMS comes from (HJ 212 App. D Eq. 18, 31): exactly one of a
    channel of the source, a constant, or the site's altitude (standard atmosphere, ``docs/sources.md`` ISA-P)."""

    channel: Identifier | None = Field(default=None, description="Id of an a01006 channel of this source.")
    kpa: float | None = Field(default=None, ge=50.0, le=110.0, description="Constant barometric pressure [kPa].")
    altitude_m: float | None = Field(default=None, ge=-500.0, le=6000.0,
                                     description="Altitude of the measurement plane above sea level [m].")

    @model_validator(mode="after")
    def _exactly_one(self) -> AmbientPressure:
        given = [k for k in ("channel", "kpa", "altitude_m") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of channel, kpa or altitude_m (got {given or 'none'})")
        return self

    @property
    def constant_pa(self) -> float | None:
        """The constant pressure [Pa], or None when it is measured."""
        if self.kpa is not None:
            return self.kpa * 1000.0
        if self.altitude_m is not None:
            return standard_atmosphere_pa(self.altitude_m)
        return None


def standard_atmosphere_pa(altitude_m: float) -> float:
    """Barometric pressure of the standard atmosphere at ``altitude_m`` [Pa] (troposphere):
    ``p = 101325 (1 - 0.0065 h / 288.15) ** 5.25588`` (ISO 2533 / ICAO, ``docs/sources.md`` ISA-P).
    2,000 m gives 79,495 Pa."""
    return 101_325.0 * float((1.0 - 0.0065 * altitude_m / 288.15) ** 5.25588)


class OperatingEvidence(_Frozen):
    """Process evidence that the source runs: the hour mean of the channel's recorded values (normal or flagged F,
    since dataloggers flag F while recording during a shutdown) is above ``above``, in the channel's unit."""

    channel: Identifier = Field(description="A channel of this source: flow, velocity, temperature, a fuel or "
                                            "production rate, or a run-status signal (1 running, 0 stopped).")
    above: float = Field(description="Threshold in the channel's unit; the source runs when the hour mean is above.")


#: Default operating evidence (``docs/sources.md`` OP-DEFAULT): the flow monitor shows more than 1 m/s.
DEFAULT_OPERATING_VELOCITY_M_S = 1.0


# --- HJ 212 link (issue 16) ---------------------------------------------------------------------------------------

#: MinInterval values HJ 212-2017 Table 4 allows [min] (docs/sources.md HJ212-T4).
HJ212_MIN_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)


class Hj212Link(_Frozen):
    """The source's HJ 212 datalogger (数采仪): how its frames map onto the source's channels, and which of its
    data feed the figures. The MN identifies the datalogger to a receiver (the gateway's or ``cems hj212 serve``);
    its password lives with the receiver (a file or the environment), never here."""

    mn: str = Field(pattern=r"^[0-9A-Za-z_.-]{1,24}$", description=(
        "The datalogger's MN. HJ 212-2017 asks for 24 hex characters; fielded dataloggers send shorter ones "
        "(e.g. 'LD130133000015'), so 1-24 letters, digits, '_', '.' or '-' are accepted."))
    figures: Literal["minute", "realtime"] = Field(default="minute", description=(
        "What feeds the hourly figures: 'minute' (2051 minute means, each a minute of its own) or 'realtime' "
        "(2011 values as instantaneous samples; the minute rule then needs >= 12 of them a minute, i.e. "
        "RtdInterval <= 5 s). The other uploads (and 2061/2031) are received and kept, but not counted."))
    min_interval_min: int = Field(default=1, description=(
        "The datalogger's MinInterval [min] (HJ 212-2017 Table 4: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30): the "
        "period each 2051 record covers."))
    factors: dict[str, Identifier] = Field(default_factory=dict, description=(
        "HJ 212 factor code -> channel id, where the code is not the channel's own quantity code (e.g. a process "
        "code g13001 for a flow channel, or two channels of one quantity). Other channels are fed by their "
        "quantity code."))
    unflagged: Literal["invalid", "valid"] = Field(default="invalid", description=(
        "A value sent without a -Flag field: 'invalid' (counted as D, the default: nothing counts as normal "
        "without a flag saying so) or 'valid' (as N, for dataloggers that never send flags)."))

    @field_validator("min_interval_min")
    @classmethod
    def _allowed_interval(cls, v: int) -> int:
        if v not in HJ212_MIN_INTERVALS:
            raise ValueError(f"MinInterval {v} min is not one HJ 212 allows {list(HJ212_MIN_INTERVALS)}")
        return v

    @field_validator("factors")
    @classmethod
    def _factor_codes(cls, v: dict[str, str]) -> dict[str, str]:
        for code in v:
            if not (1 <= len(code) <= 16 and code.isascii() and code.isalnum()):
                raise ValueError(f"factor code {code!r} is not 1-16 letters and digits")
        return v

    @property
    def period_s(self) -> int:
        """The averaging period that feeds the figures [s]: 0 for real-time samples, else MinInterval."""
        return 0 if self.figures == "realtime" else 60 * self.min_interval_min

    def channel_of_factor(self, source: EmissionSource) -> dict[str, str]:
        """Factor code -> channel id for every channel of ``source``: the explicit ``factors`` first, then each
        remaining channel under its quantity code."""
        out = dict(self.factors)
        mapped = set(out.values())
        for c in source.channels:
            if c.id not in mapped:
                out.setdefault(c.quantity, c.id)
        return out


def _check_hj212(src: EmissionSource) -> None:
    link = src.hj212
    if link is None:
        return
    ids = {c.id for c in src.channels}
    seen: dict[str, str] = {}
    for code, channel in link.factors.items():
        if channel not in ids:
            raise ValueError(f"hj212.factors maps {code} to channel {channel!r}, which source {src.id!r} does not have")
        if channel in seen:
            raise ValueError(f"hj212.factors feeds channel {channel!r} from two codes ({seen[channel]}, {code})")
        seen[channel] = code
    by_quantity: dict[str, list[str]] = {}
    for c in src.channels:
        if c.id not in seen:
            by_quantity.setdefault(c.quantity, []).append(c.id)
    for q, chans in by_quantity.items():
        if len(chans) > 1:
            raise ValueError(f"channels {chans} share quantity {q}: say which HJ 212 code feeds each in hj212.factors")
        if q in link.factors:
            raise ValueError(f"factor {q} feeds channel {link.factors[q]!r} and is also the quantity of channel "
                             f"{chans[0]!r}: map that channel explicitly too")

# --- end of the HJ 212 link ------------------------------------------------------------------------------------
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
    """A stack (measured by CEMS) or a process source (accounted by calculation).

    A stack's mass calculation (HJ 212-2017 App. D Eq. 18-33) needs its CO2 concentration and its flue-gas flow on
    one standard dry basis. What that takes depends on how each is measured: an actual wet flow (a velocity
    channel, or a flow channel with basis ``actual_wet``) needs the flue-gas temperature, static pressure,
    barometric pressure and moisture; a standard wet flow needs the moisture; a standard dry flow needs nothing
    more; a wet CO2 needs the moisture. Each may be a channel or, for static pressure, barometric pressure and
    moisture, a configured constant. Nothing falls back to a built-in value: a stack that lacks an input its
    calculation needs is refused at load, naming the quantity.
    """

    id: Identifier
    name: str = Field(min_length=1)
    kind: Literal["stack", "process"] = "stack"
    duct_area_m2: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Duct cross-section at the flow measurement plane [m2] (HJ 212 App. D Eq. 30).")
    velocity_field_coefficient: float | None = Field(
        default=None, ge=0.5, le=2.0,
        description="Kv, the velocity-field coefficient from the comparison test (HJ 212 App. D Eq. 29: duct mean "
                    "velocity = Kv x measured point velocity). Required when the flow comes from a velocity channel.")
    ambient_pressure: AmbientPressure | None = Field(
        default=None, description="Barometric pressure Ba: a channel, a constant or the altitude. Without it, an "
                                  "a01006 channel of the source is used; needed for an actual wet flow.")
    static_pressure_kpa: float | None = Field(
        default=None, ge=-50.0, le=50.0,
        description="Constant flue-gas static (gauge) pressure Ps [kPa] where the source has no a01013 channel.")
    moisture_pct: float | None = Field(
        default=None, ge=0.0, lt=100.0,
        description="Constant flue-gas moisture Xsw [% by volume] where the source has no a01014 channel.")
    operating: list[OperatingEvidence] | None = Field(
        default=None, min_length=1,
        description="How the centre tells that the source runs: it runs in an hour when any of these says so, and is "
                    "stopped when at least one has data and none says so; with no data at all the hour is missing. "
                    "Default: the velocity channel above 1 m/s, or a flow channel above 1 m/s x duct area.")
    load_channel: Identifier | None = Field(
        default=None, description="Channel of the unit's load (e.g. xe0001 MW), for the Part 75 load bins.")
    co2_ambient_below_pct: float = Field(
        default=0.1, gt=0.0, le=5.0,
        description="A valid hour mean CO2 below this [% by volume] while the source runs looks like ambient air "
                    "(about 0.04 %): a probe in air or a bypass. Raises a data-quality flag.")
    channels: list[Channel] = Field(default_factory=list)
    hj212: Hj212Link | None = Field(default=None, description=(
        "The source's HJ 212 datalogger, when its data arrive as HJ 212 frames (issue 16): MN, factor mapping, "
        "which data feed the figures."))
    # -- CO2 the accounting excludes (reconciliation, issue 13) --
    excluded_co2: Annotated[list[ExcludedCO2], AfterValidator(_excluded_shares)] = Field(
        default_factory=list, description="CO2 this stack's CEMS measures that the accounting excludes.")

    @model_validator(mode="after")
    def _unique_channels(self) -> EmissionSource:
        _unique_ids(self.channels, "channel", f"source {self.id!r}")
        _check_hj212(self)
        return self

    @model_validator(mode="after")
    def _complete_for_mass(self) -> EmissionSource:
        ids = {c.id: c for c in self.channels}
        for ref, what in ([(e.channel, "operating evidence") for e in self.operating or ()]
                          + [(self.load_channel, "load_channel")]
                          + [((self.ambient_pressure.channel if self.ambient_pressure else None), "ambient_pressure")]):
            if ref is not None and ref not in ids:
                raise ValueError(f"{what} names channel {ref!r}, which source {self.id!r} does not have")
        barometer = self.ambient_pressure.channel if self.ambient_pressure is not None else None
        if barometer is not None and ids[barometer].quantity != "a01006":
            raise ValueError(f"ambient_pressure.channel {barometer!r} is not an a01006 (barometric pressure) channel")
        if self.kind == "stack":
            missing = self.mass_inputs().problems
            if missing:
                raise ValueError(f"stack {self.id!r} cannot give a CO2 mass: " + "; ".join(missing))
        return self

    def channel(self, channel_id: str) -> Channel:
        return next(c for c in self.channels if c.id == channel_id)

    def channel_of(self, quantity: str) -> Channel | None:
        """The source's channel of ``quantity``; refused at load when there are two (say which one to use)."""
        found = [c for c in self.channels if c.quantity == quantity]
        return found[0] if found else None

    def mass_inputs(self) -> MassInputs:
        """What this stack's mass calculation uses, resolved from its channels and constants."""
        return MassInputs.of(self)

    def operating_evidence(self) -> tuple[OperatingEvidence, ...]:
        """The configured evidence, or the default: the flow monitor above about 1 m/s (``docs/sources.md``
        OP-DEFAULT). Empty when there is no default to apply (no flow monitor, or a flow without a duct area)."""
        if self.operating is not None:
            return tuple(self.operating)
        v = self.channel_of("a01011")
        if v is not None:
            return (OperatingEvidence(channel=v.id, above=DEFAULT_OPERATING_VELOCITY_M_S),)
        q = self.channel_of("a00000")
        if q is not None and self.duct_area_m2 is not None:
            per_s = DEFAULT_OPERATING_VELOCITY_M_S * self.duct_area_m2
            return (OperatingEvidence(channel=q.id, above=per_s * (3600.0 if q.unit == "m3/h" else 1.0)),)
        return ()


class MassInputs(NamedTuple):
    """A stack's mass calculation inputs: channel ids (None when not measured) and constants (None when not given),
    and every input the calculation needs but does not have (``problems``)."""

    co2: str | None
    co2_basis: str | None
    flow: str | None  # a00000 channel, or None when the flow comes from velocity
    velocity: str | None
    flow_basis: str | None  # "actual_wet" | "standard_dry" | "standard_wet"
    temperature: str | None
    static_pressure: str | None
    static_pressure_pa: float | None
    ambient_pressure: str | None
    ambient_pressure_pa: float | None
    moisture: str | None
    moisture_pct: float | None
    problems: tuple[str, ...]

    @classmethod
    def of(cls, src: EmissionSource) -> MassInputs:
        problems: list[str] = []
        one = _one_per_quantity(src, problems)
        co2, flow, velocity = one("a05001"), one("a00000"), one("a01011")
        temperature, static, moisture = one("a01012"), one("a01013"), one("a01014")
        barometer = one("a01006")
        ambient_ch = (src.ambient_pressure.channel if src.ambient_pressure and src.ambient_pressure.channel
                      else (barometer.id if barometer and src.ambient_pressure is None else None))
        ambient_pa = src.ambient_pressure.constant_pa if src.ambient_pressure else None
        if co2 is None:
            problems.append("no CO2 (a05001) channel")
        elif co2.basis is None:
            problems.append(f"CO2 channel {co2.id!r} must state its basis: dry or wet")
        basis = _flow_basis(src, flow, velocity, problems)
        need_moisture = basis in ("actual_wet", "standard_wet") or (co2 is not None and co2.basis == "wet")
        if need_moisture and moisture is None and src.moisture_pct is None:
            problems.append("the calculation needs the flue-gas moisture: add an a01014 channel or moisture_pct")
        if basis == "actual_wet" or (co2 is not None and co2.conditions == "actual"):
            why = "an actual wet flow" if basis == "actual_wet" else "a CO2 at actual conditions"
            problems += _state_problems(why, temperature is not None,
                                        static is not None or src.static_pressure_kpa is not None,
                                        ambient_ch is not None or ambient_pa is not None)
        if not src.operating_evidence() and src.kind == "stack":
            problems.append("no default operating rule applies (no velocity channel, and no flow channel with a "
                            "duct area): say how to tell that the source runs with operating: [{channel, above}]")
        return cls(
            co2=co2.id if co2 else None, co2_basis=co2.basis if co2 else None,
            flow=flow.id if flow else None, velocity=velocity.id if velocity and flow is None else None,
            flow_basis=basis, temperature=temperature.id if temperature else None,
            static_pressure=static.id if static else None,
            static_pressure_pa=None if static or src.static_pressure_kpa is None else src.static_pressure_kpa * 1000.0,
            ambient_pressure=ambient_ch, ambient_pressure_pa=None if ambient_ch else ambient_pa,
            moisture=moisture.id if moisture else None,
            moisture_pct=None if moisture else src.moisture_pct, problems=tuple(problems))


def _one_per_quantity(src: EmissionSource, problems: list[str]) -> Callable[[str], Channel | None]:
    """The source's channel of a quantity (the first; two of a quantity the mass uses is a problem)."""
    by_q: dict[str, list[Channel]] = {}
    for c in src.channels:
        by_q.setdefault(c.quantity, []).append(c)
    for q in ("a05001", "a00000", "a01011", "a01012", "a01013", "a01014", "a01006"):
        if len(by_q.get(q, ())) > 1:
            problems.append(f"two {QUANTITIES[q].name} ({q}) channels {[c.id for c in by_q[q]]}: keep one")

    def one(q: str) -> Channel | None:
        return by_q[q][0] if by_q.get(q) else None

    return one


def _flow_basis(src: EmissionSource, flow: Channel | None, velocity: Channel | None, problems: list[str]) -> str | None:
    """The basis of the stack's flow: the flow channel's, actual wet from velocity, None without either."""
    if flow is not None:
        if flow.basis is None:
            problems.append(f"flow channel {flow.id!r} must state its basis: actual_wet, standard_dry "
                            f"(标干) or standard_wet")
        return flow.basis
    if velocity is not None:
        if src.duct_area_m2 is None:
            problems.append(f"the flow comes from velocity channel {velocity.id!r}: give duct_area_m2")
        if src.velocity_field_coefficient is None:
            problems.append(f"the flow comes from velocity channel {velocity.id!r}: give "
                            f"velocity_field_coefficient (Kv from the comparison test; 1.0 if none was made)")
        return "actual_wet"
    problems.append("no flow (a00000) or velocity (a01011) channel")
    return None


def _state_problems(why: str, temperature: bool, static: bool, ambient: bool) -> list[str]:
    """What a conversion from actual conditions lacks (HJ212-D18, HJ212-D31): temperature and both pressures."""
    out = []
    if not temperature:
        out.append(f"{why} needs the flue-gas temperature: add an a01012 channel")
    if not static:
        out.append(f"{why} needs the flue-gas static pressure: add an a01013 channel or static_pressure_kpa")
    if not ambient:
        out.append(f"{why} needs the barometric pressure: add an a01006 channel or ambient_pressure "
                   f"(channel, kpa or altitude_m)")
    return out


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
        mns: dict[str, str] = {}
        for s in self.sources:  # HJ 212: one MN, one source
            if s.hj212 is not None and mns.setdefault(s.hj212.mn, s.id) != s.id:
                raise ValueError(f"MN {s.hj212.mn!r} is given to sources {mns[s.hj212.mn]!r} and {s.id!r}")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def source(self, source_id: str) -> EmissionSource:
        return next(s for s in self.sources if s.id == source_id)


def load_site(path: str | Path) -> Entity:
    """Load and validate a site file (YAML or JSON); raises :class:`~schemas.errors.ConfigError`."""
    return load_config(path, Entity)


def site_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a site file, for editors and non-Python tools."""
    schema = Entity.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CEMS site (entity -> emission sources -> channels)",
        **{k: v for k, v in schema.items() if k != "title"},
    }
