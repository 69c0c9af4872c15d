"""Flue-gas physics of a fuel-fired stack, vectorised: what a CEMS on it would read, from what is burnt.

Complete combustion of a fuel with ultimate analysis (mass fractions of C, H, O, N, S, moisture) at
excess-air ratio λ, per kg of fuel (standard combustion stoichiometry):

* O2 needed   = C/M_C + H/(2 M_H2) ... written per element: C/12.011 + H/4.032 + S/32.06 - O/31.998 [kmol]
* air         = λ x O2 needed / 0.21 (dry air, 21 % O2 by volume as HJ 212 Eq. 26-28 uses)
* flue gas    = CO2  C/12.011 + process CO2,  H2O  H/2.016 + moisture/18.015,  SO2  S/32.06,
                N2   0.79 air + N/28.014,  O2  0.21 air - O2 needed
* dry flue gas is everything but H2O; the CEMS reads CO2 and O2 on a dry basis (extractive analyser),
  moisture on a wet basis, and velocity, temperature and static pressure at stack conditions.

Standard volume uses the HJ 212 molar volume 22.4 m³/kmol (273 K, 101 325 Pa), so pushing the
simulated readings through the kernels' HJ 212 chain gives back exactly the CO2 the model produced:
C_CO2 = n_CO2/n_dry x 10⁶ x 44.009/22.4 [mg/m³] and Q_snh = n_dry x 22.4 [m³/h], so
C_CO2 x Q_snh x 10⁻⁶ = n_CO2 x 44.009 [kg/h] (HJ 212 Eq. 20, 31, 33). The accounting method's
``fuel carbon x 44/12`` differs from that by the ratio of molar-mass conventions, (44.009/12.011) /
(44/12) - 1 = -0.071 %: the stated error of the ground truth (tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COAL", "NATURAL_GAS_LIKE", "FlueGas", "Fuel", "flue_gas"]

M_C, M_H2, M_S, M_O2, M_N2, M_H2O, M_CO2 = 12.011, 2.016, 32.06, 31.998, 28.014, 18.015, 44.009
V_M3_PER_KMOL = 22.4  # HJ 212 App. D Eq. (20) molar volume at 273 K, 101 325 Pa


@dataclass(frozen=True)
class Fuel:
    """Ultimate analysis as received, mass fractions (ash is the remainder)."""

    name: str
    carbon: float
    hydrogen: float
    oxygen: float
    nitrogen: float
    sulphur: float
    moisture: float

    def __post_init__(self) -> None:
        total = self.carbon + self.hydrogen + self.oxygen + self.nitrogen + self.sulphur + self.moisture
        if not 0 < total <= 1:
            raise ValueError(f"fuel {self.name}: mass fractions sum to {total}, not in (0, 1]")

    @property
    def o2_needed_kmol_per_kg(self) -> float:
        return self.carbon / M_C + self.hydrogen / (2 * M_H2) + self.sulphur / M_S - self.oxygen / M_O2


#: A bituminous coal (illustrative values of a typical analysis, not a guideline default).
COAL = Fuel("bituminous coal", carbon=0.62, hydrogen=0.04, oxygen=0.08, nitrogen=0.011, sulphur=0.008, moisture=0.08)
#: A gaseous fuel expressed per kg (methane-rich).
NATURAL_GAS_LIKE = Fuel("methane-rich gas", carbon=0.73, hydrogen=0.24, oxygen=0.0, nitrogen=0.03, sulphur=0.0,
                        moisture=0.0)


@dataclass(frozen=True, eq=False)
class FlueGas:
    """Molar flows [kmol/h] and what a CEMS reads, arrays over time."""

    co2_kmol_h: np.ndarray
    h2o_kmol_h: np.ndarray
    dry_kmol_h: np.ndarray
    co2_dry_pct: np.ndarray
    o2_dry_pct: np.ndarray
    moisture_pct: np.ndarray

    @property
    def wet_kmol_h(self) -> np.ndarray:
        return self.dry_kmol_h + self.h2o_kmol_h

    @property
    def co2_kg_h(self) -> np.ndarray:
        return self.co2_kmol_h * M_CO2

    @property
    def standard_dry_flow_m3_h(self) -> np.ndarray:
        return self.dry_kmol_h * V_M3_PER_KMOL

    def actual_wet_flow_m3_h(self, temperature_c, static_pressure_pa, ambient_pressure_pa) -> np.ndarray:
        """Ideal gas at stack conditions, with HJ 212's 273 (Eq. 31 inverted, wet)."""
        return (self.wet_kmol_h * V_M3_PER_KMOL * (273.0 + np.asarray(temperature_c)) / 273.0
                * 101_325.0 / (np.asarray(ambient_pressure_pa) + np.asarray(static_pressure_pa)))


def flue_gas(fuel: Fuel, fuel_t_h, excess_air, process_co2_kmol_h=0.0) -> FlueGas:
    """Flue gas of burning ``fuel_t_h`` [t/h] of ``fuel`` at excess-air ratio ``excess_air`` [λ >= 1],
    plus ``process_co2_kmol_h`` of non-combustion CO2 (e.g. calcination of raw meal in a cement kiln)."""
    kg_h = np.asarray(fuel_t_h, dtype=np.float64) * 1000.0
    lam = np.asarray(excess_air, dtype=np.float64)
    o2_need = fuel.o2_needed_kmol_per_kg * kg_h
    air = lam * o2_need / 0.21
    co2 = fuel.carbon / M_C * kg_h + np.asarray(process_co2_kmol_h, dtype=np.float64)
    h2o = (fuel.hydrogen / M_H2 + fuel.moisture / M_H2O) * kg_h
    so2 = fuel.sulphur / M_S * kg_h
    n2 = 0.79 * air + fuel.nitrogen / M_N2 * kg_h
    o2 = 0.21 * air - o2_need
    dry = co2 + so2 + n2 + o2
    with np.errstate(invalid="ignore", divide="ignore"):
        return FlueGas(
            co2_kmol_h=co2,
            h2o_kmol_h=h2o,
            dry_kmol_h=dry,
            co2_dry_pct=np.where(dry > 0, co2 / dry * 100.0, 0.0),
            o2_dry_pct=np.where(dry > 0, o2 / dry * 100.0, 20.9),
            moisture_pct=np.where(dry + h2o > 0, h2o / (dry + h2o) * 100.0, 0.0),
        )
