"""Hourly CO2 emissions per stack: validated hourly channel means -> standard dry concentration, standard
dry flow, and mass, as dense ``(source, hour)`` arrays; and whether the source ran, from process evidence.

Chain (HJ 212-2017 App. D, ``docs/sources.md`` HJ212-D18 to HJ212-D33): hourly means of every channel (Eq. 24)
-> CO2 to mg/m³ at standard state (Eq. 20 for volume units; Eq. 18 for a mass concentration at stack
conditions) on a dry basis (Eq. 19 when measured wet) -> the flow on the same standard dry basis: from
velocity (Eq. 29-30) or a flow channel, converted by Eq. 31 when it is at actual wet conditions, by the moisture
alone when standard wet, not at all when it is already standard dry (标干) -> mass rate (Eq. 33) -> the hour's mass.

The concentration and the flow are judged valid separately (each needs its own inputs), so a regime that
substitutes them separately (EU MRR Art. 45(3)/(4), US Part 75 §75.35/§75.33(c)) gets the one that was measured.

**Operation comes from the process, never from an analyser's flag** (``docs/sources.md`` HJ212-T8-F): F means the
*instrument* stopped. A source runs in an hour when any of its operating evidence (flow or velocity, flue-gas
temperature, a fuel or production rate, a run-status signal: :meth:`schemas.site.EmissionSource.operating_evidence`)
has an hour mean of its recorded values above its threshold; it is stopped when at least one has values and none
is above; with no evidence at all the hour is missing (operating, not measured), never stopped. An operating hour
whose inputs are not all valid has no mass (NaN, ``missing``) and goes to substitution; a stopped hour emits
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.quantities import Flag
from schemas.site import EmissionSource

from .aggregate import HOUR_NS, PeriodTable
from .standardise import (
    MOLAR_MASS_G_MOL,
    ReferenceConditions,
    actual_to_standard,
    actual_wet_flow_m3_h,
    duct_velocity,
    mass_rate_kg_h,
    ppm_to_mg_m3,
    standard_dry_flow_m3_h,
    vol_pct_to_mg_m3,
    wet_to_dry,
)

__all__ = ["HourGrids", "HourlyEmissions", "StackLayout", "hourly_emissions", "pivot_hours"]

_NONE = -1
ROLES = ("co2", "moisture", "temperature", "static_pressure", "ambient_pressure", "velocity", "flow", "load")
# Multipliers to the kernel's units: concentrations as measured, pressure Pa, temperature as given (°C or K,
# handled apart), moisture %, flow m³/h.
_TO_KERNEL_UNIT = {"kPa": 1000.0, "Pa": 1.0, "m3/s": 3600.0, "m3/h": 1.0}
#: Share of an hour's CO2 readings flagged F, M or D above which the analyser counts as off while the source runs.
ANALYSER_OFF_SHARE = 0.5


@dataclass(frozen=True)
class StackLayout:
    """For each of ``n`` sources: which series carries each role, in which unit, the bases, the duct constants
    and the operating evidence. Built from the site model (:meth:`from_sources`), which has refused at load any
    stack whose calculation lacks an input, so nothing here falls back to a built-in value.

    Series indices are the caller's numbering of (source, channel) pairs; -1 = not measured. Constants are NaN
    where the value is measured (or not needed).
    """

    series: dict[str, np.ndarray]  # role -> int64 [n]
    units: dict[str, tuple[str, ...]]  # role -> unit of each source's channel ("" when absent)
    cems: np.ndarray  # bool [n]: a stack whose mass is measured (False: a process source, no CO2 mass)
    duct_area_m2: np.ndarray  # [n]; NaN when the flow is a flow channel
    velocity_field_coefficient: np.ndarray  # Kv [n], HJ 212 Eq. (29); NaN when not from velocity
    ambient_pressure_pa: np.ndarray  # [n] configured Ba (constant or altitude); NaN where a channel measures it
    static_pressure_pa: np.ndarray  # [n] configured Ps; NaN where a channel measures it
    moisture_pct: np.ndarray  # [n] configured Xsw [%]; NaN where a channel measures it
    co2_basis: tuple[str, ...]  # "dry" | "wet" | ""
    co2_conditions: tuple[str, ...]  # "standard" | "actual" (mass concentrations at stack conditions)
    flow_basis: tuple[str, ...]  # "actual_wet" | "standard_dry" | "standard_wet" | ""
    evidence_series: np.ndarray  # int64 [n, k]: operating-evidence series, -1 padded
    evidence_above: np.ndarray  # float [n, k]: their thresholds, in their channel's unit
    co2_ambient_pct: np.ndarray  # [n]: a valid CO2 below this [% by volume] while running looks like ambient air

    @property
    def n(self) -> int:
        return int(self.cems.size)

    @classmethod
    def from_sources(cls, sources: list[EmissionSource], series_of: dict[tuple[str, str], int]) -> StackLayout:
        """Roles, bases and constants from each source's site configuration (one loop per source: configuration,
        not readings)."""
        n = len(sources)
        series = {r: np.full(n, _NONE, dtype=np.int64) for r in ROLES}
        units = {r: [""] * n for r in ROLES}
        evidence = [src.operating_evidence() for src in sources]
        k = max([len(e) for e in evidence] + [1])
        ev_series, ev_above = np.full((n, k), _NONE, dtype=np.int64), np.full((n, k), np.nan)
        consts = {name: np.full(n, np.nan) for name in ("area", "kv", "ambient", "static", "moisture")}
        co2_basis, co2_cond, flow_basis = [""] * n, ["standard"] * n, [""] * n
        for i, src in enumerate(sources):
            for j, ev in enumerate(evidence[i]):
                ev_series[i, j], ev_above[i, j] = series_of[(src.id, ev.channel)], ev.above
            if src.kind != "stack":
                continue
            mi = src.mass_inputs()
            roles = {"co2": mi.co2, "moisture": mi.moisture, "temperature": mi.temperature,
                     "static_pressure": mi.static_pressure, "ambient_pressure": mi.ambient_pressure,
                     "velocity": mi.velocity, "flow": mi.flow, "load": src.load_channel}
            for role, channel_id in roles.items():
                if channel_id is not None:
                    series[role][i] = series_of[(src.id, channel_id)]
                    units[role][i] = src.channel(channel_id).unit
            if mi.co2 is None:  # refused when the site file is loaded; a hand-built source gets this
                raise ValueError(f"stack {src.id!r} has no CO2 channel (a05001)")
            co2 = src.channel(mi.co2)
            co2_basis[i], co2_cond[i], flow_basis[i] = mi.co2_basis or "", co2.conditions, mi.flow_basis or ""
            if mi.velocity is not None:
                consts["area"][i], consts["kv"][i] = src.duct_area_m2, src.velocity_field_coefficient
            for name, value in (("ambient", mi.ambient_pressure_pa), ("static", mi.static_pressure_pa),
                                ("moisture", mi.moisture_pct)):
                if value is not None:
                    consts[name][i] = value
        return cls(
            series=series, units={r: tuple(u) for r, u in units.items()},
            cems=np.array([s.kind == "stack" for s in sources], dtype=bool),
            duct_area_m2=consts["area"], velocity_field_coefficient=consts["kv"],
            ambient_pressure_pa=consts["ambient"], static_pressure_pa=consts["static"],
            moisture_pct=consts["moisture"], co2_basis=tuple(co2_basis), co2_conditions=tuple(co2_cond),
            flow_basis=tuple(flow_basis), evidence_series=ev_series, evidence_above=ev_above,
            co2_ambient_pct=np.array([s.co2_ambient_below_pct for s in sources], dtype=np.float64),
        )


@dataclass(frozen=True, eq=False)
class HourlyEmissions:
    """Dense ``[source, hour]`` arrays for hours ``start_ns + h * HOUR_NS``."""

    start_ns: int
    co2_mg_m3: np.ndarray  # standard dry CO2 concentration [mg/m³] where its own inputs are valid, else NaN
    flow_m3_h: np.ndarray  # standard dry flow Qsnh [m³/h] where its own inputs are valid, else NaN
    co2_kg: np.ndarray  # CO2 mass of the hour [kg]: 0 when stopped, NaN when missing
    load: np.ndarray  # hour mean of the load channel, in its unit; NaN where none
    operating: np.ndarray  # the source ran (process evidence), or nothing says it did not
    measured: np.ndarray  # operating and every input valid
    missing: np.ndarray  # operating but not measured: needs substitution
    analyser_off: np.ndarray  # running by process evidence while the CO2 analyser's readings were mostly F, M or D
    co2_ambient: np.ndarray  # running by process evidence while the valid CO2 was at ambient-air level
    reference: str

    @property
    def n_hours(self) -> int:
        return int(self.co2_kg.shape[1])


@dataclass(frozen=True, eq=False)
class HourGrids:
    """Closed hours of many series as dense ``[series, hour]`` grids."""

    mean: np.ndarray  # valid mean, NaN where not valid
    valid: np.ndarray
    present: np.ndarray  # the series has readings in the hour
    recorded_mean: np.ndarray  # mean of normal or F-flagged values (process evidence), NaN where none
    off_share: np.ndarray  # share of the hour's readings flagged F, M or D (NaN where no readings)


def pivot_hours(hours: PeriodTable, n_series: int, start_ns: int, n_hours: int) -> HourGrids:
    """Hour records -> dense ``[series, hour]`` grids.

    Parameters
    ----------
    hours : PeriodTable
        Closed hours [the series' unit].
    n_series : int
        Rows of the grid [1].
    start_ns : int
        Start of the first hour of the grid [ns since the epoch, UTC].
    n_hours : int
        Columns of the grid [1].

    Returns
    -------
    HourGrids
        Valid means [the series' unit], validity, presence, the recorded means (normal or F-flagged values: process
        evidence) [the series' unit] and the share of readings flagged F, M or D [fraction].

    References
    ----------
    docs/sources.md: HJ212-T8-F [P/project rule] (F-flagged values are evidence of operation, never valid means).
    """
    if hours.period_ns != HOUR_NS:
        raise ValueError("pivot_hours needs hour records")
    h = (hours.start_ns - start_ns) // HOUR_NS
    keep = (h >= 0) & (h < n_hours) & (hours.series < n_series)
    s, h = hours.series[keep], h[keep]
    mean = np.full((n_series, n_hours), np.nan)
    valid = np.zeros((n_series, n_hours), dtype=bool)
    present = np.zeros((n_series, n_hours), dtype=bool)
    recorded = np.full((n_series, n_hours), np.nan)
    off = np.full((n_series, n_hours), np.nan)
    flags = hours.sample_flags[keep]
    n = flags.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        off_share = (flags[:, Flag.F] + flags[:, Flag.M] + flags[:, Flag.D]) / np.where(n > 0, n, 1)
    mean[s, h], valid[s, h], present[s, h] = hours.mean[keep], hours.valid[keep], True
    recorded[s, h], off[s, h] = hours.recorded_mean[keep], off_share
    return HourGrids(mean, valid, present, recorded, off)


def _role(grid: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Rows of ``grid`` for each source; NaN/False rows where the role is not measured."""
    out = grid[np.where(series >= 0, series, 0)]
    fill = np.nan if grid.dtype.kind == "f" else False
    out[series < 0] = fill
    return out


def _scale(units: tuple[str, ...]) -> np.ndarray:
    return np.array([_TO_KERNEL_UNIT.get(u, 1.0) for u in units])[:, None]


def _running(g: HourGrids, layout: StackLayout) -> tuple[np.ndarray, np.ndarray]:
    """(the source runs by evidence, some evidence has values) per ``[source, hour]``."""
    n_hours = g.mean.shape[1]
    runs = np.zeros((layout.n, n_hours), dtype=bool)
    known = np.zeros((layout.n, n_hours), dtype=bool)
    for j in range(layout.evidence_series.shape[1]):  # a few evidence rules per source, not readings
        value = _role(g.recorded_mean, layout.evidence_series[:, j])
        has = np.isfinite(value)
        with np.errstate(invalid="ignore"):
            runs |= has & (value > layout.evidence_above[:, j][:, None])
        known |= has
    return runs, known


def hourly_emissions(
    hours: PeriodTable, n_series: int, layout: StackLayout, start_ns: int, n_hours: int, ref: ReferenceConditions
) -> HourlyEmissions:
    """Standardise and compute CO2 mass for every source and hour in ``[start_ns, start_ns + n_hours h)``.

    Parameters
    ----------
    hours : PeriodTable
        Closed hours of the series (their means in each channel's unit).
    n_series : int
        Number of series the layout numbers.
    layout : StackLayout
        Roles, bases and constants of each source.
    start_ns, n_hours : int
        The hours to compute [UTC ns since the epoch; count].
    ref : ReferenceConditions
        Standard state of the regime (HJ 212: 273 K, 101 325 Pa, 22.4 L/mol).

    Returns
    -------
    HourlyEmissions
        Concentration [mg/m³ standard dry], flow [m³/h standard dry], mass [kg], status masks.

    Notes
    -----
    A temperature channel in kelvin gives the absolute temperature as measured; one in °C gives ``T0 + t`` as
    the regime writes its formulas (HJ 212: 273 + t). Absolute pressure is Ba + Ps.

    References
    ----------
    ``docs/sources.md``: HJ212-D18, HJ212-D19, HJ212-D20, HJ212-D29, HJ212-D30, HJ212-D31, HJ212-D33 (formulas);
    HJ212-T8-F and OP-DEFAULT (operation from process evidence); AMBIENT-CO2 (ambient air CO2).
    """
    g = pivot_hours(hours, n_series, start_ns, n_hours)
    sr, u = layout.series, layout.units

    def measured_or(role: str, constant: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(value in kernel units, valid) of a role: the channel's hour mean, else the configured constant."""
        value, ok = _role(g.mean, sr[role]) * _scale(u[role]), _role(g.valid, sr[role])
        if constant is not None:
            const = np.isfinite(constant)[:, None]
            value, ok = np.where(const, constant[:, None], value), ok | const
        return value, ok

    t_raw, t_ok = measured_or("temperature")
    kelvin = (np.array(u["temperature"]) == "K")[:, None]
    temp_c = np.where(kelvin, t_raw - ref.temperature_k, t_raw)  # so that T0 + t is the measured absolute temperature
    static_pa, static_ok = measured_or("static_pressure", layout.static_pressure_pa)
    ambient_pa, ambient_ok = measured_or("ambient_pressure", layout.ambient_pressure_pa)
    moisture, moisture_ok = measured_or("moisture", layout.moisture_pct)
    xsw = moisture / 100.0  # a01014 is in %
    state_ok = t_ok & static_ok & ambient_ok

    # CO2 -> mg/m3 at standard state (Eq. 20 for volume units, Eq. 18 for mass units at stack conditions), dry
    co2, co2_ok = measured_or("co2")
    co2_unit = np.array(u["co2"])[:, None]
    m_co2 = MOLAR_MASS_G_MOL["a05001"]
    wet = (np.array(layout.co2_basis) == "wet")[:, None]
    actual = (np.array(layout.co2_conditions) == "actual")[:, None] & ~np.isin(co2_unit, ["%", "ppm"])
    with np.errstate(invalid="ignore", divide="ignore"):
        c_std = np.select(
            [co2_unit == "%", co2_unit == "ppm", co2_unit == "g/m3"],
            [vol_pct_to_mg_m3(co2, m_co2, ref), ppm_to_mg_m3(co2, m_co2, ref), co2 * 1000.0],
            co2,
        )
        c_std = np.where(actual, actual_to_standard(c_std, temp_c, static_pa, ambient_pa, ref), c_std)
        c_dry = np.where(wet, wet_to_dry(c_std, xsw), c_std)
        conc_ok = co2_ok & np.where(wet, moisture_ok, True) & np.where(actual, state_ok, True) & np.isfinite(c_dry)

        # flow on the standard dry basis: velocity x area x Kv (Eq. 29-30) or a flow channel, by its basis
        basis = np.array(layout.flow_basis)[:, None]
        from_velocity = (sr["flow"] < 0)[:, None]
        q_raw, q_ok = measured_or("flow")
        v_raw, v_ok = measured_or("velocity")
        q_meas = np.where(
            from_velocity,
            actual_wet_flow_m3_h(duct_velocity(v_raw, layout.velocity_field_coefficient[:, None]),
                                 layout.duct_area_m2[:, None]),
            q_raw,
        )
        q_std = np.select(
            [basis == "actual_wet", basis == "standard_wet"],
            [standard_dry_flow_m3_h(q_meas, temp_c, static_pa, ambient_pa, xsw, ref),
             q_meas * np.where((xsw >= 0) & (xsw < 1), 1.0 - xsw, np.nan)],
            q_meas,
        )
        flow_ok = (np.where(from_velocity, v_ok, q_ok)
                   & np.where(basis == "actual_wet", state_ok & moisture_ok, True)
                   & np.where(basis == "standard_wet", moisture_ok, True) & np.isfinite(q_std))
        rate = mass_rate_kg_h(c_dry, q_std)  # Eq. (33), kg/h; one hour -> kg
        co2_pct = c_std / vol_pct_to_mg_m3(1.0, m_co2, ref)  # the valid CO2 as % by volume (standard state)

    cems = layout.cems[:, None]
    runs, known = _running(g, layout)
    operating = cems & (runs | ~known)
    measured = operating & conc_ok & flow_ok & np.isfinite(rate)
    running_by_evidence = cems & runs
    with np.errstate(invalid="ignore"):
        analyser_off = running_by_evidence & (_role(g.off_share, sr["co2"]) > ANALYSER_OFF_SHARE)
        co2_ambient = running_by_evidence & co2_ok & (co2_pct < layout.co2_ambient_pct[:, None])
    load, load_ok = measured_or("load")
    return HourlyEmissions(
        start_ns=start_ns,
        co2_mg_m3=np.where(cems & conc_ok, c_dry, np.nan),
        flow_m3_h=np.where(cems & flow_ok, q_std, np.nan),
        co2_kg=np.where(measured, rate, np.where(operating, np.nan, 0.0)),
        load=np.where(load_ok, load, np.nan),
        operating=operating,
        measured=measured,
        missing=operating & ~measured,
        analyser_off=analyser_off,
        co2_ambient=co2_ambient,
        reference=ref.name,
    )
