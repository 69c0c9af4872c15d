"""Stream processor and worker throughput at the national shape (issue 5): alone, draining a backlog, in real time.

    python bench/bench_stream.py [--sources 20000] [--seconds 30] [--broker 127.0.0.1:19092]

20,000 sources x 8 channels at 1 Hz, each source sending one signed batch every 5 s (40 readings), as one
partition would hold them. Measures :meth:`PartitionProcessor.process` (signature check, decode, sequence
dedupe, exact minute aggregation) in chunks of 2,000 messages, against the same readings absorbed by the
kernels directly (the floor the processor cannot beat). Target of issue 5: 160,000 readings/s in real time.

With ``--broker`` it also drains the same messages, produced beforehand as a backlog, through the real
broker and one in-process faust worker (2 partitions), timed until the worker's snapshots cover every offset:
the sustained rate one worker reaches, broker, faust, checkpoints and compacted outputs included.

    python bench/bench_stream.py --realtime 120 [--batch-s 5] [--sources 20000] [--partitions 2] [--producers 1]
                                 [--preloaded-sites] [--null-worker] [--warmup 10] [--drain 60]

Real time through the broker (``--broker``, default 127.0.0.1:19092; fresh uuid-tagged topics, deleted
afterwards). Producer processes (kafka-python, linger 10 ms) send the national shape as it happens: every
source one signed batch every ``--batch-s`` seconds holding its previous ``--batch-s`` seconds of 1-Hz
readings (event time = now, Kafka timestamp = produce time), sources staggered over 0.1-s ticks so the load is
smooth. Each producer encodes one template batch per source up front and per send only restamps it (sequence
number, timestamps, CRC) and signs it, so producing costs little CPU; it reports the rate it reached and how
far it fell behind its schedule. One faust worker runs in this process (:class:`StreamWorker`, timed by a
subclass). Reported, over the steady state (after ``--warmup`` s, while producing): readings/s and
messages/s handled, the worker process's CPU; consumer lag sampled every second (end offsets minus handled
offsets; and minus the offsets the last snapshots cover) with its trend and whether it caught up within
``--drain`` s after producing stopped; latency from produce to the updated minute state (``handle()``
returned) and to the covering checkpoint; process() cost against the open state; bytes each partition's
checkpoint writes (the segments that changed), checkpoint() and whole-checkpoint times. A gateway
holding readings for its batch adds up to ``--batch-s`` s before the produce time: reported, not measured.

``--null-worker``: handle() only collects events for acknowledgement, which measures faust and Kafka alone.
``--preloaded-sites``: the worker gets the site models instead of parsing the site files, which takes
minutes at 20,000 sources (reported without it). Profile the worker from outside while it runs, e.g.
``py-spy record --pid PID --gil --format raw -o w.raw`` (the PID is printed), then
``python bench/pyspy_summary.py w.raw``.

Caution: with 20,000 sources on 2 partitions each state message is tens of MiB (about 15 MiB more per minute
of data). A broker with a small heap (the local one: -Xmx768m, which also bounds its direct buffers) runs out
of direct buffer memory after a few such runs, or within one run past 4 minutes, and then stops answering
until restarted. Keep runs to about 2 minutes at that scale, or use ``--partitions 12``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.batches import KeyRing
from schemas import ReadingBatch
from schemas.site import Entity
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.kernels import Accumulator
from streams.kernels.aggregate import MINUTE_NS

T0 = 1_767_225_600 * 10**9
CHANNELS = [("co2", "a05001", "%"), ("o2", "a19001", "%"), ("moisture", "a01014", "%"), ("temp", "a01012", "degC"),
            ("pstatic", "a01013", "kPa"), ("velocity", "a01011", "m/s"), ("fuel_rate", "xf0001", "t/h"),
            ("fuel_total", "xf0003", "t")]
TYPICAL = np.array([12.0, 8.0, 9.0, 96.0, -0.45, 14.0, 10.0, 5000.0])
PER_ENTITY = 50


def registry(n_sources: int) -> Registry:
    channels = [{"id": c, "quantity": q, "unit": u, **({"basis": "dry"} if q in ("a05001", "a19001") else {})}
                for c, q, u in CHANNELS]
    entities = [Entity.model_validate({"id": f"e{e}", "name": f"e{e}", "sector": "cement", "sources": [
        {"id": f"s{e * PER_ENTITY + k}", "name": "s", "duct_area_m2": 12.57, "velocity_field_coefficient": 1.0,
         "ambient_pressure": {"kpa": 100.8}, "channels": channels}
        for k in range(min(PER_ENTITY, n_sources - e * PER_ENTITY))]}) for e in range(-(-n_sources // PER_ENTITY))]
    return Registry(entities)


def messages(n_sources: int, seconds: int, key: bytes) -> list[Message]:
    rng = np.random.default_rng(1)
    out: list[Message] = []
    ch = np.tile(np.arange(len(CHANNELS), dtype=np.uint16), 5)
    for start in range(0, seconds, 5):
        ts = np.repeat(T0 + np.arange(start, start + 5, dtype=np.int64) * 10**9, len(CHANNELS))
        for s in range(n_sources):
            value = np.tile(TYPICAL, 5) * (1 + 0.01 * rng.standard_normal(ch.size))
            data = ReadingBatch.from_columns(agent_id=f"gw{s}", source_id=f"s{s}", seq=start // 5, channels=CHANNELS,
                                             ts_ns=ts, channel=ch, value=value,
                                             flag=np.zeros(ch.size, np.uint8)).encode()
            headers = {"cems-agent": f"gw{s}".encode(), "cems-seq": str(start // 5).encode(),
                       "cems-sig": hmac.new(key, data, hashlib.sha256).digest()}
            out.append(Message(len(out), data, headers, (T0 + (start + 5) * 10**9) // 10**6))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=20_000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--broker", default=None, help="Also drain the messages through this Kafka broker.")
    ap.add_argument("--realtime", type=float, default=None, metavar="SECONDS",
                    help="Produce the national shape in real time for SECONDS and measure one worker (only this).")
    ap.add_argument("--batch-s", type=int, default=5, help="Realtime: seconds of readings per agent batch.")
    ap.add_argument("--partitions", type=int, default=2, help="Realtime: readings partitions.")
    ap.add_argument("--producers", type=int, default=1, help="Realtime: producer processes.")
    ap.add_argument("--warmup", type=float, default=10.0, help="Realtime: seconds left out of the statistics.")
    ap.add_argument("--drain", type=float, default=60.0, help="Realtime: longest wait for the worker afterwards.")
    ap.add_argument("--null-worker", action="store_true",
                    help="Realtime: handle() only takes and acknowledges events (the faust and Kafka floor).")
    ap.add_argument("--preloaded-sites", action="store_true",
                    help="Realtime: hand the worker the site models instead of parsing the site files (minutes).")
    args = ap.parse_args()
    key = b"k" * 32
    if args.realtime:
        import asyncio

        asyncio.run(realtime(args.broker or "127.0.0.1:19092", registry(args.sources), key, args))
        return
    t = time.perf_counter()
    reg = registry(args.sources)
    msgs = messages(args.sources, args.seconds, key)
    print(f"setup: {len(msgs):,} messages in {time.perf_counter() - t:.1f} s")
    n_readings = len(msgs) * 5 * len(CHANNELS)

    proc = PartitionProcessor(reg, KeyRing(keys={f"gw{s}": key for s in range(args.sources)}))
    t = time.perf_counter()
    for i in range(0, len(msgs), 2000):
        out = proc.process(msgs[i : i + 2000])
        assert not out.dead_letters
    processor_s = time.perf_counter() - t

    # floor: the same readings, already decoded, absorbed by the kernels in the same chunks
    from schemas import decode_batch

    chunks = []
    for i in range(0, len(msgs), 2000):
        bs = [decode_batch(m.value) for m in msgs[i : i + 2000]]
        chunks.append([np.concatenate(c) for c in zip(*[(reg.index[b.source_id] * 8 + b.channel.astype(np.int64),
                                                          b.ts_ns, b.value, b.flag) for b in bs], strict=True)])
    acc = Accumulator.empty(MINUTE_NS)
    t = time.perf_counter()
    for series, ts, value, flag in chunks:
        acc = acc.absorb_readings(series, ts, value, flag, bounds=reg.bounds)
    kernel_s = time.perf_counter() - t

    print(f"stream processor | {args.sources:,} sources x {len(CHANNELS)} channels, {args.seconds} s at 1 Hz, "
          f"5-s batches: {len(msgs):,} messages, {n_readings:,} readings")
    print(f"processor        : {n_readings / processor_s:12,.0f} readings/s  "
          f"{len(msgs) / processor_s:9,.0f} messages/s (target 160,000 readings/s)")
    print(f"kernels only     : {n_readings / kernel_s:12,.0f} readings/s  (same readings pre-decoded: the floor)")
    print(f"per message      : {1e6 * (processor_s - kernel_s) / len(msgs):.1f} us of checks, decode and routing")
    print(f"minute state     : {proc.minutes.nbytes / 2**20:.0f} MiB for {len(proc.minutes):,} open channel-minutes")
    if args.broker:
        import asyncio

        rate = asyncio.run(through_broker(args.broker, reg, msgs, key, args.sources))
        print(f"through Kafka    : {n_readings / rate:12,.0f} readings/s  {len(msgs) / rate:9,.0f} messages/s "
              f"(one faust worker draining a {len(msgs):,}-message backlog, {rate:.1f} s)")


def broker_config(bootstrap: str, reg, key: bytes, n_sources: int, partitions: int):
    """Site files and agent keys in a temporary directory; fresh uuid-tagged topics; the worker config."""
    import tempfile
    import uuid

    import yaml

    from schemas.kafka import KafkaConnection
    from streams.config import Topics, WorkerConfig
    from streams.runtime.topics import create_topics

    tmp = Path(tempfile.mkdtemp(prefix="cems-bench-"))
    (tmp / "keys").mkdir()
    for s in range(n_sources):
        (tmp / "keys" / f"gw{s}.key").write_bytes(key)
    sites = []
    for e, entity in enumerate(reg.entities.values()):
        sites.append(tmp / f"site{e}.yaml")
        sites[-1].write_text(yaml.safe_dump(entity.model_dump(mode="json"), sort_keys=False))
    tag = uuid.uuid4().hex[:8]
    cfg = WorkerConfig(kafka=KafkaConnection(bootstrap_servers=bootstrap), app_id=f"cems-bench-{tag}",
                       topics=Topics(readings=f"b.{tag}.readings", dead_letter=f"b.{tag}.dlq",
                                     hourly=f"b.{tag}.hourly", state=f"b.{tag}.state"),
                       sites=[tmp], keys_dir=tmp / "keys", datadir=tmp / "faust")
    create_topics(cfg, partitions=partitions)
    return cfg


def delete_topics(cfg) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**cfg.kafka.producer_config())
    try:
        admin.delete_topics(list(cfg.topics.model_dump().values()))
    finally:
        admin.close()


async def through_broker(bootstrap: str, reg, msgs, key: bytes, n_sources: int) -> float:
    import asyncio

    from kafka import KafkaProducer

    from streams.runtime.worker import StreamWorker, checkpoint_lag

    cfg = broker_config(bootstrap, reg, key, n_sources, partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20)
    t = time.perf_counter()
    for m in msgs:
        producer.send(cfg.topics.readings, key=m.headers["cems-agent"], value=m.value,
                      headers=list(m.headers.items()), timestamp_ms=m.timestamp_ms)
    producer.flush()
    producer.close()
    print(f"produced backlog : {len(msgs):,} messages in {time.perf_counter() - t:.1f} s (kafka-python)")
    worker = StreamWorker(cfg)
    t = time.perf_counter()
    await worker.app.start()
    try:
        while any((await asyncio.to_thread(checkpoint_lag, cfg)).values()):
            await asyncio.sleep(1.0)
        return time.perf_counter() - t
    finally:
        await worker.app.stop()


# -- realtime ---------------------------------------------------------------------------------------

TICKS = 10  # producer ticks per second: sources are staggered over batch_s * TICKS ticks


def restamp(template: bytes, seq: int, shift_ns: int) -> bytes:
    """``template`` with another sequence number and every timestamp shifted by ``shift_ns``, CRC redone
    (wire layout version 1, ``schemas/batch.py``: seq at byte 16, ts_ns column right after the metadata)."""
    buf = bytearray(template)
    n, meta_len = struct.unpack_from("<II", buf, 8)
    struct.pack_into("<Q", buf, 16, seq)
    ts = np.frombuffer(buf, "<i8", n, 24 + meta_len)
    ts += shift_ns
    del ts
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(memoryview(buf)[:-4]))
    return bytes(buf)


def produce(bootstrap: str, topic: str, sources: list[int], batch_s: int, seconds: float, key: bytes,
            go, report, linger_ms: int = 10) -> None:
    """Producer process: one template batch per source, then in real time from the start time ``go`` sends,
    each restamped (seq = round, readings = the batch_s seconds before the send) and signed."""
    from kafka import KafkaProducer

    from schemas import decode_batch

    rng = np.random.default_rng(sources[0] if sources else 0)
    ch = np.tile(np.arange(len(CHANNELS), dtype=np.uint16), batch_s)
    ts = np.repeat(T0 + (np.arange(batch_s, dtype=np.int64) - batch_s) * 10**9, len(CHANNELS))  # the s before T0
    period = batch_s * TICKS
    templates: dict[int, bytes] = {}  # source -> its batch, to restamp
    due: list[list[tuple[int, bytes]]] = [[] for _ in range(period)]  # tick of the period -> (source, agent)
    for s in sources:
        value = np.tile(TYPICAL, batch_s) * (1 + 0.01 * rng.standard_normal(ch.size))
        templates[s] = ReadingBatch.from_columns(agent_id=f"gw{s}", source_id=f"s{s}", seq=0, channels=CHANNELS,
                                                 ts_ns=ts, channel=ch, value=value,
                                                 flag=np.zeros(ch.size, np.uint8)).encode()
        due[s % period].append((s, f"gw{s}".encode()))
    b = decode_batch(restamp(templates[sources[0]], 7, 10**9))  # the restamped bytes are a valid batch
    assert b.seq == 7 and np.array_equal(b.ts_ns, ts + 10**9)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, batch_size=1 << 19, acks=1)
    producer.partitions_for(topic)  # metadata before the clock starts
    report.put(("ready", len(sources)))
    start = go.get()
    cpu0, sent, behind = time.process_time(), 0, 0.0
    for k in range(int(seconds * TICKS)):
        wait = start + k / TICKS - time.time()
        if wait > 0:
            time.sleep(wait)
        behind = max(behind, -wait)
        seq, phase = divmod(k, period)
        shift = int(start * 1e9) + k * (10**9 // TICKS) - T0
        for s, agent in due[phase]:
            data = restamp(templates[s], seq, shift)
            producer.send(topic, key=agent, value=data, headers=[
                ("cems-agent", agent), ("cems-seq", str(seq).encode()),
                ("cems-sig", hmac.new(key, data, hashlib.sha256).digest())])
            sent += 1
    producer.flush()
    report.put(("done", sent, time.time() - start, behind, time.process_time() - cpu0))
    producer.close()


def _machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat; 0 where there is none)."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _stats(x) -> str:
    x = np.asarray(x, dtype=float)
    if not x.size:
        return "n/a"
    return f"p50 {np.percentile(x, 50):6.2f} s  p99 {np.percentile(x, 99):6.2f} s  max {x.max():6.2f} s"


def timed_worker(null: bool = False):
    """A :class:`StreamWorker` that records, per handled event, the latency from its Kafka timestamp (the produce
    time) to the updated minute state, the same to the snapshot covering it, and every process() and snapshot()
    call. ``null``: handle() only collects events for acknowledgement (the faust and Kafka floor)."""
    from streams.runtime.worker import StreamWorker

    class Timed(StreamWorker):
        def __init__(self, cfg) -> None:
            super().__init__(cfg)
            self.latency: list[tuple[np.ndarray, np.ndarray]] = []  # (produced at, to the minute state) [s]
            self.durable: list[tuple[np.ndarray, np.ndarray]] = []  # (produced at, to the saved state) [s]
            self.calls: list[tuple[float, int, float, int, int, int, int]] = []  # process() calls
            self.snaps: list[tuple[float, int, float, int]] = []  # checkpoint() calls
            self.checkpoints: list[tuple[float, float]] = []  # saves: (at, duration [s])
            self.position: dict[int, int] = {}  # partition -> next offset handled
            self.covered: dict[int, int] = {}  # partition -> next offset covered by a saved state

        async def handle(self, events) -> None:
            if null:
                for e in events:
                    self.pending.setdefault(e.message.tp, []).append(e)
            else:
                self._time_processors()
                await super().handle(events)
                self._time_processors()  # a partition's processor is created by its first handle()
            for e in events:
                p = e.message.tp.partition
                self.position[p] = max(self.position.get(p, 0), e.message.offset + 1)
            produced = np.array([e.message.timestamp for e in events])
            self.latency.append((produced, time.time() - produced))

        async def _save(self, captured, events, outs) -> None:
            produced = np.array([e.message.timestamp for evs in events.values() for e in evs])
            covered = {tp.partition: max(e.message.offset for e in evs) + 1 for tp, evs in events.items() if evs}
            t = time.perf_counter()
            await super()._save(captured, events, outs)
            self.checkpoints.append((time.time(), time.perf_counter() - t))
            self.durable.append((produced, time.time() - produced))
            self.covered |= covered

        def _time_processors(self) -> None:
            for proc in self.processors.values():
                if "process" in vars(proc):
                    continue
                process, checkpoint = proc.process, proc.checkpoint

                def timed_process(msgs, proc=proc, process=process):
                    cells, t = len(proc.minutes), time.perf_counter()
                    out = process(msgs)
                    self.calls.append((time.time(), len(msgs), time.perf_counter() - t, cells, out.readings,
                                       len(out.dead_letters), out.duplicates))
                    return out

                def timed_checkpoint(proc=proc, checkpoint=checkpoint):
                    t = time.perf_counter()
                    changed = checkpoint()
                    written = sum(len(v) for v in changed.values() if v is not None)
                    self.snaps.append((time.time(), written, time.perf_counter() - t, len(proc.minutes)))
                    return changed

                proc.process, proc.checkpoint = timed_process, timed_checkpoint

    return Timed


class _Warnings(logging.Handler):
    """Counts client warnings: a broker restarted or failing under the run spoils it, and must show."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n, self.first = 0, ""
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger().addHandler(self)
        logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)  # the lag sampler's client, GIL-starved

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1
        self.first = self.first or f"{record.name}: {record.getMessage()}"[:200]


async def realtime(bootstrap: str, reg, key: bytes, args) -> None:
    import asyncio
    import multiprocessing as mp
    import resource
    import shutil

    from kafka import KafkaConsumer, TopicPartition

    from streams.runtime.worker import checkpoint_lag

    warnings = _Warnings()
    n, bs = args.sources, args.batch_s
    cfg = broker_config(bootstrap, reg, key, n, args.partitions)
    ctx = mp.get_context("spawn")  # not fork: this process runs threads (kafka clients)
    report, gos = ctx.Queue(), [ctx.Queue() for _ in range(args.producers)]
    procs = [ctx.Process(target=produce, args=(bootstrap, cfg.topics.readings, list(range(i, n, args.producers)),
                                               bs, args.realtime, key, gos[i], report), daemon=True)
             for i in range(args.producers)]
    for p in procs:
        p.start()
    print(f"realtime         : {n:,} sources x {len(CHANNELS)} channels at 1 Hz, one batch per source every {bs} s "
          f"({bs * len(CHANNELS)} readings): offered {n / bs:,.0f} messages/s, {n * len(CHANNELS):,} readings/s; "
          f"{args.partitions} partitions, {args.producers} producer process(es), worker pid {os.getpid()}"
          + (" (null worker)" if args.null_worker else ""))
    t = time.perf_counter()
    if args.preloaded_sites:  # startup only: the worker parses 12.7 MB of YAML for 20,000 sources otherwise
        import streams.runtime.worker

        parsed = {cfg.sites[0] / f"site{e}.yaml": entity for e, entity in enumerate(reg.entities.values())}

        def preloaded(paths: list[Path]) -> list[Entity]:  # streams.config.load_sites, without the parsing
            return [parsed[f] for p in paths for f in sorted(p.glob("*.yaml"))]

        streams.runtime.worker.load_sites = preloaded
    worker = timed_worker(args.null_worker)(cfg)
    built = time.perf_counter() - t
    await worker.app.start()
    sampler = KafkaConsumer(**cfg.kafka.producer_config(), group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(cfg.topics.readings, p) for p in range(args.partitions)]
    try:
        for _ in range(600):
            if worker.app.consumer.assignment():
                break
            await asyncio.sleep(0.1)
        for _ in procs:
            assert (await asyncio.to_thread(report.get, True, 300))[0] == "ready"
        start = time.time() + 1.0
        for q in gos:
            q.put(start)
        print(f"started          : worker built in {built:.1f} s (site files, keys), assigned and started in "
              f"{time.perf_counter() - t - built:.1f} s; producing from {time.strftime('%H:%M:%S')}", flush=True)
        samples = []  # every second: t, produced, handled, covered by snapshots, CPU s of this process, of the machine
        done, deadline = [], start + args.realtime + args.drain
        while time.time() < deadline:
            await asyncio.sleep(1.0)
            ends = await asyncio.to_thread(sampler.end_offsets, tps)
            ru = resource.getrusage(resource.RUSAGE_SELF)
            samples.append((time.time() - start, sum(ends.values()), sum(worker.position.values()),
                            sum(worker.covered.values()), ru.ru_utime + ru.ru_stime, _machine_busy()))
            while not report.empty():
                done.append(report.get())
            if len(done) == len(procs) and samples[-1][3] >= sum(d[1] for d in done):
                break  # everything produced is handled and covered by a snapshot
        final_lag = await asyncio.to_thread(checkpoint_lag, cfg)
        dlq = sum((await asyncio.to_thread(sampler.end_offsets, [TopicPartition(cfg.topics.dead_letter, 0)])).values())
    finally:
        sampler.close()
        await worker.app.stop()
        for p in procs:
            p.join(5)
        shutil.rmtree(cfg.keys_dir.parent, ignore_errors=True)
        try:
            await asyncio.to_thread(delete_topics, cfg)  # the state topic alone holds gigabytes of snapshots
        except Exception as exc:  # a broker gone away must not hide the measurements
            print(f"could not delete the run's topics ({type(exc).__name__}: {exc})")
    if warnings.n:
        print(f"WARNING          : {warnings.n} client warning(s) during the run, first: {warnings.first}")
    report_realtime(args, cfg, worker, start, np.array(samples), done, final_lag, dlq)


def report_realtime(args, cfg, worker, start: float, samples: np.ndarray, done: list, final_lag, dlq: int) -> None:
    per_msg = args.batch_s * len(CHANNELS)
    t, produced, handled, covered, cpu, busy = samples.T
    lag, snap_lag = produced - handled, produced - covered
    if len(done) == args.producers:
        sent, el = sum(d[1] for d in done), max(d[2] for d in done)
        print(f"producers        : {sent:,} messages in {el:.1f} s = {sent / el:,.0f} messages/s "
              f"{sent * per_msg / el:,.0f} readings/s; worst behind schedule {max(d[3] for d in done):.2f} s; "
              f"producer CPU {sum(d[4] for d in done) / el:.0%} of a core")
    else:
        print(f"producers        : only {len(done)} of {args.producers} finished")
    w = (t >= args.warmup) & (t <= args.realtime + 0.5)  # steady state: after the warm-up, while producing
    i0, i1 = np.flatnonzero(w)[[0, -1]]
    dt = t[i1] - t[i0]
    rate, offered = (handled[i1] - handled[i0]) / dt, (produced[i1] - produced[i0]) / dt
    print(f"worker           : {rate * per_msg:,.0f} readings/s  {rate:,.0f} messages/s processed over "
          f"t={t[i0]:.0f}-{t[i1]:.0f} s (produced meanwhile: {offered:,.0f} messages/s; target 160,000 readings/s = "
          f"{rate * per_msg / 160_000:.0%}); CPU: worker process {(cpu[i1] - cpu[i0]) / dt:.0%} of a core "
          f"({(cpu[i1] - cpu[i0]) / max(handled[i1] - handled[i0], 1) * 1e6:.0f} us per message), whole machine "
          f"{(busy[i1] - busy[i0]) / dt:.0%} of {os.cpu_count()} cores")
    slope = np.polyfit(t[w], lag[w], 1)[0]
    caught = np.flatnonzero((t > args.realtime) & (lag <= 0))
    print(f"consumer lag     : max {lag[w].max():,.0f} messages ({lag[w].max() / max(offered, 1):.1f} s of input), "
          f"at the end of producing {lag[i1]:,.0f}; trend {slope:+,.0f} messages/s "
          + (f"(caught up {t[caught[0]] - args.realtime:.0f} s after producing stopped)" if caught.size
             else "(never caught up within --drain)"))
    print(f"  snapshot lag   : max {snap_lag[w].max():,.0f} messages, at the end of producing {snap_lag[i1]:,.0f}"
          + ("" if args.null_worker else f"; checkpoint_lag() at the end {final_lag}"))
    step = max(1, len(t) // 12)
    print("  time series    : " + "  ".join(f"t={t[i]:.0f}:{lag[i]:,.0f}" for i in range(0, len(t), step)))

    def window(pairs):  # latencies of the events produced after the warm-up, while producing
        produced_at, latency = (np.concatenate(x) for x in zip(*pairs, strict=True)) if pairs else ([], [])
        keep = (np.asarray(produced_at) >= start + args.warmup) & (np.asarray(produced_at) <= start + args.realtime)
        return np.asarray(latency)[keep]

    print(f"latency          : produce -> minute state updated: {_stats(window(worker.latency))}")
    print(f"                   produce -> covered by a snapshot : {_stats(window(worker.durable))}")
    print(f"                   plus the gateway's batching before produce: up to {args.batch_s} s "
          f"(mean {args.batch_s / 2:g} s) per reading")
    if worker.calls:
        c_t, c_n, c_dt, c_cells, c_readings, c_dead, c_dup = np.array(worker.calls).T
        thirds = np.array_split(np.arange(c_t.size), 3)
        print(f"process()        : {c_t.size:,} calls, {c_n.mean():,.0f} messages each; "
              f"{c_dt.sum() / c_n.sum() * 1e6:.0f} us/message overall, by thirds of the run "
              + " / ".join(f"{c_dt[i].sum() / c_n[i].sum() * 1e6:.0f}" for i in thirds)
              + " us (open minute cells " + " / ".join(f"{c_cells[i].mean():,.0f}" for i in thirds)
              + f"); {c_dt.sum() / (c_t[-1] - start):.0%} of wall time; readings {c_readings.sum():,.0f} of "
              f"{c_n.sum() * per_msg:,.0f}, dead letters {c_dead.sum():,.0f} (DLQ topic {dlq}), "
              f"duplicates {c_dup.sum():,.0f}")
    if worker.snaps:
        p_t, p_size, p_dt, _ = np.array(worker.snaps).T
        k_t, k_dt = np.array(worker.checkpoints).T
        late = p_t >= (p_t[0] + p_t[-1]) / 2
        print(f"checkpoints      : {p_t.size} partition saves (every {cfg.snapshot_interval_s:g} s per partition); "
              f"bytes written per save first/median of the second half/max {p_size[0] / 2**20:.1f} / "
              f"{np.median(p_size[late]) / 2**20:.1f} / {p_size.max() / 2**20:.1f} MiB (changed segments only: the "
              f"core with the open minutes, the hours still folding, streams/runtime/state_store.py); checkpoint() "
              f"first/last/max {p_dt[0] * 1e3:.0f} / {p_dt[-1] * 1e3:.0f} / {p_dt.max() * 1e3:.0f} ms; whole "
              f"save (every partition, sent, acked, in the background) median/p90/max {np.median(k_dt) * 1e3:.0f} / "
              f"{np.percentile(k_dt, 90) * 1e3:.0f} / {k_dt.max() * 1e3:.0f} ms, {k_dt.sum() / (k_t[-1] - start):.0%} "
              f"of wall time")

if __name__ == "__main__":
    main()
