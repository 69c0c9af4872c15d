"""Helpers that more than one test module uses (issue 14: tests import them from here, never from each other).

Pytest fixtures proper live in ``tests/conftest.py``; this module holds plain functions and data: the two-stack
stream of the processor tests, the Kafka helpers of the stream worker tests, waiting for a condition, and a few
small builders. Whatever is costly to make is made on first use and kept (``functools.cache``), so importing this
module costs nothing.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "local"
CEMS = "from streams.cli import main; main()"  # `python -c CEMS ARGS...`: the cems command of this checkout
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_index() -> int:
    """This pytest process's index among pytest-xdist's workers (``gw0`` is 0), 0 without xdist."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


@functools.cache
def _port_blocks():
    """The blocks of :func:`private_ports`: 100 ports per xdist worker from 21000 up, handed out in order."""
    return iter(range(21_000 + 100 * worker_index(), 21_100 + 100 * worker_index()))


def private_ports(n: int) -> list[int]:
    """``n`` free TCP ports on 127.0.0.1 for a server a test starts, stops and starts again on the same ports (a
    private broker): below the kernel's ephemeral range (32768 up), where no client socket and no :func:`free_port`
    takes them while the server is down, and disjoint between xdist workers. Ports some other process holds now are
    passed over."""
    ports: list[int] = []
    for port in _port_blocks():
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free ports left in this worker's block (21000 + 100 x {worker_index()})")


class PrivateKafka:
    """A single Kafka broker of one test's own (``deploy/local/kafka.sh`` on private ports and run directory), for
    the tests that stop, kill or restart their broker: the shared one, and every test using it, never notices. The
    same listeners as the shared broker (PLAINTEXT, SASL_SSL with the same test user); see the ``private_kafka``
    fixture."""

    def __init__(self, run_dir: Path) -> None:
        plain, controller, sasl = private_ports(3)
        self.bootstrap = f"127.0.0.1:{plain}"
        self.sasl_bootstrap = f"127.0.0.1:{sasl}"
        self.cafile = run_dir / "kafka" / "tls" / "ca.pem"
        self.log = run_dir / "kafka" / "broker.log"
        # the serial collector and C1 only, as kafka-cluster.sh's nodes: half the CPU of a start (3 s rather than 6 s)
        # for a broker that lives a minute and moves little, on a machine the tests keep busy
        self.env = {**os.environ, "CEMS_RUN": str(run_dir), "CEMS_KAFKA_PORT": str(plain),
                    "CEMS_KAFKA_CONTROLLER_PORT": str(controller), "CEMS_KAFKA_SASL_PORT": str(sasl),
                    "CEMS_KAFKA_JVM": "-Xms64m -Xmx768m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"}

    def kafka_sh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``deploy/local/kafka.sh ARGS`` on this broker (an error shows the script's output)."""
        run = subprocess.run([str(DEPLOY / "kafka.sh"), *args], env=self.env, capture_output=True, text=True,
                             timeout=300)
        if check and run.returncode:
            raise RuntimeError(f"kafka.sh {' '.join(args)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
        return run

    def start(self) -> None:
        """Start it again on its kept log directory (after :meth:`stop` or :meth:`kill`); returns once it serves."""
        self.kafka_sh("start", "--keep-data")

    def stop(self) -> None:
        """Controlled shutdown (SIGTERM); returns once the process is gone."""
        self.kafka_sh("stop")

    def kill(self) -> None:
        """SIGKILL; returns once the process is gone."""
        self.kafka_sh("kill")


def cems_command(*args: str) -> list[str]:
    """The argv of ``cems ARGS`` of this checkout (``python -m streams.cli`` does not start it: streams/cli is a
    package without ``__main__``)."""
    return [sys.executable, "-c", CEMS, *args]


def cems_process(*args: str, log: Path | None = None, **popen) -> subprocess.Popen:
    """``cems ARGS`` of this checkout as a child process (for the tests that kill it), output to ``log``."""
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child owns it
    return subprocess.Popen(cems_command(*args), cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=out, stderr=out, **popen)


def serve_demo_console(out: str, port: int, started: float, month: str = "2026-02") -> None:
    """What ``cems demo`` does once its month is archived (``streams.cli.demo``): print fresh demo accounts, then
    serve the console on ``OUT/archive.sqlite``, with the demo's clock (12 days after the month's end) running from
    ``started`` (Unix s), the start of the demo run that made the archive. Run in a child process (see
    ``test_console_browser.py``)."""
    from datetime import timedelta

    from streams.cli.demo import _demo_clock, _serve_console

    demo_clock, offset = _demo_clock(month), timedelta(seconds=time.time() - started)
    _serve_console(Path(out), port, lambda: demo_clock() + offset)


# --- waiting for a condition (never a fixed sleep) ----------------------------------------------------------------


async def wait_for(predicate, timeout_s: float, every_s: float = 0.5) -> bool:
    """Poll ``predicate`` (run in a thread: it may block on I/O) until it holds or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await asyncio.to_thread(predicate):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every_s)


def wait_until(predicate, timeout_s: float, every_s: float = 0.1) -> bool:
    """:func:`wait_for` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)


# --- the processor tests' stream: two agents, one stack each, 3 h at 1 Hz in 5-s batches --------------------------

KEYS = {"gw-a": b"a" * 32, "gw-b": b"b" * 32}
STREAM_HOURS, STREAM_BATCH_S = 3, 5


def site():
    """The plant of :func:`two_stacks`: one entity, ``stack0`` and ``stack1`` with the simulator's channels."""
    from edge_agent.simulator.generate import source_config
    from schemas.site import Entity

    return Entity.model_validate({"id": "plant", "name": "plant", "sector": "cement", "sources": [
        source_config(f"stack{k}", f"stack {k}") for k in range(2)]})


@functools.cache
def two_stacks() -> tuple[list, dict]:
    """(messages, readings): two agents, one stack each, 3 h at 1 Hz in 5-s batches, interleaved as one partition
    would hold them; the readings per source as the simulator made them. A calibration (span gas) in minutes 6-19 of
    hour 1 of stack 1. Made once per session (the messages are immutable)."""
    from edge_agent.outbox import sign
    from edge_agent.simulator.generate import CHANNELS, Fault, simulate_stack, simulator_stack_model
    from schemas import ReadingBatch
    from streams.core.processor import Message

    per_agent, readings = [], {}
    faults = (Fault("calibration", 3960, 840, "co2", 15.0),)
    for k, agent in enumerate(KEYS):
        model = simulator_stack_model(k)
        if k == 1:
            model = type(model)(**{**model.__dict__, "faults": faults})
        r, _ = simulate_stack(model, T0, STREAM_HOURS * 3600, seed=k)
        readings[f"stack{k}"] = r
        names = list(CHANNELS)
        msgs = []
        for seq, start in enumerate(range(0, STREAM_HOURS * 3600, STREAM_BATCH_S)):
            sl = slice(start, start + STREAM_BATCH_S)
            ts = np.repeat(T0 + np.arange(start, start + STREAM_BATCH_S, dtype=np.int64) * 10**9, len(names))
            value = np.stack([r[c][0][sl] for c in names], axis=1).ravel()
            flag = np.stack([r[c][1][sl] for c in names], axis=1).ravel()
            data = ReadingBatch.from_columns(
                agent_id=agent, source_id=f"stack{k}", seq=seq, channels=[(c, *CHANNELS[c]) for c in names], ts_ns=ts,
                channel=np.tile(np.arange(len(names)), STREAM_BATCH_S), value=value, flag=flag).encode()
            headers = {"cems-agent": agent.encode(), "cems-seq": str(seq).encode(), "cems-sig": sign(KEYS[agent], data)}
            sent_ms = (T0 + (start + STREAM_BATCH_S) * 10**9) // 10**6 + 200  # sent 0.2 s after the cut
            msgs.append((data, headers, sent_ms))
        per_agent.append(msgs)
    merged = sorted((m for msgs in per_agent for m in msgs), key=lambda m: m[2])
    return [Message(i, d, h, t) for i, (d, h, t) in enumerate(merged)], readings


def processor(**settings):
    """A partition processor for :func:`site` with :data:`KEYS` enrolled."""
    from ingest.batches import KeyRing
    from streams.core.processor import PartitionProcessor, Registry, Settings

    return PartitionProcessor(Registry([site()]), KeyRing(keys=KEYS), Settings(**settings))


def offline_co2_kg():
    """The kernels applied to all of :func:`two_stacks`' readings at once: hourly CO2 kg [source, hour]."""
    from streams.core.processor import Registry
    from streams.kernels import POLICIES, hourly_emissions, hours_from_minutes, readings_to_minutes

    cn = POLICIES["cn-hj75"]
    reg = Registry([site()])
    parts = []
    for s, r in two_stacks()[1].items():
        for c, (value, flag) in r.items():
            parts.append((np.full(value.size, reg.series_of[(s, c)]), T0 + np.arange(value.size) * 10**9, value, flag))
    series, ts, value, flag = (np.concatenate(x) for x in zip(*parts, strict=True))
    hours = hours_from_minutes(readings_to_minutes(series, ts, value, flag, bounds=reg.bounds).close(cn)).close(cn)
    return hourly_emissions(hours, reg.n_series, reg.layout, T0, STREAM_HOURS, cn.reference).co2_kg


def final(records) -> dict:
    """Latest revision per (source, hour), as a compacted topic or an InfluxDB point keeps it."""
    out: dict = {}
    for r in records:
        if (r.source_id, r.hour_start_ns) not in out or r.revision >= out[(r.source_id, r.hour_start_ns)].revision:
            out[(r.source_id, r.hour_start_ns)] = r
    return out


def run(p, messages, chunk: int = 200) -> list:
    """Feed ``messages`` to processor ``p`` in chunks; the hourly records (no batch may be dead-lettered)."""
    records = []
    for i in range(0, len(messages), chunk):
        out = p.process(messages[i : i + chunk])
        assert not out.dead_letters, out.dead_letters[:1]
        records += out.hourly
    return records


# --- Kafka ----------------------------------------------------------------------------------------------------------


def produce(cfg, messages, extra_headers=None) -> None:
    """Send processor ``Message``s to the worker config's readings topic (key: the agent), every send acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**cfg.kafka.producer_config(), linger_ms=20)
    futures = [producer.send(cfg.topics.readings, key=m.headers["cems-agent"], value=m.value,
                             headers=list(m.headers.items()) + (extra_headers or []), timestamp_ms=m.timestamp_ms)
               for m in messages]
    producer.flush(60)
    for f in futures:
        f.get(timeout=30)
    producer.close()


def read_all(cfg, topic: str) -> list:
    """Every record of ``topic`` up to its end offsets when called (all partitions; nothing waited for)."""
    from streams.runtime.kafka_io import read_topic as read_to_end

    return read_to_end(cfg.kafka, topic)


def read_topic(bootstrap: str, topic: str, expected: int | None = None, idle_s: float = 10.0) -> list:
    """Records of ``topic`` from its start: the first ``expected`` (waiting up to ``idle_s`` for each next one), or
    with ``expected=None`` every record up to the end offsets when called."""
    from kafka import KafkaConsumer

    if expected is None:
        from schemas.kafka import KafkaConnection
        from streams.runtime.kafka_io import read_topic as read_to_end

        return read_to_end(KafkaConnection(bootstrap_servers=bootstrap), topic)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=int(idle_s * 1000))
    records = []
    for record in consumer:
        records.append(record)
        if len(records) >= expected:
            break
    consumer.close()
    return records


def caught_up(cfg) -> bool:
    """Every readings partition's newest snapshot covers everything produced to it (no partitions at all: the
    metadata request failed, as it can on a loaded machine, and nothing is known yet)."""
    from streams.runtime.worker import checkpoint_lag

    lag = checkpoint_lag(cfg)
    return bool(lag) and not any(lag.values())


def worker_files(tmp_path: Path, keys: dict[str, bytes], site) -> dict:
    """A worker's files under ``tmp_path``: the agents' keys (``keys/<agent>.key``) and the site file of ``site`` (a
    :class:`schemas.site.Entity`), as the ``sites`` and ``keys_dir`` settings of a WorkerConfig."""
    import yaml

    (tmp_path / "keys").mkdir()
    for agent, key in keys.items():
        (tmp_path / "keys" / f"{agent}.key").write_bytes(key)
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site.model_dump(mode="json"), sort_keys=False))
    return {"sites": [tmp_path / "site.yaml"], "keys_dir": tmp_path / "keys"}


def topic_records(cfg) -> tuple[dict, dict]:
    """The worker config's hourly and monthly topics as compaction keeps them: the latest revision per
    (source, hour), the latest record per source-month."""
    from schemas.records import HourlyRecord, MonthlyRecord

    hourly = final(HourlyRecord.from_json(r.value) for r in read_all(cfg, cfg.topics.hourly))
    monthly = {}
    for r in read_all(cfg, cfg.topics.monthly):
        rec = MonthlyRecord.from_json(r.value)
        monthly[rec.key] = rec
    return hourly, monthly


def contents(records: dict) -> dict:
    """Records compared by what they say, not when or by whom they were made."""
    return {k: r.content() for k, r in records.items()}


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """A Prometheus endpoint on 127.0.0.1:port, parsed: (sample name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def start_worker(config_path: Path) -> subprocess.Popen:
    """``cems stream worker CONFIG`` as a child process (to be SIGKILLed), its log beside the config."""
    return cems_process("stream", "worker", str(config_path), "--log-level", "info",
                        log=config_path.with_suffix(".log"))


# --- small builders ---------------------------------------------------------------------------------------------------


def batch_bytes(seq: int, n: int = 10) -> bytes:
    """An encoded reading batch of ``n`` CO2 readings (12 %), numbered ``seq``, from gw-1's kiln1."""
    from schemas import ReadingBatch

    return ReadingBatch.from_columns(
        agent_id="gw-1", source_id="kiln1", seq=seq, channels=[("co2", "a05001", "%")],
        ts_ns=[T0 + (seq * n + i) * 10**9 for i in range(n)], channel=[0] * n, value=[12.0] * n, flag=[0] * n,
    ).encode()


# --- HJ 212-2025 encrypted data areas (Appendix A.2, key = 16 bytes 0x30) ------------------------------------------

A2_KEY = b"0" * 16  # "16 个 0x30"
A2_HEAD = "QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&"
A2_EX2_HEX = ("E43E159ACFAB242CB53155FB8B9281A1A242577ABFAED881BE88B72D69FC55ED1A80119FAAC8B3CD33D285CC76F57F2CA7F88B95"
              "73C6647E0F07E24609BD6B63EB20C5B9784F28E71D2F4994FF61D9E1C2B3075592B4D1E09C4D8BB27BE97B559E3DA6643781A6F4"
              "77769DEEB009B10DFFF3426922725D607DC4480F0CAC5F70DB2587B124BCB281592721D6E4BC180A97E5E111499CBE822E31C8D7"
              "761553543AA24207C290997BBDE64F9266BC5F529A172E381C1D898CA1A0D771A914A7B2D7467C70B94F1D4A7B0350A48DBF8B41")
A2_EX4_HEX = ("E43E159ACFAB242CB53155FB8B9281A1A242577ABFAED881BE88B72D69FC55ED1A80119FAAC8B3CD33D285CC76F57F2CA7F88B95"
              "73C6647E0F07E24609BD6B63EB20C5B9784F28E71D2F4994FF61D9E13B391A1D2A454B65388D5D9435DBF021528C7BF9755EF165"
              "18710C0CAC0ADEF9C5156CD0A5A17674AC0ED2ABC40023E9EF70128554B82438E91ADCE98A0D03A4")


def encrypted_frame(length: str, cipher_hex: str, tail: str, crc: str) -> bytes:
    """An HJ 212-2025 frame of :data:`A2_HEAD` with ``cipher_hex`` listed as the standard writes it (0x.., ...)."""
    listed = ",".join(f"0x{cipher_hex[i:i + 2]}" for i in range(0, len(cipher_hex), 2))
    return f"##{length}{A2_HEAD}{{{listed}}}{tail}&&{crc}\r\n".encode()
