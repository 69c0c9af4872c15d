"""``cems hj212``: the central HJ 212 receiver (``ingest/hj212_server.py``). Heavy imports stay inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from schemas.errors import ConfigError
from streams.cli.checks import LOG_LEVELS, kafka_reachable, listen_problem, missing_settings


def _load(path: Path | None):
    from ingest.hj212_server import Hj212ServerConfig
    from schemas.configfile import load_settings

    if path is None and (missing := missing_settings(Hj212ServerConfig)):
        raise click.UsageError(f"no receiver settings: give a config file as CONFIG (like "
                               f"deploy/examples/hj212-server.yaml), or set {', '.join(missing)}",
                               click.get_current_context(silent=True))
    try:  # the file, with CEMS_HJ212__* environment variables over it
        return load_settings(path, Hj212ServerConfig)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _check_serving(cfg, config: Path | None) -> None:
    """The broker answers and the receiver's (and metrics') address can be bound, before anything starts."""
    where = f" in {config}" if config else ""
    kafka_reachable(cfg.kafka.bootstrap_servers, f"kafka.bootstrap_servers{where} or "
                                                 f"CEMS_HJ212__KAFKA__BOOTSTRAP_SERVERS")
    for setting, host, port in (("listen/port", cfg.listen, cfg.port),
                                ("metrics_address/metrics_port", cfg.metrics_address, cfg.metrics_port)):
        if port and (problem := listen_problem(host, port)) is not None:
            raise click.ClickException(f"{problem}; check {setting}{where} or CEMS_HJ212__*")


def _prepare(cfg):
    """Sites, keys and passwords of the configured MNs; exits naming what is missing."""
    from ingest.hj212_server import read_secrets
    from streams.config import load_sites

    try:
        entities = load_sites(cfg.sites)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    mns = [s.hj212.mn for e in entities for s in e.sources if s.hj212 is not None]
    keys, passwords = read_secrets(cfg, mns)
    return entities, mns, keys, passwords


@click.group()
def hj212() -> None:
    """HJ 212 at the centre: receive dataloggers' frames as signed reading batches."""


@hj212.command("check")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
def check(config: Path | None) -> None:
    """Validate the receiver's settings; list the registered MNs and any missing key or password."""
    from ingest.hj212_server import agent_id_of

    cfg = _load(config)
    entities, mns, keys, passwords = _prepare(cfg)
    click.echo(f"OK: {len(mns)} MN(s) in {len(entities)} site file(s); listen {cfg.listen}:{cfg.port}; "
               f"Kafka {cfg.kafka.bootstrap_servers} topic {cfg.topic}")
    missing = 0
    for e in entities:
        for s in e.sources:
            if s.hj212 is None:
                continue
            mn = s.hj212.mn
            flags = [("key", agent_id_of(mn) in keys), ("password", mn in passwords)]
            bad = [n for n, ok in flags if not ok]
            missing += bool(bad)
            click.echo(f"  {mn:<24} -> {e.id}/{s.id} as agent {agent_id_of(mn)}, figures from "
                       f"{s.hj212.figures}{'  MISSING ' + ', '.join(bad) if bad else ''}")
    sys.exit(1 if missing else 0)


@hj212.command("serve")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def serve(config: Path | None, log_level: str, log_format: str) -> None:
    """Run the receiver until SIGTERM/SIGINT: frames in, signed batches to the readings topic, refusals to the
    dead-letter topic. Settings from CONFIG and/or CEMS_HJ212__* environment variables."""
    import asyncio
    import signal

    from ingest.hj212_server import Hj212Server, KafkaSink, loop_factory
    from schemas.logs import configure_logging  # the CLI's log format, shared with the other commands

    configure_logging(log_level, log_format)
    cfg = _load(config)
    entities, _, keys, passwords = _prepare(cfg)
    _check_serving(cfg, config)

    async def main() -> None:
        sink = KafkaSink(cfg.kafka, cfg.topic, cfg.dead_letter_topic)
        try:
            server = Hj212Server(cfg, entities, keys, passwords, sink)
        except ValueError as exc:
            click.echo(f"cannot start: {exc}", err=True)
            sys.exit(1)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:  # a port taken since it was checked
            if cfg.metrics_port:
                from prometheus_client import start_http_server

                start_http_server(cfg.metrics_port, addr=cfg.metrics_address, registry=server.registry)
            await server.start()
        except OSError as exc:
            click.echo(f"cannot start: {exc.strerror or exc}", err=True)
            sys.exit(1)
        try:
            await stop.wait()
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=loop_factory(cfg.event_loop)) as runner:  # uvloop where installed
        runner.run(main())
