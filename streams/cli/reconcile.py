"""``cems accounting``, ``cems reconcile`` and ``cems alerts``: reported data in, alerts out, reviewers' view.

All take the central config file (the worker's: broker, topics, sites, InfluxDB, ``reconcile`` section) and/or
``CEMS_STREAM__*`` environment variables."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from schemas.alerts import ACK_STATES, SEVERITIES
from streams.cli.checks import Month, Seconds, check_listen
from streams.cli.stream import _load

MAX_WAIT_S = 31 * 86_400.0  # the longest pause between runs (a month): time.sleep refuses an infinite one
CONFIG_PATH = click.Path(dir_okay=False, path_type=Path)
CONFIG = click.argument("config", type=CONFIG_PATH, required=False)


@click.group()
def accounting() -> None:
    """Self-reported monthly accounting data: validate and publish (files, or an HTTP endpoint)."""


@accounting.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-c", "--config", type=click.Path(dir_okay=False, path_type=Path), help="Central config (else env).")
@click.option("--check", is_flag=True, help="Validate only; publish nothing.")
def accounting_import(files: tuple[Path, ...], config: Path | None, check: bool) -> None:
    """Validate CSV/JSON reports, all files or nothing, then publish them to the accounting topic."""
    from ingest.accounting import AccountingImportError, Problem, load_reports
    from schemas.accounting import AccountingReport
    from streams.runtime.reconciler import publish_reports

    reports: list[AccountingReport] = []
    problems: list[Problem] = []
    for path in files:
        try:
            reports += load_reports(path)
        except AccountingImportError as exc:
            problems += exc.problems
    if problems:
        click.echo(f"{len(problems)} problem(s), nothing imported:", err=True)
        for p in problems:
            click.echo(f"  {p}", err=True)
        sys.exit(1)
    if check:
        click.echo(f"{len(reports)} report(s) valid")
        return
    for key in publish_reports(_load(config, given_as="-c/--config"), reports):
        click.echo(f"published {key}")


@accounting.command("serve")
@CONFIG
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8480, show_default=True)
def accounting_serve(config: Path | None, host: str, port: int) -> None:
    """Serve POST /v1/accounting (bearer token from reconcile.intake_token, if set)."""
    from aiohttp import web

    from ingest.accounting_http import make_app
    from schemas.errors import ConfigError
    from streams.config import load_sites
    from streams.runtime.reconciler import publish_reports

    check_listen(host, port, "the accounting intake")
    cfg = _load(config)
    token = cfg.reconcile.intake_token.get_secret_value() if cfg.reconcile.intake_token else None
    try:  # a report of an entity in no site file is refused (422)
        entities = {e.id for e in load_sites(cfg.sites)}
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        web.run_app(make_app(lambda reports: publish_reports(cfg, reports), token=token, entities=entities),
                    host=host, port=port,
                    print=lambda *_: click.echo(f"accounting intake on http://{host}:{port}/v1/accounting"))
    except OSError as exc:  # the port taken since it was checked
        raise click.ClickException(f"cannot serve the accounting intake on {host}:{port}: {exc.strerror}") from None


@click.command("reconcile")
@CONFIG
@click.option("--month", type=Month(), help="Only this local month.")
@click.option("--every", type=Seconds(1.0, MAX_WAIT_S),
              help="Run again every this many seconds (until interrupted).")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="With --every: Prometheus metrics here (over metrics_port).")
@click.option("--recompute", is_flag=True, help="Audit: evaluate from the minutes in InfluxDB instead of the stream's "
              "hour partials, and raise stream_recompute_mismatch where the two differ (needs influx, pyarrow).")
def reconcile(config: Path | None, month: str | None, every: float | None, metrics_port: int | None,
              recompute: bool) -> None:
    """Reconcile measured against reported data and publish the alerts that changed."""
    from streams.runtime.metrics import serve
    from streams.runtime.reconciler import Reconciler

    cfg = _load(config, reach_kafka=False)
    if recompute and cfg.influx is None:
        raise click.UsageError("--recompute reads the minutes from InfluxDB: the settings have no influx section")
    if recompute:
        from schemas._optional import require

        require("pyarrow", extra="parquet", purpose="the InfluxDB recompute")
    cfg = _load(config)  # now that the command line holds together: the broker must answer
    rec = Reconciler(cfg)
    if every is not None:  # a single run ends before anyone scrapes it
        serve(rec.metrics.registry, cfg.metrics_port if metrics_port is None else metrics_port, cfg.metrics_address,
              announce=lambda text: click.echo(text, err=True))
    while True:
        for a in rec.run(month, recompute=recompute):
            click.echo(f"{a.severity:<8} {a.reason:<8} {a.id}")
        if every is None:
            return
        time.sleep(every)


@click.group()
def alerts() -> None:
    """Discrepancy and data-quality alerts: list, follow, acknowledge."""


def _filters(f):
    for opt in reversed([
        click.option("--province", help="Only this province (GB/T 2260 code or name, as in the site files)."),
        click.option("--municipality", help="Only this municipality."),
        click.option("--entity", help="Only this entity."),
        click.option("--rule", help="Only this rule (e.g. measured_vs_calculated, flatline)."),
        click.option("--period", help="Only periods starting with this (2026, 2026-02)."),
        click.option("--min-severity", type=click.Choice(SEVERITIES[1:]), help="At least this severity."),
        click.option("--status", type=click.Choice(["open", "acknowledged", "resolved", "cleared", "all"]),
                     default="open", show_default=True),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per line."),
    ]):
        f = opt(f)
    return f


def _show(rows, as_json: bool) -> None:
    for row in rows:
        a = row.alert
        if as_json:
            click.echo(json.dumps({"status": row.status, **json.loads(a.to_json()),
                                   "ack": None if row.ack is None else json.loads(row.ack.to_json())}))
        else:
            dev = "" if a.deviation is None else f" {a.deviation:+.1%}"
            click.echo(f"{a.severity:<8} {row.status:<12} r{a.revision} {a.id}{dev}\n         {a.explanation}")


def _select(cfg, status, filters):
    from streams.core.alerts import matches, review
    from streams.runtime.reconciler import read_acks, read_alerts

    rows = review(read_alerts(cfg), read_acks(cfg))
    return [r for r in rows if (status == "all" or r.status == status) and matches(r.alert, **filters)]


@alerts.command("list")
@CONFIG
@_filters
def alerts_list(config, status, as_json, **filters) -> None:
    """Alerts as they stand (last version, with review status), most severe first."""
    rows = _select(_load(config), status, filters)
    _show(rows, as_json)
    if not as_json:
        click.echo(f"{len(rows)} alert(s)", err=True)


@alerts.command("follow")
@CONFIG
@_filters
@click.option("--interval", type=Seconds(0.1, MAX_WAIT_S), default=5.0, show_default=True,
              help="Seconds between looks.")
def alerts_follow(config, status, as_json, interval, **filters) -> None:
    """Print alerts as new versions or review changes arrive (Ctrl-C to stop)."""
    cfg = _load(config)
    seen: dict[str, tuple[int, str]] = {}
    while True:
        for row in _select(cfg, status, filters):
            state = (row.alert.revision, row.status)
            if seen.get(row.alert.id) != state:
                seen[row.alert.id] = state
                _show([row], as_json)
        time.sleep(interval)


@alerts.command("ack")
@click.argument("args", nargs=-1, metavar="[CONFIG] ALERT_ID")
@click.option("--by", required=True, help="Who (reviewer id).")
@click.option("--state", type=click.Choice(ACK_STATES), default="acknowledged", show_default=True)
@click.option("--note", default="")
def alerts_ack(args: tuple[str, ...], by: str, state: str, note: str) -> None:
    """Acknowledge, resolve or reopen an alert (holds until the alert is revised)."""
    from schemas.alerts import Ack
    from streams.runtime.kafka_io import send_all
    from streams.runtime.reconciler import read_alerts

    # CONFIG is optional before ALERT_ID, which click's arguments cannot say: one argument is the alert
    if not 1 <= len(args) <= 2:
        raise click.UsageError(f"expected [CONFIG] ALERT_ID, got {len(args)} argument(s)")
    config: Path | None = None
    if len(args) == 2:
        try:
            # path_type=Path: a Path, though click types it as any path-like
            config = CONFIG_PATH.convert(args[0], None, click.get_current_context())  # type: ignore[assignment]
        except click.BadParameter as exc:
            raise click.BadParameter(exc.message, param_hint="CONFIG") from None
    alert_id = args[-1]
    cfg = _load(config)
    current = {a.id: a for a in read_alerts(cfg)}
    if alert_id not in current:
        click.echo(f"no alert {alert_id!r}", err=True)
        sys.exit(1)
    ack = Ack(alert_id, state, by=by, at_ns=time.time_ns(), revision=current[alert_id].revision, note=note)
    send_all(cfg.kafka, cfg.topics.alert_acks, [(alert_id.encode(), ack.to_json(), [])])
    click.echo(f"{state} {alert_id} (revision {ack.revision})")
