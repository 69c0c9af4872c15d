"""Edge agent cost: one agent polling ~500 points at 1 Hz against the Modbus simulator.

    python bench/bench_edge.py [--stacks 50] [--seconds 30]

The simulator (``edge_agent.simulator.modbus_server``) runs in its own process, so its CPU is not
counted; the agent runs in this process against the real local Kafka broker
(``deploy/local/services.sh up``; ``CEMS_KAFKA_BOOTSTRAP``). Printed: CPU of the agent process as a
share of one core, CPU per poll cycle, requests per cycle (planned, against one request per point),
and the outbox's write and drain rates for batches of the same size. Target: under 5 % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_agent.agent import EdgeAgent
from edge_agent.config import GatewayConfig
from edge_agent.outbox import Outbox
from edge_agent.simulator.generate import CHANNELS, source_config
from edge_agent.simulator.modbus_server import STACK_REGISTERS, STATUS_OFFSET, gateway_points
from edge_agent.uplink import KafkaUplink

T0 = 1_767_225_600 * 10**9
BOOTSTRAP = os.environ.get("CEMS_KAFKA_BOOTSTRAP", "127.0.0.1:19092")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway(n_stacks: int, port: int, tmp: Path, topic: str) -> GatewayConfig:
    points = gateway_points(n_stacks)
    sources = [source_config(f"stack{k}", f"stack {k}") for k in range(n_stacks)]
    devices = [{"id": f"rack{k}", "host": "127.0.0.1", "port": port, "poll_interval_s": 1.0, "source": f"stack{k}",
                "status": {"address": k * STACK_REGISTERS + STATUS_OFFSET, "bits": {0: "C", 1: "M", 2: "D"}},
                "points": [{key: v for key, v in p.items() if key != "stack"} for p in points if p["stack"] == k]}
               for k in range(n_stacks)]
    (tmp / "key").write_bytes(b"k" * 32)
    return GatewayConfig.model_validate({
        "agent": {"id": "gw-bench", "key_file": str(tmp / "key"), "outbox_dir": str(tmp / "outbox"),
                  "batch_interval_s": 5},
        "kafka": {"bootstrap_servers": BOOTSTRAP, "topic": topic},
        "site": {"id": "bench", "name": "bench", "sector": "cement", "sources": sources},
        "devices": devices,
    })


async def run_agent(cfg: GatewayConfig, seconds: float):
    agent = EdgeAgent(cfg, b"k" * 32)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(3.0)  # connect and settle
    # read counters outside the measured window: a registry lookup scans every sample
    req0 = sum(agent.metrics.value("cems_edge_requests_total", device=d.id) for d in cfg.devices)
    c0, w0, cycles0 = time.process_time(), time.perf_counter(), agent.cycles
    await asyncio.sleep(seconds)
    cpu, wall, cycles = time.process_time() - c0, time.perf_counter() - w0, agent.cycles - cycles0
    req = sum(agent.metrics.value("cems_edge_requests_total", device=d.id) for d in cfg.devices) - req0
    stop.set()
    await task
    return agent, cpu, wall, cycles, req


def outbox_rates(tmp: Path, n_readings: int, n_batches: int, topic: str):
    from schemas import ReadingBatch

    chans = [(c, q, u) for c, (q, u) in CHANNELS.items()]
    data = ReadingBatch.from_columns(agent_id="gw", source_id="s", seq=0, channels=chans,
                                     ts_ns=[T0] * n_readings, channel=[i % len(chans) for i in range(n_readings)],
                                     value=[1.0] * n_readings, flag=[0] * n_readings).encode()
    ob = Outbox(tmp / "rates")
    t = time.perf_counter()
    for _ in range(n_batches):
        ob.put(lambda seq: data)
    write = n_batches / (time.perf_counter() - t)
    up = KafkaUplink(ob, topic=topic, agent_id="gw", key=b"k", producer_config={"bootstrap_servers": BOOTSTRAP})
    t = time.perf_counter()
    while ob.pending():
        up.drain()
    drain = n_batches / (time.perf_counter() - t)
    up.close()
    return write, drain, len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", type=int, default=50, help="10 points + a status word each")
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-c", "import asyncio, logging; logging.disable(logging.CRITICAL);"
         "from edge_agent.simulator.modbus_server import ModbusSimulator as M;"
         f"asyncio.run(M({args.stacks}, {int(args.seconds) + 30}, start_ns={T0}).serve({port}))"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            topic = f"cems.bench.edge.{uuid.uuid4().hex[:8]}"
            cfg = gateway(args.stacks, port, tmp, topic)
            n_points = sum(len(dev.points) for dev in cfg.devices)
            agent, cpu, wall, cycles, req = asyncio.run(run_agent(cfg, args.seconds))
            write, drain, size = outbox_rates(tmp, n_points * 5, 300, topic + ".rates")
    finally:
        sim.terminate()
        sim.wait()
    per_device_cycles = cycles / len(cfg.devices)
    print(f"edge agent | {n_points} points + {len(cfg.devices)} status words on {len(cfg.devices)} devices at 1 Hz, "
          f"{wall:.0f} s measured")
    print(f"CPU          : {100 * cpu / wall:.1f} % of one core (target < 5 %); "
          f"{1000 * cpu / per_device_cycles:.2f} ms per poll cycle of all {n_points} points")
    print(f"requests     : {req / per_device_cycles:.0f} per cycle (planned), against {n_points + len(cfg.devices)} "
          f"with one request per point")
    print(f"batches      : {agent.outbox.next_seq} stored and sent, outbox now {len(agent.outbox.pending())}")
    print(f"outbox       : write {write:,.0f} batches/s (fsync'd), drain to Kafka {drain:,.0f} batches/s "
          f"(batches of {size:,} bytes = 5 s of all points)")


if __name__ == "__main__":
    main()
