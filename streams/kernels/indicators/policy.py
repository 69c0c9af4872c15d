"""The thresholds of every indicator (:class:`IndicatorPolicy`) and the CO2max of the fuel families."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Dry stoichiometric CO2 of a fuel family [vol %] (CO2max: complete combustion, no excess air, air of
#: 21 % O2). This project's derivation from typical ultimate analyses with the stoichiometry of
#: ``edge_agent/simulator/physics.py``: methane 11.73; diesel 15.42, heavy fuel oil 16.05; bituminous
#: coal (C 62 %, H 4 %, O 8 %) 18.75, lignite 19.2, anthracite 19.6; coke (C 86 %, H 0.5 %) 20.67;
#: pure carbon 21.0. Typical values (``CO2MAX-FAMILY`` [U]): configure a source's own where its fuel is
#: known, and an *effective* value (:func:`effective_co2max`) for sources with process CO2 (cement kilns, lime,
#: blast-furnace gas), which no fuel value describes.
CO2MAX_PCT: dict[str, float] = {
    "natural_gas": 11.7,
    "fuel_oil": 15.7,
    "coal": 18.8,
    "coke": 20.6,
}


class IndicatorPolicy(BaseModel):
    """Thresholds of every indicator. Frozen; each default says where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"

    # 1. flatline (heuristic)
    flat_min_minutes: float = Field(
        default=30.0, gt=0, description="Shortest reported run of repeated values [min]. Heuristic: live minute means "
        "of an analyser never repeat for half an hour.")
    flat_rel_tol: float = Field(
        default=1e-6, ge=0, description="Two periods repeat when |a - b| <= rel x max(|a|, |b|) + abs. Minute means "
        "are exact on a 2^-24 grid (kernels.exact), so a stuck reading repeats bit for bit.")
    flat_abs_tol: float = Field(
        default=0.0, ge=0, description="Absolute part of the repeat tolerance [unit of the series].")

    # 3. CO2 vs O2
    air_o2_pct: float = Field(
        default=20.9, gt=0, le=21.0, description="O2 of air in the CO2max relation: 20.9 in 40 CFR 75 App. F "
        "(P75-F-CO2MAX [U]); HJ 212 Eq. 26-28 use 21 (HJ212-D26 [P]).")
    co2max_pct: dict[str, float] = Field(default_factory=lambda: dict(CO2MAX_PCT),
                                         description="CO2max per fuel family [vol %] (CO2MAX_PCT).")
    co2o2_rel_tol: float = Field(
        default=0.05, gt=0, description="Allowed |CO2 - implied| as a share of the implied CO2: twice the +/-2.5 % "
        "spread of CO2max within a fuel family (CO2MAX_PCT). Heuristic.")
    co2o2_abs_tol_pct: float = Field(
        default=0.75, gt=0, description="Allowed |CO2 - implied| at least this [vol %]: 0.5 % CO2 and 0.5 % O2 "
        "analyser error (Environment Canada reference method, EC-CO2CEMS [S]) combined through the relation. "
        "Heuristic.")
    co2o2_max_o2_pct: float = Field(
        default=14.0, gt=0, description="Hours with more O2 are not judged (start-up, low load, air in-leakage): the "
        "14.0 % O2 cap for boilers of 40 CFR 75 App. F §3.3.4.1 (P75-F-O2CAP [P]), borrowed.")
    co2o2_min_hours: float = Field(
        default=3.0, gt=0, description="Shortest reported run of inconsistent hours [h]. Heuristic.")

    # 4. level shifts (heuristic)
    shift_window_h: float = Field(
        default=8.0, gt=0, description="Hours fitted before and after each boundary [h]. Heuristic: on the unit tests' "
        "seeded noisy plant over 400 seeds (7,200 series-days), 6-hour windows gave 6 false steps, 8-hour none.")
    shift_z: float = Field(
        default=6.0, gt=0, description="|step| / spread at which a step is reported (pure noise: the step's standard "
        "deviation is 1.0 spread for 8-hour windows, so about 6 standard errors). Heuristic.")
    shift_min_rel: float = Field(
        default=0.02, ge=0, description="Steps smaller than this share of the level are ignored.")
    shift_min_coverage: float = Field(
        default=0.8, gt=0, le=1, description="Share of each window that must hold values.")
    deadline_window_h: float = Field(
        default=72.0, ge=0, description="Shifts this close before a local month end are marked.")
    after_calibration_h: float = Field(
        default=6.0, ge=0, description="Shifts this soon after a calibration are marked.")

    # 5. repeated daily profiles (heuristic)
    profile_min_corr: float = Field(
        default=0.99, gt=-1, le=1, description="Pearson correlation of the two days, at least.")
    profile_max_rel_rms: float = Field(
        default=0.005, ge=0, description="RMS difference of the two days over the earlier day's mean |level|, at most.")
    profile_typical_share: float = Field(
        default=0.2, gt=0, description="... and at most this share of the series' median relative RMS difference "
        "between day pairs, so a plant run to a very regular schedule needs a closer match.")
    profile_min_coverage: float = Field(default=0.9, gt=0, le=1, description="Share of the day both days must hold.")
    profile_lookback_days: int = Field(default=31, ge=1, description="Earlier days compared with each day.")

    # 6. low variance (heuristic)
    lowvar_rel: float = Field(
        default=0.1, gt=0, description="A day is flagged when its CV < this x the channel's typical CV.")
    lowvar_abs_cv: float = Field(default=0.0, ge=0, description="... or below this absolute CV floor (0 = off).")
    lowvar_min_coverage: float = Field(default=0.5, gt=0, le=1, description="Share of the day that must hold values.")

    # 7. calibration / maintenance
    cm_max_day_share: float = Field(
        default=0.10, gt=0, le=1, description="Share of a day's periods flagged C or M, at most. Heuristic; for scale, "
        "4 h (16.7 %) alone would invalidate the day under HJ 212 Eq. 25 (>= 20 valid hours, HJ212-D25 [P]).")
    cm_max_run_minutes: float = Field(
        default=15.0, gt=0, description="Longest C/M run [min]: the '> 15 min' marking window attributed to HJ 75-2017 "
        "(HJ75-CM15 [S; clause U]).")


DEFAULT_POLICY = IndicatorPolicy()
