"""Durable outbox (edge_agent/outbox.py): order, continuity of sequence numbers, crash safety."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox, OutboxFull, sign, verify
from schemas import decode_batch
from tests.fixtures import batch_bytes

REPO = Path(__file__).resolve().parents[2]


def test_put_read_ack_in_order(tmp_path):
    ob = Outbox(tmp_path)
    assert [ob.put(batch_bytes) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert ob.pending() == [0, 1, 2, 3, 4]
    assert decode_batch(ob.read(3)).seq == 3
    ob.ack(0)
    ob.ack(2)
    ob.ack(2)  # acknowledging twice is harmless
    assert ob.pending() == [1, 3, 4]
    assert ob.size_bytes == 3 * len(batch_bytes(1))


def test_sequence_continues_after_restart_even_when_everything_was_sent(tmp_path):
    ob = Outbox(tmp_path)
    for _ in range(3):
        ob.ack(ob.put(batch_bytes))
    assert Outbox(tmp_path).next_seq == 3  # not 0: numbers never repeat


def test_recovery_takes_the_larger_of_next_seq_and_the_files(tmp_path):
    ob = Outbox(tmp_path)
    for _ in range(4):
        ob.put(batch_bytes)
    (tmp_path / "next_seq").write_text("2")  # as if killed between a batch's rename and next_seq
    (tmp_path / "00000000000000000009.batch.tmp").write_bytes(b"half a batch")
    again = Outbox(tmp_path)
    assert again.next_seq == 4 and not list(tmp_path.glob("*.tmp"))


def test_full_outbox_refuses_instead_of_dropping(tmp_path):
    size = len(batch_bytes(0))
    ob = Outbox(tmp_path, max_bytes=2 * size)
    ob.put(batch_bytes)
    ob.put(batch_bytes)
    with pytest.raises(OutboxFull, match="limit"):
        ob.put(batch_bytes)
    assert ob.pending() == [0, 1] and ob.next_seq == 2  # the number was not consumed
    ob.ack(0)
    assert ob.put(batch_bytes) == 2


def test_signatures():
    data = batch_bytes(1)
    sig = sign(b"agent-key", data)
    assert verify(b"agent-key", data, sig)
    assert not verify(b"other-key", data, sig)
    assert not verify(b"agent-key", data[:-1] + bytes([data[-1] ^ 1]), sig)


CHILD = """
import sys
sys.path.insert(0, {repo!r})
from edge_agent.outbox import Outbox
from tests.fixtures import batch_bytes
ob = Outbox({dir!r})
print("ready", flush=True)
while True:
    ob.put(batch_bytes)
"""


def test_sigkill_at_any_moment_leaves_whole_batches_and_contiguous_numbers(tmp_path):
    rng = random.Random(4)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), dir=str(tmp_path))],
                                 stdout=subprocess.PIPE, env=env)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        ob = Outbox(tmp_path)
        pending = ob.pending()
        assert pending == list(range(ob.next_seq))  # nothing lost, nothing skipped, nothing repeated
        for seq in (pending[0], pending[len(pending) // 2], pending[-1]) if pending else ():
            assert decode_batch(ob.read(seq)).seq == seq  # never a torn file
    final = Outbox(tmp_path)
    assert final.next_seq > 20
    assert [decode_batch(final.read(seq)).seq for seq in final.pending()] == final.pending()
