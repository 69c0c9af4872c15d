"""Self-reported monthly accounting data of China ETS emitters (issue 6: reconciliation).

One :class:`AccountingReport` is one emitter's figures for one month, for the whole entity or one of
its sources. Every numeric parameter is a :class:`Param`: a value, its unit, and whether the plant
*measured* it or took a *default*. The reconciliation with CEMS needs that basis: accounting agrees
with CEMS within about 2.5 % when every parameter is measured and only within about 20 % when defaults
are used (docs/sources.md STUDY-CN7 [S]); the reconciliation's tolerance counts each input's uncertainty.

Units: only the units declared per parameter kind (:data:`UNITS`) are accepted; values are converted
to the kind's canonical unit at validation, so everything downstream sees one unit per parameter.
A ``default`` parameter may leave its value out; :func:`fill_defaults` takes it from a versioned
defaults file (``schemas/defaults/<version>.yaml``, :func:`load_defaults`) and records whether that
default is confirmed. Where the project's sources have no number, the file has none either, and a
report must give a measured value.

Parameters are named ``<section>.<field>`` (``fuel.ncv``, ``cement.clinker_cao``): the same names
serve the CSV import (:mod:`ingest.accounting`) and the defaults file. Formulas: ``docs/accounting.md``
and :mod:`streams.kernels.accounting`.

Modules: :mod:`.units` (units and :class:`Param`), :mod:`.catalogues` (parameters per section, fuels,
materials), :mod:`.report` (the report model) and :mod:`.defaults` (versioned default sets, the uncertainty
policy, validation and defaults filling).
"""

from .catalogues import (
                         CELL_TECHNOLOGIES,
                         CO2_PARAMETERS,
                         CURRENT_EFFICIENCY_PLAUSIBLE,
                         FUELS,
                         MATERIALS,
                         NCV_PLAUSIBLE,
                         OXIDATION_PLAUSIBLE,
                         PARAMETERS,
                         SETTINGS,
                         CellTechnology,
                         Fuel,
                         Material,
)
from .defaults import (
                         DEFAULTS_VERSION,
                         UNCERTAINTY_VERSION,
                         AccountingDefaults,
                         DefaultValue,
                         MeasuredUncertainty,
                         UncertaintyPolicy,
                         fill_defaults,
                         load_defaults,
                         load_uncertainty,
                         validate_report,
)
from .report import (
                         AccountingReport,
                         AluminiumData,
                         CementData,
                         FuelUse,
                         MaterialFlow,
                         PowerData,
                         ReportError,
                         SteelData,
)
from .units import UNITS, Param

__all__ = [
    "CELL_TECHNOLOGIES",
    "CO2_PARAMETERS",
    "CURRENT_EFFICIENCY_PLAUSIBLE",
    "DEFAULTS_VERSION",
    "FUELS",
    "MATERIALS",
    "NCV_PLAUSIBLE",
    "OXIDATION_PLAUSIBLE",
    "PARAMETERS",
    "SETTINGS",
    "UNCERTAINTY_VERSION",
    "UNITS",
    "AccountingDefaults",
    "AccountingReport",
    "AluminiumData",
    "CellTechnology",
    "CementData",
    "DefaultValue",
    "Fuel",
    "FuelUse",
    "Material",
    "MaterialFlow",
    "MeasuredUncertainty",
    "Param",
    "PowerData",
    "ReportError",
    "SteelData",
    "UncertaintyPolicy",
    "fill_defaults",
    "load_defaults",
    "load_uncertainty",
    "validate_report",
]
