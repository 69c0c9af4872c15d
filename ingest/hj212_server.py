"""``cems hj212 serve``: the centre as an upper platform, for plants whose dataloggers have no gateway of ours.

Dataloggers (数采仪) connect over TCP and push HJ 212 frames; each whole upload of a registered MN becomes one signed
reading batch on the readings topic, exactly as an edge agent writes it (``schemas/envelope.py``: key = agent id,
headers ``cems-agent``/``cems-seq``/``cems-sig``), so the workers downstream do not know the difference. The protocol
is the one the gateway's receiver speaks (:class:`schemas.hj212.session.ReceiverSession`): the same checks, the same
answers, the data answer (9014) only after Kafka acknowledged the batch (``acks=all``; docs/sources.md
HJ212-ACK-STORED), so an upload the datalogger deletes is in Kafka.

Identity: every registered MN is its own agent, ``hj212-<MN>``, with its own HMAC key (``keys_dir/hj212-<MN>.key``,
the workers' key directory) and its own sequence numbers. One agent for the whole receiver would put every plant
in one partition (the topic is keyed by agent) and mix every datalogger's gaps into one sequence.

Sequence numbers are durable: a number is written to the sequence log (fsync'd, many at once) before its batch is
produced, and marked done after Kafka's acknowledgement, so a restart never reuses one. A number taken but never
acknowledged (Kafka down until shutdown, a crash) is produced again as an empty batch (a filler) by the next start:
the worker then sees no hole, and if the original did arrive, the filler is a repeat it ignores. The datalogger
re-sends the data, which was never acknowledged, under a new number.

Refusals (unknown MN, bad password, CRC failure, undecodable frames, times outside 2000-2199, incomplete split
messages) go to the dead-letter topic with their reason and the original bytes, and are counted in the metrics.

Limits (no byte stream can crash the receiver or grow its memory without bound): frame size (the splitter drops a
candidate growing past ``max_frame_bytes``), read size per call, split messages held per connection
(``split_messages`` x ``split_packets`` frames), ``max_connections`` (more are closed at once), ``idle_timeout_s``,
and ``max_refusals`` refused frames in a row before a connection is closed. A connection stops reading while one of
its reads is being carried out or its write buffer is full (:class:`_Connection`), so its memory is below
``max_frame_bytes x (1 + split_messages x split_packets) + 2 x read_bytes`` and its write buffer's high-water mark.
Uploads are stored once per pass of the event loop, all together (one fsync, one ``produce_many``), each still its
own batch, answered after its own acknowledgement (docs/decisions.md). Central code: never imports ``edge_agent``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import envelope
from schemas.configfile import yaml_env_first
from schemas.hj212 import SourceMap
from schemas.hj212.readings import Converted
from schemas.hj212.session import Dedup, Event, ReceiverSession, Refused, Registration, Reply, Seen, Upload
from schemas.hj212.stream import MAX_FRAME_BYTES
from schemas.kafka import KafkaConnection
from schemas.site import Entity

__all__ = ["DLQ_REASONS", "Hj212Server", "Hj212ServerConfig", "KafkaSink", "MemorySink", "SeqLog", "agent_id_of",
           "loop_factory"]

log = logging.getLogger(__name__)

#: Dead-letter reasons of the receiver (header ``cems-dlq-reason``).
DLQ_REASONS = {
    "unknown_mn": "the MN is in no site file's hj212 block",
    "bad_password": "the password does not match the MN's",
    "crc": "the frame's CRC does not match its data segment",
    "undecodable": "not a valid HJ 212 frame or message (the detail names the codec's reason)",
}


def agent_id_of(mn: str) -> str:
    """The agent id an MN's batches carry (and its key file's name, without ``.key``)."""
    return f"hj212-{mn}"


class Hj212ServerConfig(BaseSettings):
    """The receiver's settings: the file, with ``CEMS_HJ212__<FIELD>__<SUBFIELD>`` environment variables over it."""

    model_config = SettingsConfigDict(env_prefix="CEMS_HJ212__", env_nested_delimiter="__", extra="forbid",
                                      frozen=True, case_sensitive=False)
    settings_customise_sources = classmethod(yaml_env_first)

    listen: str = "0.0.0.0"
    port: int = Field(default=9212, ge=0, le=65535, description="0: any free port (tests).")
    kafka: KafkaConnection
    topic: str = "cems.readings.v1"
    dead_letter_topic: str = "cems.readings.dlq"
    sites: list[Path] = Field(min_length=1, description="Site files (or directories of *.yaml); their sources' "
                                                         "hj212 blocks register the MNs.")
    keys_dir: Path = Field(description="Directory of hj212-<MN>.key files (the workers' keys_dir).")
    passwords_dir: Path = Field(description="Directory of <MN>.pw files: each datalogger's password, first line.")
    state_dir: Path = Field(default=Path("/var/lib/cems/hj212"), description="The durable sequence log.")
    strict: bool = False
    max_connections: int = Field(default=5000, ge=1)
    idle_timeout_s: float = Field(default=900.0, gt=0)
    max_frame_bytes: int = Field(default=4096, ge=64, le=MAX_FRAME_BYTES,
                                 description="HJ 212-2017 frames hold at most 1,024 bytes of data segment; lenient "
                                             "mode allows more, up to this.")
    read_bytes: int = Field(default=16_384, ge=256, le=1 << 20)
    split_messages: int = Field(default=4, ge=1, le=256)
    split_packets: int = Field(default=32, ge=1, le=999)
    max_refusals: int = Field(default=50, ge=1, description="Refused frames in a row before the connection closes.")
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    metrics_port: int = Field(default=9109, ge=0, le=65535, description="Prometheus metrics; 0: none.")
    metrics_address: str = "127.0.0.1"
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto", description="auto: uvloop where installed (the hj212-fast extra), else asyncio's own loop.")


def loop_factory(kind: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop the receiver runs on: ``uvloop`` (libuv, about a fifth less CPU per frame in the shell
    around the codec, docs/hj212.md "Speed of the central receiver"), ``asyncio`` (the standard library's), or
    ``auto``: uvloop where it is installed. Raises ``RuntimeError`` for uvloop asked for and not installed."""
    if kind not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"event_loop {kind!r}: auto, asyncio or uvloop")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("event_loop: uvloop is not installed (pip install 'cems-pipeline[hj212-fast]')")\
                    from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


# --- the durable sequence log ---------------------------------------------------------------------------------------


class SeqLog:
    """Per agent, the next sequence number, durably; and the numbers taken but not yet acknowledged by Kafka.

    An append-only log (``seq.log``): ``T agent seq source`` when a number is taken (fsync'd before the number is
    used; all numbers taken while one fsync runs share the next), ``A agent seq`` when Kafka acknowledged it (not
    fsync'd: a lost ``A`` only costs a filler that the worker ignores). Compacted into ``seq.snapshot`` (JSON) when
    the log passes ``compact_bytes``.
    """

    def __init__(self, directory: Path, compact_bytes: int = 8 << 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.compact_bytes = compact_bytes
        self.next: dict[str, int] = {}
        self.inflight: dict[str, dict[int, str]] = defaultdict(dict)  # agent -> seq -> source
        self._recover()
        self._log = open(self.dir / "seq.log", "ab")  # noqa: SIM115 - held open for the receiver's life
        self._pending: list[tuple[str, asyncio.Future]] = []  # log lines, whoever waits for them
        self._flushing: asyncio.Task | None = None
        self.fsyncs = 0  # how many numbers share one fsync: taken / fsyncs

    def _recover(self) -> None:
        try:
            snap = json.loads((self.dir / "seq.snapshot").read_text())
        except FileNotFoundError:
            snap = {}
        for agent, d in snap.items():
            self.next[agent] = int(d["next"])
            self.inflight[agent] = {int(s): src for s, src in d["inflight"].items()}
        try:
            text = (self.dir / "seq.log").read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            parts = line.split(" ")
            if parts[0] == "T" and len(parts) == 4:
                agent, seq = parts[1], int(parts[2])
                self.next[agent] = max(self.next.get(agent, 0), seq + 1)
                self.inflight[agent][seq] = parts[3]
            elif parts[0] == "A" and len(parts) == 3:
                self.inflight[parts[1]].pop(int(parts[2]), None)
            # anything else: a torn last line of a crash (never fsync'd, so never used)

    def fillers(self) -> list[tuple[str, int, str]]:
        """(agent, seq, source) taken and never acknowledged: to be produced as empty batches."""
        return sorted((a, s, src) for a, d in self.inflight.items() for s, src in d.items())

    async def take(self, agent: str, source: str) -> int:
        """The agent's next number, once it is durably recorded."""
        return (await self.take_many([(agent, source)]))[0]

    async def take_many(self, wanted: list[tuple[str, str]]) -> list[int]:
        """The next number of each (agent, source), in order (an agent named twice gets two), once all are durably
        recorded: one fsync for the lot, shared with every other ``take`` waiting meanwhile."""
        seqs = []
        for agent, source in wanted:
            seq = self.next.get(agent, 0)
            self.next[agent] = seq + 1
            self.inflight[agent][seq] = source
            seqs.append(seq)
        fut = asyncio.get_running_loop().create_future()
        self._pending.append(("".join(f"T {a} {s} {src}\n" for (a, src), s in zip(wanted, seqs, strict=True)), fut))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await fut
        return seqs

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                self._write_sync("".join(lines for lines, _ in batch).encode())  # in the loop: a thread hand-off
            except OSError as exc:                                              # cost more CPU than the fsync's wait
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    def _write_sync(self, data: bytes) -> None:
        self._log.write(data)
        self._log.flush()
        os.fsync(self._log.fileno())
        self.fsyncs += 1

    def acked(self, agent: str, seq: int) -> None:
        self.inflight[agent].pop(seq, None)
        self._log.write(f"A {agent} {seq}\n".encode())
        if self._log.tell() > self.compact_bytes and not self._pending:
            self.compact()

    def compact(self) -> None:
        snap = {a: {"next": n, "inflight": {str(s): src for s, src in self.inflight.get(a, {}).items()}}
                for a, n in self.next.items()}
        tmp = self.dir / "seq.snapshot.tmp"
        with open(tmp, "w") as f:
            json.dump(snap, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / "seq.snapshot")
        self._log.close()
        self._log = open(self.dir / "seq.log", "wb")  # noqa: SIM115 - the snapshot now holds everything
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._log.flush()
        os.fsync(self._log.fileno())
        self._log.close()


# --- where batches go ---------------------------------------------------------------------------------------------


#: One record for the readings topic: (value, key, headers).
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


class Sink(Protocol):
    async def start(self) -> None: ...
    async def produce(self, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None: ...
    async def produce_many(self, records: list[Record]) -> list[BaseException | None]:
        """Every record, durably; per record None (stored) or why not, in order."""
        ...
    async def dead_letter(self, value: bytes, headers: list[tuple[str, bytes]]) -> None: ...
    async def stop(self) -> None: ...


def aiokafka_settings(conn: KafkaConnection) -> dict:
    """aiokafka's connection keywords for a :class:`KafkaConnection` (TLS context built here)."""
    out: dict = {"bootstrap_servers": conn.bootstrap_servers, "security_protocol": conn.security_protocol}
    if conn.security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        ctx = ssl.create_default_context(cafile=str(conn.ssl_cafile) if conn.ssl_cafile else None)
        if conn.ssl_certfile:
            ctx.load_cert_chain(str(conn.ssl_certfile), str(conn.ssl_keyfile) if conn.ssl_keyfile else None)
        out["ssl_context"] = ctx
    if conn.sasl_mechanism:
        out |= {"sasl_mechanism": conn.sasl_mechanism, "sasl_plain_username": conn.sasl_username,
                "sasl_plain_password": conn.sasl_password.get_secret_value() if conn.sasl_password else None}
    return out


class KafkaSink:
    """The readings and dead-letter topics through aiokafka (``acks=all``, idempotent)."""

    def __init__(self, conn: KafkaConnection, topic: str, dead_letter_topic: str, *, timeout_s: float = 30.0) -> None:
        self.conn, self.topic, self.dlq, self.timeout_s = conn, topic, dead_letter_topic, timeout_s
        self.producer: Any = None  # an AIOKafkaProducer once started

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=5,
                                         max_request_size=4 << 20, request_timeout_ms=int(self.timeout_s * 1000),
                                         **aiokafka_settings(self.conn))
        await self.producer.start()

    async def produce(self, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        fut = await self.producer.send(self.topic, value=value, key=key, headers=headers)
        await asyncio.wait_for(fut, self.timeout_s)

    async def produce_many(self, records: list[Record]) -> list[BaseException | None]:
        """All records handed to the producer first (one linger, few requests), then their acknowledgements awaited
        together, within ``timeout_s``."""
        out: list[BaseException | None] = [None] * len(records)
        sent: list[tuple[int, asyncio.Future]] = []
        for i, (value, key, headers) in enumerate(records):
            try:
                sent.append((i, await self.producer.send(self.topic, value=value, key=key, headers=headers)))
            except Exception as exc:
                out[i] = exc
        if sent:
            _, late = await asyncio.wait([f for _, f in sent], timeout=self.timeout_s)
            for i, fut in sent:
                if fut in late:
                    fut.cancel()
                    out[i] = TimeoutError(f"no acknowledgement from Kafka within {self.timeout_s:g} s")
                elif fut.exception() is not None:
                    out[i] = fut.exception()
        return out

    async def dead_letter(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send(self.dlq, value=value, headers=headers)  # not awaited further: best effort

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


@dataclass
class MemorySink:
    """Batches and dead letters kept in lists (tests and the benchmark's receiver-only figures)."""

    def __post_init__(self) -> None:
        self.records: list[tuple[bytes, bytes, list]] = []
        self.dead_letters: list[tuple[bytes, list]] = []
        self.fail = False  # True: produce raises, as a broker that is down

    async def start(self) -> None:
        return None

    async def produce(self, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        if self.fail:
            raise ConnectionError("sink down")
        self.records.append((value, key, headers))

    async def produce_many(self, records: list[Record]) -> list[BaseException | None]:
        if self.fail:
            return [ConnectionError("sink down") for _ in records]
        self.records.extend(records)
        return [None] * len(records)

    async def dead_letter(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.dead_letters.append((value, headers))

    async def stop(self) -> None:
        return None


# --- metrics ------------------------------------------------------------------------------------------------------


class _Metrics:
    def frames_of(self, cn: str):
        """The counter child of a CN, resolved once (``labels()`` costs more than the increment)."""
        child = self._frames.get(cn)
        if child is None:
            child = self._frames[cn] = self.frames.labels(cn)
        return child

    def batches_of(self, cn: str):
        child = self._batches.get(cn)
        if child is None:
            child = self._batches[cn] = self.batches.labels(cn)
        return child

    def __init__(self, registry) -> None:
        self._frames: dict[str, Any] = {}  # command -> its labelled counter child, made once
        self._batches: dict[str, Any] = {}
        from prometheus_client import Counter, Gauge, Histogram

        r = registry
        self.frames = Counter("cems_hj212_frames_total", "Frames received from registered dataloggers, by command.",
                              ["cn"], registry=r)
        self.refused = Counter("cems_hj212_refused_total", "Frames or messages refused (dead-lettered), by reason.",
                               ["reason"], registry=r)
        self.batches = Counter("cems_hj212_batches_total", "Reading batches Kafka acknowledged.", ["cn"], registry=r)
        self.duplicates = Counter("cems_hj212_duplicates_total", "Retransmitted uploads acknowledged again, not "
                                                                 "produced twice.", registry=r)
        self.unacked = Counter("cems_hj212_unacknowledged_total", "Uploads left unanswered: Kafka did not take them.",
                               registry=r)
        self.fillers = Counter("cems_hj212_fillers_total", "Empty batches produced for numbers never acknowledged.",
                               registry=r)
        self.connections = Gauge("cems_hj212_connections", "Open datalogger connections.", registry=r)
        self.rejected_connections = Counter("cems_hj212_connections_rejected_total",
                                            "Connections closed at once (max_connections).", registry=r)
        self.closed = Counter("cems_hj212_connections_closed_total", "Connections closed by the receiver, by why.",
                              ["why"], registry=r)
        self.garbage = Counter("cems_hj212_garbage_bytes_total", "Bytes outside any frame.", registry=r)
        self.ack_seconds = Histogram("cems_hj212_ack_seconds", "From a data upload's last byte received to its "
                                                               "answer written (Kafka's acknowledgement included).",
                                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                     registry=r)


# --- one connection -----------------------------------------------------------------------------------------------

_NO_EVENTS: list[Event] = []


class _Connection(asyncio.BufferedProtocol):
    """One datalogger's connection: bytes read straight into a buffer of ``read_bytes`` (no stream reader), the
    session's events carried out in order as they come.

    Carrying out an event never waits, except for an upload that must be stored: it goes to the server's storer
    (:meth:`Hj212Server._hand_over`), and the events after it wait until the storer calls :meth:`upload_done` (the
    answer only after Kafka's acknowledgement). Reading is paused (``pause_reading``: TCP's own flow control then
    holds the datalogger) while one read is still being carried out, while its dead letters are not yet handed to
    Kafka, or while the transport's write buffer is full; the read that arrives meanwhile is held, one at most. So
    a connection holds at most one buffer, one held read, the session's bounded state and its pending answers.
    """

    def __init__(self, server: Hj212Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: ReceiverSession | None = None
        self.peer = "?"
        self.last = 0.0  # loop time of the last read, for the idle sweeper
        self.received = 0.0  # perf_counter at the read being carried out (the answer time's start)
        self.events: list[Event] = _NO_EVENTS
        self.next_event = 0
        self.held: bytes | None = None  # a read that came while the previous one was being carried out
        self.outstanding = 0  # uploads and dead letters with the server, not yet done
        self.reading = True
        self.write_paused = False
        self.eof = False
        self.refusals = 0
        self.garbage = 0
        self.why: str | None = None  # why the receiver closes it; None: the datalogger did
        self.open = False  # counted in the connections (not refused at once)
        self._buffer = memoryview(bytearray(server.cfg.read_bytes))

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        srv, c = self.server, self.server.cfg
        self.transport = cast("asyncio.Transport", transport)  # a TCP server's (uvloop's is no subclass of it)
        if srv._stopping or len(srv.connections) >= c.max_connections:
            srv.metrics.rejected_connections.inc()
            self.transport.close()
            return
        self.open = True
        srv.connections.add(self)
        srv.metrics.connections.inc()
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.session = ReceiverSession(srv.registrations.get, dedup=srv.dedup, strict=c.strict,
                                       max_frame_bytes=c.max_frame_bytes, max_messages=c.split_messages,
                                       max_packets=c.split_packets)
        self.last = srv._loop.time()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self._buffer[:nbytes])  # the buffer is read into again
        if not self.open or self.why is not None:
            return
        self.last = self.server._loop.time()
        if self._busy():
            self.held = data if self.held is None else self.held + data  # reading is paused from here on
            self._pause()
            return
        self._feed(data)

    def eof_received(self) -> bool:
        self.eof = True
        if not self._busy():
            self.close("eof")
        return True  # half-open: an answer being stored can still be written

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._continue()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open:
            return
        self.open = False
        srv = self.server
        srv.metrics.closed.labels(self.why or ("reset" if exc is not None else "eof")).inc()
        srv.metrics.connections.dec()
        srv.connections.discard(self)
        self.events, self.held = _NO_EVENTS, None
        if srv._stopping and not srv.connections and srv._all_closed is not None and not srv._all_closed.done():
            srv._all_closed.set_result(None)

    # -- the receiver's side

    def close(self, why: str, *, abort: bool = False) -> None:
        """Close (answers written first, unless ``abort``); ``why`` is the metric's label."""
        if self.why is None:
            self.why = why
        if self.transport is not None:
            self.transport.abort() if abort else self.transport.close()

    def shutdown(self) -> None:
        """The receiver stops: close now if nothing is being stored, else once it is (:meth:`_continue`)."""
        if not self._busy():
            self.close("shutdown")

    def _busy(self) -> bool:
        return self.outstanding > 0 or self.next_event < len(self.events) or self.write_paused

    def _pause(self) -> None:
        if self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    def _feed(self, data: bytes) -> None:
        session = self.session
        assert session is not None  # set in connection_made for every open connection
        self.received = time.perf_counter()
        self.events, self.next_event = session.feed(data, time.monotonic()), 0
        garbage = session.splitter.garbage_bytes
        if garbage != self.garbage:
            self.server.metrics.garbage.inc(garbage - self.garbage)
            self.garbage = garbage
        self._run()

    def _run(self) -> None:
        """Carry out the events of the current read, in order, until one must wait for the storer."""
        srv, events = self.server, self.events
        transport = self.transport
        assert transport is not None
        while self.next_event < len(events):
            ev = events[self.next_event]
            self.next_event += 1
            kind = type(ev)
            if kind is Refused:
                self.refusals += 1
                srv._hand_over_refusal(ev, self)  # type: ignore[arg-type]
                if self.refusals >= srv.cfg.max_refusals:
                    self.events = _NO_EVENTS
                    self.close("refusals")
                    return
                continue
            self.refusals = 0
            if kind is Reply:
                transport.write(ev.raw)  # type: ignore[union-attr]
            elif kind is Seen:
                srv.metrics.frames_of(ev.frame.cn).inc()  # type: ignore[union-attr]
            elif srv._hand_over(ev, self):  # type: ignore[arg-type]
                return  # upload_done carries on
        self.events = _NO_EVENTS
        self._continue()

    def upload_done(self, ev: Upload, stored: bool) -> None:
        """The storer is done with ``ev``: answer it if Kafka has it, then carry on."""
        self.outstanding -= 1
        if stored:
            self.answer(ev)
        if self.open and self.why is None:
            self._run() if self.next_event < len(self.events) else self._continue()

    def answer(self, ev: Upload) -> None:
        """``ev`` is stored (or needs no storing): remember it, send its answer."""
        assert self.session is not None
        self.session.stored(ev)
        if ev.ack is not None and self.open and self.transport is not None and not self.transport.is_closing():
            self.transport.write(ev.ack)
            self.server.metrics.ack_seconds.observe(time.perf_counter() - self.received)

    def dead_letter_done(self) -> None:
        self.outstanding -= 1
        if self.open and self.why is None:
            self._continue()

    def _continue(self) -> None:
        """Nothing of the current read is left: the held read next, else read again (or close: EOF, shutdown)."""
        if self._busy() or not self.open or self.why is not None:
            return
        if self.held is not None:
            data, self.held = self.held, None
            self._feed(data)
            return
        if self.eof:
            self.close("eof")
        elif self.server._stopping:
            self.close("shutdown")
        elif not self.reading and self.transport is not None:
            self.reading = True
            self.transport.resume_reading()


# --- the server ---------------------------------------------------------------------------------------------------


class Hj212Server:
    def __init__(self, cfg: Hj212ServerConfig, entities: list[Entity], keys: dict[str, bytes],
                 passwords: dict[str, str], sink: Sink, registry=None) -> None:
        from prometheus_client import CollectorRegistry

        self.cfg, self.sink = cfg, sink
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = _Metrics(self.registry)
        self.registrations: dict[str, Registration] = {}
        problems = []
        for e in entities:
            for s in e.sources:
                if s.hj212 is None:
                    continue
                mn = s.hj212.mn
                if mn in self.registrations:
                    problems.append(f"MN {mn} is registered by two sources ({self.registrations[mn].source.source_id}, "
                                    f"{s.id})")
                    continue
                if mn not in passwords:
                    problems.append(f"MN {mn} (source {s.id}): no password ({cfg.passwords_dir}/{mn}.pw)")
                if agent_id_of(mn) not in keys:
                    problems.append(f"MN {mn} (source {s.id}): no key ({cfg.keys_dir}/{agent_id_of(mn)}.key; make one "
                                    f"with: head -c 32 /dev/urandom > FILE, and enrol it with the workers)")
                self.registrations[mn] = Registration(SourceMap.of(s), passwords.get(mn, ""), e.tz)
        if problems:
            raise ValueError("; ".join(problems))
        self.keys = keys
        self.dedup = Dedup()
        self.seqlog: SeqLog | None = None
        self.server: asyncio.Server | None = None
        self.connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the running loop, from start()
        self._sweeper: asyncio.Task | None = None
        self._fillers: asyncio.Queue | None = None
        self._filling: asyncio.Task | None = None
        self._stopping = False
        self._all_closed: asyncio.Future | None = None
        # The storer: what the connections handed over during one pass of the event loop, stored together.
        self._uploads: list[tuple[Upload, _Connection]] = []
        self._refusals: list[tuple[Refused, _Connection]] = []
        self._store_scheduled = False
        self._storing: set[asyncio.Task] = set()
        self.store_passes = 0  # how many uploads share a pass: uploads / store_passes

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("the HJ 212 receiver is not started")
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def _seq(self) -> SeqLog:
        """The sequence log, which exists from :meth:`start` on (every caller runs after it)."""
        if self.seqlog is None:
            raise RuntimeError("the HJ 212 receiver is not started")
        return self.seqlog

    @property
    def _filler_queue(self) -> asyncio.Queue:
        if self._fillers is None:
            raise RuntimeError("the HJ 212 receiver is not started")
        return self._fillers

    async def start(self) -> None:
        c = self.cfg
        self._loop = asyncio.get_running_loop()
        self.seqlog = SeqLog(c.state_dir)
        await self.sink.start()
        self._fillers = asyncio.Queue()
        for item in self.seqlog.fillers():
            self._fillers.put_nowait(item)
        self._filling = asyncio.create_task(self._fill())
        self._sweeper = asyncio.create_task(self._sweep_idle())
        self.server = await self._loop.create_server(lambda: _Connection(self), c.listen, c.port,
                                                     backlog=min(c.max_connections, 4096))
        log.info("hj212: listening on %s:%d for %d MN(s)", c.listen, self.port, len(self.registrations),
                 extra={"event": "listening"})

    async def stop(self) -> None:
        """Stop accepting, let connections finish what they are storing (``shutdown_grace_s``), then close."""
        self._stopping = True
        if self.server is not None:
            self.server.close()
        if self.connections:
            self._all_closed = self._loop.create_future()
            for conn in list(self.connections):
                conn.shutdown()
            if self.connections:
                try:
                    await asyncio.wait_for(asyncio.shield(self._all_closed), self.cfg.shutdown_grace_s)
                except TimeoutError:
                    for conn in list(self.connections):
                        conn.close("shutdown", abort=True)
                    await asyncio.sleep(0)  # connection_lost runs
        for t in (self._filling, self._sweeper, *self._storing):
            if t is not None:
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)
        await self.sink.stop()
        if self.seqlog is not None:
            self.seqlog.close()
        log.info("hj212: stopped", extra={"event": "stopped"})

    async def _fill(self) -> None:
        """Numbers taken and never acknowledged: produce them as empty batches until Kafka takes them."""
        from schemas.batch import ReadingBatch

        while True:
            agent, seq, source = await self._filler_queue.get()
            key = self.keys.get(agent)
            if key is None:
                log.error("hj212: no key for %s: filler %d not produced", agent, seq)
                continue
            data = ReadingBatch.from_columns(agent_id=agent, source_id=source, seq=seq, channels=[], ts_ns=[],
                                             channel=[], value=[], flag=[]).encode()
            backoff = 1.0
            while True:
                try:
                    await self.sink.produce(data, agent.encode(), list(envelope.headers(agent, seq, key, data).items()))
                    break
                except Exception as exc:
                    log.warning("hj212: filler %s/%d not produced (%s); retry in %g s", agent, seq, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 60.0)
            self._seq.acked(agent, seq)
            self.metrics.fillers.inc()

    async def _sweep_idle(self) -> None:
        """Close connections silent for ``idle_timeout_s`` (one timer for all, not one per read)."""
        period = min(1.0, self.cfg.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            limit = self._loop.time() - self.cfg.idle_timeout_s
            for conn in list(self.connections):
                if conn.last < limit and conn.why is None:
                    conn.close("idle", abort=True)

    @staticmethod
    def encode(converted: Converted, agent: str, seq: int) -> bytes:
        """An upload's signed bytes-to-be: its reading batch on the wire (``Converted.encode``: without numpy for
        the handful of readings of an upload, byte for byte ``ReadingBatch.encode``)."""
        return converted.encode(agent, seq)

    # -- the storer: uploads and dead letters of every connection, stored once per pass of the event loop

    def _hand_over(self, ev: Upload, conn: _Connection) -> bool:
        """An upload of ``conn``: True when it went to the storer (``conn.upload_done`` follows), False when it
        needed no storing (a duplicate, no readings) and was answered at once."""
        m = self.metrics
        m.frames_of(ev.message.frame.cn).inc(len(ev.message.parts))
        if ev.duplicate or not len(ev.converted):
            if ev.duplicate:
                m.duplicates.inc()
            conn.answer(ev)
            return False
        conn.outstanding += 1
        self._uploads.append((ev, conn))
        self._schedule_store()
        return True

    def _hand_over_refusal(self, ev: Refused, conn: _Connection) -> None:
        conn.outstanding += 1
        self._refusals.append((ev, conn))
        self._schedule_store()

    def _schedule_store(self) -> None:
        if not self._store_scheduled:
            self._store_scheduled = True
            self._loop.call_soon(self._store_pass)  # after every read of this pass of the loop

    def _store_pass(self) -> None:
        self._store_scheduled = False
        uploads, self._uploads = self._uploads, []
        refusals, self._refusals = self._refusals, []
        task = self._loop.create_task(self._store(uploads, refusals))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)

    async def _store(self, uploads: list[tuple[Upload, _Connection]],
                     refusals: list[tuple[Refused, _Connection]]) -> None:
        """Store uploads (one batch each: sequence numbers under one fsync, one ``produce_many``), answer those
        Kafka acknowledged; then hand the refused frames to the dead-letter topic."""
        done: list[bool] = []
        try:
            if uploads:
                self.store_passes += 1
                done = await self._produce(uploads)
        finally:  # whatever happened, each connection hears back (a cancelled pass: nothing stored)
            for i, (ev, conn) in enumerate(uploads):
                conn.upload_done(ev, i < len(done) and done[i])
        handed = 0
        try:
            for refused, conn in refusals:
                await self._dead_letter(refused, conn.peer)
                handed += 1
                conn.dead_letter_done()
        finally:  # cancelled (shutdown): the others hear back too
            for _, conn in refusals[handed:]:
                conn.dead_letter_done()

    async def _produce(self, uploads: list[tuple[Upload, _Connection]]) -> list[bool]:
        m = self.metrics
        agents = [agent_id_of(ev.registration.mn) for ev, _ in uploads]
        try:
            seqs = await self._seq.take_many([(a, ev.converted.source_id) for a, (ev, _) in
                                              zip(agents, uploads, strict=True)])
        except OSError as exc:
            log.error("hj212: sequence log not written (%s): %d upload(s) left unanswered", exc, len(uploads))
            m.unacked.inc(len(uploads))
            return [False] * len(uploads)
        results: list[BaseException | None]
        try:
            records: list[Record] = []
            for (ev, _), agent, seq in zip(uploads, agents, seqs, strict=True):
                data = self.encode(ev.converted, agent, seq)
                records.append((data, agent.encode(),
                                list(envelope.headers(agent, seq, self.keys[agent], data).items())))
            results = await self.sink.produce_many(records)
        except Exception as exc:  # the numbers are taken: fillers below, whatever went wrong
            results = [exc] * len(uploads)
        done = []
        for (ev, _), agent, seq, failure in zip(uploads, agents, seqs, results, strict=True):
            if failure is None:
                self._seq.acked(agent, seq)
                m.batches_of(ev.message.frame.cn).inc()
            else:
                m.unacked.inc()
                log.warning("hj212: batch %s/%d not produced (%s); upload left unanswered", agent, seq, failure,
                            extra={"event": "produce_failed", "mn": ev.registration.mn})
                self._filler_queue.put_nowait((agent, seq, ev.converted.source_id))
            done.append(failure is None)
        return done

    async def _dead_letter(self, ev: Refused, peer: str) -> None:
        reason = ev.reason if ev.reason in ("unknown_mn", "bad_password", "crc") else "undecodable"
        detail = ev.detail if reason != "undecodable" else f"{ev.reason}: {ev.detail}"
        self.metrics.refused.labels(reason).inc()
        headers = [("cems-dlq-reason", reason.encode()), ("cems-dlq-detail", detail.encode("utf-8", "replace")[:4096]),
                   ("cems-dlq-source", f"hj212://{peer}".encode()), ("cems-dlq-at", f"{time.time():.3f}".encode())]
        if ev.mn:
            headers.append(("cems-hj212-mn", ev.mn.encode("utf-8", "replace")[:64]))
        try:
            await self.sink.dead_letter(ev.raw, headers)
        except Exception as exc:
            log.warning("hj212: dead letter not produced (%s)", exc)


def read_secrets(cfg: Hj212ServerConfig, mns) -> tuple[dict[str, bytes], dict[str, str]]:
    """Keys (``keys_dir/hj212-<MN>.key``) and passwords (``passwords_dir/<MN>.pw``, first line) of the MNs."""
    keys, passwords = {}, {}
    for mn in mns:
        k = Path(cfg.keys_dir) / f"{agent_id_of(mn)}.key"
        p = Path(cfg.passwords_dir) / f"{mn}.pw"
        if k.is_file():
            keys[agent_id_of(mn)] = k.read_bytes()
        if p.is_file():
            lines = p.read_text(encoding="utf-8").splitlines()
            if lines:
                passwords[mn] = lines[0].strip()
    return keys, passwords
