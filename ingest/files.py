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
from pathlib import Path
from typing import Any, TypeVar

import yaml

from schemas.configfile import line_of
from schemas.errors import CemsError, Location

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "CsvRow", "CsvTable", "FileImportError", "JsonDocument", "Problem",
           "decode_utf8", "read_csv", "read_file", "read_json", "repeats"]

#: Largest file an import reads [bytes]. A national month of accounting reports as CSV is about 10 MB.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Deepest nesting of a JSON document an import takes (a list of reports, a report, a section, a list of fuels, a
#: fuel, a parameter is 6). Deeper is not a report; refused before it can exhaust the interpreter's stack.
MAX_DEPTH = 32

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


def read_file(path: Path, max_bytes: int | None = None) -> bytes | Problem:
    """The bytes of ``path``, or the problem: cannot be read, or larger than ``max_bytes`` (default
    :data:`MAX_FILE_BYTES`; checked before reading)."""
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Problem(str(path), "(file)", f"{size:,} bytes, the limit is {max_bytes:,}")
        return path.read_bytes()
    except OSError as exc:
        return Problem(str(path), "(file)", f"cannot read: {exc.strerror or exc}")


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
    """A CSV text read: the header (stripped), the rows that have as many cells as the header, the ragged rows (their
    cells, for an importer to tell which record they meant), and the problems (an empty file, another separator, a
    ragged row, a CSV syntax error: reading stops there)."""

    header: list[str]
    rows: list[CsvRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ragged: list[tuple[int, list[str]]] = field(default_factory=list)


#: Separators a spreadsheet may have written instead of the comma (a European locale's Excel, a tab export).
_OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _too_large(n: int) -> str:
    return f"{n:,} characters, the limit is {MAX_FILE_BYTES:,}"


def _separator_problem(header: list[str], source: str) -> Problem | None:
    """The header is one cell holding another separator: say which, instead of listing every column as missing."""
    if len(header) != 1:
        return None
    found = [name for sep, name in _OTHER_SEPARATORS.items() if sep in header[0]]
    if not found:
        return None
    return Problem(f"{source}:1", "(header)", f"the columns are separated by {found[0]}, not commas: save the file as "
                                              f"comma-separated CSV (UTF-8)")


def read_csv(text: str, source: str, *, expected: str) -> CsvTable:
    """The header and rows of CSV ``text``; blank rows are skipped. ``expected`` completes the message of an empty
    file (``"expected a header row"``)."""
    if len(text) > MAX_FILE_BYTES:
        return CsvTable([], problems=[Problem(source, "(file)", _too_large(len(text)))])
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        table = CsvTable([h.strip() for h in next(reader)])
    except StopIteration:
        return CsvTable([], problems=[Problem(f"{source}:1", "(header)", f"empty file; {expected}")])
    except csv.Error as exc:
        return CsvTable([], problems=[Problem(f"{source}:1", "(csv)", str(exc))])
    other = _separator_problem(table.header, source)
    if other is not None:
        return CsvTable([], problems=[other])
    line = 1
    try:
        for cells in reader:
            row_line, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(table.header):
                table.problems.append(Problem(f"{source}:{row_line}", "(row)",
                                              f"{len(cells)} cells, the header has {len(table.header)}"))
                table.ragged.append((row_line, [c.strip() for c in cells]))
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


def _depth(doc: Any) -> int:
    """The nesting depth of parsed JSON (a scalar is 0, ``[]`` 1), without recursion."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        node, level = todo.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                todo.extend((child, level + 1) for child in children)
    return deepest


def read_json(text: str | bytes, source: str, *, noun: str, undecodable: str = "(file)") -> JsonDocument | Problem:
    """Strict JSON (a duplicate key is an error, not the last one winning) with the positions of its nodes, or the
    problem that stops it: not UTF-8 (field ``undecodable``), not JSON, a duplicate key, nested too deeply, empty."""
    if isinstance(text, bytes):
        decoded = decode_utf8(text, source, undecodable)
        if isinstance(decoded, Problem):
            return decoded
        text = decoded
    if len(text) > MAX_FILE_BYTES:
        return Problem(source, undecodable, _too_large(len(text)))
    too_deep = Problem(source, "(json)", f"nested more than {MAX_DEPTH} levels deep: not a {noun} document")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        return Problem(f"{source}:{exc.lineno}", "(json)", f"{exc.msg} (column {exc.colno})")
    except RecursionError:  # deeper than the interpreter's stack
        return too_deep
    except ValueError as exc:  # a duplicate key
        return Problem(source, "(json)", str(exc))
    if _depth(doc) > MAX_DEPTH:
        return too_deep
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        return Problem(source, "(json)", f"no {noun}s")
    try:  # node positions for line numbers; JSON is (almost always) YAML, and lines are a courtesy
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError):
        root = None
    return JsonDocument(source, items, isinstance(doc, list), noun, root)

