"""Stream processor throughput at the national shape, without the broker (issue 5, first measurement).

    python bench/bench_stream.py [--sources 20000] [--seconds 30] [--broker 127.0.0.1:19092]

20,000 sources x 8 channels at 1 Hz, each source sending one signed batch every 5 s (40 readings), as one
partition would hold them. Measures :meth:`PartitionProcessor.process` (signature check, decode, sequence
dedupe, exact minute aggregation) in chunks of 2,000 messages, against the same readings absorbed by the
kernels directly (the floor the processor cannot beat). Target of issue 5: 160,000 readings/s in real time.

With ``--broker`` it also drains the same messages, produced beforehand as a backlog, through the real
broker and one in-process faust worker (2 partitions), timed until the worker's snapshots cover every offset:
the sustained rate one worker reaches, broker, faust, checkpoints and compacted outputs included.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.batches import KeyRing  # noqa: E402
from schemas import ReadingBatch  # noqa: E402
from schemas.site import Entity  # noqa: E402
from streams.kernels import Accumulator  # noqa: E402
from streams.kernels.aggregate import MINUTE_NS  # noqa: E402
from streams.processor import Message, PartitionProcessor, Registry  # noqa: E402

T0 = 1_767_225_600 * 10**9
CHANNELS = [("co2", "a05001", "%"), ("o2", "a19001", "%"), ("moisture", "a01014", "%"), ("temp", "a01012", "degC"),
            ("pstatic", "a01013", "kPa"), ("velocity", "a01011", "m/s"), ("fuel_rate", "xf0001", "t/h"),
            ("fuel_total", "xf0003", "t")]
TYPICAL = np.array([12.0, 8.0, 9.0, 96.0, -0.45, 14.0, 10.0, 5000.0])
PER_ENTITY = 50


def registry(n_sources: int) -> Registry:
    channels = [{"id": c, "quantity": q, "unit": u} for c, q, u in CHANNELS]
    entities = [Entity.model_validate({"id": f"e{e}", "name": f"e{e}", "sector": "cement", "sources": [
        {"id": f"s{e * PER_ENTITY + k}", "name": "s", "duct_area_m2": 12.57, "channels": channels}
        for k in range(min(PER_ENTITY, n_sources - e * PER_ENTITY))]}) for e in range(-(-n_sources // PER_ENTITY))]
    return Registry(entities)


def messages(n_sources: int, seconds: int, key: bytes) -> list[Message]:
    rng = np.random.default_rng(1)
    out = []
    ch = np.tile(np.arange(len(CHANNELS), dtype=np.uint16), 5)
    for start in range(0, seconds, 5):
        ts = np.repeat(T0 + np.arange(start, start + 5, dtype=np.int64) * 10**9, len(CHANNELS))
        for s in range(n_sources):
            value = np.tile(TYPICAL, 5) * (1 + 0.01 * rng.standard_normal(ch.size))
            data = ReadingBatch.from_columns(agent_id=f"gw{s}", source_id=f"s{s}", seq=start // 5, channels=CHANNELS,
                                             ts_ns=ts, channel=ch, value=value, flag=np.zeros(ch.size, np.uint8)).encode()
            headers = {"cems-agent": f"gw{s}".encode(), "cems-seq": str(start // 5).encode(),
                       "cems-sig": hmac.new(key, data, hashlib.sha256).digest()}
            out.append(Message(len(out), data, headers, (T0 + (start + 5) * 10**9) // 10**6))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=20_000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--broker", default=None, help="Also drain the messages through this Kafka broker.")
    args = ap.parse_args()
    key = b"k" * 32
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
    print(f"processor        : {n_readings / processor_s:12,.0f} readings/s  {len(msgs) / processor_s:9,.0f} messages/s "
          f"(target 160,000 readings/s)")
    print(f"kernels only     : {n_readings / kernel_s:12,.0f} readings/s  (same readings pre-decoded: the floor)")
    print(f"per message      : {1e6 * (processor_s - kernel_s) / len(msgs):.1f} us of checks, decode and routing")
    print(f"minute state     : {proc.minutes.nbytes / 2**20:.0f} MiB for {len(proc.minutes):,} open channel-minutes")
    if args.broker:
        import asyncio

        rate = asyncio.run(through_broker(args.broker, reg, msgs, key, args.sources))
        print(f"through Kafka    : {n_readings / rate:12,.0f} readings/s  {len(msgs) / rate:9,.0f} messages/s "
              f"(one faust worker draining a {len(msgs):,}-message backlog, {rate:.1f} s)")


async def through_broker(bootstrap: str, reg, msgs, key: bytes, n_sources: int) -> float:
    import asyncio
    import tempfile
    import uuid

    import yaml
    from kafka import KafkaProducer

    from schemas.kafka import KafkaConnection
    from streams.topics import create_topics
    from streams.worker import StreamWorker, Topics, WorkerConfig, checkpoint_lag

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
    create_topics(cfg, partitions=2)
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


if __name__ == "__main__":
    main()
