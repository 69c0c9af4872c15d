"""Self-reported accounting: model and defaults (schemas/accounting.py), import (ingest/accounting.py) and
calculation-based emissions (streams/kernels/accounting.py), against hand-computed values (arithmetic shown)."""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ingest.accounting import (
    AccountingImportError,
    load_reports,
    parse_csv,
    parse_json,
    reports_from_http_body,
)
from schemas import ConfigError
from schemas.accounting import (
    CO2_PARAMETERS,
    PARAMETERS,
    SETTINGS,
    AccountingReport,
    AluminiumData,
    CementData,
    FuelUse,
    MaterialFlow,
    PowerData,
    ReportError,
    load_defaults,
    validate_report,
)
from streams.kernels.accounting import (
    INPUTS,
    AccountingInputs,
    accounting_emissions,
    fuel_co2_t,
    inputs_from_reports,
)

REPO = Path(__file__).resolve().parents[2]
HEADER = "entity_id,source_id,month,sector,parameter,item,value,unit,basis\n"


def csv_rows(rows: str, key: str = "js-cement-001,kiln1,2025-01,cement") -> str:
    return HEADER + "".join(f"{key},{r}\n" for r in textwrap.dedent(rows).strip().splitlines())


CEMENT = csv_rows(
    """\
    fuel.consumption,raw_coal,10000,t,measured
    fuel.ncv,raw_coal,25,GJ/t,measured
    fuel.carbon_per_heat,raw_coal,26,tC/TJ,measured
    fuel.oxidation_rate,raw_coal,98,%,measured
    cement.clinker_output,,100000,t,measured
    cement.clinker_cao,,65,%,measured
    cement.clinker_mgo,,0.02,fraction,measured
    cement.noncarbonate_cao,,1,%,measured
    cement.noncarbonate_mgo,,500,t,measured
    cement.raw_meal_consumption,,155000,t,measured
    cement.raw_meal_toc,,,,default
    """
)


def m(value, unit, basis="measured"):
    return {"value": value, "unit": unit, "basis": basis}


STEEL = {
    "entity_id": "hb-steel-001",
    "month": "2025-02",
    "sector": "steel",
    "fuels": [{"fuel": "natural_gas", "consumption": m(10_000_000, "Nm3"),
               "carbon_content": m(5.4, "tC/10^4Nm3"), "oxidation_rate": m(0.99, "fraction")}],
    "steel": {"materials": [
        {"material": "coking_coal", "quantity": m(100_000, "t"), "carbon_content": m(0.75, "tC/t")},
        {"material": "coke", "quantity": m(20_000, "t"), "carbon_content": m(85, "%")},
        {"material": "limestone", "quantity": m(30_000, "t"), "carbon_content": m(12, "%")},
        {"material": "crude_steel", "quantity": m(150_000, "t"), "carbon_content": m(0.2, "%")},
        {"material": "bfg_export", "quantity": m(5_000, "10^4Nm3"), "carbon_content": m(2.3, "tC/10^4Nm3")},
        {"material": "tar", "quantity": m(3_000, "t"), "carbon_content": m(0.9, "tC/t")},
    ]},
}

ALUMINIUM = {
    "entity_id": "nm-al-001",
    "source_id": "potline-1",
    "month": "2025-03",
    "sector": "aluminium",
    "aluminium": {
        "cell_technology": "CWPB",
        "aluminium_output": m(10_000, "t"),
        "net_anode_consumption": {"basis": "default"},
        "anode_sulphur": m(2, "%"),
        "anode_ash": m(0.5, "%"),
        "anode_effect_minutes": m(0.1, "min/cell-day"),
        "slope_cf4": {"basis": "default"},
        "c2f6_cf4_ratio": {"basis": "default"},
    },
}

POWER = {
    "entity_id": "gd-power-001",
    "source_id": "unit-1",
    "month": "2025-04",
    "sector": "power",
    "fuels": [
        {"fuel": "raw_coal", "consumption": m(200_000, "t"), "ncv": m(20_908, "kJ/kg"),
         "carbon_per_heat": m(26.18, "tC/TJ"), "oxidation_rate": m(99, "%")},
        {"fuel": "diesel", "consumption": m(50_000, "kg"), "carbon_content": m(86.3, "%"),
         "oxidation_rate": m(0.98, "fraction")},
    ],
    "power": {"gross_generation": m(500_000, "MWh"), "net_generation": m(47_000, "10^4kWh")},
}


def problems(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(p) for p in exc.value.problems]


# --- hand-computed emissions, one sector each --------------------------------------------------


def test_cement_csv_hand_computed():
    [rep] = parse_csv(CEMENT, "cement.csv")
    e = accounting_emissions(inputs_from_reports([rep]))
    # combustion: 10000 t x 25 GJ/t x 0.026 tC/GJ (26 tC/TJ) x 0.98 (98 %) x 44/12
    #   = 250000 GJ x 0.026 = 6500 tC; x 0.98 = 6370 tC; x 44/12 = 23356.6667 t
    assert e.combustion_co2_t[0] == pytest.approx(23_356.666_667, rel=1e-9)
    # clinker: 100000 t x [(0.65 - 0.01) x 44/56 + (0.02 - 500/100000) x 44/40]
    #   = 100000 x [0.64 x 0.7857143 + 0.015 x 1.1] = 100000 x [0.5028571 + 0.0165] = 51935.7143 t
    # raw meal organic carbon: 155000 t x 0.1 % (default, unconfirmed) x 44/12 = 155 x 3.6666667 = 568.3333 t
    assert e.process_co2_t[0] == pytest.approx(51_935.714_286 + 568.333_333, rel=1e-9)
    assert e.co2_t[0] == e.total_co2e_t[0] == pytest.approx(75_860.714_286, rel=1e-9)
    assert e.carbon_balance_co2_t[0] == e.anode_co2_t[0] == e.cf4_t[0] == 0
    # the TOC default is filled, labelled unconfirmed, and reported as the report's only default
    assert rep.cement.raw_meal_toc.value == 0.001 and rep.cement.raw_meal_toc.confirmed is False
    assert rep.cement.raw_meal_toc.default_version == "accounting-cn-2026"
    assert e.default_inputs(0) == e.unconfirmed_inputs(0) == ("raw_meal_toc",)


def test_steel_carbon_balance_hand_computed():
    [rep] = parse_json(json.dumps([STEEL]))
    e = accounting_emissions(inputs_from_reports([rep]))
    # carbon in:  coking coal 100000 x 0.75 = 75000; coke 20000 x 0.85 = 17000; limestone 30000 x 0.12 = 3600 tC
    # carbon out: crude steel 150000 x 0.002 = 300; BFG exported 5000 x 2.3 = 11500; tar 3000 x 0.9 = 2700 tC
    # balance: 95600 - 14500 = 81100 tC; x 44/12 = 297366.6667 t
    assert e.carbon_balance_co2_t[0] == pytest.approx(297_366.666_667, rel=1e-9)
    # natural gas outside the balance: 1e7 Nm3 = 1000 x 10^4 Nm3 x 5.4 tC/10^4Nm3 x 0.99 x 44/12
    #   = 5346 tC x 44/12 = 19602 t
    assert e.combustion_co2_t[0] == pytest.approx(19_602.0, rel=1e-12)
    assert e.total_co2e_t[0] == pytest.approx(316_968.666_667, rel=1e-9)
    assert not e.defaults.any()


def test_aluminium_anode_and_pfc_hand_computed():
    [rep] = parse_json(json.dumps(ALUMINIUM).encode())
    a = rep.aluminium
    assert (a.net_anode_consumption.value, a.slope_cf4.value, a.c2f6_cf4_ratio.value) == (0.42, 0.143, 0.121)
    e = accounting_emissions(inputs_from_reports([rep]))
    # anode: 0.42 t/t (default) x 10000 t x (1 - 0.02 - 0.005) x 44/12 = 4200 x 0.975 = 4095 t C-equivalent
    #   x 44/12 = 15015 t CO2
    assert e.anode_co2_t[0] == pytest.approx(15_015.0, rel=1e-12)
    # CF4: 0.143 (CWPB default) x 0.1 min/cell-day x 10000 t x 0.001 = 0.143 t; C2F6: 0.143 x 0.121 = 0.017303 t
    assert e.cf4_t[0] == pytest.approx(0.143, rel=1e-12)
    assert e.c2f6_t[0] == pytest.approx(0.017303, rel=1e-12)
    # AR4 (default set): 0.143 x 7390 = 1056.77; 0.017303 x 12200 = 211.0966; total 15015 + 1267.8666 = 16282.8666
    assert e.cf4_co2e_t[0] == pytest.approx(1056.77, rel=1e-12)
    assert e.c2f6_co2e_t[0] == pytest.approx(211.0966, rel=1e-12)
    assert e.co2_t[0] == pytest.approx(15_015.0) and e.total_co2e_t[0] == pytest.approx(16_282.8666, rel=1e-12)
    # AR5: 0.143 x 6630 + 0.017303 x 11100 = 948.09 + 192.0633 -> 16155.1533
    total = accounting_emissions(inputs_from_reports([rep]), "AR5").total_co2e_t[0]
    assert total == pytest.approx(16_155.1533, rel=1e-12)
    assert set(e.unconfirmed_inputs(0)) == {"anode_consumption", "slope_cf4", "c2f6_cf4_ratio"}


def test_power_hand_computed():
    [rep] = parse_json(json.dumps(POWER))
    assert rep.power.net_generation.value == 470_000  # 47000 x 10^4 kWh = 470000 MWh
    e = accounting_emissions(inputs_from_reports([rep]))
    # coal: 200000 t x 20.908 GJ/t (20908 kJ/kg) x 0.02618 tC/GJ (26.18 tC/TJ) x 0.99 x 44/12
    #   = 4181600 GJ x 0.02618 = 109474.288 tC; x 0.99 = 108379.54512; x 44/12 = 397391.66544 t
    # diesel (element carbon): 50 t (50000 kg) x 0.863 tC/t x 0.98 x 44/12 = 42.287 x 44/12 = 155.0523333 t
    assert e.combustion_co2_t[0] == pytest.approx(397_391.665_44 + 155.052_333_3, rel=1e-10)
    assert e.total_co2e_t[0] == e.combustion_co2_t[0]


def test_many_reports_vectorised_equal_one_by_one():
    reports = parse_csv(CEMENT) + parse_json(json.dumps([STEEL, ALUMINIUM, POWER]))
    many = [r.model_copy(update={"month": f"{2000 + i // 12}-{i % 12 + 1:02d}"}) for i in range(250) for r in reports]
    e = accounting_emissions(inputs_from_reports(many))
    single = [accounting_emissions(inputs_from_reports([r])) for r in reports]
    for k in range(len(many)):
        assert e.total_co2e_t[k] == pytest.approx(single[k % 4].total_co2e_t[0], rel=1e-12)
        assert (e.basis[k] == single[k % 4].basis[0]).all()


def test_fuel_formula_arrays_and_unused_ncv_basis():
    # element carbon wins where finite: row 0 uses 2 x 0.5 x 1 x 44/12 = 3.6667; row 1 uses 1 x 10 x 0.1 x 1 x 44/12
    co2 = fuel_co2_t([2.0, 1.0], [1.0, 1.0], ncv=[99.0, 10.0], carbon_per_heat=[99.0, 0.1],
                     carbon_element=[0.5, np.nan])
    assert co2 == pytest.approx([11 / 3, 11 / 3])
    # a default NCV next to a measured element carbon did not enter the result, so it is not reported
    x = AccountingInputs(n_reports=2, fuel_report=np.array([1, 1]), fuel_consumption=np.array([2.0, 1.0]),
                         fuel_ncv=np.array([99.0, 10.0]), fuel_carbon_per_heat=np.array([99.0, 0.1]),
                         fuel_carbon_element=np.array([0.5, np.nan]), fuel_oxidation=np.ones(2),
                         basis={"fuel_ncv": np.array([2, 0], np.int8), "fuel_oxidation": np.array([0, 1], np.int8)})
    e = accounting_emissions(x)
    assert e.combustion_co2_t == pytest.approx([0.0, 22 / 3])
    assert e.default_inputs(0) == () and e.default_inputs(1) == ("fuel_oxidation",) and e.unconfirmed_inputs(1) == ()


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_file_versioned_sourced_and_confirmed_only_from_a_primary_text():
    d = load_defaults()
    assert d.version == "accounting-cn-2026"
    for old_or_new in (d, load_defaults("accounting-cn-2025")):
        for entry in old_or_new.defaults:
            assert entry.source
            assert entry.confirmed is False  # no primary text (an MEE Appendix A) has been read for any value
    sourced = {(e.parameter, e.item): e for e in d.defaults if e.value is not None}
    # each default acting on the CO2 has its own uncertainty (the PFC ones do not enter the CEMS comparison)
    assert all(e.uncertainty and e.uncertainty_source for e in sourced.values() if e.parameter in CO2_PARAMETERS)
    assert sourced[("fuel.ncv", "raw_coal")].tag == "S"  # a secondary sheet, cement only
    assert sourced[("fuel.ncv", "raw_coal")].sectors == ["cement"]
    assert sourced[("aluminium.slope_cf4", "SWPB")].value == 0.272
    assert not sourced[("aluminium.slope_cf4", "SWPB")].confirmed
    assert ("fuel.oxidation_rate", None) not in sourced  # no sourced default: a report must measure it
    with pytest.raises(ConfigError, match="available"):
        load_defaults("accounting-cn-1999")


def test_defaults_yaml_is_package_data():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "defaults/*.yaml" in cfg["tool"]["setuptools"]["package-data"]["schemas"]


def test_default_and_sector_restriction():
    coal = {"fuel": "raw_coal", "consumption": m(100, "t"), "ncv": {"basis": "default"},
            "carbon_per_heat": m(0.026, "tC/GJ"), "oxidation_rate": m(0.98, "fraction")}
    cement = {"clinker_output": m(0, "t"), "clinker_cao": m(0.65, "fraction"), "clinker_mgo": m(0.02, "fraction"),
              "noncarbonate_cao": m(0, "t"), "noncarbonate_mgo": m(0, "t")}
    rep = validate_report({"entity_id": "c", "month": "2025-01", "sector": "cement", "fuels": [coal], "cement": cement})
    assert rep.fuels[0].ncv.value == 26.7 and rep.fuels[0].ncv.confirmed is False  # [S]: not confirmed
    e = accounting_emissions(inputs_from_reports([rep]))
    # 100 t x 26.7 GJ/t x 0.026 x 0.98 x 44/12 = 68.0316 tC x 44/12 = 249.4492 t
    assert e.combustion_co2_t[0] == pytest.approx(249.4492, rel=1e-12)
    assert e.default_inputs(0) == e.unconfirmed_inputs(0) == ("fuel_ncv",)
    # the 26.7 GJ/t fallback comes from a cement data sheet: a power plant gets no default
    with pytest.raises(ReportError, match=r"no default for fuel.ncv for raw_coal; give a measured value") as exc:
        validate_report({"entity_id": "p", "month": "2025-01", "sector": "power", "fuels": [coal],
                         "power": {"gross_generation": m(1, "MWh")}})
    assert exc.value.problems[0][0] == ("fuels", 0, "ncv")


def test_plant_stated_default_is_labelled_by_the_file():
    al = json.loads(json.dumps(ALUMINIUM))
    al["aluminium"]["slope_cf4"] = m(143, "kgCF4/tAl/(min/cell-day)", "default")  # not the file's 0.143
    al["aluminium"]["c2f6_cf4_ratio"] = m(0.121, "kgC2F6/kgCF4", "default")  # the file's value
    rep = validate_report(al)
    assert rep.aluminium.slope_cf4.confirmed is False and rep.aluminium.slope_cf4.default_version is None
    assert rep.aluminium.c2f6_cf4_ratio.confirmed is False  # [U] in the file
    assert rep.aluminium.c2f6_cf4_ratio.default_version == "accounting-cn-2026"


def test_missing_default_names_the_gap():
    al = json.loads(json.dumps(ALUMINIUM))
    al["aluminium"]["cell_technology"] = "VSS"
    al["aluminium"]["anode_effect_minutes"] = {"basis": "default"}
    with pytest.raises(AccountingImportError) as exc:
        parse_json(json.dumps(al, indent=1))
    text = "\n".join(problems(exc))
    assert "aluminium.anode_effect_minutes" in text and "measured per month" in text
    assert "aluminium.slope_cf4" in text and "VSS" in text
    assert "aluminium.c2f6_cf4_ratio" in text


# --- validation and import ----------------------------------------------------------------------


def test_parameter_table_matches_the_models():
    sections = {"fuel": FuelUse, "material": MaterialFlow, "cement": CementData, "aluminium": AluminiumData,
                "power": PowerData}
    declared = {*PARAMETERS, *SETTINGS}
    fields = {f"{s}.{f}" for s, model in sections.items() for f in model.model_fields if f not in ("fuel", "material")}
    assert declared == fields


def test_csv_unit_range_missing_unknown_fuel_with_row_numbers():
    bad = (CEMENT.replace("26,tC/TJ", "26,tC/Tj")  # line 4: unit
           .replace("98,%", "98,fraction")  # line 5: range, with a hint
           .replace("cement.clinker_mgo,,0.02", "cement.clinker_mgo,,abc"))  # line 8: not a number
    bad = bad.replace("js-cement-001,kiln1,2025-01,cement,cement.clinker_cao,,65,%,measured\n", "")  # missing
    bad += "js-cement-001,kiln1,2025-01,cement,fuel.consumption,pet_coke,5,t,measured\n"  # line 12: unknown fuel
    with pytest.raises(AccountingImportError) as exc:
        parse_csv(bad, "jan.csv")
    got = problems(exc)
    assert got[0].startswith("jan.csv:4: fuel.carbon_per_heat [raw_coal] (js-cement-001/kiln1/2025-01): unit 'tC/Tj'")
    assert got[1].startswith("jan.csv:5: fuel.oxidation_rate [raw_coal]") and "use unit '%'" in got[1]
    assert "jan.csv:6: cement.clinker_cao (js-cement-001/kiln1/2025-01): missing field" in got[2]
    assert got[3].startswith("jan.csv:7: cement.clinker_mgo") and "'abc' is not a number" in got[3]
    assert any(p.startswith("jan.csv:12: item [pet_coke]") and "unknown fuel 'pet_coke'" in p for p in got)


def test_csv_all_or_nothing_across_reports():
    good = CEMENT
    other = CEMENT.replace("js-cement-001,kiln1,2025-01", "js-cement-001,kiln2,2025-01").replace(HEADER, "")
    other = other.replace("cement.noncarbonate_cao,,1,%", "cement.noncarbonate_cao,,70,%")  # above clinker CaO
    with pytest.raises(AccountingImportError) as exc:
        parse_csv(good + other, "two.csv")
    [p] = exc.value.problems
    assert p.where == "two.csv:20" and p.field == "cement.noncarbonate_cao" and "exceeds clinker_cao" in p.message
    assert "nothing imported" in str(exc.value)
    assert len(parse_csv(good + other.replace(",70,%", ",1,%"))) == 2


def test_csv_structural_problems():
    with pytest.raises(AccountingImportError, match="missing columns"):
        parse_csv("entity_id,month\n")
    rows = csv_rows(
        """\
        fuel.ncv,,25,GJ/t,measured
        cement.clinker_output,raw_coal,1,t,measured
        cement.kiln_colour,,1,t,measured
        cement.clinker_output,,1,t,measured
        cement.clinker_output,,2,t,measured
        aluminium.cell_technology,,CWPB,,measured
        """
    )
    with pytest.raises(AccountingImportError) as exc:
        parse_csv(rows, "s.csv")
    got = "\n".join(problems(exc))
    assert "s.csv:2: fuel.ncv (js-cement-001/kiln1/2025-01): fuel.ncv needs the fuel or material id in item" in got
    assert ("s.csv:3: cement.clinker_output [raw_coal] (js-cement-001/kiln1/2025-01): cement.clinker_output takes no "
            "item") in got
    assert "s.csv:4: parameter (js-cement-001/kiln1/2025-01): unknown parameter 'cement.kiln_colour'" in got
    assert "s.csv:6: cement.clinker_output (js-cement-001/kiln1/2025-01): given twice (also on line 5)" in got
    assert "s.csv:7: aluminium.cell_technology (js-cement-001/kiln1/2025-01): a setting has no unit or basis" in got
    assert "s.csv:5: cement.clinker_cao (js-cement-001/kiln1/2025-01): missing field (no row gives it)" in got
    assert got.count("aluminium.cell_technology (") == 1  # reported once, not again by the model


def test_report_rules():
    base = {"entity_id": "c", "month": "2025-01", "sector": "power", "power": {"gross_generation": m(1, "MWh")}}
    with pytest.raises(ReportError, match="a power report has no steel section"):
        validate_report({**base, "steel": STEEL["steel"]})
    with pytest.raises(ReportError, match="missing field: steel"):
        validate_report({**base, "sector": "steel", "power": None})
    gas_as_t = {"fuel": "natural_gas", "consumption": m(1, "t"), "ncv": m(389, "GJ/10^4Nm3"),
                "carbon_per_heat": m(0.0153, "tC/GJ"), "oxidation_rate": m(0.99, "fraction")}
    with pytest.raises(ReportError, match=r"does not fit a gas fuel \(natural_gas\); use one of \['10\^4Nm3', 'Nm3'\]"):
        validate_report({**base, "fuels": [gas_as_t]})
    low_ncv = {**gas_as_t, "consumption": m(1, "Nm3"), "ncv": m(1, "MJ/Nm3")}  # 10 GJ/10^4 Nm3
    with pytest.raises(ReportError, match="outside the plausible 20-500 GJ/10\\^4Nm3"):
        validate_report({**base, "fuels": [low_ncv]})
    with pytest.raises(ReportError, match=r"oxidation rate 0.5 is outside"):
        validate_report({**base, "fuels": [{**gas_as_t, "consumption": m(1, "Nm3"), "oxidation_rate": m(50, "%")}]})
    with pytest.raises(ReportError, match="not both"):
        validate_report({**base, "fuels": [{**gas_as_t, "consumption": m(1, "Nm3"),
                                             "carbon_content": m(5, "tC/10^4Nm3")}]})
    with pytest.raises(ReportError, match="missing value"):
        validate_report({**base, "power": {"gross_generation": {"unit": "MWh", "basis": "measured"}}})
    with pytest.raises(ReportError, match="net_generation 2 MWh exceeds gross_generation 1 MWh"):
        validate_report({**base, "power": {"gross_generation": m(1, "MWh"), "net_generation": m(2, "MWh")}})
    with pytest.raises(ReportError, match="month must be YYYY-MM"):
        validate_report({**base, "month": "2025-1"})
    assert isinstance(validate_report(base), AccountingReport)


def test_json_lines_duplicates_and_http_body():
    text = json.dumps([STEEL, {**STEEL, "steel": {"materials": [{**STEEL["steel"]["materials"][0],
                                                                 "material": "coal_tar"}]}}], indent=2)
    with pytest.raises(AccountingImportError) as exc:
        parse_json(text, "feb.json")
    [p] = exc.value.problems
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "coal_tar" in t)
    assert p.where == f"feb.json:{line}" and p.field == "steel.materials[0].material"
    assert "unknown material 'coal_tar'" in p.message
    with pytest.raises(AccountingImportError) as exc:
        parse_json(json.dumps([STEEL, STEEL]))
    assert "same entity, source and month" in str(exc.value)
    with pytest.raises(AccountingImportError, match="duplicate key 'month'"):
        parse_json('{"month": "2025-01", "month": "2025-02"}')
    assert [r.entity_id for r in reports_from_http_body(json.dumps(POWER).encode())] == ["gd-power-001"]
    with pytest.raises(AccountingImportError, match="not UTF-8"):
        reports_from_http_body(b"\xff\xfe[]")
    with pytest.raises(AccountingImportError, match="limit is 10"):
        reports_from_http_body(b"[" + b" " * 20 + b"]", max_bytes=10)
    with pytest.raises(AccountingImportError, match=r"request body:1: \(json\)"):
        reports_from_http_body(b"[{")


def test_load_reports_by_suffix(tmp_path):
    (tmp_path / "m.csv").write_text(CEMENT, encoding="utf-8-sig")  # Excel writes a BOM
    (tmp_path / "m.json").write_text(json.dumps(POWER))
    assert load_reports(tmp_path / "m.csv")[0].sector == "cement"
    assert load_reports(tmp_path / "m.json")[0].sector == "power"
    with pytest.raises(AccountingImportError, match=r"expected a .csv or .json"):
        load_reports(tmp_path / "m.txt")


def test_inputs_columns_cover_every_default_input():
    assert len(set(INPUTS)) == len(INPUTS)
    x = inputs_from_reports(parse_csv(CEMENT) + parse_json(json.dumps([STEEL, ALUMINIUM, POWER])))
    assert set(x.basis) == set(INPUTS)
