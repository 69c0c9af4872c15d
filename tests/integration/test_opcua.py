"""The OPC UA driver against real asyncua servers on 127.0.0.1: the plant simulator read by subscription and
by polling (values and simulated source timestamps checked against the generator), status word and
status codes mapped to HJ 212 flags, Basic256Sha256 Sign and SignAndEncrypt with a trust list, and a
server that goes away and comes back. No mocks: every byte crosses a socket.

Servers that several tests share run on their own event loop in a thread (module scope), so they outlive
each test's loop; asyncua needs ~2 s of CPU to build a server's address space, so there are only four.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import numpy as np
import pytest

from edge_agent.opcua.config import OpcUaDevice
from edge_agent.opcua.driver import OpcUaDriver, probe_node
from edge_agent.simulator.generate import CHANNELS, Fault, StackModel, simulate_stack
from edge_agent.simulator.opcua_server import (
    CLIENT_URI,
    STATUS_BITS,
    OpcUaSimulator,
    ServerSecurity,
    make_certificate,
    make_certificates,
    node_points,
    status_node_id,
)
from schemas.quantities import Flag

pytestmark = pytest.mark.integration
logging.getLogger("asyncua").setLevel(logging.WARNING)

START_NS = 1_700_000_000 * 10**9  # whole seconds, so every simulated timestamp is too
SEED = 7
#: Faults late enough that both drivers are connected when they start (the simulator runs 10 rows/s).
MODEL = StackModel(fuel_t_h=8.0, faults=(
    Fault("stuck", 8, 100, "velocity"),
    Fault("calibration", 12, 6, "co2", 15.0),
    Fault("comm_loss", 22, 5, "o2"),
))
CH = list(CHANNELS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Background:
    """A coroutine (a server) on its own event loop in a daemon thread."""

    def __init__(self, coro_fn) -> None:
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(coro_fn,), daemon=True)
        self._thread.start()
        self._started.wait(5)

    def _run(self, coro_fn) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(coro_fn())
        self._started.set()
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by the fixture that waits for the server
            self.error = exc
        finally:
            self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)


def start_simulator(sim: OpcUaSimulator, port: int, **kwargs) -> Background:
    bg = Background(lambda: sim.serve(port, **kwargs))
    if not sim.ready.wait(30):
        bg.stop()
        raise RuntimeError(f"simulator did not start: {bg.error!r}")
    return bg


def device(port: int, mode: str = "poll", **kwargs) -> OpcUaDevice:
    """The simulator's stack 0, every channel, with its status word."""
    points = [{"channel": p["channel"], "node_id": p["node_id"]} for p in node_points(1)]
    fields = {"id": f"rack_{mode}", "endpoint": f"opc.tcp://127.0.0.1:{port}/", "source": "stack0", "mode": mode,
              "poll_interval_s": 0.2, "points": points,
              "status": {"node_id": status_node_id(0), "bits": STATUS_BITS}} | kwargs
    return OpcUaDevice.model_validate(fields)


def columns(cycles):
    """Concatenate CycleReadings: (row t of the simulated series, point, value, flag)."""
    ts = np.concatenate([c.ts_ns for c in cycles])
    return ((ts - START_NS) // 10**9, np.concatenate([c.point for c in cycles]).astype(np.int64),
            np.concatenate([c.value for c in cycles]), np.concatenate([c.flag for c in cycles]), ts)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Server and client certificates, and a second client certificate the server does not trust."""
    d = tmp_path_factory.mktemp("pki")

    async def make():
        pair = await make_certificates(d)
        rogue = await make_certificate(d / "rogue", "rogue", CLIENT_URI)
        return pair, rogue

    return asyncio.run(make())


@pytest.fixture(scope="module")
def sim_run():
    """One simulator at 10 rows/s read by a polling and a subscribing driver at the same time for ~3.5 s."""
    sim = OpcUaSimulator(1, 600, start_ns=START_NS, seed=SEED, model=MODEL)
    port = free_port()
    bg = start_simulator(sim, port, speed=10.0)

    async def collect():
        drivers = {m: OpcUaDriver(device(port, m)) for m in ("poll", "subscribe")}
        for d in drivers.values():
            assert await d.connect()
        out = {m: [] for m in drivers}
        while sim.row < 32:
            now = time.time_ns()
            for m, d in drivers.items():
                out[m].append(await d.poll(now))
            await asyncio.sleep(0.2)
        for d in drivers.values():
            await d.close()
        return out

    try:
        yield sim, asyncio.run(asyncio.wait_for(collect(), 30))
    finally:
        bg.stop()


@pytest.mark.timeout(40)
def test_simulator_source_timestamps_and_values_match_the_generator(sim_run):
    sim, out = sim_run
    expected, _ = simulate_stack(MODEL, START_NS, sim.seconds, seed=SEED)  # independent of the simulator's arrays
    for mode, cycles in out.items():
        t, p, v, f, ts = columns(cycles)
        assert ((ts - START_NS) % 10**9 == 0).all(), f"{mode}: a reading is not stamped with a simulated second"
        assert t.min() >= 0 and t.max() <= sim.row
        # Hand check: the first row read in full, channel by channel, against the generator's own output.
        first = min(r for r in np.unique(t) if np.unique(p[t == r]).size == len(CH))
        for j, ch in enumerate(CH):
            sel = (t == first) & (p == j)
            assert sel.sum() == 1, f"{mode}: {ch} read {sel.sum()} times at row {first}"
            value, flag = expected[ch][0][first], expected[ch][1][first]
            if flag == Flag.B:
                assert f[sel][0] == Flag.B and np.isnan(v[sel][0])
            else:
                assert v[sel][0] == value, f"{mode}: {ch} at row {first}"
        valid = f != Flag.B
        exact = np.array([expected[CH[j]][0][r] for r, j in zip(t[valid], p[valid], strict=True)])
        np.testing.assert_array_equal(v[valid], exact)  # Double over the wire: bit for bit


@pytest.mark.timeout(40)
def test_poll_mode_one_read_per_cycle_one_reading_per_point(sim_run):
    _, out = sim_run
    for c in out["poll"]:
        assert c.requests == 1 and c.comm_errors == 0
        np.testing.assert_array_equal(np.sort(c.point), np.arange(len(CH)))
        assert np.unique(c.ts_ns).size == 1  # the simulator publishes a row atomically: one Read sees one row
        assert status_node_id(0) in c.raw and c.status is not None


@pytest.mark.timeout(40)
def test_subscribe_mode_receives_every_row_once(sim_run):
    _sim, out = sim_run
    t, p, _v, _f, _ = columns(out["subscribe"])
    assert all(c.requests == 0 and c.comm_errors == 0 for c in out["subscribe"])
    for j, ch in enumerate(CH):
        rows = np.sort(t[p == j])
        assert len(rows) == len(np.unique(rows)), f"{ch}: a row delivered twice"
        np.testing.assert_array_equal(rows, np.arange(rows[0], rows[-1] + 1), err_msg=f"{ch}: a row is missing")
    assert len(np.unique(t)) >= 25


@pytest.mark.timeout(40)
def test_stuck_value_still_reads_every_row(sim_run):
    _sim, out = sim_run
    t, p, v, f, _ = columns(out["subscribe"])
    vel = (p == CH.index("velocity")) & (t >= 8)
    rows = np.sort(t[vel])
    np.testing.assert_array_equal(rows, np.arange(max(8, t.min()), t.max() + 1))  # no gap: a repeat still notifies
    assert np.unique(v[vel]).size == 1  # ...and it is the same value each time
    assert set(f[vel & ((t < 12) | (t >= 18))].tolist()) == {Flag.N}


@pytest.mark.timeout(40)
def test_status_word_calibration_flags_every_point_c(sim_run):
    _sim, out = sim_run
    for mode, cycles in out.items():
        t, p, v, f, _ = columns(cycles)
        cal = (t >= 12) & (t < 18)
        assert cal.any(), mode
        assert set(f[cal].tolist()) == {Flag.C}, mode  # bit 0 of the status word, applied to every point
        co2 = cal & (p == CH.index("co2"))
        np.testing.assert_array_equal(v[co2], 15.0)  # the span gas
        around = ((t >= 8) & (t < 12)) | ((t >= 18) & (t < 22))
        assert set(f[around].tolist()) == {Flag.N}, mode
        status = [c.status for c in cycles if c.status is not None]
        assert 1 in status and 0 in status


@pytest.mark.timeout(40)
def test_comm_loss_is_a_bad_status_code_flagged_b(sim_run):
    _sim, out = sim_run
    for mode, cycles in out.items():
        t, p, v, f, _ = columns(cycles)
        loss = (t >= 22) & (t < 27)
        o2 = loss & (p == CH.index("o2"))
        assert o2.any(), mode
        assert set(f[o2].tolist()) == {Flag.B} and np.isnan(v[o2]).all(), mode
        assert set(f[loss & ~o2].tolist()) == {Flag.N}, mode  # no fault bit: only the lost channel is B
        key = node_points(1)[CH.index("o2")]["node_id"]
        assert any(c.raw[key][1] == "BadCommunicationError" for c in cycles if key in c.raw)
        assert sum(c.device_errors for c in cycles) == o2.sum()


# -- security -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secure_sim(certs):
    """A simulator offering only Basic256Sha256 (Sign, SignAndEncrypt) and trusting only our client."""
    pair, _ = certs
    sim = OpcUaSimulator(1, 3600, start_ns=START_NS, seed=SEED, model=MODEL)
    port = free_port()
    security = ServerSecurity(pair.server_certificate, pair.server_key,
                              trusted_clients=(pair.client_certificate,))
    bg = start_simulator(sim, port, security=security, speed=5.0)
    yield sim, port
    bg.stop()


def secured(pair, mode: str, **kwargs) -> dict:
    return {"policy": "Basic256Sha256", "mode": mode, "certificate": pair.client_certificate,
            "private_key": pair.client_key, "server_certificate": pair.server_certificate} | kwargs


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
async def test_basic256sha256_connects_and_reads(secure_sim, certs, mode):
    sim, port = secure_sim
    pair, _ = certs
    driver = OpcUaDriver(device(port, "poll", security=secured(pair, mode)))
    try:
        assert await driver.connect()
        await asyncio.sleep(0.3)
        r = await driver.poll(time.time_ns())
        assert r.comm_errors == 0 and set(r.flag.tolist()) <= {Flag.N, Flag.C, Flag.B}
        t = (r.ts_ns - START_NS) // 10**9
        ok = r.flag != Flag.B
        np.testing.assert_array_equal(r.value[ok], sim.values[t[ok], 0, r.point[ok]])
    finally:
        await driver.close()


@pytest.mark.timeout(30)
async def test_secured_server_rejects_unsecured_client_without_raising(secure_sim, caplog):
    _, port = secure_sim
    driver = OpcUaDriver(device(port, "subscribe"))
    with caplog.at_level(logging.WARNING, logger="edge_agent.opcua.driver"):
        assert await driver.connect() is False
        assert await driver.connect() is False
    assert not driver.connected
    assert sum("cannot connect" in r.getMessage() for r in caplog.records) == 1  # the reason, logged once
    r = await driver.poll(time.time_ns())
    assert set(r.flag.tolist()) == {Flag.B} and r.point.size == len(CH) and r.comm_errors == 1
    await driver.close()


@pytest.mark.timeout(30)
async def test_untrusted_client_certificate_is_rejected(secure_sim, certs, caplog):
    _, port = secure_sim
    pair, (rogue_cert, rogue_key) = certs
    driver = OpcUaDriver(device(port, "poll", security=secured(pair, "SignAndEncrypt", certificate=rogue_cert,
                                                               private_key=rogue_key)))
    with caplog.at_level(logging.WARNING, logger="edge_agent.opcua.driver"):
        assert await driver.connect() is False
    assert any("BadCertificateUntrusted" in r.getMessage() for r in caplog.records)
    await driver.close()


@pytest.mark.timeout(30)
async def test_pinned_server_certificate_mismatch_is_rejected(secure_sim, certs, caplog):
    _, port = secure_sim
    pair, (rogue_cert, _) = certs
    driver = OpcUaDriver(device(port, "poll", security=secured(pair, "SignAndEncrypt", server_certificate=rogue_cert)))
    with caplog.at_level(logging.WARNING, logger="edge_agent.opcua.driver"):
        assert await driver.connect() is False
    assert any("is not the pinned" in r.getMessage() for r in caplog.records)
    await driver.close()


@pytest.mark.timeout(30)
async def test_probe_node_reports_value_status_timestamps_and_type(secure_sim, certs):
    _sim, port = secure_sim
    pair, _ = certs
    dev = device(port, "poll", security=secured(pair, "SignAndEncrypt"))
    got = await probe_node(dev, node_points(1)[0]["node_id"])
    assert got["error"] is None and got["status"] == "Good" and got["data_type"] == "Double"
    assert got["variant_type"] == "Double" and (got["source_ts_ns"] - START_NS) % 10**9 == 0
    assert got["server_ts_ns"] > START_NS
    missing = await probe_node(dev, "nsu=urn:cems:simulator;s=stack0.nope")
    assert missing["status"] == "BadNodeIdUnknown"
    down = await probe_node(device(free_port(), "poll"), "ns=2;s=x")
    assert down["error"] is not None


# -- status codes and values, server restart -------------------------------------------------------


async def plain_server(port: int):
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:cems:test")
    return server, idx


@pytest.mark.timeout(40)
async def test_status_codes_ranges_and_values_map_to_flags():
    from asyncua import ua

    port = free_port()
    server, idx = await plain_server(port)
    cases = {  # name: (initial variant, status code or None, point options, expected flag, expected value)
        "good": (12.5, None, {}, Flag.N, 12.5),
        "scaled": (2.0, None, {"scale": 10.0, "offset": 1.0}, Flag.N, 21.0),
        "integer": (ua.Variant(7, ua.VariantType.Int32), None, {}, Flag.N, 7.0),
        "above": (150.0, None, {"high": 100.0}, Flag.T, 150.0),
        "below": (-5.0, None, {"low": 0.0}, Flag.T, -5.0),
        "nan": (float("nan"), None, {}, Flag.D, np.nan),
        "text": ("not a number", None, {}, Flag.D, np.nan),
        "sensor": (1.0, "BadSensorFailure", {}, Flag.D, np.nan),
        "nocomm": (1.0, "BadNoCommunication", {}, Flag.B, np.nan),
        "range": (1.0, "BadOutOfRange", {}, Flag.T, np.nan),
        "uncertain": (3.0, "UncertainLastUsableValue", {}, Flag.D, 3.0),
    }
    nodes = {}
    for name, (initial, code, _, _, _) in cases.items():
        node = await server.nodes.objects.add_variable(ua.NodeId(name, idx), name, initial)
        nodes[name] = node
        if code is not None:
            await server.write_attribute_value(node.nodeid, ua.DataValue(
                ua.Variant(initial, ua.VariantType.Double), StatusCode=ua.StatusCode(getattr(ua.StatusCodes, code))))
    await server.start()
    points = [{"channel": n, "node_id": f"ns={idx};s={n}", **opts} for n, (_, _, opts, _, _) in cases.items()]
    points.append({"channel": "missing", "node_id": f"ns={idx};s=missing"})  # BadNodeIdUnknown -> D
    expected_flag = [c[3] for c in cases.values()] + [Flag.D]
    expected_value = [c[4] for c in cases.values()] + [np.nan]
    drivers = [OpcUaDriver(OpcUaDevice(id=f"d_{m}", endpoint=f"opc.tcp://127.0.0.1:{port}/", source="s", mode=m,
                                       poll_interval_s=0.2, stale_after_s=0.7, points=points))
               for m in ("poll", "subscribe")]
    try:
        for d in drivers:
            assert await d.connect()
        assert drivers[1]._polled.tolist() == [len(points) - 1]  # the unknown node: read, not monitored
        deadline = time.monotonic() + 5
        while len(drivers[1]._queue) < len(points) - 1 and time.monotonic() < deadline:  # the initial values
            await asyncio.sleep(0.05)
        for d in drivers:
            r = await d.poll(time.time_ns())
            order = np.argsort(r.point)
            np.testing.assert_array_equal(r.point[order], np.arange(len(points)), err_msg=d.device.mode)
            np.testing.assert_array_equal(r.flag[order], expected_flag, err_msg=d.device.mode)
            np.testing.assert_array_equal(r.value[order], expected_value, err_msg=d.device.mode)
            assert r.device_errors == 5  # three Bad, one Uncertain, and BadNodeIdUnknown
            assert r.raw[f"ns={idx};s=range"][1] == "BadOutOfRange"
        # Subscribed points that stop receiving samples read B once per cycle; a live one stays N.
        sub, got = drivers[1], []
        for i in range(7):
            await nodes["good"].write_value(20.0 + i)
            await asyncio.sleep(0.2)
            got.append(await sub.poll(time.time_ns()))
        good = np.concatenate([r.value[r.point == 0] for r in got])
        assert {int(f) for r in got for f in r.flag[r.point == 0]} == {Flag.N} and good.max() >= 25.0
        stale = got[-1].point[got[-1].flag == Flag.B]
        assert set(stale.tolist()) == set(range(1, len(points) - 1))  # every unwritten subscribed point
        assert sub.connected
    finally:
        for d in drivers:
            await d.close()
        await server.stop()


@pytest.mark.timeout(40)
async def test_server_stopped_mid_run_then_back(caplog):
    from asyncua import ua

    port = free_port()
    server, idx = await plain_server(port)
    var = await server.nodes.objects.add_variable(ua.NodeId("x", idx), "x", 0.0)
    await server.start()
    dev = {"endpoint": f"opc.tcp://127.0.0.1:{port}/", "source": "s", "poll_interval_s": 0.2, "timeout_s": 1.0,
           "points": [{"channel": "x", "node_id": f"ns={idx};s=x"}]}
    drivers = [OpcUaDriver(OpcUaDevice(id=f"d_{m}", mode=m, **dev)) for m in ("poll", "subscribe")]
    value = 0.0

    async def cycles(k: int) -> dict[str, list]:
        nonlocal value
        got = {d.device.mode: [] for d in drivers}
        for _ in range(k):
            value += 1.0
            await var.write_value(value)  # also while stopped: the address space lives on
            await asyncio.sleep(0.2)
            for d in drivers:
                got[d.device.mode].append(await d.poll(time.time_ns()))
        return got

    try:
        for d in drivers:
            assert await d.connect()
        before = await cycles(3)
        for mode, rs in before.items():
            assert all(d.connected for d in drivers)
            assert {int(f) for r in rs for f in r.flag} == {Flag.N}, mode
        await server.stop()
        during = await cycles(3)
        for d in drivers:
            assert not d.connected, d.device.mode
        for mode, rs in during.items():
            last = rs[-1]
            assert last.flag.tolist() == [Flag.B] and np.isnan(last.value).all(), mode
            assert sum(r.comm_errors for r in rs) >= 1, mode
        for d in drivers:
            assert await d.connect() is False  # still down: False, no exception
        await server.start()
        for d in drivers:
            assert await d.connect(), d.device.mode
        after = await cycles(4)
        for mode, rs in after.items():
            assert all(r.comm_errors == 0 for r in rs), mode
            values = np.concatenate([r.value[r.flag == Flag.N] for r in rs])
            assert values.size >= 3 and values.max() >= value - 1, mode  # resumed, up to the last write or so
            ts = np.concatenate([r.ts_ns for r in rs])
            assert len(np.unique(ts)) == len(ts), mode
    finally:
        for d in drivers:
            await d.close()
        await server.stop()
