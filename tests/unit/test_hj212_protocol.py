"""``cems hj212 serve``'s connection shell (``ingest.hj212_server._Connection``, an ``asyncio.BufferedProtocol``)
driven byte by byte through a fake transport: whatever the cuts of the stream, it writes the answers the session
gives for the whole stream, in order, each data answer only once its batch is in the sink; it pauses reading while
a read is carried out or the sink is slow, holds one read at most, and keeps its memory bounded whatever arrives."""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.hj212_server import Hj212Server, Hj212ServerConfig, MemorySink, _Connection
from schemas.batch import decode_batch
from schemas.hj212 import SourceMap, build_frame
from schemas.hj212.session import Dedup, ReceiverSession, Registration, Reply, Upload
from schemas.site import Entity

MNS = ("010000A8900016F000169DC0", "010000A8900016F000169DC1")
READ = 512  # read_bytes of these tests: small, so that frames (about 130 bytes) fall across reads


def entity() -> Entity:
    return Entity.model_validate({"id": "e", "name": "e", "sector": "cement", "sources": [
        {"id": f"s{k}", "name": f"s{k}", "duct_area_m2": 10.0, "velocity_field_coefficient": 1.0,
         "ambient_pressure": {"kpa": 101.0}, "channels": [
             {"id": "a21026", "quantity": "a21026", "unit": "mg/m3"},
             {"id": "a05001", "quantity": "a05001", "unit": "%", "basis": "dry"},
             {"id": "a00000", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}],
         "hj212": {"mn": mn}} for k, mn in enumerate(MNS)]})


def upload(k: int, minute: int, value: float = 20.5) -> bytes:
    """A 2051 upload of MN k for 2026-03-01 08:mm local (00:mm UTC), asking for its 9014."""
    return build_frame(st="31", cn="2051", pw="123456", mn=MNS[k], qn=f"202603010{8 + minute // 60:01d}"
                       f"{minute % 60:02d}00000", flag=5,
                       cp=f"DataTime=2026030108{minute:02d}00;a21026-Avg={value:.2f},a21026-Flag=N")


def heartbeat(k: int) -> bytes:
    return build_frame(st="31", cn="9015", pw="123456", mn=MNS[k], qn="20260301080000000", flag=9)


class FakeTransport:
    """What ``_Connection`` uses of a transport, recorded."""

    def __init__(self, conn: _Connection) -> None:
        self.conn, self.written, self.reading, self.closing, self.pauses = conn, [], True, False, 0

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.written.append(data)

    def pause_reading(self) -> None:
        assert self.reading
        self.reading, self.pauses = False, self.pauses + 1

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    abort = close

    def get_extra_info(self, name: str):
        return ("192.0.2.7", 40000) if name == "peername" else None


class SlowSink(MemorySink):
    """A sink whose produce_many waits until ``gate`` is set (Kafka slow)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.gate = asyncio.Event()

    async def produce_many(self, records):
        await self.gate.wait()
        return await super().produce_many(records)


async def started(tmp_path, sink: MemorySink, **settings) -> Hj212Server:
    cfg = Hj212ServerConfig.model_validate({
        "listen": "127.0.0.1", "port": 0, "kafka": {"bootstrap_servers": "127.0.0.1:1"}, "sites": [tmp_path],
        "keys_dir": tmp_path, "passwords_dir": tmp_path, "state_dir": tmp_path, "metrics_port": 0,
        "read_bytes": READ, "max_frame_bytes": 1024, **settings})
    server = Hj212Server(cfg, [entity()], {f"hj212-{mn}": b"k" * 32 for mn in MNS}, dict.fromkeys(MNS, "123456"),
                         sink)
    await server.start()
    return server


def connect(server: Hj212Server) -> tuple[_Connection, FakeTransport]:
    conn = _Connection(server)
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


async def settle() -> None:
    for _ in range(20):  # the store pass, its task, the sequence log's flush
        await asyncio.sleep(0)


async def deliver(conn: _Connection, transport: FakeTransport, data: bytes, cuts: list[int]) -> None:
    """``data`` in reads cut at ``cuts`` (each at most READ bytes, as the buffer allows), a read only while the
    transport reads, as asyncio does."""
    pos = 0
    for cut in [*cuts, len(data)]:
        while pos < cut:
            for _ in range(200):
                if transport.reading:
                    break
                await asyncio.sleep(0)
            assert transport.reading, "reading never resumed"
            buf = conn.get_buffer(-1)
            n = min(cut - pos, len(buf))
            buf[:n] = data[pos:pos + n]
            conn.buffer_updated(n)
            pos += n
            assert conn.held is None or len(conn.held) <= READ  # one held read at most
            assert conn.session is not None and conn.session.splitter.pending_bytes <= 1024 + READ
            await asyncio.sleep(0)
    await settle()


def expected_answers(stream: bytes) -> list[bytes]:
    """What the session answers for the whole stream at once (every upload stored, so acknowledged)."""
    regs = {s.hj212.mn: Registration(SourceMap.of(s), "123456") for s in entity().sources if s.hj212}
    session = ReceiverSession(regs.get, dedup=Dedup(), max_frame_bytes=1024, max_messages=4, max_packets=32)
    out = []
    for ev in session.feed(stream, 0.0):
        if isinstance(ev, Reply):
            out.append(ev.raw)
        elif isinstance(ev, Upload):
            session.stored(ev)
            if ev.ack is not None:
                out.append(ev.ack)
    return out


PIECES = st.one_of(
    st.tuples(st.just("upload"), st.integers(0, 1), st.integers(0, 59)),
    st.tuples(st.just("heartbeat"), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("garbage"), st.integers(1, 300), st.just(0)),
    st.tuples(st.just("bad_crc"), st.integers(0, 1), st.integers(0, 59)),
    st.tuples(st.just("oversize"), st.integers(1100, 3000), st.just(0)),
)


def piece(kind: str, a: int, b: int, rng: random.Random) -> bytes:
    if kind == "upload":
        return upload(a, b)
    if kind == "heartbeat":
        return heartbeat(a)
    if kind == "garbage":  # no '#', no CR/LF: bytes outside any frame
        return bytes(rng.choice(b"abcxyz0123=;,&") for _ in range(a))
    if kind == "bad_crc":
        raw = bytearray(upload(a, b))
        raw[-6:-2] = b"0000" if raw[-6:-2] != b"0000" else b"FFFF"
        return bytes(raw)
    return b"##9999" + b"Q" * a + b"\r\n"  # a candidate past max_frame_bytes: dropped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.lists(PIECES, min_size=1, max_size=25), st.lists(st.integers(1, 4000), max_size=30), st.integers(0, 9))
def test_any_cut_of_a_stream_gives_the_answers_of_the_whole_stream(tmp_path, pieces, cuts, seed) -> None:
    """Frames, retransmissions, garbage, bad CRCs and oversize candidates, cut anywhere: the same answers in the
    same order as the session gives for the stream whole, one batch per distinct upload, memory bounded."""
    rng = random.Random(seed)
    stream = b"".join(piece(*p, rng) for p in pieces)
    cut_at = sorted({c % (len(stream) + 1) for c in cuts})

    async def run() -> tuple[list[bytes], MemorySink, _Connection]:
        sink = MemorySink()
        server = await started(tmp_path / f"s{rng.random()}", sink, max_refusals=1000)
        try:
            conn, transport = connect(server)
            await deliver(conn, transport, stream, cut_at)
            assert not conn._busy() and transport.reading and not transport.closing
            return transport.written, sink, conn
        finally:
            await server.stop()

    written, sink, _ = asyncio.run(run())
    assert written == expected_answers(stream)
    uploads = {(k, m) for kind, k, m in pieces if kind == "upload"}
    stored = {(key, decode_batch(v).ts_ns.tolist()[0]) for v, key, _ in sink.records}
    # each distinct upload once (a retransmission within one read is stored again: the worker drops the repeat)
    assert {(f"hj212-{MNS[k]}".encode(), (1_772_323_200 + 60 * m) * 10**9) for k, m in uploads} == stored


def test_a_slow_sink_pauses_reading_and_holds_one_read(tmp_path) -> None:
    """While an upload waits for the sink, the next read is held and reading paused (TCP then holds the
    datalogger): nothing more is read, and nothing is answered before the sink has the batch."""

    async def run() -> None:
        sink = SlowSink()
        server = await started(tmp_path, sink)
        try:
            conn, transport = connect(server)
            first, second = upload(0, 1), upload(0, 2)
            conn.get_buffer(-1)[:len(first)] = first
            conn.buffer_updated(len(first))
            await settle()
            assert transport.written == [] and transport.reading  # waiting for the sink, nothing else came
            conn.get_buffer(-1)[:len(second)] = second
            conn.buffer_updated(len(second))
            assert conn.held == second and not transport.reading and transport.pauses == 1
            sink.gate.set()
            await settle()
            assert [a[:4] for a in transport.written] == [b"##00", b"##00"] and len(sink.records) == 2
            assert conn.held is None and transport.reading  # both answered (9014 each), reading again
        finally:
            await server.stop()

    asyncio.run(run())


def test_a_full_write_buffer_pauses_reading_until_it_drains(tmp_path) -> None:
    async def run() -> None:
        server = await started(tmp_path, MemorySink())
        try:
            conn, transport = connect(server)
            conn.pause_writing()
            assert not transport.reading
            hb = heartbeat(0)
            conn.get_buffer(-1)[:len(hb)] = hb  # a read that was under way: held
            conn.buffer_updated(len(hb))
            assert conn.held == hb and transport.written == []
            conn.resume_writing()
            assert conn.held is None and len(transport.written) == 1 and transport.reading  # its 9013
        finally:
            await server.stop()

    asyncio.run(run())


def test_eof_while_storing_still_answers_then_closes(tmp_path) -> None:
    async def run() -> None:
        sink = SlowSink()
        server = await started(tmp_path, sink)
        try:
            conn, transport = connect(server)
            raw = upload(1, 5)
            conn.get_buffer(-1)[:len(raw)] = raw
            conn.buffer_updated(len(raw))
            assert conn.eof_received() is True and not transport.closing  # half-open: the answer can still go
            sink.gate.set()
            await settle()
            assert len(transport.written) == 1 and transport.closing
        finally:
            await server.stop()
        assert server.registry.get_sample_value("cems_hj212_connections_closed_total", {"why": "eof"}) == 1

    asyncio.run(run())


def test_refusals_in_a_row_close_the_connection_and_are_dead_lettered(tmp_path) -> None:
    async def run() -> MemorySink:
        sink = MemorySink()
        server = await started(tmp_path, sink, max_refusals=3)
        try:
            conn, transport = connect(server)
            bad = bytearray(upload(0, 1))
            bad[-6:-2] = b"0000"
            stream = bytes(bad) * 3  # 3 x 130 bytes: one read
            conn.get_buffer(-1)[:len(stream)] = stream
            conn.buffer_updated(len(stream))
            await settle()
            assert transport.closing and transport.written == []
        finally:
            await server.stop()
        assert server.registry.get_sample_value("cems_hj212_connections_closed_total", {"why": "refusals"}) == 1
        return sink

    sink = asyncio.run(run())
    assert [dict(h)["cems-dlq-reason"] for _, h in sink.dead_letters] == [b"crc"] * 3
