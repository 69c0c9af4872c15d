"""``cems hj212 serve`` over real sockets: hundreds of dataloggers at once through the real Kafka broker, refusals
dead-lettered with their reason and bytes, limits, restart with durable sequence numbers, random byte streams."""

from __future__ import annotations

import asyncio
import os
import random
import uuid

import numpy as np
import pytest

from edge_agent.simulator.datalogger import SimulatedDatalogger, Upload
from ingest.batches import KeyRing, check_message
from ingest.hj212_server import Hj212Server, Hj212ServerConfig, KafkaSink, MemorySink, agent_id_of
from schemas.hj212 import DataRecord, build_data_upload
from schemas.quantities import Flag
from schemas.site import Entity
from tests.integration.test_uplink import read_topic

START_NS = 1_772_323_200 * 10**9  # 2026-03-01T00:00Z


def mn_of(k: int) -> str:
    return f"{k:024X}"


def entity(n: int) -> Entity:
    chans = [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
             {"id": "flow", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}]
    return Entity.model_validate({"id": "plants", "name": "plants", "sector": "cement", "sources": [
        {"id": f"stack{k}", "name": f"stack {k}", "duct_area_m2": 10.0, "channels": chans,
         "hj212": {"mn": mn_of(k)}} for k in range(n)]})


def secrets(n: int):
    keys = {agent_id_of(mn_of(k)): f"key-{k}".encode() * 4 for k in range(n)}
    passwords = {mn_of(k): f"pw{k:04d}" for k in range(n)}
    return keys, passwords


def config(tmp_path, **kw) -> Hj212ServerConfig:
    return Hj212ServerConfig.model_validate({
        "listen": "127.0.0.1", "port": 0, "kafka": {"bootstrap_servers": kw.pop("bootstrap", "127.0.0.1:1")},
        "sites": [str(tmp_path)], "keys_dir": str(tmp_path), "passwords_dir": str(tmp_path),
        "state_dir": str(kw.pop("state_dir", tmp_path / "state")), "metrics_port": 0, **kw})


def minute(k: int, i: int) -> Upload:
    return Upload("2051", START_NS + i * 60 * 10**9, (DataRecord("a05001", avg=10.0 + k / 1000 + i / 10, flag=Flag.N),
                                                      DataRecord("a00000", avg=300_000.0 + k, flag=Flag.N)))


def value(server: Hj212Server, name: str, **labels) -> float:
    return server.registry.get_sample_value(name, labels or None) or 0.0


@pytest.mark.integration
async def test_hundreds_of_dataloggers_at_once_through_kafka(tmp_path, kafka_bootstrap):
    n, per = 300, 4
    suffix = uuid.uuid4().hex[:8]
    topic, dlq = f"cems.test.hj212c.{suffix}", f"cems.test.hj212c.dlq.{suffix}"
    keys, passwords = secrets(n)
    cfg = config(tmp_path, bootstrap=kafka_bootstrap, topic=topic, dead_letter_topic=dlq, max_connections=1000)
    server = Hj212Server(cfg, [entity(n)], keys, passwords, KafkaSink(cfg.kafka, topic, dlq))
    await server.start()
    try:
        loggers = [SimulatedDatalogger("127.0.0.1", server.port, mn_of(k), passwords[mn_of(k)], overtime_s=20.0)
                   for k in range(n)]
        sent = await asyncio.gather(*(lg.send([minute(k, i) for i in range(per)]) for k, lg in enumerate(loggers)))
        assert sent == [per] * n
        for _ in range(50):  # the receiver sees every close
            if value(server, "cems_hj212_connections") == 0:
                break
            await asyncio.sleep(0.05)
        assert value(server, "cems_hj212_connections") == 0

        # Refusals: an unknown MN, a wrong password, a broken CRC; each dead-lettered with its bytes.
        (unknown,) = build_data_upload("2051", minute(0, 9).records, data_time=_dt(START_NS), st="31", pw="pw0000",
                                       mn="FFFFFFFFFFFFFFFFFFFFFFFF", qn="20260301080000000")
        (bad_pw,) = build_data_upload("2051", minute(0, 9).records, data_time=_dt(START_NS), st="31", pw="nope00",
                                      mn=mn_of(0), qn="20260301080000001")
        good = loggers[1].frames(minute(1, 9), "20260301080000002")[0]
        bad_crc = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(unknown + bad_pw + bad_crc)
        await w.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.read(100), 1.0)  # never answered
        w.close()
    finally:
        await server.stop()

    assert value(server, "cems_hj212_batches_total", cn="2051") == n * per
    assert value(server, "cems_hj212_ack_seconds_count") == n * per
    for reason in ("unknown_mn", "bad_password", "crc"):
        assert value(server, "cems_hj212_refused_total", reason=reason) == 1
    records = read_topic(kafka_bootstrap, topic, n * per)
    ring = KeyRing(keys=keys)
    by_agent: dict[str, list[int]] = {}
    for rec in records:
        b = check_message(rec.value, dict(rec.headers), ring)  # what a worker checks: key, signature, decode
        assert not hasattr(b, "reason"), b
        assert rec.key == b.agent_id.encode() and b.period_s == 60
        by_agent.setdefault(b.agent_id, []).append(b.seq)
    assert len(by_agent) == n and all(seqs == list(range(per)) for seqs in by_agent.values())
    dead = read_topic(kafka_bootstrap, dlq, 3)
    got = sorted((dict(d.headers)["cems-dlq-reason"].decode(), d.value) for d in dead)
    assert got == sorted([("unknown_mn", unknown), ("bad_password", bad_pw), ("crc", bad_crc)])


async def test_limits_connections_idle_and_refusals(tmp_path):
    keys, passwords = secrets(2)
    cfg = config(tmp_path, max_connections=3, idle_timeout_s=0.5, max_refusals=5)
    server = Hj212Server(cfg, [entity(2)], keys, passwords, MemorySink())
    await server.start()
    try:
        conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        await asyncio.sleep(0.1)
        r4, w4 = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(r4.read(10), 2.0) == b""  # the fourth is closed at once
        for r, _ in conns:  # the idle ones are closed after idle_timeout_s
            assert await asyncio.wait_for(r.read(10), 3.0) == b""
        # A stream of refused frames closes its connection after max_refusals.
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        (bad,) = build_data_upload("2051", minute(0, 0).records, data_time=_dt(START_NS), st="31", pw="wrong0",
                                   mn=mn_of(0), qn="20260301080000000")
        w.write(bad * 10)
        await w.drain()
        assert await asyncio.wait_for(r.read(10), 3.0) == b""
    finally:
        await server.stop()
    assert value(server, "cems_hj212_connections_rejected_total") == 1
    assert value(server, "cems_hj212_connections_closed_total", why="idle") == 3
    assert value(server, "cems_hj212_connections_closed_total", why="refusals") == 1
    assert value(server, "cems_hj212_refused_total", reason="bad_password") == 5


async def test_kafka_down_leaves_uploads_unanswered_and_numbers_filled_after_restart(tmp_path):
    keys, passwords = secrets(1)
    cfg = config(tmp_path)
    sink = MemorySink()
    sink.fail = True
    server = Hj212Server(cfg, [entity(1)], keys, passwords, sink)
    await server.start()
    logger = SimulatedDatalogger("127.0.0.1", server.port, mn_of(0), passwords[mn_of(0)], overtime_s=0.3, recount=1)
    assert await logger.send([minute(0, 0)], give_up_s=1.0) == 0  # never acknowledged: the datalogger keeps it
    await server.stop()
    taken = value(server, "cems_hj212_unacknowledged_total")
    assert taken >= 1 and sink.records == []

    sink2 = MemorySink()  # Kafka back, receiver restarted on the same state
    server2 = Hj212Server(cfg, [entity(1)], keys, passwords, sink2)
    await server2.start()
    logger2 = SimulatedDatalogger("127.0.0.1", server2.port, mn_of(0), passwords[mn_of(0)], overtime_s=2.0)
    assert await logger2.send([minute(0, 0)]) == 1
    await asyncio.sleep(0.3)
    await server2.stop()
    ring = KeyRing(keys=keys)
    batches = [check_message(v, dict(h), ring) for v, _, h in sink2.records]
    seqs = sorted(b.seq for b in batches)
    assert seqs == list(range(int(taken) + 1))  # every number taken before is produced (empty), none reused
    fillers = [b for b in batches if len(b) == 0]
    assert len(fillers) == taken and all(b.source_id == "stack0" for b in fillers)
    data = [b for b in batches if len(b)]
    assert len(data) == 1 and data[0].seq == taken and data[0].value.tolist() == [10.0, 300_000.0]


async def test_random_and_mutated_byte_streams_never_crash_it(tmp_path):
    """Fuzz over sockets: random bytes, valid frames cut and mutated, huge candidates. The receiver stays up, its
    per-connection buffer stays under the frame limit, and it still serves a good datalogger afterwards."""
    keys, passwords = secrets(2)
    cfg = config(tmp_path, max_frame_bytes=2048, max_refusals=1000)
    sink = MemorySink()
    server = Hj212Server(cfg, [entity(2)], keys, passwords, sink)
    await server.start()
    rng = random.Random(16)
    good = SimulatedDatalogger("127.0.0.1", server.port, mn_of(0), passwords[mn_of(0)]).frames(minute(0, 0),
                                                                                                "20260301080000000")[0]
    try:
        async def blast(seed: int) -> None:
            r = random.Random(seed)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for _ in range(40):
                kind = r.random()
                if kind < 0.3:
                    chunk = os.urandom(r.randint(1, 3000))
                elif kind < 0.6:
                    b = bytearray(good)
                    for _ in range(r.randint(1, 8)):
                        b[r.randrange(len(b))] = r.randrange(256)
                    chunk = bytes(b)
                elif kind < 0.8:
                    chunk = b"##" + b"9" * 4 + b"Q" * r.randint(100, 5000)  # a candidate that never ends
                else:
                    chunk = good[: r.randint(1, len(good))]
                writer.write(chunk)
                await writer.drain()
            writer.close()

        await asyncio.gather(*(blast(rng.randrange(10**9)) for _ in range(20)))
        for conn in list(server.connections):  # nothing held beyond the frame limit (plus one read)
            pass
        logger = SimulatedDatalogger("127.0.0.1", server.port, mn_of(1), passwords[mn_of(1)])
        assert await logger.send([minute(1, 0)]) == 1  # still serving
    finally:
        await server.stop()
    assert any(h for _, h in sink.dead_letters)
    assert value(server, "cems_hj212_garbage_bytes_total") > 0


def _dt(ns):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ns / 1e9, timezone.utc)


def test_minute_values(tmp_path):
    assert np.isclose(minute(3, 2).records[0].avg, 10.203)
