"""Standardisation formulas, CO2e and exact sums, against hand-computed values (arithmetic shown)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kernels import exact
from streams.kernels.gwp import co2e
from streams.kernels.standardise import (
    MOLAR_MASS_G_MOL,
    REFERENCE_CONDITIONS,
    actual_to_standard,
    actual_wet_flow_m3_h,
    duct_velocity,
    mass_rate_kg_h,
    mg_m3_to_ppm,
    o2_reference_correction,
    ppm_to_mg_m3,
    standard_dry_flow_m3_h,
    vol_pct_to_mg_m3,
    wet_to_dry,
)

HJ = REFERENCE_CONDITIONS["hj212"]
EU = REFERENCE_CONDITIONS["eu-mrr"]


def test_actual_to_standard_eq18():
    # 150 mg/m3 at 127 °C, Ba 101325 Pa, Ps 0: 150 x 101325/101325 x (273 + 127)/273 = 150 x 400/273 = 219.78022
    assert actual_to_standard(150.0, 127.0, 0.0, 101_325.0, HJ) == pytest.approx(219.780220, rel=1e-8)
    # Ps = -1325 Pa: absolute pressure 100000 Pa, so x 1.01325: 219.780220 x 1.01325 = 222.692308
    assert actual_to_standard(150.0, 127.0, -1325.0, 101_325.0, HJ) == pytest.approx(222.692308, rel=1e-8)
    # With the physical 273.15 K: 150 x (273.15 + 127)/273.15 = 150 x 400.15/273.15 = 219.741900
    assert actual_to_standard(150.0, 127.0, 0.0, 101_325.0, EU) == pytest.approx(219.741900, rel=1e-8)


def test_wet_to_dry_eq19():
    # 12 % O2 wet with 10 % moisture: 12 / (1 - 0.10) = 13.333333
    assert wet_to_dry(12.0, 0.10) == pytest.approx(13.333333, rel=1e-7)
    assert wet_to_dry(12.0, 0.0) == 12.0


def test_ppm_and_percent_to_mg_m3_eq20():
    # CO2: M = 12.011 + 2 x 15.999 = 44.009 g/mol; 44.009 / 22.4 = 1.9646875 exactly
    assert MOLAR_MASS_G_MOL["a05001"] == 44.009
    assert ppm_to_mg_m3(1000.0, 44.009, HJ) == pytest.approx(1964.6875, rel=1e-12)
    # 10 vol% = 100000 ppm -> 100000 x 1.9646875 = 196468.75 mg/m3 (docs/sources.md HJ212-D20)
    assert vol_pct_to_mg_m3(10.0, 44.009, HJ) == pytest.approx(196_468.75, rel=1e-12)
    # EU molar volume 22.414: 1000 x 44.009/22.414 = 1963.460337
    assert ppm_to_mg_m3(1000.0, 44.009, EU) == pytest.approx(1963.460337, rel=1e-9)
    assert mg_m3_to_ppm(1964.6875, 44.009, HJ) == pytest.approx(1000.0, rel=1e-12)


def test_o2_reference_correction_eq26_28():
    # 100 mg/m3 at 15 % O2 corrected to 6 % O2: 100 x (21 - 6)/(21 - 15) = 100 x 15/6 = 250
    assert o2_reference_correction(100.0, 15.0, 6.0) == pytest.approx(250.0)


def test_flow_chain_eq29_31():
    # Vs = Kv x Vp = 0.95 x 15.0 = 14.25 m/s
    assert duct_velocity(15.0, 0.95) == pytest.approx(14.25)
    # Qsh = 3600 x F x Vs = 3600 x 5.0 x 14.65 = 263700 m3/h
    qsh = actual_wet_flow_m3_h(14.65, 5.0)
    assert qsh == pytest.approx(263_700.0)
    # Qsnh = 263700 x 273/(273 + 96.4) x (100000 - 431)/101325 x (1 - 0.103)
    #      = 263700 x 0.73903627 x 0.98266963 x 0.897
    #      = 194883.86 x 0.98266963 x 0.897 = 191506.45 x 0.897 = 171781.3 m3/h
    qsnh = standard_dry_flow_m3_h(qsh, 96.4, -431.0, 100_000.0, 0.103, HJ)
    assert qsnh == pytest.approx(171_781.3, rel=1e-6)


def test_mass_rate_eq33_matches_the_hj212_example_frame():
    # docs/sources.md HJ212-D33, on an illustrative 2061 frame's figures (CO2 Avg 205120 mg/m3, flow Cou 299880 m3):
    # Cou = Avg x Qsnh x 1e-6 = 205120 x 299880 x 1e-6 = 61511.3856 kg
    assert mass_rate_kg_h(205_120.0, 299_880.0) == pytest.approx(61_511.3856, rel=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: actual_to_standard(100.0, -300.0, 0.0, 101_325.0, HJ),  # below absolute zero
        lambda: actual_to_standard(100.0, 20.0, -101_325.0, 101_325.0, HJ),  # zero absolute pressure
        lambda: wet_to_dry(10.0, 1.0),  # 100 % moisture
        lambda: wet_to_dry(10.0, -0.1),
        lambda: o2_reference_correction(100.0, 21.0, 6.0),  # air
        lambda: standard_dry_flow_m3_h(1000.0, 20.0, 0.0, 101_325.0, 1.2, HJ),
        lambda: actual_to_standard(np.nan, 20.0, 0.0, 101_325.0, HJ),
    ],
)
def test_impossible_inputs_give_nan_not_numbers(call):
    with np.errstate(all="ignore"):
        assert np.isnan(call())


def test_formulas_broadcast_over_sources_and_hours():
    temps = np.array([[100.0, 110.0], [120.0, 130.0]])  # 2 sources x 2 hours
    out = actual_to_standard(np.full((2, 2), 100.0), temps, 0.0, np.array([[101_325.0], [100_000.0]]), HJ)
    assert out.shape == (2, 2)
    # source 1, hour 0: 100 x 101325/100000 x (273 + 120)/273 = 101.325 x 1.43956044
    #                 = 143.956044 + 1.325 x 1.43956044 = 143.956044 + 1.907418 = 145.863462
    assert out[1, 0] == pytest.approx(145.863462, rel=1e-8)


def test_co2e_with_versioned_gwp_sets():
    # 1 t CF4 + 0.1 t C2F6: AR4 7390 + 1220 = 8610; AR5 6630 + 1110 = 7740; AR6 7380 + 1240 = 8620
    m = {"CF4": 1.0, "C2F6": 0.1}
    assert co2e(m, "AR4") == pytest.approx(8610.0)
    assert co2e(m, "AR5") == pytest.approx(7740.0)
    assert co2e(m, "AR6") == pytest.approx(8620.0)
    arr = co2e({"CO2": np.array([100.0, 200.0]), "CF4": np.array([0.01, 0.0])}, "AR5")
    np.testing.assert_allclose(arr, [166.3, 200.0])
    assert np.isnan(co2e({"CO2": 1.0, "CF4": np.nan}))
    with pytest.raises(KeyError, match="unknown GWP set 'AR3'"):
        co2e(m, "AR3")
    with pytest.raises(KeyError, match="no GWP for \\['SF6'\\]"):
        co2e({"SF6": 1.0})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=0, max_size=300),
    st.integers(1, 8),
    st.randoms(use_true_random=False),
)
def test_segment_sum_is_exact_and_split_invariant(values, groups, rnd):
    q = exact.quantise(np.array(values, dtype=np.float64))
    idx = np.array([rnd.randrange(groups) for _ in values], dtype=np.int64)
    whole = exact.segment_sum(idx, q, groups)
    expected = [sum(int(v) for v, i in zip(q, idx, strict=True) if i == g) for g in range(groups)]
    assert whole.tolist() == expected  # exact, as Python integers
    cut = rnd.randrange(len(values) + 1)
    parts = exact.segment_sum(idx[:cut], q[:cut], groups) + exact.segment_sum(idx[cut:], q[cut:], groups)
    assert np.array_equal(parts, whole)


def test_quantisation_grid():
    # 2**-24 grid: 0.1 is stored as rint(0.1 x 16777216) = 1677722 -> 0.100000024
    assert exact.quantise(np.array([0.1]))[0] == 1_677_722
    assert abs(exact.dequantise(exact.quantise(np.array([0.1])))[0] - 0.1) < 2**-25
