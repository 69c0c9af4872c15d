"""``cems hj212 serve`` over real sockets: hundreds of dataloggers at once through the real Kafka broker, refusals
dead-lettered with their reason and bytes, limits, restart with durable sequence numbers, random byte streams."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from datetime import UTC

import numpy as np
import pytest

from edge_agent.simulator.datalogger import SimulatedDatalogger, Upload
from ingest.batches import KeyRing, check_message
from ingest.hj212_server import Hj212Server, Hj212ServerConfig, KafkaSink, MemorySink, agent_id_of
from schemas.hj212 import DataRecord, build_data_upload
from schemas.quantities import Flag
from schemas.site import Entity
from tests.fixtures import read_topic

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
        r4, _w4 = await asyncio.open_connection("127.0.0.1", server.port)
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
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
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
        for conn in list(server.connections):  # nothing held beyond the frame limit, plus one read
            assert conn.session is not None and conn.session.splitter.pending_bytes <= cfg.max_frame_bytes
            assert conn.held is None or len(conn.held) <= cfg.read_bytes
        logger = SimulatedDatalogger("127.0.0.1", server.port, mn_of(1), passwords[mn_of(1)])
        assert await logger.send([minute(1, 0)]) == 1  # still serving
    finally:
        await server.stop()
    assert any(h for _, h in sink.dead_letters)
    assert value(server, "cems_hj212_garbage_bytes_total") > 0


def _dt(ns):
    from datetime import datetime

    return datetime.fromtimestamp(ns / 1e9, UTC)


def test_minute_values(tmp_path):
    assert np.isclose(minute(3, 2).records[0].avg, 10.203)


async def test_real_frames_of_others_over_tcp(tmp_path):
    """Real datalogger frames from public repositories (tests/unit/test_hj212_golden.py says where each comes from),
    sent over one TCP stream as a datalogger would: the valid ones become batches with their values and flags, the
    one published with a wrong CRC is dead-lettered for its CRC."""
    from schemas.batch import decode_batch

    rt2005 = (b"##0382ST=31;CN=2011;PW=123456;MN=ZG130182201325;CP=&&DataTime=20160824050243000;S01-Rtd=10.2,"
              b"S01-Flag=N;S02-Rtd=8.93,S02-Flag=N;S03-Rtd=51.1,S03-Flag=N;S05-Rtd=0.0,S05-Flag=N;S07-Rtd=0.00,"
              b"S07-Flag=N;01-Rtd=3.56,01-Flag=N;01-ZsRtd=4.93,01-Flag=N;02-Rtd=13.00,02-Flag=N;02-ZsRtd=18.05,"
              b"02-Flag=N;03-Rtd=32.742,03-Flag=N;03-ZsRtd=45.474,03-Flag=N;B02-Rtd=38.57;S08-Rtd=395.507813,"
              b"S08-Flag=N&&E8C1\r\n")
    min2005 = (b"##0593ST=31;CN=2051;PW=123456;MN=LD130131000211;CP=&&DataTime=20000202050000000;B02-Cou=198231.17,"
               b"B02-Min=314.81,B02-Avg=330.38,B02-Max=344.08;S01-Min=4.75,S01-Avg=5.06,S01-Max=5.38;S02-Min=7.77,"
               b"S02-Avg=8.15,S02-Max=8.49;S03-Min=135.24,S03-Avg=136.05,S03-Max=137.68;S05-Min=40.00,S05-Avg=40.00,"
               b"S05-Max=40.00;S07-Min=40.50,S07-Avg=40.50,S07-Max=40.50;S08-Min=1046.48,S08-Avg=1058.44,"
               b"S08-Max=1081.96;01-Cou=1.15,01-Min=5.46,01-Avg=5.82,01-Max=6.35;02-Cou=347.94,02-Min=1710.83,"
               b"02-Avg=1755.24,02-Max=1799.22;01-ZsMin=5.19,01-ZsAvg=5.47,01-ZsMax=6.09;02-ZsMin=1588.25,"
               b"02-ZsAvg=1652.41,02-ZsMax=1707.02&&7A80\r\n")
    bad = (b"##0275QN=20190901181526940;ST=32;CN=2011;PW=123456;MN=Y80110010000010;Flag=4;CP=&&DataTime=20190901181500;"
           b"a21005-Rtd=1.760,a21005-Flag=N;a21026-Rtd=106.400,a21026-Flag=N;O3-Rtd=63.400,O3-Flag=N;a21004-Rtd=63.200,"
           b"a21004-Flag=N;a34002-Rtd=9,a34002-Flag=N;a34004-Rtd=4,a34004-Flag=N&&1100\r\n")  # GUOCAY SAMPLE[1]:
    # published with CRC 1100; its data segment gives 2D00
    chans = [{"id": i, "quantity": q, "unit": u} for i, q, u in (
        ("o2", "a19001", "%"), ("velocity", "a01011", "m/s"), ("temp", "a01012", "degC"), ("moisture", "a01014", "%"),
        ("area", "a01016", "m2"), ("dust", "a34013", "mg/m3"), ("so2", "a21026", "mg/m3"), ("nox", "a21002", "mg/m3"),
        ("flow", "a00000", "m3/s"), ("pstatic", "a01013", "Pa"))]
    e = Entity.model_validate({"id": "plants", "name": "plants", "sector": "power", "sources": [
        {"id": "rt", "name": "rt", "kind": "process", "channels": chans,
         "hj212": {"mn": "ZG130182201325", "figures": "realtime"}},
        {"id": "min", "name": "min", "kind": "process", "channels": chans, "hj212": {"mn": "LD130131000211"}},
        {"id": "air", "name": "air", "kind": "process", "channels": chans[:1], "hj212": {"mn": "Y80110010000010"}}]})
    mns = ["ZG130182201325", "LD130131000211", "Y80110010000010"]
    sink = MemorySink()
    server = Hj212Server(config(tmp_path), [e], {agent_id_of(m): b"k" * 32 for m in mns},
                         dict.fromkeys(mns, "123456"), sink)
    await server.start()
    try:
        _r, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(rt2005 + min2005 + bad)
        await w.drain()
        await asyncio.sleep(1.0)
        w.close()
    finally:
        await server.stop()
    batches = {decode_batch(v).source_id: decode_batch(v) for v, _, _ in sink.records}
    assert sorted(batches) == ["min", "rt"]

    def by_channel(b):
        return {b.channels[c].id: (v, Flag(f).name) for c, v, f in zip(b.channel.tolist(), b.value.tolist(),
                                                                      b.flag.tolist(), strict=True)}
    rt = batches["rt"]
    assert rt.period_s == 0 and rt.ts_ns.tolist() == [1_471_986_163 * 10**9] * 10  # 2016-08-24 05:02:43 +08
    assert by_channel(rt) == {"o2": (10.2, "N"), "velocity": (8.93, "N"), "temp": (51.1, "N"),
                              "moisture": (0.0, "N"), "area": (0.0, "N"), "dust": (3.56, "N"), "so2": (13.0, "N"),
                              "nox": (32.742, "N"), "flow": (38.57, "D"),  # sent without a flag: D by default
                              "pstatic": (395.507813, "N")}
    mi = batches["min"]  # a 2005 minute frame without flags: Avg values, each D (unflagged: invalid)
    assert mi.period_s == 60 and by_channel(mi)["flow"] == (330.38, "D") and by_channel(mi)["so2"] == (1755.24, "D")
    assert len(sink.dead_letters) == 1
    raw, headers = sink.dead_letters[0]
    assert raw == bad and dict(headers)["cems-dlq-reason"] == b"crc"
