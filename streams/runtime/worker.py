"""The stream worker: a faust-streaming app, a thin shell around :class:`~streams.core.processor.PartitionProcessor`.

Per readings partition the worker holds one processor. A faust agent takes events in chunks
(``noack_take``: nothing is acknowledged on reading), hands each partition's messages to its processor
(numpy, in a thread so the event loop keeps heart-beating), and sends what comes out: hourly records to
the compacted hourly topic (key ``source/hour``), monthly totals to the compacted monthly topic (key
``source/YYYY-MM``), sequence gap reports to the compacted gaps topic (key agent), rejected batches to the
dead-letter topic with their original bytes and headers, minute means, hourly records and monthly totals to InfluxDB
when configured.

Checkpoints make it exactly-once in effect. Every ``snapshot_interval_s`` the worker writes, per readings
partition *p* and in one Kafka transaction, the outputs of the events handled since the last checkpoint and the
processor's changed state with the next input offset (partition *p* of the compacted state topic,
``streams/runtime/state_store.py``), commits it, and only then acknowledges the events it covers, so the offset faust
commits never passes the saved state. A worker that starts, or is assigned a partition, loads the latest committed
state of that partition and skips events below its offset; events between the committed offset and the state are
therefore never counted twice, and events after it are replayed into the same state. Outputs are produced again
identically on replay (same revision, same key): the compacted topics and InfluxDB keep one copy. Faust table writes
are not used: faust refuses them inside ``take()`` (faust-streaming issue #497).

Fencing: each partition's transactions go through its :class:`~streams.runtime.state_store.PartitionWriter`, made
when the worker takes the partition on and before it reads the state. A worker frozen past its session timeout (a
"zombie") that wakes and saves finds its writer fenced by its successor's: the save is refused (counted in
``cems_worker_fenced_saves_total``), nothing it wrote is ever read (readers read committed records only), and it drops
the partition until the group assigns it again. InfluxDB is not transactional: the sink's points of a checkpoint are
written after its Kafka writes were accepted and before the commit, so a fenced worker writes none unless it is
frozen in exactly that gap (docs/operations.md, "Fencing").

QA records (``streams/runtime/qa_topic.py``) are read from the compacted QA topic when a partition is loaded and
every :data:`QA_REFRESH_S`; the processors gate the hours they publish from then on by them (``docs/qa.md``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from ingest.batches import KeyRing, dead_letter_headers
from schemas import envelope
from streams.config import WorkerConfig, load_sites
from streams.core.backoff import Backoff
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.core.qa import QaState
from streams.runtime import kafka_io
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.qa_topic import read_records
from streams.runtime.state_store import (
    Fenced,
    KafkaLog,
    PartitionState,
    PartitionWriter,
    read_manifest,
    read_partition_state,
)

if TYPE_CHECKING:
    import faust

__all__ = ["Capture", "StreamWorker", "checkpoint_lag"]

log = logging.getLogger(__name__)

#: How often the QA topic is read again [s].
QA_REFRESH_S = 300.0

#: The pace of retrying counted output (Kafka sends, state saves, InfluxDB writes) while a service is away.
RETRY = Backoff(initial_s=0.5, max_s=30.0)


class Capture(NamedTuple):
    """One partition's part of a checkpoint, taken under the handling lock."""

    tp: Any  # faust TP
    writer: PartitionWriter
    state: PartitionState  # the committed state it builds on
    changed: dict  # segment -> bytes (None: gone), PartitionProcessor.checkpoint()
    next_offset: int
    messages: list  # (topic, send keywords): the outputs since the last checkpoint

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
            # outputs and state go through each partition's transactional writer (streams/runtime/state_store.py),
            # read with kafka-python: the readings consumer keeps faust's default fetch size
            consumer_auto_offset_reset="earliest",
            topic_allow_declare=False, topic_disable_leader=True,
            stream_wait_empty=False,  # unacknowledged events are the next snapshot's business, not shutdown's
            broker_session_timeout=cfg.session_timeout_s, broker_heartbeat_interval=cfg.session_timeout_s / 5,
            monitor=_quiet_monitor(),
        )
        t = cfg.topics
        self.readings = self._raw_topic(t.readings)
        self.processors: dict = {}  # TP -> PartitionProcessor
        self.states: dict = {}  # TP -> PartitionState (the manifest of its committed state)
        self.writers: dict[Any, PartitionWriter] = {}  # TP -> its transactional writer
        self.pending: dict = {}  # TP -> events processed but not yet acknowledged (covered by the next snapshot)
        self.outputs: dict = {}  # TP -> (topic, send keywords) of those events, sent by the next save
        self.sink_outs: dict = {}  # TP -> processor outputs of those events for the sink, written by the next save
        self.held: dict = {}  # TP -> monotonic time until which its events are left alone (moved away or fenced)
        self._next_checkpoint = 0.0
        self._busy: asyncio.Lock | None = None  # handle() and a state capture never interleave (created in the loop)
        self._saving: asyncio.Task | None = None  # the save under way, if any
        self._qa: QaState | None = None  # the QA state of the records on the QA topic, as last read
        self._qa_read = float("-inf")  # monotonic time of that read
        self.app.agent(self.readings, name="cems-readings")(self._agent)
        self.app.timer(cfg.snapshot_interval_s, name="cems-checkpoint")(self._tick)
        # faust types a receiver as (sender, *args, signal=...); this signal passes the revoked set as an argument
        self.app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]
        self.app.on_partitions_assigned.connect(self._assigned)  # type: ignore[arg-type]

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
        acknowledged (faust holds back a stream whose events stay unacknowledged). Read the QA topic when due."""
        self.metrics.set_lag(self._lags())
        if time.monotonic() >= self._next_checkpoint and any(self.pending.values()):
            async with self._lock():
                self._start_save(await self._capture())
        if time.monotonic() - self._qa_read >= QA_REFRESH_S:
            qa = await self._read_qa()
            async with self._lock():
                for proc in self.processors.values():
                    proc.qa = qa

    async def _read_qa(self) -> QaState | None:
        """The QA records of the registered sites on the QA topic, judged; the previous state if they cannot be."""
        self._qa_read = time.monotonic()
        try:
            records = await asyncio.to_thread(read_records, self.cfg)
            mine = [r for r in records if r.site_id in self.registry.entities]
            self._qa = QaState(mine, self.registry, self.cfg.processing.policy) if mine else None
        except Exception as exc:  # a record the policy cannot judge, or Kafka away: keep the state as it was
            log.error("QA records not applied: %s", exc, extra={"event": "qa_refresh_failed"})
        return self._qa

    async def handle(self, events) -> None:
        by_tp: dict = {}
        for e in events:
            by_tp.setdefault(e.message.tp, []).append(e)
        for tp, evs in by_tp.items():
            if tp in self.held:
                if time.monotonic() < self.held[tp]:  # another worker's now (a chunk taken before it moved)
                    continue
                await self._no_successor(tp)
            proc = self.processors.get(tp) or await self._load(tp)
            if proc is None:  # revoked while it was being loaded: its next owner has these events
                continue
            msgs = [Message(e.message.offset, e.message.value, _headers(e.message.headers),
                            round(e.message.timestamp * 1000)) for e in evs if e.message.offset >= proc.next_offset]
            if msgs:
                out = await asyncio.to_thread(proc.process, msgs)
                if self.processors.get(tp) is not proc:  # moved away meanwhile: its next owner replays these
                    continue
                self.metrics.handled(tp.partition, out)
                self._emit(tp, out)
            self.pending.setdefault(tp, []).extend(evs)

    async def _no_successor(self, tp) -> None:
        """A partition fenced two session timeouts ago is still delivered here: no other worker took it (the
        transaction had timed out, e.g. the brokers were away). The consumer has read past the committed state, and
        only a fresh assignment seeks back to it: stop, so that the supervisor restarts the worker."""
        log.error("partition %s/%d: fenced, but no other worker took it over; exiting to rejoin the group",
                  tp.topic, tp.partition, extra={"event": "fenced_without_successor", "partition": tp.partition})
        await self.app.crash(RuntimeError(f"partition {tp.topic}/{tp.partition} fenced without a successor"))
        raise asyncio.CancelledError

    def _emit(self, tp, out) -> None:
        """Queue a processor call's outputs for the partition's next checkpoint (its transaction)."""
        t = self.cfg.topics
        sends = self.outputs.setdefault(tp, [])
        for m, rejection in out.dead_letters:
            headers = list(m.headers.items()) + dead_letter_headers(
                rejection, topic=tp.topic, partition=tp.partition, offset=m.offset)
            sends.append((t.dead_letter, {"key": m.headers.get(envelope.AGENT), "value": m.value, "headers": headers}))
            log.warning("dead-lettered %s/%d/%d: %s (%s)", tp.topic, tp.partition, m.offset, rejection.reason,
                        rejection.detail, extra={"event": "dead_letter", "reason": rejection.reason})
        sends += [(t.hourly, {"key": r.key.encode(), "value": r.to_json()}) for r in out.hourly]
        sends += [(t.monthly, {"key": r.key.encode(), "value": r.to_json()}) for r in out.monthly]
        sends += [(t.gaps, {"key": r.key.encode(), "value": r.to_json()}) for r in out.gaps]
        sends += [(t.indicators, {"key": r.key.encode(), "value": r.to_bytes()}) for r in out.indicators]
        if self.sink is not None and (out.hourly or out.monthly or out.minutes is not None):
            self.sink_outs.setdefault(tp, []).append(out)  # written by the next save, outside the handling lock
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
                captured.append(Capture(tp, self.writers[tp], self.states[tp], await asyncio.to_thread(proc.checkpoint),
                                        proc.next_offset, self.outputs.pop(tp, [])))
        events, self.pending = self.pending, {}
        outs, self.sink_outs = self.sink_outs, {}
        self._next_checkpoint = time.monotonic() + self.cfg.snapshot_interval_s
        return captured, events, outs

    def _start_save(self, captured) -> None:
        """Save in the background: handling goes on while Kafka acknowledges the state (its events are acked
        only after that, so a crash meanwhile replays them against the previous state)."""
        if captured is not None:
            self._saving = asyncio.create_task(self._save(*captured))

    async def _save(self, captured: list[Capture], events: dict, outs: dict) -> None:
        """Per partition, one transaction: its outputs, its state, its manifest; then the sink's points of the
        partitions whose writes were accepted; then the commits; then the acknowledgements, so that an event is
        acked only once everything it produced is stored. A fenced partition is dropped (its successor has it);
        any other failure aborts what is open and tries again, until it succeeds: counted output is never dropped."""
        started = time.perf_counter()
        todo, done = captured, set()
        for n in itertools.count():
            todo = [c for c in todo if self.writers.get(c.tp) is c.writer]  # not moved away meanwhile
            opened = await self._each(todo, self._open)
            failure = next((r for r in opened.values() if isinstance(r, Exception)), None)
            live = [c for c in todo if isinstance(opened.get(c.tp), PartitionState)]
            sink = [o for c in live for o in outs.get(c.tp, ())]
            if failure is None and sink:
                try:
                    await asyncio.to_thread(self._write_sink, sink)
                except Exception as exc:
                    self._failed("InfluxDB write", exc, "influxdb")
                    failure = exc
            if failure is None:
                committed = await self._each(live, lambda c: asyncio.to_thread(c.writer.commit))
                for c in live:
                    if c.tp in committed and committed[c.tp] is None and self.writers.get(c.tp) is c.writer:
                        self.states[c.tp] = opened[c.tp]  # (fenced now: left out of committed; moved away: dropped)
                        done.add(c.tp)
                failure = next((r for r in committed.values() if isinstance(r, Exception)), None)
                todo = [c for c in live if isinstance(committed.get(c.tp), Exception)]
            if failure is None or not todo:
                break
            await asyncio.gather(*(asyncio.to_thread(c.writer.abort) for c in todo))
            await asyncio.sleep(RETRY.delay(n))
        for tp in done:  # a partition fenced or moved away acks nothing: its committed state does not cover them
            for e in events.get(tp, ()):
                e.ack()
        self.metrics.checkpointed(time.perf_counter() - started)

    async def _open(self, c: Capture) -> PartitionState:
        """Begin the partition's transaction: its outputs and its new state, all accepted by Kafka (not yet
        committed). Returns the state it will be once committed."""
        await asyncio.to_thread(c.writer.begin, c.messages)

        async def send(key: bytes, value: bytes | None) -> int:
            return await asyncio.to_thread(c.writer.send_state, key, value)

        return await c.state.write(c.changed, c.next_offset, send)

    async def _each(self, captures: list[Capture], step) -> dict:
        """``step`` for every partition at once: TP -> its result, or its failure. A fenced partition is dropped
        here (and left out of the result); other failures are counted and logged for the caller to retry."""
        results = await asyncio.gather(*(step(c) for c in captures), return_exceptions=True)
        out = {}
        for c, r in zip(captures, results, strict=True):
            if isinstance(r, Fenced):
                self._refused(c.tp, r)
            elif isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r  # cancelled
            else:
                if isinstance(r, Exception):
                    self._failed(f"saving {c.tp.topic}/{c.tp.partition}", r, "kafka")
                out[c.tp] = r
        return out

    def _failed(self, what: str, exc: Exception, output: str) -> None:
        self.metrics.output_failures.labels(output).inc()
        log.warning("%s failed (%s: %s); retrying", what, type(exc).__name__, exc, extra={"event": "output_retry"})

    def _refused(self, tp, exc: Fenced) -> None:
        """Another worker took ``tp`` over while this one could not tell (frozen past its session timeout): its
        save is refused. Drop the partition; leave its events alone until the group assigns it here again (or,
        should no successor appear within two session timeouts, it stops: :meth:`_no_successor`)."""
        self.metrics.fenced_saves.labels(str(tp.partition)).inc()
        log.warning("partition %s/%d: save refused, another worker has taken it over (%s); dropping it",
                    tp.topic, tp.partition, exc, extra={"event": "fenced", "partition": tp.partition})
        self._drop(tp)
        self.held[tp] = time.monotonic() + 2 * self.cfg.session_timeout_s

    def _drop(self, tp) -> None:
        """Forget a partition: its processor, state and unsaved work; its writer is closed."""
        self.processors.pop(tp, None)
        self.states.pop(tp, None)
        self.pending.pop(tp, None)
        self.outputs.pop(tp, None)
        self.sink_outs.pop(tp, None)
        writer = self.writers.pop(tp, None)
        if writer is not None:
            asyncio.get_running_loop().run_in_executor(None, writer.close)

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

    async def _load(self, tp) -> PartitionProcessor | None:
        """Take a partition on: its writer first (fencing every earlier one), then its committed state; the QA
        state as last read (read again when due). None if the partition was revoked while this waited (a rebalance
        callback runs between the awaits): a processor without its writer would crash the next capture."""
        qa = self._qa if time.monotonic() - self._qa_read < QA_REFRESH_S else await self._read_qa()
        proc = PartitionProcessor(self.registry, self.keys, self.cfg.processing, qa)
        prefix = f"{tp.topic}/{tp.partition}"
        writer = await asyncio.to_thread(PartitionWriter, self.cfg.kafka.producer_config(),
                                         f"{self.cfg.app_id}/{prefix}", self.cfg.topics.state, tp.partition)
        if tp in self.held:  # revoked meanwhile
            await asyncio.to_thread(writer.close)
            return None
        self.writers[tp] = writer
        loaded = await asyncio.to_thread(self._read_state, tp.partition, prefix)
        if self.writers.get(tp) is not writer or tp in self.held:  # revoked meanwhile: _revoked's _drop closes it
            return None
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
        """Partitions that move away: save what they handled since the last checkpoint (a clean handover: the
        next owner replays nothing; refused if a successor has them already), then forget them; their next owner
        loads the last committed state.

        First they are held (no chunk takes them on again) and the chunk being handled, if any, ends: a partition
        being loaded makes its writer, and a writer made after the successor's would fence the successor. The group's
        rebalance waits for this callback, so once it returns no writer of these partitions is being made here."""
        for tp in revoked:
            self.held[tp] = math.inf  # a chunk taken before the revocation is the next owner's
        try:
            async with asyncio.timeout(self.cfg.session_timeout_s):
                async with self._lock():
                    pass
        except TimeoutError:
            log.warning("the chunk being handled took longer than %.0f s to end; handing over anyway",
                        self.cfg.session_timeout_s, extra={"event": "handover_timeout"})
        if any(self.pending.get(tp) for tp in revoked):
            try:
                await asyncio.wait_for(self.checkpoint(), timeout=self.cfg.session_timeout_s)
            except TimeoutError:
                log.warning("the handover checkpoint took longer than %.0f s; the next owner replays from the last "
                            "one", self.cfg.session_timeout_s, extra={"event": "handover_timeout"})
        elif self._saving is not None and not self._saving.done():
            await asyncio.wait([self._saving], timeout=self.cfg.session_timeout_s)
        for tp in revoked:
            self._drop(tp)

    async def _assigned(self, app, assigned, **kwargs) -> None:
        for tp in assigned:
            self.held.pop(tp, None)


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


def _quiet_monitor():
    """faust's monitor without its bookkeeping per message and event (four hooks on every one: counters, clocks, a
    stream's name looked up); nothing here reads it (the web views are off; the worker's metrics are its own). Its
    other duties (end offsets, commits) stay."""
    from faust.sensors.monitor import Monitor

    class QuietMonitor(Monitor):
        def on_message_in(self, tp, offset, message) -> None:
            pass

        def on_stream_event_in(self, tp, offset, stream, event) -> None:
            return None

        def on_stream_event_out(self, tp, offset, stream, event, state=None) -> None:
            pass

        def on_message_out(self, tp, offset, message) -> None:
            pass

    return QuietMonitor()


def _headers(headers) -> dict[str, bytes]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, dict) else headers
    return {(k.decode() if isinstance(k, bytes) else k): bytes(v) for k, v in items}
