"""The state store's manifest and double buffering, against an in-memory log that compacts like Kafka (the
store's logic only; tests/integration/test_stream_month.py runs it through a real broker with SIGKILLs)."""

from __future__ import annotations

import asyncio

import pytest

from streams.runtime import state_store
from streams.runtime.state_store import PartitionState, read_manifest, read_partition_state


class CompactingLog:
    """A partition: append-only offsets; ``compact()`` keeps the newest record per key (tombstones go too)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, bytes, bytes | None]] = []
        self.next = 0
        self.fail_after: int | None = None  # sends before a simulated crash

    async def send(self, key: bytes, value: bytes | None) -> int:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise ConnectionError("worker killed")
            self.fail_after -= 1
        self.rows.append((self.next, key, value))
        self.next += 1
        return self.next - 1

    def compact(self) -> None:
        newest = {key: offset for offset, key, _ in self.rows}
        self.rows = [r for r in self.rows if newest[r[1]] == r[0] and r[2] is not None]

    def end(self) -> int:
        return self.next

    def records(self, start: int, stop: int):
        return [r for r in self.rows if start <= r[0] < stop]


def save(state: PartitionState, log: CompactingLog, changed: dict, offset: int) -> None:
    asyncio.run(state.save(changed, offset, log.send))


def test_a_crash_mid_checkpoint_and_compaction_keep_the_last_complete_state(monkeypatch):
    monkeypatch.setattr(state_store, "PIECE_BYTES", 4)  # segments of several pieces
    log, state = CompactingLog(), PartitionState("readings/0")
    save(state, log, {"core": b"core-1", "hour:1": b"hour-one", "hour:2": b"h2"}, 10)
    save(state, log, {"core": b"core-2", "hour:2": b"hour-two"}, 20)
    # the next checkpoint dies after writing two pieces: hour:2's new version (in the other slot) and half a core
    log.fail_after = 2
    with pytest.raises(ConnectionError):
        save(state, log, {"core": b"core-3!!!", "hour:2": b"h2-v3"}, 30)
    log.compact()
    restored, segments = read_partition_state(log, "readings/0")
    assert restored.next_offset == 20
    assert segments == {"core": b"core-2", "hour:1": b"hour-one", "hour:2": b"hour-two"}


def test_segments_gone_are_tombstoned_after_the_manifest_and_compacted_away():
    log, state = CompactingLog(), PartitionState("readings/3")
    save(state, log, {"core": b"a", "hour:1": b"x" * 10}, 1)
    save(state, log, {"core": b"b", "hour:1": b"y" * 10}, 2)  # both slots of hour:1 hold a version now
    save(state, log, {"core": b"c", "hour:1": None}, 3)
    log.compact()
    assert {key for _, key, _ in log.rows} == {b"readings/3/manifest", b"readings/3/core@0#0", b"readings/3/core@1#0"}
    restored, segments = read_partition_state(log, "readings/3")
    assert (restored.next_offset, segments) == (3, {"core": b"c"})


def test_the_manifest_is_found_behind_an_interrupted_checkpoint_and_other_partitions_keys():
    log, state = CompactingLog(), PartitionState("readings/1")
    save(state, log, {"core": b"one"}, 5)
    for i in range(40):  # pieces of an interrupted checkpoint after the manifest
        asyncio.run(log.send(f"readings/1/hour:{i}@1#0".encode(), b"junk"))
    assert read_manifest(log, "readings/1").next_offset == 5
    assert read_manifest(log, "other/1") is None
    assert read_partition_state(CompactingLog(), "readings/1") is None
