"""Import self-reported monthly accounting reports: CSV files, JSON files, the JSON body of an HTTP POST.

All or nothing: every report validates (:func:`schemas.accounting.validate_report`, which also fills
defaults), or :class:`AccountingImportError` lists every problem with its CSV row or JSON line and the
field, and nothing is returned. A regulator fixing a file wants the whole list at once, and a
half-imported month would reconcile against partial figures.

CSV is long format, one row per parameter (``docs/accounting.md``)::

    entity_id,source_id,month,sector,parameter,item,value,unit,basis
    js-cement-001,kiln1,2025-01,cement,fuel.consumption,raw_coal,12000,t,measured

Rows with the same (entity_id, source_id, month) form one report. JSON is a list of reports shaped like
:class:`schemas.accounting.AccountingReport` (a single object is taken as a list of one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.accounting import (
    PARAMETERS,
    SETTINGS,
    AccountingDefaults,
    AccountingReport,
    ReportError,
    load_defaults,
    validate_report,
)
from schemas.errors import Location, field_path

from .files import (
    CsvRow,
    CsvTable,
    FileImportError,
    Problem,
    decode_utf8,
    read_csv,
    read_json,
    repeats,
)

__all__ = [
    "CSV_COLUMNS",
    "AccountingImportError",
    "Problem",
    "load_reports",
    "parse_csv",
    "parse_json",
    "reports_from_http_body",
]

CSV_COLUMNS = ("entity_id", "source_id", "month", "sector", "parameter", "item", "value", "unit", "basis")
#: Largest HTTP body :func:`reports_from_http_body` accepts (a national month is far below it).
MAX_BODY_BYTES = 16 * 1024 * 1024

ReportKey = tuple[str, str | None, str]


class AccountingImportError(FileImportError):
    """Nothing was imported. ``problems`` lists every :class:`Problem` found."""


def _label(key: tuple[object, object, object]) -> str:
    entity, source, month = key
    return f"{entity}/{source or '*'}/{month}"


def _finish(reports: list[tuple[str, AccountingReport]], problems: list[Problem]) -> list[AccountingReport]:
    problems += [Problem(where, "(report)", f"same entity, source and month as the report at {first}", _label(rep.key))
                 for where, rep, first in repeats(reports, lambda rep: rep.key)]
    if problems:
        raise AccountingImportError(problems)
    return [rep for _, rep in reports]


# --- CSV ----------------------------------------------------------------------------------------

#: Where the rows of a section with items (fuels, materials) go in the report, and where the others go.
_ITEMS_AT = {"fuel": ("fuels",), "material": ("steel", "materials")}


@dataclass
class _Rows:
    """The rows of one report as they are read: its data (items by id), the CSV line of each part, the parts whose
    row was refused (reported there, not again as missing) and the line of each (parameter, item) given."""

    data: dict[str, Any]
    first: int
    locs: dict[tuple[str, ...], int] = field(default_factory=dict)
    bad: set[tuple[str, ...]] = field(default_factory=set)
    seen: dict[tuple[str, str], int] = field(default_factory=dict)

    def place(self, section: str, item: str, name: str, entry: object, line: int) -> None:
        """``entry`` as field ``name`` of the part ``section`` (of item ``item``: a fuel or a material)."""
        path = _part(section, item)
        target = self.data
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target = target.setdefault(path[-1], {section: item} if section in _ITEMS_AT else {})
        target[name] = entry
        self.locs.setdefault(path, line)
        self.locs[(*path, name)] = line


def _part(section: str, item: str) -> tuple[str, ...]:
    """Where the part a row fills is in the report (items by id): ``("fuels", "raw_coal")``, ``("cement",)``."""
    return (*_ITEMS_AT[section], item) if section in _ITEMS_AT else (section,)


def _number(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError
    return v


def _check_header(table: CsvTable, source: str) -> None:
    if not table.header and table.problems:  # empty, or not CSV
        raise AccountingImportError(table.problems)
    missing = [c for c in CSV_COLUMNS if c not in table.header]
    extra = [c for c in table.header if c not in CSV_COLUMNS]
    if missing or extra:
        raise AccountingImportError([Problem(f"{source}:1", "(header)", f"missing columns {missing}, unknown columns "
                                             f"{extra}; expected {list(CSV_COLUMNS)}")])


def _refusal(cells: dict[str, str], rows: _Rows) -> tuple[str, str] | None:
    """(field, message) when a row cannot belong to its report: another sector, an unknown parameter, an item
    where none belongs (or none where one must), a parameter given twice."""
    param, item = cells["parameter"], cells["item"]
    label = f"{param} [{item}]" if item else param
    if cells["sector"] != rows.data["sector"]:
        return "sector", (f"{cells['sector']!r} differs from {rows.data['sector']!r} on line {rows.first} of the same "
                          f"report")
    if param not in PARAMETERS and param not in SETTINGS:
        return "parameter", f"unknown parameter {param!r}; known: {', '.join([*PARAMETERS, *sorted(SETTINGS)])}"
    section = param.split(".")[0]
    if (section in _ITEMS_AT) != bool(item):
        return label, f"{param} {'needs the fuel or material id in item' if section in _ITEMS_AT else 'takes no item'}"
    if (param, item) in rows.seen:
        return label, f"given twice (also on line {rows.seen[param, item]})"
    return None


def _entry(cells: dict[str, str]) -> object:
    """What a row gives its field: a setting's text, or a parameter's ``{value, unit, basis}``. Raises ValueError
    with the message of a setting with a unit or basis, or a value that is not a number."""
    if cells["parameter"] in SETTINGS:
        if cells["unit"] or cells["basis"]:
            raise ValueError("a setting has no unit or basis")
        return cells["value"]
    try:
        value = _number(cells["value"]) if cells["value"] else None
    except ValueError:
        raise ValueError(f"value {cells['value']!r} is not a number") from None
    return {"value": value, "unit": cells["unit"] or None, "basis": cells["basis"] or None}


def _add_row(row: CsvRow, reports: dict[ReportKey, _Rows], source: str) -> Problem | None:
    """Put one CSV row into its report; the problem when it does not fit."""
    cells = row.cells
    key: ReportKey = (cells["entity_id"], cells["source_id"] or None, cells["month"])
    rows = reports.setdefault(key, _Rows({"entity_id": key[0], "source_id": key[1], "month": key[2],
                                          "sector": cells["sector"]}, row.line))
    param, item = cells["parameter"], cells["item"]
    label = f"{param} [{item}]" if item else param
    refused = _refusal(cells, rows)
    if refused is not None:
        return Problem(f"{source}:{row.line}", *refused, _label(key))
    rows.seen[param, item] = row.line
    section, name = param.split(".")
    try:
        entry = _entry(cells)
    except ValueError as exc:
        rows.bad.add((*_part(section, item), name))
        return Problem(f"{source}:{row.line}", label, str(exc), _label(key))
    rows.place(section, item, name, entry, row.line)
    return None


def _as_lists(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The report's items (by id while reading) as lists, and the item id at each list position, to map pydantic
    locations back to rows."""
    data, order = dict(data), {}
    if "fuels" in data:
        order["fuels"] = list(data["fuels"])
        data["fuels"] = list(data["fuels"].values())
    if "steel" in data and "materials" in data["steel"]:
        order["materials"] = list(data["steel"]["materials"])
        data["steel"] = {**data["steel"], "materials": list(data["steel"]["materials"].values())}
    return data, order


def _validate(key: ReportKey, rows: _Rows, source: str, defaults: AccountingDefaults,
              problems: list[Problem]) -> AccountingReport | None:
    """The report of ``rows``, or None with its problems (at the lines of the rows they concern) added."""
    data, order = _as_lists(rows.data)
    try:
        return validate_report(data, defaults)
    except ReportError as exc:
        for loc, msg in exc.problems:
            line, name, named = _csv_where(loc, rows, order)
            if named not in rows.bad:
                msg = "missing field (no row gives it)" if msg == "missing field" else msg
                problems.append(Problem(f"{source}:{line}", name, msg, _label(key)))
        return None


def parse_csv(text: str, source: str = "<csv>", defaults: AccountingDefaults | None = None) -> list[AccountingReport]:
    """Reports from long-format CSV text; raises :class:`AccountingImportError` (rows are file lines)."""
    defaults = defaults if defaults is not None else load_defaults()
    table = read_csv(text, source, expected=f"expected columns {list(CSV_COLUMNS)}")
    _check_header(table, source)
    problems = list(table.problems)
    reports: dict[ReportKey, _Rows] = {}
    for row in table.rows:
        problem = _add_row(row, reports, source)
        if problem is not None:
            problems.append(problem)
    if not reports and not problems:
        problems.append(Problem(f"{source}:1", "(file)", "no data rows"))
    valid = []
    for key, rows in reports.items():
        report = _validate(key, rows, source, defaults, problems)
        if report is not None:
            valid.append((f"{source}:{rows.first}", report))
    problems.sort(key=lambda p: int(p.where.rsplit(":", 1)[1]))  # file order; all CSV problems have a line
    return _finish(valid, problems)


def _csv_where(loc: Location, rows: _Rows, order: dict[str, list[str]]) -> tuple[int, str, tuple[str | int, ...]]:
    """The CSV line (of the deepest part of ``loc`` that has a row), the field in CSV terms, and ``loc``
    with item ids for list positions."""
    named = list(loc)
    if named[:1] == ["fuels"] and len(named) > 1 and isinstance(named[1], int):
        named[1] = order["fuels"][named[1]]
    if named[:2] == ["steel", "materials"] and len(named) > 2 and isinstance(named[2], int):
        named[2] = order["materials"][named[2]]
    line = next((rows.locs[key] for n in range(len(named), 0, -1) if (key := tuple(map(str, named[:n]))) in rows.locs),
                rows.first)
    return line, _csv_field(named), tuple(named)


def _csv_field(named: list[str | int]) -> str:
    """A location (item ids for list positions) as the CSV names it: ``fuel.ncv [raw_coal]``, ``cement.clinker_cao``."""
    rest: list[str | int]
    if named[-1:] in (["fuel"], ["material"]) and len(named) in (3, 4):  # the id itself
        head, rest = f"item [{named[-2]}]", []
    elif named[:1] == ["fuels"] and len(named) > 1:
        head, rest = (f"fuel.{named[2]} [{named[1]}]", named[3:]) if len(named) > 2 else (f"fuel [{named[1]}]", [])
    elif named[:2] == ["steel", "materials"] and len(named) > 2:
        head, rest = ((f"material.{named[3]} [{named[2]}]", named[4:]) if len(named) > 3
                      else (f"material [{named[2]}]", []))
    elif len(named) > 1:
        head, rest = f"{named[0]}.{named[1]}", named[2:]
    else:
        head, rest = (str(named[0]) if named else "(report)"), []
    return head + "".join(f".{p}" for p in rest)


# --- JSON ---------------------------------------------------------------------------------------


def parse_json(text: str | bytes, source: str = "<json>",
               defaults: AccountingDefaults | None = None) -> list[AccountingReport]:
    """Reports from JSON text (a list of reports, or one report); raises :class:`AccountingImportError`."""
    defaults = defaults if defaults is not None else load_defaults()
    doc = read_json(text, source, noun="report", undecodable="(body)")
    if isinstance(doc, Problem):
        raise AccountingImportError([doc])
    reports, problems = [], []
    for i, item in enumerate(doc.items):
        label = (_label((item.get("entity_id"), item.get("source_id"), item.get("month"))) if isinstance(item, dict)
                 else "")
        try:
            reports.append((doc.where(i), validate_report(item, defaults)))
        except ReportError as exc:
            problems += [Problem(doc.where(i, loc), field_path(loc, "(report)"), msg, label)
                         for loc, msg in exc.problems]
    return _finish(reports, problems)


def reports_from_http_body(body: bytes, defaults: AccountingDefaults | None = None,
                           max_bytes: int = MAX_BODY_BYTES) -> list[AccountingReport]:
    """Reports from the JSON body of an HTTP POST: the same checks as :func:`parse_json`, plus a size limit.
    Pure: the HTTP server maps :class:`AccountingImportError` to a 422 with ``problems``."""
    if len(body) > max_bytes:
        raise AccountingImportError([Problem("request body", "(body)", f"{len(body)} bytes, the limit is {max_bytes}")])
    return parse_json(body, "request body", defaults)


def load_reports(path: str | Path, defaults: AccountingDefaults | None = None) -> list[AccountingReport]:
    """Reports from a ``.csv`` or ``.json`` file."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".json"):
        raise AccountingImportError([Problem(str(path), "(file)", "expected a .csv or .json file")])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AccountingImportError([Problem(str(path), "(file)", f"cannot read: {exc.strerror or exc}")]) from None
    if path.suffix.lower() == ".json":
        return parse_json(raw, str(path), defaults)
    text = decode_utf8(raw, str(path))
    if isinstance(text, Problem):
        raise AccountingImportError([text])
    return parse_csv(text, str(path), defaults)
