"""A partition processor's state in the compacted state topic: segments written when they change, under a manifest.

A processor's state is cut into named segments (``PartitionProcessor.checkpoint``): a small core rewritten at every
checkpoint, and hour and day segments rewritten only while they change. Whole snapshots grew with the revision
horizon and the monthly lookback (past the topic's message cap within a day at the national shape); this writes
about what changed per checkpoint.

Keys in the state topic (partition = readings partition; only that partition's owner writes there):

* ``<readings topic>/<partition>/manifest``: JSON, the next readings offset the state covers and, per segment, its
  slot and the offsets of its pieces;
* ``<readings topic>/<partition>/<segment>@<slot>#<piece>``: one piece (at most :data:`PIECE_BYTES`) of a version.

Why a crash or the log cleaner cannot lose state:

* A checkpoint writes the changed segments, waits until Kafka acknowledges them, then writes the manifest. A
  crash in between leaves the previous manifest, which points at the previous versions.
* **Double buffering**: a segment's new version goes to the slot (``@0``/``@1``) the current manifest does not use.
  Compaction keeps the newest record per key, so it never removes a version the newest manifest points at.
* A segment the processor dropped is tombstoned (both slots) only after a manifest without it is acknowledged.

Restoring reads the newest manifest (scanning back from the end over the pieces of an interrupted checkpoint) and
then exactly the pieces it lists, checking each key.

**Fencing** (a worker frozen past its session timeout, a "zombie", must never have a state or an output win over its
successor's): every readings partition has one :class:`PartitionWriter`, a transactional producer whose transactional
id names the partition. A worker that takes a partition over creates its writer *before* it reads the state: Kafka
bumps the id's epoch, aborts the zombie's open transaction and refuses every later write of the zombie's producer
(:class:`Fenced`). A checkpoint (the outputs since the last one, the state pieces, the manifest, the tombstones) is one
transaction, and every reader of the state and of the output topics reads committed records only. So each committed
state derives from the one its writer read after fencing every earlier writer, and nothing a zombie writes is ever
seen.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

__all__ = ["PIECE_BYTES", "Fenced", "KafkaLog", "PartitionState", "PartitionWriter", "read_manifest",
           "read_partition_state"]

#: Largest piece of a segment in one state record (well below the state topic's ``max.message.bytes``).
PIECE_BYTES = 4 * 2**20

#: ``send(key, value) -> offset`` once Kafka acknowledged it (``value`` None: a tombstone).
Send = Callable[[bytes, bytes | None], Awaitable[int]]


@dataclass
class PartitionState:
    """The manifest of one partition's saved state, and the records that change it."""

    prefix: str  # "<readings topic>/<partition>"
    next_offset: int = 0
    segments: dict[str, dict] = field(default_factory=dict)  # name -> {"slot", "offsets", "pieces": [n@0, n@1]}

    @property
    def manifest_key(self) -> bytes:
        return f"{self.prefix}/manifest".encode()

    def key(self, name: str, slot: int, piece: int) -> bytes:
        return f"{self.prefix}/{name}@{slot}#{piece}".encode()

    def manifest(self) -> bytes:
        return json.dumps({"version": 1, "next_offset": self.next_offset, "segments": self.segments}).encode()

    @classmethod
    def from_manifest(cls, prefix: str, data: bytes) -> PartitionState:
        m = json.loads(data)
        if m.get("version") != 1:
            raise ValueError(f"state manifest {prefix}: unknown version {m.get('version')!r}")
        return cls(prefix, int(m["next_offset"]), m["segments"])

    async def write(self, changed: dict[str, bytes | None], next_offset: int, send: Send) -> PartitionState:
        """Write the changed segments, then the manifest, then tombstones for the segments gone; return the new
        state. ``self`` is left as it is: the new state holds only once what was written is committed (the worker
        writes in a transaction, :class:`PartitionWriter`), and a failed write can simply be repeated from ``self``."""
        segments = {name: dict(entry) for name, entry in self.segments.items()}
        writes = []
        for name, data in changed.items():
            if data is None:
                segments.pop(name, None)
                continue
            old = segments.get(name)
            slot = 0 if old is None else 1 - old["slot"]
            pieces = [data[i:i + PIECE_BYTES] for i in range(0, len(data), PIECE_BYTES)] or [b""]
            counts = list(old["pieces"]) if old else [0, 0]
            counts[slot] = max(counts[slot], len(pieces))
            segments[name] = {"slot": slot, "offsets": [], "pieces": counts}
            writes += [(name, self.key(name, slot, i), piece) for i, piece in enumerate(pieces)]
        offsets = await asyncio.gather(*(send(key, piece) for _, key, piece in writes))
        for (name, _, _), offset in zip(writes, offsets, strict=True):
            segments[name]["offsets"].append(offset)
        gone = [(name, self.segments[name]) for name, data in changed.items() if data is None and name in self.segments]
        new = PartitionState(self.prefix, next_offset, segments)
        await send(new.manifest_key, new.manifest())
        await asyncio.gather(*(send(self.key(name, slot, i), None) for name, entry in gone
                               for slot in (0, 1) for i in range(entry["pieces"][slot])))
        return new

    async def save(self, changed: dict[str, bytes | None], next_offset: int, send: Send) -> None:
        """:meth:`write`, then adopt the new state (a log without transactions: acknowledged is committed)."""
        new = await self.write(changed, next_offset, send)
        self.next_offset, self.segments = new.next_offset, new.segments


class Fenced(Exception):
    """Another worker took the partition over since this writer was made: its writes are refused, for good."""


class PartitionWriter:
    """The one writer of a readings partition's outputs and state: a kafka-python transactional producer.

    Blocking (the worker calls it in a thread). Made when a worker takes the partition on; making it fences every
    earlier writer of ``transactional_id`` (which names the partition, the same in every worker of the app)."""

    def __init__(self, kafka_config: dict, transactional_id: str, state_topic: str, partition: int) -> None:
        from kafka import KafkaProducer

        self.state_topic, self.partition = state_topic, partition
        self.producer = KafkaProducer(**kafka_config, transactional_id=transactional_id, acks="all",
                                      max_request_size=2 * PIECE_BYTES, linger_ms=5, kafka_client=_coordinator_safe())
        with _fencing():
            self.producer.init_transactions()  # the earlier writer's open transaction is aborted

    def begin(self, messages: list[tuple[str, dict]]) -> None:
        """Open a transaction with ``(topic, send keywords)`` messages in it, each acknowledged."""
        with _fencing():
            self.producer.begin_transaction()
            futures = [self.producer.send(topic, **kwargs) for topic, kwargs in messages]
            self.producer.flush()
            for f in futures:
                f.get()

    def send_state(self, key: bytes, value: bytes | None) -> int:
        """One state record into the open transaction, to the readings partition's state partition: its offset."""
        with _fencing():
            return self.producer.send(self.state_topic, key=key, value=value, partition=self.partition).get().offset

    def commit(self) -> None:
        with _fencing():
            self.producer.commit_transaction()

    def abort(self) -> None:
        """Abort the open transaction, if any (after a failure; a broker away may refuse even that: the
        transaction then times out, or the next writer's fencing aborts it)."""
        with suppress(Exception):  # best effort, see above
            self.producer.abort_transaction()

    def close(self) -> None:
        self.producer.close(timeout=5)


@functools.cache  # one class for every writer
def _coordinator_safe():
    """kafka-python's network client, with ``await_ready`` answering False for a node it cannot reach.

    Why: kafka-python 3.0.12's sender checks ``if not await_ready(coordinator)`` to look the transaction
    coordinator up again and re-queue the request, but ``await_ready`` raises instead of answering False; the
    sender's ``except`` branch then looks the coordinator up and *drops* the request (``target_node`` is already
    set, so it is not retried). When the coordinator's node dies during a transaction, the AddPartitionsToTxn
    request that was in flight is lost, the partitions it named are never added, and the producer spins on
    "0 produce requests" for good, even after the node is back: the partition's checkpoints stop and its outputs
    with them (seen when the cluster failover test killed the node that coordinated a writer). Answering False
    takes the sender's own retry path: look up, re-queue, send to the new coordinator once Kafka has moved it."""
    from kafka import errors
    from kafka.net.compat import KafkaNetClient

    class CoordinatorSafeClient(KafkaNetClient):
        def await_ready(self, node_id, timeout_ms=30000) -> bool:
            try:
                return super().await_ready(node_id, timeout_ms=timeout_ms)
            except errors.KafkaConnectionError:
                return False

        def send_and_receive(self, node_id, request, timeout_ms=30000):
            if not self.await_ready(node_id, timeout_ms=timeout_ms):  # raising here, as the base class does
                raise errors.KafkaConnectionError(f"Node {node_id} not ready after {timeout_ms} ms")
            return super().send_and_receive(node_id, request, timeout_ms=timeout_ms)

    return CoordinatorSafeClient


@contextmanager
def _fencing() -> Iterator[None]:
    """Kafka's "this producer's epoch is stale" errors as :class:`Fenced`."""
    from kafka import errors

    try:
        yield
    except (errors.ProducerFencedError, errors.InvalidProducerEpochError) as exc:
        raise Fenced(f"{type(exc).__name__}: {exc}") from exc


class KafkaLog:
    """One state partition, read with a kafka-python consumer (no group; a whole piece fits one fetch; committed
    records only: see Fencing above)."""

    def __init__(self, kafka_config: dict, topic: str, partition: int) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(**kafka_config, group_id=None, enable_auto_commit=False,
                                      isolation_level="read_committed", fetch_max_wait_ms=20,  # ranges, not a feed
                                      max_partition_fetch_bytes=2 * PIECE_BYTES, fetch_max_bytes=2 * PIECE_BYTES)
        self.tp = TopicPartition(topic, partition)
        self.consumer.assign([self.tp])

    def end(self) -> int:
        return self.consumer.end_offsets([self.tp])[self.tp]

    def records(self, start: int, stop: int) -> list[tuple[int, bytes | None, bytes | None]]:
        """(offset, key, value) with ``start <= offset < stop`` (fewer where compaction removed some)."""
        self.consumer.seek(self.tp, start)
        out, idle = [], 0
        # Short polls: a range may hold only transaction markers (the last record of every checkpoint is one), which
        # poll never returns; it waits its whole timeout and moves the position past them. 20 s of patience in all.
        while self.consumer.position(self.tp) < stop and idle < 800:
            batch = self.consumer.poll(timeout_ms=25).get(self.tp, [])
            idle = 0 if batch else idle + 1
            out += [(r.offset, r.key, r.value) for r in batch if start <= r.offset < stop]
        if self.consumer.position(self.tp) < stop:
            raise RuntimeError(f"state partition {self.tp.partition}: offsets {start}..{stop} could not be read")
        return out

    def close(self) -> None:
        self.consumer.close()


def read_manifest(log, prefix: str) -> PartitionState | None:
    """The newest manifest of ``prefix`` in a state partition (None: nothing saved yet)."""
    scanned, back = log.end(), 1
    manifest_key = PartitionState(prefix).manifest_key
    while scanned > 0:  # usually the last record; after a crash mid-checkpoint, a few pieces come after it
        start = max(0, scanned - back)
        for _, key, value in reversed(log.records(start, scanned)):
            if key == manifest_key and value is not None:
                return PartitionState.from_manifest(prefix, value)
        scanned, back = start, back * 4
    return None


def read_partition_state(log, prefix: str) -> tuple[PartitionState, dict[str, bytes]] | None:
    """The newest manifest and the segments it lists, each piece checked against its key."""
    state = read_manifest(log, prefix)
    if state is None:
        return None
    segments = {}
    for name, entry in state.segments.items():
        pieces = []
        for i, offset in enumerate(entry["offsets"]):
            got = log.records(offset, offset + 1)
            if not got or got[0][0] != offset or got[0][1] != state.key(name, entry["slot"], i):
                raise RuntimeError(f"state {prefix}: segment {name} piece {i} is not at offset {offset}")
            pieces.append(got[0][2])
        segments[name] = b"".join(pieces)
    return state, segments
