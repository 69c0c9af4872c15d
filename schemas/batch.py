"""Reading-batch wire format: a columnar, versioned, checksummed batch of CEMS readings.

One batch holds the readings one agent took from one emission source over a short interval. It is
columnar so both ends move whole numpy arrays: encoding and decoding cost a few memory copies and one
checksum pass, never a Python loop per reading.

Wire layout, version 1 (every integer little-endian; offsets in bytes)::

    off  size  field
    0    4     magic        b"CEMB"
    4    2     version      u16, 1
    6    2     reserved     u16, must be 0
    8    4     n            u32, number of readings
    12   4     meta_len     u32, bytes of metadata after the fixed header (padding included)
    16   8     seq          u64, per-agent batch sequence number
    24   ...   metadata     agent_id, source_id: u16 length + UTF-8 each;
                            u16 channel count, then per channel:
                            id, quantity, unit: u8 length + UTF-8 each;
                            zero padding up to a multiple of 8
    .    8n    ts_ns        i64, nanoseconds since 1970-01-01T00:00:00Z (UTC, no leap seconds)
    .    8n    value        f64, in the channel's unit; NaN = no value
    .    2n    channel      u16, index into the channel table
    .    1n    flag         u8, :class:`schemas.quantities.Flag` code (HJ 212-2017 Table 8)
    end  4     crc32        u32, CRC-32 (zlib/ISO-HDLC) of every byte before it

Columns start 8-byte aligned, so decoding is zero-copy views of the input. The total length follows
from the header, so truncation and trailing garbage are caught before the checksum is computed.

Contract enforced on both encode and decode (a batch that breaks it is rejected whole):

* ids are 1-128 bytes of printable UTF-8; channel ids are unique within a batch; quantity codes are
  1-16 characters ``[A-Za-z0-9_-]``; units 1-32 bytes of printable UTF-8;
* every channel index points into the channel table; every flag is a known code;
* timestamps lie in [2000-01-01, 2200-01-01) UTC, which also catches seconds or milliseconds
  mistaken for nanoseconds;
* values are finite or NaN; a normal (``N``) reading must be finite.

Version 2 (HJ 212 period data) is version 1 with one more metadata field, ``period_s`` (u32), right after
``source_id``: every reading of the batch is then the mean over ``[ts, ts + period_s)`` that a datalogger computed
(a 2051 minute average: 60; 2061 hourly: 3600; 2031 daily: 86400), not an instantaneous sample. ``period_s`` is
1-86400. A batch of samples (``period_s == 0``) is written as version 1, byte for byte as before, so centres and
tools that read only version 1 keep reading what agents send them; only period batches need a version-2 reader.

Version 3 (:mod:`schemas.agent_batch`) is one message per agent and interval holding every source's readings as
sections of the same columns; :func:`decode_batch` refuses it (``unsupported_version``: it is not one batch) and
:func:`schemas.agent_batch.decode_message` reads all three.

Versioning: the decoder keeps reading every version it ever wrote, so old agents keep working; a
newer version raises :class:`~schemas.errors.UnsupportedSchemaVersion` for ingest to dead-letter.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .errors import BatchDecodeError, BatchError, UnsupportedSchemaVersion
from .quantities import FLAG_IS_VALID_CODE, Flag

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "AGENT_VERSION",
    "MAGIC",
    "MAX_PERIOD_S",
    "PERIOD_VERSION",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "ChannelSpec",
    "ReadingBatch",
    "check_batch_columns",
    "check_column_segments",
    "decode_batch",
    "encode_batch",
    "encode_columns",
    "peek_header",
]

MAGIC = b"CEMB"
SCHEMA_VERSION = 1  # what a batch of samples is written as
PERIOD_VERSION = 2  # a batch of period means (period_s > 0): version 1 + period_s in the metadata
AGENT_VERSION = 3  # an agent batch: every source of one agent and interval in one message (schemas.agent_batch)
SUPPORTED_VERSIONS = (1, 2, 3)
_BATCH_VERSIONS = (1, 2)  # what decode_batch returns as one ReadingBatch
#: Longest averaging period a batch may declare [s]: a day (HJ 212 2031 daily data).
MAX_PERIOD_S = 86_400

_FIXED = struct.Struct("<4sHHIIQ")  # magic, version, reserved, n, meta_len, seq
_CRC = struct.Struct("<I")
_BYTES_PER_READING = 8 + 8 + 2 + 1
_MAX_U32 = 2**32 - 1

#: 2000-01-01T00:00:00Z and 2200-01-01T00:00:00Z in ns.
TS_MIN_NS = 946_684_800 * 10**9
TS_MAX_NS = 7_258_118_400 * 10**9

_QUANTITY_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")

# Column dtypes in wire order, parsed once (np.frombuffer would parse a dtype string on every call).
_TS, _VALUE, _CHANNEL, _FLAG = np.dtype("<i8"), np.dtype("<f8"), np.dtype("<u2"), np.dtype("u1")
_FLAG_N = int(Flag.N)  # an IntEnum attribute lookup is a Python call; this runs per batch
#: check_batch_columns concatenates about this many readings at a time (about 1.2 MiB of columns): it stays
#: in cache, and a chunk of huge batches does not double its memory; all of a chunk at once was slower.
_GROUP_READINGS = 65_536


class ChannelSpec(NamedTuple):
    """One entry of a batch's channel table: what the values of a channel index mean."""

    id: str  # the channel id of the site model, e.g. "co2_dry"
    quantity: str  # HJ 212 factor code or project extension, e.g. "a05001"
    unit: str  # canonical unit, e.g. "mg/m3" (schemas.quantities.UNITS)


@dataclass(frozen=True, eq=False)
class ReadingBatch:
    """A validated batch of readings. Build with :meth:`from_columns`; columns are read-only arrays.

    Parameters
    ----------
    agent_id, source_id : str
        The sending edge agent and the emission source (stack) the readings belong to.
    seq : int
        Per-agent batch sequence number, [0, 2**64). The centre deduplicates on (agent_id, seq).
    channels : tuple of ChannelSpec
        Channel table; ``channel`` values index into it.
    ts_ns : ndarray of int64
        Reading times [ns since Unix epoch, UTC].
    channel : ndarray of uint16
        Channel index of each reading.
    value : ndarray of float64
        Reading values [the channel's unit]; NaN where there is no value.
    flag : ndarray of uint8
        :class:`~schemas.quantities.Flag` code of each reading.
    period_s : int
        0: every reading is an instantaneous sample. 1-86400: every reading is a mean over
        ``[ts, ts + period_s)`` computed upstream (HJ 212 minute, hour, day data) [s]; such a value is one
        aggregate, never a sample (version 2 on the wire).
    """

    agent_id: str
    source_id: str
    seq: int
    channels: tuple[ChannelSpec, ...]
    ts_ns: NDArray[np.int64]
    channel: NDArray[np.uint16]
    value: NDArray[np.float64]
    flag: NDArray[np.uint8]
    version: int = SCHEMA_VERSION
    period_s: int = 0

    @classmethod
    def from_columns(
        cls,
        *,
        agent_id: str,
        source_id: str,
        seq: int,
        channels: Iterable[Iterable[str]],
        ts_ns: ArrayLike,
        channel: ArrayLike,
        value: ArrayLike,
        flag: ArrayLike,
        period_s: int = 0,
    ) -> ReadingBatch:
        """Validate and coerce columns (any array-likes) into a batch; raises :class:`BatchError`."""
        try:
            if any(isinstance(c, (str, bytes)) for c in channels):
                raise TypeError("got a string")  # "abc" would otherwise unpack into three fields
            chans = tuple(ChannelSpec(*c) for c in channels)
        except TypeError as exc:
            raise BatchError("bad_metadata", f"channel table entries must be (id, quantity, unit): {exc}") from None
        cols = {
            "ts_ns": _as_column(ts_ns, np.int64, "ts_ns"),
            "channel": _as_column(channel, np.uint16, "channel"),
            "value": _as_column(value, np.float64, "value"),
            "flag": _as_column(flag, np.uint8, "flag"),
        }
        _check_header(agent_id, source_id, seq, chans)
        _check_period(period_s)
        _check_columns(len(chans), **cols)
        for arr in cols.values():
            arr.setflags(write=False)
        period_s = int(period_s)
        return cls(agent_id, source_id, int(seq), chans, **cols,
                   version=PERIOD_VERSION if period_s else SCHEMA_VERSION, period_s=period_s)

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    @property
    def timestamps(self) -> NDArray[np.datetime64]:
        """Reading times as ``datetime64[ns]`` (UTC), without copying."""
        return self.ts_ns.view("datetime64[ns]")

    def equals(self, other: ReadingBatch) -> bool:
        """Exact equality, NaN equal to NaN (what a round trip must preserve)."""
        return (
            (self.agent_id, self.source_id, self.seq, self.channels, self.period_s)
            == (other.agent_id, other.source_id, other.seq, other.channels, other.period_s)
            and np.array_equal(self.ts_ns, other.ts_ns)
            and np.array_equal(self.channel, other.channel)
            and np.array_equal(self.flag, other.flag)
            and np.array_equal(self.value.view(np.uint64), other.value.view(np.uint64))
        )

    def encode(self) -> bytes:
        return encode_batch(self)


def _as_column(data: ArrayLike, dtype: DTypeLike, name: str) -> NDArray[Any]:
    """Coerce to a 1-D contiguous column of ``dtype`` without silent wrap-around or truncation."""
    try:
        arr = np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise BatchError("bad_column", f"{name}: not array-like ({exc})") from None
    if arr.ndim != 1:
        raise BatchError("bad_column", f"{name}: expected a 1-D column, got shape {arr.shape}")
    target = np.dtype(dtype)
    if arr.dtype == target:
        return np.array(arr, dtype=target, copy=True)  # own the memory: callers may mutate theirs
    if target.kind in "iu":
        if arr.size and arr.dtype.kind not in "iub":
            raise BatchError("bad_column", f"{name}: expected integers, got dtype {arr.dtype}")
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise BatchError("bad_column", f"{name}: values outside the {target} range")
    elif arr.size and arr.dtype.kind not in "iuf":
        raise BatchError("bad_column", f"{name}: expected numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=target)


def _check_text(value: object, what: str, max_bytes: int) -> None:
    if not isinstance(value, str):
        raise BatchError("bad_metadata", f"{what} must be a string, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BatchError("bad_metadata", f"{what} {value!r} is not valid Unicode") from None
    if not 1 <= size <= max_bytes:
        raise BatchError("bad_metadata", f"{what} must be 1-{max_bytes} bytes of UTF-8, got {size}")
    if not value.isprintable():
        raise BatchError("bad_metadata", f"{what} {value!r} contains control or unprintable characters")


def _check_header(agent_id: object, source_id: object, seq: object, channels: tuple[ChannelSpec, ...]) -> None:
    try:  # every batch of a source repeats its names: checked once (a refusal is never cached)
        _check_names(agent_id, source_id, channels)
    except TypeError:  # something unhashable: checked without the cache, which says what is wrong
        _check_names.__wrapped__(agent_id, source_id, channels)
    if not isinstance(seq, (int, np.integer)) or isinstance(seq, bool) or not 0 <= int(seq) < 2**64:
        raise BatchError("bad_metadata", f"seq must be an integer in [0, 2**64), got {seq!r}")


@functools.lru_cache(maxsize=65_536)
def _check_names(agent_id: object, source_id: object, channels: tuple[ChannelSpec, ...]) -> None:
    _check_text(agent_id, "agent_id", 128)
    _check_text(source_id, "source_id", 128)
    if len(channels) > 65535:
        raise BatchError("bad_metadata", f"{len(channels)} channels; at most 65535")
    seen: set[str] = set()
    for i, c in enumerate(channels):
        _check_text(c.id, f"channel {i} id", 64)
        if not isinstance(c.quantity, str) or not _QUANTITY_RE.fullmatch(c.quantity):
            raise BatchError("bad_metadata", f"channel {i} quantity {c.quantity!r} is not 1-16 of [A-Za-z0-9_-]")
        _check_text(c.unit, f"channel {i} unit", 32)
        if c.id in seen:
            raise BatchError("bad_metadata", f"channel id {c.id!r} appears twice in the channel table")
        seen.add(c.id)


def _check_period(period_s: object) -> None:
    if not isinstance(period_s, (int, np.integer)) or isinstance(period_s, bool) or \
            not 0 <= int(period_s) <= MAX_PERIOD_S:
        raise BatchError("bad_metadata", f"period_s must be a whole number of seconds in [0, {MAX_PERIOD_S}] "
                                         f"(0: samples), got {period_s!r}")


def _check_columns(n_channels: int, ts_ns: NDArray[np.int64], channel: NDArray[np.uint16], value: NDArray[np.float64],
                   flag: NDArray[np.uint8]) -> None:
    """The per-reading rules, each one vectorised pass over a column."""
    n = ts_ns.shape[0]
    if not channel.shape[0] == value.shape[0] == flag.shape[0] == n:
        raise BatchError(
            "bad_column",
            f"column lengths differ: ts_ns {n}, channel {channel.shape[0]}, value {value.shape[0]}, "
            f"flag {flag.shape[0]}",
        )
    if n > _MAX_U32:
        raise BatchError("bad_column", f"{n} readings; at most {_MAX_U32} per batch")
    if n == 0:
        return
    bad = (ts_ns < TS_MIN_NS) | (ts_ns >= TS_MAX_NS)
    if bad.any():
        i = int(np.argmax(bad))
        raise BatchError(
            "bad_timestamp",
            f"reading {i}: ts_ns {int(ts_ns[i])} is outside [2000-01-01, 2200-01-01) UTC "
            "(seconds or milliseconds instead of nanoseconds?)",
        )
    cmax = int(channel.max())
    if cmax >= n_channels:
        i = int(np.argmax(channel >= n_channels))
        raise BatchError("bad_channel_index",
                         f"reading {i}: channel index {cmax} but the table has {n_channels} channels")
    known = FLAG_IS_VALID_CODE[flag]
    if not known.all():
        i = int(np.argmin(known))
        raise BatchError("bad_flag", f"reading {i}: flag code {int(flag[i])} is not an HJ 212 flag (0-{len(Flag) - 1})")
    if np.isinf(value).any():
        i = int(np.argmax(np.isinf(value)))
        raise BatchError("bad_value", f"reading {i}: value is infinite; send NaN with a non-normal flag instead")
    nan_normal = np.isnan(value) & (flag == _FLAG_N)
    if nan_normal.any():
        i = int(np.argmax(nan_normal))
        raise BatchError("bad_value", f"reading {i}: value is NaN but the flag is N (normal)")


def check_column_segments(offsets: ArrayLike, n_channels: ArrayLike, ts_ns: NDArray[np.int64],
                          channel: NDArray[np.uint16], value: NDArray[np.float64],
                          flag: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Which of many batches break the per-reading rules, checked over their concatenated columns at once.

    Batch ``k`` is the segment ``[offsets[k], offsets[k + 1])`` of each of the four concatenated columns
    (``offsets``: ``K + 1`` non-decreasing integers from 0 to the column length) and has
    ``n_channels[k]`` channels. Returns the sorted indices ``k`` (int64) of the batches that
    ``_check_columns`` (what :meth:`ReadingBatch.from_columns` and :func:`decode_batch` apply per batch)
    rejects: the same conditions, a handful of vectorised passes for all of them instead of per batch.
    It says only *whether* a batch fails; for the reason and the offending reading, check that batch
    alone (e.g. :func:`decode_batch` of its bytes), which raises the usual error.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n_channels = np.asarray(n_channels, dtype=np.int64)
    k = offsets.shape[0] - 1
    n = ts_ns.shape[0]
    if k < 0 or n_channels.shape != (k,):
        raise ValueError(f"{offsets.shape[0]} offsets for {n_channels.shape} channel counts; need K + 1 and K")
    if not channel.shape[0] == value.shape[0] == flag.shape[0] == n or offsets[0] != 0 or offsets[-1] != n:
        raise ValueError(f"offsets span [{offsets[0]}, {offsets[-1]}) of columns of lengths "
                         f"{n}, {channel.shape[0]}, {value.shape[0]}, {flag.shape[0]}")
    lengths = np.diff(offsets)
    if (lengths < 0).any():
        raise ValueError("offsets decrease")
    too_long = np.flatnonzero(lengths > _MAX_U32)  # _check_columns' "at most 2**32 - 1 readings"
    if n == 0:
        return too_long
    bad = (ts_ns < TS_MIN_NS) | (ts_ns >= TS_MAX_NS)
    bad |= channel >= np.repeat(n_channels, lengths)  # any index >= the table size <=> the max is
    bad |= ~FLAG_IS_VALID_CODE[flag]
    nonfinite = ~np.isfinite(value)  # inf (any flag) and NaN with flag N; NaN with another flag is fine
    if nonfinite.any():
        bad |= nonfinite & (np.isinf(value) | (flag == _FLAG_N))
    readings = np.flatnonzero(bad)
    if not readings.size and not too_long.size:
        return too_long
    failing = np.searchsorted(offsets, readings, side="right") - 1  # empty segments share an offset: take the last
    return np.union1d(failing, too_long).astype(np.int64)


def check_batch_columns(batches: Sequence[ReadingBatch]) -> list[int]:
    """Indices (ascending) of the batches whose columns break the per-reading rules, for many batches at once.

    The same verdict as ``_check_columns`` per batch (the rules :meth:`ReadingBatch.from_columns` and
    :func:`decode_batch` apply), in a few vectorised passes over the concatenated columns of groups of batches
    (:func:`check_column_segments`) instead of a dozen numpy calls per batch. Meant for batches decoded with
    ``decode_batch(data, check_columns=False)``: those not listed are exactly the batches ``decode_batch(data)``
    returns; for the error of one that is listed, decode it again with the checks. Columns must have the wire
    dtypes (int64, uint16, float64, uint8), as every batch from ``from_columns`` or ``decode_batch`` has.
    """
    failing, kept, lengths = [], [], []
    for k, b in enumerate(batches):
        n = b.ts_ns.shape[0]
        if b.channel.shape[0] == b.value.shape[0] == b.flag.shape[0] == n:
            kept.append(k)
            lengths.append(n)
        else:  # "column lengths differ": never from decode_batch
            failing.append(k)
    ends = list(accumulate(lengths))
    start = 0
    while start < len(kept):
        base = ends[start - 1] if start else 0
        stop = max(bisect_right(ends, base + _GROUP_READINGS, lo=start), start + 1)
        group = [batches[k] for k in kept[start:stop]]
        offsets = np.zeros(len(group) + 1, dtype=np.int64)
        offsets[1:] = ends[start:stop]
        offsets[1:] -= base
        bad = check_column_segments(
            offsets, [len(b.channels) for b in group], np.concatenate([b.ts_ns for b in group]),
            np.concatenate([b.channel for b in group]), np.concatenate([b.value for b in group]),
            np.concatenate([b.flag for b in group]))
        failing += [kept[start + j] for j in bad.tolist()]
        start = stop
    return sorted(failing)


def _pad8(n: int) -> int:
    return -n % 8


def _encode_meta(batch: ReadingBatch) -> bytes:
    return _meta_bytes(batch.agent_id, batch.source_id, batch.period_s, batch.channels)


@functools.lru_cache(maxsize=65_536)
def _meta_bytes(agent_id: str, source_id: str, period_s: int, channels: tuple[ChannelSpec, ...]) -> bytes:
    """The metadata block (padded): the same bytes for every batch of a source, so built once."""
    parts = []
    for text in (agent_id, source_id):
        raw = text.encode("utf-8")
        parts += [struct.pack("<H", len(raw)), raw]
    if period_s:  # version 2
        parts.append(struct.pack("<I", period_s))
    parts.append(struct.pack("<H", len(channels)))
    parts += _channel_table(channels)
    meta = b"".join(parts)
    return meta + bytes(_pad8(_FIXED.size + len(meta)))


def _channel_table(channels: tuple[ChannelSpec, ...]) -> list[bytes]:
    """A channel table's entries as on the wire (id, quantity, unit: each a u8 length and UTF-8), shared with the
    sections of an agent batch (schemas/agent_batch.py)."""
    parts: list[bytes] = []
    for c in channels:
        for text in c:
            raw = text.encode("utf-8")
            parts += [struct.pack("<B", len(raw)), raw]
    return parts


def encode_batch(batch: ReadingBatch) -> bytes:
    """Serialise a batch to the wire format: version 1 for samples, 2 for period means (module docstring)."""
    meta = _encode_meta(batch)
    n = len(batch)
    head = _FIXED.pack(MAGIC, PERIOD_VERSION if batch.period_s else SCHEMA_VERSION, 0, n, len(meta), batch.seq)
    body_len = len(head) + len(meta) + n * _BYTES_PER_READING
    out = bytearray(body_len + _CRC.size)
    out[: len(head)] = head
    off = len(head)
    out[off : off + len(meta)] = meta
    off += len(meta)
    for col, dtype in ((batch.ts_ns, "<i8"), (batch.value, "<f8"), (batch.channel, "<u2"), (batch.flag, "u1")):
        view = np.frombuffer(out, dtype=dtype, count=n, offset=off)
        view[...] = col
        off += view.nbytes
    _CRC.pack_into(out, off, zlib.crc32(memoryview(out)[:off]))
    return bytes(out)



# --- a handful of readings, without numpy --------------------------------------------------------------------------

#: Most readings :func:`encode_columns` writes without numpy: an HJ 212 upload holds 10-30. Past this, numpy's
#: fixed cost per call is small next to its per-reading speed.
SMALL_BATCH = 64
_VALID_FLAGS = frozenset(f.value for f in Flag)
_INT_TYPES = frozenset((int, Flag))  # what np.asarray turns into int64 exactly, as struct does
_FLOAT_TYPES = frozenset((float,))


@functools.lru_cache(maxsize=SMALL_BATCH + 1)
def _columns_struct(n: int) -> struct.Struct:
    """The four columns of ``n`` readings, in wire order (no padding between them: 8n + 8n + 2n + 1n bytes)."""
    return struct.Struct(f"<{n}q{n}d{n}H{n}B")


def encode_columns(*, agent_id: str, source_id: str, seq: int, channels: tuple[ChannelSpec, ...],
                   ts_ns: Sequence[int], channel: Sequence[int], value: Sequence[float], flag: Sequence[int],
                   period_s: int = 0) -> bytes:
    """``ReadingBatch.from_columns(...).encode()`` of the same arguments, byte for byte, and the same
    :class:`BatchError` for columns that break the contract; faster for a handful of readings.

    Building a batch costs a dozen numpy calls (four columns coerced and copied, each rule one pass), about 80 µs
    for the ten readings of an HJ 212 upload, which a receiver pays per frame. Here a small batch given as Python
    lists (ints, floats) is checked with a few C-level passes (``min``, ``max``, set inclusion, one ``sum`` that
    is NaN only when a value is) and packed with one :class:`struct.Struct`. It never raises an error of its own:
    whatever it does not take for granted (more than :data:`SMALL_BATCH` readings, other types than ``int`` and
    ``float``, any rule broken, a name the cache has not checked) goes through :meth:`ReadingBatch.from_columns`,
    which accepts or refuses it. ``tests/unit/test_batch_fastpath.py`` holds the two equal (hypothesis).
    """
    n = len(ts_ns)
    if _small_columns_ok(agent_id, source_id, seq, channels, ts_ns, channel, value, flag, period_s, n):
        meta = _checked_meta(agent_id, source_id, period_s, channels)
        head = _FIXED.pack(MAGIC, PERIOD_VERSION if period_s else SCHEMA_VERSION, 0, n, len(meta), seq)
        body = b"".join((head, meta, _columns_struct(n).pack(*ts_ns, *value, *channel, *flag)))
        return body + _CRC.pack(zlib.crc32(body))
    return ReadingBatch.from_columns(agent_id=agent_id, source_id=source_id, seq=seq, channels=channels, ts_ns=ts_ns,
                                     channel=channel, value=value, flag=flag, period_s=period_s).encode()


def _small_columns_ok(agent_id: object, source_id: object, seq: object, channels: object, ts_ns: Sequence[int],
                      channel: Sequence[int], value: Sequence[float], flag: Sequence[int], period_s: object,
                      n: int) -> bool:
    """Whether :func:`encode_columns` may pack these columns itself: every rule of ``from_columns`` holds, and
    the types are those whose bytes ``struct`` and numpy write alike. False is no verdict, only "ask numpy"."""
    if not (type(ts_ns) is type(channel) is type(value) is type(flag) is list) or not n <= SMALL_BATCH \
            or not len(channel) == len(value) == len(flag) == n:
        return False
    if type(seq) is not int or not 0 <= seq < 2**64 or type(period_s) is not int or not 0 <= period_s <= MAX_PERIOD_S:
        return False
    if not _names_ok(agent_id, source_id, period_s, channels):
        return False
    if n == 0:
        return True
    if not (set(map(type, ts_ns)) <= _INT_TYPES and set(map(type, channel)) <= _INT_TYPES
            and set(map(type, flag)) <= _INT_TYPES and set(map(type, value)) <= _FLOAT_TYPES):
        return False
    if not (min(ts_ns) >= TS_MIN_NS and max(ts_ns) < TS_MAX_NS and min(channel) >= 0
            and max(channel) < len(cast("tuple[ChannelSpec, ...]", channels))
            and set(flag) <= _VALID_FLAGS):
        return False
    total = sum(value)  # NaN if a value is NaN, or infinite (inf - inf is NaN too): then look closer
    if total != total or total in (_INF, _NINF):
        if _INF in value or _NINF in value:
            return False
        if any(v != v and f == _FLAG_N for v, f in zip(value, flag, strict=True)):
            return False
    return True


_INF, _NINF = float("inf"), float("-inf")

#: (agent id, source id, period, id of the channel table) -> (that table, its metadata block), for names checked
#: good: a receiver passes the same channel tuple with every upload of a source, and hashing a table of ten
#: ChannelSpec tuples for the lru_caches (their hashes are not kept) cost about 4 of encode_columns' 6 µs. The
#: table is held in the value, so its id cannot be reused while the entry lives; a hit needs that very object.
_CHECKED: dict[tuple[object, object, int, int], tuple[tuple[ChannelSpec, ...], bytes]] = {}


def _names_ok(agent_id: object, source_id: object, period_s: int, channels: object) -> bool:
    """Whether the names and the channel table are valid (remembered for the table object once checked)."""
    try:
        hit = _CHECKED.get((agent_id, source_id, period_s, id(channels)))
    except TypeError:  # an unhashable name: from_columns says what is wrong
        return False
    if hit is not None and hit[0] is channels:
        return True
    if type(channels) is not tuple or any(type(c) is not ChannelSpec for c in channels):
        return False
    try:
        _check_names(agent_id, source_id, channels)
    except (BatchError, TypeError):
        return False
    if len(_CHECKED) >= 65_536:
        _CHECKED.clear()
    _CHECKED[(agent_id, source_id, period_s, id(channels))] = (
        channels, _meta_bytes(cast("str", agent_id), cast("str", source_id), period_s, channels))
    return True


def _checked_meta(agent_id: str, source_id: str, period_s: int, channels: tuple[ChannelSpec, ...]) -> bytes:
    """The metadata block of names :func:`_names_ok` accepted."""
    return _CHECKED[(agent_id, source_id, period_s, id(channels))][1]


class _Header(NamedTuple):
    version: int
    n: int
    meta_len: int
    seq: int


def _as_bytes(data: object) -> bytes:
    """The bytes of any buffer (a Kafka record's value may be a memoryview); anything else is ``bad_input``."""
    if isinstance(data, bytes):
        return data
    try:
        return memoryview(cast("Buffer", data)).tobytes()  # not bytes(data): bytes(5) would be five zero bytes
    except TypeError:
        raise BatchDecodeError("bad_input", f"expected bytes, got {type(data).__name__}") from None


def _check_frame(data: bytes, h: _Header) -> int:
    """The length the fixed header announces and the CRC-32 over everything before it, for every wire version;
    returns where the columns start."""
    cols_at = _FIXED.size + h.meta_len
    expected = cols_at + h.n * _BYTES_PER_READING + _CRC.size
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "trailing_bytes"
        raise BatchDecodeError(kind, f"header announces {h.n} readings in {expected} bytes, got {len(data)} bytes")
    body = memoryview(data)[: -_CRC.size]
    (stored,) = _CRC.unpack_from(data, len(body))
    if zlib.crc32(body) != stored:
        raise BatchDecodeError("checksum", "CRC-32 mismatch: the batch was corrupted in transit or storage")
    return cols_at


def _read_columns(data: bytes, n: int, cols_at: int) -> tuple[NDArray[np.int64], NDArray[np.float64],
                                                             NDArray[np.uint16], NDArray[np.uint8]]:
    """The four reading columns as read-only views of the message (ts_ns, value, channel, flag: wire order)."""
    return (np.frombuffer(data, _TS, n, cols_at), np.frombuffer(data, _VALUE, n, cols_at + 8 * n),
            np.frombuffer(data, _CHANNEL, n, cols_at + 16 * n), np.frombuffer(data, _FLAG, n, cols_at + 18 * n))


def _read_fixed(buf: bytes) -> _Header:
    if buf[:4] != MAGIC[: len(buf)]:  # say "not a batch" before "too short" when both are true
        raise BatchDecodeError("bad_magic", f"starts with {buf[:4]!r}, not {MAGIC!r}: not a CEMS reading batch")
    if len(buf) < _FIXED.size + _CRC.size:
        raise BatchDecodeError("truncated", f"{len(buf)} bytes; a batch has at least {_FIXED.size + _CRC.size}")
    _, version, reserved, n, meta_len, seq = _FIXED.unpack_from(buf)
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedSchemaVersion(version, SUPPORTED_VERSIONS)
    if reserved != 0:
        raise BatchDecodeError("bad_header", f"reserved header field is {reserved}, must be 0")
    if meta_len % 8 != (-_FIXED.size) % 8:
        raise BatchDecodeError("bad_header", f"metadata length {meta_len} breaks 8-byte column alignment")
    return _Header(version, n, meta_len, seq)


def peek_header(data: bytes) -> tuple[int, int]:
    """Return (schema version, seq) after checking only the fixed header: cheap routing and dedup.

    Raises :class:`~schemas.errors.BatchDecodeError` like :func:`decode_batch`.
    """
    try:
        head = memoryview(data)[: _FIXED.size + _CRC.size].tobytes()
    except TypeError:
        raise BatchDecodeError("bad_input", f"expected bytes, got {type(data).__name__}") from None
    h = _read_fixed(head)
    return h.version, h.seq


class _Reader:
    """Bounds-checked cursor over the metadata block; every overrun is a BatchDecodeError."""

    def __init__(self, buf: bytes, start: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, start, end

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > self.end:
            raise BatchDecodeError("bad_metadata", f"metadata ends inside {what}")
        out = self.buf[self.pos : self.pos + size]
        self.pos += size
        return out

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "little")

    def text(self, len_size: int, what: str) -> str:
        raw = self.take(self.uint(len_size, f"{what} length"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BatchDecodeError("bad_metadata", f"{what} is not valid UTF-8") from None


@functools.lru_cache(maxsize=65_536)
def _metadata(meta: bytes, version: int = SCHEMA_VERSION) -> tuple[str, str, int, tuple[ChannelSpec, ...]]:
    """Agent, source, period and channel table from the metadata block, validated. Cached on the exact bytes:
    every batch of a source repeats them, and parsing them cost more than the columns for a 5-second batch."""
    r = _Reader(meta, 0, len(meta))
    agent_id = r.text(2, "agent_id")
    source_id = r.text(2, "source_id")
    period_s = r.uint(4, "period_s") if version == PERIOD_VERSION else 0
    if version == PERIOD_VERSION and not 1 <= period_s <= MAX_PERIOD_S:
        raise BatchDecodeError("bad_metadata", f"version 2 period_s is {period_s}; it must be 1-{MAX_PERIOD_S}")
    channels = tuple(
        ChannelSpec(r.text(1, f"channel {i} id"), r.text(1, f"channel {i} quantity"), r.text(1, f"channel {i} unit"))
        for i in range(r.uint(2, "channel count"))
    )
    if len(meta) - r.pos >= 8 or any(meta[r.pos :]):
        raise BatchDecodeError("bad_metadata", "metadata padding is not 0-7 zero bytes")
    try:
        _check_header(agent_id, source_id, 0, channels)  # seq comes from the fixed header: always in range
    except BatchDecodeError:
        raise
    except BatchError as exc:
        raise BatchDecodeError(exc.reason, exc.detail) from None
    return agent_id, source_id, period_s, channels


def decode_batch(data: object, *, check_columns: bool = True) -> ReadingBatch:
    """Parse and validate wire bytes into a :class:`ReadingBatch`.

    Raises :class:`~schemas.errors.BatchDecodeError` (and nothing else) for any input that is not a
    complete, valid batch; there is no partial result. Columns are read-only zero-copy views of
    ``data`` (copied once first if ``data`` is mutable).

    ``check_columns=False`` skips the per-reading rules (the last checks, after the framing, the checksum and
    the metadata): for a caller that checks the columns of many batches at once with
    :func:`check_batch_columns` and drops (or re-decodes, for the error) those that fail. Nothing else
    changes: the same errors for everything before, and the same batch when the columns are valid.
    """
    data = _as_bytes(data)
    h = _read_fixed(data)
    if h.version not in _BATCH_VERSIONS:  # an agent batch of several sources: schemas.agent_batch.decode_message
        raise UnsupportedSchemaVersion(h.version, _BATCH_VERSIONS)
    n = h.n
    cols_at = _check_frame(data, h)

    agent_id, source_id, period_s, channels = _metadata(data[_FIXED.size : cols_at], h.version)

    ts_ns, value, channel, flag = _read_columns(data, n, cols_at)
    if check_columns:
        try:
            _check_columns(len(channels), ts_ns, channel, value, flag)
        except BatchDecodeError:
            raise
        except BatchError as exc:
            raise BatchDecodeError(exc.reason, exc.detail) from None
    return ReadingBatch(agent_id, source_id, h.seq, channels, ts_ns, channel, value, flag, h.version, period_s)
