"""``cems demo``: three simulated plants for a month, recorded as an edge outbox and run through the pipeline.

The only central module that imports the gateway's code (the plant simulator, ``edge_agent/simulator/demo.py``): it
writes each plant's month into ``OUT/outbox/<agent>`` as a gateway would, then feeds the recording to the same
recorded-batches path ``cems embedded`` uses (in this process), or with ``--config`` to the real services
(``streams/runtime/replay.py``: the broker, a stream worker, InfluxDB, the reconciler, the archive sync).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from edge_agent.simulator.demo import BATCH_S, DEMO_PLANTS, Plant, batches, write_outbox
from schemas.site import Entity
from streams.cli.checks import Month, check_listen

__all__ = ["demo", "record_plants", "run_demo_plants"]

REPO = Path(__file__).resolve().parents[2]
DEMO_REPORTS = REPO / "deploy" / "demo" / "reports"


def record_plants(plants: tuple[Plant, ...], month: str, outbox: Path, lateness_s: float = 600.0,
                  days: int | None = None) -> tuple[list[Entity], list[Path], dict[str, str]]:
    """Each plant's local month (or its first ``days``) as an edge outbox under ``outbox/<agent>``, running on past
    the month's end for the allowed lateness so that the month closes by the data's own clock: (entities, batch
    files, meters)."""
    from streams.core.monthly import month_range

    entities: list[Entity] = []
    files: list[Path] = []
    meters: dict[str, str] = {}
    for plant in plants:
        entity = plant.entity()
        start, end = month_range(month, entity.tz)
        if days is None:
            seconds, run_on = (end - start) // 10**9, -(-int(lateness_s) // BATCH_S) * BATCH_S + BATCH_S
        else:
            seconds, run_on = days * 86_400, 0
        files += write_outbox(outbox / plant.agent_id, batches(plant, start, seconds, run_on))
        entities.append(entity)
        meters |= plant.meter_map()
    return entities, files, meters


def run_demo_plants(plants: tuple[Plant, ...], month: str, outbox: Path, progress=print):
    """The plants' recording through the processor in this process (``cems embedded``'s path)."""
    from streams.runtime.embedded import run_recorded

    t0 = time.perf_counter()
    entities, files, meters = record_plants(plants, month, outbox)
    t1 = time.perf_counter()
    results = run_recorded(entities, files, meters)
    readings = sum(r.readings for r in results)
    progress(f"  {len(files):,} batches ({readings / 1e6:.1f} M readings) recorded in {t1 - t0:.1f} s under {outbox}, "
             f"processed in {time.perf_counter() - t1:.1f} s")
    return results


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"), show_default=True,
              help="Where the outbox, the archive (archive.sqlite) and the report (report.html) go.")
@click.option("--reports", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Self-reported files (default: the samples in deploy/demo/reports, one value falsified).")
@click.option("--month", type=Month(), default="2026-02", show_default=True, help="The local month to simulate.")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Then open the review console on the demo's archive at 127.0.0.1, with demo accounts, until "
                   "interrupted.")
@click.option("--archive-api", is_flag=True, help="Serve the read-only archive API instead of the console.")
@click.option("--port", type=click.IntRange(1, 65535), default=8481, show_default=True)
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="Run on the real services of this central config (broker, InfluxDB) instead of in process.")
def demo(out: Path, reports: tuple[Path, ...], month: str, serve: bool, archive_api: bool, port: int,
         config: Path | None) -> None:
    """Simulate a cement plant, a steel plant and an aluminium smelter for a month, record them as an edge outbox,
    run the recording through the pipeline (in this process, or with --config on Kafka and InfluxDB), reconcile it
    against self-reported files, archive the months and write an HTML report; then open the review console on them
    (--no-serve: not)."""
    from streams.archive.store import Archive
    from streams.report.html import render
    from streams.runtime.embedded import archive_plants, reconcile_plants

    started = time.perf_counter()
    clock = _demo_clock(month)
    files = list(reports) or sorted(DEMO_REPORTS.glob("*.csv"))
    if not files:  # an installed copy without the source tree: never reconcile silently against nothing
        raise click.BadParameter(f"the sample reports ({DEMO_REPORTS}) are not in this installation; give the "
                                 "self-reported files with --reports FILE", param_hint="--reports")
    _check_reports(files, month, in_process=config is None)
    if serve:
        check_listen("127.0.0.1", port, "the archive API" if archive_api else "the review console", "'--port'")
    cfg = None
    if config is not None:
        from streams.cli.stream import _load

        cfg = _load(config)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {str(out)!r}: {exc.strerror or exc}", param_hint="--out") from None
    if cfg is not None:
        from streams.runtime.replay import replay_on_services

        click.echo(f"[1/4] simulating three plants for {month} into {out / 'outbox'}; through Kafka, a stream "
                   f"worker and InfluxDB")
        entities, batch_files, meters = record_plants(DEMO_PLANTS, month, out / "outbox",
                                                      cfg.processing.allowed_lateness_s)
        results = replay_on_services(cfg, entities, batch_files, meters, files, out, progress=click.echo)
        archive = Archive(out / "archive.sqlite")
    else:
        click.echo(f"[1/4] simulating three plants for {month} at one reading per 5 s per channel, recorded as an "
                   f"edge outbox, and processing them")
        results = run_demo_plants(DEMO_PLANTS, month, out / "outbox", progress=click.echo)
        click.echo(f"[2/4] reconciling against {len(files)} self-reported file(s)")
        reconcile_plants(results, files)
        click.echo(f"[3/4] archiving the months in {out / 'archive.sqlite'}")
        archive = Archive(out / "archive.sqlite")
        archive_plants(results, archive, at=clock())
    problems = archive.verify()
    click.echo(f"[4/4] writing {out / 'report.html'}")
    (out / "report.html").write_text(render(results, f"CEMS monthly reconciliation, {month}", archive.head()),
                                     encoding="utf-8")
    _summary(results, month)
    click.echo(f"\narchive chain {'intact' if not problems else 'BROKEN: ' + problems[0]}, head {archive.head()[:16]}; "
               f"done in {time.perf_counter() - started:.0f} s. Open {out / 'report.html'}")
    if serve and archive_api:
        from streams.cli.archive import serve_api

        try:
            serve_api(archive, port)
        except OSError as exc:  # the port taken since it was checked
            raise click.ClickException(f"cannot serve the archive API on 127.0.0.1:{port}: {exc.strerror}") from None
    elif serve:
        _serve_console(out, port, clock)
    archive.close()


def _check_reports(files: list[Path], month: str, in_process: bool) -> None:
    """Every self-reported file valid (all or nothing, as ``cems accounting import``) before the simulation starts,
    as a usage error listing each problem with file, line and field; a report that is for no demo plant in
    ``month`` (in process: or for one source of it) is said to be unused, rather than left out without a word."""
    from ingest.accounting import AccountingImportError, load_reports

    problems, unused = [], []
    plants = {p.entity_id for p in DEMO_PLANTS}
    for path in files:
        try:
            reports = load_reports(path)
        except AccountingImportError as exc:
            problems += [str(p) for p in exc.problems]
            continue
        unused += [f"{path}: the report of {r.entity_id}{f'/{r.source_id}' if r.source_id else ''} for {r.month}"
                   for r in reports
                   if r.entity_id not in plants or r.month != month or (in_process and r.source_id is not None)]
    if problems:
        raise click.BadParameter(f"{len(problems)} problem(s), nothing simulated:\n  " + "\n  ".join(problems),
                                 param_hint="--reports")
    for u in unused:
        click.echo(f"note: {u}: not used (the demo simulates {', '.join(sorted(plants))} in {month})", err=True)


def _summary(results, month: str) -> None:
    from streams.core.figures import deviation

    click.echo("")
    click.echo(f"{'plant':<16}{'CEMS CO2 t':>13}{'measured t':>12}{'substituted t':>15}{'calculated t':>14}"
               f"{'deviation':>11}{'complete':>10}  alerts")
    for r in results:
        m = next(m for m in r.monthly if m.month == month)
        calc = r.calculated.get("co2_t")
        d = deviation(m.co2_t, calc)
        click.echo(f"{r.entity.id:<16}{m.co2_t:>13,.0f}{m.measured_co2_t:>12,.0f}{m.substituted_co2_t:>15,.0f}"
                   f"{'' if calc is None else f'{calc:,.0f}':>14}{'' if d is None else f'{d:+.1%}':>11}"
                   f"{'' if m.completeness is None else f'{m.completeness:.0%}':>10}  "
                   + ("; ".join(f"{a.severity} {a.rule} {'' if a.deviation is None else f'{a.deviation:+.1%}'}"
                                for a in r.alerts) or "none"))


def _demo_clock(month: str):
    """The demo's clock: 12 days after the local month's end (Asia/Shanghai), running on at the real pace. The demo
    month is then freshly archived with its 40-day deadline ahead, whatever today's date (the real one may be long
    past it). Archive versions and console actions are stamped by it."""
    y, m = (int(x) for x in month.split("-"))
    origin = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")) + timedelta(days=12)
    start = datetime.now(UTC)
    return lambda: origin + (datetime.now(UTC) - start)


def _serve_console(out: Path, port: int, clock) -> None:
    """The console on the demo's archive, with fresh demo accounts printed first."""
    try:
        from streams.cli.console import serve
        from streams.console.demo import demo_accounts
    except ImportError as exc:
        hint = "the console needs the 'console' extra (pip install -e '.[console]')"
        raise click.ClickException(f"{hint}: {exc}") from exc
    from streams.archive.store import Archive

    accounts = demo_accounts(out / "console.sqlite", Archive(out / "archive.sqlite").entities())
    click.echo(f"\nreview console: demo accounts (passwords are new each run; the console's clock starts at "
               f"{clock():%Y-%m-%d %H:%M} UTC, 12 days after the month's end, so the 40-day deadline is ahead)")
    click.echo(f"  {'user':<22}{'role':<12}{'scope':<22}password")
    for u, password in accounts:
        click.echo(f"  {u.username:<22}{u.role:<12}{u.scope:<22}{password}")
    serve(out / "archive.sqlite", out / "console.sqlite", "127.0.0.1", port, clock=clock, secure_cookies=True)
