"""What the file importers share (ingest/files.py) and the one pydantic error formatter (schemas/errors.py):
hand-made inputs with the expected problems written out, and property tests: any text given to the accounting
import gives reports or an AccountingImportError, never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ingest.accounting import CSV_COLUMNS, AccountingImportError, parse_csv, parse_json
from ingest.files import (
    FileImportError,
    Problem,
    decode_utf8,
    read_csv,
    read_json,
    repeats,
)
from ingest.qa import QaImportError
from schemas.errors import field_path, validation_problems

HEADER = ",".join(CSV_COLUMNS) + "\n"


def test_field_path_reads_like_the_document():
    assert field_path(("sources", 0, "channels", 2, "unit")) == "sources[0].channels[2].unit"
    assert field_path((0, "ncv")) == "[0].ncv"  # a list document's item
    assert field_path(()) == "(top level)"
    assert field_path((), "(report)") == "(report)"


class _Inner(BaseModel):
    x: int


class _Outer(BaseModel):
    name: str
    items: list[_Inner]


def test_validation_problems_drop_the_value_error_prefix_and_name_missing_fields():
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate({"items": [{"x": 1}, {"x": "a"}]})
    got = dict(validation_problems(info.value))
    assert got[("name",)] == "Field required"  # pydantic's own words unless told otherwise
    assert ("items", 1, "x") in got
    got = dict(validation_problems(info.value, ("reports", 3), missing="missing field"))
    assert got[("reports", 3, "name")] == "missing field"
    assert ("reports", 3, "items", 1, "x") in got


def test_both_import_errors_are_file_import_errors():
    # one base: a caller (the CLI, the console) catches either the same way; the message lists every problem
    for cls in (AccountingImportError, QaImportError):
        exc = cls([Problem("a.csv:2", "unit", "bad"), Problem("a.csv:3", "(row)", "worse", "e/*/2025-01")])
        assert isinstance(exc, FileImportError)
        assert str(exc) == "2 problems, nothing imported:\na.csv:2: unit: bad\na.csv:3: (row) (e/*/2025-01): worse"


def test_decode_utf8():
    assert decode_utf8("\ufeffx".encode(), "f") == "x"  # the byte-order mark goes
    p = decode_utf8(b"\xff", "f", "(body)")
    assert p == Problem("f", "(body)", "not UTF-8 (invalid start byte at byte 0)")


def test_read_csv_lines_ragged_rows_and_quoted_newlines():
    # line 1 header, 2 a row, 3 blank (skipped), 4-5 one row whose quoted cell spans two lines, 6 ragged
    table = read_csv('a, b\n1,2\n\n"x\ny",3\n4\n', "t.csv", expected="expected a header row")
    assert table.header == ["a", "b"]
    assert [(r.line, r.cells) for r in table.rows] == [(2, {"a": "1", "b": "2"}), (4, {"a": "x\ny", "b": "3"})]
    assert table.problems == [Problem("t.csv:6", "(row)", "1 cells, the header has 2")]
    assert read_csv("", "t.csv", expected="expected a header row").problems == [
        Problem("t.csv:1", "(header)", "empty file; expected a header row")]


def test_read_csv_syntax_error_is_a_problem_at_its_line():
    import csv
    old = csv.field_size_limit(10)
    try:  # a cell over the csv module's field limit: csv.Error, reported at the line it is on, reading stops
        table = read_csv("a\nshort\n" + "x" * 20 + "\nlater\n", "t.csv", expected="")
    finally:
        csv.field_size_limit(old)
    assert [r.cells for r in table.rows] == [{"a": "short"}]
    assert [(p.where, p.field) for p in table.problems] == [("t.csv:3", "(csv)")]  # line 3 holds the long cell


def test_read_json_strict_with_lines():
    doc = read_json('[\n {"a": 1},\n {"b": {"c": 2}}\n]', "d.json", noun="report")
    assert not isinstance(doc, Problem)
    assert doc.items == [{"a": 1}, {"b": {"c": 2}}] and doc.is_list
    assert doc.where(1) == "d.json:3" and doc.where(1, ("b", "c")) == "d.json:3"
    single = read_json('{"a": 1}', "d.json", noun="report")
    assert not isinstance(single, Problem) and single.items == [{"a": 1}] and not single.is_list
    assert read_json('{"a": 1, "a": 2}', "d.json", noun="report") == Problem("d.json", "(json)", "duplicate key 'a'")
    assert read_json("[]", "d.json", noun="record") == Problem("d.json", "(json)", "no records")
    assert read_json("[1,", "d.json", noun="report") == Problem("d.json:1", "(json)",
                                                                "Expecting value (column 4)")
    assert read_json(b"\xff", "body", noun="report", undecodable="(body)").field == "(body)"


def test_deeply_nested_json_is_a_problem_not_a_traceback():
    # 100,000 nested lists exceed the recursion limit of json and yaml alike; the accounting import used to crash here
    with pytest.raises(AccountingImportError, match="recursion depth"):
        parse_json("[" * 100_000 + "]" * 100_000)


def test_repeats_point_at_the_first():
    found = [("a:1", ("x", 1)), ("a:2", ("y", 2)), ("a:3", ("x", 3)), ("a:4", ("x", 4))]
    assert repeats(found, lambda item: item[0]) == [("a:3", ("x", 3), "a:1"), ("a:4", ("x", 4), "a:1")]


def test_a_setting_with_a_unit_and_a_bad_number_are_reported_once_each():
    # line 2 a setting given a unit, line 3 a value that is not a number: each is its row's problem, and the field it
    # would have filled is not reported again as missing
    text = HEADER + ("e,,2025-01,aluminium,aluminium.cell_technology,,CWPB,t,\n"
                     "e,,2025-01,aluminium,aluminium.aluminium_output,,lots,t,measured\n")
    with pytest.raises(AccountingImportError) as info:
        parse_csv(text, "a.csv")
    got = [str(p) for p in info.value.problems]
    assert "a.csv:2: aluminium.cell_technology (e/*/2025-01): a setting has no unit or basis" in got
    assert "a.csv:3: aluminium.aluminium_output (e/*/2025-01): value 'lots' is not a number" in got
    assert not any("cell_technology" in p and "missing" in p for p in got)
    assert not any("aluminium_output" in p and "missing" in p for p in got)


_CELL = st.sampled_from(["", "e", "kiln1", "2025-01", "2025-13", "cement", "steel", "fuel.consumption",
                         "fuel.ncv", "cement.clinker_output", "aluminium.cell_technology", "raw_coal", "coke", "12",
                         "-1", "nan", "1e400", "t", "kg", "%", "GJ/t", "measured", "default", '"a,b"', "x\ny"])


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.lists(_CELL, min_size=8, max_size=10), max_size=8))
def test_any_csv_gives_reports_or_an_import_error(rows):
    text = HEADER + "".join(",".join(r) + "\n" for r in rows)
    try:
        reports = parse_csv(text, "f.csv")
    except AccountingImportError as exc:
        assert exc.problems and all(p.where.startswith("f.csv:") for p in exc.problems)
    else:
        assert reports


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_any_json_gives_reports_or_an_import_error(text):
    try:
        parse_json(text, "f.json")
    except AccountingImportError as exc:
        assert exc.problems
