"""``cems embedded``: recorded reading batches (an edge outbox) through the whole pipeline in this process."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["embedded", "month_line"]


def month_line(m) -> str:
    """A month as a user should read it: open or closed, the total, and how much of it was measured."""
    hours = "" if m.status == "closed" else f", {m.hours} of {m.hours_in_month} h so far"
    return (f"{m.source_id} {m.month} {m.status}{hours}: {m.co2_t:,.1f} t CO2 = {m.measured_co2_t:,.1f} t measured "
            f"({m.measured_hours} h) + {m.substituted_co2_t:,.1f} t substituted ({m.substituted_hours} h)"
            + (f", {m.missing_hours} h missing" if m.missing_hours else "")
            + (f", {m.out_of_control_hours} h out of control" if m.out_of_control_hours else ""))



def _qa_records(paths) -> list:
    """QA records of every file, all or nothing (``ingest.qa``); their problems as a clean error, file:line first."""
    if not paths:
        return []
    from ingest.qa import QaImportError, load_records

    try:
        return load_records(*paths)
    except QaImportError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("embedded")
@click.option("--site", "sites", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Site files (or directories of *.yaml) of the sources in the batches.")
@click.option("--batches", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Recorded reading batches: files, or directories of *.batch (an edge outbox).")
@click.option("--reports", type=click.Path(exists=True, path_type=Path), multiple=True, help="Self-reported files.")
@click.option("--meter", "meters", multiple=True, metavar="SOURCE/CHANNEL=WHAT",
              help="An edge meter and what it measures, e.g. kiln1-fuel/coal_total=fuel:raw_coal (repeatable).")
@click.option("--qa", "qa_files", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="QA record files (CSV/JSON, docs/qa.md): failed or overdue checks put hours out of control.")
@click.option("--qa-recompute", is_flag=True,
              help="Let a QA result (Kv, bias factor) apply before its test was completed: an explicit recomputation, "
                   "archived as a new version (reason qa_recompute) of the months it changes.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("cems-output"), show_default=True)
def embedded(sites, batches, reports, meters, qa_files, qa_recompute, out: Path) -> None:
    """Recorded data through the whole pipeline in this process (no Kafka, no InfluxDB): records, reconciliation
    against the reports, the archive (OUT/archive.sqlite) and an HTML report (OUT/report.html)."""
    from streams.archive.store import Archive
    from streams.config import load_sites
    from streams.report.html import render
    from streams.runtime.embedded import archive_plants, batch_files, reconcile_plants, run_recorded, write_records

    files = batch_files(list(batches))
    entities = load_sites(list(sites))
    qa = _qa_records(qa_files)
    click.echo(f"processing {len(files):,} recorded batch(es) of {len(entities)} entit(y/ies)"
               + (f", {len(qa)} QA record(s)" if qa_files else ""))
    try:
        results = run_recorded(entities, files, dict(m.split("=", 1) for m in meters), qa_records=qa,
                               qa_recompute=qa_recompute)
    except ValueError as exc:
        if not qa_files or "QA record" not in str(exc):
            raise
        raise click.ClickException(str(exc)) from None
    reconcile_plants(results, list(reports))
    out.mkdir(parents=True, exist_ok=True)
    archive = Archive(out / "archive.sqlite")
    archive_plants(results, archive)
    (out / "report.html").write_text(render(results, "CEMS monthly reconciliation", archive.head()), encoding="utf-8")
    for r in results:
        click.echo(f"{r.entity.id}: {r.readings:,} readings, {len(r.hourly)} hourly records; {len(r.alerts)} alert(s)")
        for m in sorted(r.monthly, key=lambda m: (m.month, m.source_id)):
            click.echo(f"  {month_line(m)}")
    hourly, monthly = write_records(results, out)
    click.echo(f"wrote {out / 'archive.sqlite'}, {out / 'report.html'}, {hourly} and {monthly}")
