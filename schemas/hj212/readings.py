"""HJ 212 uploads -> reading-batch columns: the one conversion both receivers use (the gateway's and the centre's).

A data upload (2011 real-time, 2051 minute, 2061 hour, 2031 day) becomes columns of one source (its channel table,
times, values, flags) and the period its values cover: 0 for 2011 (instantaneous samples, HJ212-T4), MinInterval for
2051, an hour for 2061, a day for 2031. The value of a 2011 record is its ``Rtd``; of the others their ``Avg``
(HJ212-T4). ``Zs*`` values (converted to a reference O2) and ``Min``/``Max``/``Cou`` are not readings of the channel
and are left out. Times are the records' ``DataTime`` (the acquisition instant for 2011, the interval start for the
others), already UTC from the codec.

Flags: the record's letter through the codec's flag table; a value sent without any flag counts as the site file's
``hj212.unflagged`` says (D by default: nothing counts as normal without a flag saying so); an unknown letter is D;
a normal flag without a readable value is D (the wire format forbids a normal reading without a value). Records of
factor codes the source does not map (a heartbeat's ``CON``, a treatment facility's ``SB1-RS``...) are counted in
``unmapped``, never guessed onto a channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import cast

import numpy as np

from ..batch import ChannelSpec, ReadingBatch, encode_columns
from ..quantities import Flag
from ..site import EmissionSource
from .datarea import DataRecord
from .frame import Message

__all__ = ["Converted", "SourceMap", "message_columns", "period_of_upload"]

_VALUE_FIELD = {"2011": "rtd", "2051": "avg", "2061": "avg", "2031": "avg"}
_POSITION = {name: i for i, name in enumerate(DataRecord._fields)}
_FIXED_PERIOD = {"2011": 0, "2061": 3600, "2031": 86_400}


def period_of_upload(cn: str, min_interval_min: int = 1) -> int:
    """Seconds each record of upload ``cn`` covers: 0 (samples) for 2011, MinInterval for 2051, 3600, 86400."""
    if cn == "2051":
        return 60 * min_interval_min
    try:
        return _FIXED_PERIOD[cn]
    except KeyError:
        raise ValueError(f"CN={cn} is not a data upload (2011, 2051, 2061, 2031)") from None


@dataclass(frozen=True)
class SourceMap:
    """What the receivers need of one registered source: its channel table and which factor code feeds which
    channel index (``schemas.site.Hj212Link``)."""

    source_id: str
    mn: str
    channels: tuple[ChannelSpec, ...]
    index: dict[str, int]  # factor code -> channel index
    figures_period_s: int  # what feeds the figures (0: 2011 samples; else the 2051 period)
    min_interval_min: int = 1
    unflagged: Flag = Flag.D

    @classmethod
    def of(cls, source: EmissionSource) -> SourceMap:
        link = source.hj212
        if link is None:
            raise ValueError(f"source {source.id!r} has no hj212 block")
        channels = tuple(ChannelSpec(c.id, c.quantity, c.unit) for c in source.channels)
        position = {c.id: i for i, c in enumerate(channels)}
        index = {code: position[ch] for code, ch in link.channel_of_factor(source).items()}
        return cls(source.id, link.mn, channels, index, link.period_s, link.min_interval_min,
                   Flag.N if link.unflagged == "valid" else Flag.D)


@dataclass(frozen=True)
class Converted:
    """One upload as columns of one source, kept as the Python lists the conversion builds: a receiver encodes them
    straight to the wire (:meth:`encode`, no numpy for a handful of readings); ``ts_ns``, ``channel``, ``value``
    and ``flag`` are the same columns as numpy arrays, made when first asked for."""

    source_id: str
    channels: tuple[ChannelSpec, ...]
    period_s: int
    ts_list: list[int]  # ns since the epoch, UTC
    channel_list: list[int]  # index into channels
    value_list: list[float]  # NaN: no value
    flag_list: list[int]  # Flag codes
    unmapped: tuple[str, ...] = field(default=())  # factor codes of records left out
    repaired: int = 0  # records whose flag was set to D (normal without a value, unknown letter)

    def __len__(self) -> int:
        return len(self.ts_list)

    @cached_property
    def ts_ns(self) -> np.ndarray:
        return np.array(self.ts_list, dtype=np.int64)

    @cached_property
    def channel(self) -> np.ndarray:
        return np.array(self.channel_list, dtype=np.uint16)

    @cached_property
    def value(self) -> np.ndarray:
        return np.array(self.value_list, dtype=np.float64)

    @cached_property
    def flag(self) -> np.ndarray:
        return np.array(self.flag_list, dtype=np.uint8)

    def batch(self, agent_id: str, seq: int) -> ReadingBatch:
        return ReadingBatch.from_columns(agent_id=agent_id, source_id=self.source_id, seq=seq, channels=self.channels,
                                         ts_ns=self.ts_list, channel=self.channel_list, value=self.value_list,
                                         flag=self.flag_list, period_s=self.period_s)

    def encode(self, agent_id: str, seq: int) -> bytes:
        """``self.batch(agent_id, seq).encode()``, byte for byte (:func:`schemas.batch.encode_columns`)."""
        return encode_columns(agent_id=agent_id, source_id=self.source_id, seq=seq, channels=self.channels,
                              ts_ns=self.ts_list, channel=self.channel_list, value=self.value_list,
                              flag=self.flag_list, period_s=self.period_s)


_NO_VALUE = float("nan")
_D, _N = int(Flag.D), int(Flag.N)
_FLAG_CODE = {f: int(f) for f in Flag}  # a dict look-up is cheaper than int() of an IntEnum


def message_columns(message: Message, source: SourceMap) -> Converted:
    """Columns of a data upload (2011, 2051, 2061, 2031) for ``source``. Raises ``ValueError`` for another CN.

    References: docs/sources.md HJ212-T4 (value fields, DataTime), HJ212-T8 (flags).
    """
    cn = message.frame.cn
    attr = _VALUE_FIELD.get(cn)
    if attr is None:
        raise ValueError(f"CN={cn} is not a data upload (2011, 2051, 2061, 2031)")
    period = period_of_upload(cn, source.min_interval_min)
    index, unflagged, at = source.index, int(source.unflagged), _POSITION[attr]
    ts: list[int] = []
    chan: list[int] = []
    val: list[float] = []
    flg: list[int] = []
    unmapped: list[str] = []
    repaired = 0
    last_time, last_ns = None, 0
    codes = _FLAG_CODE
    for r in message.records:  # a frame holds 10-20 records: configuration-sized, not data-sized
        i = index.get(r.code)
        t = r.data_time
        if i is None or t is None:  # no channel; or no DataTime, so nothing says when
            unmapped.append(r.code)
            continue
        v = cast("float | None", r[at])  # a numeric slot: a float or None
        flag = r.flag
        if flag is not None:
            f = codes[flag]
        elif r.flag_letter is None:
            f = unflagged
        else:  # a letter no edition defines
            f, repaired = _D, repaired + 1
        if v is None:
            v = _NO_VALUE
            if f == _N:
                f, repaired = _D, repaired + 1
        if t is not last_time:  # the records of one data area share their DataTime
            last_time, last_ns = t, _ns(t)
        ts.append(last_ns)
        chan.append(i)
        val.append(v)
        flg.append(f)
    return Converted(source.source_id, source.channels, period, ts, chan, val, flg, tuple(unmapped), repaired)


def _ns(t: datetime) -> int:
    """Aware datetime -> ns since the epoch, exactly (HJ 212 times are whole seconds, 17-digit ones milliseconds).
    Cached: the codec's times are cached too, so every datalogger of a site sends the same minute's."""
    ns = _NS.get(t)
    if ns is None:
        if len(_NS) > 4096:
            _NS.clear()
        ns = _NS[t] = (t - _EPOCH) // _US * 1000
    return ns


_NS: dict[datetime, int] = {}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
