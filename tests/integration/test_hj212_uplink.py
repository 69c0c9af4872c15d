"""The gateway's HJ 212 uplink over real sockets, against a test platform that acknowledges, drops answers,
disconnects, and sends the commands a platform issues. Nothing queued is lost; re-sends keep their QN."""

from __future__ import annotations

import asyncio

import numpy as np
from prometheus_client import CollectorRegistry

from edge_agent.hj212.config import Hj212Uplink
from edge_agent.hj212.uplink import Hj212UplinkClient
from schemas.hj212 import FrameSplitter, build_frame, build_response, parse_frame
from schemas.quantities import Flag
from schemas.site import Entity

MN = "88888880000001"  # a short MN, as fielded dataloggers have
PW = "123456"
START_NS = 1_772_323_200 * 10**9  # 2026-03-01T00:00Z


def entity() -> Entity:
    return Entity.model_validate({"id": "plant", "name": "plant", "sector": "cement", "sources": [{
        "id": "kiln1", "name": "kiln 1", "duct_area_m2": 10.0,
        "channels": [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
                     {"id": "flow", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}]}]})


class Platform:
    """A test platform: answers data uploads (9014) except those whose answer it is told to drop, may close the
    connection after a number of frames, and keeps every frame it received."""

    def __init__(self, drop_first_answer_every: int = 0, disconnect_after: int | None = None) -> None:
        self.drop_every, self.disconnect_after = drop_first_answer_every, disconnect_after
        self.frames, self.answers = [], []
        self.seen_qn: dict[str, int] = {}
        self.connections = 0
        self.writer = None
        self.server = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _conn(self, reader, writer) -> None:
        self.connections += 1
        self.writer = writer
        splitter = FrameSplitter()
        try:
            while True:
                data = await reader.read(65_536)
                if not data:
                    return
                for raw in splitter.feed(data):
                    f = parse_frame(raw)
                    if f.cn.startswith("90"):
                        self.answers.append(f)
                        continue
                    self.frames.append(f)
                    n = self.seen_qn[f.qn] = self.seen_qn.get(f.qn, 0) + 1
                    if self.disconnect_after is not None and len(self.frames) >= self.disconnect_after:
                        self.disconnect_after = None
                        writer.close()
                        return
                    drop = self.drop_every and n == 1 and len(self.seen_qn) % self.drop_every == 0
                    if f.ack_requested and not drop:
                        writer.write(build_response("9014", qn=f.qn, pw=f.pw, mn=f.mn))
        except ConnectionError:
            return

    def command(self, cn: str, cp: str, qn: str, pw: str = PW) -> None:
        self.writer.write(build_frame(st="31", cn=cn, pw=pw, mn=MN, qn=qn, flag=5, cp=cp))

    async def stop(self) -> None:
        self.server.close()


def uplink(tmp_path, port: int, monkeypatch, **kw) -> Hj212UplinkClient:
    monkeypatch.setenv("CEMS_TEST_UPLINK_PW", PW)
    cfg = Hj212Uplink.model_validate({
        "host": "127.0.0.1", "port": port, "queue_dir": str(tmp_path / "queue"), "overtime_s": 0.5, "recount": 2,
        "lateness_s": 0, "send": ["minute", "hour"],
        "sources": [{"source": "kiln1", "mn": MN, "password_env": "CEMS_TEST_UPLINK_PW"}], **kw})
    return Hj212UplinkClient(cfg, entity(), CollectorRegistry(), clock_ns=lambda: START_NS + 3 * 3600 * 10**9)


def feed_hours(client: Hj212UplinkClient, hours: int) -> None:
    """1 Hz readings of co2 and flow for ``hours`` hours, as the agent's batches hand them over."""
    n = hours * 3600
    ts = START_NS + np.arange(n, dtype=np.int64) * 10**9
    for lo in range(0, n, 300):
        t = ts[lo:lo + 300]
        client.add("kiln1", ["co2", "flow"], 0, np.concatenate([t, t]), np.repeat([0, 1], t.size),
                   np.concatenate([np.full(t.size, 10.0), np.full(t.size, 300_000.0)]),
                   np.zeros(2 * t.size, dtype=np.uint8))


async def wait_until(cond, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_uplink_retransmits_through_dropped_answers_and_a_disconnect(tmp_path, monkeypatch):
    platform = Platform(drop_first_answer_every=7, disconnect_after=40)
    port = await platform.start()
    client = uplink(tmp_path, port, monkeypatch)
    feed_hours(client, 2)
    assert client.enqueue_due() == 120 + 2  # 120 minutes, 2 hours
    run = asyncio.create_task(client.run())
    try:
        await wait_until(lambda: client.queue.count == 0, 60.0)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await platform.stop()
    uploads = {}
    for f in platform.frames:
        uploads.setdefault(f.qn, []).append(f)
    assert len(uploads) == 122  # every upload arrived
    resent = {qn: fs for qn, fs in uploads.items() if len(fs) > 1}
    assert resent and all(len({f.cp for f in fs}) == 1 for fs in resent.values())  # a re-send is the same data
    assert platform.connections >= 2  # the disconnect was survived
    minutes = sorted((f for fs in uploads.values() for f in fs[:1] if f.cn == "2051"), key=lambda f: f.data_time)
    assert len(minutes) == 120 and minutes[0].data_time.timestamp() * 10**9 == START_NS
    r = {x.code: x for x in minutes[0].records}
    assert r["a05001"].avg == 10.0 and r["a05001"].flag is Flag.N and r["a00000"].avg == 300_000.0
    hours = [f for fs in uploads.values() for f in fs[:1] if f.cn == "2061"]
    assert len(hours) == 2 and all(x.avg == 10.0 for h in hours for x in h.records if x.code == "a05001")
    assert client.m_resent._value.get() >= len(resent)


async def test_an_outage_loses_nothing_and_a_restart_resumes_from_the_queue(tmp_path, monkeypatch):
    client = uplink(tmp_path, 1, monkeypatch)  # port 1: nothing listens
    feed_hours(client, 1)
    assert client.enqueue_due() == 61
    run = asyncio.create_task(client.run())
    await asyncio.sleep(1.0)
    run.cancel()  # the agent stops during the outage
    await asyncio.gather(run, return_exceptions=True)
    assert client.queue.count == 61

    platform = Platform()
    port = await platform.start()
    again = uplink(tmp_path, port, monkeypatch, version="2025")  # restarted on the same queue, now in 2025 framing
    run = asyncio.create_task(again.run())
    try:
        await wait_until(lambda: again.queue.count == 0)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await platform.stop()
    assert len({f.qn for f in platform.frames}) == 61
    assert {(f.version.name, f.flag) for f in platform.frames} == {("HJ212_2025", 9)}  # 2025, answer asked


async def test_platform_commands_are_answered(tmp_path, monkeypatch):
    platform = Platform()
    port = await platform.start()
    client = uplink(tmp_path, port, monkeypatch)
    run = asyncio.create_task(client.run())
    try:
        await wait_until(lambda: platform.writer is not None)
        platform.command("1000", "OverTime=3;ReCount=5", "20260301080000001")
        platform.command("1011", "PolId=a05001", "20260301080000002")
        platform.command("1062", "RtdInterval=60", "20260301080000003")
        platform.command("1062", "RtdInterval=10", "20260301080000004")  # below HJ 212's 30 s
        platform.command("3011", "PolId=a05001", "20260301080000005")  # zero/span calibration: not ours to do
        platform.command("1011", "", "20260301080000006", pw="000000")  # wrong password
        platform.command("2012", "", "20260301080000007")  # stop real-time data (notification)
        platform.command("1072", "NewPW=abcdef", "20260301080000008")
        platform.command("9999", "", "20260301080000009", pw="abcdef")  # the new password from now on
        platform.command("1012", "SystemTime=20260301090000", "20260301080000010", pw="abcdef")
        platform.command("1061", "", "20260301080000011", pw="abcdef")
        platform.command("1063", "", "20260301080000012", pw="abcdef")
        platform.command("1064", "MinInterval=10", "20260301080000013", pw="abcdef")
        platform.command("2051", "BeginTime=20260301000000;EndTime=20260301010000", "20260301080000014", pw="abcdef")
        await wait_until(lambda: sum(a.qn == "20260301080000014" for a in platform.answers) >= 2)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await platform.stop()
    ans = {}
    for a in platform.answers:
        ans.setdefault(a.qn, []).append((a.cn, a.data.params.get("QnRtn", a.data.params.get("ExeRtn"))))
    assert ans["20260301080000001"] == [("9011", 1), ("9012", 1)]
    assert ans["20260301080000003"] == [("9011", 1), ("9012", 1)]
    assert ans["20260301080000004"] == [("9011", 1), ("9012", 3)]
    assert ans["20260301080000005"] == [("9011", 2), ("9012", 3)]
    assert ans["20260301080000006"] == [("9011", 3)]
    assert ans["20260301080000007"] == [("9013", None)]
    assert ans["20260301080000008"] == [("9011", 1), ("9012", 1)]
    assert ans["20260301080000009"] == [("9011", 8)]
    assert ans["20260301080000010"] == [("9011", 1), ("9012", 3)]  # the gateway's clock is not the platform's to set
    assert ans["20260301080000011"] == [("9011", 1), ("9012", 1)]
    assert ans["20260301080000013"] == [("9011", 1), ("9012", 3)]  # minutes only
    assert ans["20260301080000014"] == [("9011", 1), ("9012", 100)]  # no history kept: no data
    uploads = {f.qn: f for f in platform.frames}
    assert uploads["20260301080000011"].data.params["RtdInterval"] == 60
    assert uploads["20260301080000012"].data.params["MinInterval"] == 1
    time_upload = [f for f in platform.frames if f.qn == "20260301080000002"]
    assert len(time_upload) == 1 and time_upload[0].cn == "1011" and "SystemTime" in time_upload[0].data.params
    s = client.states[MN]
    assert (s.overtime_s, s.recount, s.rtd_interval_s, s.realtime, s.password) == (3.0, 5, 60, False, "abcdef")
    saved = (tmp_path / "queue" / "site-state.json")
    assert saved.stat().st_mode & 0o777 == 0o600
    assert uplink(tmp_path, port, monkeypatch).states[MN].password == "abcdef"  # it survives a restart
