"""The README's main command: ./cems demo on this checkout, end to end (no services needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from streams.archive import Archive

REPO = Path(__file__).resolve().parents[2]
FALSIFIED = "320000/320500/demo-cement/-/2026-02/production_metered_vs_reported:clinker"


def test_demo_finds_the_falsified_clinker_figure_and_reports_it(tmp_path):
    out = subprocess.run([str(REPO / "cems"), "demo", "--out", str(tmp_path)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "[4/4]" in out.stdout and "archive chain intact" in out.stdout
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("demo-")}
    assert "critical production_metered_vs_reported +12.0%" in lines["demo-cement"]
    assert lines["demo-steel"].endswith("none") and lines["demo-aluminium"].endswith("none")  # honest reports
    report = (tmp_path / "report.html").read_text()
    assert FALSIFIED in report and report.count("<svg") >= 5  # alerts, bars, one hourly plot per plant
    archive = Archive(tmp_path / "archive.sqlite")
    (cement,) = archive.latest(entity_id="demo-cement")
    assert [a["id"] for a in cement.figures["alerts"]] == [FALSIFIED]
    assert archive.verify() == []
