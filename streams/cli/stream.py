"""``cems stream``: the central worker and its topics. Heavy imports (faust, kafka) stay inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from schemas.errors import ConfigError
from streams.cli.checks import LOG_LEVELS, kafka_reachable, missing_settings


def _load(path: Path | None, given_as: str = "CONFIG", *, reach_kafka: bool = True):
    """The central settings of ``path`` and/or the environment, with the broker they name answering. Without a
    file, a required setting the environment lacks is a usage error naming the file option (``given_as``) and
    the variable; a broker that does not answer is an error within seconds (``reach_kafka``: for every caller that
    talks to Kafka; a check of files against the settings does not)."""
    from streams.config import WorkerConfig, load_worker_config

    if path is None and (missing := missing_settings(WorkerConfig)):
        raise click.UsageError(f"no central settings: give a config file as {given_as} (like "
                               f"deploy/examples/worker.yaml), or set {', '.join(missing)}",
                               click.get_current_context(silent=True))
    try:
        cfg = load_worker_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if reach_kafka:
        kafka_reachable(cfg.kafka.bootstrap_servers, f"kafka.bootstrap_servers{f' in {path}' if path else ''} or "
                                                     f"{_env('KAFKA__BOOTSTRAP_SERVERS')}")
    return cfg


def _check_datadir(datadir: Path, config: Path | None) -> None:
    """faust makes the worker's data directory, but not its parents: say so before the worker starts, not in a
    traceback after."""
    where = f"datadir{f' in {config}' if config else ''} or {_env('DATADIR')}"
    if datadir.exists() and not datadir.is_dir():
        raise click.ClickException(f"datadir {datadir} is not a directory; check {where}")
    if not datadir.parent.is_dir():
        raise click.ClickException(f"datadir {datadir}: its folder {datadir.parent} does not exist (create it, or "
                                   f"check {where})")


def _env(name: str) -> str:
    from streams.config import ENV_PREFIX

    return f"{ENV_PREFIX}{name}"


@click.group()
def stream() -> None:
    """Stream workers: verify, deduplicate and aggregate reading batches into hourly records."""


@stream.command("topics")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--partitions", type=click.IntRange(1, 2**31 - 1), default=12, show_default=True,
              help="Partitions of readings, hourly and state topics.")
@click.option("--replication", type=click.IntRange(1, 2**15 - 1), default=1, show_default=True,  # Kafka's int16
              help="Replicas of every topic (production: 3).")
@click.option("--min-insync-replicas", type=click.IntRange(min=1),
              help="Replicas an acks=all write must reach [default: a majority from 3 replicas up (3 -> 2), else 1].")
@click.option("--readings-retention-days", type=click.FloatRange(0, 36_525), default=14.0, show_default=True,
              help="Counted from each batch's creation time; 0: no time limit (for replaying history).")
def topics(config: Path, partitions: int, replication: int, min_insync_replicas: int | None,
           readings_retention_days: float) -> None:
    """Create the worker's topics (readings, dead letters, compacted hourly records and worker state)."""
    from streams.runtime.topics import create_topics, default_min_insync, topic_specs

    cfg = _load(config)
    retention = readings_retention_days or None
    isr = default_min_insync(replication) if min_insync_replicas is None else min_insync_replicas
    if isr > replication:
        raise click.BadParameter(f"{isr} is more than --replication {replication}", param_hint="--min-insync-replicas")
    created = create_topics(cfg, partitions, replication, retention, isr)
    for name, (n, configs) in topic_specs(cfg, partitions, retention, isr).items():
        state = "created" if name in created else "exists"
        click.echo(f"{name:<28} {state:<8} {n:>3} partition(s) {configs}")


@stream.command("worker")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Prometheus metrics here (over metrics_port).")
def worker(config: Path | None, log_level: str, log_format: str, metrics_port: int | None) -> None:
    """Run a worker until SIGTERM/SIGINT. Workers with the same app_id share the readings partitions.

    Settings come from CONFIG and/or CEMS_STREAM__* environment variables, which override the file
    (CEMS_STREAM__KAFKA__SASL_PASSWORD, CEMS_STREAM__INFLUX__TOKEN, ...: secrets need not be in the file)."""
    import asyncio
    import signal

    from schemas.logs import configure_logging
    from streams.runtime.metrics import serve
    from streams.runtime.worker import StreamWorker

    configure_logging(log_level, log_format)
    cfg = _load(config)
    _check_datadir(cfg.datadir, config)

    async def main() -> None:
        # the faust app is built inside the running loop: built outside, its agents bind to another loop and
        # never receive a message (faust-streaming binds an app to the loop it was created in)
        sink = None
        if cfg.influx is not None:
            from streams.sinks.influx import InfluxSink

            sink = InfluxSink(cfg.influx.url, cfg.influx.token.get_secret_value(), cfg.influx.org, cfg.influx.bucket,
                              max_retries=0)  # the worker owns the retries (streams.runtime.worker.RETRY)
        w = StreamWorker(cfg, sink=sink)
        serve(w.metrics.registry, cfg.metrics_port if metrics_port is None else metrics_port, cfg.metrics_address,
              announce=lambda text: click.echo(text, err=True))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await w.app.start()
        try:
            await stop.wait()
        finally:
            await w.checkpoint()  # a clean handover: the next owner replays nothing
            await w.app.stop()
            if sink is not None:
                sink.close()

    asyncio.run(main())
