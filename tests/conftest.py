"""Shared fixtures. Integration tests talk to the real services started by deploy/local/services.sh."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import settings

from tests.fixtures import PrivateKafka

REPO = Path(__file__).resolve().parents[1]

# Property tests in CI are derandomised: the examples come from each test's own name, so a run is reproducible and
# a failure is found again on the next run (and fixed), not met once at random. Locally they explore anew each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")

KAFKA_BOOTSTRAP = os.environ.get("CEMS_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
# The broker's second listener: SASL_SSL, SCRAM-SHA-256/512, certificate from a test CA that kafka.sh makes under
# $CEMS_RUN/kafka/tls. Test-only credentials of a loopback broker (defaults as in deploy/local/lib.sh).
_CEMS_RUN = os.environ.get("CEMS_RUN") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "cems-local-run")
KAFKA_SASL_BOOTSTRAP = os.environ.get("CEMS_KAFKA_SASL_BOOTSTRAP", "127.0.0.1:19094")
KAFKA_SASL_CAFILE = os.environ.get("CEMS_KAFKA_SASL_CAFILE", os.path.join(_CEMS_RUN, "kafka", "tls", "ca.pem"))
KAFKA_SASL_USERNAME = os.environ.get("CEMS_KAFKA_SASL_USERNAME", "cems-agent")
KAFKA_SASL_PASSWORD = os.environ.get("CEMS_KAFKA_SASL_PASSWORD", "cems-agent-loopback-test-only")
INFLUX_URL = os.environ.get("CEMS_INFLUX_URL", "http://127.0.0.1:18086")
INFLUX_ORG = os.environ.get("CEMS_INFLUX_ORG", "cems")
INFLUX_TOKEN = os.environ.get("CEMS_INFLUX_TOKEN", "cems-local-operator-token")
IN_CI = os.environ.get("CI", "").lower() == "true"
# The example gateway file takes its SASL password from this variable (never from the file): tests and the processes
# they start load that file, so it is set for the whole session (the example's broker is not reached by any test).
os.environ.setdefault("CEMS_GW_KAFKA_PASSWORD", "example-gateway-password")


# The test files that take a minute or more, longest first. pytest-xdist hands whole files to its workers in collection
# order (deploy/local/run-tests.sh: --dist loadfile --no-loadscope-reorder), so these start at once, side by side, and
# the many short files fill the gaps around them; started last, one of them alone would set the suite's time. A new
# file that takes over a minute belongs here (by its run time with --durations).
SLOW_FIRST = (
    "tests/integration/test_stream_month.py",
    "tests/integration/test_demo.py",
    "tests/integration/test_cluster_failover.py",
    "tests/integration/test_console_browser.py",
    "tests/integration/test_hj212_equivalence.py",
    "tests/integration/test_zombie_fencing.py",
    "tests/integration/test_edge_outage_day.py",
    "tests/integration/test_edge_crash.py",
    "tests/integration/test_reconcile_pipeline.py",
    "tests/integration/test_plant_quirks.py",
    "tests/unit/test_hj212_fastpath.py",
)


def pytest_collection_modifyitems(items) -> None:
    """:data:`SLOW_FIRST` first, everything else after in its collection order (whole files move: their module
    fixtures are made once)."""
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


# CEMS_TEST_COST=FILE appends one JSON line per test file to FILE: its wall time and the CPU seconds of the pytest
# process and of the child processes it waited for, from the file's first test's setup to the next file's (or the
# session's end): each file runs on one worker, --dist loadfile. What the suite's time is spent on; sort by cpu.
_COST_FILE = os.environ.get("CEMS_TEST_COST")
_cost_now: tuple[str, float, float, float] | None = None  # the file being run: (path, monotonic, cpu, children's)


def _cpu() -> tuple[float, float]:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _cost_close() -> None:
    """Write the cost of the file being run, if any."""
    global _cost_now
    if _cost_now is not None:
        path, t0, me0, kids0 = _cost_now
        me, kids = _cpu()
        with open(_COST_FILE, "a", encoding="utf-8") as f:  # type: ignore[arg-type]
            f.write(json.dumps({"file": path, "wall": round(time.monotonic() - t0, 1), "cpu": round(me - me0, 1),
                                "children_cpu": round(kids - kids0, 1)}) + "\n")
        _cost_now = None


def pytest_runtest_setup(item) -> None:
    """A file's costs start at its first test's setup (which runs where the test runs, not in xdist's controlling
    process, which only logs it)."""
    global _cost_now
    path = item.nodeid.split("::", 1)[0]
    if _COST_FILE and (_cost_now is None or _cost_now[0] != path):
        _cost_close()
        _cost_now = (path, time.monotonic(), *_cpu())


def pytest_sessionfinish(session) -> None:
    _cost_close()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that a worker busy with a :data:`SLOW_FIRST` file is never handed another one
    while a short file waits: xdist sends a worker its next file before the current one ends (a worker holds its last
    test until it knows the next), and two slow files queued on one worker would run one after the other."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    slow = set(SLOW_FIRST)

    class SlowFilesApart(LoadFileScheduling):
        def _assign_work_unit(self, node) -> None:
            busy = any(path in slow and not all(done.values())
                       for path, done in self.assigned_work.get(node, {}).items())
            short = next((path for path in self.workqueue if path not in slow), None)
            if busy and short is not None:
                self.workqueue.move_to_end(short, last=False)
            super()._assign_work_unit(node)

    return SlowFilesApart(config, log)


def _require(service: str, reachable: bool, where: str) -> None:
    if reachable:
        return
    msg = f"{service} is not reachable at {where}; start it with: deploy/local/services.sh up"
    if IN_CI:
        pytest.fail(f"CI=true and {msg}", pytrace=False)  # in CI a missing service is a failure, never a skip
    pytest.skip(msg)


def _tcp_open(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def _influx_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    _require("Kafka", _tcp_open(KAFKA_BOOTSTRAP), KAFKA_BOOTSTRAP)
    return KAFKA_BOOTSTRAP


@pytest.fixture
def private_kafka(tmp_path_factory, kafka_bootstrap) -> Iterator[PrivateKafka]:
    """A single Kafka broker of this test's own, started fresh (about 10 s) and killed after: for a test that stops,
    kills or restarts its broker (``.stop()``, ``.kill()``, ``.start()``), which on the shared broker would disturb
    every test running beside it. ``.bootstrap`` is where to connect. Uses the shared broker's cached jars (hence
    ``kafka_bootstrap``: where the services are missing, this is skipped or failed the same way)."""
    broker = PrivateKafka(tmp_path_factory.mktemp("kafka-run"))
    broker.kafka_sh("start")
    try:
        yield broker
    finally:
        broker.kill()


@dataclass(frozen=True)
class KafkaSasl:
    """The broker's SASL_SSL listener: where it is, the CA that signed its certificate, the SCRAM user."""

    bootstrap: str
    cafile: Path
    username: str
    password: str


@pytest.fixture(scope="session")
def kafka_sasl() -> KafkaSasl:
    _require("Kafka's SASL_SSL listener", _tcp_open(KAFKA_SASL_BOOTSTRAP),
             f"{KAFKA_SASL_BOOTSTRAP} (a broker started by an older kafka.sh has none: restart it)")
    _require("Kafka's test CA file", os.path.isfile(KAFKA_SASL_CAFILE), KAFKA_SASL_CAFILE)
    return KafkaSasl(KAFKA_SASL_BOOTSTRAP, Path(KAFKA_SASL_CAFILE), KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)


@dataclass(frozen=True)
class InfluxSettings:
    url: str
    org: str
    token: str


@pytest.fixture(scope="session")
def influx() -> InfluxSettings:
    _require("InfluxDB", _influx_healthy(INFLUX_URL), INFLUX_URL)
    return InfluxSettings(INFLUX_URL, INFLUX_ORG, INFLUX_TOKEN)


@pytest.fixture
def client(influx):
    """An InfluxDB client on the local test server."""
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org, timeout=30_000) as c:
        yield c


@pytest.fixture
def bucket(client, influx):
    """A fresh bucket, deleted afterwards: tests never see each other's points."""
    name = f"cems-test-{uuid.uuid4().hex[:8]}"
    buckets = client.buckets_api()
    created = buckets.create_bucket(bucket_name=name, org=influx.org)
    yield name
    buckets.delete_bucket(created)


@dataclass(frozen=True)
class DemoRun:
    """One ``./cems demo --no-serve`` of this checkout: where its output went, what it printed, when it started
    (Unix time, s: the demo's clock runs from then)."""

    out: Path
    returncode: int
    stdout: str
    stderr: str
    started: float


# --- what the pytest-xdist workers of one run share (one process without xdist) -----------------------------------
# A run's workers share the parent of their own temp dirs (pytest's base temp of the run), and a tmpfs directory named
# after it, which the controlling process removes at its end (a worker may end while others still read from it).


def _run_root(tmp_path_factory) -> Path:
    """The directory every pytest process of this run shares: the run's base temp (xdist's workers each have a
    ``popen-gwN`` below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _shared_fast_root(run_root: Path) -> Path | None:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return None
    return shm / f"cems-tests-{hashlib.sha256(str(run_root).encode()).hexdigest()[:16]}"


def pytest_unconfigure(config) -> None:
    """The controlling process (or the only one) removes the run's tmpfs directory."""
    factory = getattr(config, "_tmp_path_factory", None)
    if os.environ.get("PYTEST_XDIST_WORKER") or factory is None or factory._basetemp is None:
        return  # a worker, or no temp dir was ever made
    root = _shared_fast_root(factory.getbasetemp())
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def once_per_run(tmp_path_factory, name: str, make: Callable[[], dict]) -> dict:
    """``make()`` run once per test run, however many xdist workers ask for it (the first one makes it, the others
    wait and read it: pytest-xdist's "Making session-scoped fixtures execute only once"). ``make`` returns JSON and
    whatever it names (paths, topics) must be shareable by the workers: nobody changes them."""
    root = _run_root(tmp_path_factory)
    done = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if done.is_file():
            return json.loads(done.read_text())
        value = make()
        done.write_text(json.dumps(value))
        return value


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, fast_tmp_factory) -> DemoRun:
    """The README's main command, run once per test run (each run takes ~15 s; once for all xdist workers) and
    shared by every test that needs the demo's month: they read its output and never change it (the console tests
    work on a copy). Its outbox is about 24,000 batch files: on tmpfs where there is one."""

    def run_demo() -> dict:
        out = fast_tmp_factory.mktemp("demo")
        started = time.time()
        run = subprocess.run([str(REPO / "cems"), "demo", "--no-serve", "--out", str(out)], cwd=out,
                             capture_output=True, text=True, timeout=600)
        return {"out": str(out), "returncode": run.returncode, "stdout": run.stdout, "stderr": run.stderr,
                "started": started}

    got = once_per_run(tmp_path_factory, "demo_run", run_demo)
    return DemoRun(**{**got, "out": Path(got["out"])})


class FastTmpFactory:
    """Fresh directories under one root on tmpfs (see :func:`fast_tmp_factory`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


@pytest.fixture(scope="session")
def fast_tmp_factory(tmp_path_factory):
    """Directories on tmpfs (/dev/shm) when the machine has one, else under the session's temp dir, removed at the
    end of the run: for tests that write thousands of files, or fsync thousands of times, and are about something
    else than the disk (its latency is all they would measure; a SIGKILL, the only crash the tests make, loses nothing
    from the page cache either way). One root for the run's xdist workers (:func:`demo_run`'s output is read by all)."""
    root = _shared_fast_root(_run_root(tmp_path_factory))
    if root is None:
        return FastTmpFactory(tmp_path_factory.mktemp("fast"))
    root.mkdir(exist_ok=True)
    return FastTmpFactory(root)


@pytest.fixture
def fast_tmp(fast_tmp_factory) -> Path:
    """A fresh directory of :func:`fast_tmp_factory`."""
    return fast_tmp_factory.mktemp("test")
