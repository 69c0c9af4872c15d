"""`cems embedded` on the demo's month with a batch missing and bad files beside it (no services needed: the
session's ``demo_run`` records the month as an edge outbox)."""

from __future__ import annotations

import shutil

import yaml
from click.testing import CliRunner

from streams.archive.store import Archive
from streams.cli.embedded import embedded

from .test_demo import FALSIFIED, REPO


def test_a_missing_batch_in_the_demo_month_raises_no_false_alert(demo_run, fast_tmp):
    """The demo cement kiln's month without one 5-minute batch (seq 4000, of 8,067) and with a random file beside it.
    A totaliser's month is its last valid minute less its first: the hole lowers no total, so the only alert is the
    falsified clinker figure of the clean demo (82,200 t reported against 73,426.7 t metered: +11.9 %). Before, the
    minutes after the hole never closed: fuel +7.6 % and clinker +20.5 %, both critical."""
    from edge_agent.simulator.demo import DEMO_PLANTS

    assert demo_run.returncode == 0, demo_run.stderr
    plant = DEMO_PLANTS[0]
    outbox = fast_tmp / "outbox"
    shutil.copytree(demo_run.out / "outbox" / plant.agent_id, outbox)
    (outbox / f"{4000:020d}.batch").unlink()
    (outbox / "junk.batch").write_bytes(b"\x00" * 64)
    site_file = fast_tmp / "site.yaml"
    site_file.write_text(yaml.safe_dump(plant.entity().model_dump(mode="json")))
    meters = [a for name, what in plant.meter_map().items() for a in ("--meter", f"{name}={what}")]
    out = fast_tmp / "out"
    run = CliRunner().invoke(embedded, [
        "--site", str(site_file), "--batches", str(outbox), "--reports",
        str(REPO / "deploy/demo/reports/demo-cement-2026-02.csv"), *meters, "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert f"agent {plant.agent_id}: 1 sequence number(s) without a usable batch (seq 4000)" in run.output
    assert "dead-lettered 1 batch file(s)" in run.output and "junk.batch: undecodable: " in run.output
    assert "demo-cement: 4,839,600 readings, 672 hourly records; 1 alert(s)" in run.output  # 4,840,200 - 5 min x 10 ch
    (total,) = Archive(out / "archive.sqlite").latest(source_id="-")
    assert [a["id"] for a in total.figures["alerts"]] == [FALSIFIED]
