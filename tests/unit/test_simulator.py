"""Plant-simulator physics and generator: hand-computed combustion, and the kernels recovering the
CO2 the model produced (the ground truth reconciliation will rely on)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.simulator.generate import CHANNELS, Fault, StackModel, simulate_stack, source_config
from edge_agent.simulator.physics import COAL, flue_gas
from schemas.quantities import Flag
from schemas.site import EmissionSource
from streams.kernels import POLICIES, StackLayout, hourly_emissions, hours_from_minutes, readings_to_minutes

CN = POLICIES["cn-hj75"]
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def test_combustion_by_hand():
    # 1 t/h of the coal (C 0.62, H 0.04, O 0.08, N 0.011, S 0.008, moisture 0.08) at lambda = 1:
    # CO2 = 620/12.011 = 51.619 kmol/h; H2O = 40/2.016 + 80/18.015 = 19.841 + 4.441 = 24.282
    # O2 needed = 51.619 + 40/4.032 + 8/32.06 - 80/31.998 = 51.619 + 9.921 + 0.250 - 2.500 = 59.289
    # air = 59.289/0.21 = 282.33; N2 = 0.79 x 282.33 + 11/28.014 = 223.04 + 0.39 = 223.43
    # dry = 51.619 + 0.250 + 223.43 + 0 = 275.30 -> CO2 18.75 % dry, O2 0 %, moisture 24.28/299.58 = 8.11 %
    g = flue_gas(COAL, 1.0, 1.0)
    assert g.co2_kmol_h == pytest.approx(51.619, abs=1e-3)
    assert g.h2o_kmol_h == pytest.approx(24.282, abs=1e-3)
    assert g.dry_kmol_h == pytest.approx(275.30, abs=0.01)
    assert g.co2_dry_pct == pytest.approx(18.75, abs=0.01) and g.o2_dry_pct == pytest.approx(0.0, abs=1e-12)
    assert g.moisture_pct == pytest.approx(8.105, abs=1e-3)
    # 35 % excess air: residual O2 = 0.21 x 0.35 x 282.33 = 20.75 kmol/h of a larger dry flow
    g = flue_gas(COAL, 1.0, 1.35)
    dry = 51.619 + 0.250 + 0.79 * 1.35 * 282.33 + 0.39 + 20.75
    assert g.o2_dry_pct == pytest.approx(20.75 / dry * 100, abs=0.01)


def test_stack_co2_matches_fuel_carbon_within_the_stated_error():
    g = flue_gas(COAL, 10.0, 1.3)
    accounting_kg_h = 10_000 * COAL.carbon * 44 / 12
    # (44.009/12.011)/(44/12) - 1 = 3.664058/3.666667 - 1 = -0.071 %
    assert g.co2_kg_h / accounting_kg_h - 1 == pytest.approx(-0.000711, abs=2e-6)


def stack_source():
    return EmissionSource.model_validate(source_config("kiln1", "Kiln 1"))  # 12.57 m2, Kv 1, 100.8 kPa


def run_kernels(readings, seconds):
    series_of = {("kiln1", c): i for i, c in enumerate(CHANNELS)}
    cols = [[], [], [], []]
    for c, (value, flag) in readings.items():
        cols[0].append(np.full(seconds, series_of[("kiln1", c)]))
        cols[1].append(T0 + np.arange(seconds, dtype=np.int64) * 10**9)
        cols[2].append(value)
        cols[3].append(flag)
    series, ts, value, flag = (np.concatenate(c) for c in cols)
    hours = hours_from_minutes(readings_to_minutes(series, ts, value, flag).close(CN)).close(CN)
    layout = StackLayout.from_sources([stack_source()], series_of)
    return hourly_emissions(hours, len(series_of), layout, T0, seconds // 3600, CN.reference)


def test_a_simulated_day_through_the_kernels_gives_back_the_co2_produced():
    model = StackModel(process_co2_kmol_h_per_fuel_t_h=20.0)  # a cement kiln: calcination CO2 with load
    readings, truth = simulate_stack(model, T0, 86_400, seed=7)
    e = run_kernels(readings, 86_400)
    assert e.measured.all()
    true_kg = truth["co2_kg_h"].reshape(24, 3600).mean(axis=1)  # kg in each hour
    # instrument noise and the product of hourly means: within 0.1 % per day, 0.3 % per hour
    assert e.co2_kg.sum() / true_kg.sum() - 1 == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(e.co2_kg[0], true_kg, rtol=3e-3)
    # and the accounting view: fuel carbon x 44/12 + process CO2, within the 0.071 % convention gap + noise
    accounting = (truth["fuel_carbon_t_h"] * 1000 * 44 / 12 + truth["process_co2_kg_h"]).mean() * 24
    assert e.co2_kg.sum() / accounting - 1 == pytest.approx(-0.00071, abs=1.2e-3)


def test_faults_show_as_their_flags_and_a_tampered_analyser_reads_low():
    faults = (
        Fault("calibration", 600, 300, "co2", amount=16.0),  # 5 min of span gas
        Fault("comm_loss", 4000, 120, "o2"),
        Fault("bias", 7200, 3600, "co2", amount=-0.10),  # hour 2: CO2 reads 10 % low
        Fault("stopped", 3 * 3600, 3600),
    )
    readings, truth = simulate_stack(StackModel(faults=faults), T0, 4 * 3600, seed=3)
    co2_v, co2_f = readings["co2"]
    assert (co2_f[600:900] == Flag.C).all() and (co2_v[600:900] == 16.0).all()
    assert (readings["o2"][1][4000:4120] == Flag.B).all() and np.isnan(readings["o2"][0][4000:4120]).all()
    assert all((f[3 * 3600 :] == Flag.F).all() for _, f in readings.values())
    assert (truth["fuel_t_h"][3 * 3600 :] == 0).all()
    e = run_kernels(readings, 4 * 3600)
    true_kg = truth["co2_kg_h"].reshape(4, 3600).mean(axis=1)
    assert e.co2_kg[0, 2] / true_kg[2] - 1 == pytest.approx(-0.10, abs=3e-3)  # undetected by validity rules
    assert e.co2_kg[0, 3] == 0.0 and not e.operating[0, 3]  # stopped: emits nothing, not missing


def test_fuel_meter_and_weigher_totalisers_integrate_the_true_rates():
    model = StackModel(fuel_t_h=12.0, load_swing=0.0, product_t_per_fuel_t=7.8, fuel_total_start_t=5_000.0,
                       product_total_start_t=40_000.0, faults=(Fault("stopped", 1800, 600),))
    readings, truth = simulate_stack(model, T0, 3600, seed=5)
    fuel_total, product_total = readings["fuel_total"][0], readings["product_total"][0]
    # each second adds the true rate [t/h] / 3600: the totaliser is exact, the rate reading noisy
    assert fuel_total[-1] - fuel_total[0] == pytest.approx(truth["fuel_t_h"][1:].sum() / 3600, rel=1e-12)
    # 50 running minutes of about 12 t/h (slow load variation within a few %): about 10 t of fuel...
    assert fuel_total[-1] - 5_000.0 == pytest.approx(12.0 * 50 / 60, rel=0.05)
    # ...and 7.8 t of product per t of fuel
    assert product_total[-1] - 40_000.0 == pytest.approx(7.8 * (fuel_total[-1] - 5_000.0), rel=1e-9)
    stopped = slice(1800, 2400)
    assert np.ptp(fuel_total[stopped]) == 0 and (readings["product_rate"][1][stopped] == Flag.F).all()
