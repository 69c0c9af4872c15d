"""Durable outbox: every batch is on disk before it is sent, and leaves only after Kafka acknowledged it.

Layout of the outbox directory::

    00000000000000000042.batch   one encoded reading batch per file, named by its sequence number
    next_seq                      the next sequence number, as decimal text
    *.tmp                         a write in progress (a crash leaves at most one; removed on open)

A batch is written to a temporary file, fsync'd, and renamed into place (atomic on POSIX), then the
directory is fsync'd: a SIGKILL or power loss at any moment leaves either the whole batch or none of
it, never a torn file. On reopening, the next number is one past the highest batch on disk; only
when the newest batch is about to be removed (acknowledged) is ``next_seq`` written first, so the
number survives an empty outbox. Numbers never repeat and never skip, whatever moment the process
died at. Files are read back in sequence order for sending.

When the outbox holds ``max_bytes``, :meth:`Outbox.put` raises :class:`OutboxFull` rather than
dropping anything: the agent raises its alarm and stops taking new batches until the uplink drains
(readings stay flagged and counted on the device side; nothing already stored is ever dropped).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from pathlib import Path

from schemas.envelope import sign, verify  # the wire contract; re-exported for the agent
from schemas.errors import CemsError

__all__ = ["Outbox", "OutboxFull", "sign", "verify"]

_SUFFIX = ".batch"
_WIDTH = 20  # digits: 2**64 - 1 has 20


class OutboxFull(CemsError):
    """The outbox reached its size limit (or the disk is full); nothing was written."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Outbox:
    """A directory of pending batches in sequence order. One process per directory; within it, one
    thread may put while another reads and acknowledges (the agent's poller and uplink)."""

    def __init__(self, directory: str | Path, max_bytes: int = 2 * 2**30) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        for tmp in self.dir.glob("*.tmp"):  # a write the last process did not finish
            tmp.unlink()
        # The directory is listed once; afterwards the index follows put/ack (a long outage can leave
        # a million files, and the uplink asks for the oldest ones several times a second).
        pending = sorted(int(p.name[: -len(_SUFFIX)]) for p in self.dir.glob(f"*{_SUFFIX}"))
        self._pending = deque(pending)
        self._lock = threading.Lock()  # guards the index and the byte count
        on_disk_next = pending[-1] + 1 if pending else 0
        try:
            recorded = int((self.dir / "next_seq").read_text().strip() or 0)
        except FileNotFoundError:
            recorded = 0
        self._next = max(recorded, on_disk_next)
        self._bytes = sum(self._path(s).stat().st_size for s in pending)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:0{_WIDTH}d}{_SUFFIX}"

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def count(self) -> int:
        """Batches waiting."""
        return len(self._pending)

    def pending(self, limit: int | None = None) -> list[int]:
        """Sequence numbers on disk, oldest first (the ``limit`` oldest when given)."""
        with self._lock:
            return list(itertools.islice(self._pending, limit))

    def put(self, make_batch) -> int:
        """Store the batch ``make_batch(seq)`` returns (encoded bytes) under the next sequence number.

        The number is only consumed once the batch is safely on disk.
        """
        seq = self._next
        data = make_batch(seq)
        if self._bytes + len(data) > self.max_bytes:
            raise OutboxFull(f"outbox {self.dir} holds {self._bytes} bytes; limit {self.max_bytes}")
        try:
            _write_atomic(self._path(seq), data)
            _fsync_dir(self.dir)
        except OSError as exc:  # ENOSPC and friends: say so, keep what is stored
            self._path(seq).with_name(self._path(seq).name + ".tmp").unlink(missing_ok=True)
            raise OutboxFull(f"cannot write to outbox {self.dir}: {exc.strerror or exc}") from exc
        with self._lock:
            self._next = seq + 1
            self._pending.append(seq)  # numbers only grow: the index stays sorted
            self._bytes += len(data)
        return seq

    def read(self, seq: int) -> bytes:
        return self._path(seq).read_bytes()

    def ack(self, seq: int) -> None:
        """Kafka acknowledged batch ``seq``: forget it."""
        path = self._path(seq)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if seq == self._next - 1:  # the newest batch carries the count: persist it before it goes
            _write_atomic(self.dir / "next_seq", str(self._next).encode())
        path.unlink()
        with self._lock:
            self._bytes -= size
            if self._pending and self._pending[0] == seq:  # the usual case: the oldest was acknowledged
                self._pending.popleft()
            else:
                self._pending.remove(seq)
