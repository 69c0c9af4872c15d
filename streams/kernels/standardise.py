"""Flue-gas standardisation: actual wet conditions -> standard dry, unit conversions, O2 correction,
flow and mass rate. Pure, vectorised, broadcasting numpy; no I/O.

Equation numbers are those of HJ 212-2017 Appendix D (informative, quoting HJ/T 75-2007 and
HJ/T 76-2007): docs/sources.md ``HJ212-D18`` to ``HJ212-D33`` [P]. Symbols: Ba ambient
pressure [Pa], Ps flue-gas static pressure [Pa], ts flue-gas temperature [°C], Xsw moisture
[volume fraction], F duct area [m²].

Physically impossible inputs (absolute pressure <= 0, temperature at or below absolute zero,
moisture outside [0, 1), O2 >= 21 %) give NaN, never a number: callers flag them, and NaN never
passes for a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MOLAR_MASS_G_MOL",
    "REFERENCE_CONDITIONS",
    "ReferenceConditions",
    "actual_to_standard",
    "actual_wet_flow_m3_h",
    "duct_velocity",
    "mass_rate_kg_h",
    "mg_m3_to_ppm",
    "o2_reference_correction",
    "ppm_to_mg_m3",
    "standard_dry_flow_m3_h",
    "vol_pct_to_mg_m3",
    "wet_to_dry",
]


@dataclass(frozen=True)
class ReferenceConditions:
    """Standard state of a regime: temperature, pressure, and the molar volume used for ppm <-> mg/m³."""

    name: str
    temperature_k: float  # T0: also the °C -> K offset in Eq. (18) and (31), as the regime writes it
    pressure_pa: float  # P0
    molar_volume_l_mol: float  # Vm in Eq. (20)
    source: str


#: Named reference conditions. ``hj212`` is the default: 273 K as HJ 212/HJ 75 write it, with 22.4 L/mol.
REFERENCE_CONDITIONS: dict[str, ReferenceConditions] = {
    rc.name: rc
    for rc in (
        ReferenceConditions("hj212", 273.0, 101_325.0, 22.4, "HJ 212-2017 App. D Eq. (18), (20), (31) [P]"),
        ReferenceConditions(
            "hj212-273.15", 273.15, 101_325.0, 22.414, "HJ 212 formulas with the physical 273.15 K [S: '标干']"
        ),
        ReferenceConditions("eu-mrr", 273.15, 101_325.0, 22.414, "EU MRR 2018/2066 Nm³ definition [U]"),
        ReferenceConditions("us-part98", 293.15, 101_325.0, 24.055, "40 CFR 98: 68 °F, 1 atm; 849.5 scf/kg-mol [P]"),
    )
}

#: Molar masses [g/mol] from IUPAC standard atomic weights (C 12.011, O 15.999, N 14.007, S 32.06): ``IUPAC-M`` [P].
MOLAR_MASS_G_MOL: dict[str, float] = {
    "a05001": 44.009,  # CO2
    "a19001": 31.998,  # O2
    "a21002": 46.005,  # NOx expressed as NO2 (HJ 76; HJ 212 Eq. 21-22)
    "a21005": 28.010,  # CO
    "a21026": 64.058,  # SO2
}


Floats = NDArray[np.float64]


def _f(x: ArrayLike) -> Floats:
    return np.asarray(x, dtype=np.float64)


def _pos(x: ArrayLike) -> Floats:
    """x where x > 0, else NaN."""
    v = _f(x)
    return np.where(v > 0, v, np.nan)


def actual_to_standard(c_actual: ArrayLike, temperature_c: ArrayLike, static_pressure_pa: ArrayLike,
                       ambient_pressure_pa: ArrayLike, ref: ReferenceConditions) -> Floats:
    """Concentration at actual stack conditions -> standard state, same wet/dry basis. HJ 212 Eq. (18).

    .. math:: C_{sn} = C_s \\cdot \\frac{P_0}{B_a + P_s} \\cdot \\frac{T_0 + t_s}{T_0}

    A gas at stack temperature and pressure is less dense than at the standard state; limits and masses are
    stated at the standard state, so every concentration is brought there first.

    Parameters
    ----------
    c_actual : array_like
        Concentration at stack conditions [mg/m³].
    temperature_c : array_like
        Flue-gas temperature ts [°C].
    static_pressure_pa : array_like
        Flue-gas static (gauge) pressure Ps [Pa].
    ambient_pressure_pa : array_like
        Ambient pressure Ba at the CEMS [Pa].
    ref : ReferenceConditions
        Standard state: T0 [K] (also the °C -> K offset, as the regime writes it) and P0 [Pa].

    Returns
    -------
    ndarray of float
        Concentration at the standard state [mg/m³]; NaN where the absolute temperature or pressure is not
        positive.

    References
    ----------
    docs/sources.md ``HJ212-D18`` [P].
    """
    t_abs = _pos(ref.temperature_k + _f(temperature_c))
    p_abs = _pos(_f(ambient_pressure_pa) + _f(static_pressure_pa))
    return _f(c_actual) * ref.pressure_pa / p_abs * t_abs / ref.temperature_k


def wet_to_dry(c_wet: ArrayLike, moisture_vol_frac: ArrayLike) -> Floats:
    """Wet-basis concentration -> dry basis: ``C_dry = C_wet / (1 - Xsw)``. Also for O2.

    Parameters
    ----------
    c_wet : array_like
        Concentration on the wet basis [any unit: mg/m³, %, ppm; the result keeps it].
    moisture_vol_frac : array_like
        Flue-gas moisture Xsw as a volume fraction in [0, 1) [1] (a01014 in % divided by 100).

    Returns
    -------
    ndarray of float
        Concentration on the dry basis [the unit of ``c_wet``]; NaN where the moisture is outside [0, 1).

    References
    ----------
    docs/sources.md ``HJ212-D19`` [P].
    """
    x = _f(moisture_vol_frac)
    return _f(c_wet) / np.where((x >= 0) & (x < 1), 1.0 - x, np.nan)


def ppm_to_mg_m3(ppm: ArrayLike, molar_mass_g_mol: float, ref: ReferenceConditions) -> Floats:
    """Volume concentration -> mass concentration at the standard state: ``C_q = M / V_m x C_v``.

    Parameters
    ----------
    ppm : array_like
        Volume concentration Cv [µmol/mol].
    molar_mass_g_mol : float
        Molar mass M of the gas [g/mol] (:data:`MOLAR_MASS_G_MOL`).
    ref : ReferenceConditions
        Molar volume Vm of the standard state [L/mol] (22.4 in HJ 212).

    Returns
    -------
    ndarray of float
        Mass concentration at the standard state [mg/m³].

    References
    ----------
    docs/sources.md ``HJ212-D20`` [P], ``IUPAC-M`` [P].
    """
    return _f(ppm) * (molar_mass_g_mol / ref.molar_volume_l_mol)


def mg_m3_to_ppm(mg_m3: ArrayLike, molar_mass_g_mol: float, ref: ReferenceConditions) -> Floats:
    """Inverse of :func:`ppm_to_mg_m3`: mass concentration [mg/m³] -> volume concentration [µmol/mol].

    Parameters
    ----------
    mg_m3 : array_like
        Mass concentration at the standard state [mg/m³].
    molar_mass_g_mol : float
        Molar mass of the gas [g/mol].
    ref : ReferenceConditions
        Molar volume of the standard state [L/mol].

    Returns
    -------
    ndarray of float
        Volume concentration [µmol/mol].

    References
    ----------
    docs/sources.md ``HJ212-D20`` [P].
    """
    return _f(mg_m3) * (ref.molar_volume_l_mol / molar_mass_g_mol)


def vol_pct_to_mg_m3(pct: ArrayLike, molar_mass_g_mol: float, ref: ReferenceConditions) -> Floats:
    """Volume percent -> mass concentration at the standard state (1 % = 10⁴ µmol/mol).

    Parameters
    ----------
    pct : array_like
        Volume concentration [% by volume].
    molar_mass_g_mol : float
        Molar mass of the gas [g/mol].
    ref : ReferenceConditions
        Molar volume of the standard state [L/mol].

    Returns
    -------
    ndarray of float
        Mass concentration at the standard state [mg/m³].

    References
    ----------
    docs/sources.md ``HJ212-D20`` [P].
    """
    return ppm_to_mg_m3(_f(pct) * 1e4, molar_mass_g_mol, ref)


def o2_reference_correction(c_dry: ArrayLike, o2_dry_pct: ArrayLike, o2_ref_pct: ArrayLike) -> Floats:
    """Correct a standard dry concentration to a reference O2 content (limits are stated at one, so that dilution
    with air does not lower a concentration).

    .. math:: C_{conv} = C_{sn,dry} \\cdot \\frac{21 - O_{2,ref}}{21 - O_{2,meas}}

    Parameters
    ----------
    c_dry : array_like
        Standard dry concentration [mg/m³].
    o2_dry_pct : array_like
        Measured dry O2 [% by volume].
    o2_ref_pct : array_like
        Reference O2 of the emission standard [% by volume].

    Returns
    -------
    ndarray of float
        Concentration at the reference O2 [mg/m³]; NaN at or above 21 % O2 (air, a leaking probe) rather than a
        division blow-up.

    References
    ----------
    docs/sources.md ``HJ212-D26`` [P].
    """
    denom = 21.0 - _f(o2_dry_pct)
    return _f(c_dry) * (21.0 - _f(o2_ref_pct)) / _pos(denom)


def duct_velocity(point_velocity_m_s: ArrayLike, velocity_field_coefficient: ArrayLike) -> Floats:
    """Mean duct velocity from the measured point velocity: ``Vs = Kv x Vp``.

    Parameters
    ----------
    point_velocity_m_s : array_like
        Velocity Vp at the monitor's point [m/s].
    velocity_field_coefficient : array_like
        Kv, from the comparison traverses [1].

    Returns
    -------
    ndarray of float
        Mean duct velocity Vs [m/s].

    References
    ----------
    docs/sources.md ``HJ212-D29`` [P], ``HJ75-KV`` [U].
    """
    return _f(point_velocity_m_s) * _f(velocity_field_coefficient)


def actual_wet_flow_m3_h(velocity_m_s: ArrayLike, duct_area_m2: ArrayLike) -> Floats:
    """Actual wet flow from the mean duct velocity: ``Qs = 3600 x F x Vs``.

    Parameters
    ----------
    velocity_m_s : array_like
        Mean duct velocity Vs [m/s].
    duct_area_m2 : array_like
        Duct cross-section F at the monitor [m²].

    Returns
    -------
    ndarray of float
        Actual wet flow [m³/h].

    References
    ----------
    docs/sources.md ``HJ212-D30`` [P].
    """
    return 3600.0 * _f(duct_area_m2) * _f(velocity_m_s)


def standard_dry_flow_m3_h(q_actual_m3_h: ArrayLike, temperature_c: ArrayLike, static_pressure_pa: ArrayLike,
                           ambient_pressure_pa: ArrayLike, moisture_vol_frac: ArrayLike,
                           ref: ReferenceConditions) -> Floats:
    """Actual wet flow -> standard dry flow, the basis of every mass.

    .. math:: Q_{snh} = Q_{sh} \\cdot \\frac{T_0}{T_0 + t_s} \\cdot \\frac{B_a + P_s}{P_0} \\cdot (1 - X_{sw})

    Parameters
    ----------
    q_actual_m3_h : array_like
        Actual wet flow [m³/h] (a volumetric flow meter's actual reading in any time unit: the result keeps it).
    temperature_c : array_like
        Flue-gas temperature ts [°C].
    static_pressure_pa : array_like
        Flue-gas static (gauge) pressure Ps [Pa].
    ambient_pressure_pa : array_like
        Ambient pressure Ba [Pa].
    moisture_vol_frac : array_like
        Moisture Xsw as a volume fraction in [0, 1) [1].
    ref : ReferenceConditions
        Standard state T0 [K], P0 [Pa].

    Returns
    -------
    ndarray of float
        Standard dry flow [m³/h, or the time unit given]; NaN for impossible inputs.

    References
    ----------
    docs/sources.md ``HJ212-D31`` [P].
    """
    t_abs = _pos(ref.temperature_k + _f(temperature_c))
    p_abs = _pos(_f(ambient_pressure_pa) + _f(static_pressure_pa))
    x = _f(moisture_vol_frac)
    dry = np.where((x >= 0) & (x < 1), 1.0 - x, np.nan)
    return _f(q_actual_m3_h) * ref.temperature_k / t_abs * p_abs / ref.pressure_pa * dry


def mass_rate_kg_h(c_mg_m3: ArrayLike, q_m3_h: ArrayLike) -> Floats:
    """Hourly emission rate from standard dry concentration and flow: ``G = C x Q x 10^-6``.

    Parameters
    ----------
    c_mg_m3 : array_like
        Standard dry concentration [mg/m³].
    q_m3_h : array_like
        Standard dry flow [m³/h] (the same basis as the concentration).

    Returns
    -------
    ndarray of float
        Emission rate [kg/h].

    References
    ----------
    docs/sources.md ``HJ212-D33`` [P].
    """
    return _f(c_mg_m3) * _f(q_m3_h) * 1e-6
