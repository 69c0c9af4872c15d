"""HJ 212 throughput: the codec against a per-character reference parser, then the central receiver under load.

    python bench/bench_hj212.py [--frames 20000] [--reference-frames 2000] [--repeat 5]
                                [--connections 1000] [--seconds 10] [--rate 1000] [--kafka HOST:PORT]
                                [--codec-only | --receiver-only] [--receiver-repeat 3] [--loops asyncio,uvloop]
                                [--pyspy FILE]

Typical CEMS frames of 10 factors: a 2011 real-time frame (Rtd, ZsRtd for the pollutants, Flag) and a 2051 minute
frame (Min/Avg/Max, Cou for the pollutants, CO2 and flow, ZsAvg, Flag), written by the codec's own builder. The
reference parser, written here, is what a straightforward implementation does: a state machine reading one
character at a time, computing the CRC bit by bit as it goes (HJ 212-2017 Appendix A as printed) and collecting
header fields, factors and values. Both parse the same frames; their results are checked to be equal before
anything is timed. A third line runs :class:`FrameSplitter` + :func:`parse_frame` over the frames as one byte
stream cut into 1,460-byte TCP segments, i.e. what the receiver will do. Figures are wall-clock, best (and median)
of ``--repeat`` runs. The national picture is about 1,000 frames/s; the target is 10x that on one core.

The receiver part runs ``ingest.hj212_server.Hj212Server`` in this process (one core's worth: the event loop is one
thread) and a load generator in another process: ``--connections`` dataloggers, each registered with its own MN,
send 2051 minute frames (10 factors, 860 bytes) and wait for each data answer, as dataloggers do. Two phases:
the national load (``--rate`` frames/s spread over the connections, e.g. 1,000 connections at one frame a second),
then saturation (each connection sends its next frame as soon as the previous one is answered). Five variants, in
the same run and interleaved ``--receiver-repeat`` times: the baseline (the shell before the ``asyncio.Protocol``
one: a coroutine per connection over StreamReader/StreamWriter, each upload stored by its own connection, kept here
in :func:`streams_shell_server`), ``cems hj212 serve`` as it is on asyncio's loop and on uvloop (the optional
``hj212-fast`` extra), and the floor: a bare ``asyncio.Protocol`` that answers every frame at once without parsing
anything (:func:`echo_floor_server`), on each loop: what no Python receiver on that loop gets below. Printed per
variant and phase, best (median): frames acknowledged per second, the receiver's CPU share, frames and readings
per CPU-second of the receiver (user + system: what one core carries), µs of CPU per frame, the headroom at
saturation over the national 1,000 frames/s, the system share, frames per fsync and per store pass, and the time
to acknowledge (p50, p99) as the generator measures it (send to answer received) and as the receiver's histogram
has it. Batches go to an in-memory counter by default (the receiver's own cost, with its fsync'd sequence log on
the real disk), or to a real broker with ``--kafka``.
``--pyspy FILE`` records the last saturation phase of the receiver (the first ``cems hj212 serve`` variant) with
py-spy and prints where the time went (:data:`PROFILE_PARTS`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.hj212 import DataRecord, FrameSplitter, build_data_upload, parse_frame
from schemas.quantities import Flag

MN = "010000A8900016F000169DC0"
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
POLLUTANTS = ("a21026", "a21002", "a34013")
OTHERS = ("a05001", "a19001", "a01011", "a01012", "a01013", "a01014", "a00000")


def realtime(i: int) -> bytes:
    x = i % 97 / 10
    recs = [DataRecord(c, rtd=round(20 + k + x, 3), zs_rtd=round(25 + k + x, 3), flag=Flag.N)
            for k, c in enumerate(POLLUTANTS)]
    recs += [DataRecord(c, rtd=round(5 + k + x, 2), flag=Flag.C if (i + k) % 50 == 0 else Flag.N)
             for k, c in enumerate(OTHERS)]
    (raw,) = build_data_upload("2011", recs, data_time=T0, st="31", pw="123456", mn=MN,
                               qn=f"20260301080000{i % 1000:03d}")
    return raw


def minute(i: int) -> bytes:
    x = i % 89 / 10
    recs = [DataRecord(c, min=round(18 + k + x, 2), avg=round(20 + k + x, 2), max=round(23 + k + x, 2),
                       cou=round(0.5 + k + x, 3), zs_avg=round(25 + k + x, 2), flag=Flag.N)
            for k, c in enumerate(POLLUTANTS)]
    recs += [DataRecord(c, min=round(4 + k + x, 2), avg=round(5 + k + x, 2), max=round(6 + k + x, 2),
                        cou=round(300 + x, 1) if c in ("a05001", "a00000") else None, flag=Flag.N)
             for k, c in enumerate(OTHERS)]
    (raw,) = build_data_upload("2051", recs, data_time=T0, st="31", pw="123456", mn=MN,
                               qn=f"20260301080100{i % 1000:03d}")
    return raw


# --- the reference: one character at a time ---------------------------------------------------------------------

NUMERIC = ("Rtd", "Min", "Avg", "Max", "Cou", "ZsRtd", "ZsMin", "ZsAvg", "ZsMax")


# One per-character loop is the baseline measured: split into functions, it would time their calls as well.
def reference_parse(raw: bytes) -> dict:  # noqa: C901 - the naive state machine, on purpose
    """Per-character state machine: ``##``, 4 length digits, the data segment (CRC updated per character, tokens
    cut per character), the 4 CRC digits, ``<CR><LF>``."""
    text = raw.decode("utf-8")
    state, sub = "H1", "KEY"
    digits, crc_text, key, value = "", "", "", ""
    remaining, crc = 0, 0xFFFF
    header: dict[str, str] = {}
    records: dict[str, dict[str, object]] = {}
    params: dict[str, str] = {}

    def store(k: str, v: str) -> None:
        code, dash, name = k.partition("-")
        if dash:
            records.setdefault(code, {})[name] = float(v) if name in NUMERIC else v
        else:
            params[k] = v

    for ch in text:
        if state == "H1" or state == "H2":
            if ch != "#":
                raise ValueError("header")
            state = "H2" if state == "H1" else "LEN"
        elif state == "LEN":
            if not "0" <= ch <= "9":
                raise ValueError("length")
            digits += ch
            if len(digits) == 4:
                remaining, state = int(digits), "SEG"
        elif state == "SEG":
            crc = (crc >> 8) ^ ord(ch)  # HJ 212-2017 Appendix A, one character at a time
            for _ in range(8):
                crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
            remaining -= 1
            if sub == "KEY":
                if ch == "=":
                    sub = "CPAMP1" if key == "CP" else "VALUE"
                else:
                    key += ch
            elif sub == "VALUE":
                if ch == ";":
                    header[key] = value
                    key, value, sub = "", "", "KEY"
                else:
                    value += ch
            elif sub in ("CPAMP1", "CPAMP2"):
                if ch != "&":
                    raise ValueError("CP")
                sub = "CPAMP2" if sub == "CPAMP1" else "CPKEY"
                key = ""
            elif sub == "CPKEY":
                if ch == "=":
                    sub = "CPVALUE"
                elif ch == "&":
                    sub = "CPEND"
                else:
                    key += ch
            elif sub == "CPVALUE":
                if ch in ";,&":
                    store(key, value)
                    key, value = "", ""
                    sub = "CPEND" if ch == "&" else "CPKEY"
                else:
                    value += ch
            elif sub == "CPEND":
                if ch != "&":
                    raise ValueError("CP end")
                sub = "DONE"
            else:
                raise ValueError("text after the data area")
            if remaining == 0:
                if sub != "DONE":
                    raise ValueError("length")
                state = "CRC"
        elif state == "CRC":
            crc_text += ch
            if len(crc_text) == 4:
                if int(crc_text, 16) != crc:
                    raise ValueError("crc")
                state = "CR"
        elif state == "CR":
            if ch != "\r":
                raise ValueError("trailer")
            state = "LF"
        elif state == "LF":
            if ch != "\n":
                raise ValueError("trailer")
            state = "END"
        else:
            raise ValueError("bytes after the trailer")
    if state != "END":
        raise ValueError("truncated")
    return {"header": header, "params": params, "records": records}


def codec_view(raw: bytes) -> dict:
    """The codec's result in the reference's shape, to check that both read the same values."""
    f = parse_frame(raw, strict=True)
    names = {"rtd": "Rtd", "min": "Min", "avg": "Avg", "max": "Max", "cou": "Cou", "zs_rtd": "ZsRtd",
             "zs_avg": "ZsAvg"}
    records = {}
    for r in f.records:
        d = {n: getattr(r, a) for a, n in names.items() if getattr(r, a) is not None}
        d["Flag"] = r.flag_letter
        records[r.code] = d
    header = {"QN": f.qn, "ST": f.st, "CN": f.cn, "PW": f.pw, "MN": f.mn, "Flag": str(f.flag)}
    return {"header": header, "data_time": f.data_time, "records": records}


def timed(fn, frames: list[bytes], repeat: int) -> tuple[float, float]:
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for raw in frames:
            fn(raw)
        rates.append(len(frames) / (time.perf_counter() - t0))
    return max(rates), statistics.median(rates)


def stream_rate(frames: list[bytes], repeat: int) -> tuple[float, float]:
    stream = b"".join(frames)
    chunks = [stream[i:i + 1460] for i in range(0, len(stream), 1460)]
    rates = []
    for _ in range(repeat):
        s = FrameSplitter()
        t0 = time.perf_counter()
        n = 0
        for c in chunks:
            for raw in s.feed(c):
                parse_frame(raw)
                n += 1
        rates.append(n / (time.perf_counter() - t0))
        assert n == len(frames)
    return max(rates), statistics.median(rates)


# --- the receiver under load ---------------------------------------------------------------------------------------

CODES = (("a21026", "mg/m3"), ("a21002", "mg/m3"), ("a34013", "mg/m3"), ("a05001", "%"), ("a19001", "%"),
         ("a01011", "m/s"), ("a01012", "degC"), ("a01013", "kPa"), ("a01014", "%"), ("a00000", "m3/h"))


def bench_entity(n: int):
    from schemas.site import Entity

    chans = [{"id": c, "quantity": c, "unit": u, **({"basis": "dry"} if c in ("a05001", "a19001") else {}),
              **({"basis": "standard_dry"} if c == "a00000" else {})} for c, u in CODES]
    return Entity.model_validate({"id": "bench", "name": "bench", "sector": "cement", "sources": [
        {"id": f"s{k}", "name": f"s{k}", "duct_area_m2": 10.0, "velocity_field_coefficient": 1.0,
         "ambient_pressure": {"kpa": 101.0}, "channels": chans, "hj212": {"mn": f"{k:024X}"}} for k in range(n)]})


class CountingSink:
    """Counts what the receiver produces (its own cost, without a broker's)."""

    def __init__(self) -> None:
        self.batches = self.dead = 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def produce(self, value, key, headers) -> None:
        self.batches += 1

    async def produce_many(self, records) -> list:
        self.batches += len(records)
        return [None] * len(records)

    async def dead_letter(self, value, headers) -> None:
        self.dead += 1


def _frames_for(k: int, count: int) -> list[bytes]:
    from schemas.hj212 import build_frame

    mn = f"{k:024X}"
    out = []
    for i in range(count):  # each minute unique: a repeat would be a duplicate, answered without a batch
        t = T0.timestamp() + 8 * 3600 + i * 60
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(t))
        x = (k * 7 + i) % 89 / 10
        cp = "DataTime=" + stamp + ";" + ";".join(
            f"{c}-Min={18 + j + x:.2f},{c}-Avg={20 + j + x:.2f},{c}-Max={23 + j + x:.2f},{c}-Flag=N"
            for j, (c, _) in enumerate(CODES))
        out.append(build_frame(st="31", cn="2051", pw="123456", mn=mn, qn=f"{stamp}{k % 1000:03d}", flag=5, cp=cp))
    return out


def _generator(port: int, n: int, seconds: float, rate: float, per_conn: int, pipe) -> None:
    """The dataloggers (another process): the national load, then saturation; latencies measured here."""
    import asyncio

    frames = [_frames_for(k, per_conn) for k in range(n)]
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    used: list[int] = []  # frames sent per connection, over both phases
    pipe.send("ready")
    pipe.recv()

    async def phase(paced: bool, start: float, end: float) -> tuple[int, list[float]]:
        lat: list[float] = []

        async def one(k: int, reader, writer, used: list[int]) -> int:
            sent = 0
            period = n / rate
            next_t = start + (k / n) * period
            while True:
                now = time.perf_counter()
                if paced:
                    if next_t > now:
                        await asyncio.sleep(next_t - now)
                    next_t += period
                if time.perf_counter() >= end or used[k] >= per_conn:
                    return sent
                t = time.perf_counter()
                writer.write(frames[k][used[k]])
                used[k] += 1
                await reader.readuntil(b"\r\n")
                lat.append(time.perf_counter() - t)
                sent += 1

        counts = await asyncio.gather(*(one(k, r, w, used) for k, (r, w) in enumerate(conns)))
        return sum(counts), lat

    async def main() -> None:
        for _ in range(n):
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        used.extend([0] * n)
        pipe.send("connected")
        pipe.recv()
        for paced in (True, False):
            t0 = time.perf_counter()
            count, lat = await phase(paced, t0, t0 + seconds)
            wall = time.perf_counter() - t0
            lat.sort()
            exhausted = sum(u >= per_conn for u in used)
            pipe.send((count, wall, *(_nearest_rank(lat, q) for q in (0.5, 0.99, 0.999)), exhausted))
            pipe.recv()
        for _, w in conns:
            w.close()

    try:  # the load generator on the faster loop where installed: it shares the two cores with the receiver
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def _nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (the rank at or below), NaN of none."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def streams_shell_server():  # noqa: C901 - the previous shell, kept whole for the comparison
    """``Hj212Server`` with the shell it had before the ``asyncio.Protocol`` one, for the comparison in the same
    run: a coroutine per connection over ``StreamReader``/``StreamWriter``, each upload's sequence number, batch
    and produce awaited by its own connection, and ``drain`` after every read (the code of ``ingest/
    hj212_server.py`` as it was, kept here only). The codec, session, encoding and sinks are today's."""
    import asyncio

    from ingest.hj212_server import Hj212Server, agent_id_of
    from schemas import envelope
    from schemas.hj212.session import ReceiverSession, Refused, Reply, Seen

    class StreamsShell(Hj212Server):
        async def start(self) -> None:
            c = self.cfg
            self._loop = asyncio.get_running_loop()
            self._tasks: set[asyncio.Task] = set()
            self._last_read: dict[asyncio.Task, tuple[float, asyncio.StreamWriter]] = {}
            self._idled: set[asyncio.Task] = set()
            await super().start()
            assert self.server is not None
            self.server.close()  # the Protocol server's: this shell listens with a stream server instead
            self.server = await asyncio.start_server(self._stream_connection, c.listen, 0, limit=c.read_bytes,
                                                     backlog=min(c.max_connections, 4096))

        async def stop(self) -> None:
            self._stopping = True
            if self.server is not None:
                self.server.close()
            if self._tasks:
                _, late = await asyncio.wait(self._tasks, timeout=self.cfg.shutdown_grace_s)
                for pending in late:
                    pending.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            await super().stop()

        async def _stream_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            c, m = self.cfg, self.metrics
            if self._stopping or len(self._tasks) >= c.max_connections:
                m.rejected_connections.inc()
                writer.close()
                return
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            m.connections.inc()
            peer = writer.get_extra_info("peername")
            peer = f"{peer[0]}:{peer[1]}" if peer else "?"
            session = ReceiverSession(self.registrations.get, dedup=self.dedup, strict=c.strict,
                                      max_frame_bytes=c.max_frame_bytes, max_messages=c.split_messages,
                                      max_packets=c.split_packets)
            refusals, garbage, why = 0, 0, "eof"
            loop = asyncio.get_running_loop()
            try:
                while not self._stopping:
                    self._last_read[task] = (loop.time(), writer)
                    data = await reader.read(c.read_bytes)
                    if not data:
                        break
                    received = time.perf_counter()
                    for ev in session.feed(data, time.monotonic()):
                        if isinstance(ev, Refused):
                            refusals += 1
                            await self._dead_letter(ev, peer)
                            if refusals >= c.max_refusals:
                                break
                            continue
                        refusals = 0
                        if isinstance(ev, Reply):
                            writer.write(ev.raw)
                        elif isinstance(ev, Seen):
                            m.frames_of(ev.frame.cn).inc()
                        else:
                            await self._stream_upload(ev, session, writer, received)
                    if session.splitter.garbage_bytes != garbage:
                        m.garbage.inc(session.splitter.garbage_bytes - garbage)
                        garbage = session.splitter.garbage_bytes
                    if refusals >= c.max_refusals:
                        why = "refusals"
                        break
                    await writer.drain()
            except (ConnectionError, OSError):
                why = "reset"
            except asyncio.CancelledError:
                why = "shutdown"
                raise
            finally:
                self._last_read.pop(task, None)
                m.closed.labels(why).inc()
                m.connections.dec()
                self._tasks.discard(task)
                writer.close()

        async def _stream_upload(self, ev, session, writer, received: float) -> None:
            m, cn = self.metrics, ev.message.frame.cn
            m.frames_of(cn).inc(len(ev.message.parts))
            if ev.duplicate:
                m.duplicates.inc()
            elif len(ev.converted):
                agent = agent_id_of(ev.registration.mn)
                seq = await self._seq.take(agent, ev.converted.source_id)
                data = self.encode(ev.converted, agent, seq)
                try:
                    await self.sink.produce(data, agent.encode(),
                                            list(envelope.headers(agent, seq, self.keys[agent], data).items()))
                except Exception:
                    m.unacked.inc()
                    self._filler_queue.put_nowait((agent, seq, ev.converted.source_id))
                    return
                self._seq.acked(agent, seq)
                m.batches_of(cn).inc()
            session.stored(ev)
            if ev.ack is not None:
                writer.write(ev.ack)
                m.ack_seconds.observe(time.perf_counter() - received)

    return StreamsShell


def echo_floor_server():
    """The floor of any Python receiver on this loop: an ``asyncio.Protocol`` that answers every ``<CR><LF>``-ended
    frame at once with a fixed 9014-sized answer, parsing, storing and counting nothing (its own histogram only,
    so the benchmark reads it like the others)."""
    import asyncio

    from ingest.hj212_server import Hj212Server

    answer = b"##0091QN=20260301080100000;ST=91;CN=9014;PW=123456;MN=000000000000000000000000;Flag=4;CP=&&&&0000\r\n"

    class Echo(asyncio.Protocol):
        def __init__(self, server) -> None:
            self.server, self.buf = server, b""

        def connection_made(self, transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            received = time.perf_counter()
            while (end := buf.find(b"\r\n")) >= 0:
                buf = buf[end + 2:]
                self.transport.write(answer)
                self.server.metrics.ack_seconds.observe(time.perf_counter() - received)
            self.buf = buf

    class EchoFloor(Hj212Server):
        async def start(self) -> None:
            await super().start()
            assert self.server is not None
            self.server.close()
            self.server = await self._loop.create_server(lambda: Echo(self), self.cfg.listen, 0, backlog=4096)

    return EchoFloor


#: (name, shell, event loop): the receiver variants measured, the baseline first. ``streams``: the shell before
#: (:func:`streams_shell_server`); ``protocol``: ``cems hj212 serve`` as it is; ``echo``: the floor
#: (:func:`echo_floor_server`).
VARIANTS = (("before: streams shell, asyncio", "streams", "asyncio"),
            ("now: Protocol shell, asyncio", "protocol", "asyncio"),
            ("now: Protocol shell, uvloop", "protocol", "uvloop"),
            ("floor: bare Protocol, asyncio", "echo", "asyncio"),
            ("floor: bare Protocol, uvloop", "echo", "uvloop"))
#: Frames per second per connection the generator has unique minutes for at saturation (20,000 frames/s over
#: 1,000 connections: above anything one core reaches).
SATURATION_PER_CONN = 20
#: The national load (about 20,000 stacks: minute data plus real-time data every 30 s) [frames/s], and the
#: headroom over it that issue 16 asks of one core.
NATIONAL_FPS, TARGET_HEADROOM = 1_000, 10
#: Readings per frame of the generator's 2051 frames (one Avg per factor).
READINGS_PER_FRAME = len(CODES)


def run_receiver(n: int, seconds: float, rate: float, kafka: str | None, shell: str, loop: str,
                 pyspy: str | None = None) -> list[dict]:
    """One receiver (a fresh server in this process on a fresh loop, a fresh generator process): the paced
    phase, then saturation; one dict of figures per phase. ``pyspy``: record the saturation phase with py-spy
    (``--format raw``) into that file."""
    import asyncio
    import multiprocessing as mp
    import resource
    import tempfile

    from prometheus_client import CollectorRegistry

    from ingest.hj212_server import Hj212Server, Hj212ServerConfig, KafkaSink, agent_id_of, loop_factory

    resource.setrlimit(resource.RLIMIT_NOFILE, (max(4096, 2 * n + 256),) * 2)
    entity = bench_entity(n)
    mns = [s.hj212.mn for s in entity.sources]
    keys = {agent_id_of(mn): b"k" * 32 for mn in mns}
    passwords = dict.fromkeys(mns, "123456")
    per_conn = int(max(rate / n * seconds * 1.5, 1) + seconds * SATURATION_PER_CONN) + 10  # unique minutes
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cems-bench-hj212-") as tmp:  # never in the repository
        cfg = Hj212ServerConfig.model_validate({
            "listen": "127.0.0.1", "port": 0, "kafka": {"bootstrap_servers": kafka or "127.0.0.1:1"},
            "topic": f"cems.bench.hj212.{os.getpid()}", "sites": [tmp], "keys_dir": tmp, "passwords_dir": tmp,
            "state_dir": tmp, "max_connections": n + 10, "metrics_port": 0})
        sink = KafkaSink(cfg.kafka, cfg.topic, cfg.topic + ".dlq") if kafka else CountingSink()
        registry = CollectorRegistry()

        async def run() -> None:
            kind = {"protocol": Hj212Server, "streams": streams_shell_server(), "echo": echo_floor_server()}[shell]
            server = kind(cfg, [entity], keys, passwords, sink, registry)
            await server.start()
            parent, child = mp.Pipe()
            gen = mp.get_context("fork").Process(target=_generator, args=(server.port, n, seconds, rate, per_conn,
                                                                             child), daemon=True)
            gen.start()
            ev_loop = asyncio.get_running_loop()
            recv = lambda: ev_loop.run_in_executor(None, parent.recv)  # noqa: E731
            assert await recv() == "ready"
            parent.send("go")
            assert await recv() == "connected"
            for name in (f"offered {rate:,.0f} frames/s", "saturation"):
                before = registry.get_sample_value("cems_hj212_ack_seconds_count") or 0
                buckets0 = _buckets(registry)
                spy = None
                if pyspy and name == "saturation":
                    import subprocess

                    spy = subprocess.Popen(["py-spy", "record", "--pid", str(os.getpid()), "--rate", "250",
                                            "--duration", str(max(1, int(seconds) - 1)), "--format", "raw",
                                            "--nonblocking", "-o", pyspy], stdout=subprocess.DEVNULL)
                t0, w0, f0, s0 = os.times(), time.perf_counter(), server._seq.fsyncs, server.store_passes
                parent.send("go")
                count, wall, p50, p99, p999, exhausted = await recv()
                t1, elapsed = os.times(), time.perf_counter() - w0
                user, system = t1.user - t0.user, t1.system - t0.system
                cpu, fsyncs, passes = user + system, server._seq.fsyncs - f0, server.store_passes - s0
                acked = (registry.get_sample_value("cems_hj212_ack_seconds_count") or 0) - before
                if spy is not None:
                    spy.wait()
                results.append({"phase": name, "fps": count / wall, "cpu": cpu / elapsed,
                                "per_cpu_s": acked / max(cpu, 1e-9), "us_per_frame": cpu / max(acked, 1) * 1e6,
                                "p50": p50, "p99": p99, "p999": p999, "exhausted": exhausted,
                                "system": system / max(cpu, 1e-9), "per_fsync": acked / max(fsyncs, 1),
                                "per_pass": acked / passes if passes else float("nan"),
                                "server_p99": _quantile(_buckets(registry), buckets0, 0.99)})
            parent.send("done")
            gen.join(timeout=10)
            await server.stop()

        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runner.run(run())
    return results


def bench_receiver(n: int, seconds: float, rate: float, kafka: str | None, repeat: int, loops: list[str],
                   pyspy: str | None = None, shells: tuple[str, ...] = ("streams", "protocol", "echo")) -> None:
    """Every variant ``repeat`` times, interleaved (the other load of the shared machine falls on all alike):
    best (median) of the runs. Frames per CPU-second is the receiver's own CPU, so it moves less with that load
    than frames per second does."""
    variants = [v for v in VARIANTS if v[2] in loops and v[1] in shells]
    profiled = next((name for name, shell, _ in variants if shell == "protocol"), None)  # the receiver as it is
    runs: dict[str, list[list[dict]]] = {name: [] for name, *_ in variants}
    for r in range(repeat):
        for name, shell, loop in variants:
            last = r == repeat - 1 and name == profiled
            runs[name].append(run_receiver(n, seconds, rate, kafka, shell, loop, pyspy if last else None))
            sat = runs[name][-1][1]
            print(f"  run {r + 1}/{repeat}, {name}: saturation {sat['fps']:,.0f} frames/s, "
                  f"{sat['per_cpu_s']:,.0f} frames/CPU-s, load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"receiver: {n} connections sending 2051 frames of {READINGS_PER_FRAME} readings "
          f"({'Kafka ' + kafka if kafka else 'batches counted in memory'}; sequence log fsync'd on disk); "
          f"best (median) of {repeat} runs of {seconds:g} s per phase")
    print(f"{'variant':<33}{'phase':<25}{'frames/s':>16}{'CPU':>6}{'frames/CPU-s':>17}{'readings/CPU-s':>20}"
          f"{'µs CPU/frame':>14}{'headroom':>14}{'ack p50 / p99 (client)':>27}{'p99 (server)':>15}")
    base = None
    for name, *_ in variants:
        for i in (0, 1):
            phase = [run[i] for run in runs[name]]
            fps = [p["fps"] for p in phase]
            per = [p["per_cpu_s"] for p in phase]
            us = [p["us_per_frame"] for p in phase]
            cpu = statistics.median(p["cpu"] for p in phase)
            p50 = statistics.median(p["p50"] for p in phase) * 1e3
            p99 = statistics.median(p["p99"] for p in phase) * 1e3
            head = f"{max(per) / NATIONAL_FPS:.1f}x ({statistics.median(per) / NATIONAL_FPS:.1f}x)" if i else ""
            print(f"{name:<33}{phase[0]['phase']:<25}{max(fps):>7,.0f} ({statistics.median(fps):,.0f})"
                  f"{cpu:>6.0%}{max(per):>8,.0f} ({statistics.median(per):,.0f})"
                  f"{max(per) * READINGS_PER_FRAME:>10,.0f} ({statistics.median(per) * READINGS_PER_FRAME:,.0f})"
                  f"{min(us):>6.0f} ({statistics.median(us):.0f}){head:>14}{p50:>12.1f} / {p99:.1f} ms"
                  f"{'<= ' + phase[-1]['server_p99']:>15}")
            print(f"{'':<33}{'':<25}system CPU {statistics.median(p['system'] for p in phase):.0%} of the "
                  f"receiver's; {statistics.median(p['per_fsync'] for p in phase):.1f} frames per fsync, "
                  f"{statistics.median(p['per_pass'] for p in phase):.1f} per store pass (one produce_many)")
            if any(p["exhausted"] for p in phase):
                print(f"  warning: connections ran out of unique frames ({name}, {phase[0]['phase']})")
        sat = statistics.median(run[1]["per_cpu_s"] for run in runs[name])
        if base is None:
            base = sat
        else:
            print(f"{'':<33}saturation: {sat / base:.2f}x the baseline's median frames/CPU-s")
    print(f"headroom: frames per CPU-second at saturation over the national {NATIONAL_FPS:,} frames/s; the target "
          f"is {TARGET_HEADROOM}x ({NATIONAL_FPS * TARGET_HEADROOM:,} frames/s on one core)")


def _buckets(registry) -> dict[float, float]:
    out = {}
    for metric in registry.collect():
        if metric.name == "cems_hj212_ack_seconds":
            for s in metric.samples:
                if s.name.endswith("_bucket"):
                    out[float(s.labels["le"])] = s.value
    return out


def _quantile(after: dict, before: dict, q: float) -> str:
    """The smallest histogram bucket bound holding ``q`` of the acknowledgements of the phase."""
    total = after.get(float("inf"), 0) - before.get(float("inf"), 0)
    for le in sorted(after):
        if total and after[le] - before.get(le, 0) >= q * total:
            return "inf" if le == float("inf") else f"{le * 1e3:g} ms"
    return "-"


#: Where a receiver's time goes, for a py-spy profile: (label, frame pattern), each sample counted once, in the
#: first category (in this order) one of its frames matches: a CRC inside parse_frame is the parse's.
PROFILE_PARTS = [
    ("parse_frame: CRC, header, data area, times", r"^parse_frame \("),
    ("conversion to reading columns (message_columns)", r"^message_columns \("),
    ("batch encoding (encode_columns / from_columns + encode)", r"\(schemas/batch\.py"),
    ("signature (HMAC-SHA256, envelope headers)", r"\(hmac\.py|\(schemas/envelope\.py"),
    ("sequence log (take, fsync, acked)", r"^SeqLog\."),
    ("metrics (prometheus_client)", r"\(prometheus_client/"),
    ("session: split, MN/PW, reassembly, digest, answer frame", r"\(schemas/hj212/"),
    ("transport: socket reads and writes (asyncio's selector transport)", r"\(asyncio/selector_events\.py"),
    ("the connection (Protocol) and the storer themselves", r"^_Connection\.|^Hj212Server\.(_store|_produce|"
                                                            r"_hand_over|_schedule_store|_store_pass|encode) "),
    ("event loop (callbacks, selector, transports, socket calls)", r"\(asyncio/|\(uvloop|\(selectors\.py|"
                                                                   r"^Runner\.run "),
]


def summarise_profile(path: str) -> None:
    """Shares of a py-spy raw profile (one collapsed stack per line) by :data:`PROFILE_PARTS`, then the top
    functions by self time."""
    import re
    from collections import Counter

    stacks: Counter[str] = Counter()
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack:
                stacks[stack] += int(count)
    total = sum(stacks.values()) or 1
    print(f"py-spy profile {path}: {total:,} samples of the receiver's process while on CPU")
    share: Counter[str] = Counter()
    compiled = [(label, re.compile(p)) for label, p in PROFILE_PARTS]
    for stack, n in stacks.items():
        frames = stack.split(";")
        label = next((lb for lb, rx in compiled if any(rx.search(f) for f in frames)), "other")
        share[label] += n
    for label, _ in [*PROFILE_PARTS, ("other", "")]:
        print(f"  {share[label] / total:6.1%}  {label}")
    own: Counter[str] = Counter()
    for stack, n in stacks.items():
        own[stack.rsplit(";", 1)[-1]] += n
    print("  top self time (innermost frame):")
    for frame, n in own.most_common(15):
        print(f"  {n / total:6.1%}    {frame}")


def bench_codec(args: argparse.Namespace) -> None:
    print(f"codec: {args.frames} frames per codec run, {args.reference_frames} per reference run, best (median) of "
          f"{args.repeat}")
    print(f"{'frames':<34}{'bytes':>6}{'codec frames/s':>22}{'reference frames/s':>24}{'ratio':>8}")
    for name, make in (("2011 real-time, 10 factors", realtime), ("2051 minute, 10 factors", minute)):
        frames = [make(i) for i in range(args.frames)]
        for raw in frames[:500]:  # both read the same values
            ref, got = reference_parse(raw), codec_view(raw)
            assert ref["header"] == got["header"], (ref["header"], got["header"])
            assert ref["records"] == got["records"], raw
            assert ref["params"]["DataTime"] == "20260301080000"
        best, med = timed(parse_frame, frames, args.repeat)
        rbest, rmed = timed(reference_parse, frames[:args.reference_frames], args.repeat)
        print(f"{name:<34}{len(frames[0]):>6}{best:>13,.0f} ({med:,.0f}){rbest:>15,.0f} ({rmed:,.0f})"
              f"{best / rbest:>7.1f}x")
    frames = [f(i) for i in range(args.frames // 2) for f in (realtime, minute)]
    best, med = stream_rate(frames, args.repeat)
    print(f"{'splitter + parse, 1460-byte reads':<34}{'':>6}{best:>13,.0f} ({med:,.0f})")
    print("target: 10,000 frames/s on one core (10x the national ~1,000 frames/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--reference-frames", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1_000.0, help="frames/s of the first phase (national: ~1,000)")
    ap.add_argument("--kafka", default=None, help="produce to this broker instead of counting in memory")
    ap.add_argument("--codec-only", action="store_true")
    ap.add_argument("--receiver-only", action="store_true")
    ap.add_argument("--receiver-repeat", type=int, default=3, help="runs of each receiver variant, interleaved")
    ap.add_argument("--loops", default="asyncio,uvloop", help="event loops to measure (uvloop: the optional extra)")
    ap.add_argument("--shells", default="streams,protocol,echo",
                    help="receiver variants: streams (the shell before, the baseline), protocol (cems hj212 serve), "
                         "echo (the floor)")
    ap.add_argument("--pyspy", default=None, metavar="FILE", help="py-spy record (raw) of the last variant's last "
                                                                   "saturation phase, summarised after the table")
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    if not args.receiver_only:
        bench_codec(args)
    if not args.codec_only:
        print()
        bench_receiver(args.connections, args.seconds, args.rate, args.kafka, args.receiver_repeat,
                       args.loops.split(","), args.pyspy, tuple(args.shells.split(",")))
        if args.pyspy:
            print()
            summarise_profile(args.pyspy)


if __name__ == "__main__":
    main()
