"""QA records of a simulated stack (:mod:`schemas.qa`), consistent with its readings (:mod:`.generate`).

* :func:`daily_span_checks`: the analyser's daily span check (by default at the end of the demo's 10-minute
  calibration window, 19:10 after the start of each day of the series, :func:`.demo.daily_calibrations`),
  reading the span gas through the same gain as the flue gas: a ``drift`` fault of the model on that channel
  (relative, growing linearly) makes the check read ``span x (1 + drift so far)``. A drift large enough to fail
  a check is still small in the data: that is how QA catches an analyser before reconciliation can. ``fail``
  scripts a failure (an absolute error) on given days.
* :func:`comparison_test`: a comparison test (RATA) of the CO2 analyser with a known relative bias: the reference
  method reads the true dry CO2 of each run, the CEMS that times ``1 + bias``.

Both are deterministic (no noise: the span gas is certified, the reference method is the truth).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

import numpy as np

from schemas.qa import ComparisonRun, ComparisonTest, DriftCheck, QaQuantity

from .generate import CHANNELS, StackModel, simulate_stack

__all__ = ["comparison_test", "daily_span_checks", "drift_gain"]

DAY_S = 86_400


def drift_gain(model: StackModel, channel: str, t_s: np.ndarray) -> np.ndarray:
    """Relative gain 1 + drift of ``channel`` at seconds ``t_s`` from the series start, as :func:`simulate_stack`
    applies its ``drift`` faults (linear to ``amount`` at the fault's end; none outside the fault)."""
    gain = np.ones(np.shape(t_s))
    for f in model.faults:
        if f.kind == "drift" and f.channel == channel:
            inside = (t_s >= f.start_s) & (t_s < f.start_s + f.duration_s)
            gain = np.where(inside, gain * (1.0 + f.amount * (t_s - f.start_s + 1) / max(f.duration_s, 1)), gain)
    return gain


def _time(start_ns: int, s: float) -> datetime:
    return datetime.fromtimestamp(start_ns / 1e9 + s, UTC)


def daily_span_checks(model: StackModel, site_id: str, source_id: str, start_ns: int, days: int, *,
                      channel: str = "co2", span: float = 15.0, full_scale: float = 25.0, at_s: int = 19 * 3600 + 600,
                      fail: Mapping[int, float] | None = None) -> list[DriftCheck]:
    """One span check a day for ``days`` days from ``start_ns``, ``at_s`` seconds into each day of the series (default
    19:10, the end of the demo's calibration window). ``fail``: day index -> an absolute error added to that day's
    reading (a scripted failure).

    Units: ``span`` and ``full_scale`` in the channel's unit (% CO2 for the simulated analyser)."""
    code, unit = CHANNELS[channel]
    quantity = cast(QaQuantity, code)  # checked by DriftCheck's validation
    t = np.arange(days) * DAY_S + at_s
    measured = span * drift_gain(model, channel, t)
    for day, error in (fail or {}).items():
        measured[day] += error
    return [DriftCheck(site_id=site_id, source_id=source_id, channel_id=channel, quantity=quantity, unit=unit,
                       time=_time(start_ns, float(s)), check="span", reference_value=span,
                       measured_value=round(float(m), 6), full_scale=full_scale)
            for s, m in zip(t.tolist(), measured.tolist(), strict=True)]


def comparison_test(model: StackModel, site_id: str, source_id: str, test_id: str, start_ns: int, *,
                    bias: float, runs: int = 9, run_s: int = 1800, seed: int = 0) -> ComparisonTest:
    """A comparison test of the CO2 analyser: ``runs`` consecutive runs of ``run_s`` seconds from ``start_ns``; the
    reference is the mean true dry CO2 of the run [%], the CEMS value that times ``1 + bias``, so the test's mean
    difference is -bias x the mean reference (d = reference - CEMS)."""
    truth = StackModel(**{**model.__dict__, "faults": ()})
    readings, _ = simulate_stack(truth, start_ns, runs * run_s, seed=seed)
    co2 = readings["co2"][0].reshape(runs, run_s).mean(axis=1)  # the noise averages out over a run
    return ComparisonTest(
        site_id=site_id, source_id=source_id, channel_id="co2", quantity="a05001", unit="%", test_id=test_id,
        runs=[ComparisonRun(run=k + 1, start=_time(start_ns, k * run_s), end=_time(start_ns, (k + 1) * run_s - 1),
                            reference_value=round(float(r), 4), cems_value=round(float(r * (1 + bias)), 4))
              for k, r in enumerate(co2.tolist())])
