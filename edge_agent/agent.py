"""The edge agent's runtime: poll devices, cut batches into the outbox, drain the outbox to Kafka.

Three kinds of asyncio tasks share one process:

* one poller per device: every ``poll_interval_s`` it executes the device's compiled read plan and
  stamps the whole cycle with one acquisition time. A device that does not answer still produces
  readings, flagged B (communication failure), so a gap is recorded rather than silent; the
  connection is retried with exponential backoff (1 s doubling to 60 s). The analyser's status word,
  when configured, flags every normal reading of the cycle (calibration, maintenance, fault...);
* the batcher: every ``batch_interval_s`` it turns each source's buffered readings into one
  :class:`~schemas.batch.ReadingBatch` and stores it in the outbox under the next sequence number;
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

import numpy as np

from schemas.batch import ChannelSpec, ReadingBatch
from schemas.quantities import Flag

from .config import GatewayConfig, ModbusTcpDevice, status_point
from .metrics import AgentMetrics
from .modbus.client import compile_plan, read_plan
from .modbus.planner import plan_reads
from .outbox import Outbox, OutboxFull
from .uplink import KafkaUplink

__all__ = ["EdgeAgent"]

log = logging.getLogger(__name__)


class _SourceBuffer:
    """Readings of one source waiting to be cut into a batch (columns appended per poll cycle)."""

    def __init__(self, source_id: str, channels: list[ChannelSpec]) -> None:
        self.source_id, self.channels = source_id, channels
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, ts_ns: int, channel: np.ndarray, value: np.ndarray, flag: np.ndarray) -> None:
        self.parts.append((np.full(channel.size, ts_ns, dtype=np.int64), channel, value, flag))

    def columns(self):
        return [np.concatenate(c) for c in zip(*self.parts, strict=True)]


class EdgeAgent:
    def __init__(self, cfg: GatewayConfig, key: bytes) -> None:
        self.cfg = cfg
        self.outbox = Outbox(cfg.agent.outbox_dir, cfg.agent.outbox_max_bytes)
        self.uplink = KafkaUplink(self.outbox, topic=cfg.kafka.topic, agent_id=cfg.agent.id, key=key,
                                  producer_config=cfg.kafka.producer_config())
        self.outbox_full = False
        self.metrics = AgentMetrics()
        self.cycles = 0
        self._drain_lock = threading.Lock()  # a cancelled task's drain thread may still be running
        self.buffers: dict[str, _SourceBuffer] = {}
        self._devices = []
        sources = {s.id: s for s in cfg.site.sources}
        for d in cfg.devices:  # configuration, once
            buf = self.buffers.get(d.source)
            if buf is None:
                buf = self.buffers[d.source] = _SourceBuffer(d.source, [])
            index = {c.id: i for i, c in enumerate(buf.channels)}
            for p in d.points:
                if p.channel not in index:
                    ch = sources[d.source].channel(p.channel)
                    index[p.channel] = len(buf.channels)
                    buf.channels.append(ChannelSpec(ch.id, ch.quantity, ch.unit))
            points = list(d.points) + ([status_point(d)] if d.status else [])
            plan = compile_plan(plan_reads(points, max_gap_registers=d.max_gap_registers), points)
            log.info("device %s: %d points in %d request(s)", d.id, len(points), len(plan))
            self._devices.append((d, points, plan, np.array([index[p.channel] for p in d.points], dtype=np.uint16)))

    async def _poll(self, device: ModbusTcpDevice, points, plan, channel_idx) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        n = len(device.points)
        m = self.metrics  # label children resolved once, not every cycle
        poll_seconds, requests = m.poll_seconds.labels(device.id), m.requests.labels(device.id)
        comm_errors, exc_errors = m.request_errors.labels(device.id, "comm"), m.request_errors.labels(device.id, "exception")
        by_flag = [m.readings.labels(device.id, f.name) for f in Flag]
        client = AsyncModbusTcpClient(device.host, port=device.port, timeout=device.timeout_s, retries=0,
                                      reconnect_delay=0)
        backoff, next_connect = 1.0, 0.0
        next_poll = time.monotonic()
        try:
            while True:
                now_ns = time.time_ns()
                if not client.connected and time.monotonic() >= next_connect:
                    if await client.connect():
                        backoff = 1.0
                    else:
                        next_connect = time.monotonic() + backoff
                        backoff = min(backoff * 2, 60.0)
                t0 = time.perf_counter()
                if client.connected:
                    result = await read_plan(client, plan, len(points))
                    requests.inc(result.requests)
                    comm_errors.inc(result.failed_requests - len(result.exception_codes))
                    exc_errors.inc(len(result.exception_codes))
                    value, flag = result.value[:n], result.flag[:n]
                    if device.status is not None and result.flag[n] == Flag.N:
                        status = device.status.flag_of(int(result.value[n]))
                        flag = np.where(flag == Flag.N, np.uint8(status), flag)
                else:  # not connected: the cycle is a communication failure
                    comm_errors.inc()
                    value, flag = np.full(n, np.nan), np.full(n, Flag.B, dtype=np.uint8)
                self.buffers[device.source].add(now_ns, channel_idx, value, flag)
                poll_seconds.observe(time.perf_counter() - t0)
                for code, count in enumerate(np.bincount(flag, minlength=len(Flag)).tolist()):
                    if count:
                        by_flag[code].inc(count)
                self.cycles += 1
                next_poll += device.poll_interval_s
                await asyncio.sleep(max(0.0, next_poll - time.monotonic()))
        finally:
            client.close()

    def cut_batches(self) -> int:
        """Move every source's buffered readings into the outbox; return how many batches were stored."""
        stored = 0
        for buf in self.buffers.values():
            if not buf.parts:
                continue
            ts, channel, value, flag = buf.columns()
            try:
                self.outbox.put(lambda seq: ReadingBatch.from_columns(
                    agent_id=self.cfg.agent.id, source_id=buf.source_id, seq=seq, channels=buf.channels,
                    ts_ns=ts, channel=channel, value=value, flag=flag).encode())
            except OutboxFull as exc:
                if not self.outbox_full:
                    log.error("ALARM outbox full: %s; readings stay in memory until it drains", exc)
                self.outbox_full = True
                self.metrics.outbox_full.set(1)
                return stored
            buf.parts.clear()
            stored += 1
            self.metrics.batches_stored.inc()
        self.outbox_full = False
        self.metrics.outbox_full.set(0)
        self._observe_outbox()
        return stored

    def _observe_outbox(self) -> None:
        self.metrics.outbox_batches.set(self.outbox.count)
        self.metrics.outbox_bytes.set(self.outbox.size_bytes)

    async def _batcher(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.agent.batch_interval_s)
            self.cut_batches()

    def _drain(self) -> int:
        with self._drain_lock:
            sent = self.uplink.drain()
            if sent:
                self.metrics.batches_sent.inc(sent)
                self.metrics.last_send.set(time.time())
            self._observe_outbox()
            return sent

    async def _uplink(self) -> None:
        backoff = 1.0
        while True:
            sent = await asyncio.to_thread(self._drain)
            if sent == 0 and self.outbox.count:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
            else:
                backoff = 1.0
                await asyncio.sleep(0.2)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then cut what is buffered and make one last attempt to send it."""
        tasks = [asyncio.create_task(self._poll(*d)) for d in self._devices]
        tasks += [asyncio.create_task(self._batcher()), asyncio.create_task(self._uplink())]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.cut_batches()
            await asyncio.to_thread(self._drain)
            with self._drain_lock:
                self.uplink.close()
