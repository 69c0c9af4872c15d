"""The accounting methods of issue 13: cement kiln-dust and bypass-dust terms, aluminium limestone calcination,
the overvoltage PFC method, the SAR GWP set, and the CO2 uncertainty propagation kernel; values by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.accounting import ReportError, validate_report
from streams.kernels.accounting import (
    INPUTS,
    AccountingInputs,
    accounting_emissions,
    co2_variance_t2,
    inputs_from_reports,
    pfc_overvoltage_t,
)
from streams.kernels.gwp import co2e


def m(value, unit, basis="measured"):
    return {"value": value, "unit": unit, "basis": basis}


def cement(**extra) -> dict:
    return {"entity_id": "c1", "month": "2026-03", "sector": "cement",
            "cement": {"clinker_output": m(100_000, "t"), "clinker_cao": m(65, "%"), "clinker_mgo": m(2, "%"),
                       "noncarbonate_cao": m(0.6, "%"), "noncarbonate_mgo": m(0, "%"), **extra}}


def aluminium(**extra) -> dict:
    base = {"cell_technology": "CWPB", "aluminium_output": m(10_000, "t"), "net_anode_consumption": m(0.42, "t/t"),
            "anode_sulphur": m(2, "%"), "anode_ash": m(0.4, "%"), "c2f6_cf4_ratio": m(0.121, "kgC2F6/kgCF4")}
    return {"entity_id": "a1", "month": "2026-03", "sector": "aluminium", "aluminium": base | extra}


def test_kiln_dust_and_bypass_dust_are_calcined_like_clinker():
    # per t calcined: (0.65 - 0.006) x 44/56 + 0.02 x 44/40 = 0.506 + 0.022 = 0.528 t CO2
    # clinker alone: 100000 x 0.528 = 52800 t; with 2000 t kiln dust and 500 t bypass dust: 102500 x 0.528 = 54120 t
    plain = accounting_emissions(inputs_from_reports([validate_report(cement())]))
    dusty = accounting_emissions(inputs_from_reports([validate_report(
        cement(kiln_dust=m(2000, "t"), bypass_dust=m(500_000, "kg")))]))
    assert plain.process_co2_t[0] == pytest.approx(52_800.0, rel=1e-12)
    assert dusty.process_co2_t[0] == pytest.approx(54_120.0, rel=1e-12)


def test_aluminium_limestone_calcination_with_the_default_factor():
    # anode: 10000 x 0.42 x (1 - 0.02 - 0.004) x 44/12 = 4099.2 x 44/12 = 15030.4 t
    # limestone: 1200 t x 0.405 t CO2/t (default) = 486 t; process CO2 486 t, all CO2 15516.4 t
    rep = validate_report(aluminium(anode_effect_minutes=m(0.1, "min/cell-day"),
                                    slope_cf4=m(0.143, "kgCF4/tAl/(min/cell-day)"),
                                    limestone_consumption=m(1200, "t"), limestone_factor={"basis": "default"}))
    assert rep.aluminium.limestone_factor.value == 0.405 and rep.aluminium.limestone_factor.confirmed is False
    e = accounting_emissions(inputs_from_reports([rep]))
    assert e.anode_co2_t[0] == pytest.approx(15_030.4, rel=1e-12)
    assert e.process_co2_t[0] == pytest.approx(486.0, rel=1e-12)
    assert e.co2_t[0] == pytest.approx(15_516.4, rel=1e-12)
    with pytest.raises(ReportError, match="limestone_consumption and limestone_factor together"):
        validate_report(aluminium(anode_effect_minutes=m(0.1, "min/cell-day"),
                                  slope_cf4=m(0.143, "kgCF4/tAl/(min/cell-day)"), limestone_consumption=m(1200, "t")))


def test_overvoltage_method_by_hand():
    # CF4 = OVC x (AEO / CE[%]) x MP x 0.001 = 1.16 x (2.0 mV / 94 %) x 10000 x 0.001 = 1.16 x 0.0212766 x 10
    #     = 0.24680851 t; C2F6 = 0.24680851 x 0.121 = 0.02986383 t
    rep = validate_report(aluminium(overvoltage_coefficient=m(1.16, "kgCF4/tAl/mV"),
                                    anode_effect_overvoltage=m(2.0, "mV"), current_efficiency=m(94, "%")))
    e = accounting_emissions(inputs_from_reports([rep]), "SAR")
    cf4 = 1.16 * 2.0 / 94 * 10_000 * 0.001
    assert e.cf4_t[0] == pytest.approx(0.246_808_51, rel=1e-8)
    assert e.cf4_t[0] == pytest.approx(cf4, rel=1e-12)
    assert e.c2f6_t[0] == pytest.approx(cf4 * 0.121, rel=1e-12)
    # SAR: 0.24680851 x 6500 + 0.02986383 x 9200 = 1604.25532 + 274.74723 = 1879.00255 t CO2e
    assert e.cf4_co2e_t[0] + e.c2f6_co2e_t[0] == pytest.approx(1879.00255, rel=1e-8)
    # the kernel alone, and zero (not a division error) where a report gives no efficiency
    cf4_k, _ = pfc_overvoltage_t(np.array([10_000.0, 5.0]), 1.16, np.array([2.0, 0.0]), np.array([0.94, 0.0]), 0.121)
    assert cf4_k == pytest.approx([cf4, 0.0])


def test_one_pfc_method_per_report_and_a_plausible_efficiency():
    slope = {"anode_effect_minutes": m(0.1, "min/cell-day"), "slope_cf4": m(0.143, "kgCF4/tAl/(min/cell-day)")}
    over = {"overvoltage_coefficient": m(1.16, "kgCF4/tAl/mV"), "anode_effect_overvoltage": m(2.0, "mV"),
            "current_efficiency": m(94, "%")}
    with pytest.raises(ReportError, match="not both"):
        validate_report(aluminium(**slope, **over))
    with pytest.raises(ReportError, match="missing field: current_efficiency"):
        validate_report(aluminium(**{k: v for k, v in over.items() if k != "current_efficiency"}))
    with pytest.raises(ReportError, match="missing field: anode_effect_minutes, slope_cf4"):
        validate_report(aluminium())
    with pytest.raises(ReportError, match="for a percentage use unit '%'"):  # 94 % typed as 0.94 %
        validate_report(aluminium(**over | {"current_efficiency": m(0.94, "%")}))
    # boundaries of the plausible 0.8-1 (project choice): 80 % is refused (exclusive), 100 % accepted
    with pytest.raises(ReportError, match="outside the plausible"):
        validate_report(aluminium(**over | {"current_efficiency": m(80, "%")}))
    full = validate_report(aluminium(**over | {"current_efficiency": m(100, "%")}))
    assert full.aluminium.current_efficiency.value == 1


def test_sar_gwp_set():
    # 1 t CF4 + 0.1 t C2F6 under SAR: 6500 + 920 = 7420
    assert co2e({"CF4": 1.0, "C2F6": 0.1}, "SAR") == pytest.approx(7420.0)


# -- the CO2 uncertainty: each input weighted by the CO2 it carries --------------------------------------------


def test_variance_of_a_fuel_and_a_kiln_by_hand():
    # fuel: 10000 t x 0.6 tC/t x 0.98 x 44/12 = 21560 t; clinker process 52800 t (test above); total 74360 t
    # u (95 %): consumption 2 %, carbon 6 %, oxidation 1 %, clinker 2 %, CaO 1 %, MgO 2 %, non-carbonate CaO 10 %
    # contributions [t]: 431.2, 1293.6, 215.6; clinker 52800 x 0.02 = 1056; CaO 100000 x 0.65 x 44/56 x 0.01 =
    # 510.714; MgO 100000 x 0.02 x 1.1 x 0.02 = 44; non-carbonate CaO -100000 x 0.006 x 44/56 x 0.1 = -47.143
    # sum of squares 185933.44 + 1673400.96 + 46483.36 + 1115136 + 260829.08 + 1936 + 2222.45 = 3285941.29 t²
    rep = validate_report(cement() | {"fuels": [{"fuel": "raw_coal", "consumption": m(10_000, "t"),
                                                 "carbon_content": m(0.6, "tC/t"),
                                                 "oxidation_rate": m(0.98, "fraction")}]})
    u = {"fuel.consumption": 0.02, "fuel.carbon_content": 0.06, "fuel.oxidation_rate": 0.01,
         "cement.clinker_output": 0.02, "cement.clinker_cao": 0.01, "cement.clinker_mgo": 0.02,
         "cement.noncarbonate_cao": 0.1, "cement.noncarbonate_mgo": 0.1}
    x = inputs_from_reports([rep], lambda report, parameter, item, p: u[parameter])
    var = co2_variance_t2(x)
    col = dict(zip(INPUTS, var[0], strict=False))
    assert col["fuel_carbon_element"] == pytest.approx(1293.6**2, rel=1e-12)
    assert col["fuel_ncv"] == col["fuel_carbon_per_heat"] == 0  # element carbon used: NCV carries no CO2
    assert col["clinker_cao"] == pytest.approx((100_000 * 0.65 * 44 / 56 * 0.01) ** 2, rel=1e-12)
    assert col["noncarbonate_cao"] == pytest.approx((100_000 * 0.006 * 44 / 56 * 0.1) ** 2, rel=1e-12)
    assert var.sum() == pytest.approx(3_285_941.29, rel=1e-6)
    # relative: sqrt(3285941.29) / 74360 = 1812.717 / 74360 = 2.4378 %
    assert np.sqrt(var.sum()) / accounting_emissions(x).co2_t[0] == pytest.approx(0.024378, rel=1e-4)


def test_two_fuels_are_independent_variables():
    # two fuel rows of 1000 t CO2 each at 10 %: sqrt(100^2 + 100^2) = 141.42 t, not 200 t (as if one variable)
    x = AccountingInputs(n_reports=1, fuel_report=np.array([0, 0]), fuel_consumption=np.array([1.0, 1.0]),
                         fuel_ncv=np.full(2, np.nan), fuel_carbon_per_heat=np.full(2, np.nan),
                         fuel_carbon_element=np.full(2, 1000 * 12 / 44), fuel_oxidation=np.ones(2),
                         uncertainty={"fuel_consumption": np.array([0.1, 0.1]), "fuel_carbon_element": np.zeros(2),
                                      "fuel_oxidation": np.zeros(2), "fuel_ncv": np.zeros(2),
                                      "fuel_carbon_per_heat": np.zeros(2)})
    assert np.sqrt(co2_variance_t2(x).sum()) == pytest.approx(100 * 2**0.5, rel=1e-12)


def test_an_input_acting_on_the_co2_without_an_uncertainty_is_an_error():
    x = inputs_from_reports([validate_report(cement())])  # no uncertainty given
    with pytest.raises(ValueError, match=r"clinker_t .cement.clinker_output. acts on the CO2 but has no uncertainty"):
        co2_variance_t2(x)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0.1, 0.9), st.floats(0.001, 0.5)), min_size=1, max_size=6))
def test_variance_scales_with_the_uncertainty_and_never_exceeds_the_fully_correlated_sum(rows):
    # property: doubling every u quadruples the variance; the independent sum is at most the correlated one
    q, c, u = (np.array(v, np.float64) for v in zip(*rows, strict=False))
    base = {"n_reports": 1, "fuel_report": np.zeros(len(rows), np.int64), "fuel_consumption": q,
            "fuel_ncv": np.full(len(rows), np.nan), "fuel_carbon_per_heat": np.full(len(rows), np.nan),
            "fuel_carbon_element": c, "fuel_oxidation": np.ones(len(rows))}
    zero = {k: np.zeros(len(rows))
            for k in ("fuel_carbon_element", "fuel_oxidation", "fuel_ncv", "fuel_carbon_per_heat")}
    one = co2_variance_t2(AccountingInputs(**base, uncertainty=zero | {"fuel_consumption": u})).sum()
    two = co2_variance_t2(AccountingInputs(**base, uncertainty=zero | {"fuel_consumption": 2 * u})).sum()
    assert two == pytest.approx(4 * one, rel=1e-9, abs=1e-9)
    co2 = q * c * 44 / 12
    assert np.sqrt(one) <= (co2 * u).sum() * (1 + 1e-9) + 1e-9
