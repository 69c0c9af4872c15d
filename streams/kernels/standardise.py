"""Flue-gas standardisation: actual wet conditions -> standard dry, unit conversions, O2 correction,
flow and mass rate. Pure, vectorised, broadcasting numpy; no I/O.

Equation numbers are those of HJ 212-2017 Appendix D (informative, quoting HJ/T 75-2007 and
HJ/T 76-2007), recorded in ``shared/reference/cems-standards.md`` §1.11 [P]. Symbols: Ba ambient
pressure [Pa], Ps flue-gas static pressure [Pa], ts flue-gas temperature [°C], Xsw moisture
[volume fraction], F duct area [m²].

Physically impossible inputs (absolute pressure <= 0, temperature at or below absolute zero,
moisture outside [0, 1), O2 >= 21 %) give NaN, never a number: callers flag them, and NaN never
passes for a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

#: Molar masses [g/mol] from IUPAC standard atomic weights (C 12.011, O 15.999, N 14.007, S 32.06).
MOLAR_MASS_G_MOL: dict[str, float] = {
    "a05001": 44.009,  # CO2
    "a19001": 31.998,  # O2
    "a21002": 46.005,  # NOx expressed as NO2 (HJ 76; HJ 212 Eq. 21-22)
    "a21005": 28.010,  # CO
    "a21026": 64.058,  # SO2
}


def _pos(x):
    """x where x > 0, else NaN."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, np.nan)


def actual_to_standard(c_actual, temperature_c, static_pressure_pa, ambient_pressure_pa, ref: ReferenceConditions):
    """Concentration at actual stack conditions -> standard state, same wet/dry basis. HJ 212 Eq. (18).

    .. math:: C_{sn} = C_s \\cdot \\frac{P_0}{B_a + P_s} \\cdot \\frac{T_0 + t_s}{T_0}

    Parameters
    ----------
    c_actual : array-like [mg/m³ at stack conditions]
    temperature_c : array-like, flue-gas temperature ts [°C]
    static_pressure_pa : array-like, flue-gas static (gauge) pressure Ps [Pa]
    ambient_pressure_pa : array-like, ambient pressure Ba at the CEMS [Pa]
    ref : ReferenceConditions

    Returns
    -------
    ndarray [mg/m³ at standard state]
    """
    t_abs = _pos(ref.temperature_k + np.asarray(temperature_c, dtype=np.float64))
    p_abs = _pos(np.asarray(ambient_pressure_pa, dtype=np.float64) + static_pressure_pa)
    return np.asarray(c_actual, dtype=np.float64) * ref.pressure_pa / p_abs * t_abs / ref.temperature_k


def wet_to_dry(c_wet, moisture_vol_frac):
    """Wet-basis concentration -> dry basis, HJ 212 Eq. (19): ``C_dry = C_wet / (1 - Xsw)``. Also for O2.

    ``moisture_vol_frac`` is Xsw as a volume fraction in [0, 1) (a01014 in % divided by 100).
    """
    x = np.asarray(moisture_vol_frac, dtype=np.float64)
    return np.asarray(c_wet, dtype=np.float64) / np.where((x >= 0) & (x < 1), 1.0 - x, np.nan)


def ppm_to_mg_m3(ppm, molar_mass_g_mol, ref: ReferenceConditions):
    """Volume concentration [µmol/mol] -> mass concentration at standard state [mg/m³], HJ 212 Eq. (20).

    .. math:: C_q = \\frac{M}{V_m} \\cdot C_v
    """
    return np.asarray(ppm, dtype=np.float64) * (molar_mass_g_mol / ref.molar_volume_l_mol)


def mg_m3_to_ppm(mg_m3, molar_mass_g_mol, ref: ReferenceConditions):
    """Inverse of :func:`ppm_to_mg_m3`."""
    return np.asarray(mg_m3, dtype=np.float64) * (ref.molar_volume_l_mol / molar_mass_g_mol)


def vol_pct_to_mg_m3(pct, molar_mass_g_mol, ref: ReferenceConditions):
    """Volume percent -> mg/m³ at standard state (1 % = 10⁴ µmol/mol), HJ 212 Eq. (20)."""
    return ppm_to_mg_m3(np.asarray(pct, dtype=np.float64) * 1e4, molar_mass_g_mol, ref)


def o2_reference_correction(c_dry, o2_dry_pct, o2_ref_pct):
    """Correct a standard dry concentration to a reference O2 content, HJ 212 Eq. (26)-(28).

    .. math:: C_{conv} = C_{sn,dry} \\cdot \\frac{21 - O_{2,ref}}{21 - O_{2,meas}}

    O2 at or above 21 % (air, a leaking probe) gives NaN rather than a division blow-up.
    """
    denom = 21.0 - np.asarray(o2_dry_pct, dtype=np.float64)
    return np.asarray(c_dry, dtype=np.float64) * (21.0 - np.asarray(o2_ref_pct, dtype=np.float64)) / _pos(denom)


def duct_velocity(point_velocity_m_s, velocity_field_coefficient):
    """Mean duct velocity from the measured point velocity, HJ 212 Eq. (29): ``Vs = Kv * Vp`` [m/s]."""
    return np.asarray(point_velocity_m_s, dtype=np.float64) * velocity_field_coefficient


def actual_wet_flow_m3_h(velocity_m_s, duct_area_m2):
    """Actual wet flow from mean duct velocity, HJ 212 Eq. (30): ``Qsh = 3600 * F * Vs`` [m³/h]."""
    return 3600.0 * np.asarray(duct_area_m2, dtype=np.float64) * np.asarray(velocity_m_s, dtype=np.float64)


def standard_dry_flow_m3_h(
    q_actual_m3_h, temperature_c, static_pressure_pa, ambient_pressure_pa, moisture_vol_frac, ref: ReferenceConditions
):
    """Actual wet flow -> standard dry flow, HJ 212 Eq. (31).

    .. math:: Q_{snh} = Q_{sh} \\cdot \\frac{T_0}{T_0 + t_s} \\cdot \\frac{B_a + P_s}{P_0} \\cdot (1 - X_{sw})

    Also converts a volumetric flow meter's actual reading (any time unit: the result keeps it).
    """
    t_abs = _pos(ref.temperature_k + np.asarray(temperature_c, dtype=np.float64))
    p_abs = _pos(np.asarray(ambient_pressure_pa, dtype=np.float64) + static_pressure_pa)
    x = np.asarray(moisture_vol_frac, dtype=np.float64)
    dry = np.where((x >= 0) & (x < 1), 1.0 - x, np.nan)
    return np.asarray(q_actual_m3_h, dtype=np.float64) * ref.temperature_k / t_abs * p_abs / ref.pressure_pa * dry


def mass_rate_kg_h(c_mg_m3, q_m3_h):
    """Hourly emission rate from standard dry concentration and flow, HJ 212 Eq. (33).

    .. math:: G_h = C_{Qh} \\cdot Q_{snh} \\cdot 10^{-6}

    Concentration and flow must be on the same (standard, dry) basis. Returns kg/h.
    """
    return np.asarray(c_mg_m3, dtype=np.float64) * np.asarray(q_m3_h, dtype=np.float64) * 1e-6
