"""Data-quality and falsification indicators from minute and hour grids: what an alert layer raises.

Inputs are regular grids, ``[n_series, n_periods]`` arrays of period means (NaN = no valid mean)
with flag and operating masks (:class:`Grid`; :meth:`Grid.from_table` pivots a closed
:class:`~streams.kernels.aggregate.PeriodTable`). Every rule is one vectorised function returning
:class:`Findings`: per finding the rule, the series, the half-open span ``[start, end)`` of periods
on the grid it was found on, the measured ``value`` and the ``threshold`` it was held against.
:func:`scan` runs them all. No I/O, no loop per reading or per period (loops are over rules and
over the two directions of a range check).

Modules, one per family: :mod:`.grid` (grids, findings, shared helpers), :mod:`.policy` (thresholds),
:mod:`.channel` (flatline, out of range, low variance), :mod:`.co2_o2`, :mod:`.level_shift`,
:mod:`.profiles` (repeated profiles), :mod:`.calibration` (C/M flags), :mod:`.scan`, and :mod:`.hours` (the
same findings from the hour partials the stream closes, for the reconciliation at national scale).

Rules, with their sources (docs/sources.md ids and confidence tags); every threshold is in
:class:`IndicatorPolicy`, and those marked *heuristic* are this project's choice, not a rule of
any standard:

1. ``flatline``: a channel repeats its value while the source runs. Heuristic.
2. ``out_of_range``: outside physical bounds (:mod:`streams.kernels.plausibility`, this project's
   wide physical limits) or flagged T (``HJ212-T8`` [P]).
3. ``co2_o2_inconsistent``: dry CO2 far from ``CO2max x (20.9 - O2) / 20.9``. The relation is the
   O2-based CO2 estimate of 40 CFR 75 App. F (``P75-F-CO2MAX`` [U]), and exact for complete
   combustion diluted by excess air (derived in :mod:`edge_agent.simulator.physics`, where it holds
   to rounding). CO2max per fuel family: stoichiometric, this project's derivation (``CO2MAX-FAMILY``
   [U] as defaults). Tolerance from the CO2 analyser accuracy limits of Environment Canada's reference
   method (10 % or 0.5 % CO2, ``EC-CO2CEMS`` [S]), widened: heuristic.
4. ``level_shift``: step in the level (two line fits meeting at a boundary), in units of the
   local spread. Heuristic; marked when close before a month end (monthly data close there;
   uploads are due 20 days later, ``CN-EVIDENCE-20D`` [S]) or right after a calibration.
5. ``repeated_profile``: a day's profile (nearly) equal to an earlier day's. Heuristic.
6. ``low_variance``: a day's coefficient of variation far below the channel's typical. Heuristic.
7. ``cm_day_share`` / ``cm_run_long``: minutes flagged C or M (``HJ212-T8`` [P]) per day above a
   share (heuristic), or one C/M run longer than 15 min, the "> 15 min" marking window attributed
   to HJ 75-2017 by an operator-portal script (``HJ75-CM15`` [S; clause U]).
"""

from .calibration import calibration_maintenance
from .channel import flatline, low_variance, out_of_range
from .co2_o2 import CO2O2Pairs, co2_o2_inconsistency, effective_co2max, implied_co2_pct
from .grid import (
    AFTER_CALIBRATION,
    NEAR_DEADLINE,
    NO_DATA,
    RULES,
    Findings,
    Grid,
    hour_grid,
)
from .hours import HourPartials, hour_partials, scan_hours
from .level_shift import level_shifts
from .policy import CO2MAX_PCT, DEFAULT_POLICY, IndicatorPolicy
from .profiles import repeated_profiles
from .scan import scan

__all__ = [
    "AFTER_CALIBRATION",
    "CO2MAX_PCT",
    "DEFAULT_POLICY",
    "NEAR_DEADLINE",
    "NO_DATA",
    "RULES",
    "CO2O2Pairs",
    "Findings",
    "Grid",
    "HourPartials",
    "IndicatorPolicy",
    "calibration_maintenance",
    "co2_o2_inconsistency",
    "effective_co2max",
    "flatline",
    "hour_grid",
    "hour_partials",
    "implied_co2_pct",
    "level_shifts",
    "low_variance",
    "out_of_range",
    "repeated_profiles",
    "scan",
    "scan_hours",
]
