"""QA through the pipeline: simulated daily span checks and comparison tests (edge_agent/simulator/qa.py), and
``cems embedded --qa`` end to end on a recorded plant. Expected figures worked by hand in the comments."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from click.testing import CliRunner

from edge_agent.simulator.demo import DEMO_PLANTS
from edge_agent.simulator.generate import Fault, StackModel, simulate_stack
from edge_agent.simulator.qa import comparison_test, daily_span_checks, drift_gain
from schemas.site import Entity
from streams.core.processor import Registry
from streams.core.qa import QaState
from streams.core.reconcile import CEMS_TIER_UNCERTAINTY, ReconcilePolicy
from streams.kernels.qa import evaluate_comparison, get_policy, paired_statistics

FEB = 1_769_875_200 * 10**9  # 2026-02-01T00:00 Asia/Shanghai = 2026-01-31T16:00Z
DAY_S = 86_400


def test_the_simulated_span_check_reads_through_the_same_gain_as_the_data():
    # A drift of +1 % over 2 days: at second t of the fault the readings are (true + noise) x (1 + 0.01 (t + 1) / N).
    model = StackModel(faults=(Fault("drift", 0, 2 * DAY_S, "co2", 0.01),))
    drifting, _ = simulate_stack(model, FEB, 2 * DAY_S, seed=3)
    clean, _ = simulate_stack(replace(model, faults=()), FEB, 2 * DAY_S, seed=3)
    t = np.arange(2 * DAY_S)
    np.testing.assert_allclose(drifting["co2"][0] / clean["co2"][0], drift_gain(model, "co2", t), rtol=1e-12)
    # the span check of day 1, 19:10 after the series start (t = 86,400 + 69,000 = 155,400 s):
    # 15 x (1 + 0.01 x 155,401 / 172,800)
    (_, day1) = daily_span_checks(model, "p", "s", FEB, 2)
    assert day1.measured_value == pytest.approx(15 * (1 + 0.01 * 155_401 / 172_800), abs=1e-6)


def test_a_drifting_analyser_is_caught_by_qa_before_reconciliation_could_see_it():
    # The CO2 analyser drifts linearly to +6 % over 28 days. Span gas 15 % CO2, full scale 25 %: HJ 75 fails a span
    # error above 2.5 % x 25 = 0.625 % CO2, i.e. a gain above 1 + 0.625 / 15 = 1.041667. The check of day k reads at
    # x = k + 69,000/86,400 = k + 0.799 days: the gain is 1 + 0.06 x / 28, above 1.041667 once x > 19.44 days.
    # Day 18: x = 18.80, e = 15 x 0.06 x 18.80 / 28 = 0.604 <= 0.625 passes; day 19: x = 19.80, e = 0.636 fails.
    days = 28
    model = StackModel(faults=(Fault("drift", 0, days * DAY_S, "co2", 0.06),))
    plant = DEMO_PLANTS[0]
    entity = Entity.model_validate({**plant.entity().model_dump(mode="json"), "timezone": "Asia/Shanghai"})
    checks = daily_span_checks(model, entity.id, plant.source_id, FEB, days)
    qa = QaState(checks, Registry([entity]))
    failed = [i for i, e in enumerate(qa.events) if not e.passed]
    assert failed[0] == 19 and all(e.passed for e in qa.events[:19])
    # When QA catches it the data read high by 6 % x 19.80 / 28 = 4.24 %; over the whole month the CO2 mass is high
    # by the mean gain - 1 = 0.06 x (N + 1) / (2 N) = 3.0 % (N = 28 x 86,400 s). Reconciliation's tolerance is the CEMS
    # tier's uncertainty combined with the calculation's, so never below 5 % (tier 3): the month's deviation stays
    # inside it, and even the worst hour before the catch does.
    at_catch = drift_gain(model, "co2", np.array([19 * DAY_S + 69_000]))[0] - 1
    month = drift_gain(model, "co2", np.arange(days * DAY_S)).mean() - 1
    assert at_catch == pytest.approx(0.06 * (19 * DAY_S + 69_001) / (days * DAY_S))  # 4.24 %
    assert month == pytest.approx(0.06 * (days * DAY_S + 1) / (2 * days * DAY_S))  # 3.0 %
    floor = CEMS_TIER_UNCERTAINTY[ReconcilePolicy().cems_tier]
    assert at_catch < floor and month < floor
    # ... and from the failure on, every hour to the month's end is out of control and substituted (no later pass)
    reason = qa.channel_reasons(FEB, days * 24)[Registry([entity]).series_of[(plant.source_id, "co2")]]
    first = int(np.flatnonzero(reason)[0])
    assert first == 19 * 24 + 19  # the check of day 19 is at 19:10 after the series start: hour 19 x 24 + 19
    assert reason[first:].all()


def test_a_simulated_comparison_test_shows_its_known_bias():
    # The CEMS reads 5 % low: cems_i = 0.95 reference_i, so d_i = 0.05 reference_i, d-bar = 0.05 RM-bar and
    # RE = (CEM-bar - RM-bar) / RM-bar = -5 % (to the 4 decimals the runs are rounded to).
    test = comparison_test(DEMO_PLANTS[0].model, "p", "s", "R1", FEB, bias=-0.05, runs=9)
    ref = [r.reference_value for r in test.runs]
    cems = [r.cems_value for r in test.runs]
    stats = paired_statistics([ref], [cems])
    result = evaluate_comparison(get_policy("cn-hj75"), "a05001", stats, unit="%")
    assert result.relative_error[0] == pytest.approx(-5.0, abs=0.01)
    assert stats.mean_difference[0] == pytest.approx(0.05 * np.mean(ref), rel=1e-3)
    assert 20.0 < np.mean(ref) < 35.0  # a cement kiln's dry CO2, % (calcination and coal: about 31 %)


def test_cems_embedded_with_qa_marks_the_out_of_control_day(tmp_path):
    # The demo cement kiln for 3 local days from 2026-02-01 00:00; span checks daily at 19:10 local, after the demo's
    # calibration window. Day 2's reads 16.0 on the 15.0 gas: e = 1.0 % CO2 = 4 % of 25 % full scale > 2.5 %: failed.
    # Day 3's passes. Out of control: the hour of the failure (Feb 2 19:00, hour 24 + 19 = 43 of the recording) to
    # the hour of the pass (Feb 3 19:00, hour 67, in control again): 24 hours, hours 43..66.
    from streams.cli import main as cli
    from streams.cli.demo import record_plants

    plant = DEMO_PLANTS[0]
    entities, _, _ = record_plants((plant,), "2026-02", tmp_path / "outbox", days=3)
    site = tmp_path / "site.yaml"
    site.write_text(__import__("yaml").safe_dump(entities[0].model_dump(mode="json", exclude_none=True)))
    checks = daily_span_checks(plant.model, plant.entity_id, plant.source_id, FEB, 3, fail={1: 1.0})
    qa_csv = tmp_path / "span.csv"
    with qa_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["site_id", "source_id", "channel_id", "quantity", "unit", "time", "check", "reference_value",
                    "measured_value", "full_scale"])
        for c in checks:
            w.writerow([c.site_id, c.source_id, c.channel_id, c.quantity, c.unit, c.time.isoformat(), c.check,
                        c.reference_value, c.measured_value, c.full_scale])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["embedded", "--site", str(site), "--batches", str(tmp_path / "outbox"),
                                      "--qa", str(qa_csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 QA record(s)" in result.output and "24 h out of control" in result.output
    with (out / "hourly.csv").open() as f:
        rows = list(csv.DictReader(f))
    ooc = [i for i, r in enumerate(rows) if r["status"] == "out_of_control"]
    assert ooc == list(range(43, 67))
    assert all(rows[i]["co2_kg"] == "" and rows[i]["flow_m3_h"] != "" for i in ooc)  # the flow stays valid

    # a QA file with a bad row: the import's file:line error, no traceback, nothing run
    bad = tmp_path / "bad.csv"
    bad.write_text(qa_csv.read_text().replace(",span,", ",spam,", 1))
    result = CliRunner().invoke(cli, ["embedded", "--site", str(site), "--batches", str(tmp_path / "outbox"),
                                      "--qa", str(bad), "--out", str(out)])
    assert result.exit_code != 0 and "bad.csv:2: check" in result.output and "Traceback" not in result.output
    # a QA record of a site that is in none of the site files: named, nothing run
    stray = tmp_path / "stray.json"
    stray.write_text(checks[0].model_copy(update={"site_id": "elsewhere"}).model_dump_json())
    result = CliRunner().invoke(cli, ["embedded", "--site", str(site), "--batches", str(tmp_path / "outbox"),
                                      "--qa", str(stray), "--out", str(out)])
    assert result.exit_code != 0 and "QA records of site(s) ['elsewhere']" in result.output
    assert "Traceback" not in result.output


def test_cems_qa_import_check_judges_the_records_against_the_sites(tmp_path):
    import json

    import yaml

    from streams.cli import main as cli
    from tests.unit.test_qa_gate import daily, registry, span

    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(registry().entities["plant"].model_dump(mode="json", exclude_none=True)))
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "127.0.0.1:1"}, "sites": [str(site)],
                                      "keys_dir": str(tmp_path)}))
    good = tmp_path / "checks.json"
    good.write_text(json.dumps([json.loads(c.model_dump_json()) for c in daily(days=range(1, 4))]))
    result = CliRunner().invoke(cli, ["qa", "import", "-c", str(config), "--check", str(good)])
    assert result.exit_code == 0, result.output
    assert "3 QA record(s) valid" in result.output
    stray = tmp_path / "stray.json"
    stray.write_text(span(datetime(2026, 2, 1, tzinfo=UTC), 20.3, channel="nox").model_dump_json())
    result = CliRunner().invoke(cli, ["qa", "import", "-c", str(config), "--check", str(stray)])
    assert result.exit_code == 1 and "nothing imported: QA record plant/k1/nox: channel 'nox'" in result.output
    # publishing needs the broker: one line within seconds, no traceback; no settings at all: a usage error naming
    # the option and the variables (the central commands' shared loader)
    result = CliRunner().invoke(cli, ["qa", "import", "-c", str(config), str(good)])
    assert result.exit_code == 1 and "Kafka at 127.0.0.1:1 is not reachable" in result.output, result.output
    result = CliRunner(env={"CEMS_STREAM__KAFKA__BOOTSTRAP_SERVERS": None}).invoke(cli, ["qa", "import", str(good)])
    assert result.exit_code == 2 and "no central settings: give a config file as -c/--config" in result.output
