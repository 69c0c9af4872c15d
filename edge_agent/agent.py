"""The edge agent's runtime: poll devices, cut batches into the outbox, drain the outbox to Kafka.

Three kinds of asyncio tasks share one process:

* one poller per device: every ``poll_interval_s`` it executes the device's compiled read plan and
  stamps the whole cycle with one acquisition time. A device that does not answer still produces
  readings, flagged B (communication failure), so a gap is recorded rather than silent; the
  connection is retried with exponential backoff (1 s doubling to 60 s, :mod:`.backoff`). The analyser's status word,
  when configured, flags every normal reading of the cycle (calibration, maintenance, fault...);
* the batcher: every ``batch_interval_s`` it turns the buffered readings of every source into one agent batch
  (:mod:`schemas.agent_batch`, wire version 3: a section per source) and stores it in the outbox under the next
  sequence number; with ``agent.wire_version: 1``, one :class:`~schemas.batch.ReadingBatch` per source, each
  under its own number, for a centre that does not read version 3 yet;
* the uplink: drains the outbox in a worker thread (kafka-python is synchronous), backing off while
  the broker is unreachable.

If the outbox refuses a batch (full disk or size limit), the readings stay buffered in memory and
``outbox_full`` is set (the operator's alarm); the batcher retries every interval. Nothing read is
dropped while the process lives; what is on disk survives it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from schemas._optional import require
from schemas.agent_batch import AgentBatch
from schemas.batch import ChannelSpec, ReadingBatch
from schemas.quantities import Flag

from .backoff import Backoff
from .config import GatewayConfig, fed_source
from .driver import CycleReadings, Driver
from .metrics import AgentMetrics
from .outbox import Outbox, OutboxFull
from .uplink import KafkaUplink

__all__ = ["EdgeAgent"]

log = logging.getLogger(__name__)


class _SourceBuffer:
    """Readings of one source waiting to be cut into a batch (columns appended per poll cycle)."""

    def __init__(self, source_id: str, channels: list[ChannelSpec]) -> None:
        self.source_id, self.channels = source_id, channels
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, ts_ns: np.ndarray, channel: np.ndarray, value: np.ndarray, flag: np.ndarray) -> None:
        self.parts.append((ts_ns, channel, value, flag))

    def columns(self) -> list[np.ndarray]:
        return [np.concatenate(c) for c in zip(*self.parts, strict=True)]

    def batch(self, agent_id: str, seq: int, columns: list[np.ndarray]) -> ReadingBatch:
        """These columns (:meth:`columns`) as this source's batch."""
        ts_ns, channel, value, flag = columns
        return ReadingBatch.from_columns(agent_id=agent_id, source_id=self.source_id, seq=seq, channels=self.channels,
                                         ts_ns=ts_ns, channel=channel, value=value, flag=flag)


def _encoder(agent_id: str, cut: list[tuple[_SourceBuffer, list[np.ndarray]]],
             wire_version: int) -> Callable[[int], bytes]:
    """The encoded batch of these sources' columns under the sequence number the outbox gives it: one agent batch
    (version 3), or the one source's batch (version 1)."""
    if wire_version == 1:
        (buf, cols), = cut
        return lambda seq: buf.batch(agent_id, seq, cols).encode()
    return lambda seq: AgentBatch.from_sections(agent_id=agent_id, seq=seq, sections=[
        buf.batch(agent_id, seq, cols) for buf, cols in cut]).encode()


class _Route:
    """Where a device's readings go: per point, the source buffer and the channel index within it."""

    def __init__(self, device, buffers: list[_SourceBuffer], buffer_of: list[int], channel_of: list[int]) -> None:
        self.device, self.buffers = device, buffers
        self.driver: Driver | None = None  # created in the event loop (protocol clients bind to it)
        self.buffer_of = np.array(buffer_of, dtype=np.intp)
        self.channel_of = np.array(channel_of, dtype=np.uint16)

    def deliver(self, r: CycleReadings) -> None:
        channel = self.channel_of[r.point]
        if len(self.buffers) == 1:
            self.buffers[0].add(r.ts_ns, channel, r.value, r.flag)
            return
        which = self.buffer_of[r.point]
        for b, buf in enumerate(self.buffers):
            sel = which == b
            if sel.any():
                buf.add(r.ts_ns[sel], channel[sel], r.value[sel], r.flag[sel])


def require_drivers(devices) -> None:
    """Import the driver of every configured protocol now: a missing extra (``opcua`` for an OPC UA device) stops
    the agent at start, naming the extra, rather than a poller task once it runs."""
    protocols = {d.protocol for d in devices}
    if protocols & {"modbus_tcp", "modbus_rtu"}:
        from .modbus import driver as _modbus  # noqa: F401
    if "modbus_rtu" in protocols:
        require("serial", extra="edge", purpose="Modbus RTU (pyserial)")
    if "opcua" in protocols:
        from .opcua import driver as _opcua  # noqa: F401


def make_driver(device, serial_lines: dict) -> Driver:
    """The protocol driver of a configured device (imports the protocol library only when used)."""
    if device.protocol == "opcua":
        from .opcua.driver import OpcUaDriver

        return OpcUaDriver(device)
    from .modbus.driver import modbus_driver

    return modbus_driver(device, serial_lines)


class EdgeAgent:
    def __init__(self, cfg: GatewayConfig, key: bytes) -> None:
        require_drivers(cfg.devices)
        self.cfg = cfg
        self.outbox = Outbox(cfg.agent.outbox_dir, cfg.agent.outbox_max_bytes)
        self.uplink = KafkaUplink(self.outbox, topic=cfg.kafka.topic, agent_id=cfg.agent.id, key=key,
                                  producer_config=cfg.kafka.producer_config())
        self.outbox_full = False
        self.metrics = AgentMetrics()
        self.cycles = 0
        self._drain_lock = threading.Lock()  # a cancelled task's drain thread may still be running
        self.buffers: dict[str, _SourceBuffer] = {}
        self._serial_lines: dict = {}
        self._routes: list[_Route] = []
        sources = {s.id: s for s in cfg.site.sources}
        self._init_hj212(cfg)
        for d in cfg.devices:  # configuration, once
            if d.protocol == "hj212":  # pushed, not polled: see _init_hj212
                continue
            used: list[_SourceBuffer] = []
            buffer_of, channel_of = [], []
            for p in d.points:
                src = fed_source(d, p)
                buf = self.buffers.get(src)
                if buf is None:
                    buf = self.buffers[src] = _SourceBuffer(src, [])
                if buf not in used:
                    used.append(buf)
                index = {c.id: i for i, c in enumerate(buf.channels)}
                if p.channel not in index:
                    ch = sources[src].channel(p.channel)
                    index[p.channel] = len(buf.channels)
                    buf.channels.append(ChannelSpec(ch.id, ch.quantity, ch.unit))
                buffer_of.append(used.index(buf))
                channel_of.append(index[p.channel])
            log.info("device %s: %s, %d points", d.id, d.endpoint, len(d.points),
                     extra={"device": d.id, "event": "configured"})
            self._routes.append(_Route(d, used, buffer_of, channel_of))

    async def _poll(self, route: _Route) -> None:
        device = route.device
        driver = route.driver = make_driver(device, self._serial_lines)
        m = self.metrics  # label children resolved once, not every cycle
        poll_seconds, requests = m.poll_seconds.labels(device.id), m.requests.labels(device.id)
        comm_errors = m.request_errors.labels(device.id, "comm")
        dev_errors = m.request_errors.labels(device.id, "exception")
        by_flag = [m.readings.labels(device.id, f.name) for f in Flag]
        ctx = {"device": device.id, "endpoint": device.endpoint}
        retry, next_connect, was_up = Backoff(), 0.0, None
        next_poll = time.monotonic()
        try:
            while True:
                now_ns = time.time_ns()
                if not driver.connected and time.monotonic() >= next_connect:
                    try:
                        up = await driver.connect()
                    except Exception:  # a driver bug must not stop the other devices
                        log.exception("device %s: connect failed", device.id, extra=ctx | {"event": "connect_error"})
                        up = False
                    if up:
                        retry.reset()
                    else:
                        next_connect = time.monotonic() + retry.next()
                    if up != was_up:
                        log.log(logging.INFO if up else logging.WARNING, "device %s %s", device.id,
                                "connected" if up else f"unreachable; retrying with backoff up to {retry.max_s:g} s",
                                extra=ctx | {"event": "connected" if up else "unreachable"})
                        was_up = up
                t0 = time.perf_counter()
                readings = None
                if driver.connected:
                    try:
                        readings = await driver.poll(now_ns)
                    except Exception:
                        log.exception("device %s: poll failed", device.id, extra=ctx | {"event": "poll_error"})
                if readings is None:  # not connected: the cycle is a communication failure
                    readings = CycleReadings.all_flagged(now_ns, driver.n_points, comm_errors=1)
                    if was_up:
                        log.warning("device %s connection lost", device.id, extra=ctx | {"event": "disconnected"})
                        was_up = False
                route.deliver(readings)
                requests.inc(readings.requests)
                comm_errors.inc(readings.comm_errors)
                dev_errors.inc(readings.device_errors)
                poll_seconds.observe(time.perf_counter() - t0)
                for code, count in enumerate(np.bincount(readings.flag, minlength=len(Flag)).tolist()):
                    if count:
                        by_flag[code].inc(count)
                self.cycles += 1
                next_poll += device.poll_interval_s
                await asyncio.sleep(max(0.0, next_poll - time.monotonic()))
        finally:
            await driver.close()

    def cut_batches(self) -> int:
        """Move every source's buffered readings into the outbox, as one agent batch or (``wire_version: 1``) one
        batch per source; return how many batches were stored."""
        agent_id, wire = self.cfg.agent.id, self.cfg.agent.wire_version
        cut = [(buf, buf.columns()) for buf in self.buffers.values() if buf.parts]
        stored = 0
        for group in ([cut] if wire == 3 and cut else [[c] for c in cut]):
            try:
                self.outbox.put(_encoder(agent_id, group, wire))
            except OutboxFull as exc:
                if not self.outbox_full:
                    log.error("ALARM outbox full: %s; readings stay in memory until it drains", exc,
                              extra={"event": "outbox_full", "outbox_batches": self.outbox.count})
                self.outbox_full = True
                self.metrics.outbox_full.set(1)
                return stored
            stored += 1
            self.metrics.batches_stored.inc()
            for buf, (ts, channel, value, flag) in group:
                buf.parts.clear()
                if self.hj212_uplink is not None:
                    self.hj212_uplink.add(buf.source_id, [c.id for c in buf.channels], 0, ts, channel, value, flag)
        self.outbox_full = False
        self.metrics.outbox_full.set(0)
        self._observe_outbox()
        return stored

    # -- HJ 212 (issue 16): receivers of dataloggers' frames, and the uplink to a platform ----------------------

    def _init_hj212(self, cfg: GatewayConfig) -> None:
        """Receivers for ``protocol: hj212`` devices and the ``hj212_uplink`` client, if configured. Passwords are
        read now (ValueError names the missing file or variable)."""
        self.receivers, self.hj212_uplink = [], None
        if cfg.hj212_uplink is not None:
            from .hj212.uplink import Hj212UplinkClient

            self.hj212_uplink = Hj212UplinkClient(cfg.hj212_uplink, cfg.site, self.metrics.registry)
        if any(d.protocol == "hj212" for d in cfg.devices):
            from .hj212.receiver import Hj212Receiver, recent_path

            self.receivers = [Hj212Receiver(d, cfg.site, self.store_upload, self.metrics.registry,
                                            recent_path(cfg.agent.outbox_dir, d.id))
                              for d in cfg.devices if d.protocol == "hj212"]

    def store_upload(self, converted) -> int:
        """One HJ 212 upload as one batch in the outbox (fsync'd: its data answer may go back after this)."""
        seq = self.outbox.put(lambda seq: converted.batch(self.cfg.agent.id, seq).encode())
        self.metrics.batches_stored.inc()
        self._observe_outbox()
        if self.hj212_uplink is not None:
            self.hj212_uplink.add(converted.source_id, [c.id for c in converted.channels], converted.period_s,
                                  converted.ts_ns, converted.channel, converted.value, converted.flag)
        return seq

    # -- end of HJ 212 ------------------------------------------------------------------------------------------

    def _observe_outbox(self) -> None:
        self.metrics.outbox_batches.set(self.outbox.count)
        self.metrics.outbox_bytes.set(self.outbox.size_bytes)

    async def _batcher(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.agent.batch_interval_s)
            self.cut_batches()

    def _drain(self, last: bool = False) -> int:
        with self._drain_lock:
            if last and self.uplink.reachable is False:  # no second wait on a broker that just refused: data is on disk
                return 0
            if last:  # the one last attempt at shutdown, bounded: what is not acknowledged in 10 s stays on disk
                self.uplink.stopping.clear()
            sent = self.uplink.drain(timeout_s=10.0 if last else 30.0)
            if sent:
                self.metrics.batches_sent.inc(sent)
                self.metrics.last_send.set(time.time())
            self._observe_outbox()
            return sent

    async def _uplink(self) -> None:
        retry = Backoff()
        while True:
            sent = await asyncio.to_thread(self._drain)
            if sent == 0 and self.outbox.count:
                await asyncio.sleep(retry.next())
            else:
                retry.reset()
                await asyncio.sleep(0.2)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then cut what is buffered and make one last attempt to send it."""
        tasks = [asyncio.create_task(self._poll(r)) for r in self._routes]
        tasks += [asyncio.create_task(self._batcher()), asyncio.create_task(self._uplink())]
        tasks += [asyncio.create_task(r.serve()) for r in self.receivers]  # HJ 212 (issue 16)
        if self.hj212_uplink is not None:
            tasks.append(asyncio.create_task(self.hj212_uplink.run()))
        try:
            await stop.wait()
        finally:
            self.uplink.stopping.set()  # a drain in its thread returns at the next send or flush slice
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.cut_batches()
            await asyncio.to_thread(self._drain, True)
            with self._drain_lock:
                self.uplink.close()
            log.info("stopped; %d batch(es) wait in the outbox", self.outbox.count,
                     extra={"event": "stopped", "outbox_batches": self.outbox.count})
