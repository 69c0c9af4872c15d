"""The README's main command: ./cems demo on this checkout, end to end (no services needed; the session runs it once,
``demo_run`` in tests/conftest.py), and the same demo through Kafka and InfluxDB."""

from __future__ import annotations

import subprocess
from pathlib import Path

from streams.archive.store import Archive

REPO = Path(__file__).resolve().parents[2]
FALSIFIED = "320000/320500/demo-cement/-/2026-02/production_metered_vs_reported:clinker"


def test_the_demo_on_kafka_and_influxdb_gives_the_same_months_as_in_process(fast_tmp, kafka_bootstrap, influx, bucket,
                                                                          request):
    """`cems demo --config`: the plants through the broker, a stream worker, InfluxDB, cems reconcile and cems
    archive sync. The archived months equal the in-process run's (the session's ``demo_run``), figure for figure,
    alerts included. The in-process run is asked for only once this one is under way (the first test of the file:
    the two run side by side, rather than one after the other on the suite's longest path)."""
    import yaml

    tmp_path = fast_tmp  # the demo records about 24,000 batch files
    cfg = tmp_path / "central.yaml"
    cfg.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap}, "sites": [str(tmp_path)], "keys_dir": str(tmp_path),
        "influx": {"url": influx.url, "org": influx.org, "bucket": bucket, "token": influx.token}}))
    log = tmp_path / "demo.log"  # a file, not a pipe: nobody reads it while the in-process run goes on
    with log.open("w") as out:
        proc = subprocess.Popen([str(REPO / "cems"), "demo", "--no-serve", "--out", str(tmp_path / "services"),
                                 "--config", str(cfg)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        demo_run = request.getfixturevalue("demo_run")
        proc.wait(timeout=900)
    finally:
        proc.kill()  # never left behind (a no-op once it has ended)
    assert proc.returncode == 0, log.read_text()[-6000:]
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    months = {}
    for name, out in (("services", tmp_path / "services"), ("embedded", demo_run.out)):
        archive = Archive(out / "archive.sqlite")
        months[name] = {e.entity_id: e.figures for e in archive.latest(source_id="-")}
        assert {e.source_id for e in archive.latest()} == {"-", "demo-cement-stack", "demo-steel-stack",
                                                            "demo-aluminium-stack"}
        assert archive.verify() == []
    assert months["services"].keys() == {"demo-cement", "demo-steel", "demo-aluminium"}
    for entity, figures in months["embedded"].items():
        got = months["services"][entity]
        for k in ("co2_t", "measured_hours", "substituted_hours", "operating_hours", "valid_days", "calculated_co2_t"):
            assert got[k] == figures[k], (entity, k)
        assert [a["id"] for a in got["alerts"]] == [a["id"] for a in figures["alerts"]]


def test_demo_finds_the_falsified_clinker_figure_and_reports_it(demo_run):
    out = demo_run
    assert out.returncode == 0, out.stderr
    assert "[4/4]" in out.stdout and "archive chain intact" in out.stdout
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("demo-")}
    # 82,200 t reported against 73,426.7 t metered: +11.95 % (the metered month reaches the month's last minute)
    assert "critical production_metered_vs_reported +11.9%" in lines["demo-cement"]
    assert lines["demo-steel"].endswith("none") and lines["demo-aluminium"].endswith("none")  # honest reports
    report = (out.out / "report.html").read_text()
    assert FALSIFIED in report and report.count("<svg") >= 5  # alerts, bars, one hourly plot per plant
    archive = Archive(out.out / "archive.sqlite")
    (cement,) = archive.latest(entity_id="demo-cement", source_id="-")  # the entity total
    assert [a["id"] for a in cement.figures["alerts"]] == [FALSIFIED]
    assert archive.verify() == []


def test_recorded_batches_through_the_embedded_pipeline_give_the_simulated_month(fast_tmp):
    """`cems embedded`: an edge outbox's worth of batch files (the demo cement kiln's month) in, the same month
    out as the demo's, and the falsified clinker caught."""
    import yaml

    from edge_agent.simulator.demo import DEMO_PLANTS, batches, write_outbox
    from streams.core.monthly import month_range

    tmp_path = fast_tmp  # 8,067 batch files
    plant = DEMO_PLANTS[0]
    entity = plant.entity()
    start, end = month_range("2026-02", entity.tz)
    # the gateway ran on for a quarter of an hour past the month's end, so the data close the month
    outbox = tmp_path / "outbox"
    write_outbox(outbox, batches(plant, start, (end - start) // 10**9, run_on_s=900))
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(entity.model_dump(mode="json")))
    run = subprocess.run(
        [str(REPO / "cems"), "embedded", "--site", str(tmp_path / "site.yaml"), "--batches", str(outbox),
         "--reports", str(REPO / "deploy/demo/reports/demo-cement-2026-02.csv"),
         "--meter", "demo-cement-stack/fuel_total=fuel:raw_coal", "--meter", "demo-cement-stack/product_total=product",
         "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    # 672 h x 720 readings x 10 channels + 900 s / 5 s x 10 = 4,838,400 + 1,800
    assert "demo-cement: 4,840,200 readings, 672 hourly records; 1 alert(s)" in run.stdout
    assert "demo-cement-stack 2026-02 closed: 60,152.6 t CO2 = 60,152.6 t measured (672 h) + 0.0 t substituted (0 h)" \
        in run.stdout
    (total,) = Archive(tmp_path / "out" / "archive.sqlite").latest(source_id="-")
    assert [a["id"] for a in total.figures["alerts"]] == [FALSIFIED]


def test_a_recording_that_ends_with_the_month_leaves_it_open_and_unarchived(fast_tmp):
    """Months close by the data's clock: an outbox that stops at the month's last reading has not passed the end plus
    the allowed lateness, so the month is open, with its last hour still to come, and is not archived as a month."""
    import yaml

    from edge_agent.simulator.demo import DEMO_PLANTS, batches, write_outbox
    from streams.core.monthly import month_range

    tmp_path = fast_tmp
    plant = DEMO_PLANTS[2]
    entity = plant.entity()
    start, _end = month_range("2026-02", entity.tz)
    outbox = tmp_path / "outbox"
    write_outbox(outbox, batches(plant, start, 3 * 86_400))  # the first three days only
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(entity.model_dump(mode="json")))
    run = subprocess.run([str(REPO / "cems"), "embedded", "--site", str(tmp_path / "site.yaml"), "--batches",
                          str(outbox), "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    assert "demo-aluminium-stack 2026-02 open, 71 of 672 h so far" in run.stdout
    assert Archive(tmp_path / "out" / "archive.sqlite").latest() == []
