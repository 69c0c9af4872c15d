"""``cems edge``: what a plant engineer runs on a gateway. Heavy imports stay inside the commands."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from schemas._optional import MissingExtra, require
from schemas.errors import ConfigError

from .fields import check_host

if TYPE_CHECKING:
    import asyncio

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _load(path: Path):
    from .config import load_gateway_config

    try:
        return load_gateway_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _finite(ctx, param, value: float) -> float:
    if value != value:  # click's FloatRange lets NaN through (no comparison fails)
        raise click.BadParameter("nan is not a number of seconds", ctx, param)
    return value


def _host_option(ctx, param, value: str) -> str:
    try:
        return check_host(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


class _EdgeGroup(click.Group):
    """Commands import their protocol libraries when they run: a missing one is one line naming the extra to
    install (``schemas._optional.require``), not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MissingExtra as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_EdgeGroup)
def edge() -> None:
    """Edge agent: read CEMS analysers and meters, keep batches on disk, send them to Kafka."""


@edge.command("check")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def check(config: Path) -> None:
    """Validate a gateway file and show the read plan: what each poll cycle will ask each device."""
    from .config import fed_source, status_point
    from .modbus.planner import plan_reads

    cfg = _load(config)
    click.echo(f"{config}: OK: agent {cfg.agent.id}, site {cfg.site.id} ({cfg.site.sector}), "
               f"{len(cfg.devices)} device(s), Kafka {cfg.kafka.bootstrap_servers} ({cfg.kafka.security_protocol})")
    for d in cfg.devices:
        if d.protocol == "hj212":  # issue 16
            _check_hj212(cfg, d)
            continue
        sources = sorted({fed_source(d, p) for p in d.points})
        head = f"  device {d.id}: {d.protocol} {d.endpoint} -> source {', '.join(sources)}, {len(d.points)} points"
        if d.protocol == "opcua":
            click.echo(f"{head}{' + status word' if d.status else ''}, {d.mode} every {d.poll_interval_s:g} s, "
                       f"security {d.security.policy} {d.security.mode}")
            for p in d.points:
                click.echo(f"    {p.channel:<14} {p.node_id}")
            continue
        points = list(d.points) + ([status_point(d)] if d.status else [])
        plan = plan_reads(points, max_gap_registers=d.max_gap_registers)
        click.echo(f"{head}{' + status word' if d.status else ''}, {len(plan)} request(s) every "
                   f"{d.poll_interval_s:g} s")
        for r in plan:
            click.echo(f"    unit {r.unit_id} {r.register.value:<8} address {r.address}..{r.address + r.count - 1}"
                       f" ({r.count} {'bits' if r.register.is_bits else 'registers'}): "
                       + ", ".join(points[i].channel for i in r.points))
    if cfg.hj212_uplink is not None:
        u = cfg.hj212_uplink
        click.echo(f"  hj212 uplink: to {u.host}:{u.port} as HJ 212-{u.version}, sends {', '.join(u.send)}, OverTime "
                   f"{u.overtime_s:g} s, ReCount {u.recount}, queue {u.queue_dir}")
        for s in u.sources:
            click.echo(f"    {s.source} as MN {s.mn} (password from {_secret_where(s)})")
    problems = []
    if not cfg.agent.key_file.is_file():
        problems.append(f"key file {cfg.agent.key_file} does not exist (create it: head -c 32 /dev/urandom > FILE)")
    if cfg.agent.outbox_dir.exists() and not cfg.agent.outbox_dir.is_dir():
        problems.append(f"outbox_dir {cfg.agent.outbox_dir} is not a directory")
    for p in problems:
        click.echo(f"  warning: {p}", err=True)


def _secret_where(secret) -> str:
    return f"${secret.password_env}" if secret.password_env else str(secret.password_file)


def _check_hj212(cfg, d) -> None:
    """An HJ 212 receiver device: where it listens and, per datalogger, its source, mapping and what feeds the
    figures. Passwords are never shown: only where they come from, and whether they can be read."""
    by_mn = {s.hj212.mn: s for s in cfg.site.sources if s.hj212 is not None}
    click.echo(f"  device {d.id}: hj212 receiver on {d.endpoint}, {len(d.dataloggers)} datalogger(s), "
               f"{'strict' if d.strict else 'lenient'}, max {d.max_connections} connections, idle "
               f"{d.idle_timeout_s:g} s")
    for logger in d.dataloggers:
        src = by_mn[logger.mn]
        try:
            logger.password()
            pw = "readable"
        except ValueError as exc:
            pw = f"NOT READABLE: {exc}"
        link = src.hj212
        codes = ", ".join(f"{code}->{ch}" for code, ch in link.channel_of_factor(src).items())
        click.echo(f"    MN {logger.mn} -> source {src.id}: figures from {link.figures} "
                   f"({link.period_s or 'samples'}{' s' if link.period_s else ''}); password from "
                   f"{_secret_where(logger)} ({pw})")
        click.echo(f"      {codes}")


@edge.command("run")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per line with device/event fields (for journald, Loki...).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9108, show_default=True,
              help="Prometheus metrics; 0 disables.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True, callback=_host_option)
def run(config: Path, log_level: str, log_format: str, metrics_port: int, metrics_address: str) -> None:
    """Run the agent until SIGTERM or SIGINT: poll, store batches on disk, send them to Kafka."""
    import asyncio
    import signal

    from schemas.logs import configure_logging

    from .agent import EdgeAgent

    configure_logging(log_level, log_format)
    cfg = _load(config)
    try:
        key = cfg.agent.key_file.read_bytes()
    except OSError as exc:
        click.echo(f"cannot read key_file {cfg.agent.key_file}: {exc.strerror}", err=True)
        sys.exit(1)
    if metrics_port:
        _check_listen(metrics_address, [("metrics", metrics_port)], host_option="--metrics-address")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        agent = EdgeAgent(cfg, key)
        if metrics_port:
            from prometheus_client import start_http_server

            try:
                start_http_server(metrics_port, addr=metrics_address, registry=agent.metrics.registry)
            except OSError as exc:  # the port taken since it was checked
                raise click.ClickException(f"cannot serve metrics on {metrics_address}:{metrics_port}: "
                                           f"{exc.strerror or exc}") from None
        await agent.run(stop)

    asyncio.run(main())


@edge.command("probe")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("device")
@click.argument("channel", required=False)
@click.option("--listen", "listen_s", type=click.FloatRange(0, 86_400), default=0.0, show_default=True,
              callback=_finite,
              help="HJ 212 device: listen this many seconds yourself (agent not running) and show what arrives.")
def probe(config: Path, device: str, channel: str | None, listen_s: float) -> None:
    """Read points of DEVICE now (or only CHANNEL): raw registers, decoded value and flag.

    What an engineer commissioning a site needs first: is the address right, is the word order right.
    For an HJ 212 device (CHANNEL: an MN): the last frames received from each datalogger, passwords masked.
    """
    import asyncio

    cfg = _load(config)
    dev = next((d for d in cfg.devices if d.id == device), None)
    if dev is None:
        click.echo(f"no device {device!r} in {config}; devices: {[d.id for d in cfg.devices]}", err=True)
        sys.exit(2)
    if dev.protocol == "hj212":
        sys.exit(_probe_hj212(cfg, dev, channel, listen_s))
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


async def _probe_opcua(dev, points) -> int:
    """Per point: the DataValue as the server sends it (type, value, status code, source timestamp)."""
    from datetime import UTC, datetime

    from schemas.quantities import Flag

    from .opcua.driver import probe_node

    def when(ns):
        return "-" if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")

    click.echo(f"device {dev.id} at {dev.endpoint} (security {dev.security.policy} {dev.security.mode})")
    failed = 0
    targets = [(p.channel, p.node_id, p) for p in points]
    if dev.status is not None:
        targets.append(("status word", dev.status.node_id, None))
    for name, node, p in targets:
        r = await probe_node(dev, node)
        if r["error"]:
            failed += 1
            click.echo(f"  {name:<14} {node}: {r['error']}")
            continue
        line = f"  {name:<14} {node}: {r['data_type'] or r['variant_type']} {r['value']!r} status {r['status']}, " \
               f"source time {when(r['source_ts_ns'])}"
        if p is not None and isinstance(r["value"], int | float):
            line += f" -> {r['value'] * p.scale + p.offset:.6g}"
        elif p is None and isinstance(r["value"], int):
            line += f" -> readings flagged {Flag(dev.status.flag_of(r['value'])).name}"
        click.echo(line)
    return 1 if failed == len(targets) else 0


def _probe_hj212(cfg, dev, mn: str | None, listen_s: float) -> int:
    """The last frames each datalogger sent the running agent (kept in the outbox's neighbour file), with what
    was done with them; or, with ``--listen``, a receiver of our own for that long (the agent must be stopped:
    the port is the same) whose frames are shown as they arrive and then stored nowhere."""
    import json

    from .hj212.receiver import recent_path

    if listen_s > 0:
        return _listen_hj212(cfg, dev, listen_s)
    path = recent_path(cfg.agent.outbox_dir, dev.id)
    try:
        recent = json.loads(path.read_text())
    except FileNotFoundError:
        click.echo(f"no frames recorded yet in {path} (is `cems edge run` running? or use --listen SECONDS)",
                   err=True)
        return 1
    shown = 0
    for who, entries in recent.items():
        if mn is not None and who != mn:
            continue
        click.echo(f"MN {who}: last {len(entries)} frame(s)")
        for e in entries:
            click.echo(f"  {e['at']} {'<-' if e['direction'] == 'in' else '->'} {e['verdict']}")
            click.echo(f"      {e['frame']}")
            shown += 1
    return 0 if shown else 1


def _listen_hj212(cfg, dev, seconds: float) -> int:
    import asyncio

    from prometheus_client import CollectorRegistry

    from schemas.quantities import Flag

    from .hj212.receiver import Hj212Receiver, mask_password

    seen = []

    def store(converted) -> int:  # show, do not store: a probe must not feed the outbox
        rows = ", ".join(f"{converted.channels[c].id}={v:g}/{Flag(f).name}" for c, v, f in
                         zip(converted.channel.tolist(), converted.value.tolist(), converted.flag.tolist(),
                             strict=True))
        click.echo(f"  upload of {converted.source_id}, period {converted.period_s} s: {rows}")
        seen.append(converted)
        return -1

    def echo(mn, direction, raw, verdict):
        click.echo(f"{'<-' if direction == 'in' else '->'} MN {mn}: {verdict}\n      {mask_password(raw)}")

    receiver = Hj212Receiver(dev, cfg.site, store, CollectorRegistry(), observer=echo)

    async def main() -> None:
        task = asyncio.create_task(receiver.serve())
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    click.echo(f"listening on {dev.endpoint} for {seconds:g} s (data are shown, not stored)")
    asyncio.run(main())
    return 0 if seen else 1


#: The fault kinds the simulator scripts (edge_agent/simulator/generate.py, simulate_stack).
FAULT_KINDS = ("calibration", "comm_loss", "stuck", "drift", "bias", "out_of_range", "stopped", "instrument_stopped")
MAX_SIMULATED_STACKS = 255  # stack k's HJ 212 MN ends in k as two hex digits (simulated_mn)
#: The simulator holds its whole series in memory: 64 bytes of Modbus registers a stack-second (as much again for
#: OPC UA), plus about 300 bytes a second for the stack being generated. A month of one stack, and at most this
#: many stack-seconds in all (about 0.4 GB of registers).
MAX_SIMULATED_SECONDS = 31 * 86_400
MAX_STACK_SECONDS = 6_000_000


class FaultSpec(click.ParamType):
    """``kind:stack:start_s:duration_s[:channel[:amount]]``, e.g. ``bias:0:3600:7200:co2:-0.1``, as
    ``(stack, Fault)``; the stack and the series' length are checked against --stacks and --seconds later."""

    name = "fault"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        from .simulator.generate import CHANNELS, Fault

        parts = value.split(":")
        if not 4 <= len(parts) <= 6:
            self.fail(f"{value!r}: expected KIND:STACK:START_S:DURATION_S[:CHANNEL[:AMOUNT]]", param, ctx)
        kind, numbers, channel = parts[0], parts[1:4], parts[4] if len(parts) > 4 else "co2"
        if kind not in FAULT_KINDS:
            self.fail(f"{value!r}: unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})", param, ctx)
        if not all(n.isascii() and n.isdigit() for n in numbers):
            self.fail(f"{value!r}: STACK, START_S and DURATION_S are whole numbers >= 0", param, ctx)
        stack, start, duration = (int(n) for n in numbers)
        if duration == 0:
            self.fail(f"{value!r}: a fault lasts at least 1 s", param, ctx)
        if channel not in CHANNELS:
            self.fail(f"{value!r}: unknown channel {channel!r} (known: {', '.join(CHANNELS)})", param, ctx)
        try:
            amount = float(parts[5]) if len(parts) > 5 else 0.0
        except ValueError:
            self.fail(f"{value!r}: AMOUNT {parts[5]!r} is not a number", param, ctx)
        if not math.isfinite(amount):
            self.fail(f"{value!r}: AMOUNT must be finite", param, ctx)
        return stack, Fault(kind, start, duration, channel, amount)


class HostPort(click.ParamType):
    """``HOST:PORT`` with a host name or address (``[::1]:PORT`` for IPv6) and a port 1..65535."""

    name = "host:port"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        host, sep, port = value.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            self.fail(f"{value!r}: expected HOST:PORT with a port 1..65535", param, ctx)
        try:
            check_host(host)
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)
        return host, int(port)


def _writable_file(ctx, param, value: Path | None) -> Path | None:
    """A file to write: its folder must exist (no folder is created behind the user's back)."""
    if value is None:
        return None
    if value.is_dir():  # click checks only paths it is told exist; '' is the current folder
        raise click.BadParameter(f"{str(value)!r} is a folder, not a file", ctx, param)
    folder = value.parent
    if not folder.is_dir():
        raise click.BadParameter(f"folder {str(folder)!r} does not exist", ctx, param)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"folder {str(folder)!r} is not writable", ctx, param)
    return value


def _check_listen(host: str, ports: list[tuple[str, int]], host_option: str = "--host") -> None:
    """Every TCP port the simulator is to serve can be bound on ``host`` now (free, and ``host`` is this machine's):
    a usage error before the series are generated, rather than a server failing after it was announced."""
    import socket

    for what, port in ports:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise click.BadParameter(f"{host!r} does not resolve: {exc.strerror}", param_hint=host_option) from None
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
            try:
                sock.bind(address)
            except OSError as exc:
                raise click.UsageError(f"cannot serve {what} on {host}:{port}: {exc.strerror}") from None


async def _listening(host: str, port: int, task: asyncio.Task, what: str, timeout_s: float = 30.0) -> None:
    """Wait until ``host:port`` accepts connections, so the simulator announces only what really serves; a server
    task that failed first raises its error."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if task.done():
            task.result()  # raises the server's error
            raise click.ClickException(f"{what} stopped before it listened")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise click.ClickException(f"{what} is not listening on {host}:{port} after {timeout_s:g} s")


def _refuse_before_work(stacks: int, seconds: int, modbus_port: int, rtu_port: str | None, opcua_port: int,
                        faults, host: str, hj212_to) -> None:
    """What the simulate command line can get wrong beyond each option's own type: a usage error (or the missing
    extra) here, before a series is generated or a port opened."""
    if not (modbus_port or rtu_port or opcua_port or hj212_to):
        raise click.UsageError("nothing to serve: give --modbus-port, --rtu, --opcua-port or --hj212-to")
    if modbus_port and modbus_port == opcua_port:
        raise click.UsageError(f"--modbus-port and --opcua-port are both {modbus_port}: one port, one server")
    if stacks * seconds > MAX_STACK_SECONDS:
        raise click.UsageError(f"--stacks {stacks} x --seconds {seconds} = {stacks * seconds:,} stack-seconds, more "
                               f"than the {MAX_STACK_SECONDS:,} the simulator holds in memory; shorten --seconds (the "
                               f"last values stay served after the series ends)")
    for stack, fault in faults:
        if stack >= stacks:
            raise click.BadParameter(f"{fault.kind} on stack {stack}: the stacks are 0..{stacks - 1} (--stacks "
                                     f"{stacks})", param_hint="--fault")
        if fault.start_s >= seconds:
            raise click.BadParameter(f"{fault.kind} starts at {fault.start_s} s, after the series ends (--seconds "
                                     f"{seconds})", param_hint="--fault")
    if modbus_port or rtu_port:
        require("pymodbus", extra="edge", purpose="the Modbus simulator")
    if rtu_port:
        require("serial", extra="edge", purpose="the Modbus RTU simulator (pyserial)")
    if opcua_port:
        require("asyncua", extra="opcua", purpose="the OPC UA simulator")
    _check_listen(host, [(w, p) for w, p in (("Modbus TCP", modbus_port), ("OPC UA", opcua_port)) if p])


@edge.command("simulate")
@click.option("--stacks", type=click.IntRange(1, MAX_SIMULATED_STACKS), default=2, show_default=True,
              help="Simulated stacks (CEMS racks with fuel meter and weigher).")
@click.option("--seconds", type=click.IntRange(1, MAX_SIMULATED_SECONDS), default=86_400, show_default=True,
              help="Length of the simulated series (1 Hz); its last values stay served after that.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--modbus-port", type=click.IntRange(0, 65535), default=5020, show_default=True,
              help="Modbus TCP port; 0: none.")
@click.option("--rtu", "rtu_port", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also serve Modbus RTU on this serial device (8E1, 9600 baud).")
@click.option("--opcua-port", type=click.IntRange(0, 65535), default=4840, show_default=True,
              help="OPC UA port; 0: none.")
@click.option("--opcua-certs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Serve OPC UA with Basic256Sha256 only, with self-signed certificates kept in this directory.")
@click.option("--fault", "faults", type=FaultSpec(), multiple=True,
              metavar="KIND:STACK:START_S:DURATION_S[:CHANNEL[:AMOUNT]]",
              help=f"Script a fault ({', '.join(FAULT_KINDS)}); repeatable.")
@click.option("--gateway-out", type=click.Path(dir_okay=False, path_type=Path), default=None, callback=_writable_file,
              help="Write a gateway file for `cems edge run` that reads this simulator.")
@click.option("--host", default="127.0.0.1", show_default=True, callback=_host_option,
              help="Address to serve on (and to put in the gateway file).")
@click.option("--hj212-to", "hj212_to", type=HostPort(), multiple=True, metavar="HOST:PORT",
              help="Also be the stacks' HJ 212 datalogger: push 2051 minute data each minute and 2011 real-time data "
                   "every 30 s to this upper platform (a gateway's hj212 device, cems hj212 serve); repeatable. "
                   "Stack k's MN is 0100000000000000000000 followed by k in two hex digits.")
@click.option("--hj212-password-env", default="CEMS_HJ212_PW", show_default=True,
              help="Environment variable holding the dataloggers' password (123456 when unset).")
def simulate(stacks, seconds, seed, modbus_port, rtu_port, opcua_port, opcua_certs, faults, gateway_out, host,
             hj212_to, hj212_password_env) -> None:
    """Serve a simulated plant (CO2, O2, moisture, temperature, pressure, velocity, status word, fuel meter,
    weigher) over Modbus TCP/RTU and OPC UA, deterministic from --seed, starting at the current second; and, with
    --hj212-to, push its stacks' data in HJ 212 as their datalogger would."""
    import asyncio
    import dataclasses
    import logging

    _refuse_before_work(stacks, seconds, modbus_port, rtu_port, opcua_port, faults, host, hj212_to)

    from .simulator.generate import simulator_stack_model
    from .simulator.modbus_server import ModbusSimulator
    from .simulator.opcua_server import OpcUaSimulator, ServerSecurity, make_certificates

    # asyncua's start-up notes on user-token policies, and its traceback of a failed bind (said once, below)
    logging.getLogger("asyncua.server").setLevel(logging.CRITICAL)
    start_ns = time.time_ns() // 10**9 * 10**9
    models = [dataclasses.replace(simulator_stack_model(k), faults=tuple(f for s, f in faults if s == k))
              for k in range(stacks)]

    async def main() -> None:
        tasks, announce, certs = [], [], None
        if modbus_port or rtu_port:
            mb = ModbusSimulator(stacks, seconds, start_ns=start_ns, seed=seed, models=models)
            if modbus_port:
                task = asyncio.create_task(mb.serve(modbus_port, host))
                tasks.append(task)
                announce.append((_listening(host, modbus_port, task, "the Modbus TCP server"), f"Modbus TCP on "
                                 f"{host}:{modbus_port} (unit 1, {stacks} stacks x 32 holding registers)"))
            if rtu_port:
                tasks.append(asyncio.create_task(mb.serve_rtu(rtu_port)))
                announce.append((asyncio.sleep(0), f"Modbus RTU on {rtu_port} (unit 1, 9600 8E1)"))
        if opcua_port:
            security = None
            if opcua_certs:
                certs = await make_certificates(opcua_certs)
                security = ServerSecurity(certs.server_certificate, certs.server_key)
            ua_sim = OpcUaSimulator(stacks, seconds, start_ns=start_ns, seed=seed, models=models)
            task = asyncio.create_task(ua_sim.serve(opcua_port, host, security=security))
            tasks.append(task)
            announce.append((_listening(host, opcua_port, task, "the OPC UA server", timeout_s=60.0),
                             f"OPC UA on opc.tcp://{host}:{opcua_port}/ "
                             f"({'Basic256Sha256' if security else 'no security'})"))
        try:
            for ready, line in announce:
                await ready
                click.echo(line)
            if gateway_out:
                gateway_out.write_text(_simulated_gateway(stacks, host, modbus_port, opcua_port, certs))
                click.echo(f"wrote {gateway_out}: run it with `cems edge run {gateway_out}`")
            if hj212_to:
                password = os.environ.get(hj212_password_env, "123456")
                tasks.append(asyncio.create_task(_push_hj212(list(hj212_to), models, seconds, start_ns, seed,
                                                             password)))
                click.echo(f"HJ 212 datalogger of {stacks} stack(s) pushing to "
                           f"{', '.join(f'{h}:{p}' for h, p in hj212_to)} (MN {simulated_mn(0)}...)")
            await asyncio.gather(*tasks)
        except (OSError, RuntimeError) as exc:  # a port taken between the check and the bind (pymodbus: a
            raise click.ClickException(f"simulator stopped: {exc}") from None  # RuntimeError), a serial device gone
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def simulated_mn(k: int) -> str:
    """The MN of simulated stack ``k``'s datalogger (24 hex characters, as HJ 212-2017 asks)."""
    return f"0100000000000000000000{k:02X}"


async def _push_hj212(targets, models, seconds: int, start_ns: int, seed: int, password: str) -> None:
    """Each stack's datalogger, in real time: every 30 s a 2011, every minute the 2051 of the minute just ended, to
    every target (each keeps re-sending until answered, like a datalogger's buffer)."""
    import asyncio
    import time

    from .simulator.datalogger import SimulatedDatalogger, minute_uploads, realtime_uploads
    from .simulator.generate import simulate_stack

    series = [simulate_stack(m, start_ns, seconds, seed=seed + k)[0] for k, m in enumerate(models)]
    loggers = [[SimulatedDatalogger(h, p, simulated_mn(k), password) for h, p in targets] for k in range(len(models))]
    for t in range(30, seconds + 1, 30):
        await asyncio.sleep(max(0.0, start_ns / 1e9 + t - time.time()))
        sends = []
        for k, readings in enumerate(series):
            part = {ch: (v[t - 30:t], f[t - 30:t]) for ch, (v, f) in readings.items()}
            ups = realtime_uploads(part, start_ns + (t - 30) * 10**9, 30)
            if t % 60 == 0:
                minute = {ch: (v[t - 60:t], f[t - 60:t]) for ch, (v, f) in readings.items()}
                ups += minute_uploads(minute, start_ns + (t - 60) * 10**9)
            sends += [lg.send(ups, give_up_s=25.0, qn_base_ns=time.time_ns()) for lg in loggers[k]]
        await asyncio.gather(*sends)


def _simulated_gateway(stacks: int, host: str, modbus_port: int, opcua_port: int, certs) -> str:
    """A gateway file reading the simulator: Modbus TCP for even stacks, OPC UA for odd ones when both run."""
    import yaml

    from .simulator.generate import simulator_stack_model, source_config
    from .simulator.modbus_server import STACK_REGISTERS, STATUS_OFFSET, gateway_points
    from .simulator.opcua_server import STATUS_BITS, node_points, status_node_id

    devices: list[dict[str, Any]] = []
    for k in range(stacks):
        use_opcua = opcua_port and (not modbus_port or k % 2)
        dev: dict[str, Any]
        if use_opcua:
            dev = {"id": f"stack{k}-opcua", "protocol": "opcua", "endpoint": f"opc.tcp://{host}:{opcua_port}/",
                   "source": f"stack{k}", "status": {"node_id": status_node_id(k), "bits": STATUS_BITS},
                   "points": [{"channel": p["channel"], "node_id": p["node_id"]} for p in node_points(stacks)
                              if p["stack"] == k]}
            if certs:
                dev["security"] = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                                   "certificate": str(certs.client_certificate), "private_key": str(certs.client_key),
                                   "server_certificate": str(certs.server_certificate)}
        else:
            dev = {"id": f"stack{k}-modbus", "protocol": "modbus_tcp", "host": host, "port": modbus_port,
                   "source": f"stack{k}",
                   "status": {"address": k * STACK_REGISTERS + STATUS_OFFSET, "bits": {0: "C", 1: "M", 2: "D"}},
                   "points": [{key: v for key, v in p.items() if key != "stack"} for p in gateway_points(stacks)
                              if p["stack"] == k]}
        devices.append(dev)
    doc = {
        "agent": {"id": "gw-simulator", "key_file": "./agent.key", "outbox_dir": "./outbox"},
        "kafka": {"bootstrap_servers": "127.0.0.1:19092"},
        "site": {"id": "simulated-plant", "name": "Simulated cement plant", "sector": "cement", "sources": [
            source_config(f"stack{k}", f"kiln {k} stack", simulator_stack_model(k)) for k in range(stacks)]},
        "devices": devices,
    }
    return "# written by `cems edge simulate`\n" + yaml.safe_dump(doc, sort_keys=False)
