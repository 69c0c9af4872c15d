"""Versioned default sets and uncertainty policies, and the validation that fills a report's defaults.

A ``default`` parameter may leave its value out; :func:`fill_defaults` takes it from a versioned defaults file
(``schemas/defaults/<version>.yaml``, :func:`load_defaults`) and records whether that default is confirmed. The
uncertainty policy (``schemas/defaults/uncertainty-*.yaml``, :func:`load_uncertainty`) gives the reconciliation's
tolerance the uncertainty of each measured parameter.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Collection
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from pydantic import Field, ValidationError, model_validator

from ..configfile import parse_config
from ..errors import ConfigError, Location, validation_problems
from ..site import Sector
from .catalogues import CO2_PARAMETERS, FUELS, MATERIALS, PARAMETERS, ParameterName
from .plausibility import Plausibility, load_plausibility
from .report import AccountingReport, ReportError, report_parts
from .units import Param, _canonical, _Frozen

#: The defaults version :func:`load_defaults` and the importers use unless told otherwise.
DEFAULTS_VERSION = "accounting-cn-2026"
#: The uncertainty policy :func:`load_uncertainty` uses unless told otherwise.
UNCERTAINTY_VERSION = "uncertainty-cn-2026"


# --- defaults -----------------------------------------------------------------------------------


class DefaultValue(_Frozen):
    """One default with its source. ``value: null`` records that no sourced default exists."""

    parameter: ParameterName
    item: str | None = None  # fuel/material id or qualifier (cell technology, coal_gangue); None = any
    sectors: list[Sector] | None = None  # None = every sector
    value: float | None = Field(allow_inf_nan=False)
    unit: str | None = None
    tag: Literal["P", "S", "U"]  # confidence tag (docs/sources.md)
    confirmed: bool
    source: str = Field(min_length=1)
    note: str = ""
    # relative expanded uncertainty of the default (95 %, fraction of the value) and where it comes from; the
    # reconciliation weights it by the CO2 the default carries (docs/reconciliation.md). None: not given
    # (older files), and the uncertainty policy's ``unsourced_default`` stands in
    uncertainty: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    uncertainty_tag: Literal["P", "S", "U"] | None = None
    uncertainty_source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> DefaultValue:
        if self.tag != "P" and self.confirmed:
            raise ValueError(f"a [{self.tag}] source cannot give a confirmed default: confirmed means the value "
                             f"was read in a primary text [P]")
        if self.uncertainty is not None and (self.uncertainty_tag is None or not self.uncertainty_source):
            raise ValueError("an uncertainty needs uncertainty_tag and uncertainty_source")
        if self.value is not None:
            self.canonical()  # raises on a wrong unit or range
        catalogue = {"fuel": FUELS, "material": MATERIALS}.get(self.parameter.split(".")[0])
        if catalogue is not None and self.item is not None and self.item not in catalogue:
            raise ValueError(f"unknown item {self.item!r} for {self.parameter}")
        return self

    def canonical(self) -> Param:
        return _canonical(PARAMETERS[self.parameter], Param(value=self.value, unit=self.unit, basis="measured"))


class AccountingDefaults(_Frozen):
    """A versioned set of defaults (one file under ``schemas/defaults/``)."""

    version: str = Field(min_length=1)
    description: str = ""
    defaults: list[DefaultValue]

    @model_validator(mode="after")
    def _unique(self) -> AccountingDefaults:
        seen: set[tuple[str, str | None, Sector | None]] = set()
        for d in self.defaults:
            for s in _each_sector(d.sectors):
                key = (d.parameter, d.item, s)
                if key in seen:
                    raise ValueError(f"two defaults for {d.parameter} item {d.item} sector {s}")
                seen.add(key)
        return self

    def lookup(self, parameter: str, item: str | None, sector: Sector | str) -> DefaultValue | None:
        """The entry for ``parameter`` and ``item`` (else the one without item) that applies to ``sector``."""
        for want in (item, None) if item is not None else (None,):
            for d in self.defaults:
                if d.parameter == parameter and d.item == want and (d.sectors is None or sector in d.sectors):
                    return d
        return None


def _each_sector(sectors: list[Sector] | None) -> tuple[Sector | None, ...]:
    """The sectors an entry names, or ``(None,)`` for an entry of every sector."""
    return tuple(sectors) if sectors else (None,)


#: A versioned file's model: both have a ``version`` that must match the file's name.
_Versioned = TypeVar("_Versioned", "AccountingDefaults", "UncertaintyPolicy", "Plausibility")


def _versioned_file(version: str, path: str | Path | None, model: type[_Versioned], prefix: str) -> _Versioned:
    """Parse ``schemas/defaults/<version>.yaml`` (or ``path``) into ``model``; the file's version must match."""
    if path is None:
        ref = resources.files("schemas").joinpath("defaults", f"{version}.yaml")
        if not ref.is_file():
            files = resources.files("schemas").joinpath("defaults").iterdir()
            known = sorted(p.name.removesuffix(".yaml") for p in files
                           if p.name.startswith(prefix) and p.name.endswith(".yaml"))
            raise ConfigError(f"no {prefix.rstrip('-')} version {version!r}; available: {known}")
        text, source = ref.read_text(encoding="utf-8"), f"schemas/defaults/{version}.yaml"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    parsed = parse_config(text, model, source)
    if path is None and parsed.version != version:
        raise ConfigError(f"{source}: version: {parsed.version!r} does not match the file name")
    return parsed


@functools.cache
def load_defaults(version: str = DEFAULTS_VERSION, path: str | Path | None = None) -> AccountingDefaults:
    """The defaults of ``version`` (``schemas/defaults/<version>.yaml``), or of the file ``path``.

    Raises :class:`ConfigError` naming file, line and field; the file's ``version:`` must match.
    """
    return _versioned_file(version, path, AccountingDefaults, "accounting-")


# --- uncertainties of measured parameters -------------------------------------------------------


class MeasuredUncertainty(_Frozen):
    """The relative expanded uncertainty (95 %, fraction of the value) of a measured parameter."""

    parameter: str
    sectors: list[Sector] | None = None  # None = every sector
    value: float = Field(gt=0, allow_inf_nan=False)
    tag: Literal["P", "S", "U"]
    source: str = Field(min_length=1)  # docs/sources.md id(s)
    note: str = ""


class UncertaintyPolicy(_Frozen):
    """A versioned set of uncertainties (``schemas/defaults/uncertainty-*.yaml``) for the reconciliation's
    tolerance: one per measured parameter that acts on the CO2, and the stand-in for a default without one
    of its own (defaults carry theirs in the defaults file)."""

    version: str = Field(min_length=1)
    description: str = ""
    unsourced_default: float = Field(gt=0, allow_inf_nan=False)
    unsourced_default_note: str = ""
    measured: list[MeasuredUncertainty]

    @model_validator(mode="after")
    def _complete(self) -> UncertaintyPolicy:
        seen: set[tuple[str, Sector | None]] = set()
        for m in self.measured:
            for sector in _each_sector(m.sectors):
                if (m.parameter, sector) in seen:
                    raise ValueError(f"two uncertainties for {m.parameter} sector {sector}")
                seen.add((m.parameter, sector))
        missing = [p for p in CO2_PARAMETERS if (p, None) not in seen]
        if missing:
            raise ValueError(f"no uncertainty (without sectors) for the CO2 parameters {missing}")
        return self

    def measured_uncertainty(self, parameter: str, sector: Sector | str) -> MeasuredUncertainty:
        """The entry for ``parameter`` that applies to ``sector`` (a sector's own entry first)."""
        for want in (sector, None):
            for m in self.measured:
                if m.parameter == parameter and want in _each_sector(m.sectors):
                    return m
        raise KeyError(f"{self.version}: no uncertainty for measured {parameter}")




@functools.cache
def load_uncertainty(version: str = UNCERTAINTY_VERSION, path: str | Path | None = None) -> UncertaintyPolicy:
    """The uncertainty policy ``version`` (``schemas/defaults/<version>.yaml``), or of the file ``path``."""
    return _versioned_file(version, path, UncertaintyPolicy, "uncertainty-")


# --- validation and defaults filling ------------------------------------------------------------


def _filled(p: Param, d: DefaultValue | None, version: str) -> dict[str, Any] | None:
    """A ``default`` parameter as it goes into the report: its value from the defaults when it gives none, labelled
    with the file's ``confirmed`` when it is the file's value (else unconfirmed); None when there is no default."""
    if p.value is None:
        if d is None or d.value is None:
            return None
        c = d.canonical()
        return {"value": c.value, "unit": c.unit, "basis": "default", "confirmed": d.confirmed,
                "default_version": version}
    given = d.canonical() if d is not None and d.value is not None else None
    same = (given is not None and given.value is not None and given.unit == p.unit
            and math.isclose(given.value, p.value, rel_tol=1e-9))
    return {**p.model_dump(), "confirmed": d.confirmed if d is not None and same else False,
            "default_version": version if same else None}


def _at(data: dict[str, Any], loc: Location) -> dict[str, Any]:
    """The part of a dumped report at ``loc``."""
    target: Any = data
    for key in loc:
        target = target[key]
    return cast(dict[str, Any], target)


def fill_defaults(report: AccountingReport, defaults: AccountingDefaults) -> AccountingReport:
    """Fill every ``default`` parameter without a value from ``defaults`` and label each default.

    A default the plant stated itself keeps its value; it is labelled with the file's ``confirmed`` flag
    when it equals the file's default, else unconfirmed. Raises :class:`ReportError` listing every
    default that ``defaults`` lacks (the report must then give a measured value).
    """
    data = report.model_dump()
    problems: list[tuple[Location, str]] = []
    changed = False
    for loc, section, item, part in report_parts(report):
        target = _at(data, loc)
        for name, p in part:
            if not isinstance(p, Param) or p.basis != "default":
                continue
            parameter = f"{section}.{name}"
            d = defaults.lookup(parameter, item, report.sector)
            filled = _filled(p, d, defaults.version)
            if filled is None:
                of = f" for {item}" if item else ""
                why = f" ({d.note})" if d is not None and d.note else ""
                problems.append(((*loc, name), f"basis 'default' but {defaults.version} has no default for "
                                 f"{parameter}{of}{why}; give a measured value"))
                continue
            target[name] = filled
            changed = True
    if problems:
        raise ReportError(problems)
    if not changed:
        return report
    try:
        return AccountingReport.model_validate(data)  # re-run every check on the filled values
    except ValidationError as exc:
        raise ReportError(validation_problems(exc, missing="missing field")) from None


def validate_report(data: object, defaults: AccountingDefaults | None = None, *,
                    plausibility: Plausibility | None = None, today: date | None = None,
                    entities: Collection[str] | None = None) -> AccountingReport:
    """Validate one report (a mapping, as parsed from JSON), check it is plausible, and fill its defaults.

    ``plausibility`` (default :func:`load_plausibility`) gives the range of each value and the window of months
    (relative to ``today``, default the current UTC date); ``entities``, when given, are the entity ids of the site
    files, and a report of any other entity is refused. Raises :class:`ReportError` listing every problem with its
    location.
    """
    try:
        report = AccountingReport.model_validate(data)
    except ValidationError as exc:
        raise ReportError(validation_problems(exc, missing="missing field")) from None
    table = plausibility if plausibility is not None else load_plausibility()
    problems = table.problems(report, today if today is not None else datetime.now(UTC).date())
    if entities is not None and report.entity_id not in entities:
        problems.insert(0, (("entity_id",), _unknown_entity(report.entity_id, entities)))
    if problems:
        raise ReportError(problems)
    return fill_defaults(report, defaults if defaults is not None else load_defaults())


def _unknown_entity(entity_id: str, entities: Collection[str]) -> str:
    near = difflib.get_close_matches(entity_id, list(entities), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    shown = sorted(entities)[:10]
    more = f" and {len(entities) - len(shown)} more" if len(entities) > len(shown) else ""
    return f"entity {entity_id!r} is in no site file{hint} (known: {shown}{more})"
