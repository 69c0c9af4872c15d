"""cems hj212 serve's event loop: uvloop where installed (the hj212-fast extra), else asyncio's own."""

from __future__ import annotations

import asyncio
import builtins

import pytest

from ingest.hj212_server import loop_factory


def test_asyncio_is_the_standard_loop() -> None:
    assert loop_factory("asyncio") is asyncio.new_event_loop


def test_auto_takes_uvloop_where_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: object, **kwargs: object) -> object:
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'trio'"):
        loop_factory("trio")


MN = "010000A8900016F000169DC0"


def _entity():
    from schemas.site import Entity

    return Entity.model_validate({"id": "e", "name": "e", "sector": "cement", "sources": [
        {"id": "s1", "name": "s1", "duct_area_m2": 10.0, "velocity_field_coefficient": 1.0,
         "ambient_pressure": {"kpa": 101.0}, "channels": [
             {"id": "a21026", "quantity": "a21026", "unit": "mg/m3"},
             {"id": "a05001", "quantity": "a05001", "unit": "%", "basis": "dry"},
             {"id": "a00000", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}],
         "hj212": {"mn": MN}}]})


@pytest.mark.parametrize("kind", ["asyncio", "auto"])
def test_the_receiver_serves_on_the_loop_it_is_given(kind: str, tmp_path) -> None:
    """A 2051 frame in over TCP, its batch stored and its 9014 out, on each loop (only the loop differs)."""
    from ingest.hj212_server import Hj212Server, Hj212ServerConfig, MemorySink
    from schemas.batch import decode_batch
    from schemas.hj212 import build_frame, parse_frame

    cfg = Hj212ServerConfig.model_validate({
        "listen": "127.0.0.1", "port": 0, "kafka": {"bootstrap_servers": "127.0.0.1:1"}, "sites": [tmp_path],
        "keys_dir": tmp_path, "passwords_dir": tmp_path, "state_dir": tmp_path, "metrics_port": 0})
    sink = MemorySink()
    raw = build_frame(st="31", cn="2051", pw="123456", mn=MN, qn="20260301080100000", flag=5,
                      cp="DataTime=20260301080000;a21026-Avg=20.50,a21026-Flag=N")

    async def run() -> bytes:
        server = Hj212Server(cfg, [_entity()], {f"hj212-{MN}": b"k" * 32}, {MN: "123456"}, sink)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
            writer.close()
            return answer
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        answer = runner.run(run())
    assert parse_frame(answer).cn == "9014"
    (value, key, _headers), = sink.records
    batch = decode_batch(value)
    # 08:00 Beijing time is 00:00 UTC: 2026-03-01T00:00:00Z = 1,772,323,200 s since the epoch
    assert key == f"hj212-{MN}".encode() and batch.value.tolist() == [20.5] and batch.period_s == 60
    assert batch.ts_ns.tolist() == [1_772_323_200 * 10**9]
