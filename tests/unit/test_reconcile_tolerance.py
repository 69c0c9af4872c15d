"""The reconciliation that neither cries wolf nor looks away (issue 13): the tolerance from each input's
uncertainty weighted by its CO2 (docs/reconciliation.md's worked example), months with too little measured data,
the measured and substituted bases, rate meters with gaps, and the CO2 the accounting excludes. Values by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.accounting import validate_report
from schemas.alerts import Alert
from schemas.records import MonthlyRecord
from schemas.site import Entity
from streams.core.reconcile import MeterTotal, MonthEvidence, ReconcilePolicy, metered_totals, reconcile_month
from streams.kernels.indicators import Grid

FEB_MINUTES = 28 * 1440  # 40320


def m(value, unit, basis="measured"):
    return {"value": value, "unit": unit, "basis": basis}


def entity(sector: str, excluded=()) -> Entity:
    return Entity.model_validate({"id": "e1", "name": "plant", "sector": sector,
                                  "region": {"province": "320000", "municipality": "320500"},
                                  "sources": [{"id": "s1", "name": "stack", "excluded_co2": list(excluded),
                                               "duct_area_m2": 10.0,
                                               "channels": [{"id": "coal", "quantity": "xf0001", "unit": "t/h"},
                                                            {"id": "coal_total", "quantity": "xf0003", "unit": "t"},
                                                            {"id": "co2", "quantity": "a05001", "unit": "%",
                                                             "basis": "dry"},
                                                            {"id": "q", "quantity": "a00000", "unit": "m3/h",
                                                             "basis": "standard_dry"}]}]})


def kiln_report(cao=65.0, fuel_ncv_default=False) -> dict:
    coal = {"fuel": "raw_coal", "consumption": m(10_000, "t"), "oxidation_rate": m(0.98, "fraction")}
    coal |= ({"ncv": {"basis": "default"}, "carbon_per_heat": m(0.0225, "tC/GJ")} if fuel_ncv_default
             else {"carbon_content": m(0.6, "tC/t")})
    return {"entity_id": "e1", "month": "2026-02", "sector": "cement", "fuels": [coal],
            "cement": {"clinker_output": m(100_000, "t"), "clinker_cao": m(cao, "%"), "clinker_mgo": m(2, "%"),
                       "noncarbonate_cao": m(0.6, "%"), "noncarbonate_mgo": m(0, "%"),
                       "raw_meal_consumption": m(161_000, "t"), "raw_meal_toc": {"basis": "default"}}}


METERED = {"fuel:raw_coal": 10_000.0, "product": 100_000.0}
# the kiln by hand: fuel 10000 x 0.6 x 0.98 x 44/12 = 21560 t; clinker 100000 x ((0.65 - 0.006) x 44/56 + 0.02 x
# 44/40) = 100000 x 0.528 = 52800 t; raw meal 161000 x 0.1 % (default) x 44/12 = 590.3333 t; all 74950.3333 t
KILN_T = 74_950.333_333


def kiln(measured_co2_t: float, **report) -> MonthEvidence:
    return MonthEvidence(entity=entity("cement"), month="2026-02", report=validate_report(kiln_report(**report)),
                         measured_co2_t=measured_co2_t, metered=METERED)


def test_worked_example_a_small_default_does_not_widen_the_band():
    # contributions, t (u x the CO2 the input carries; meters 2 %, uncertainty-cn-2026 for the rest):
    #   coal quantity (metered) 21560 x 0.02 = 431.2;   carbon 21560 x 0.06 = 1293.6;   oxidation 21560 x 0.01 = 215.6
    #   clinker (metered) 52800 x 0.02 = 1056;   CaO 100000 x 0.65 x 44/56 x 0.01 = 510.714
    #   MgO 100000 x 0.02 x 1.1 x 0.02 = 44;   non-carbonate CaO 100000 x 0.006 x 44/56 x 0.10 = 47.143
    #   raw meal 590.333 x 0.025 = 14.758;   TOC default (0.79 % of the CO2) 590.333 x 1.0 = 590.333
    # sum of squares 3634652.5 t^2 -> 1906.48 t = 2.5437 % of 74950.33 t
    # tolerance sqrt(5^2 + 2.5437^2) % = 5.6098 %; the flat rule gave sqrt(5^2 + 19.62^2) % = 20.25 %
    assert reconcile_month(kiln(KILN_T)) == []
    (a,) = reconcile_month(kiln(KILN_T * 1.06))  # 6 % more CO2 measured than calculated: a warning now
    assert (a.rule, a.severity) == ("measured_vs_calculated", "warning")
    assert a.allowed == pytest.approx(0.056098, rel=1e-4)
    assert a.expected == pytest.approx(KILN_T, rel=1e-8)
    assert "cement.raw_meal_toc (0.8%)" in a.explanation  # the default named with the share it adds


def test_a_15_percent_caO_understatement_is_caught():
    # reported CaO 0.5525 (65 % x 0.85): clinker 100000 x ((0.5525 - 0.006) x 44/56 + 0.022) = 45139.29 t;
    # calculated 21560 + 45139.29 + 590.33 = 67289.62 t; the CEMS measures the true 74950.33 t: d = +11.385 %
    # tolerance (CaO term 100000 x 0.5525 x 44/56 x 0.01 = 434.107, clinker 45139.29 x 0.02 = 902.786, the rest as
    # above): sum of squares 3262158.5 -> 1806.14 t = 2.6841 %; sqrt(25 + 7.2046) % = 5.6749 %: ratio 2.006, critical
    (a,) = reconcile_month(kiln(KILN_T, cao=55.25))
    assert (a.rule, a.severity) == ("measured_vs_calculated", "critical")
    assert a.deviation == pytest.approx(0.113847, rel=1e-4)
    assert a.allowed == pytest.approx(0.056749, rel=1e-4)


def test_a_default_that_carries_much_co2_widens_the_band_by_what_it_carries():
    # coal by NCV default 26.7 GJ/t (uncertainty 20 %) x 0.0225 tC/GJ: 10000 x 26.7 x 0.0225 x 0.98 x 44/12
    # = 21586.95 t; contributions: NCV 4317.39, carbon per heat (6 %) 1295.217, quantity 431.739, oxidation 215.870;
    # the kiln's other terms as in the worked example (1056, 510.714, 44, 47.143, 14.758, 590.333)
    # sum of squares 18639856.7 + 1677587.1 + 186398.6 + 46599.7 + 1115136 + 260828.8 + 1936 + 2222.5 + 217.8
    #   + 348493.4 = 22279276.6 t^2 -> 4720.09 t over 74977.28 t = 6.2954 %; tolerance sqrt(25 + 39.632) % = 8.0394 %
    calc = 21_586.95 + 52_800 + 590.333_333
    (a,) = reconcile_month(kiln(calc * 1.09, fuel_ncv_default=True))
    assert a.allowed == pytest.approx(0.080394, rel=1e-4)
    assert "fuel.ncv (5.8%)" in a.explanation


# -- completeness, and the two bases --------------------------------------------------------------------------


def record(measured_hours: int, substituted_hours: int, rate_t_h: float, substituted_t_h: float,
           operating_hours: int = 640) -> MonthlyRecord:
    missing = operating_hours - measured_hours - substituted_hours
    return MonthlyRecord(
        entity_id="e1", source_id="s1", month="2026-02", timezone="Asia/Shanghai", month_start_ns=0, status="closed",
        revision=0, reason="closed", policy="cn-hj75", substitution="hj75-2017",
        co2_t=measured_hours * rate_t_h + substituted_hours * substituted_t_h, measured_co2_t=measured_hours * rate_t_h,
        substituted_co2_t=substituted_hours * substituted_t_h, hours_in_month=672, hours=672,
        operating_hours=operating_hours, measured_hours=measured_hours, substituted_hours=substituted_hours,
        missing_hours=missing, valid_days=28, valid=True, completeness=measured_hours / operating_hours,
        stopped_hours=672 - operating_hours)


def power(monthly=(), measured_co2_t=None, excluded=()) -> MonthEvidence:
    # 1000 t coal x 0.6 tC/t x 0.98 x 44/12 = 2156 t; tolerance 8.2614 % (tests/unit/test_reconcile.py)
    report = validate_report({"entity_id": "e1", "month": "2026-02", "sector": "power",
                              "fuels": [{"fuel": "raw_coal", "consumption": m(1000, "t"), "carbon_content": m(0.6, "tC/t"),
                                         "oxidation_rate": m(0.98, "fraction")}],
                              "power": {"gross_generation": m(2000, "MWh")}})
    return MonthEvidence(entity=entity("power", excluded), month="2026-02", report=report, monthly=list(monthly),
                         measured_co2_t=measured_co2_t)


def test_a_month_below_the_completeness_threshold_is_a_finding_not_a_deviation():
    # 570 of 640 operating hours measured = 89.06 % < 90 %: even 30 % above the calculation raises no deviation
    (a,) = reconcile_month(power([record(570, 70, 2156 * 1.3 / 640, 5.0)]))
    assert (a.rule, a.severity) == ("insufficient_measured_data", "warning")
    assert a.coverage == pytest.approx(570 / 640) and a.allowed == 0.9
    assert "570 of 640 operating hours measured" in a.explanation and "70 substituted" in a.explanation
    # at the threshold (576 of 640 = 90 %) the month is compared: 2156 t at the measured rate, no alert
    assert reconcile_month(power([record(576, 64, 2156 / 640, 9.0)])) == []


def test_the_alert_carries_both_bases_and_is_judged_on_the_measured_one():
    # measured 600 h at 3.9 t/h = 2340 t; at that rate over 640 operating hours 2496 t: +15.77 % of 2156 t
    # substituted 40 h at 6 t/h (a conservative fill) = 240 t: 2580 t on the substituted basis, +19.67 %
    # ratio 15.77 / 8.2614 = 1.909: warning (on the substituted basis it would be critical, 2.38x)
    (a,) = reconcile_month(power([record(600, 40, 3.9, 6.0)]))
    assert (a.rule, a.severity) == ("measured_vs_calculated", "warning")
    assert a.measured == pytest.approx(2496.0)
    assert a.deviation == a.deviation_measured_basis == pytest.approx(2496 / 2156 - 1, rel=1e-8)
    assert a.deviation_substituted_basis == pytest.approx(2580 / 2156 - 1, rel=1e-8)
    assert a.coverage == pytest.approx(600 / 640)
    assert "40 substituted hours" in a.explanation
    assert Alert.from_json(a.to_json()) == a  # the new fields survive the topic


# -- CO2 the accounting excludes --------------------------------------------------------------------------------


BIOMASS_STACK = {"kind": "biomass", "share": 10, "unit": "%", "of": "stack_co2", "uncertainty": 0.2, "basis": "lab"}
BIOMASS_FUEL = BIOMASS_STACK | {"of": "fuel_co2"}


def test_declared_biomass_co2_is_left_out_of_the_cems_figure():
    # the CEMS sees 2395.56 t, of which 10 % biomass: 2156.0 t fossil, as calculated: no alert
    cems = 2156 / 0.9
    assert reconcile_month(power(measured_co2_t=cems, excluded=[BIOMASS_STACK])) == []
    # undeclared, the same stack looks 11.1 % high
    (a,) = reconcile_month(power(measured_co2_t=cems))
    assert a.deviation == pytest.approx(1 / 0.9 - 1, rel=1e-8)
    # a share of the fuel's CO2: the report's 2156 t are the fossil 90 %, so 2156 x 0.1 / 0.9 = 239.56 t is biomass
    assert reconcile_month(power(measured_co2_t=cems, excluded=[BIOMASS_FUEL])) == []


def test_the_excluded_share_s_uncertainty_widens_the_band():
    # 10 % of 2600 t = 260 t excluded, +-20 %: 52 t = 2.4119 % of 2156 t; tolerance sqrt(68.25 + 5.8173) % = 8.6062 %
    # measured basis 2600 - 260 = 2340 t: +8.534 %, ratio 0.992: no alert (against 8.2614 % alone it would be 1.03x)
    assert reconcile_month(power(measured_co2_t=2600.0, excluded=[BIOMASS_STACK])) == []
    (a,) = reconcile_month(power(measured_co2_t=2620.0, excluded=[BIOMASS_STACK]))
    # 2620 x 0.9 = 2358 t, +9.369 %; 262 t x 0.2 = 52.4 t = 2.4304 % of 2156 t: sqrt(68.25 + 5.9070) % = 8.6114 %
    assert a.allowed == pytest.approx(0.086114, rel=1e-4)
    assert "less 262 t the accounting excludes" in a.explanation


def test_an_excluded_share_must_leave_something_to_account():
    with pytest.raises(ValueError, match="add up to 1"):
        entity("power", [BIOMASS_STACK | {"share": 60}, BIOMASS_STACK | {"kind": "desulphurisation", "share": 40}])


# -- rate meters with gaps, totalisers with holes ---------------------------------------------------------------


def meter_grid(rate=10.0, gap=slice(0, 0), hole=slice(0, 0)) -> tuple[Grid, list]:
    t = np.arange(FEB_MINUTES)
    coal = np.full(FEB_MINUTES, rate)
    coal[gap] = np.nan
    total = 5000.0 + rate * t / 60.0  # a totaliser counting the same flow
    total[hole] = np.nan
    return Grid(np.stack([coal, total])), [("s1", "coal"), ("s1", "coal_total")]


CHANNELS = {("s1", "coal"): ("xf0001", "t/h"), ("s1", "coal_total"): ("xf0003", "t")}


def test_a_rate_meter_gap_lowers_coverage_and_is_not_zero_flow():
    # 10 t/h, 2016 of 40320 minutes (5 %) without data: counted 38304 min x 10/60 = 6384 t; at the counted rate the
    # month is 40320 x 10/60 = 6720 t
    grid, series = meter_grid(gap=slice(10_000, 12_016))
    (total,) = metered_totals(grid, series, CHANNELS, {"s1/coal": "fuel:raw_coal"}).values()
    assert total == MeterTotal(pytest.approx(6384.0), pytest.approx(6720.0), pytest.approx(0.95), pytest.approx(0.95))
    ev = power()
    ev = MonthEvidence(entity=ev.entity, month=ev.month, report=ev.report.model_copy(update={"fuels": [
        ev.report.fuels[0].model_copy(update={"consumption": ev.report.fuels[0].consumption.model_copy(
            update={"value": 6720.0})})]}), metered={"fuel:raw_coal": total})
    assert [a.rule for a in reconcile_month(ev)] == []  # the 6720 t reported are what the meter saw
    # compared as counted (policy), the gap would look like +5.26 % (6720 / 6384 - 1), over 3.20 %: a warning
    (a,) = reconcile_month(ev, ReconcilePolicy(meter_gaps="as_counted"))
    assert a.rule == "fuel_metered_vs_reported" and a.deviation == pytest.approx(6720 / 6384 - 1, rel=1e-8)


def test_a_meter_counting_too_little_of_the_month_is_not_compared():
    # 20 % of the minutes missing: coverage 0.8 < 0.9, a low-coverage finding, and the reported figure stands
    grid, series = meter_grid(gap=slice(0, 8064))
    metered = metered_totals(grid, series, CHANNELS, {"s1/coal": "fuel:raw_coal"})
    ev = power()
    (a,) = reconcile_month(MonthEvidence(entity=ev.entity, month=ev.month, report=ev.report, metered=metered))
    assert (a.rule, a.severity) == ("meter_low_coverage", "info") and a.coverage == pytest.approx(0.8)


def test_a_totaliser_reads_its_month_across_a_hole():
    # a hole of 3 days in the middle loses nothing: last - first = 10 x 40319 / 60 = 6719.833 t, counted in full;
    # minutes with data 36000 / 40320 = 0.8929 (reported as coverage)
    grid, series = meter_grid(hole=slice(20_000, 24_320))
    (total,) = metered_totals(grid, series, CHANNELS, {"s1/coal_total": "fuel:raw_coal"}).values()
    assert total.counted_total == pytest.approx(10 * 40_319 / 60) and total.counted_share == 1.0
    assert total.coverage == pytest.approx(36_000 / 40_320)
    # missing its first day: read from its first valid reading, 10 x 38879 / 60 = 6479.833 t, as it is (not scaled);
    # it counts (40319 - 1440) / 40319 = 96.43 % of the month, which the coverage threshold (90 %) lets through
    grid, series = meter_grid(hole=slice(0, 1440))
    (total,) = metered_totals(grid, series, CHANNELS, {"s1/coal_total": "fuel:raw_coal"}).values()
    assert total.counted_share == pytest.approx(38_879 / 40_319)
    assert total.month == total.counted_total == pytest.approx(10 * 38_879 / 60)


@settings(max_examples=40, deadline=None)
@given(cems=st.floats(0, 10_000), measured=st.integers(0, 640), substituted=st.integers(0, 640),
       rate=st.floats(0, 20), fill=st.floats(0, 20))
def test_reconcile_month_on_any_month_of_records(cems, measured, substituted, rate, fill):
    # property: never an exception; a deviation only above the CEMS tier's floor, an insufficient month never both
    substituted = min(substituted, 640 - measured)
    for ev in (power(measured_co2_t=cems), power([record(measured, substituted, rate, fill)])):
        alerts = reconcile_month(ev)
        rules = [a.rule for a in alerts]
        assert not ({"insufficient_measured_data", "measured_vs_calculated"} <= set(rules))
        for a in alerts:
            if a.rule == "measured_vs_calculated":
                assert a.allowed >= 0.05 and abs(a.deviation) >= a.allowed


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(0.1, 500), gaps=st.lists(st.tuples(st.integers(0, FEB_MINUTES - 1), st.integers(1, 5000)),
                                               max_size=6))
def test_metered_totals_with_any_gaps(rate, gaps):
    # property: at a constant rate, any gaps leave the scaled rate total at rate x the month (a gap is not zero
    # flow), the counted total at rate x the minutes with data, and the totaliser at rate x (last - first)
    coal, total = np.full(FEB_MINUTES, rate), 100.0 + rate * np.arange(FEB_MINUTES) / 60
    for start, length in gaps:
        coal[start:start + length] = np.nan
        total[start:start + length] = np.nan
    ok = np.flatnonzero(np.isfinite(coal))
    got = metered_totals(Grid(np.stack([coal, total])), [("s1", "coal"), ("s1", "coal_total")], CHANNELS,
                         {"s1/coal": "rate", "s1/coal_total": "totaliser"})
    if not ok.size:
        assert got == {}
        return
    assert got["rate"].coverage == got["totaliser"].coverage == pytest.approx(ok.size / FEB_MINUTES)
    assert got["rate"].counted_total == pytest.approx(rate * ok.size / 60, rel=1e-9)
    assert got["rate"].month == pytest.approx(rate * FEB_MINUTES / 60, rel=1e-9)
    assert got["totaliser"].month == pytest.approx(rate * (ok[-1] - ok[0]) / 60, rel=1e-6, abs=1e-6)


# -- data quality from the stream's hour flags (issue 13: an analyser off while the process runs) --------------------


def test_an_analyser_off_while_the_plant_runs_raises_a_data_quality_alert():
    from dataclasses import replace

    # 48 h of CO2 analyser F while the flow ran: 624 measured + 48 substituted at 9.5 t/h (the 180-h maximum)
    rec = replace(record(624, 48, 10.0, 9.5, operating_hours=672), analyser_off_hours=48)
    alerts = reconcile_month(MonthEvidence(entity=entity("cement"), month="2026-02", monthly=[rec]))
    (a,) = [x for x in alerts if x.rule == "analyser_off_while_operating"]
    assert a.severity == "critical" and a.measured == 48 and a.source_id == "s1"  # >= 24 h: critical
    assert "48 h substituted (456.0 t CO2)" in a.explanation  # 48 x 9.5 = 456.0 t
    short = replace(rec, analyser_off_hours=3)
    (b,) = [x for x in reconcile_month(MonthEvidence(entity=entity("cement"), month="2026-02", monthly=[short]))
            if x.rule == "analyser_off_while_operating"]
    assert b.severity == "warning"
    air = replace(record(672, 0, 10.0, 0.0, operating_hours=672), co2_ambient_hours=5)
    rules = [x.rule for x in reconcile_month(MonthEvidence(entity=entity("cement"), month="2026-02", monthly=[air]))]
    assert rules == ["co2_ambient_while_operating"]


def test_the_calculation_tolerance_of_a_report_is_the_alerts_band_without_meters():
    from schemas.accounting import validate_report
    from streams.core.reconcile import calculation_tolerance

    report = validate_report(kiln_report())
    band = calculation_tolerance(report)
    ev = MonthEvidence(entity=entity("cement"), month="2026-02", report=report, measured_co2_t=1.0)  # far off
    (alert,) = [a for a in reconcile_month(ev) if a.rule == "measured_vs_calculated"]
    assert band == pytest.approx(alert.allowed, rel=1e-6)  # same inputs, no meters: the same band
