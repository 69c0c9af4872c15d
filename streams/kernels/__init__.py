"""Pure emission kernels: numpy in, numpy out, no I/O, no per-reading Python loops.

Shared by every runtime (faust workers, embedded mode, batch recomputation). Every formula, constant
and validity rule cites its source: an entry of ``docs/sources.md``, by id, with its confidence tag.
Data flow and design: ``docs/kernels.md``.
"""

from .aggregate import (
    HOUR_NS,
    MINUTE_NS,
    Accumulator,
    PeriodTable,
    hours_from_minutes,
    readings_to_minutes,
)
from .emissions import HourlyEmissions, StackLayout, hourly_emissions
from .gwp import GWP_SETS, co2e
from .indicators import Findings, Grid, IndicatorPolicy, scan
from .meters import MeterTotal, metered_totals
from .policy import POLICIES, ValidityPolicy, get_policy
from .rollup import PeriodTotals, rollup
from .standardise import REFERENCE_CONDITIONS, ReferenceConditions
from .substitute import METHODS, HourGrid, Part75Limits, Substituted, substitute

__all__ = [
    "GWP_SETS",
    "HOUR_NS",
    "METHODS",
    "MINUTE_NS",
    "POLICIES",
    "REFERENCE_CONDITIONS",
    "Accumulator",
    "Findings",
    "Grid",
    "HourGrid",
    "HourlyEmissions",
    "IndicatorPolicy",
    "MeterTotal",
    "Part75Limits",
    "PeriodTable",
    "PeriodTotals",
    "ReferenceConditions",
    "StackLayout",
    "Substituted",
    "ValidityPolicy",
    "co2e",
    "get_policy",
    "hourly_emissions",
    "hours_from_minutes",
    "metered_totals",
    "readings_to_minutes",
    "rollup",
    "scan",
    "substitute",
]
