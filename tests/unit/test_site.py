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
            basis: dry
          - id: o2
            quantity: a19001
            unit: "%"
          - id: flow
            quantity: a00000
            unit: m3/h
            basis: standard_dry
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
        "site.yaml:15: sources[0].channels[1].unit: unit 'mg/m3' is not valid for a19001 (oxygen); use one of ['%']"
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
    from streams.cli.files import _json_schemas

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


# -- what a stack's CO2 mass needs (issue 13): refused at load, naming the missing quantity -------------------------

def test_example_stack_states_its_flow_parameters():
    stack = load_site(EXAMPLE).source("kiln1-stack")
    mi = stack.mass_inputs()
    assert stack.velocity_field_coefficient == 0.98 and mi.flow_basis == "actual_wet" and mi.co2_basis == "dry"
    # Ba from 20 m: 101325 x (1 - 0.0065 x 20 / 288.15) ** 5.25588 = 101325 x 0.99954885 ** 5.25588 = 101084.9 Pa
    assert mi.ambient_pressure_pa == pytest.approx(101_084.9, abs=0.1)
    assert [(e.channel, e.above) for e in stack.operating_evidence()] == [("velocity", 1.0)]


def test_a_stack_without_flow_is_refused_with_the_quantity_named():
    msg = problems(GOOD.replace("quantity: a00000", "quantity: a01016").replace("unit: m3/h", "unit: m2")
                   .replace("        basis: standard_dry\n", ""))
    assert msg.startswith("site.yaml:5: sources[0]: stack 'potline-1' cannot give a CO2 mass: no flow (a00000) or "
                          "velocity (a01011) channel")


def test_co2_and_flow_must_state_their_basis():
    msg = problems(GOOD.replace("        basis: dry\n", "").replace("        basis: standard_dry\n", ""))
    assert "CO2 channel 'co2' must state its basis: dry or wet" in msg
    assert "flow channel 'flow' must state its basis: actual_wet, standard_dry (标干) or standard_wet" in msg


def test_a_basis_must_fit_its_quantity():
    msg = problems(GOOD.replace("basis: dry", "basis: standard_dry"))
    assert "site.yaml:9: sources[0].channels[0]: basis 'standard_dry' does not fit a05001; it takes one of " \
           "['dry', 'wet']" in msg


def test_an_actual_wet_flow_needs_temperature_pressures_and_moisture():
    msg = problems(GOOD.replace("basis: standard_dry", "basis: actual_wet"))
    for needed in ("needs the flue-gas moisture: add an a01014 channel or moisture_pct",
                   "needs the flue-gas temperature: add an a01012 channel",
                   "needs the flue-gas static pressure: add an a01013 channel or static_pressure_kpa",
                   "needs the barometric pressure: add an a01006 channel or ambient_pressure"):
        assert needed in msg
    ok = GOOD.replace("basis: standard_dry", "basis: actual_wet").replace(
        "    duct_area_m2: 7.0\n", "    duct_area_m2: 7.0\n    moisture_pct: 8\n    static_pressure_kpa: -0.4\n"
                                  "    ambient_pressure: {kpa: 100.8}\n") + \
        "      - {id: t, quantity: a01012, unit: degC}\n"
    mi = parse_config(ok, Entity).sources[0].mass_inputs()
    assert (mi.moisture_pct, mi.static_pressure_pa, mi.ambient_pressure_pa, mi.temperature) == (8.0, -400.0,
                                                                                                100_800.0, "t")


def test_velocity_flow_needs_kv_and_a_duct_area():
    text = GOOD.replace("quantity: a00000", "quantity: a01011").replace("unit: m3/h", "unit: m/s").replace(
        "    basis: standard_dry\n", "").replace("    duct_area_m2: 7.0\n", "")
    msg = problems(text)
    assert "the flow comes from velocity channel 'flow': give duct_area_m2" in msg
    assert "give velocity_field_coefficient (Kv from the comparison test; 1.0 if none was made)" in msg


def test_a_wet_co2_needs_the_moisture():
    assert "needs the flue-gas moisture" in problems(GOOD.replace("basis: dry", "basis: wet"))


def test_ambient_pressure_takes_exactly_one_form_and_a_real_channel():
    both = GOOD.replace("    duct_area_m2: 7.0\n",
                        "    duct_area_m2: 7.0\n    ambient_pressure: {kpa: 100, altitude_m: 10}\n")
    assert "give exactly one of channel, kpa or altitude_m (got ['kpa', 'altitude_m'])" in problems(both)
    ghost = GOOD.replace("    duct_area_m2: 7.0\n", "    duct_area_m2: 7.0\n    ambient_pressure: {channel: baro}\n")
    assert "ambient_pressure names channel 'baro', which source 'potline-1' does not have" in problems(ghost)
    high = GOOD.replace("    duct_area_m2: 7.0\n", "    duct_area_m2: 7.0\n    ambient_pressure: {kpa: 1013}\n")
    assert "sources[0].ambient_pressure.kpa: Input should be less than or equal to 110" in problems(high)


def test_operating_evidence_must_name_a_channel_of_the_source_and_a_default_must_exist():
    ghost = GOOD.replace("    duct_area_m2: 7.0\n",
                         "    duct_area_m2: 7.0\n    operating: [{channel: fan, above: 1}]\n")
    assert "operating evidence names channel 'fan', which source 'potline-1' does not have" in problems(ghost)
    no_area = GOOD.replace("    duct_area_m2: 7.0\n", "")
    assert "no default operating rule applies" in problems(no_area)
    e = parse_config(GOOD, Entity)
    # default: the flow above 1 m/s x 7.0 m2 = 7 m3/s = 25200 m3/h
    assert [(x.channel, x.above) for x in e.sources[0].operating_evidence()] == [("flow", 25_200.0)]


def test_a_kv_outside_the_plausible_range_is_refused():
    text = GOOD.replace("    duct_area_m2: 7.0\n", "    duct_area_m2: 7.0\n    velocity_field_coefficient: 9.8\n")
    assert "sources[0].velocity_field_coefficient: Input should be less than or equal to 2" in problems(text)


def test_hand_entered_values_may_be_accepted_for_auxiliary_channels_only():
    ok = GOOD.replace('        unit: "%"\n', '        unit: "%"\n        manual_values: valid\n')
    assert parse_config(ok, Entity).sources[0].channel("o2").manual_values == "valid"
    bad = GOOD.replace("        basis: dry\n", "        basis: dry\n        manual_values: valid\n")
    assert "manual_values 'valid' is refused for a05001" in problems(bad)
    assert parse_config(GOOD, Entity).sources[0].channel("co2").manual_values == "invalid"  # the default
