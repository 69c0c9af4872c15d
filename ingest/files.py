"""What the file importers share: the problem list, the all-or-nothing error, reading CSV and JSON.

Both imports (accounting reports, :mod:`ingest.accounting`; QA records, :mod:`ingest.qa`) take CSV and JSON from
files or request bodies and refuse the whole input when anything is wrong, listing every problem as
``file:line: field (what): message``. This module holds the pieces that are the same for both: :class:`Problem`
and :class:`FileImportError`; :func:`decode_utf8`; :func:`read_csv` (header, rows with their file lines, ragged
rows); :func:`read_json` (strict JSON without duplicate keys, with node positions so that a problem names its line);
:func:`repeats` (the same record twice).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from schemas.configfile import line_of
from schemas.errors import CemsError, Location

__all__ = ["CsvRow", "CsvTable", "FileImportError", "JsonDocument", "Problem", "decode_utf8", "read_csv", "read_json",
           "repeats"]

T = TypeVar("T")


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


class FileImportError(CemsError, ValueError):
    """Nothing was imported. ``problems`` lists every :class:`Problem` found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        listed = "\n".join(map(str, self.problems))
        super().__init__(f"{n} problem{'s' if n != 1 else ''}, nothing imported:\n{listed}")


def decode_utf8(raw: bytes, where: str, what: str = "(file)") -> str | Problem:
    """``raw`` as text (UTF-8, a byte-order mark dropped), or the problem that it is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Problem(where, what, f"not UTF-8 ({exc.reason} at byte {exc.start})")


def repeats(found: Sequence[tuple[str, T]], key: Callable[[T], Hashable]) -> list[tuple[str, T, str]]:
    """``(where, item, where the first was)`` of every item whose key an earlier item has (found in order)."""
    first: dict[Hashable, str] = {}
    out = []
    for where, item in found:
        k = key(item)
        if k in first:
            out.append((where, item, first[k]))
        first.setdefault(k, where)
    return out


# --- CSV ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvRow:
    """One data row: its file line (of its first line, for a quoted cell that spans lines) and its stripped cells."""

    line: int
    cells: dict[str, str]


@dataclass
class CsvTable:
    """A CSV text read: the header (stripped), the rows that have as many cells as the header, and the problems
    (an empty file, a ragged row, a CSV syntax error: reading stops there)."""

    header: list[str]
    rows: list[CsvRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def read_csv(text: str, source: str, *, expected: str) -> CsvTable:
    """The header and rows of CSV ``text``; blank rows are skipped. ``expected`` completes the message of an empty
    file (``"expected a header row"``)."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        table = CsvTable([h.strip() for h in next(reader)])
    except StopIteration:
        return CsvTable([], problems=[Problem(f"{source}:1", "(header)", f"empty file; {expected}")])
    except csv.Error as exc:
        return CsvTable([], problems=[Problem(f"{source}:1", "(csv)", str(exc))])
    line = 1
    try:
        for cells in reader:
            row_line, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(table.header):
                table.problems.append(Problem(f"{source}:{row_line}", "(row)",
                                              f"{len(cells)} cells, the header has {len(table.header)}"))
                continue
            table.rows.append(CsvRow(row_line, {h: c.strip() for h, c in zip(table.header, cells, strict=True)}))
    except csv.Error as exc:  # in the row after the last one read
        table.problems.append(Problem(f"{source}:{line + 1}", "(csv)", str(exc)))
    return table


# --- JSON ---------------------------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


@dataclass(frozen=True)
class JsonDocument:
    """A JSON document of records: a list of them, or one (taken as a list of one)."""

    source: str
    items: list[Any]
    is_list: bool
    noun: str  # what one item is, for a location without a line: "report", "record"
    root: yaml.Node | None  # node positions; None when the text is JSON that YAML does not read

    def where(self, i: int, loc: Location = ()) -> str:
        """``file:line`` of ``loc`` inside item ``i`` (the item itself for ``()``), else ``file <noun>[i]``."""
        prefix: Location = (i,) if self.is_list else ()
        line = line_of(self.root, prefix + loc) if self.root is not None else None
        return f"{self.source}:{line}" if line else f"{self.source} {self.noun}[{i}]"


def read_json(text: str | bytes, source: str, *, noun: str, undecodable: str = "(file)") -> JsonDocument | Problem:
    """Strict JSON (a duplicate key is an error, not the last one winning) with the positions of its nodes, or the
    problem that stops it: not UTF-8 (field ``undecodable``), not JSON, a duplicate key, nested too deeply, empty."""
    if isinstance(text, bytes):
        decoded = decode_utf8(text, source, undecodable)
        if isinstance(decoded, Problem):
            return decoded
        text = decoded
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        return Problem(f"{source}:{exc.lineno}", "(json)", f"{exc.msg} (column {exc.colno})")
    except (ValueError, RecursionError) as exc:  # a duplicate key; absurd nesting
        return Problem(source, "(json)", str(exc) or "nested too deeply")
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        return Problem(source, "(json)", f"no {noun}s")
    try:  # node positions for line numbers; JSON is (almost always) YAML, and lines are a courtesy
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        root = None
    return JsonDocument(source, items, isinstance(doc, list), noun, root)

