"""Hourly stack emissions (streams/kernels/emissions.py): readings through to kg CO2 per hour, per-stack flow
parameters from the site file, and operation judged from process evidence."""

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

CHANNELS = [
    {"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
    {"id": "h2o", "quantity": "a01014", "unit": "%"},
    {"id": "t", "quantity": "a01012", "unit": "degC"},
    {"id": "ps", "quantity": "a01013", "unit": "kPa"},
    {"id": "v", "quantity": "a01011", "unit": "m/s"},
]


def stack(**kw) -> EmissionSource:
    cfg = {"id": "kiln1", "name": "Kiln 1", "duct_area_m2": 5.0, "velocity_field_coefficient": 1.0,
           "ambient_pressure": {"kpa": 100.0}, "channels": CHANNELS} | kw
    return EmissionSource.model_validate(cfg)


STACK = stack()
# CO2 10 % dry, moisture 10.3 %, 96.4 °C, static -0.431 kPa, velocity 14.65 m/s
VALUES = {"co2": 10.0, "h2o": 10.3, "t": 96.4, "ps": -0.431, "v": 14.65}


def run(sources, hour_values, flags_of=None, n_hours=1):
    """Readings at 1 Hz; hour_values[h][(source, channel)] is the constant value of that hour. Readings flagged
    D or B carry no value (NaN); readings flagged F keep theirs, as a datalogger records them."""
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
    cols[2] = np.where((cols[3] == Flag.D) | (cols[3] == Flag.B), np.nan, cols[2])
    hours = hours_from_minutes(readings_to_minutes(*cols).close(CN)).close(CN)
    layout = StackLayout.from_sources(sources, series_of)
    return hourly_emissions(hours, len(series_of), layout, T0, n_hours, CN.reference)


def one_stack_hours(n_hours=1, flags_of=None, source=STACK, values=VALUES):
    return run([source], [{(source.id, k): v for k, v in values.items()}] * n_hours, flags_of, n_hours)


# Actual wet flow of the base case: 3600 x 5.0 m2 x 14.65 m/s = 263700 m3/h (Eq. 29-30, Kv = 1).
# Standard dry (Eq. 31): x 273/(273 + 96.4) x (100000 - 431)/101325 x (1 - 0.103)
#   = 263700 x 0.7390363 x 0.9826696 x 0.897 = 171781.3 m3/h
Q_BASE = 263_700 * 273 / 369.4 * 99_569 / 101_325 * 0.897
C_BASE = 196_468.75  # 10 % x 1e4 x 44.009/22.4 mg/m3 (Eq. 20), already dry


def test_hourly_mass_by_hand():
    e = one_stack_hours()
    assert e.co2_mg_m3[0, 0] == pytest.approx(C_BASE, rel=1e-7)
    assert e.flow_m3_h[0, 0] == pytest.approx(171_781.3, rel=1e-6)
    # G = 196468.75 x 171781.3 x 1e-6 = 33749.66 kg in the hour (Eq. 33)
    assert e.co2_kg[0, 0] == pytest.approx(33_749.66, rel=1e-6)
    assert e.measured[0, 0] and e.operating[0, 0] and not e.missing[0, 0]
    assert not e.analyser_off[0, 0] and not e.co2_ambient[0, 0]


def test_velocity_field_coefficient_scales_flow_and_mass():
    e = one_stack_hours(source=stack(velocity_field_coefficient=0.98))
    # Vs = 0.98 x 14.65 (Eq. 29): flow and mass x 0.98: 171781.3 x 0.98 = 168345.7 m3/h; 33749.66 x 0.98 = 33074.67 kg
    assert e.flow_m3_h[0, 0] == pytest.approx(168_345.7, rel=1e-6)
    assert e.co2_kg[0, 0] == pytest.approx(33_074.67, rel=1e-6)


def test_altitude_gives_the_barometric_pressure():
    e = one_stack_hours(source=stack(ambient_pressure={"altitude_m": 2000.0}))
    # Ba = 101325 x (1 - 0.0065 x 2000 / 288.15) ** 5.25588 = 101325 x 0.9548846 ** 5.25588 = 79495.2 Pa
    # Qsnh = 263700 x 273/369.4 x (79495.2 - 431)/101325 x 0.897 = 263700 x 0.7390363 x 0.7803030 x 0.897 = 136405.4
    assert e.flow_m3_h[0, 0] == pytest.approx(263_700 * 273 / 369.4 * (79_495.20 - 431) / 101_325 * 0.897, rel=1e-6)
    assert e.flow_m3_h[0, 0] == pytest.approx(136_405.4, rel=1e-6)


def test_ambient_pressure_channel_is_used_when_configured():
    src = stack(ambient_pressure={"channel": "ba"},
                channels=[*CHANNELS, {"id": "ba", "quantity": "a01006", "unit": "kPa"}])
    e = one_stack_hours(source=src, values=VALUES | {"ba": 100.0})
    assert e.flow_m3_h[0, 0] == pytest.approx(Q_BASE, rel=1e-7)  # 100 kPa measured = the base case's constant


def test_standard_dry_flow_is_not_converted_again():
    src = EmissionSource.model_validate({"id": "b", "name": "boiler", "channels": [
        {"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
        {"id": "q", "quantity": "a00000", "unit": "m3/s", "basis": "standard_dry"}],
        "operating": [{"channel": "q", "above": 5.0}]})
    e = one_stack_hours(source=src, values={"co2": 10.0, "q": 50.0})
    # 50 m3/s x 3600 = 180000 m3/h, already standard dry: no Eq. 31; G = 196468.75 x 180000 x 1e-6 = 35364.375 kg
    assert e.flow_m3_h[0, 0] == pytest.approx(180_000.0, rel=1e-12)
    assert e.co2_kg[0, 0] == pytest.approx(35_364.375, rel=1e-9)


def test_standard_wet_flow_only_loses_its_moisture():
    src = EmissionSource.model_validate({"id": "b", "name": "boiler", "moisture_pct": 12.0, "channels": [
        {"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
        {"id": "q", "quantity": "a00000", "unit": "m3/h", "basis": "standard_wet"}],
        "operating": [{"channel": "q", "above": 1000.0}]})
    e = one_stack_hours(source=src, values={"co2": 10.0, "q": 200_000.0})
    # 200000 m3/h standard wet x (1 - 0.12) = 176000 m3/h standard dry; G = 196468.75 x 176000 x 1e-6 = 34578.5 kg
    assert e.flow_m3_h[0, 0] == pytest.approx(176_000.0, rel=1e-12)
    assert e.co2_kg[0, 0] == pytest.approx(34_578.5, rel=1e-9)


def test_kelvin_temperature_is_the_absolute_temperature():
    src = stack(channels=[c | {"unit": "K"} if c["id"] == "t" else c for c in CHANNELS])
    e = one_stack_hours(source=src, values=VALUES | {"t": 369.55})
    # T = 369.55 K as measured (not 273 + (369.55 - 273.15) = 369.4): Qsnh = 263700 x 273/369.55 x 0.9826696 x 0.897
    assert e.flow_m3_h[0, 0] == pytest.approx(263_700 * 273 / 369.55 * 99_569 / 101_325 * 0.897, rel=1e-7)


def test_constant_moisture_and_static_pressure_where_no_channel():
    src = stack(moisture_pct=10.3, static_pressure_kpa=-0.431,
                channels=[c for c in CHANNELS if c["id"] not in ("h2o", "ps")])
    e = one_stack_hours(source=src, values={k: v for k, v in VALUES.items() if k not in ("h2o", "ps")})
    assert e.flow_m3_h[0, 0] == pytest.approx(Q_BASE, rel=1e-7)
    assert e.co2_kg[0, 0] == pytest.approx(33_749.66, rel=1e-6)


def test_metered_flow_ppm_and_wet_co2():
    src = EmissionSource.model_validate({"id": "boiler", "name": "Boiler", "ambient_pressure": {"kpa": 101.325},
                                         "channels": [
        {"id": "co2", "quantity": "a05001", "unit": "ppm", "basis": "wet"},
        {"id": "h2o", "quantity": "a01014", "unit": "%"},
        {"id": "t", "quantity": "a01012", "unit": "degC"},
        {"id": "ps", "quantity": "a01013", "unit": "Pa"},
        {"id": "q", "quantity": "a00000", "unit": "m3/s", "basis": "actual_wet"}],
        "operating": [{"channel": "q", "above": 5.0}]})
    e = one_stack_hours(source=src, values={"co2": 90_000.0, "h2o": 10.0, "t": 0.0, "ps": 0.0, "q": 50.0})
    # CO2: 90000 ppm wet x 44.009/22.4 = 176821.875 mg/m3 wet; / (1 - 0.10) = 196468.75 dry (Eq. 20, 19)
    assert e.co2_mg_m3[0, 0] == pytest.approx(196_468.75, rel=1e-7)
    # Q: 50 m3/s x 3600 = 180000 m3/h at 0 °C, 101325 Pa; dry: x 0.9 = 162000 m3/h (Eq. 31)
    assert e.flow_m3_h[0, 0] == pytest.approx(162_000.0, rel=1e-7)
    # G = 196468.75 x 162000 x 1e-6 = 31827.9375 kg
    assert e.co2_kg[0, 0] == pytest.approx(31_827.9375, rel=1e-7)


def test_an_invalid_input_gives_a_missing_hour_and_each_part_keeps_its_own_validity():
    flags = {(1, "kiln1", "t"): Flag.D, (2, "kiln1", "co2"): Flag.D}  # hour 1: temperature fault; 2: CO2 fault
    e = one_stack_hours(n_hours=3, flags_of=flags)
    assert e.measured[0].tolist() == [True, False, False]
    assert e.missing[0].tolist() == [False, True, True]
    assert e.operating[0].tolist() == [True, True, True]
    assert np.isnan(e.co2_kg[0, 1:]).all()
    # hour 1: the concentration needs no temperature (% by volume, dry); the actual wet flow does
    assert e.co2_mg_m3[0, 1] == pytest.approx(C_BASE) and np.isnan(e.flow_m3_h[0, 1])
    # hour 2: the flow is valid, the concentration is not
    assert np.isnan(e.co2_mg_m3[0, 2]) and e.flow_m3_h[0, 2] == pytest.approx(171_781.3, rel=1e-6)


def test_analyser_stopped_while_the_flow_runs_is_missing_not_stopped():
    """HJ 212-2017 Table 8: F is the instrument stopped. 2 h of F on the CO2 analyser with normal flow."""
    e = one_stack_hours(n_hours=3, flags_of={(h, "kiln1", "co2"): Flag.F for h in (1, 2)})
    assert e.operating[0].tolist() == [True, True, True]
    assert e.missing[0].tolist() == [False, True, True]
    assert e.analyser_off[0].tolist() == [False, True, True]
    assert np.isnan(e.co2_kg[0, 1:]).all()  # to be substituted, never 0 kg


def test_a_real_stop_is_stopped_by_the_flow_even_when_every_channel_is_flagged_f():
    stopped = VALUES | {"v": 0.2, "co2": 0.05}  # fans off: the velocity probe reads 0.2 m/s, recorded under F
    e = run([STACK], [{("kiln1", k): v for k, v in VALUES.items()}, {("kiln1", k): v for k, v in stopped.items()}],
            {(1, "kiln1", ch): Flag.F for ch in VALUES}, n_hours=2)
    assert e.operating[0].tolist() == [True, False]
    assert e.co2_kg[0, 1] == 0.0 and not e.missing[0, 1] and not e.analyser_off[0, 1]


def test_f_flagged_flow_that_still_runs_is_evidence_of_operation():
    # every channel F but the velocity is recorded at 14.65 m/s: the instruments say stopped, the process runs
    e = one_stack_hours(flags_of={(0, "kiln1", ch): Flag.F for ch in VALUES})
    assert e.operating[0, 0] and e.missing[0, 0] and e.analyser_off[0, 0]


def test_an_hour_without_any_data_is_missing_not_stopped():
    layout = StackLayout.from_sources([STACK], {("kiln1", c.id): i for i, c in enumerate(STACK.channels)})
    empty = readings_to_minutes([], [], [], []).close(CN)
    e = hourly_emissions(hours_from_minutes(empty).close(CN), 5, layout, T0, 1, CN.reference)
    assert e.missing[0, 0] and e.operating[0, 0] and np.isnan(e.co2_kg[0, 0])
    assert not e.analyser_off[0, 0]  # no evidence that the source ran: no data-quality flag either


def test_velocity_below_the_default_threshold_is_stopped_and_above_it_runs():
    # default evidence: velocity above 1 m/s (schemas.site.DEFAULT_OPERATING_VELOCITY_M_S)
    e = run([STACK], [{("kiln1", k): v for k, v in (VALUES | {"v": x}).items()} for x in (0.99, 1.01)], n_hours=2)
    assert e.operating[0].tolist() == [False, True]


def test_operating_rules_from_temperature_or_run_status():
    src = stack(operating=[{"channel": "run", "above": 0.5}, {"channel": "t", "above": 60.0}],
                channels=[*CHANNELS, {"id": "run", "quantity": "xs0002", "unit": "1"}])
    hours = [{("kiln1", k): v for k, v in (VALUES | extra).items()}
             for extra in ({"run": 1.0}, {"run": 0.0, "t": 40.0}, {"run": 0.0, "t": 90.0})]
    e = run([src], hours, n_hours=3)
    assert e.operating[0].tolist() == [True, False, True]  # any rule that says running wins


def test_ambient_air_co2_while_running_is_flagged():
    e = one_stack_hours(values=VALUES | {"co2": 0.04})
    assert e.measured[0, 0] and e.co2_ambient[0, 0]


def test_process_sources_have_no_co2_hours():
    meter = EmissionSource.model_validate({"id": "coal", "name": "coal feed", "kind": "process", "channels": [
        {"id": "rate", "quantity": "xf0001", "unit": "t/h"}]})
    e = run([STACK, meter], [{("kiln1", k): v for k, v in VALUES.items()} | {("coal", "rate"): 14.0}])
    assert e.measured[:, 0].tolist() == [True, False] and not e.operating[1, 0] and e.co2_kg[1, 0] == 0.0


def test_hours_are_dense_by_source_and_time():
    e = one_stack_hours(n_hours=2)
    assert e.co2_kg.shape == (1, 2) and e.start_ns == T0
    assert e.co2_kg[0, 0] == e.co2_kg[0, 1]
    assert T0 + e.n_hours * HOUR_NS == T0 + 2 * HOUR_NS
