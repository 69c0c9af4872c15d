"""Import QA records of the monitors (:mod:`schemas.qa`) from CSV and JSON files or request bodies.

All or nothing: every record of every file given validates, or :class:`QaImportError` lists every
problem as ``file:line: field (record): message`` and nothing is returned. The formatting is that of
the accounting import (:class:`ingest.files.Problem`, shared).

JSON is a list of records shaped like :data:`schemas.qa.QaRecord`, told apart by ``kind`` (a single
object is taken as a list of one); JSON Schema: ``schemas/json/qa-records.schema.json``.

CSV is long format, one file per record kind; the header tells the kind (columns in any order, the
columns marked optional may be left out or left blank)::

    drift_check       site_id,source_id,channel_id,quantity,unit,time,check,reference_value,measured_value[,full_scale]
    comparison_test   test_id,site_id,source_id,channel_id,quantity,unit,run,start,end,reference_value,cems_value[,used]
    linearity_check   test_id,site_id,source_id,channel_id,quantity,unit,level,time,reference_value,measured_value
    velocity_traverse test_id,site_id,source_id,channel_id,run,start,end,cems_velocity_m_s,point,reference_velocity_m_s

A drift-check row is one record. The rows of one ``test_id`` form one test: each row is a run
(comparison), an injection (linearity) or a traverse point (traverse; the rows of one ``run`` share its
start, end and CEMS velocity). Columns that describe the test (or the run) must agree on every row.

:func:`parse_bytes` takes raw bytes and a name (the format follows the name's suffix), so the HTTP intake
to come can hand it a request body as it is.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.errors import Location, field_path, validation_problems
from schemas.qa import QaRecord, validate_record

from .files import FileImportError, Problem, decode_utf8, read_csv, read_json, repeats

__all__ = ["CSV_LAYOUTS", "MAX_BODY_BYTES", "QaImportError", "load_records", "parse_bytes", "parse_csv", "parse_json"]

#: Largest input :func:`parse_bytes` accepts (a year of daily checks of a large site is far below it).
MAX_BODY_BYTES = 16 * 1024 * 1024


class QaImportError(FileImportError):
    """Nothing was imported. ``problems`` lists every :class:`ingest.files.Problem` found."""


@dataclass(frozen=True)
class _Level:
    """Columns of one nesting level of a CSV layout: ``field`` is the list they fill (None: the record
    itself); ``key`` the column whose equal values share one entry (None: one entry per row)."""

    field: str | None
    columns: tuple[str, ...]
    key: str | None


@dataclass(frozen=True)
class _Layout:
    kind: str
    levels: tuple[_Level, ...]
    optional: frozenset[str] = frozenset()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for lv in self.levels for c in lv.columns)


_ANALYSER = ("site_id", "source_id", "channel_id", "quantity", "unit")

#: Record kind -> CSV layout (see the module docstring).
CSV_LAYOUTS: dict[str, _Layout] = {
    lay.kind: lay
    for lay in (
        _Layout("drift_check", (_Level(None, (*_ANALYSER, "time", "check", "reference_value", "measured_value",
                                              "full_scale"), None),), frozenset({"full_scale"})),
        _Layout("comparison_test", (_Level(None, ("test_id", *_ANALYSER), "test_id"),
                                    _Level("runs", ("run", "start", "end", "reference_value", "cems_value", "used"),
                                           None)), frozenset({"used"})),
        _Layout("linearity_check", (_Level(None, ("test_id", *_ANALYSER), "test_id"),
                                    _Level("injections", ("level", "time", "reference_value", "measured_value"),
                                           None))),
        _Layout("velocity_traverse", (_Level(None, ("test_id", "site_id", "source_id", "channel_id"), "test_id"),
                                      _Level("runs", ("run", "start", "end", "cems_velocity_m_s"), "run"),
                                      _Level("points", ("point", "reference_velocity_m_s"), None))),
    )
}


def _layout_of(header: list[str], source: str) -> _Layout:
    given = set(header)
    for lay in CSV_LAYOUTS.values():
        required = set(lay.columns) - lay.optional
        if required <= given <= set(lay.columns):
            return lay
    best = min(CSV_LAYOUTS.values(), key=lambda lay: len(given ^ set(lay.columns)))
    missing = [c for c in best.columns if c not in given and c not in best.optional]
    unknown = [c for c in header if c not in best.columns]
    expected = "; ".join(f"{lay.kind}: {','.join(lay.columns)}" for lay in CSV_LAYOUTS.values())
    raise QaImportError([Problem(f"{source}:1", "(header)", f"no QA record layout matches; closest is {best.kind}, "
                                 f"missing {missing}, unknown {unknown}. Layouts: {expected}")])


def _label(data: dict[str, Any]) -> str:
    if not isinstance(data.get("site_id"), str):
        return ""
    key = data.get("test_id") or "/".join(str(data.get(c, "?")) for c in ("source_id", "channel_id", "check", "time"))
    return f"{data['site_id']}/{key}"


def _field(loc: Location) -> str:
    """The CSV column an error location names, or the row's entity (run, injection, point)."""
    if loc and isinstance(loc[-1], str):
        return loc[-1]
    if len(loc) >= 2 and isinstance(loc[-2], str):
        return f"({loc[-2].removesuffix('s')})"
    return "(record)"


def _errors(exc: ValidationError, kind: str | None) -> list[tuple[Location, str]]:
    """Problems of a record; the kind (the union's tag) is not a level of the record as written."""
    return validation_problems(exc, missing="missing field", tag=kind)


def _key(rec: QaRecord) -> Hashable:
    if rec.kind == "drift_check":
        return rec.kind, rec.site_id, rec.source_id, rec.channel_id, rec.check, rec.time
    return rec.kind, rec.site_id, rec.test_id


def _finish(records: list[tuple[str, QaRecord]], problems: list[Problem]) -> list[QaRecord]:
    for where, rec, first in repeats(records, _key):
        what = "check (site, source, channel, check, time)" if rec.kind == "drift_check" else "test id on this site"
        problems.append(Problem(where, "(record)", f"same {what} as the record at {first}",
                                _label(rec.model_dump(mode="json"))))
    if problems:
        raise QaImportError(problems)
    return [rec for _, rec in records]


# --- CSV ----------------------------------------------------------------------------------------


def _csv_records(text: str, source: str) -> tuple[list[tuple[str, QaRecord]], list[Problem]]:
    table = read_csv(text, source, expected="expected a header row")
    if not table.header and table.problems:
        return [], table.problems
    if len(set(table.header)) != len(table.header):
        return [], [Problem(f"{source}:1", "(header)", f"a column appears twice: {table.header}")]
    lay = _layout_of(table.header, source)
    problems = table.problems
    groups: dict[object, dict[str, Any]] = {}  # record key -> {"data", "first", "lines": loc -> line, "kids"}
    for index, row in enumerate(table.rows):
        given = {h: c for h, c in row.cells.items() if c}  # blank: not given
        _place(given, row.line, index, lay, groups, problems, source)
    if not groups and not problems:
        problems.append(Problem(f"{source}:1", "(file)", "no data rows"))
    records = []
    for g in groups.values():
        try:
            records.append((f"{source}:{g['first']}", validate_record(g["data"])))
        except ValidationError as exc:
            for loc, msg in _errors(exc, lay.kind):
                at = next((g["lines"][loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in g["lines"]), g["first"])
                msg = "missing field (no column gives it)" if msg == "missing field" else msg
                problems.append(Problem(f"{source}:{at}", _field(loc), msg, _label(g["data"])))
    problems.sort(key=lambda p: int(p.where.rsplit(":", 1)[1]))
    return records, problems


def _place(row: dict[str, str], line: int, index: int, lay: _Layout, groups: dict[object, dict[str, Any]],
           problems: list[Problem], source: str) -> None:
    """Put one CSV row into its record (and run), checking that shared columns agree."""
    top = lay.levels[0]
    key = row.get(top.key) if top.key else index
    g = groups.get(key)
    if g is None:
        data = {"kind": lay.kind, **{c: row[c] for c in top.columns if c in row}}
        g = groups[key] = {"data": data, "first": line, "lines": {(): line}, "kids": {}}
    elif not _agree(row, g["data"], top.columns, g["first"], "test", g["data"], source, line, problems):
        return
    parent: dict[str, Any] = g["data"]
    loc: tuple[str | int | None, ...] = ()
    for lv in lay.levels[1:]:
        if lv.field is None:  # a layout error, not an input one: only the record level fills no list
            raise ValueError(f"layout {lay.kind}: a nested level needs the list it fills")
        items = parent.setdefault(lv.field, [])
        kids = g["kids"].setdefault(loc, {})
        k = row.get(lv.key) if lv.key else None
        if lv.key and k in kids:
            i = kids[k]
            if not _agree(row, items[i], lv.columns, g["lines"][(*loc, lv.field, i)], lv.key, g["data"], source, line,
                          problems):
                return
        else:
            i = len(items)
            items.append({c: row[c] for c in lv.columns if c in row})
            g["lines"][(*loc, lv.field, i)] = line
            if lv.key:
                kids[k] = i
        parent, loc = items[i], (*loc, lv.field, i)


def _agree(row: dict[str, str], data: dict[str, Any], columns: Sequence[str], first: int, what: str,
           record: dict[str, Any], source: str, line: int, problems: list[Problem]) -> bool:
    bad = [c for c in columns if row.get(c) != data.get(c)]
    for c in bad:
        problems.append(Problem(f"{source}:{line}", c, f"{row.get(c, '')!r} differs from {data.get(c, '')!r} on line "
                                f"{first} of the same {what}", _label(record)))
    return not bad


def parse_csv(text: str, source: str = "<csv>") -> list[QaRecord]:
    """QA records from CSV text (layouts in the module docstring); raises :class:`QaImportError`."""
    return _finish(*_csv_records(text, source))


# --- JSON ---------------------------------------------------------------------------------------


def _json_records(text: str | bytes, source: str) -> tuple[list[tuple[str, QaRecord]], list[Problem]]:
    doc = read_json(text, source, noun="record")
    if isinstance(doc, Problem):
        return [], [doc]
    records, problems = [], []
    for i, item in enumerate(doc.items):
        if not isinstance(item, dict):
            problems.append(Problem(doc.where(i), "(record)",
                                    f"expected an object with a kind, got {type(item).__name__}"))
            continue
        kind = item.get("kind")
        try:
            records.append((doc.where(i), validate_record(item)))
        except ValidationError as exc:
            problems += [Problem(doc.where(i, loc), field_path(loc, "(record)"), msg, _label(item))
                         for loc, msg in _errors(exc, kind if isinstance(kind, str) else None)]
    return records, problems


def parse_json(text: str | bytes, source: str = "<json>") -> list[QaRecord]:
    """QA records from JSON text (a list of records, or one record); raises :class:`QaImportError`."""
    return _finish(*_json_records(text, source))


# --- bytes and files ----------------------------------------------------------------------------


def _from_bytes(raw: bytes, name: str, max_bytes: int) -> tuple[list[tuple[str, QaRecord]], list[Problem]]:
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".json"):
        return [], [Problem(name, "(file)", "expected a .csv or .json name")]
    if len(raw) > max_bytes:
        return [], [Problem(name, "(file)", f"{len(raw)} bytes, the limit is {max_bytes}")]
    if suffix == ".json":
        return _json_records(raw, name)
    text = decode_utf8(raw, name)
    if isinstance(text, Problem):
        return [], [text]
    try:
        return _csv_records(text, name)
    except QaImportError as exc:  # the header matches no layout
        return [], list(exc.problems)


def parse_bytes(raw: bytes, name: str, max_bytes: int = MAX_BODY_BYTES) -> list[QaRecord]:
    """QA records from raw bytes (a file's or a request body's); the format follows ``name``'s suffix
    (``.csv`` or ``.json``) and ``name`` is where errors point. Pure: raises :class:`QaImportError`."""
    return _finish(*_from_bytes(raw, name, max_bytes))


def load_records(*paths: str | Path) -> list[QaRecord]:
    """QA records from ``.csv`` and ``.json`` files: all the files' records, or :class:`QaImportError`
    with the problems of every file (duplicates are checked across files too)."""
    records, problems = [], []
    for path in map(Path, paths):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            problems.append(Problem(str(path), "(file)", f"cannot read: {exc.strerror or exc}"))
            continue
        recs, probs = _from_bytes(raw, str(path), MAX_BODY_BYTES)
        records += recs
        problems += probs
    if not paths:
        problems.append(Problem("(no files)", "(file)", "no files given"))
    return _finish(records, problems)
