"""Bad accounting input (issue 15, item 6): implausible values, months outside the window, JSON ``true`` as a number,
an unknown entity, absurd nesting, oversized bodies, other CSV separators and decimal commas. Each gets one clear
problem naming the file line and field, nothing is imported, and the HTTP intake answers 4xx, never 500. Ends with
property-based tests of the CSV/JSON import and of the intake served by a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.accounting import AccountingImportError, load_reports, parse_csv, parse_json, reports_from_http_body
from ingest.accounting_http import make_app
from ingest.files import MAX_DEPTH, read_csv
from schemas.accounting import (
    PARAMETERS,
    Plausibility,
    PlausibleRange,
    ReportError,
    load_plausibility,
    validate_report,
)
from schemas.errors import ConfigError
from tests.unit.test_accounting import CEMENT, HEADER, POWER, STEEL, m

TODAY = date(2026, 12, 3)  # the window is counted from here: 2021-01 .. 2027-01 (one month after 2026-12)


def problems_of(call) -> list[str]:
    with pytest.raises(AccountingImportError) as info:
        call()
    return [str(p) for p in info.value.problems]


def steel(**material) -> dict:
    rep = json.loads(json.dumps(STEEL))
    rep["steel"]["materials"][0].update(material)
    return rep


# --- plausibility -------------------------------------------------------------------------------


def test_the_china_table_is_sourced_and_covers_the_quantities():
    table = load_plausibility()
    assert table.version == "plausibility-cn-2026"
    assert all(r.tag in "PSU" and r.source.startswith("PLAUS-") for r in table.ranges)
    sources = (__import__("pathlib").Path(__file__).parents[2] / "docs" / "sources.md").read_text()
    for source_id in {r.source for r in table.ranges} | {table.months.source}:
        assert f"**{source_id}**" in sources, source_id
    # every mass and quantity has an upper bound (no 1e308 t), every fraction and carbon content too
    bounded = {r.parameter for r in table.ranges}
    for name, kind in PARAMETERS.items():
        if kind in ("mass", "quantity", "energy", "carbon_content", "ncv", "carbon_per_heat"):
            assert name in bounded, name


def test_element_carbon_above_pure_carbon_is_refused_at_its_line():
    # 5 tC/t: five times the carbon of pure carbon (1 tC/t). The JSON is indented so the problem has its own line.
    text = json.dumps(steel(carbon_content=m(5, "tC/t")), indent=1)
    got = problems_of(lambda: parse_json(text, "s.json", today=TODAY))
    lines = text.splitlines()
    start = next(i for i, t in enumerate(lines) if '"materials"' in t)
    line = next(i for i, t in enumerate(lines[start:], start + 1) if '"carbon_content"' in t)
    assert got == [f"s.json:{line}: steel.materials[0].carbon_content (hb-steel-001/*/2025-02): 5 tC/t is outside the "
                   f"plausible range [0, 1] tC/t (plausibility-cn-2026: PLAUS-C-ELEMENT [S])"]


def test_carbon_content_boundaries():
    # exactly pure carbon (1 tC/t = 100 %) is accepted; 100.1 % is not
    assert parse_json(json.dumps(steel(carbon_content=m(100, "%"))), today=TODAY)
    assert problems_of(lambda: parse_json(json.dumps(steel(carbon_content=m(100.1, "%"))), today=TODAY))
    # a fuel gas: at most 21.5 tC per 10^4 Nm3 (butane, 4 C per molecule: 10^4/22.414 kmol x 4 x 12.011 kg = 21.4 t)
    gas = {**STEEL["fuels"][0], "carbon_content": m(21.5, "tC/10^4Nm3")}
    assert parse_json(json.dumps({**STEEL, "fuels": [gas]}), today=TODAY)
    gas["carbon_content"] = m(21.6, "tC/10^4Nm3")
    assert "is outside the plausible range (0, 21.5] tC/10^4Nm3" in problems_of(
        lambda: parse_json(json.dumps({**STEEL, "fuels": [gas]}), today=TODAY))[0]
    gas["carbon_content"] = m(0, "tC/10^4Nm3")  # a fuel without carbon is not one (lower bound open)
    assert problems_of(lambda: parse_json(json.dumps({**STEEL, "fuels": [gas]}), today=TODAY))


def test_clinker_of_1e308_is_refused_and_the_capacity_bound_is_inclusive():
    got = problems_of(lambda: parse_csv(CEMENT.replace("100000,t", "1e308,t"), "c.csv", today=TODAY))
    assert got == ["c.csv:6: cement.clinker_output (js-cement-001/kiln1/2025-01): 1e+308 t is outside the plausible "
                   "range [0, 2e+06] t (plausibility-cn-2026: PLAUS-CAP [U])"]
    # 2,000,000 t is the bound (accepted); 2,000,001 t is not. Raw meal scaled along (1.55 t/t) to stay in range.
    at_bound = CEMENT.replace("100000,t", "2000000,t").replace("155000,t", "3100000,t")
    assert parse_csv(at_bound, today=TODAY)
    assert problems_of(lambda: parse_csv(at_bound.replace("2000000,t", "2000001,t"), today=TODAY))


def test_ncv_and_oxidation_boundaries():
    coal = {"fuel": "raw_coal", "consumption": m(1, "t"), "ncv": m(35, "GJ/t"), "carbon_per_heat": m(0.026, "tC/GJ"),
            "oxidation_rate": m(0.8, "fraction")}
    base = {"entity_id": "p", "month": "2025-01", "sector": "power", "power": {"gross_generation": m(1, "MWh")}}
    assert validate_report({**base, "fuels": [coal]}, today=TODAY)  # 35 GJ/t and 0.8 are the bounds, inclusive
    with pytest.raises(ReportError, match=r"35.1 GJ/t is outside the plausible range \[5, 35\] GJ/t for solid fuels"):
        validate_report({**base, "fuels": [{**coal, "ncv": m(35.1, "GJ/t")}]}, today=TODAY)
    with pytest.raises(ReportError, match=r"0.79 fraction is outside the plausible range \[0.8, 1\]"):
        validate_report({**base, "fuels": [{**coal, "oxidation_rate": m(79, "%")}]}, today=TODAY)


def test_a_plausibility_table_is_configurable_and_checked():
    narrow = load_plausibility().model_copy(update={"version": "narrow", "ranges": [
        PlausibleRange(parameter="power.gross_generation", unit="MWh", low=0, high=10, tag="U", source="X")]})
    base = {"entity_id": "p", "month": "2025-01", "sector": "power", "power": {"gross_generation": m(11, "MWh")}}
    with pytest.raises(ReportError, match=r"11 MWh is outside the plausible range \[0, 10\] MWh \(narrow: X \[U\]\)"):
        validate_report(base, plausibility=narrow, today=TODAY)
    assert validate_report(base, today=TODAY)  # the China table allows 11 MWh
    with pytest.raises(ValueError, match="not a canonical unit"):
        PlausibleRange(parameter="cement.clinker_output", unit="kg", low=0, high=1, tag="U", source="X")
    with pytest.raises(ValueError, match="low 2 is above high 1"):
        PlausibleRange(parameter="cement.clinker_output", unit="t", low=2, high=1, tag="U", source="X")
    with pytest.raises(ConfigError, match="no plausibility version 'plausibility-xx'"):
        load_plausibility("plausibility-xx")
    assert isinstance(load_plausibility(), Plausibility)


# --- months ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("month", "ok"), [("2020-12", False), ("2021-01", True), ("2027-01", True),
                                           ("2027-02", False), ("2099-01", False), ("1900-01", False)])
def test_months_outside_the_window_are_refused_with_the_window(month, ok):
    # on 2026-12-03 the window is 2021-01 (first) .. 2027-01 (the current month + 1)
    text = CEMENT.replace("2025-01", month)
    if ok:
        assert parse_csv(text, today=TODAY)
        return
    assert problems_of(lambda: parse_csv(text, "c.csv", today=TODAY)) == [
        f"c.csv:2: month (js-cement-001/kiln1/{month}): month {month} is outside the accepted window 2021-01 to "
        f"2027-01 (the first month, and at most 1 month after the current one; PLAUS-MONTHS [U])"]


def test_the_window_moves_with_the_date():
    # in January the next month is February of the same year; in December, January of the next
    window = load_plausibility().months
    assert window.last(date(2027, 1, 31)) == "2027-02" and window.last(date(2026, 12, 1)) == "2027-01"


# --- types, entities --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    (True, "true is not a number (true would have counted as 1)"), (False, "false is not a number"),
    ("12", "'12' is text: write the number without quotes"), ([1], "Input should be a valid number"),
    ({"v": 1}, "Input should be a valid number")])
def test_a_value_that_is_not_a_json_number_is_refused(value, message):
    got = problems_of(lambda: parse_json(json.dumps(steel(quantity={**m(1, "t"), "value": value})), "s.json",
                                         today=TODAY))
    assert len(got) == 1 and "steel.materials[0].quantity.value" in got[0] and message in got[0], got


def test_an_entity_not_in_the_site_files_is_refused_when_they_are_given():
    text = json.dumps([STEEL, POWER], indent=1)
    # without the site's entities any id is taken (the file import of a single plant's own report)
    assert len(parse_json(text, today=TODAY)) == 2
    got = problems_of(lambda: parse_json(text, "r.json", entities={"hb-steel-001", "gd-power-01"}, today=TODAY))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if '"gd-power-001"' in t)
    assert got == [f"r.json:{line}: entity_id (gd-power-001/unit-1/2025-04): entity 'gd-power-001' is in no site "
                   f"file; did you mean 'gd-power-01'? (known: ['gd-power-01', 'hb-steel-001'])"]
    csv_got = problems_of(lambda: parse_csv(CEMENT, "c.csv", entities={"hb-steel-001"}, today=TODAY))
    assert csv_got == ["c.csv:2: entity_id (js-cement-001/kiln1/2025-01): entity 'js-cement-001' is in no site file "
                       "(known: ['hb-steel-001'])"]


# --- structure: nesting, size, separators, decimal commas --------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 100_000])
def test_deep_nesting_is_one_problem(depth):
    assert problems_of(lambda: parse_json("[" * depth + "]" * depth, "d.json")) == [
        "d.json: (json): nested more than 32 levels deep: not a report document"]
    nested_in_a_report = json.dumps({**STEEL, "x": json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))})
    assert "nested more than 32" in problems_of(lambda: parse_json(nested_in_a_report))[0]


def test_a_body_or_file_over_the_limit_is_refused_before_parsing(tmp_path, monkeypatch):
    assert problems_of(lambda: reports_from_http_body(b" " * 101, max_bytes=100)) == [
        "request body: (body): 101 bytes, the limit is 100"]
    import ingest.files

    monkeypatch.setattr(ingest.files, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.csv"
    big.write_text(HEADER + "x" * 1000)  # 65 + 1000 bytes
    assert problems_of(lambda: load_reports(big)) == [f"{big}: (file): 1,065 bytes, the limit is 1,000"]


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")])
def test_another_separator_is_named_instead_of_every_column_missing(sep, name):
    assert problems_of(lambda: parse_csv(CEMENT.replace(",", sep), "c.csv")) == [
        f"c.csv:1: (header): the columns are separated by {name}, not commas: save the file as comma-separated CSV "
        f"(UTF-8)"]
    assert read_csv("a;b\n1;2\n", "q.csv", expected="").problems[0].message.startswith("the columns are separated by")


def test_a_decimal_comma_is_one_clear_problem():
    # unquoted, 0,02 splits into two cells (10 cells for a 9-column header): one problem at that row, and the field it
    # meant (clinker_mgo) is not reported missing as well
    split = CEMENT.replace("0.02,fraction", "0,02,fraction")
    assert problems_of(lambda: parse_csv(split, "c.csv", today=TODAY)) == [
        "c.csv:8: cement.clinker_mgo (js-cement-001/kiln1/2025-01): value 0,02 has a decimal comma, which splits it "
        "in two cells: write 0.02"]
    quoted = CEMENT.replace("0.02,fraction", '"0,02",fraction')
    assert problems_of(lambda: parse_csv(quoted, "c.csv", today=TODAY)) == [
        "c.csv:8: cement.clinker_mgo (js-cement-001/kiln1/2025-01): value '0,02' has a decimal comma: write 0.02"]
    # a fuel's NCV row refused: its fuel is not also reported as missing the NCV
    fuel_row = CEMENT.replace("25,GJ/t,measured", "25,GJ/t,measured,x")
    got = problems_of(lambda: parse_csv(fuel_row, "c.csv", today=TODAY))
    assert got == ["c.csv:3: fuel.ncv [raw_coal] (js-cement-001/kiln1/2025-01): 10 cells, the header has 9"]


# --- property-based: files and the HTTP intake -------------------------------------------------------------------

_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30), st.booleans(),
                    st.none(), st.text(max_size=8), st.sampled_from([1e308, -1, 0, 5, 0.5, 100]))


def _mutated(draw, base: dict) -> dict:
    """``base`` with some parameter values, units, months or ids replaced by arbitrary ones."""
    rep = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(["value", "unit", "month", "entity_id", "basis", "drop"]))
        mat = draw(st.sampled_from(rep["steel"]["materials"]))
        param = mat.setdefault(draw(st.sampled_from(["quantity", "carbon_content"])), m(1, "t"))
        if target == "value":
            param["value"] = draw(_VALUES)
        elif target == "unit":
            param["unit"] = draw(st.sampled_from(["t", "kg", "%", "tC/t", "", "GJ/t", "10^4Nm3", "x"]))
        elif target == "basis":
            param["basis"] = draw(st.sampled_from(["measured", "default", "guess"]))
        elif target == "month":
            rep["month"] = draw(st.sampled_from(["2020-12", "2021-01", "2026-12", "2027-02", "2025-13", "x"]))
        elif target == "entity_id":
            rep["entity_id"] = draw(st.sampled_from(["hb-steel-001", "other", "", "-x", "a" * 65]))
        else:
            mat.pop(draw(st.sampled_from(["quantity", "carbon_content", "material"])), None)
    return rep


@st.composite
def mutated_steel(draw) -> dict:
    return _mutated(draw, STEEL)


@st.composite
def cement_csv(draw) -> str:
    """The cement CSV with cells replaced, rows dropped, separators and decimal commas introduced."""
    lines = CEMENT.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(1, len(lines) - 1))
        cells = lines[i].split(",")
        how = draw(st.sampled_from(["cell", "drop", "comma", "extra", "sep"]))
        if how == "cell":
            cells[draw(st.integers(0, len(cells) - 1))] = draw(st.sampled_from(
                ["", "1e308", "-5", "0,5", "true", "2099-01", "x", "%", "default", "fuel.ncv", "2021-01", '"']))
        elif how == "comma" and len(cells) > 6:
            cells[6] = f"{draw(st.integers(0, 99))},{draw(st.integers(0, 99))}"
        elif how == "extra":
            cells.append("x")
        elif how == "sep":
            lines[0] = lines[0].replace(",", draw(st.sampled_from([";", "\t", ","])))
        lines[i] = "" if how == "drop" else ",".join(cells)
    return "\n".join(lines) + "\n"


def _consistent(reports, exc: AccountingImportError | None, source: str) -> None:
    if exc is None:
        assert reports
        for r in reports:  # whatever was accepted is plausible (the table admits it) and in the window
            assert not load_plausibility().problems(r, TODAY)
        return
    assert exc.problems
    for p in exc.problems:
        assert p.where.startswith(source) and p.field and p.message


@settings(max_examples=120, deadline=None)
@given(rep=mutated_steel())
def test_any_mutated_json_report_is_imported_plausible_or_refused_with_problems(rep):
    try:
        reports, exc = parse_json(json.dumps(rep, indent=1), "p.json", entities={"hb-steel-001"}, today=TODAY), None
    except AccountingImportError as e:
        reports, exc = None, e
    _consistent(reports, exc, "p.json")


@settings(max_examples=120, deadline=None)
@given(text=cement_csv())
def test_any_mutated_csv_is_imported_plausible_or_refused_with_problems(text):
    try:
        reports, exc = parse_csv(text, "p.csv", today=TODAY), None
    except AccountingImportError as e:
        reports, exc = None, e
    _consistent(reports, exc, "p.csv")


@pytest.fixture(scope="module")
def intake():
    """The HTTP intake on a real aiohttp server on 127.0.0.1 (an event loop in a thread); yields post(body)."""
    import threading
    import urllib.error
    import urllib.request

    from aiohttp import web

    published: list = []
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(lambda reports: published.extend(reports) or [str(r.key) for r in reports],
                                    max_bytes=64 * 1024, entities={"hb-steel-001"}))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def post(body: bytes) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/accounting", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    yield post
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def test_the_intake_answers_each_bad_body_with_a_4xx(intake):
    steel_2026 = {**STEEL, "month": "2026-11"}
    assert intake(json.dumps(steel_2026).encode())[0] == 201
    assert intake(("[" * 20_000 + "]" * 20_000).encode())[0] == 400  # nested: not a document of reports
    assert intake(b"\xff\xfe")[0] == 400  # not UTF-8
    assert intake(b"{")[0] == 400  # not JSON
    assert intake(b" " * (64 * 1024 + 1))[0] == 413  # over the limit
    status, answer = intake(json.dumps({**steel_2026, "entity_id": "hb-steel-002"}).encode())
    assert status == 422 and "is in no site file" in answer["problems"][0]["message"]
    status, answer = intake(json.dumps({**steel_2026, "month": "2099-01"}).encode())
    assert status == 422 and "outside the accepted window" in answer["problems"][0]["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=mutated_steel().map(lambda r: json.dumps(r).encode()) | st.binary(max_size=300)
       | st.text(max_size=300).map(str.encode))
def test_any_body_gets_201_400_413_or_422_never_500(intake, body):
    status, answer = intake(body)
    assert status in (201, 400, 413, 422), (status, answer)
    if status == 201:
        assert answer["accepted"]
    else:
        assert answer["problems"] and all(p["message"] for p in answer["problems"])
