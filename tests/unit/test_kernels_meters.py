"""Edge meters' month totals (streams/kernels/meters.py): hand-computed totals of totalisers and rate meters, the
unit factors against the accounting units, and a property test over any gaps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.accounting import UNITS
from schemas.quantities import QUANTITIES, REPORT_UNITS
from streams.kernels.aggregate import HOUR_NS, MINUTE_NS
from streams.kernels.indicators import Grid
from streams.kernels.meters import TOTALISERS, MeterTotal, meter_totals, metered_totals


def test_totalisers_are_the_counting_quantities():
    # every meter quantity whose name says it counts, and only those (schemas/quantities.py)
    assert {code for code, q in QUANTITIES.items() if "totaliser" in q.name} == TOTALISERS


def test_report_units_agree_with_the_accounting_units():
    # a meter's unit converts to the canonical unit the report counts in: kg -> t x 1/1000, m3 -> 10^4 Nm3 x 1/10000,
    # as schemas.accounting.UNITS converts them (quantity and energy kinds; the meters' m3 are the report's Nm3,
    # standard volumes); rates per hour map to their integral
    accounting = {**UNITS["quantity"], **UNITS["energy"], "m3": ("10^4Nm3", 1, 10_000)}
    for unit, (canonical, factor) in REPORT_UNITS.items():
        integral = {"t/h": "t", "kg/h": "kg", "m3/h": "m3", "MW": "MWh"}.get(unit, unit)
        want, num, den = accounting[integral]
        assert (canonical, factor) == (want, pytest.approx(num / den)), unit
    # every unit a meter quantity allows has a factor
    meters = {u for code, q in QUANTITIES.items() if code[:2] in ("xf", "xp", "xe") for u in q.units}
    assert meters <= set(REPORT_UNITS)


def test_a_totaliser_and_a_rate_hand_computed():
    # 6 minutes. Totaliser [kg]: 100, NaN, 130, 160, NaN, NaN -> last - first = 160 - 100 = 60 kg = 0.06 t; it spans
    # minutes 0..3, 3 of the 5 minute steps: share 0.6; data in 3 of 6 minutes: coverage 0.5.
    # Rate [t/h]: 6, 6, NaN, 12, 12, NaN -> 36 t/h-minutes x 1/60 h = 0.6 t counted; coverage 4/6; month at the
    # counted rate 0.6 / (4/6) = 0.9 t.
    x = np.array([[100.0, np.nan, 130.0, 160.0, np.nan, np.nan], [6.0, 6.0, np.nan, 12.0, 12.0, np.nan]])
    rows = meter_totals(x, [True, False], [1e-3, 1.0], MINUTE_NS)
    assert rows.counted_total == pytest.approx([0.06, 0.6])
    assert rows.month == pytest.approx([0.06, 0.9])
    assert rows.coverage == pytest.approx([0.5, 4 / 6])
    assert rows.counted_share == pytest.approx([0.6, 4 / 6])


def test_an_hour_grid_integrates_by_hours_and_an_empty_row_is_nan():
    # hour periods: 10 t/h for 3 hours = 30 t; a row without data is NaN everywhere (no figure, not zero)
    rows = meter_totals([[10.0, 10.0, 10.0], [np.nan] * 3], [False, False], [1.0, 1.0], HOUR_NS)
    assert rows.counted_total[0] == 30.0 and rows.month[0] == 30.0
    assert all(np.isnan(getattr(rows, f)[1]) for f in rows._fields)
    assert np.isnan(meter_totals(np.zeros((2, 0)), [True, False], [1.0, 1.0], MINUTE_NS).coverage).all()


def test_meters_of_one_quantity_are_summed_and_the_lowest_coverage_kept():
    # two coal feeders, 60 minutes: 6 t/h everywhere = 6 t; 12 t/h for the first 30 minutes only = 6 t counted,
    # 12 t at the counted rate over the hour; sum counted 12 t, month 18 t, coverage min(1, 0.5) = 0.5
    a = np.full(60, 6.0)
    b = np.where(np.arange(60) < 30, 12.0, np.nan)
    grid = Grid(np.stack([a, b]))
    channels = {("k", "f1"): ("xf0001", "t/h"), ("k", "f2"): ("xf0001", "t/h")}
    got = metered_totals(grid, [("k", "f1"), ("k", "f2")], channels,
                         {"k/f1": "fuel:raw_coal", "k/f2": "fuel:raw_coal", "k/absent": "fuel:coke"})
    assert got == {"fuel:raw_coal": MeterTotal(pytest.approx(12.0), pytest.approx(18.0), 0.5, 0.5)}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), rate=st.floats(0.01, 1000), start=st.floats(0, 1e6),
       holes=st.lists(st.tuples(st.integers(0, 299), st.integers(1, 100)), max_size=5))
def test_any_holes(n, rate, start, holes):
    # property: a counter rising at `rate` per minute reads rate x (last - first) whatever the holes; a constant
    # rate integrates to rate x minutes-with-data / 60, and scaled to the month to rate x n / 60
    total = start + rate * np.arange(n)
    flow = np.full(n, rate)
    for a, length in holes:
        total[a:a + length] = np.nan
        flow[a:a + length] = np.nan
    ok = np.flatnonzero(np.isfinite(total))
    rows = meter_totals(np.stack([total, flow]), [True, False], [1.0, 1.0], MINUTE_NS)
    if not ok.size:
        assert np.isnan(rows.coverage).all()
        return
    assert rows.counted_total[0] == pytest.approx(rate * (ok[-1] - ok[0]), rel=1e-9, abs=1e-6)
    assert rows.counted_total[1] == pytest.approx(rate * ok.size / 60, rel=1e-9)
    assert rows.month[1] == pytest.approx(rate * n / 60, rel=1e-9)
    assert rows.coverage[0] == rows.coverage[1] == pytest.approx(ok.size / n)
    assert 0 <= rows.counted_share[0] <= 1
