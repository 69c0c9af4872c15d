"""The stream worker: a faust-streaming app, a thin shell around :class:`~streams.core.processor.PartitionProcessor`.

Per readings partition the worker holds one processor. A faust agent takes events in chunks
(``noack_take``: nothing is acknowledged on reading), hands each partition's messages to its processor
(numpy, in a thread so the event loop keeps heart-beating), and sends what comes out: hourly records to
the compacted hourly topic (key ``source/hour``), monthly totals to the compacted monthly topic (key
``source/YYYY-MM``), sequence gap reports to the compacted gaps topic (key agent), rejected batches to the
dead-letter topic with their original bytes and headers, minute means, hourly records and monthly totals to InfluxDB
when configured.

Checkpoints make it exactly-once in effect. Every ``snapshot_interval_s`` the worker writes each
processor's snapshot, which contains the next input offset, to partition *p* of the compacted state topic,
waits for Kafka's acknowledgement, and only then acknowledges the events it covers, so the offset faust
commits never passes the snapshot. A worker that starts, or is assigned a partition, loads the latest
snapshot of that partition and skips events below its offset; events between the committed offset and
the snapshot are therefore never counted twice, and events after it are replayed into the same state.
Outputs produced between the snapshot and a crash are produced again identically on replay (same
revision, same key): the compacted topic and InfluxDB keep one copy. Faust table writes are not used:
faust refuses them inside ``take()`` (faust-streaming issue #497).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING

from ingest.batches import KeyRing, dead_letter_headers
from schemas import envelope
from streams.config import WorkerConfig, load_sites
from streams.core.backoff import Backoff
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.runtime import kafka_io
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.state_store import PIECE_BYTES, KafkaLog, PartitionState, read_manifest, read_partition_state

if TYPE_CHECKING:
    import faust

__all__ = ["StreamWorker", "checkpoint_lag"]

log = logging.getLogger(__name__)

#: The pace of retrying counted output (Kafka sends, state saves, InfluxDB writes) while a service is away.
RETRY = Backoff(initial_s=0.5, max_s=30.0)

class StreamWorker:
    def __init__(self, cfg: WorkerConfig, sink=None) -> None:
        import faust

        self.cfg = cfg
        self.registry = Registry(load_sites(cfg.sites))
        self.keys = KeyRing(cfg.keys_dir)
        self.sink = sink
        self.metrics = WorkerMetrics()  # served by `cems stream worker` when metrics_port is set
        self.app = faust.App(
            cfg.app_id, **cfg.kafka.faust_settings(), store="memory://", web_enabled=False, datadir=str(cfg.datadir),
            # state pieces are sent through faust but read with kafka-python (streams/runtime/state_store.py): the
            # readings consumer keeps faust's default fetch size
            consumer_auto_offset_reset="earliest", producer_max_request_size=2 * PIECE_BYTES,
            topic_allow_declare=False, topic_disable_leader=True,
            stream_wait_empty=False,  # unacknowledged events are the next snapshot's business, not shutdown's
            broker_session_timeout=cfg.session_timeout_s, broker_heartbeat_interval=cfg.session_timeout_s / 5,
        )
        t = cfg.topics
        self.readings, self.dlq = self._raw_topic(t.readings), self._raw_topic(t.dead_letter)
        self.hourly, self.state = self._raw_topic(t.hourly), self._raw_topic(t.state)
        self.monthly, self.gaps = self._raw_topic(t.monthly), self._raw_topic(t.gaps)
        self.processors: dict = {}  # TP -> PartitionProcessor
        self.states: dict = {}  # TP -> PartitionState (the manifest of its saved state)
        self.pending: dict = {}  # TP -> events processed but not yet acknowledged (covered by the next snapshot)
        self._sink_outs: list = []  # processor outputs for the sink, written by the next save
        self._next_checkpoint = 0.0
        self._busy: asyncio.Lock | None = None  # handle() and a state capture never interleave (created in the loop)
        self._saving: asyncio.Task | None = None  # the save under way, if any
        self.app.agent(self.readings, name="cems-readings")(self._agent)
        self.app.timer(cfg.snapshot_interval_s, name="cems-checkpoint")(self._tick)
        # faust types a receiver as (sender, *args, signal=...); this signal passes the revoked set as an argument
        self.app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]

    def _raw_topic(self, name: str) -> faust.TopicT:
        """A topic of bytes keys and values, as they are on the wire (the records carry their own encoding)."""
        return self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # -- faust agent --------------------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        if self._busy is None:
            self._busy = asyncio.Lock()
        return self._busy

    async def _agent(self, stream) -> None:
        async for events in stream.noack_take(self.cfg.chunk, within=self.cfg.within_s):
            async with self._lock():
                await self.handle(events)
                if time.monotonic() >= self._next_checkpoint:
                    self._start_save(await self._capture())

    async def _tick(self) -> None:
        """Checkpoint on a timer too: when events stop coming, the ones already handled must still be
        acknowledged (faust holds back a stream whose events stay unacknowledged)."""
        self.metrics.set_lag(self._lags())
        if time.monotonic() >= self._next_checkpoint and any(self.pending.values()):
            async with self._lock():
                self._start_save(await self._capture())

    async def handle(self, events) -> None:
        by_tp: dict = {}
        for e in events:
            by_tp.setdefault(e.message.tp, []).append(e)
        for tp, evs in by_tp.items():
            proc = self.processors.get(tp) or await self._load(tp)
            msgs = [Message(e.message.offset, e.message.value, _headers(e.message.headers),
                            round(e.message.timestamp * 1000)) for e in evs if e.message.offset >= proc.next_offset]
            if msgs:
                out = await asyncio.to_thread(proc.process, msgs)
                self.metrics.handled(tp.partition, out)
                await self._emit(tp, out)
            self.pending.setdefault(tp, []).extend(evs)

    async def _emit(self, tp, out) -> None:
        sends = []
        for m, rejection in out.dead_letters:
            headers = list(m.headers.items()) + dead_letter_headers(
                rejection, topic=tp.topic, partition=tp.partition, offset=m.offset)
            sends.append((self.dlq, {"key": m.headers.get(envelope.AGENT), "value": m.value, "headers": headers}))
            log.warning("dead-lettered %s/%d/%d: %s (%s)", tp.topic, tp.partition, m.offset, rejection.reason,
                        rejection.detail, extra={"event": "dead_letter", "reason": rejection.reason})
        sends += [(self.hourly, {"key": r.key.encode(), "value": r.to_json()}) for r in out.hourly]
        sends += [(self.monthly, {"key": r.key.encode(), "value": r.to_json()}) for r in out.monthly]
        sends += [(self.gaps, {"key": r.key.encode(), "value": r.to_json()}) for r in out.gaps]
        if self.sink is not None and (out.hourly or out.monthly or out.minutes is not None):
            self._sink_outs.append(out)  # written by the next save, outside the handling lock
        await self._deliver(sends)
        for agent, holes in out.holes.items():
            log.warning("agent %s: %s", agent, f"batches missing: {holes[:5]}" if holes else "sequence complete again",
                        extra={"event": "sequence_holes", "agent": agent, "holes": holes[:20]})
        if out.duplicates:
            log.info("%d duplicate batch(es) ignored on %s/%d", out.duplicates, tp.topic, tp.partition,
                     extra={"event": "duplicates", "count": out.duplicates})

    def _write_sink(self, outs: list) -> None:
        """The hourly records, monthly totals and minutes closed in the chunks a save covers, in order, then flushed
        (each minute is closed once: a rewrite after a failure is a replay of identical points)."""
        for out in outs:
            self.sink.write_hourly(out.hourly)
            self.sink.write_monthly(out.monthly)
            if out.minutes is not None and len(out.minutes):
                self.sink.write_minutes(minute_rows(self.registry, out.minutes))
        self.sink.flush()

    async def _deliver(self, sends: list) -> None:
        """Send and wait for Kafka's acknowledgement, retrying while the broker is away: the state already
        counts these outputs, so they must get out before anything is acknowledged (a resend is harmless:
        same key, same content)."""
        async def once():
            futures = [await topic.send(**kwargs) for topic, kwargs in sends]
            await asyncio.gather(*futures)

        if sends:
            await self._retry(f"sending {len(sends)} message(s)", once, output="kafka")

    async def _retry(self, what: str, attempt, *, output: str) -> None:
        """Until it succeeds: the broker or the database may be away, and counted output is never dropped. Always
        outside the handling lock (saves run in the background), at the project's one retry pace."""
        for n in itertools.count():
            try:
                await attempt()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.output_failures.labels(output).inc()
                delay = RETRY.delay(n)
                log.warning("%s failed (%s: %s); retrying in %.1f s", what, type(exc).__name__, exc, delay,
                            extra={"event": "output_retry"})
                await asyncio.sleep(delay)

    async def checkpoint(self) -> None:
        """Save everything handled so far and wait until it is saved and acknowledged (at shutdown: a clean
        handover, the next owner replays nothing)."""
        if self._saving is not None:
            await self._saving
        async with self._lock():
            captured = await self._capture()
        if captured is not None:
            await self._save(*captured)

    async def _capture(self):
        """Under the lock: the changed state segments of every partition with unacknowledged events, and those
        events (None while the previous save is still under way: saves of a partition go in order)."""
        if self._saving is not None and not self._saving.done():
            return None
        captured = []
        for tp, evs in self.pending.items():
            if evs and tp in self.processors:
                proc = self.processors[tp]
                captured.append((tp, self.states[tp], await asyncio.to_thread(proc.checkpoint), proc.next_offset))
        events, self.pending = self.pending, {}
        outs, self._sink_outs = self._sink_outs, []
        self._next_checkpoint = time.monotonic() + self.cfg.snapshot_interval_s
        return captured, events, outs

    def _start_save(self, captured) -> None:
        """Save in the background: handling goes on while Kafka acknowledges the state (its events are acked
        only after that, so a crash meanwhile replays them against the previous state)."""
        if captured is not None:
            self._saving = asyncio.create_task(self._save(*captured))

    async def _save(self, captured, events, outs) -> None:
        """The sink's points of these events first, then each partition's state, then the acknowledgements: an
        event is acked only once everything it produced is stored."""
        started = time.perf_counter()
        if outs:
            await self._retry("InfluxDB write", lambda: asyncio.to_thread(self._write_sink, outs), output="influxdb")
        await asyncio.gather(*(
            self._retry(f"saving the state of {tp.topic}/{tp.partition}",
                        lambda s=state, c=changed, o=offset, f=self._state_sender(tp.partition): s.save(c, o, f),
                        output="state")
            for tp, state, changed, offset in captured))
        for evs in events.values():
            for e in evs:
                e.ack()
        self.metrics.checkpointed(time.perf_counter() - started)

    def _lags(self) -> dict[int, int]:
        """Per readings partition held here, the messages after the last one handled (for the metrics)."""
        lags = {}
        for tp, proc in self.processors.items():
            try:
                high = self.app.consumer.highwater(tp)
            except Exception:  # moved away meanwhile, or nothing fetched yet
                continue
            if high is not None:
                lags[tp.partition] = max(0, high - proc.next_offset)
        return lags

    def _state_sender(self, partition: int):
        async def send(key: bytes, value: bytes | None) -> int:
            future = await self.state.send(key=key, value=value, partition=partition)
            return (await future).offset
        return send

    async def _load(self, tp) -> PartitionProcessor:
        proc = PartitionProcessor(self.registry, self.keys, self.cfg.processing)
        prefix = f"{tp.topic}/{tp.partition}"
        loaded = await asyncio.to_thread(self._read_state, tp.partition, prefix)
        self.states[tp], segments = loaded or (PartitionState(prefix), None)
        if segments is not None:
            proc.restore(segments)
        log.info("partition %s/%d: %s", tp.topic, tp.partition,
                 f"resumed at offset {proc.next_offset}" if loaded else "no saved state, starting empty",
                 extra={"event": "partition_loaded", "partition": tp.partition, "offset": proc.next_offset})
        self.processors[tp] = proc
        return proc

    def _read_state(self, partition: int, prefix: str):
        log = KafkaLog(self.cfg.kafka.producer_config(), self.cfg.topics.state, partition)
        try:
            return read_partition_state(log, prefix)
        finally:
            log.close()

    async def _revoked(self, app, revoked, **kwargs) -> None:
        """A partition that moves away: finish the save under way (its next owner must find it complete, not
        see it land later), then forget the partition; its next owner loads the last saved state."""
        if self._saving is not None and not self._saving.done():
            await asyncio.wait([self._saving], timeout=self.cfg.session_timeout_s)
        for tp in revoked:
            self.processors.pop(tp, None)
            self.states.pop(tp, None)
            self.pending.pop(tp, None)


def checkpoint_lag(cfg: WorkerConfig) -> dict[int, int]:
    """Per readings partition, the messages not yet covered by the newest saved state (0: fully checkpointed).

    The lag that matters for exactly-once: what a worker killed now would replay."""
    from kafka import TopicPartition

    consumer = kafka_io.consumer(cfg.kafka)
    try:
        partitions = sorted(consumer.partitions_for_topic(cfg.topics.readings) or ())
        ends = consumer.end_offsets([TopicPartition(cfg.topics.readings, p) for p in partitions])
    finally:
        consumer.close()
    lag = {}
    for tp, end in ends.items():
        log = KafkaLog(cfg.kafka.producer_config(), cfg.topics.state, tp.partition)
        try:
            state = read_manifest(log, f"{tp.topic}/{tp.partition}")
        finally:
            log.close()
        lag[tp.partition] = max(0, end - (state.next_offset if state else 0))
    return lag


def minute_rows(registry: Registry, table):
    """Closed minutes (series numbers) -> the sink's rows (entity, source, channel, quantity, unit)."""
    import numpy as np

    from streams.sinks.line_protocol import MinuteRows

    series = table.series
    sources = np.array([s.id for s in registry.sources], dtype=object)[registry.source_of_series[series]]
    channels = [registry.channel_of_series[i] for i in series.tolist()]
    return MinuteRows(
        entity_id=np.array([registry.entity_of[s] for s in sources], dtype=object), source_id=sources,
        channel_id=np.array([c.id for c in channels], dtype=object),
        quantity=np.array([c.quantity for c in channels], dtype=object),
        unit=np.array([c.unit for c in channels], dtype=object), start_ns=table.start_ns, mean=table.mean,
        valid=table.valid, label=table.label, n=table.sample_flags.sum(axis=1))


def _headers(headers) -> dict[str, bytes]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, dict) else headers
    return {(k.decode() if isinstance(k, bytes) else k): bytes(v) for k, v in items}
