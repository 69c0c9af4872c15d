"""Plausibility: the range of values a report's parameter can physically (or plausibly) take, and the window of
months an import accepts. A named, versioned table (``schemas/defaults/plausibility-<version>.yaml``,
:func:`load_plausibility`; China default ``plausibility-cn-2026``), every range with its docs/sources.md id and
confidence tag.

A value outside its range is refused at import, naming the range and its source: a clinker output of 1e308 t or an
element carbon of 5 t C/t is a typing or unit error, never a figure to reconcile. The ranges are checked on values
in canonical units (:mod:`.units`), after the model's own checks and before defaults are filled; they are not part
of the report model, so a report stored under one table still reads back under another.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..errors import Location
from .catalogues import FUELS, MATERIALS, PARAMETERS, ParameterName
from .report import AccountingReport, report_parts
from .units import UNITS, Param, _Frozen

__all__ = ["PLAUSIBILITY_VERSION", "MonthWindow", "Plausibility", "PlausibleRange", "load_plausibility"]

#: The plausibility table :func:`load_plausibility` and the importers use unless told otherwise.
PLAUSIBILITY_VERSION = "plausibility-cn-2026"

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class PlausibleRange(_Frozen):
    """The values ``parameter`` may take, in the canonical ``unit`` of its kind: ``low <= value <= high`` (``low <
    value`` when ``low_open``). ``of`` restricts it to fuels of a family or materials of a phase."""

    parameter: ParameterName
    of: Literal["solid", "liquid", "gas"] | None = None
    unit: str
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    low_open: bool = False
    tag: Literal["P", "S", "U"]  # confidence of the source (docs/sources.md)
    source: str = Field(min_length=1)  # docs/sources.md id(s)
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> PlausibleRange:
        canonical = sorted({canon for canon, _, _ in UNITS[PARAMETERS[self.parameter]].values()})
        if self.unit not in canonical:
            raise ValueError(f"unit {self.unit!r} is not a canonical unit of {self.parameter}; use one of {canonical}")
        if self.low > self.high or (self.low_open and self.low == self.high):
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.of is not None and self.parameter.split(".")[0] not in ("fuel", "material"):
            raise ValueError(f"'of' ({self.of}) applies to fuel.* and material.* parameters only")
        return self

    def admits(self, value: float) -> bool:
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def describe(self) -> str:
        """The range as an interval: ``[0, 2e+06] t``, ``(0.8, 1] fraction``."""
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}] {self.unit}"


class MonthWindow(_Frozen):
    """The months an import accepts: from ``first`` to ``ahead`` months after the current one (UTC)."""

    first: str = Field(description="First month accepted, YYYY-MM.")
    ahead: int = Field(ge=0, le=12, description="Months after the current one still accepted.")
    tag: Literal["P", "S", "U"]
    source: str = Field(min_length=1)

    @field_validator("first")
    @classmethod
    def _month(cls, month: str) -> str:
        if not _MONTH.match(month):
            raise ValueError(f"month must be YYYY-MM, got {month!r}")
        return month

    def last(self, today: date) -> str:
        """The last month accepted on ``today``."""
        n = today.year * 12 + today.month - 1 + self.ahead
        return f"{n // 12:04d}-{n % 12 + 1:02d}"

    def problem(self, month: str, today: date) -> str | None:
        """Why ``month`` (YYYY-MM, already checked) is refused on ``today``, or None."""
        last = self.last(today)
        if self.first <= month <= last:
            return None
        months = f"{self.ahead} month{'s' if self.ahead != 1 else ''}"
        return (f"month {month} is outside the accepted window {self.first} to {last} (the first month, and at most "
                f"{months} after the current one; {self.source} [{self.tag}])")


class Plausibility(_Frozen):
    """A versioned plausibility table: the month window and the ranges (at most one per parameter, of, unit)."""

    version: str = Field(min_length=1)
    description: str = ""
    months: MonthWindow
    ranges: list[PlausibleRange]

    @model_validator(mode="after")
    def _unique(self) -> Plausibility:
        seen: set[tuple[str, str | None, str]] = set()
        for r in self.ranges:
            key = (r.parameter, r.of, r.unit)
            if key in seen:
                raise ValueError(f"two ranges for {r.parameter} of {r.of} in {r.unit}")
            seen.add(key)
        return self

    def range_of(self, parameter: str, of: str | None, unit: str) -> PlausibleRange | None:
        """The range of ``parameter`` in canonical ``unit``: the one for ``of`` (family, phase) first, else the one
        for any."""
        for want in (of, None) if of is not None else (None,):
            for r in self.ranges:
                if r.parameter == parameter and r.of == want and r.unit == unit:
                    return r
        return None

    def problems(self, report: AccountingReport, today: date) -> list[tuple[Location, str]]:
        """``(location, message)`` of every value outside its range, and of a month outside the window."""
        out: list[tuple[Location, str]] = []
        month = self.months.problem(report.month, today)
        if month is not None:
            out.append((("month",), month))
        for loc, name, value, unit, of in _values(report):
            r = self.range_of(name, of, unit)
            if r is not None and not r.admits(value):
                what = f" for {of} {'fuels' if name.startswith('fuel.') else 'materials'}" if r.of else ""
                # a fraction typed as a percentage of a percentage (94 % entered as 0.94 %) fits when scaled back
                hint = " (for a percentage use unit '%' with the number in per cent)" \
                    if unit == "fraction" and r.admits(value * 100) else ""
                out.append((loc, f"{value:g} {unit} is outside the plausible range {r.describe()}{what} "
                                 f"({self.version}: {r.source} [{r.tag}]){hint}"))
        return out


def _values(report: AccountingReport) -> Iterator[tuple[Location, str, float, str, str | None]]:
    """(location, parameter name, value, canonical unit, fuel family or material phase) of every parameter with a
    value."""
    for loc, section, item, part in report_parts(report):
        of: str | None = None
        if section == "fuel" and item is not None:
            of = FUELS[item].family
        elif section == "material" and item is not None:
            of = MATERIALS[item].phase
        for name, p in part:
            if isinstance(p, Param) and p.value is not None and p.unit is not None:
                yield (*loc, name), f"{section}.{name}", p.value, p.unit, of


@functools.cache
def load_plausibility(version: str = PLAUSIBILITY_VERSION, path: str | Path | None = None) -> Plausibility:
    """The plausibility table ``version`` (``schemas/defaults/<version>.yaml``), or of the file ``path``.

    Raises :class:`~schemas.errors.ConfigError` naming file, line and field; the file's ``version:`` must match.
    """
    from .defaults import _versioned_file

    return _versioned_file(version, path, Plausibility, "plausibility-")
