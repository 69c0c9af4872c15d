"""Quality-assurance records of the monitors: daily zero/span checks, comparison (RATA) tests, linearity
checks and velocity traverses.

A CEMS figure is only as good as the QA of the analysers behind it. These records say what was checked,
against which reference, when, on which analyser (``site_id`` / ``source_id`` / ``channel_id`` of the
site model, with the channel's HJ 212 ``quantity`` code and ``unit``). They hold raw observations only
(reference and measured values); pass or fail is computed by the kernels of :mod:`streams.kernels.qa`
under a named regulatory policy, so that one record can be judged under HJ 75, EN 14181 or Part 75.

Record kinds (JSON ``kind``):

* ``drift_check``: one daily zero or span check of one analyser (HJ 75 daily drift check, EN 14181
  QAL3, Part 75 daily calibration error test). ``full_scale`` is needed where a regime writes the limit
  as a share of the range (HJ 75: % of full scale; Part 75 flow: % of span).
* ``comparison_test``: paired reference-method and CEMS values per run (HJ 75 比对监测, Part 75 RATA,
  EN 14181 QAL2/AST parallel measurements), for CO2, O2, moisture, flow or velocity.
* ``linearity_check``: low/mid/high reference gases, each injected one or more times (Part 75 App. A
  §6.2 linearity check).
* ``velocity_traverse``: reference velocities at the traverse points of a run against the CEMS point
  velocity of the same run, to determine Kv (HJ 212-2017 App. D Eq. (29): Vs = Kv x Vp).

Units: values are in the record's ``unit``, one of the quantity's units in :data:`schemas.quantities.
QUANTITIES`; velocities of a traverse are in m/s (the field names say so). Times carry a UTC offset.
Imports (CSV, JSON, all or nothing): :mod:`ingest.qa`. Formulas and limits: ``docs/qa.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from .quantities import QUANTITIES
from .site import Identifier

__all__ = [
    "QA_QUANTITIES",
    "ComparisonRun",
    "ComparisonTest",
    "DriftCheck",
    "LinearityCheck",
    "LinearityInjection",
    "QaRecord",
    "QaRecords",
    "TraversePoint",
    "TraverseRun",
    "VelocityTraverse",
    "qa_json_schema",
    "validate_record",
]

#: Quantities whose QA this module records: HJ 212 code -> short name used in docs and policies.
QA_QUANTITIES: dict[str, str] = {
    "a05001": "CO2",
    "a19001": "O2",
    "a01014": "moisture",
    "a00000": "flow",
    "a01011": "velocity",
}

QaQuantity = Literal["a05001", "a19001", "a01014", "a00000", "a01011"]
Finite = Annotated[float, Field(allow_inf_nan=False)]
#: From when a test's result (a Kv, a bias adjustment factor) changes the figures.
ApplyFrom = Annotated[AwareDatetime | None, Field(
    description="From when the test's result changes the figures (ISO 8601 with a UTC offset): the "
    "velocity-field coefficient Kv of a velocity test or traverse, or the bias adjustment factor where the "
    "policy applies one. None: the result is recorded, no figure changes. Figures before it never change; a "
    "date before the test was completed is a recomputation, refused unless asked for explicitly.")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Analyser(_Frozen):
    """The analyser a record is about: one channel of one source of one site."""

    site_id: Identifier = Field(description="Entity id of the site model (schemas.site.Entity.id).")
    source_id: Identifier = Field(description="Emission source (stack) id within the site.")
    channel_id: Identifier = Field(description="Channel id within the source: the analyser checked.")
    quantity: QaQuantity = Field(
        description="HJ 212-2017 factor code of the channel: a05001 CO2, a19001 O2, a01014 moisture, "
        "a00000 flow, a01011 velocity."
    )
    unit: str = Field(description="Unit of every value of the record; one of the quantity's units "
                                  "(schemas.quantities).")

    @model_validator(mode="after")
    def _unit_of_quantity(self) -> Self:
        units = QUANTITIES[self.quantity].units
        if self.unit not in units:
            raise ValueError(f"unit {self.unit!r} is not a unit of {self.quantity} "
                             f"({QUANTITIES[self.quantity].name}); use one of {list(units)}")
        return self


class DriftCheck(_Analyser):
    """One daily zero or span check: the analyser's reading of a zero or span reference."""

    kind: Literal["drift_check"] = "drift_check"
    time: AwareDatetime = Field(description="When the check was read (ISO 8601 with a UTC offset).")
    check: Literal["zero", "span"] = Field(description="Zero (low-level) or span (upscale) reference.")
    reference_value: Finite = Field(description="Value of the zero or span reference (gas, filter, signal), in `unit`.")
    measured_value: Finite = Field(description="The analyser's reading of that reference, in `unit`.")
    full_scale: Finite | None = Field(
        default=None, gt=0,
        description="Range upper limit of the analyser (HJ 75 full scale, Part 75 span value), in `unit`. "
        "Needed where the policy writes the drift limit as a percentage of it.",
    )

    @model_validator(mode="after")
    def _reference_in_range(self) -> Self:
        if self.check == "span" and self.reference_value <= 0:
            raise ValueError(f"a span check needs a reference value above zero, got {self.reference_value}")
        if self.full_scale is not None and self.reference_value > self.full_scale:
            raise ValueError(f"reference_value {self.reference_value} is above full_scale {self.full_scale}")
        return self


def _unique(numbers: Iterable[int], what: str) -> None:
    seen: set[int] = set()
    for n in numbers:
        if n in seen:
            raise ValueError(f"{what} {n} appears twice")
        seen.add(n)


class ComparisonRun(_Frozen):
    """One run of a comparison test: the reference method and the CEMS over the same interval."""

    run: int = Field(ge=1, description="Run number within the test.")
    start: AwareDatetime = Field(description="Start of the run (ISO 8601 with a UTC offset).")
    end: AwareDatetime = Field(description="End of the run (ISO 8601 with a UTC offset).")
    reference_value: Finite = Field(description="Reference-method value of the run, in the test's `unit`.")
    cems_value: Finite = Field(description="CEMS value over the same interval, in the test's `unit`.")
    used: bool = Field(
        default=True,
        description="False for a run the tester excluded from the statistics (kept for the record; "
        "Part 75 App. A §6.5.10 lets some runs be rejected).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self


class ComparisonTest(_Analyser):
    """A comparison test (HJ 75 比对监测, Part 75 RATA, EN 14181 parallel measurements) of one analyser."""

    kind: Literal["comparison_test"] = "comparison_test"
    test_id: Identifier = Field(description="Test id, unique per site (the tester's report number).")
    runs: list[ComparisonRun] = Field(min_length=2, description="The runs; at least two used ones.")
    apply_from: ApplyFrom = None

    @model_validator(mode="after")
    def _runs(self) -> Self:
        _unique((r.run for r in self.runs), "run")
        if sum(r.used for r in self.runs) < 2:
            raise ValueError("at least two runs must be used (a standard deviation needs two)")
        return self


class LinearityInjection(_Frozen):
    """One injection of a reference gas of a linearity check."""

    level: Literal["low", "mid", "high"] = Field(description="Reference gas level.")
    time: AwareDatetime = Field(description="When the response was read (ISO 8601 with a UTC offset).")
    reference_value: Finite = Field(gt=0, description="Certified value of the reference gas, in the check's `unit`.")
    measured_value: Finite = Field(description="The analyser's response, in the check's `unit`.")


class LinearityCheck(_Analyser):
    """A linearity check: low, mid and high reference gases, each injected one or more times."""

    kind: Literal["linearity_check"] = "linearity_check"
    test_id: Identifier = Field(description="Check id, unique per site.")
    injections: list[LinearityInjection] = Field(description="Injections of the three gas levels (each at least once).")

    @model_validator(mode="after")
    def _levels(self) -> Self:
        missing = [lv for lv in ("low", "mid", "high") if lv not in {i.level for i in self.injections}]
        if missing:
            raise ValueError(f"no injection at level {', '.join(missing)}; a linearity check needs low, mid and high")
        return self


class TraversePoint(_Frozen):
    """The reference velocity at one traverse point."""

    point: int = Field(ge=1, description="Traverse point number.")
    reference_velocity_m_s: Finite = Field(ge=0, description="Reference-method (pitot) velocity at the point [m/s].")


class TraverseRun(_Frozen):
    """One traverse: every point measured once while the CEMS read its point velocity."""

    run: int = Field(ge=1, description="Run number within the traverse test.")
    start: AwareDatetime = Field(description="Start of the run (ISO 8601 with a UTC offset).")
    end: AwareDatetime = Field(description="End of the run (ISO 8601 with a UTC offset).")
    cems_velocity_m_s: Finite = Field(gt=0, description="Mean CEMS point (or path) velocity Vp over the run [m/s].")
    points: list[TraversePoint] = Field(min_length=1, description="The traverse points.")

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        _unique((p.point for p in self.points), "point")
        return self


class VelocityTraverse(_Frozen):
    """Velocity traverses that determine the velocity-field coefficient Kv of one velocity channel."""

    kind: Literal["velocity_traverse"] = "velocity_traverse"
    test_id: Identifier = Field(description="Test id, unique per site.")
    site_id: Identifier = Field(description="Entity id of the site model.")
    source_id: Identifier = Field(description="Emission source (stack) id within the site.")
    channel_id: Identifier = Field(description="The velocity channel (a01011, m/s) whose Kv is determined.")
    runs: list[TraverseRun] = Field(min_length=1, description="The traverse runs.")
    apply_from: ApplyFrom = None

    @model_validator(mode="after")
    def _runs(self) -> Self:
        _unique((r.run for r in self.runs), "run")
        return self


#: One QA record of any kind, told apart by ``kind``.
QaRecord = Annotated[DriftCheck | ComparisonTest | LinearityCheck | VelocityTraverse, Field(discriminator="kind")]
#: A QA file: a list of records (the JSON import shape; also ``schemas/json/qa-records.schema.json``).
QaRecords = list[QaRecord]

_ADAPTER = TypeAdapter(QaRecord)


def validate_record(data: object) -> DriftCheck | ComparisonTest | LinearityCheck | VelocityTraverse:
    """One record from a mapping (as parsed from JSON); raises :class:`pydantic.ValidationError`, whose
    error locations the importer maps back to file lines."""
    return _ADAPTER.validate_python(data)


def qa_json_schema() -> dict[str, Any]:
    """JSON Schema of a QA file (a list of records)."""
    return TypeAdapter(QaRecords).json_schema()
