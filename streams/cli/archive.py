"""``cems demo`` (the whole pipeline in one process, a report) and ``cems archive`` (serve, verify, export)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[2]
DEMO_REPORTS = REPO / "deploy" / "demo" / "reports"


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"), show_default=True,
              help="Where the archive (archive.sqlite) and the report (report.html) go.")
@click.option("--reports", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="Self-reported files (default: the samples in deploy/demo/reports, one value falsified).")
@click.option("--month", default="2026-02", show_default=True)
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Then open the review console on the demo's archive at 127.0.0.1, with demo accounts, until "
                   "interrupted.")
@click.option("--archive-api", is_flag=True, help="Serve the read-only archive API instead of the console.")
@click.option("--port", default=8481, show_default=True)
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="Run on the real services of this central config (broker, InfluxDB) instead of in process.")
def demo(out: Path, reports: tuple[Path, ...], month: str, serve: bool, archive_api: bool, port: int,
         config: Path | None) -> None:
    """Simulate a cement plant, a steel plant and an aluminium smelter for a month, run them through the
    pipeline (in this process, or with --config on Kafka and InfluxDB), reconcile them against self-reported
    files, archive the months and write an HTML report; then open the review console on them (--no-serve: not)."""
    from streams.archive.store import Archive
    from streams.core.figures import deviation
    from streams.runtime.embedded import archive_plants, reconcile_plants, run_on_services, run_plants
    from streams.report.html import render

    started = time.perf_counter()
    clock = _demo_clock(month)
    files = list(reports) or sorted(DEMO_REPORTS.glob("*.csv"))
    out.mkdir(parents=True, exist_ok=True)
    if config is not None:
        from streams.cli.stream import _load

        click.echo(f"[1/4] simulating three plants for {month}; through Kafka, a stream worker and InfluxDB")
        results = run_on_services(_load(config), out, month, files, progress=click.echo)
        archive = Archive(out / "archive.sqlite")
    else:
        click.echo(f"[1/4] simulating three plants for {month} at one reading per 5 s per channel and processing them")
        results = run_plants(month=month, progress=click.echo)
        click.echo(f"[2/4] reconciling against {len(files)} self-reported file(s)")
        reconcile_plants(results, files)
        click.echo(f"[3/4] archiving the months in {out / 'archive.sqlite'}")
        archive = Archive(out / "archive.sqlite")
        archive_plants(results, archive, at=clock())
    problems = archive.verify()
    click.echo(f"[4/4] writing {out / 'report.html'}")
    (out / "report.html").write_text(render(results, f"CEMS monthly reconciliation, {month}", archive.head()),
                                     encoding="utf-8")
    click.echo("")
    click.echo(f"{'plant':<16}{'CEMS CO2 t':>13}{'measured t':>12}{'substituted t':>15}{'calculated t':>14}"
               f"{'deviation':>11}{'complete':>10}  alerts")
    for r in results:
        m = next(m for m in r.monthly if m.month == month)
        calc = r.calculated.get("co2_t")
        click.echo(f"{r.entity.id:<16}{m.co2_t:>13,.0f}{m.measured_co2_t:>12,.0f}{m.substituted_co2_t:>15,.0f}"
                   f"{'' if calc is None else f'{calc:,.0f}':>14}"
                   f"{'' if (d := deviation(m.co2_t, calc)) is None else f'{d:+.1%}':>11}"
                   f"{'' if m.completeness is None else f'{m.completeness:.0%}':>10}  "
                   + ("; ".join(f"{a.severity} {a.rule} {'' if a.deviation is None else f'{a.deviation:+.1%}'}"
                                for a in r.alerts) or "none"))
    click.echo(f"\narchive chain {'intact' if not problems else 'BROKEN: ' + problems[0]}, head {archive.head()[:16]}; "
               f"done in {time.perf_counter() - started:.0f} s. Open {out / 'report.html'}")
    if serve and archive_api:
        _serve(archive, port)
    elif serve:
        _serve_console(out, port, clock)
    archive.close()


def _demo_clock(month: str):
    """The demo's clock: 12 days after the local month's end (Asia/Shanghai), running on at the real pace. The demo
    month is then freshly archived with its 40-day deadline ahead, whatever today's date (the real one may be long
    past it). Archive versions and console actions are stamped by it."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from streams.archive.store import _month

    y, m = _month(month)
    origin = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")) + timedelta(days=12)
    start = datetime.now(UTC)
    return lambda: origin + (datetime.now(UTC) - start)


def _serve_console(out: Path, port: int, clock) -> None:
    """The console on the demo's archive, with fresh demo accounts printed first."""
    try:
        from streams.cli.console import serve
        from streams.console.demo import demo_accounts
    except ImportError as exc:
        raise click.ClickException(f"the console needs the 'console' extra (pip install -e '.[console]'): {exc}")
    from streams.archive.store import Archive

    accounts = demo_accounts(out / "console.sqlite", Archive(out / "archive.sqlite").entities())
    click.echo(f"\nreview console: demo accounts (passwords are new each run; the console's clock starts at "
               f"{clock():%Y-%m-%d %H:%M} UTC, 12 days after the month's end, so the 40-day deadline is ahead)")
    click.echo(f"  {'user':<22}{'role':<12}{'scope':<22}password")
    for u, password in accounts:
        click.echo(f"  {u.username:<22}{u.role:<12}{u.scope:<22}{password}")
    serve(out / "archive.sqlite", out / "console.sqlite", "127.0.0.1", port, clock=clock, secure_cookies=True)


def _month_line(m) -> str:
    """A month as a user should read it: open or closed, the total, and how much of it was measured."""
    hours = "" if m.status == "closed" else f", {m.hours} of {m.hours_in_month} h so far"
    return (f"{m.source_id} {m.month} {m.status}{hours}: {m.co2_t:,.1f} t CO2 = {m.measured_co2_t:,.1f} t measured "
            f"({m.measured_hours} h) + {m.substituted_co2_t:,.1f} t substituted ({m.substituted_hours} h)"
            + (f", {m.missing_hours} h missing" if m.missing_hours else ""))


def _serve(archive, port: int) -> None:
    from aiohttp import web

    from streams.archive.api import make_app

    web.run_app(make_app(archive), host="127.0.0.1", port=port,
                print=lambda *_: click.echo(f"archive API on http://127.0.0.1:{port}/v1/months (OpenAPI: /openapi.json)"))


@click.group()
def archive() -> None:
    """The monthly archive: immutable versions in a hash chain, deadlines, exports."""


STORE = click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=Path("demo-output/archive.sqlite"),
                     show_default=True, help="The archive file.")


@archive.command("serve")
@STORE
@click.option("--port", default=8481, show_default=True)
def archive_serve(store: Path, port: int) -> None:
    """Serve the archive API on localhost."""
    from streams.archive.store import Archive

    _serve(Archive(store), port)


@archive.command("verify")
@STORE
@click.option("--head", help="A head hash published earlier: it must still be in the chain (nothing cut off the end).")
def archive_verify(store: Path, head: str | None) -> None:
    """Recompute the hash chain (monthly versions, evidence files, submissions, review and alert actions); exit 1
    if any link is broken."""
    from streams.archive.store import Archive

    problems = Archive(store).verify(head)
    for p in problems:
        click.echo(p, err=True)
    click.echo("intact" if not problems else f"{len(problems)} broken link(s)")
    sys.exit(1 if problems else 0)


@archive.command("sync")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@STORE
def archive_sync(config: Path | None, store: Path) -> None:
    """Archive the months of the real pipeline: closed monthly records, reports and alerts from Kafka (a new
    version only where something changed)."""
    from streams.archive.store import Archive
    from streams.cli.stream import _load
    from streams.runtime.archive_sync import sync_archive

    cfg = _load(config)
    written = sync_archive(cfg, Archive(store))
    click.echo(f"{len(written)} new version(s)")
    for e in written:
        click.echo(f"  {e.entity_id}/{e.source_id}/{e.month} v{e.version} ({e.reason})")


@click.command("embedded")
@click.option("--site", "sites", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Site files (or directories of *.yaml) of the sources in the batches.")
@click.option("--batches", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Recorded reading batches: files, or directories of *.batch (an edge outbox).")
@click.option("--reports", type=click.Path(exists=True, path_type=Path), multiple=True, help="Self-reported files.")
@click.option("--meter", "meters", multiple=True, metavar="SOURCE/CHANNEL=WHAT",
              help="An edge meter and what it measures, e.g. kiln1-fuel/coal_total=fuel:raw_coal (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("cems-output"), show_default=True)
def embedded(sites, batches, reports, meters, out: Path) -> None:
    """Recorded data through the whole pipeline in this process (no Kafka, no InfluxDB): records, reconciliation
    against the reports, the archive (OUT/archive.sqlite) and an HTML report (OUT/report.html)."""
    from streams.archive.store import Archive
    from streams.runtime.embedded import archive_plants, reconcile_plants, run_recorded, write_records
    from streams.report.html import render
    from streams.config import load_sites

    files = sorted(f for b in batches for f in ([b] if b.is_file() else b.glob("*.batch")))
    entities = load_sites(list(sites))
    click.echo(f"processing {len(files):,} recorded batch(es) of {len(entities)} entit(y/ies)")
    results = run_recorded(entities, files, dict(m.split("=", 1) for m in meters))
    reconcile_plants(results, list(reports))
    out.mkdir(parents=True, exist_ok=True)
    archive = Archive(out / "archive.sqlite")
    archive_plants(results, archive)
    (out / "report.html").write_text(render(results, "CEMS monthly reconciliation", archive.head()), encoding="utf-8")
    for r in results:
        click.echo(f"{r.entity.id}: {r.readings:,} readings, {len(r.hourly)} hourly records; {len(r.alerts)} alert(s)")
        for m in sorted(r.monthly, key=lambda m: (m.month, m.source_id)):
            click.echo(f"  {_month_line(m)}")
    hourly, monthly = write_records(results, out)
    click.echo(f"wrote {out / 'archive.sqlite'}, {out / 'report.html'}, {hourly} and {monthly}")
