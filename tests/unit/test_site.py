"""Site model (schemas/site.py) and its file loader (schemas/configfile.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas import ConfigError
from schemas.configfile import parse_config
from schemas.site import Entity, Sector, load_site, site_json_schema
from streams.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "examples" / "site-cement.yaml"

GOOD = textwrap.dedent(
    """\
    id: al-smelter-01
    name: Example Aluminium Smelter
    sector: aluminium
    sources:
      - id: potline-1
        name: Potline 1 gas treatment stack
        duct_area_m2: 7.0
        channels:
          - id: co2
            quantity: a05001
            unit: mg/m3
          - id: o2
            quantity: a19001
            unit: "%"
    """
)


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, Entity, "site.yaml")
    return str(exc.value)


def test_example_site_file_loads():
    e = load_site(EXAMPLE)
    assert e.sector is Sector.cement
    assert e.timezone == "Asia/Shanghai"
    stack = e.source("kiln1-stack")
    assert stack.duct_area_m2 == 12.57
    assert stack.channel("co2").quantity == "a05001"
    assert [s.kind for s in e.sources] == ["stack", "process", "process"]


def test_defaults_and_json_equivalence(tmp_path):
    e = parse_config(GOOD, Entity)
    assert e.timezone == "Asia/Shanghai" and e.region is None
    path = tmp_path / "site.json"
    path.write_text(e.model_dump_json())
    assert load_site(path) == e


def test_unit_must_fit_the_quantity_and_the_error_names_file_line_field():
    msg = problems(GOOD.replace('unit: "%"', "unit: mg/m3"))
    assert msg == (
        "site.yaml:14: sources[0].channels[1].unit: unit 'mg/m3' is not valid for a19001 (oxygen); use one of ['%']"
    )


def test_unknown_quantity_code():
    msg = problems(GOOD.replace("a05001", "a99999"))
    assert msg.startswith("site.yaml:10: sources[0].channels[0].quantity: unknown quantity code 'a99999'")


def test_every_problem_is_reported_at_once():
    msg = problems(GOOD.replace("sector: aluminium", "sector: glass").replace("duct_area_m2: 7.0", "duct_area_m2: -1"))
    lines = msg.splitlines()
    assert lines[0].startswith("site.yaml:3: sector: Input should be 'power', 'steel', 'cement' or 'aluminium'")
    assert lines[1].startswith("site.yaml:7: sources[0].duct_area_m2: Input should be greater than 0")


def test_timezone_is_checked_with_a_hint():
    assert "did you mean 'Asia/Shanghai'" in problems(GOOD + "timezone: asia/shanghai\n")


def test_duplicate_ids_are_rejected():
    doubled = GOOD.replace("id: o2", "id: co2")
    assert "channel id 'co2' appears twice in source 'potline-1'" in problems(doubled)


def test_duplicate_yaml_keys_are_an_error_not_silently_the_last_one():
    msg = problems(GOOD.replace("sector: aluminium", "sector: aluminium\nsector: steel"))
    assert msg.startswith("site.yaml:4:1: YAML syntax error: duplicate key 'sector' (first on line 3)")


def test_unknown_fields_are_rejected():
    assert "site.yaml:7: sources[0].stack_height: Extra inputs are not permitted" in problems(
        GOOD.replace("duct_area_m2: 7.0", "stack_height: 80")
    )


def test_missing_required_fields():
    assert "site.yaml:1: sector: Field required" in problems(GOOD.replace("sector: aluminium\n", ""))


def test_bad_identifier():
    assert "sources[0].id: String should match pattern" in problems(GOOD.replace("potline-1", "potline 1"))


def test_yaml_syntax_error_has_line_and_column():
    assert problems("id: [unclosed\n").startswith("site.yaml:2:1: YAML syntax error")


def test_top_level_must_be_a_mapping():
    assert problems("- a\n- b\n") == "site.yaml:1: expected a mapping at the top level, got list"


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: Zürich".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_site(bad)


def test_committed_json_schemas_are_current():
    from streams.cli import _json_schemas

    schemas = _json_schemas()
    assert schemas["site"] == site_json_schema()
    for name, doc in schemas.items():
        committed = json.loads((REPO / "schemas" / "json" / f"{name}.schema.json").read_text())
        assert committed == doc, f"run `cems schema export` and commit schemas/json ({name})"


def test_cli_site_check(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["site", "check", str(EXAMPLE)])
    assert ok.exit_code == 0
    assert "OK: js-cement-001 (cement, Asia/Shanghai), 3 sources, 11 channels" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("a05001", "a99999"))
    res = runner.invoke(main, ["site", "check", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:10: sources[0].channels[0].quantity" in res.output
