"""Hourly CO2 emissions per stack: validated hourly channel means -> standard dry concentration, standard
dry flow, and mass, as dense ``(source, hour)`` arrays.

Chain (HJ 212-2017 App. D, ``cems-standards.md`` §1.11 and §3): hourly means of every channel
(Eq. 24) -> CO2 to mg/m³ at standard state (Eq. 18 or 20) on a dry basis (Eq. 19) -> actual wet flow
from velocity (Eq. 29-30) or a flow meter -> standard dry flow (Eq. 31) -> mass rate (Eq. 33) ->
the hour's mass. An operating hour whose inputs are not all valid has no mass (NaN, ``missing``) and
goes to substitution; a stopped hour (flag F majority, :mod:`.policy`) emits nothing and is not
missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from schemas.site import EmissionSource

from .aggregate import HOUR_NS, PeriodTable
from .standardise import (
    MOLAR_MASS_G_MOL,
    ReferenceConditions,
    actual_to_standard,
    actual_wet_flow_m3_h,
    duct_velocity,
    mass_rate_kg_h,
    standard_dry_flow_m3_h,
    ppm_to_mg_m3,
    vol_pct_to_mg_m3,
    wet_to_dry,
)

__all__ = ["HourlyEmissions", "StackLayout", "hourly_emissions", "pivot_hours"]

_NONE = -1
ROLES = ("co2", "moisture", "temperature", "static_pressure", "ambient_pressure", "velocity", "flow")
_ROLE_OF_QUANTITY = {
    "a05001": "co2",
    "a01014": "moisture",
    "a01012": "temperature",
    "a01013": "static_pressure",
    "a01006": "ambient_pressure",
    "a01011": "velocity",
    "a00000": "flow",
}
# Multipliers to the kernel's units: concentrations as measured, pressure Pa, temperature °C,
# moisture volume fraction, flow m³/h. (K -> °C is an offset, handled separately.)
_TO_KERNEL_UNIT = {"kPa": 1000.0, "Pa": 1.0, "degC": 1.0, "%": 1.0, "m/s": 1.0, "m3/s": 3600.0, "m3/h": 1.0}


@dataclass(frozen=True)
class StackLayout:
    """For each of ``n`` stacks: which series carries each role, in which unit, and the duct constants.

    Series indices are the caller's numbering of (source, channel) pairs; -1 = not measured.
    """

    series: dict[str, np.ndarray]  # role -> int64 [n]
    units: dict[str, tuple[str, ...]]  # role -> unit of each stack's channel ("" when absent)
    duct_area_m2: np.ndarray  # [n]; NaN when flow is metered directly
    velocity_field_coefficient: np.ndarray  # Kv [n], HJ 212 Eq. (29)
    default_ambient_pressure_pa: np.ndarray  # [n], used where no a01006 channel exists
    co2_basis: tuple[Literal["dry", "wet"], ...]
    co2_conditions: tuple[Literal["standard", "actual"], ...]  # for mass-based CO2 units only

    @property
    def n(self) -> int:
        return int(self.duct_area_m2.size)

    @classmethod
    def from_sources(
        cls,
        sources: list[EmissionSource],
        series_of: dict[tuple[str, str], int],
        *,
        kv: float = 1.0,
        ambient_pressure_pa: float = 101_325.0,
        co2_basis: Literal["dry", "wet"] = "dry",
        co2_conditions: Literal["standard", "actual"] = "standard",
    ) -> StackLayout:
        """Derive roles from the HJ 212 quantity codes of each source's channels (site model)."""
        n = len(sources)
        series = {r: np.full(n, _NONE, dtype=np.int64) for r in ROLES}
        units = {r: [""] * n for r in ROLES}
        for i, src in enumerate(sources):  # per source and channel: configuration, not readings
            for ch in src.channels:
                role = _ROLE_OF_QUANTITY.get(ch.quantity)
                if role is None:
                    continue
                if series[role][i] != _NONE:
                    raise ValueError(f"source {src.id!r} has two {role} channels; say which one to use")
                series[role][i] = series_of[(src.id, ch.id)]
                units[role][i] = ch.unit
            if series["co2"][i] == _NONE:
                raise ValueError(f"source {src.id!r} has no CO2 (a05001) channel")
            if series["flow"][i] == _NONE and (series["velocity"][i] == _NONE or src.duct_area_m2 is None):
                raise ValueError(f"source {src.id!r} needs a flow channel, or a velocity channel and duct_area_m2")
        return cls(
            series=series,
            units={r: tuple(u) for r, u in units.items()},
            duct_area_m2=np.array([s.duct_area_m2 or np.nan for s in sources], dtype=np.float64),
            velocity_field_coefficient=np.full(n, kv),
            default_ambient_pressure_pa=np.full(n, ambient_pressure_pa),
            co2_basis=(co2_basis,) * n,
            co2_conditions=(co2_conditions,) * n,
        )


@dataclass(frozen=True, eq=False)
class HourlyEmissions:
    """Dense ``[source, hour]`` arrays for hours ``start_ns + h * HOUR_NS``."""

    start_ns: int
    co2_mg_m3: np.ndarray  # standard dry CO2 concentration [mg/m³]
    flow_m3_h: np.ndarray  # standard dry flow Qsnh [m³/h]
    co2_kg: np.ndarray  # CO2 mass of the hour [kg]: 0 when stopped, NaN when missing
    operating: np.ndarray  # the source ran (not stopped)
    measured: np.ndarray  # operating and every input valid
    missing: np.ndarray  # operating but not measured: needs substitution
    reference: str

    @property
    def n_hours(self) -> int:
        return int(self.co2_kg.shape[1])


def pivot_hours(hours: PeriodTable, n_series: int, start_ns: int, n_hours: int):
    """Hour records -> dense ``[series, hour]`` (mean, valid, stopped, present) grids."""
    if hours.period_ns != HOUR_NS:
        raise ValueError("pivot_hours needs hour records")
    h = (hours.start_ns - start_ns) // HOUR_NS
    keep = (h >= 0) & (h < n_hours) & (hours.series < n_series)
    s, h = hours.series[keep], h[keep]
    mean = np.full((n_series, n_hours), np.nan)
    valid = np.zeros((n_series, n_hours), dtype=bool)
    stopped = np.zeros((n_series, n_hours), dtype=bool)
    present = np.zeros((n_series, n_hours), dtype=bool)
    mean[s, h], valid[s, h], stopped[s, h], present[s, h] = hours.mean[keep], hours.valid[keep], hours.stopped[keep], True
    return mean, valid, stopped, present


def _role(grid: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Rows of ``grid`` for each stack; NaN/False rows where the role is not measured."""
    out = grid[np.where(series >= 0, series, 0)]
    fill = np.nan if grid.dtype.kind == "f" else False
    out[series < 0] = fill
    return out


def _scale(units: tuple[str, ...]) -> np.ndarray:
    return np.array([_TO_KERNEL_UNIT.get(u, 1.0) for u in units])[:, None]


def hourly_emissions(
    hours: PeriodTable, n_series: int, layout: StackLayout, start_ns: int, n_hours: int, ref: ReferenceConditions
) -> HourlyEmissions:
    """Standardise and compute CO2 mass for every stack and hour in ``[start_ns, start_ns + n_hours h)``."""
    mean, valid, stopped, present = pivot_hours(hours, n_series, start_ns, n_hours)
    sr, u = layout.series, layout.units

    def val(role):
        return _role(mean, sr[role]) * _scale(u[role])

    def ok(role):
        return _role(valid, sr[role])

    temp_c = val("temperature") - np.where(np.array(u["temperature"]) == "K", 273.15, 0.0)[:, None]
    static_pa = val("static_pressure")
    ambient_pa = np.where(sr["ambient_pressure"][:, None] >= 0, val("ambient_pressure"),
                          layout.default_ambient_pressure_pa[:, None])
    ambient_ok = np.where(sr["ambient_pressure"][:, None] >= 0, ok("ambient_pressure"), True)
    xsw = val("moisture") / 100.0  # a01014 is in %

    # CO2 -> mg/m3 at standard state (Eq. 20 for volume units, Eq. 18 for mass units at stack conditions)
    co2 = val("co2")
    co2_unit = np.array(u["co2"])[:, None]
    m_co2 = MOLAR_MASS_G_MOL["a05001"]
    with np.errstate(invalid="ignore", divide="ignore"):
        c_std = np.select(
            [co2_unit == "%", co2_unit == "ppm", co2_unit == "g/m3"],
            [vol_pct_to_mg_m3(co2, m_co2, ref), ppm_to_mg_m3(co2, m_co2, ref), co2 * 1000.0],
            co2,
        )
        actual = (np.array(layout.co2_conditions) == "actual")[:, None] & ~np.isin(co2_unit, ["%", "ppm"])
        c_std = np.where(actual, actual_to_standard(c_std, temp_c, static_pa, ambient_pa, ref), c_std)
        wet = (np.array(layout.co2_basis) == "wet")[:, None]
        c_dry = np.where(wet, wet_to_dry(c_std, xsw), c_std)

        # flow: metered (actual, m3/h after unit scaling) or velocity x area x Kv (Eq. 29-30), then Eq. 31
        metered = (sr["flow"] >= 0)[:, None]
        q_actual = np.where(
            metered,
            val("flow"),
            actual_wet_flow_m3_h(duct_velocity(val("velocity"), layout.velocity_field_coefficient[:, None]),
                                 layout.duct_area_m2[:, None]),
        )
        q_std = standard_dry_flow_m3_h(q_actual, temp_c, static_pa, ambient_pa, xsw, ref)
        rate = mass_rate_kg_h(c_dry, q_std)  # Eq. (33), kg/h; one hour -> kg

    flow_ok = np.where(metered, ok("flow"), ok("velocity"))
    inputs_ok = ok("co2") & flow_ok & ok("temperature") & ok("static_pressure") & ok("moisture") & ambient_ok
    measured_ok = inputs_ok & np.isfinite(rate)
    # Stopped only on evidence (F readings); a stack that sent nothing at all is missing, not stopped.
    operating = ~(_role(present, sr["co2"]) & _role(stopped, sr["co2"]))
    measured = operating & measured_ok
    return HourlyEmissions(
        start_ns=start_ns,
        co2_mg_m3=np.where(measured, c_dry, np.nan),
        flow_m3_h=np.where(measured, q_std, np.nan),
        co2_kg=np.where(measured, rate, np.where(operating, np.nan, 0.0)),
        operating=operating,
        measured=measured,
        missing=operating & ~measured,
        reference=ref.name,
    )
