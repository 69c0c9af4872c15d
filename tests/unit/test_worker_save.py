"""The stream worker's checkpoint as transactions (``StreamWorker._save``), against writers that record what they are
asked and fail on cue: a fenced partition is dropped and counted, a failed commit is aborted and the whole
transaction sent again, the others commit once, and an event is acknowledged only once its partition committed.
The real thing, through a broker and a SIGSTOPped worker: tests/integration/test_zombie_fencing.py."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from types import SimpleNamespace

import pytest

from streams.core.backoff import Backoff
from streams.runtime import worker as worker_module
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.state_store import Fenced, PartitionState
from streams.runtime.worker import Capture, StreamWorker


class Writer:
    """A partition's writer: records calls; ``fail`` maps a call name to the exceptions its next calls raise."""

    def __init__(self, **fail) -> None:
        self.calls: list[str] = []
        self.fail = {k: list(v) for k, v in fail.items()}
        self.offset = 0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail.get(name):
            raise self.fail[name].pop(0)

    def begin(self, messages) -> None:
        self._call("begin")

    def send_state(self, key, value) -> int:
        self._call("state")
        self.offset += 1
        return self.offset - 1

    def commit(self) -> None:
        self._call("commit")

    def abort(self) -> None:
        self._call("abort")

    def close(self) -> None:
        self.calls.append("close")


class Event:
    def __init__(self) -> None:
        self.acked = 0

    def ack(self) -> None:
        self.acked += 1


def worker(writers: dict) -> StreamWorker:
    """A worker holding ``writers``' partitions, without faust (only what ``_save`` uses)."""
    w = StreamWorker.__new__(StreamWorker)
    w.cfg = SimpleNamespace(session_timeout_s=6.0)  # type: ignore[assignment]
    w.metrics, w.sink = WorkerMetrics(), None
    w.writers = dict(writers)
    w.states = {tp: PartitionState(f"r/{tp.partition}") for tp in writers}
    w.processors = dict.fromkeys(writers, object())
    w.pending, w.outputs, w.sink_outs, w.held = {}, {}, {}, {}
    return w


def save(w: StreamWorker, offsets: dict) -> dict:
    """One checkpoint of every partition (segment ``core``, ``offsets[tp]``); the events it covers."""
    captured = [Capture(tp, w.writers[tp], w.states[tp], {"core": b"x"}, offsets[tp], []) for tp in offsets]
    events = {tp: [Event(), Event()] for tp in offsets}

    async def run():
        await w._save(captured, events, {})
        await asyncio.sleep(0)  # the closes of dropped writers, in the executor

    asyncio.run(run())
    return events


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(worker_module, "RETRY", Backoff(initial_s=0.0, max_s=0.0))


TP = namedtuple("TP", "topic partition")  # faust's TP, as far as the worker uses it
P0, P1 = TP("r", 0), TP("r", 1)


def test_a_failed_commit_is_aborted_and_the_whole_transaction_sent_again():
    w0, w1 = Writer(), Writer(commit=[ConnectionError("broker away")])
    w = worker({P0: w0, P1: w1})
    events = save(w, {P0: 10, P1: 20})
    # each transaction: begin (outputs), the core's piece, the manifest, commit
    assert w0.calls == ["begin", "state", "state", "commit"]
    assert w1.calls == ["begin", "state", "state", "commit", "abort", "begin", "state", "state", "commit"]
    assert (w.states[P0].next_offset, w.states[P1].next_offset) == (10, 20)
    assert w.states[P1].segments["core"]["offsets"] == [2]  # the resent piece (offsets 0, 1 were the aborted try)
    assert w.metrics.value("cems_worker_output_failures_total", output="kafka") == 1
    assert all(e.acked == 1 for evs in events.values() for e in evs)


@pytest.mark.parametrize("step", ["begin", "commit"])
def test_a_fenced_partition_is_dropped_and_counted_and_the_others_commit(step):
    w0, w1 = Writer(), Writer(**{step: [Fenced("ProducerFencedError")]})
    w = worker({P0: w0, P1: w1})
    events = save(w, {P0: 10, P1: 20})
    assert w.states[P0].next_offset == 10 and w0.calls[-1] == "commit"
    assert P1 not in w.writers and P1 not in w.states and P1 not in w.processors
    assert "abort" not in w1.calls and w1.calls.count(step) == 1  # refused once: never retried
    assert w.metrics.value("cems_worker_fenced_saves_total", partition="1") == 1
    assert P1 in w.held  # its events are left alone until it is assigned here again
    assert [e.acked for e in events[P0]] == [1, 1]
    assert [e.acked for e in events[P1]] == [0, 0]  # not covered by a committed state: never acknowledged


def test_an_influxdb_failure_aborts_and_retries_every_open_transaction(monkeypatch):
    w0 = Writer()
    w = worker({P0: w0})
    w.sink = object()
    fails = [ConnectionError("influxdb away")]

    def write_sink(outs):
        if fails:
            raise fails.pop()

    monkeypatch.setattr(w, "_write_sink", write_sink)
    captured = [Capture(P0, w0, w.states[P0], {"core": b"x"}, 5, [])]
    asyncio.run(w._save(captured, {P0: [Event()]}, {P0: ["an output"]}))
    assert w0.calls == ["begin", "state", "state", "abort", "begin", "state", "state", "commit"]
    assert w.metrics.value("cems_worker_output_failures_total", output="influxdb") == 1
    assert w.states[P0].next_offset == 5


def test_a_revocation_waits_for_the_partition_being_loaded_and_the_load_installs_nothing(monkeypatch):
    """A partition revoked while a chunk is taking it on: the revocation returns only after that load has ended (the
    group's rebalance waits for it, so the successor's writer is made after this one, never before: a later writer
    fences the earlier), and the load closes the writer it made and installs nothing."""
    import threading
    import time

    made, release = [], threading.Event()

    def blocking_writer(*args) -> Writer:  # making a writer fences the earlier ones: here it waits until released
        release.wait(10)
        made.append(Writer())
        return made[-1]

    monkeypatch.setattr(worker_module, "PartitionWriter", blocking_writer)
    monkeypatch.setattr(worker_module, "PartitionProcessor", lambda *args: object())
    tp = TP("r", 0)
    w = worker({})
    w.cfg = SimpleNamespace(session_timeout_s=6.0, app_id="app", topics=SimpleNamespace(state="s"),  # type: ignore[assignment]
                            kafka=SimpleNamespace(producer_config=dict), processing=None)
    w.registry = w.keys = None  # type: ignore[assignment]
    w._qa, w._qa_read, w._busy, w._saving = None, time.monotonic(), None, None

    async def run():
        async def chunk():
            async with w._lock():
                return await w._load(tp)

        load = asyncio.create_task(chunk())
        await asyncio.sleep(0.05)  # the load is making its writer
        revoke = asyncio.create_task(w._revoked(None, {tp}))
        await asyncio.sleep(0.05)
        waited = not revoke.done()
        release.set()
        return waited, await load, await revoke

    waited, loaded, _ = asyncio.run(run())
    assert waited and loaded is None
    assert [m.calls for m in made] == [["close"]]
    assert tp not in w.processors and tp not in w.writers and w.held == {tp: float("inf")}
