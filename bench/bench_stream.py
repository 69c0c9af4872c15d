"""Stream processor and worker throughput at the national shape (issue 5): alone, draining a backlog, in real time.

    python bench/bench_stream.py [--sources 20000] [--seconds 30] [--broker 127.0.0.1:19092]

20,000 sources x 8 channels at 1 Hz, each source sending one signed batch every 5 s (40 readings), as one
partition would hold them. Measures :meth:`PartitionProcessor.process` (signature check, decode, sequence
dedupe, exact minute aggregation) in chunks of 2,000 messages, against the same readings absorbed by the
kernels directly (the floor the processor cannot beat). Target of issue 5: 160,000 readings/s in real time.

With ``--broker`` it also drains the same messages, produced beforehand as a backlog, through the real
broker and one in-process faust worker (2 partitions), timed until the worker's snapshots cover every offset:
the sustained rate one worker reaches, broker, faust, checkpoints and compacted outputs included.

    python bench/bench_stream.py --realtime 120 [--batch-s 10|5|1] [--workers 1|2] [--wire 1 3] [--sources 20000]
                                 [--stacks-per-agent 5.4] [--partitions 12] [--producers 1] [--no-influx]
                                 [--null-worker] [--warmup 10] [--drain 60]

Real time through the broker (``--broker``, default 127.0.0.1:19092), today's path and the new one side by side in
one run: ``--wire 1`` (each agent sends one signed batch per source every ``--batch-s`` seconds) and ``--wire 3``
(one agent batch per agent and interval, all its sources as sections: wire format version 3), one after the other,
each through fresh uuid-tagged topics (deleted afterwards), ``--workers`` fresh worker processes (faust
:class:`StreamWorker`, timed by a subclass, handed the site models instead of parsing 20,000 sources' files) and,
unless ``--no-influx``, the InfluxDB sink into a fresh bucket (``CEMS_INFLUX_URL``, ``_TOKEN``, ``_ORG``: the
minute means, hourly records and monthly totals; deleted afterwards). The shape: ``--sources`` stacks x 8 channels
at 1 Hz behind gateways of ``--stacks-per-agent`` stacks on average (5.4: 20,000 stacks at about 3,700 entities, an
assumption: 3,704 agents of 5 or 6 stacks). Producer processes (kafka-python, linger 10 ms) send as it happens,
agents staggered over 0.1-s ticks; each encodes one template per message up front and per send only restamps it
(sequence number, timestamps, CRC) and signs it. Event time runs behind the clock so that an hour closes half-way
through producing (every source publishes an hourly record and a monthly total, as at every hour in service; Kafka
timestamps carry the same offset, and latencies are taken against the real produce time). Reported per path, over
the steady state (after ``--warmup`` s, while producing): readings/s offered and handled, the share of the load kept
up with, consumer lag and its trend, p50/p99 latency from produce to the updated minute state (``handle()``
returned) and to the save that covers it, CPU per worker process (% of a core), µs per message and per reading, the
processor's own share, saves; then one table of both paths. A gateway holding readings for its batch adds up to
``--batch-s`` s before the produce time: reported, not measured.

``--null-worker``: handle() only collects events for acknowledgement, which measures faust and Kafka alone.
Profile a worker from outside while it runs, e.g. ``py-spy record --pid PID --gil --format raw -o w.raw``, then
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
import itertools
import logging
import os
import struct
import subprocess
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
    ap.add_argument("--partitions", type=int, default=12, help="Realtime: readings partitions.")
    ap.add_argument("--workers", type=int, default=1, help="Realtime: worker processes sharing the partitions.")
    ap.add_argument("--wire", type=int, nargs="+", choices=(1, 3), default=[1, 3],
                    help="Realtime: the paths to run, one after the other (1: a batch per source, today's; 3: one "
                         "agent batch per interval).")
    ap.add_argument("--stacks-per-agent", type=float, default=STACKS_PER_AGENT,
                    help="Realtime: stacks behind one gateway agent, on average.")
    ap.add_argument("--no-influx", action="store_true", help="Realtime: without the InfluxDB sink.")
    ap.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                    help="Realtime: py-spy each worker for SECONDS after the warm-up (--gil) and summarise it.")
    ap.add_argument("--producers", type=int, default=1, help="Realtime: producer processes.")
    ap.add_argument("--warmup", type=float, default=10.0, help="Realtime: seconds left out of the statistics.")
    ap.add_argument("--drain", type=float, default=60.0, help="Realtime: longest wait for the worker afterwards.")
    ap.add_argument("--null-worker", action="store_true",
                    help="Realtime: handle() only takes and acknowledges events (the faust and Kafka floor).")
    args = ap.parse_args()
    key = b"k" * 32
    if args.realtime:
        realtime(args.broker or "127.0.0.1:19092", registry(args.sources), key, args)
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

    # the same readings as agent batches (wire version 3): one message per agent of --stacks-per-agent sources
    v3, per_chunk = agent_messages(msgs, args.sources, args.stacks_per_agent, key), round(2000 / args.stacks_per_agent)
    proc = PartitionProcessor(reg, KeyRing(keys={f"ga{a}": key for a in range(len(v3[0][1]))}))
    v3 = [m for _, ms in v3 for m in ms]
    t = time.perf_counter()
    for i in range(0, len(v3), per_chunk):
        out = proc.process(v3[i : i + per_chunk])
        assert not out.dead_letters and out.readings
    agent_s = time.perf_counter() - t
    print(f"processor, v3    : {n_readings / agent_s:12,.0f} readings/s  {len(v3) / agent_s:9,.0f} messages/s "
          f"(agent batches of {args.stacks_per_agent:g} sources on average, {per_chunk} a call: {len(v3):,} messages; "
          f"{processor_s / agent_s:.1f}x the batch per source above)")
    if args.broker:
        import asyncio

        rate = asyncio.run(through_broker(args.broker, reg, msgs, key, args.sources))
        print(f"through Kafka    : {n_readings / rate:12,.0f} readings/s  {len(msgs) / rate:9,.0f} messages/s "
              f"(one faust worker draining a {len(msgs):,}-message backlog, {rate:.1f} s)")


def agent_messages(msgs: list[Message], n_sources: int, per_agent: float, key: bytes):
    """:func:`messages` regrouped: per 5-s interval, one agent batch per agent of its sources' batches."""
    from schemas import decode_batch
    from schemas.agent_batch import AgentBatch

    agents = agents_of(n_sources, per_agent)
    intervals: dict[int, list] = {}
    for m in msgs:
        b = decode_batch(m.value)
        intervals.setdefault(b.seq, []).append((b, m.timestamp_ms))
    out = []
    for seq, got in sorted(intervals.items()):
        by_source = {int(b.source_id[1:]): (b, t) for b, t in got}
        ms = []
        for a, sources in enumerate(agents):
            sections = [ReadingBatch.from_columns(agent_id=f"ga{a}", source_id=f"s{s}", seq=seq, channels=CHANNELS,
                                                  ts_ns=by_source[s][0].ts_ns, channel=by_source[s][0].channel,
                                                  value=by_source[s][0].value, flag=by_source[s][0].flag)
                        for s in sources]
            data = AgentBatch.from_sections(agent_id=f"ga{a}", seq=seq, sections=sections).encode()
            headers = {"cems-agent": f"ga{a}".encode(), "cems-seq": str(seq).encode(),
                       "cems-sig": hmac.new(key, data, hashlib.sha256).digest()}
            ms.append(Message(0, data, headers, by_source[sources[0]][1]))
        out.append((seq, ms))
    offset = 0
    for _, ms in out:  # offsets in log order
        for i, m in enumerate(ms):
            ms[i] = Message(offset, m.value, m.headers, m.timestamp_ms)
            offset += 1
    return out


def broker_config(bootstrap: str, reg, key: bytes, agent_ids: int | list[str], partitions: int,
                  placeholders: bool = False):
    """Site files and agent keys in a temporary directory; fresh uuid-tagged topics; the worker config. ``agent_ids``:
    the agents, or their number (``gw0``, ``gw1``... as :func:`messages` names them).
    ``placeholders``: empty site files, for workers handed the site models (:func:`worker_process`)."""
    import tempfile
    import uuid

    import yaml

    from schemas.kafka import KafkaConnection
    from streams.config import Topics, WorkerConfig
    from streams.runtime.topics import create_topics

    tmp = Path(tempfile.mkdtemp(prefix="cems-bench-"))
    (tmp / "keys").mkdir()
    for agent in [f"gw{s}" for s in range(agent_ids)] if isinstance(agent_ids, int) else agent_ids:
        (tmp / "keys" / f"{agent}.key").write_bytes(key)
    sites = []
    for e, entity in enumerate(reg.entities.values()):
        sites.append(tmp / f"site{e}.yaml")
        sites[-1].write_text("" if placeholders else yaml.safe_dump(entity.model_dump(mode="json"), sort_keys=False))
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

TICKS = 10  # producer ticks per second: agents are staggered over batch_s * TICKS ticks
#: Stacks per gateway agent in the national shape: 20,000 stacks at about 3,700 reporting entities (assumed: the
#: bench has no census of gateways; an entity's stacks behind one gateway).
STACKS_PER_AGENT = 5.4


def agents_of(n_sources: int, per_agent: float) -> list[list[int]]:
    """Sources of each agent: consecutive runs of ``per_agent`` on average (5.4: runs of 5 and 6)."""
    bounds = np.unique(np.minimum(np.floor(np.arange(n_sources + per_agent + 1, step=per_agent)), n_sources))
    return [list(range(int(a), int(b))) for a, b in itertools.pairwise(bounds) if b > a]


def restamp(template: bytes, seq: int, shift_ns: int) -> bytes:
    """``template`` with another sequence number and every timestamp shifted by ``shift_ns``, CRC redone
    (the framing of every wire version, ``schemas/batch.py``: seq at byte 16, ts_ns column right after the
    metadata, all readings of all sections in one column)."""
    buf = bytearray(template)
    n, meta_len = struct.unpack_from("<II", buf, 8)
    struct.pack_into("<Q", buf, 16, seq)
    ts = np.frombuffer(buf, "<i8", n, 24 + meta_len)
    ts += shift_ns
    del ts
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(memoryview(buf)[:-4]))
    return bytes(buf)


def templates_of(agents: list[list[int]], batch_s: int, wire: int, seed: int) -> list[tuple[bytes, list[bytes]]]:
    """Per agent: its id and the template messages of one interval (readings of the batch_s seconds before T0):
    one per source (wire 1) or one agent batch (wire 3)."""
    from schemas.agent_batch import AgentBatch

    rng = np.random.default_rng(seed)
    ch = np.tile(np.arange(len(CHANNELS), dtype=np.uint16), batch_s)
    ts = np.repeat(T0 + (np.arange(batch_s, dtype=np.int64) - batch_s) * 10**9, len(CHANNELS))
    out = []
    for a, sources in enumerate(agents):
        agent = f"ga{a}"
        batches = [ReadingBatch.from_columns(
            agent_id=agent, source_id=f"s{s}", seq=0, channels=CHANNELS, ts_ns=ts, channel=ch,
            value=np.tile(TYPICAL, batch_s) * (1 + 0.01 * rng.standard_normal(ch.size)),
            flag=np.zeros(ch.size, np.uint8)) for s in sources]
        if wire == 3:
            out.append((agent.encode(), [AgentBatch.from_sections(agent_id=agent, seq=0, sections=batches).encode()]))
        else:
            out.append((agent.encode(), [b.encode() for b in batches]))
    return out


def produce(bootstrap: str, topic: str, agents: list[list[int]], batch_s: int, wire: int, seconds: float,
            key: bytes, go, report, linger_ms: int = 10) -> None:
    """Producer process: template messages per agent, then in real time from the start time ``go`` gives (with an
    event-time offset) sends each agent's interval, restamped (readings = the batch_s seconds before the send, plus
    the offset; Kafka timestamp = the send time plus the offset; sequence numbers counting per agent: one per source
    and interval with wire 1, one per interval with wire 3) and signed."""
    from kafka import KafkaProducer

    from schemas.agent_batch import decode_message

    period = batch_s * TICKS
    templates = templates_of(agents, batch_s, wire, agents[0][0] if agents else 0)
    due: list[list[int]] = [[] for _ in range(period)]  # tick of the period -> agents
    for a in range(len(agents)):
        due[a % period].append(a)
    m = decode_message(restamp(templates[0][1][0], 7, 10**9))  # the restamped bytes are a valid message
    assert m.seq == 7 and int(m.sections[0].ts_ns[0]) == T0 - batch_s * 10**9 + 10**9
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, batch_size=1 << 19, acks=1)
    producer.partitions_for(topic)  # metadata before the clock starts
    report.put(("ready", len(agents)))
    start, event_offset_ns = go.get()
    offset_ms = event_offset_ns // 10**6
    cpu0, sent, behind = time.process_time(), 0, 0.0
    for k in range(int(seconds * TICKS)):
        wait = start + k / TICKS - time.time()
        if wait > 0:
            time.sleep(wait)
        behind = max(behind, -wait)
        rnd, phase = divmod(k, period)
        shift = int(start * 1e9) + k * (10**9 // TICKS) - T0 + event_offset_ns
        for a in due[phase]:
            agent, msgs = templates[a]
            for j, template in enumerate(msgs):
                seq = rnd * len(msgs) + j
                data = restamp(template, seq, shift)
                producer.send(topic, key=agent, value=data, timestamp_ms=int(time.time() * 1000) + offset_ms, headers=[
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


def _pct(x, q: float) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.percentile(x, q)) if x.size else float("nan")


def timed_worker(null: bool = False):
    """A :class:`StreamWorker` that records, per handled event, the latency from its Kafka timestamp (the produce
    time) to the updated minute state, the same to the save covering it, and every process() and checkpoint()
    call. ``null``: handle() only collects events for acknowledgement (the faust and Kafka floor)."""
    from streams.runtime.worker import StreamWorker

    class Timed(StreamWorker):
        def __init__(self, cfg, sink=None) -> None:
            super().__init__(cfg, sink=sink)
            self.latency: list[tuple[np.ndarray, np.ndarray]] = []  # (produced at, to the minute state) [s]
            self.durable: list[tuple[np.ndarray, np.ndarray]] = []  # (produced at, to the saved state) [s]
            self.calls: list[tuple[float, int, float, int, int, int, int]] = []  # process() calls
            self.snaps: list[tuple[float, int, float, int]] = []  # checkpoint() calls
            self.checkpoints: list[tuple[float, float]] = []  # saves: (at, duration [s])
            self.position: dict[int, int] = {}  # partition -> next offset handled
            self.covered: dict[int, int] = {}  # partition -> next offset covered by a saved state
            self.event_offset_s = 0.0  # Kafka timestamps are the produce time plus this (event time in the past)

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
            produced = np.array([e.message.timestamp for e in events]) - self.event_offset_s
            self.latency.append((produced, time.time() - produced))

        async def _save(self, captured, events, outs) -> None:
            produced = np.array([e.message.timestamp for evs in events.values() for e in evs]) - self.event_offset_s
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


def worker_process(cfg, n_sources: int, null: bool, influx: dict | None, control, report) -> None:
    """One worker process: the site models handed over (parsing 20,000 sources' files takes minutes), the InfluxDB
    sink when given; every second its handled and saved offsets and CPU time to ``report``; its latencies and calls
    at the end (``control`` says when)."""
    import asyncio
    import queue
    import resource

    import streams.runtime.worker

    warnings = _Warnings()
    reg = registry(n_sources)
    parsed = {cfg.sites[0] / f"site{e}.yaml": entity for e, entity in enumerate(reg.entities.values())}

    def preloaded(paths: list[Path]) -> list[Entity]:  # streams.config.load_sites, without the parsing
        return [parsed[f] for p in paths for f in sorted(p.glob("*.yaml"))]

    streams.runtime.worker.load_sites = preloaded

    async def main() -> None:
        sink = None
        if influx is not None:
            from streams.sinks.influx import InfluxSink

            sink = InfluxSink(influx["url"], influx["token"], influx["org"], influx["bucket"])
        worker = timed_worker(null)(cfg, sink=sink)
        await worker.app.start()
        report.put(("up", os.getpid()))
        try:
            while True:
                try:
                    order = control.get_nowait()
                    if order == "stop":
                        break
                    worker.event_offset_s = order  # the producers' event-time offset [s]
                except queue.Empty:
                    pass
                await asyncio.sleep(1.0)
                ru = resource.getrusage(resource.RUSAGE_SELF)
                report.put(("at", os.getpid(), time.time(), dict(worker.position), dict(worker.covered),
                            ru.ru_utime + ru.ru_stime, _assigned(worker)))
        finally:
            await worker.app.stop()
            if sink is not None:
                sink.close()
        def cat(pairs):
            return tuple(np.concatenate(x) for x in zip(*pairs, strict=True)) if pairs else (np.zeros(0),) * 2

        report.put(("final", os.getpid(), cat(worker.latency), cat(worker.durable), np.array(worker.calls),
                    np.array(worker.snaps), np.array(worker.checkpoints), warnings.n, warnings.first))

    asyncio.run(main())


def _assigned(worker) -> int:
    try:
        return sum(tp.topic == worker.cfg.topics.readings for tp in worker.app.consumer.assignment())
    except Exception:  # not started yet
        return 0


def _influx_settings() -> dict | None:
    names = {"url": "CEMS_INFLUX_URL", "token": "CEMS_INFLUX_TOKEN", "org": "CEMS_INFLUX_ORG"}
    got = {k: os.environ.get(v) for k, v in names.items()}
    return None if None in got.values() else got


def phase(bootstrap: str, reg, key: bytes, args, wire: int, influx: dict | None) -> dict:
    """One path (wire 1: a batch per source; wire 3: an agent batch) through fresh topics, fresh workers and a fresh
    InfluxDB bucket: produce for ``--realtime`` s, wait until everything is saved (at most ``--drain`` s)."""
    import multiprocessing as mp
    import shutil
    import uuid

    from kafka import KafkaConsumer, TopicPartition

    from streams.runtime.worker import checkpoint_lag

    n, bs = args.sources, args.batch_s
    agents = agents_of(n, args.stacks_per_agent)
    cfg = broker_config(bootstrap, reg, key, [f"ga{a}" for a in range(len(agents))], args.partitions,
                        placeholders=True)
    bucket = None
    if influx is not None:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        _bucket(influx, bucket, create=True)
    ctx = mp.get_context("spawn")  # not fork: this process runs threads (kafka clients)
    report, wreport = ctx.Queue(), ctx.Queue()
    gos, controls = [ctx.Queue() for _ in range(args.producers)], [ctx.Queue() for _ in range(args.workers)]
    # event time: an hour ends (plus the allowed lateness) half-way through producing, so every source publishes
    # an hourly record (and its monthly total) during the run, as on every hour in service
    lateness_ns = int(cfg.processing.allowed_lateness_s * 1e9)
    procs = [ctx.Process(target=produce, args=(bootstrap, cfg.topics.readings, agents[i :: args.producers], bs, wire,
                                               args.realtime, key, gos[i], report), daemon=True)
             for i in range(args.producers)]
    sink = influx and {**influx, "bucket": bucket}
    workers = [ctx.Process(target=worker_process, args=(cfg, n, args.null_worker, sink, controls[i], wreport),
                           daemon=True) for i in range(args.workers)]
    msgs_per_s = (n if wire == 1 else len(agents)) / bs
    print(f"\n== wire {wire} ({'one batch per source' if wire == 1 else 'one agent batch per interval'}): "
          f"{len(agents):,} agents, {n:,} sources x {len(CHANNELS)} channels at 1 Hz, {bs}-s batches: offered "
          f"{msgs_per_s:,.0f} messages/s ({n * len(CHANNELS) / msgs_per_s:,.0f} readings each), "
          f"{n * len(CHANNELS):,} readings/s; {args.partitions} partitions, {args.workers} worker process(es), "
          f"InfluxDB {'bucket ' + bucket if bucket else 'off'}" + (" (null worker)" if args.null_worker else ""),
          flush=True)
    pids = _start_workers(workers, wreport)
    for p in procs:
        p.start()
    sampler = KafkaConsumer(**cfg.kafka.producer_config(), group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(cfg.topics.readings, p) for p in range(args.partitions)]
    reports = _WorkerReports(wreport, pids)
    try:
        _settle(reports, cfg, args.partitions)
        for _ in procs:
            assert report.get(True, 600)[0] == "ready"
        start = time.time() + 1.0
        hour_end = (int(start * 1e9) - lateness_ns) // 3_600_000_000_000 * 3_600_000_000_000
        event_offset = hour_end + lateness_ns - int(args.realtime / 2 * 1e9) - int(start * 1e9)
        for q in controls:
            q.put(event_offset / 1e9)
        for q in gos:
            q.put((start, event_offset))
        print(f"started          : producing from {time.strftime('%H:%M:%S')}; event time {event_offset / -1e9:.0f} s "
              f"behind the clock, so that an hour closes {args.realtime / 2:.0f} s into the run", flush=True)
        samples, done, profiled = _sample(args, wire, start, sampler, tps, reports, report, len(procs), pids)
        final_lag = checkpoint_lag(cfg)
        dlq = sum(sampler.end_offsets([TopicPartition(cfg.topics.dead_letter, 0)]).values())
    finally:
        sampler.close()
        for q in controls:
            q.put("stop")
        t_stop = time.time()
        while len(reports.finals) < len(workers) and time.time() < t_stop + 120:
            time.sleep(0.2)
            reports.drain()
        for p in procs + workers:
            p.join(5)
        shutil.rmtree(cfg.keys_dir.parent, ignore_errors=True)
        try:
            delete_topics(cfg)  # the state topic alone holds gigabytes of snapshots
        except Exception as exc:  # a broker gone away must not hide the measurements
            print(f"could not delete the run's topics ({type(exc).__name__}: {exc})")
        if bucket is not None:
            _bucket(influx or {}, bucket, create=False)
    _summarise_profiles(profiled, wire, pids)
    return report_phase(args, wire, cfg, start, np.array(samples), done, reports.finals, reports.cpu, final_lag, dlq,
                        msgs_per_s)


def _sample(args, wire: int, start: float, sampler, tps, reports: _WorkerReports, report, n_producers: int, pids):
    """Every second until all is produced and saved (or ``--drain`` s after producing): (t, produced, handled,
    covered by saves, machine CPU s); the producers' reports; the py-spy processes (``--profile``)."""
    samples, done, deadline = [], [], start + args.realtime + args.drain
    profiled: list = []
    while time.time() < deadline:
        time.sleep(1.0)
        ends = sampler.end_offsets(tps)
        reports.drain()
        samples.append((time.time() - start, sum(ends.values()), reports.total(reports.position),
                        reports.total(reports.covered), _machine_busy()))
        while not report.empty():
            done.append(report.get())
        if len(done) == n_producers and samples[-1][3] >= sum(d[1] for d in done):
            break  # everything produced is handled and covered by a save
        if args.profile and not profiled and time.time() > start + args.warmup:
            spy = str(Path(sys.executable).with_name("py-spy"))
            profiled = [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "50", "--duration",
                                          str(int(args.profile)), "--gil", "--format", "raw",
                                          "-o", f"/tmp/cems-bench-{wire}-{pid}.raw"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) for pid in pids]
    return samples, done, profiled


def _start_workers(workers: list, wreport) -> set[int]:
    t = time.perf_counter()
    for p in workers:
        p.start()
    pids: set[int] = set()
    while len(pids) < len(workers):  # each worker's "up" (the first reports of the others may come in between)
        r = wreport.get(True, 600)
        pids |= {r[1]} if r[0] == "up" else set()
    print(f"workers          : pid {', '.join(map(str, sorted(pids)))} (started in {time.perf_counter() - t:.0f} s)",
          flush=True)
    return pids


def _summarise_profiles(profiled: list, wire: int, pids) -> None:
    for spy in profiled:
        spy.wait(60)
    if profiled:
        from bench.pyspy_summary import summarise

        for pid in pids:
            raw = Path(f"/tmp/cems-bench-{wire}-{pid}.raw")
            if raw.exists():
                summarise(str(raw))
            else:
                print(f"py-spy of {pid}: no profile")


def _settle(reports: _WorkerReports, cfg, partitions: int) -> None:
    """Wait (at most 2 minutes) until every worker holds partitions and together all of them: a rebalance while
    producing would be measured as lag."""
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(1.0)
        reports.drain()
        if all(reports.held.values()) and sum(reports.held.values()) >= partitions:
            return
    print(f"(the group did not settle: partitions held per worker {reports.held})")


class _WorkerReports:
    """What the worker processes report: per worker its handled and saved offsets per partition, its CPU time."""

    def __init__(self, queue, pids) -> None:
        self.queue = queue
        self.position: dict[int, dict] = {pid: {} for pid in pids}
        self.covered: dict[int, dict] = {pid: {} for pid in pids}
        self.cpu: dict[int, list] = {pid: [] for pid in pids}  # pid -> [(t, cpu s)]
        self.held: dict[int, int] = dict.fromkeys(pids, 0)  # pid -> readings partitions assigned to it
        self.finals: list = []

    def drain(self) -> None:
        while not self.queue.empty():
            r = self.queue.get()
            if r[0] == "at" and r[1] in self.cpu:
                _, pid, at, pos, cov, c, self.held[pid] = r
                self.position[pid], self.covered[pid] = pos, cov
                self.cpu[pid].append((at, c))
            elif r[0] == "final":
                self.finals.append(r)

    @staticmethod
    def total(per: dict[int, dict]) -> int:
        """Offsets summed over partitions, each partition's furthest (a partition moves between workers)."""
        merged: dict[int, int] = {}
        for d in per.values():
            for part, off in d.items():
                merged[part] = max(merged.get(part, 0), off)
        return sum(merged.values())


def _bucket(influx: dict, name: str, create: bool) -> None:
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=influx["url"], token=influx["token"], org=influx["org"]) as client:
        api = client.buckets_api()
        if create:
            api.create_bucket(bucket_name=name, org=influx["org"])
        else:
            api.delete_bucket(api.find_bucket_by_name(name))


def report_phase(args, wire: int, cfg, start: float, samples: np.ndarray, done: list, finals: list, cpu: dict,
                 final_lag, dlq: int, msgs_per_s: float) -> dict:
    per_msg = args.sources * len(CHANNELS) / msgs_per_s  # readings per message
    t, produced, handled, covered, busy = samples.T
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
    t0, t1 = start + t[i0], start + t[i1]
    cores = []
    for series in cpu.values():  # each worker's CPU over the same window
        a = np.array(series)
        if len(a) >= 2:
            c0, c1 = np.interp([t0, t1], a[:, 0], a[:, 1])
            cores.append((c1 - c0) / dt)
    us_msg = sum(cores) / max(rate, 1e-9) * 1e6
    print(f"workers          : {rate * per_msg:,.0f} readings/s  {rate:,.0f} messages/s handled over "
          f"t={t[i0]:.0f}-{t[i1]:.0f} s (produced meanwhile: {offered:,.0f} messages/s = {offered * per_msg:,.0f} "
          f"readings/s; kept up with {rate / max(offered, 1e-9):.0%}); CPU per worker "
          + ", ".join(f"{c:.0%}" for c in cores) + f" of a core; {us_msg:,.0f} us per message, "
          f"{us_msg / per_msg:.1f} us per reading; whole machine {(busy[i1] - busy[i0]) / dt:.0%} of "
          f"{os.cpu_count()} cores")
    slope = np.polyfit(t[w], lag[w], 1)[0]
    caught = np.flatnonzero((t > args.realtime) & (lag <= 0))
    print(f"consumer lag     : max {lag[w].max():,.0f} messages ({lag[w].max() / max(offered, 1):.1f} s of input), "
          f"at the end of producing {lag[i1]:,.0f}; trend {slope:+,.0f} messages/s "
          + (f"(caught up {t[caught[0]] - args.realtime:.0f} s after producing stopped)" if caught.size
             else "(never caught up within --drain)"))
    print(f"  save lag       : max {snap_lag[w].max():,.0f} messages, at the end of producing {snap_lag[i1]:,.0f}"
          + ("" if args.null_worker else f"; checkpoint_lag() at the end {sum(final_lag.values())}"))
    lat: list[np.ndarray] = []
    dur: list[np.ndarray] = []
    calls, snaps, saves, warned = [], [], [], 0
    for _, _, latency, durable, c, sn, sv, nwarn, first in finals:
        for (produced_at, latency_s), out in ((latency, lat), (durable, dur)):
            keep = (produced_at >= start + args.warmup) & (produced_at <= start + args.realtime)
            out.append(latency_s[keep])
        calls += [c] if c.size else []
        snaps += [sn] if sn.size else []
        saves += [sv] if sv.size else []
        if nwarn:
            warned += nwarn
            print(f"WARNING          : {nwarn} client warning(s) in a worker, first: {first}")
    lat_all = np.concatenate(lat) if lat else np.zeros(0)
    dur_all = np.concatenate(dur) if dur else np.zeros(0)
    print(f"latency          : produce -> minute state updated: p50 {_pct(lat_all, 50):.2f} s  p99 "
          f"{_pct(lat_all, 99):.2f} s  max {lat_all.max() if lat_all.size else float('nan'):.2f} s")
    print(f"                   produce -> covered by a save   : p50 {_pct(dur_all, 50):.2f} s  p99 "
          f"{_pct(dur_all, 99):.2f} s;  plus the gateway's batching before produce: up to {args.batch_s} s")
    if calls:
        c_t, c_n, c_dt, _, c_readings, c_dead, c_dup = np.concatenate(calls).T
        print(f"process()        : {c_t.size:,} calls, {c_n.mean():,.0f} messages each, "
              f"{c_dt.sum() / c_n.sum() * 1e6:.0f} us/message, "
              f"{c_dt.sum() / max(c_readings.sum(), 1) * 1e6:.2f} us/reading; readings "
              f"{c_readings.sum():,.0f}, dead letters {c_dead.sum():,.0f} (DLQ topic {dlq}), duplicates "
              f"{c_dup.sum():,.0f}")
    if saves:
        k_dt = np.concatenate(saves)[:, 1]
        p_size = np.concatenate(snaps)[:, 1]
        print(f"saves            : {k_dt.size} (every {cfg.snapshot_interval_s:g} s), median/max "
              f"{np.median(k_dt) * 1e3:.0f} / {k_dt.max() * 1e3:.0f} ms; bytes per partition save median "
              f"{np.median(p_size) / 2**20:.1f} MiB")
    return {"wire": wire, "messages/s": offered, "readings/s offered": offered * per_msg,
            "readings/s handled": rate * per_msg,
            "kept up": min(1.0, rate / max(offered, 1e-9)),  # above 1: a backlog caught up
            "p50": _pct(lat_all, 50), "p99": _pct(lat_all, 99), "cpu": cores, "us/msg": us_msg,
            "us/reading": us_msg / per_msg, "caught up": bool(caught.size)}


def realtime(bootstrap: str, reg, key: bytes, args) -> None:
    influx = None if args.no_influx else _influx_settings()
    if not args.no_influx and influx is None:
        raise SystemExit("the InfluxDB sink needs CEMS_INFLUX_URL, _TOKEN and _ORG (deploy/local/services.sh env), "
                         "or --no-influx")
    print(f"machine          : {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = [phase(bootstrap, reg, key, args, wire, influx) for wire in args.wire]
    print(f"\n{args.batch_s}-s batches, {args.workers} worker(s), InfluxDB {'on' if influx else 'off'}; "
          f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'path':<28}{'msg/s':>8}{'offered r/s':>13}{'handled r/s':>13}{'kept up':>9}{'p50 s':>7}{'p99 s':>7}"
          f"{'CPU/worker':>14}{'us/msg':>8}{'us/rdg':>8}")
    for r in results:
        name = "v1: a batch per source" if r["wire"] == 1 else "v3: an agent batch"
        print(f"{name:<28}{r['messages/s']:>8,.0f}{r['readings/s offered']:>13,.0f}{r['readings/s handled']:>13,.0f}"
              f"{r['kept up']:>9.0%}{r['p50']:>7.2f}{r['p99']:>7.2f}"
              f"{' '.join(f'{c:.0%}' for c in r['cpu']):>14}{r['us/msg']:>8,.0f}{r['us/reading']:>8.2f}")


if __name__ == "__main__":
    main()
