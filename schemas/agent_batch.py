"""Agent batch (wire format version 3): one message per agent and interval, holding every source's readings.

A gateway used to send one version-1 batch per emission source and interval, so a centre paid its per-message
costs (a Kafka record, a signature, a stream event, a decode) 5-50 times per agent and interval. A version-3 batch
carries all of them in one columnar message, signed once, numbered once. It reuses the version-1 framing, columns and
rules unchanged; only the metadata block differs, listing sections (one per source) instead of one source::

    off  size  field
    0    4     magic        b"CEMB"
    4    2     version      u16, 3
    6    2     reserved     u16, must be 0
    8    4     n            u32, readings of all sections together
    12   4     meta_len     u32, bytes of metadata after the fixed header (padding included)
    16   8     seq          u64, per-agent batch sequence number (one for the whole message)
    24   ...   metadata     agent_id: u16 length + UTF-8; u16 section count S; per section:
                            source_id: u16 length + UTF-8; period_s: u32 (0: samples, else 1-86400);
                            readings: u32; u16 channel count, then per channel id, quantity, unit (u8 length + UTF-8
                            each); zero padding up to a multiple of 8
    .    8n    ts_ns        i64   \\
    .    8n    value        f64    | section k's readings are the k-th run of each column, in section order;
    .    2n    channel      u16    | its channel column indexes section k's own channel table
    .    1n    flag         u8    /
    end  4     crc32        u32, CRC-32 (zlib/ISO-HDLC) of every byte before it

Every section is exactly what a version-1 (``period_s == 0``) or version-2 batch of its source would be, so the
decoder hands the centre ordinary :class:`~schemas.batch.ReadingBatch` objects (zero-copy views, ``version`` 3), all
with the message's agent and sequence number. Rules beyond version 1's: source ids are unique within a message, the
sections' reading counts add up to ``n``, and there may be no section at all (an empty batch keeps the sequence
gap-free). One bad reading refuses the whole message, as in version 1: the agent signed one unit.

:func:`decode_message` reads every version (1 and 2 as an :class:`AgentBatch` of one section), so a consumer has
one type whatever the agent sends; :func:`schemas.batch.decode_batch` refuses version 3 with a message pointing
here.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .batch import (
    _BYTES_PER_READING,
    _CHANNEL,
    _CRC,
    _FIXED,
    _FLAG,
    _MAX_U32,
    _TS,
    _VALUE,
    AGENT_VERSION,
    MAGIC,
    MAX_PERIOD_S,
    ChannelSpec,
    ReadingBatch,
    _as_bytes,
    _channel_table,
    _check_columns,
    _check_frame,
    _check_header,
    _pad8,
    _read_columns,
    _read_fixed,
    _Reader,
    check_column_segments,
    decode_batch,
)
from .errors import BatchDecodeError, BatchError

__all__ = ["AGENT_VERSION", "MAX_SECTIONS", "AgentBatch", "decode_message", "encode_agent_batch"]

#: Most sections (sources) one agent batch holds: the u16 section count.
MAX_SECTIONS = 65_535


@dataclass(frozen=True, eq=False)
class AgentBatch:
    """One agent's readings of one interval: a sequence number and one section (a batch) per source.

    The columns are the message's, every section's readings one after the other (``offsets``); :attr:`sections`
    gives them as :class:`~schemas.batch.ReadingBatch` views. A consumer that handles the whole message at once
    (the stream processor) reads the columns and the section table without building those objects.

    Parameters
    ----------
    agent_id : str
        The sending edge agent.
    seq : int
        Per-agent sequence number of the message, [0, 2**64); every section carries it too.
    source_ids : tuple of str
        The source of each section (unique).
    periods : tuple of int
        Each section's ``period_s`` [s]: 0 for samples, else the averaging period of its means.
    channels : tuple of tuple of ChannelSpec
        Each section's channel table; its readings' ``channel`` index into it.
    offsets : ndarray of int64
        Section ``k`` is readings ``[offsets[k], offsets[k + 1])``; ``offsets[0] == 0``, ``offsets[-1] == n``.
    ts_ns, channel, value, flag : ndarray
        The readings, as in a :class:`~schemas.batch.ReadingBatch` (ns since the epoch, UTC; table index; the
        channel's unit; HJ 212 flag code).
    version : int
        The wire version the message came in (3; 1 or 2 for a single batch read by :func:`decode_message`).
    meta : bytes
        The encoded metadata block (the same for every interval of an agent whose sources send alike: a cache key).
    """

    agent_id: str
    seq: int
    source_ids: tuple[str, ...]
    periods: tuple[int, ...]
    channels: tuple[tuple[ChannelSpec, ...], ...]
    offsets: NDArray[np.int64]
    ts_ns: NDArray[np.int64]
    channel: NDArray[np.uint16]
    value: NDArray[np.float64]
    flag: NDArray[np.uint8]
    version: int = AGENT_VERSION
    meta: bytes = b""

    @classmethod
    def from_sections(cls, *, agent_id: str, seq: int, sections: Iterable[ReadingBatch]) -> AgentBatch:
        """Validated sections (from :meth:`ReadingBatch.from_columns`) under one agent and sequence number;
        raises :class:`~schemas.errors.BatchError` for another agent, a source twice, too many sections."""
        secs = tuple(sections)
        _check_header(agent_id, secs[0].source_id if secs else "-", seq, ())
        if len(secs) > MAX_SECTIONS:
            raise BatchError("bad_metadata", f"{len(secs)} sections; at most {MAX_SECTIONS}")
        seen: set[str] = set()
        for k, s in enumerate(secs):
            if s.agent_id != agent_id:
                raise BatchError("bad_metadata", f"section {k} is agent {s.agent_id!r}'s, not {agent_id!r}'s")
            if s.source_id in seen:
                raise BatchError("bad_metadata", f"source {s.source_id!r} has two sections; one per source")
            seen.add(s.source_id)
        counts = [len(s) for s in secs]
        if sum(counts) > _MAX_U32:
            raise BatchError("bad_column", f"more than {_MAX_U32} readings in one message")
        offsets = np.zeros(len(secs) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        cols: dict[str, Any] = {
            name: np.concatenate([getattr(s, name) for s in secs]).astype(dtype) if secs else np.zeros(0, dtype)
            for name, dtype in _COLUMNS}
        for arr in (offsets, *cols.values()):
            arr.setflags(write=False)
        sources = tuple((s.source_id, s.period_s, n, s.channels) for s, n in zip(secs, counts, strict=True))
        return cls(agent_id, int(seq), tuple(s.source_id for s in secs), tuple(s.period_s for s in secs),
                   tuple(s.channels for s in secs), offsets, **cols, meta=_meta_bytes(agent_id, sources))

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    @functools.cached_property
    def sections(self) -> tuple[ReadingBatch, ...]:
        """Each section as a batch of its source (views of the message's columns; ``version`` as the message's)."""
        bounds = self.offsets.tolist()
        return tuple(
            ReadingBatch(self.agent_id, source_id, self.seq, chans, self.ts_ns[a:b], self.channel[a:b],
                         self.value[a:b], self.flag[a:b], self.version, period_s)
            for source_id, period_s, chans, a, b in zip(self.source_ids, self.periods, self.channels, bounds,
                                                        bounds[1:], strict=False))

    def equals(self, other: AgentBatch) -> bool:
        """Exact equality, NaN equal to NaN (what a round trip must preserve)."""
        return ((self.agent_id, self.seq, len(self.sections)) == (other.agent_id, other.seq, len(other.sections))
                and all(a.equals(b) for a, b in zip(self.sections, other.sections, strict=True)))

    def encode(self) -> bytes:
        return encode_agent_batch(self)


_COLUMNS = (("ts_ns", _TS), ("value", _VALUE), ("channel", _CHANNEL), ("flag", _FLAG))  # wire order


def _single(b: ReadingBatch) -> AgentBatch:
    """A version-1 or -2 batch as an agent batch of one section (the same arrays)."""
    offsets = np.array([0, len(b)], dtype=np.int64)
    offsets.setflags(write=False)
    out = AgentBatch(b.agent_id, b.seq, (b.source_id,), (b.period_s,), (b.channels,), offsets, b.ts_ns, b.channel,
                     b.value, b.flag, b.version)
    out.__dict__["sections"] = (b,)  # the batch itself, not a copy of it
    return out


@functools.lru_cache(maxsize=16_384)
def _meta_bytes(agent_id: str, sections: tuple[tuple[str, int, int, tuple[ChannelSpec, ...]], ...]) -> bytes:
    """The metadata block (padded): the same bytes every interval for an agent whose sources send alike."""
    raw = agent_id.encode("utf-8")
    parts = [struct.pack("<H", len(raw)), raw, struct.pack("<H", len(sections))]
    for source_id, period_s, n, channels in sections:
        raw = source_id.encode("utf-8")
        parts += [struct.pack("<H", len(raw)), raw, struct.pack("<IIH", period_s, n, len(channels))]
        parts += _channel_table(channels)
    meta = b"".join(parts)
    return meta + bytes(_pad8(_FIXED.size + len(meta)))


def encode_agent_batch(batch: AgentBatch) -> bytes:
    """Serialise an agent batch to wire version 3 (module docstring)."""
    counts = np.diff(batch.offsets).tolist()
    meta = _meta_bytes(batch.agent_id, tuple(zip(batch.source_ids, batch.periods, counts, batch.channels,
                                                 strict=True)))
    n = len(batch)
    head = _FIXED.pack(MAGIC, AGENT_VERSION, 0, n, len(meta), batch.seq)
    off = len(head) + len(meta)
    out = bytearray(off + n * _BYTES_PER_READING + _CRC.size)
    out[: len(head)] = head
    out[len(head) : off] = meta
    for name, dtype in _COLUMNS:
        view = np.frombuffer(out, dtype=dtype, count=n, offset=off)
        view[...] = getattr(batch, name)
        off += view.nbytes
    _CRC.pack_into(out, off, zlib.crc32(memoryview(out)[:off]))
    return bytes(out)


_Section = tuple[str, int, int, tuple[ChannelSpec, ...]]  # source id, period_s, readings, channel table


class _Table(NamedTuple):
    """A version-3 metadata block, parsed and validated."""

    agent_id: str
    sections: tuple[_Section, ...]
    source_ids: tuple[str, ...]
    periods: tuple[int, ...]
    channels: tuple[tuple[ChannelSpec, ...], ...]
    offsets: NDArray[np.int64]  # read-only: shared by every message with this block
    n_channels: list[int]


@functools.lru_cache(maxsize=16_384)
def _metadata(meta: bytes) -> _Table:
    """Agent and sections from a version-3 metadata block, validated, and the section table as the decoder hands it
    on; cached on the exact bytes (an agent repeats them every interval), so a message costs no Python per section."""
    r = _Reader(meta, 0, len(meta))
    agent_id = r.text(2, "agent_id")
    sections: list[_Section] = []
    seen: set[str] = set()
    for k in range(r.uint(2, "section count")):
        source_id = r.text(2, f"section {k} source_id")
        period_s = r.uint(4, f"section {k} period_s")
        if period_s > MAX_PERIOD_S:
            raise BatchDecodeError("bad_metadata", f"section {k} period_s is {period_s}; at most {MAX_PERIOD_S}")
        n = r.uint(4, f"section {k} readings")
        channels = tuple(
            ChannelSpec(r.text(1, f"section {k} channel {i} id"), r.text(1, f"section {k} channel {i} quantity"),
                        r.text(1, f"section {k} channel {i} unit"))
            for i in range(r.uint(2, f"section {k} channel count")))
        if source_id in seen:
            raise BatchDecodeError("bad_metadata", f"source {source_id!r} has two sections; one per source")
        seen.add(source_id)
        try:
            _check_header(agent_id, source_id, 0, channels)
        except BatchDecodeError:
            raise
        except BatchError as exc:
            raise BatchDecodeError(exc.reason, f"section {k}: {exc.detail}") from None
        sections.append((source_id, period_s, n, channels))
    if len(meta) - r.pos >= 8 or any(meta[r.pos :]):
        raise BatchDecodeError("bad_metadata", "metadata padding is not 0-7 zero bytes")
    if not sections:  # the agent id is checked with the first section's; an empty batch checks it alone
        try:
            _check_header(agent_id, "-", 0, ())
        except BatchDecodeError:
            raise
        except BatchError as exc:
            raise BatchDecodeError(exc.reason, exc.detail) from None
    offsets = np.zeros(len(sections) + 1, dtype=np.int64)
    np.cumsum([s[2] for s in sections], out=offsets[1:])
    offsets.setflags(write=False)
    return _Table(agent_id, tuple(sections), tuple(s[0] for s in sections), tuple(s[1] for s in sections),
                  tuple(s[3] for s in sections), offsets, [len(s[3]) for s in sections])


def decode_message(data: object, *, check_columns: bool = True) -> AgentBatch:
    """Parse and validate the bytes of any wire version into an :class:`AgentBatch`.

    Versions 1 and 2 give one section (:func:`~schemas.batch.decode_batch`, with its ``version``); version 3 its
    sections in wire order. Raises :class:`~schemas.errors.BatchDecodeError` (and nothing else) for anything that
    is not a complete, valid batch, never a partial result. ``check_columns=False`` skips the per-reading rules, for
    a caller that checks many messages' sections at once (:func:`schemas.batch.check_batch_columns`).
    """
    data = _as_bytes(data)
    h = _read_fixed(data[: _FIXED.size + _CRC.size])
    if h.version != AGENT_VERSION:
        return _single(decode_batch(data, check_columns=check_columns))
    n = h.n
    cols_at = _check_frame(data, h)
    meta = data[_FIXED.size : cols_at]
    table = _metadata(meta)
    offsets = table.offsets
    if int(offsets[-1]) != n:
        raise BatchDecodeError("bad_metadata", f"the sections hold {int(offsets[-1])} readings, the header says {n}")
    ts_ns, value, channel, flag = _read_columns(data, n, cols_at)
    if check_columns and n:
        bad = check_column_segments(offsets, table.n_channels, ts_ns, channel, value, flag)
        if bad.size:  # the first failing section, checked alone for the reason and the reading
            k = int(bad[0])
            a, b = int(offsets[k]), int(offsets[k + 1])
            try:
                _check_columns(table.n_channels[k], ts_ns[a:b], channel[a:b], value[a:b], flag[a:b])
            except BatchError as exc:
                raise BatchDecodeError(exc.reason, f"section {k} ({table.source_ids[k]!r}): {exc.detail}") from None
    return AgentBatch(table.agent_id, h.seq, table.source_ids, table.periods, table.channels, offsets, ts_ns, channel,
                      value, flag, AGENT_VERSION, meta)
