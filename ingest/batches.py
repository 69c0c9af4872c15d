"""First stop of a reading batch at the centre: is it from a known agent, untampered, and decodable?

:func:`check_message` is pure (no Kafka): it takes a message's value and headers as the edge uplink
wrote them (the signed envelope, :mod:`schemas.envelope`) and returns either the
decoded :class:`~schemas.batch.ReadingBatch` or a :class:`Rejection` with a stable reason code. A
rejection goes to the dead-letter topic with the original bytes, the original headers and
:func:`dead_letter_headers`, never to the floor and never as an exception out of a worker.

Order of the checks, cheapest and least trusting first: the agent must be known, the HMAC-SHA256
signature must verify over the exact bytes received (RFC 2104; before decoding anything, so a forged
batch is never parsed further), the bytes must decode (CRC, framing, schema version), and the
batch's own header must agree with the message headers (agent id, sequence number).

:func:`check_messages` does the same for a chunk of messages, with the same results, but checks the
readings of all of them in a few vectorised passes (:func:`schemas.batch.check_batch_columns`) instead of
batch by batch: for small batches (5 s of 8 channels) those per-batch numpy calls were about half the
cost of checking a message (``python bench/bench_codec.py --only-messages``).

Both read every wire version: a version-1 or -2 message gives its :class:`~schemas.batch.ReadingBatch`, a version-3
agent batch (one message per agent and interval, :mod:`schemas.agent_batch`) an
:class:`~schemas.agent_batch.AgentBatch` of one section per source, checked with the same rules (one bad reading
in any section refuses the whole message: the agent signed it as one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas import envelope
from schemas.agent_batch import AgentBatch, decode_message
from schemas.batch import AGENT_VERSION, ReadingBatch, check_column_segments
from schemas.errors import BatchDecodeError, UnsupportedSchemaVersion

__all__ = ["REASONS", "KeyRing", "Rejection", "check_message", "check_messages", "dead_letter_headers"]

#: Reason codes of a rejected batch (dead-letter header ``cems-dlq-reason``; a metric label).
REASONS = {
    "missing_header": "a cems-agent, cems-seq or cems-sig header is missing or malformed",
    "unknown_agent": "no key is enrolled for the agent",
    "bad_signature": "the HMAC-SHA256 signature does not match the bytes (tampered, or signed with another key)",
    "unsupported_version": "a schema version this worker cannot read (a newer agent)",
    "undecodable": "not a valid reading batch (truncated, checksum, framing, bad column)",
    "header_mismatch": "the batch's own agent id or sequence number differs from the message headers",
}


@dataclass(frozen=True)
class Rejection:
    reason: str  # a key of REASONS
    detail: str
    source_id: str | None = None  # the section refused, when only one source of an agent batch is


def _as_checked(batch: AgentBatch) -> ReadingBatch | AgentBatch:
    """A single batch (versions 1 and 2) as itself, an agent batch (version 3) whole."""
    return batch if batch.version == AGENT_VERSION else batch.sections[0]


class KeyRing:
    """Agent id -> HMAC key, read from a directory holding one ``<agent id>.key`` file per agent.

    Enrolling an agent is dropping its key file in the directory (the same bytes as the gateway's
    ``agent.key_file``); an unknown agent triggers one re-read, so no worker restart is needed."""

    def __init__(self, directory: str | Path | None = None, keys: dict[str, bytes] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._keys = dict(keys or {})
        self._read()

    def _read(self) -> None:
        if self.directory is not None and self.directory.is_dir():
            for path in self.directory.glob("*.key"):
                self._keys.setdefault(path.stem, path.read_bytes())

    def get(self, agent_id: str) -> bytes | None:
        key = self._keys.get(agent_id)
        if key is None and self.directory is not None:
            self._read()
            key = self._keys.get(agent_id)
        return key


_BYTES = (bytes, bytearray)  # a tuple: `bytes | bytearray` would build a union object on every call


def _header(headers: dict[str, bytes], name: str) -> bytes | None:
    value = headers.get(name)
    return value if isinstance(value, _BYTES) and value else None


def check_message(value: bytes, headers: dict[str, bytes], keys: KeyRing) -> ReadingBatch | AgentBatch | Rejection:
    """Verify and decode one readings-topic message; never raises on bad input."""
    agent, seq_text, sig = (_header(headers, h) for h in (envelope.AGENT, envelope.SEQ, envelope.SIG))
    if agent is None or seq_text is None or sig is None or not seq_text.isdigit():
        return Rejection("missing_header", f"headers present: {sorted(headers)}")
    agent_id = agent.decode("utf-8", "replace")
    key = keys.get(agent_id)
    if key is None:
        return Rejection("unknown_agent", f"agent {agent_id!r} has no enrolled key")
    if not envelope.verify(key, value, sig):
        return Rejection("bad_signature", f"agent {agent_id!r} seq {seq_text.decode()}: signature does not verify")
    try:
        batch = decode_message(value)
    except UnsupportedSchemaVersion as exc:
        return Rejection("unsupported_version", exc.detail)
    except BatchDecodeError as exc:
        return Rejection("undecodable", f"{exc.reason}: {exc.detail}")
    if batch.agent_id != agent_id or batch.seq != int(seq_text):
        return Rejection("header_mismatch", f"headers say {agent_id!r} seq {int(seq_text)}, "
                                            f"the batch says {batch.agent_id!r} seq {batch.seq}")
    return _as_checked(batch)


def check_messages(items: list[tuple[bytes, dict[str, bytes]]],
                   keys: KeyRing) -> list[ReadingBatch | AgentBatch | Rejection]:
    """:func:`check_message` of each ``(value, headers)``, in order, with the column checks done once for all.

    The result equals ``[check_message(v, h, keys) for v, h in items]``: the same batches and the same
    rejections, reason and detail text. Each message goes through the same checks in the same order, except
    that its readings are checked afterwards together with the other messages' (before the header
    consistency check, as in :func:`check_message`); a batch whose readings fail is decoded again alone,
    which raises the usual error for its rejection detail. Never raises on bad input.
    """
    out: list[ReadingBatch | AgentBatch | Rejection | None] = [None] * len(items)
    decoded: list[tuple[int, AgentBatch, str, bytes]] = []  # (index, batch, agent id, seq header)
    for i, (value, headers) in enumerate(items):
        # -- as check_message, up to the decode --
        agent, seq_text = _header(headers, envelope.AGENT), _header(headers, envelope.SEQ)
        sig = _header(headers, envelope.SIG)
        if agent is None or seq_text is None or sig is None or not seq_text.isdigit():
            out[i] = Rejection("missing_header", f"headers present: {sorted(headers)}")
            continue
        agent_id = agent.decode("utf-8", "replace")
        key = keys.get(agent_id)
        if key is None:
            out[i] = Rejection("unknown_agent", f"agent {agent_id!r} has no enrolled key")
            continue
        if not envelope.verify(key, value, sig):
            out[i] = Rejection("bad_signature",
                               f"agent {agent_id!r} seq {seq_text.decode()}: signature does not verify")
            continue
        try:
            batch = decode_message(value, check_columns=False)
        except UnsupportedSchemaVersion as exc:
            out[i] = Rejection("unsupported_version", exc.detail)
            continue
        except BatchDecodeError as exc:
            out[i] = Rejection("undecodable", f"{exc.reason}: {exc.detail}")
            continue
        decoded.append((i, batch, agent_id, seq_text))
    if not decoded:
        return out  # type: ignore[return-value]  # every entry is set

    # -- the readings of every decoded batch at once; those that fail, decoded again alone for the error --
    for j in _failing_columns([d[1] for d in decoded]):
        i = decoded[j][0]
        try:
            batch = decode_message(items[i][0])
        except UnsupportedSchemaVersion as exc:  # not after a successful decode; here only to mirror check_message
            out[i] = Rejection("unsupported_version", exc.detail)
        except BatchDecodeError as exc:
            out[i] = Rejection("undecodable", f"{exc.reason}: {exc.detail}")
        else:  # not reached unless the two column checks disagree: then the single batch's verdict stands
            decoded[j] = (i, batch, decoded[j][2], decoded[j][3])

    # -- as check_message, after the decode --
    for i, batch, agent_id, seq_text in decoded:
        if out[i] is not None:
            continue
        if batch.agent_id != agent_id or batch.seq != int(seq_text):
            out[i] = Rejection("header_mismatch", f"headers say {agent_id!r} seq {int(seq_text)}, "
                                                  f"the batch says {batch.agent_id!r} seq {batch.seq}")
        else:
            out[i] = _as_checked(batch)
    return out  # type: ignore[return-value]


#: _failing_columns checks about this many readings at a time (as schemas.batch.check_batch_columns: in cache).
_GROUP_READINGS = 65_536


def _failing_columns(batches: list[AgentBatch]) -> list[int]:
    """Indices (ascending) of the messages some of whose readings break the per-reading rules: every section of
    every message checked together (:func:`schemas.batch.check_column_segments`), in groups of messages."""
    failing: list[int] = []
    start = 0
    while start < len(batches):
        stop, size = start + 1, len(batches[start])
        while stop < len(batches) and size + len(batches[stop]) <= _GROUP_READINGS:
            size += len(batches[stop])
            stop += 1
        group = batches[start:stop]
        ends = np.cumsum([len(b) for b in group]) - np.array([len(b) for b in group])  # each message's first reading
        offsets = np.concatenate([np.zeros(1, np.int64)] + [b.offsets[1:] + e for b, e in zip(group, ends.tolist(),
                                                                                                strict=True)])
        owner = np.repeat(np.arange(len(group)), [len(b.channels) for b in group])
        bad = check_column_segments(offsets, [len(c) for b in group for c in b.channels],
                                    *(np.concatenate([getattr(b, name) for b in group])
                                      for name in ("ts_ns", "channel", "value", "flag")))
        failing += sorted({start + int(owner[k]) for k in bad.tolist()})
        start = stop
    return failing


def dead_letter_headers(rejection: Rejection, *, topic: str, partition: int, offset: int,
                        now_s: float | None = None) -> list[tuple[str, bytes]]:
    """Headers added to a dead-lettered message (its value and original headers are kept as they were)."""
    out = [
        ("cems-dlq-reason", rejection.reason.encode()),
        ("cems-dlq-detail", rejection.detail.encode("utf-8", "replace")[:4096]),
        ("cems-dlq-source", f"{topic}/{partition}/{offset}".encode()),
        ("cems-dlq-at", f"{time.time() if now_s is None else now_s:.3f}".encode()),
    ]
    if rejection.source_id is not None:  # one section of an agent batch: the others were absorbed
        out.append(("cems-dlq-section", rejection.source_id.encode()))
    return out
