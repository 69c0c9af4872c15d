"""Hourly stack emissions (streams/kernels/emissions.py): readings through to kg CO2 per hour."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.quantities import Flag
from schemas.site import EmissionSource
from streams.kernels.aggregate import HOUR_NS, hours_from_minutes, readings_to_minutes
from streams.kernels.emissions import StackLayout, hourly_emissions
from streams.kernels.policy import POLICIES

CN = POLICIES["cn-hj75"]
T0 = 1_767_225_600 * 10**9
S = 10**9

STACK = EmissionSource(
    id="kiln1",
    name="Kiln 1",
    duct_area_m2=5.0,
    channels=[
        {"id": "co2", "quantity": "a05001", "unit": "%"},
        {"id": "h2o", "quantity": "a01014", "unit": "%"},
        {"id": "t", "quantity": "a01012", "unit": "degC"},
        {"id": "ps", "quantity": "a01013", "unit": "kPa"},
        {"id": "v", "quantity": "a01011", "unit": "m/s"},
    ],
)
# CO2 10 % dry, moisture 10.3 %, 96.4 °C, static -0.431 kPa, velocity 14.65 m/s
VALUES = {"co2": 10.0, "h2o": 10.3, "t": 96.4, "ps": -0.431, "v": 14.65}


def run(sources, hour_values, flags_of=None, n_hours=1, **layout_kw):
    """Readings at 1 Hz; hour_values[h][(source, channel)] is the constant value of that hour."""
    series_of = {(s.id, c.id): i for i, (s, c) in enumerate((s, c) for s in sources for c in s.channels)}
    ser, ts, val, flg = [], [], [], []
    t = np.arange(3600)
    for h in range(n_hours):
        for (src, ch), i in series_of.items():
            ser.append(np.full(3600, i))
            ts.append(T0 + (h * 3600 + t) * S)
            val.append(np.full(3600, hour_values[h][(src, ch)]))
            flg.append(np.full(3600, (flags_of or {}).get((h, src, ch), Flag.N), np.uint8))
    cols = [np.concatenate(x) for x in (ser, ts, val, flg)]
    cols[2] = np.where(cols[3] == Flag.N, cols[2], np.nan)
    hours = hours_from_minutes(readings_to_minutes(*cols).close(CN)).close(CN)
    layout = StackLayout.from_sources(sources, series_of, **layout_kw)
    return hourly_emissions(hours, len(series_of), layout, T0, n_hours, CN.reference)


def one_stack_hours(n_hours=1, flags_of=None):
    return run([STACK], [{("kiln1", k): v for k, v in VALUES.items()}] * n_hours, flags_of, n_hours,
               ambient_pressure_pa=100_000.0)


def test_hourly_mass_by_hand():
    e = one_stack_hours()
    # CO2: 10 % x 1e4 x 44.009/22.4 = 196468.75 mg/m3 (Eq. 20, dry already)
    assert e.co2_mg_m3[0, 0] == pytest.approx(196_468.75, rel=1e-7)
    # Qsnh = 3600 x 5.0 x 14.65 x 273/369.4 x 99569/101325 x 0.897 = 171781.3 m3/h (Eq. 29-31,
    # worked in test_kernels_formulas.py::test_flow_chain_eq29_31)
    assert e.flow_m3_h[0, 0] == pytest.approx(171_781.3, rel=1e-6)
    # G = 196468.75 x 171781.3 x 1e-6 = (196468.75 x 170000 + 196468.75 x 1781.3) x 1e-6
    #   = (33399687500 + 349969784) x 1e-6 = 33749.66 kg in the hour (Eq. 33)
    assert e.co2_kg[0, 0] == pytest.approx(33_749.66, rel=1e-6)
    assert e.measured[0, 0] and e.operating[0, 0] and not e.missing[0, 0]


def test_invalid_input_hour_is_missing_and_a_stopped_hour_emits_nothing():
    flags = {(1, "kiln1", "t"): Flag.D}  # hour 1: temperature analyser fault
    flags |= {(2, "kiln1", ch): Flag.F for ch in VALUES}  # hour 2: kiln stopped
    e = one_stack_hours(n_hours=3, flags_of=flags)
    assert e.measured[0].tolist() == [True, False, False]
    assert e.missing[0].tolist() == [False, True, False]
    assert e.operating[0].tolist() == [True, True, False]
    assert np.isnan(e.co2_kg[0, 1]) and e.co2_kg[0, 2] == 0.0


def test_an_hour_without_any_data_is_missing_not_stopped():
    layout = StackLayout.from_sources([STACK], {("kiln1", c.id): i for i, c in enumerate(STACK.channels)})
    empty = readings_to_minutes([], [], [], []).close(CN)
    e = hourly_emissions(hours_from_minutes(empty).close(CN), 5, layout, T0, 1, CN.reference)
    assert e.missing[0, 0] and e.operating[0, 0] and np.isnan(e.co2_kg[0, 0])


def test_metered_flow_ppm_and_wet_co2():
    stack = EmissionSource(
        id="boiler",
        name="Boiler",
        channels=[
            {"id": "co2", "quantity": "a05001", "unit": "ppm"},
            {"id": "h2o", "quantity": "a01014", "unit": "%"},
            {"id": "t", "quantity": "a01012", "unit": "degC"},
            {"id": "ps", "quantity": "a01013", "unit": "Pa"},
            {"id": "q", "quantity": "a00000", "unit": "m3/s"},
        ],
    )
    vals = {"co2": 90_000.0, "h2o": 10.0, "t": 0.0, "ps": 0.0, "q": 50.0}
    e = run([stack], [{("boiler", k): v for k, v in vals.items()}], co2_basis="wet")
    # CO2: 90000 ppm wet x 44.009/22.4 = 176821.875 mg/m3 wet; / (1 - 0.10) = 196468.75 dry (Eq. 20, 19)
    assert e.co2_mg_m3[0, 0] == pytest.approx(196_468.75, rel=1e-7)
    # Q: 50 m3/s x 3600 = 180000 m3/h at 0 °C, 101325 Pa; dry: x 0.9 = 162000 m3/h (Eq. 31)
    assert e.flow_m3_h[0, 0] == pytest.approx(162_000.0, rel=1e-7)
    # G = 196468.75 x 162000 x 1e-6 = 31827.9375 kg
    assert e.co2_kg[0, 0] == pytest.approx(31_827.9375, rel=1e-7)


def test_layout_errors_name_the_source():
    no_flow = EmissionSource(id="s1", name="x", channels=[{"id": "co2", "quantity": "a05001", "unit": "%"}])
    with pytest.raises(ValueError, match="source 's1' needs a flow channel"):
        StackLayout.from_sources([no_flow], {("s1", "co2"): 0})
    no_co2 = EmissionSource(id="s2", name="x", channels=[{"id": "q", "quantity": "a00000", "unit": "m3/h"}])
    with pytest.raises(ValueError, match="source 's2' has no CO2"):
        StackLayout.from_sources([no_co2], {("s2", "q"): 0})


def test_hours_are_dense_by_source_and_time():
    e = one_stack_hours(n_hours=2)
    assert e.co2_kg.shape == (1, 2) and e.start_ns == T0
    assert e.co2_kg[0, 0] == e.co2_kg[0, 1]
    assert T0 + e.n_hours * HOUR_NS == T0 + 2 * HOUR_NS
