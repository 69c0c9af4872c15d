"""``cems edge``: what a plant engineer runs on a gateway. Heavy imports stay inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from schemas.errors import ConfigError


def _load(path: Path):
    from .config import load_gateway_config

    try:
        return load_gateway_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@click.group()
def edge() -> None:
    """Edge agent: read CEMS analysers and meters, keep batches on disk, send them to Kafka."""


@edge.command("check")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def check(config: Path) -> None:
    """Validate a gateway file and show the read plan: what each poll cycle will ask each device."""
    from .config import point_source, status_point
    from .modbus.planner import plan_reads

    cfg = _load(config)
    click.echo(f"{config}: OK: agent {cfg.agent.id}, site {cfg.site.id} ({cfg.site.sector}), "
               f"{len(cfg.devices)} device(s), Kafka {cfg.kafka.bootstrap_servers} ({cfg.kafka.security_protocol})")
    for d in cfg.devices:
        sources = sorted({point_source(d, p) for p in d.points})
        head = f"  device {d.id}: {d.protocol} {d.endpoint} -> source {', '.join(sources)}, {len(d.points)} points"
        if d.protocol == "opcua":
            click.echo(f"{head}{' + status word' if d.status else ''}, {d.mode} every {d.poll_interval_s:g} s, "
                       f"security {d.security.policy} {d.security.mode}")
            for p in d.points:
                click.echo(f"    {p.channel:<14} {p.node_id}")
            continue
        points = list(d.points) + ([status_point(d)] if d.status else [])
        plan = plan_reads(points, max_gap_registers=d.max_gap_registers)
        click.echo(f"{head}{' + status word' if d.status else ''}, {len(plan)} request(s) every {d.poll_interval_s:g} s")
        for r in plan:
            click.echo(f"    unit {r.unit_id} {r.register.value:<8} address {r.address}..{r.address + r.count - 1}"
                       f" ({r.count} {'bits' if r.register.is_bits else 'registers'}): "
                       + ", ".join(points[i].channel for i in r.points))
    problems = []
    if not cfg.agent.key_file.is_file():
        problems.append(f"key file {cfg.agent.key_file} does not exist (create it: head -c 32 /dev/urandom > FILE)")
    if cfg.agent.outbox_dir.exists() and not cfg.agent.outbox_dir.is_dir():
        problems.append(f"outbox_dir {cfg.agent.outbox_dir} is not a directory")
    for p in problems:
        click.echo(f"  warning: {p}", err=True)


@edge.command("run")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per line with device/event fields (for journald, Loki...).")
@click.option("--metrics-port", type=int, default=9108, show_default=True, help="Prometheus metrics; 0 disables.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
def run(config: Path, log_level: str, log_format: str, metrics_port: int, metrics_address: str) -> None:
    """Run the agent until SIGTERM or SIGINT: poll, store batches on disk, send them to Kafka."""
    import asyncio
    import signal

    from .agent import EdgeAgent
    from .logs import configure_logging

    configure_logging(log_level, log_format)
    cfg = _load(config)
    try:
        key = cfg.agent.key_file.read_bytes()
    except OSError as exc:
        click.echo(f"cannot read key_file {cfg.agent.key_file}: {exc.strerror}", err=True)
        sys.exit(1)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        agent = EdgeAgent(cfg, key)
        if metrics_port:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=metrics_address, registry=agent.metrics.registry)
        await agent.run(stop)

    asyncio.run(main())


@edge.command("probe")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("device")
@click.argument("channel", required=False)
def probe(config: Path, device: str, channel: str | None) -> None:
    """Read points of DEVICE now (or only CHANNEL): raw registers, decoded value and flag.

    What an engineer commissioning a site needs first: is the address right, is the word order right.
    """
    import asyncio

    cfg = _load(config)
    dev = next((d for d in cfg.devices if d.id == device), None)
    if dev is None:
        click.echo(f"no device {device!r} in {config}; devices: {[d.id for d in cfg.devices]}", err=True)
        sys.exit(2)
    points = [p for p in dev.points if channel is None or p.channel == channel]
    if not points:
        click.echo(f"device {device!r} has no channel {channel!r}; channels: {[p.channel for p in dev.points]}",
                   err=True)
        sys.exit(2)
    sys.exit(asyncio.run(_probe_opcua(dev, points) if dev.protocol == "opcua" else _probe_modbus(dev, points)))


async def _probe_modbus(dev, points) -> int:
    from schemas.quantities import Flag

    from .config import status_point
    from .modbus.client import compile_plan, read_plan
    from .modbus.driver import modbus_driver
    from .modbus.planner import plan_reads

    def read_one(p):  # the agent's own read path, one point at a time
        return read_plan(client, compile_plan(plan_reads([p]), [p]), 1)

    driver = modbus_driver(dev, {})
    client = driver.client
    if not await driver.connect():
        click.echo(f"cannot connect to {dev.endpoint} (device {dev.id})", err=True)
        return 1
    try:
        click.echo(f"device {dev.id} at {dev.endpoint}")
        for p in points:
            result = await read_one(p)
            where = f"  {p.channel:<12} {p.register_type.value} {p.wire_address}"
            if 0 in result.exception_codes:
                click.echo(f"{where}: exception code {result.exception_codes[0]}")
            elif 0 not in result.raw:
                click.echo(f"{where}: no answer")
            else:
                raw = " ".join(f"0x{int(w):04X}" for w in result.raw[0][: p.words])
                click.echo(f"{where} {p.data_type.value} {p.byte_order.value}: raw [{raw}] -> "
                           f"{result.value[0]:.6g} (flag {Flag(result.flag[0]).name})")
        sp = status_point(dev)
        if sp is not None:
            result = await read_one(sp)
            if result.flag[0] == Flag.N:
                word = int(result.value[0])
                click.echo(f"  status word {sp.wire_address}: 0x{word:04X} -> readings flagged "
                           f"{Flag(dev.status.flag_of(word)).name}")
    finally:
        await driver.close()
    return 0
