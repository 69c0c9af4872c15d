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

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from schemas.accounting import (
    PARAMETERS,
    SETTINGS,
    AccountingDefaults,
    AccountingReport,
    ReportError,
    load_defaults,
    validate_report,
)
from schemas.configfile import _line_of
from schemas.errors import CemsError

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


@dataclass(frozen=True)
class Problem:
    """One problem: where (``file:line``), which report, which field, what is wrong."""

    where: str
    field: str
    message: str
    report: str = ""

    def __str__(self) -> str:
        of = f" ({self.report})" if self.report else ""
        return f"{self.where}: {self.field}{of}: {self.message}"


class AccountingImportError(CemsError, ValueError):
    """Nothing was imported. ``problems`` lists every :class:`Problem` found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''}, nothing imported:\n" + "\n".join(map(str, self.problems)))


def _label(key: tuple) -> str:
    entity, source, month = key
    return f"{entity}/{source or '*'}/{month}"


def _finish(reports: list[tuple[str, AccountingReport]], problems: list[Problem]) -> list[AccountingReport]:
    first: dict[tuple, str] = {}
    for where, rep in reports:
        if rep.key in first:
            problems.append(Problem(where, "(report)", f"same entity, source and month as the report at {first[rep.key]}",
                                    _label(rep.key)))
        first.setdefault(rep.key, where)
    if problems:
        raise AccountingImportError(problems)
    return [rep for _, rep in reports]


# --- CSV ----------------------------------------------------------------------------------------


def _number(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError
    return v


def parse_csv(text: str, source: str = "<csv>", defaults: AccountingDefaults | None = None) -> list[AccountingReport]:
    """Reports from long-format CSV text; raises :class:`AccountingImportError` (rows are file lines)."""
    defaults = defaults if defaults is not None else load_defaults()
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    problems: list[Problem] = []
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise AccountingImportError([Problem(f"{source}:1", "(header)", f"empty file; expected columns {list(CSV_COLUMNS)}")]) from None
    missing = [c for c in CSV_COLUMNS if c not in header]
    extra = [c for c in header if c not in CSV_COLUMNS]
    if missing or extra:
        raise AccountingImportError([Problem(f"{source}:1", "(header)", f"missing columns {missing}, unknown columns "
                                             f"{extra}; expected {list(CSV_COLUMNS)}")])
    # report key -> {"data": report dict, "locs": location -> CSV line, "first": first line}
    groups: dict[tuple, dict] = {}
    seen: dict[tuple, int] = {}
    line = 1
    for cells in reader:
        row_line, line = line + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            problems.append(Problem(f"{source}:{row_line}", "(row)", f"{len(cells)} cells, the header has {len(header)}"))
            continue
        row = {h: c.strip() for h, c in zip(header, cells)}
        where = f"{source}:{row_line}"
        key = (row["entity_id"], row["source_id"] or None, row["month"])
        g = groups.setdefault(key, {"data": {"entity_id": key[0], "source_id": key[1], "month": key[2],
                                             "sector": row["sector"]},
                                    "locs": {}, "bad": set(), "first": row_line})
        param, item = row["parameter"], row["item"]
        label = f"{param} [{item}]" if item else param
        if row["sector"] != g["data"]["sector"]:
            problems.append(Problem(where, "sector", f"{row['sector']!r} differs from {g['data']['sector']!r} on "
                                    f"line {g['first']} of the same report", _label(key)))
            continue
        if param not in PARAMETERS and param not in SETTINGS:
            problems.append(Problem(where, "parameter", f"unknown parameter {param!r}; known: "
                                    f"{', '.join([*PARAMETERS, *sorted(SETTINGS)])}", _label(key)))
            continue
        section, name = param.split(".")
        if (section in ("fuel", "material")) != bool(item):
            need = "needs the fuel or material id in item" if section in ("fuel", "material") else "takes no item"
            problems.append(Problem(where, label, f"{param} {need}", _label(key)))
            continue
        if (key, param, item) in seen:
            problems.append(Problem(where, label, f"given twice (also on line {seen[key, param, item]})", _label(key)))
            continue
        seen[key, param, item] = row_line
        named = {"fuel": ("fuels", item, name), "material": ("steel", "materials", item, name)}.get(section, (section, name))
        if param in SETTINGS:
            if row["unit"] or row["basis"]:
                problems.append(Problem(where, label, "a setting has no unit or basis", _label(key)))
                g["bad"].add(named)
                continue
            entry = row["value"]
        else:
            try:
                value = _number(row["value"]) if row["value"] else None
            except ValueError:
                problems.append(Problem(where, label, f"value {row['value']!r} is not a number", _label(key)))
                g["bad"].add(named)  # reported here; not again as missing
                continue
            entry = {"value": value, "unit": row["unit"] or None, "basis": row["basis"] or None}
        data, locs = g["data"], g["locs"]
        if section == "fuel":
            items = data.setdefault("fuels", {})
            items.setdefault(item, {"fuel": item})[name] = entry
            locs.setdefault(("fuels", item), row_line)
            locs[("fuels", item, name)] = row_line
        elif section == "material":
            items = data.setdefault("steel", {}).setdefault("materials", {})
            items.setdefault(item, {"material": item})[name] = entry
            locs.setdefault(("steel", "materials", item), row_line)
            locs[("steel", "materials", item, name)] = row_line
        else:
            data.setdefault(section, {})[name] = entry
            locs.setdefault((section,), row_line)
            locs[(section, name)] = row_line
    if not groups and not problems:
        problems.append(Problem(f"{source}:1", "(file)", "no data rows"))

    reports = []
    for key, g in groups.items():
        data = dict(g["data"])
        order = {}  # list position -> item id, to map pydantic locations back to rows
        if "fuels" in data:
            order["fuels"] = list(data["fuels"])
            data["fuels"] = list(data["fuels"].values())
        if "steel" in data and "materials" in data["steel"]:
            order["materials"] = list(data["steel"]["materials"])
            data["steel"] = {**data["steel"], "materials": list(data["steel"]["materials"].values())}
        try:
            reports.append((f"{source}:{g['first']}", validate_report(data, defaults)))
        except ReportError as exc:
            for loc, msg in exc.problems:
                line, field, named = _csv_where(loc, g, order)
                if named in g["bad"]:
                    continue
                msg = "missing field (no row gives it)" if msg == "missing field" else msg
                problems.append(Problem(f"{source}:{line}", field, msg, _label(key)))
    problems.sort(key=lambda p: int(p.where.rsplit(":", 1)[1]))  # file order; all CSV problems have a line
    return _finish(reports, problems)


def _csv_where(loc: tuple, g: dict, order: dict) -> tuple[int, str, tuple]:
    """The CSV line (of the deepest part of ``loc`` that has a row), the field in CSV terms, and ``loc``
    with item ids for list positions."""
    named = list(loc)
    if named[:1] == ["fuels"] and len(named) > 1 and isinstance(named[1], int):
        named[1] = order["fuels"][named[1]]
    if named[:2] == ["steel", "materials"] and len(named) > 2 and isinstance(named[2], int):
        named[2] = order["materials"][named[2]]
    line = next((g["locs"][tuple(named[:n])] for n in range(len(named), 0, -1) if tuple(named[:n]) in g["locs"]),
                g["first"])
    if named[-1:] in (["fuel"], ["material"]) and len(named) in (3, 4):  # the id itself
        head, rest = f"item [{named[-2]}]", []
    elif named[:1] == ["fuels"] and len(named) > 1:
        head, rest = (f"fuel.{named[2]} [{named[1]}]", named[3:]) if len(named) > 2 else (f"fuel [{named[1]}]", [])
    elif named[:2] == ["steel", "materials"] and len(named) > 2:
        head, rest = (f"material.{named[3]} [{named[2]}]", named[4:]) if len(named) > 3 else (f"material [{named[2]}]", [])
    elif len(named) > 1:
        head, rest = f"{named[0]}.{named[1]}", named[2:]
    else:
        head, rest = (str(named[0]) if named else "(report)"), []
    return line, head + "".join(f".{p}" for p in rest), tuple(named)


# --- JSON ---------------------------------------------------------------------------------------


def _no_duplicate_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_json(text: str | bytes, source: str = "<json>", defaults: AccountingDefaults | None = None) -> list[AccountingReport]:
    """Reports from JSON text (a list of reports, or one report); raises :class:`AccountingImportError`."""
    defaults = defaults if defaults is not None else load_defaults()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise AccountingImportError([Problem(source, "(body)", f"not UTF-8 ({exc.reason} at byte {exc.start})")]) from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise AccountingImportError([Problem(f"{source}:{exc.lineno}", "(json)", f"{exc.msg} (column {exc.colno})")]) from None
    except ValueError as exc:  # a duplicate key
        raise AccountingImportError([Problem(source, "(json)", str(exc))]) from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise AccountingImportError([Problem(source, "(json)", "no reports")])
    try:  # node positions for line numbers; JSON is (almost always) YAML, and lines are a courtesy
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None
    reports, problems = [], []
    for i, item in enumerate(items):
        prefix = (i,) if isinstance(doc, list) else ()
        label = _label((item.get("entity_id"), item.get("source_id"), item.get("month"))) if isinstance(item, dict) else ""

        def where(loc: tuple, prefix=prefix) -> str:
            line = _line_of(root, prefix + loc) if root is not None else None
            return f"{source}:{line}" if line else f"{source} report[{i}]"

        try:
            reports.append((where(()), validate_report(item, defaults)))
        except ReportError as exc:
            problems += [Problem(where(loc), _json_field(loc), msg, label) for loc, msg in exc.problems]
    return _finish(reports, problems)


def _json_field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(report)"


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
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AccountingImportError([Problem(str(path), "(file)", f"not UTF-8 ({exc.reason} at byte {exc.start})")]) from None
    return parse_csv(text, str(path), defaults)
