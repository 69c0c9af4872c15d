"""What the HJ 212 uplink reports, computed from what the agent stores: real-time values, minutes, hours, days.

Pure (no I/O, no clock of its own): the agent hands it every batch it stores (:meth:`UplinkFeed.add`) and asks, with
the wall clock, which messages are due (:meth:`UplinkFeed.due`). Minutes and hours are the centre's own kernels
(``streams/kernels/aggregate.py``): samples -> minutes (>= 12 valid values, HJ212-D23), minutes -> hours (>= 45 valid
minutes, HJ212-D24), each flagged N when more than 75 % of its parts are N, else D (HJ212-AC); minute means a
datalogger sent (2051, via the gateway's receiver) are closed minutes already (``minutes_from_averages``). A day is
the mean of the valid hour means of the local day, valid with >= 20 of them (HJ212-D25), flagged like the others.
Min and Max are the extremes of the valid parts (samples of a minute, minute means of an hour, hour means of a day).

A period is reported once it has ended plus ``lateness_s``; data arriving after that are not reported again (they
still reach the centre through Kafka). Real-time values are the newest sample of each channel in the last
``RtdInterval``.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np

from schemas.hj212 import DataRecord
from schemas.quantities import Flag
from schemas.site import Entity
from streams.kernels.aggregate import (
    AVERAGE_PERIODS_S,
    HOUR_NS,
    MINUTE_NS,
    Accumulator,
    PeriodTable,
    concat_tables,
    hours_from_minutes,
    minutes_from_averages,
)
from streams.kernels.plausibility import series_bounds
from streams.kernels.policy import get_policy

__all__ = ["Due", "UplinkFeed"]

_DAY_NS = 86_400 * 10**9


class Due(NamedTuple):
    """One upload to send: CN, the source, the interval start (or acquisition time) and its records."""

    cn: str
    source_id: str
    data_time: datetime
    records: tuple[DataRecord, ...]


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


class UplinkFeed:
    def __init__(self, site: Entity, sources: list[str], *, policy: str = "cn-hj75", lateness_s: float = 30.0) -> None:
        self.policy = get_policy(policy)
        self.tz = site.tz
        self.lateness_ns = int(lateness_s * 1e9)
        self.channels: list[tuple[str, str, str]] = []  # per series: (source id, channel id, factor code)
        self.series_of: dict[tuple[str, str], int] = {}
        for sid in sources:
            src = site.source(sid)
            code_of = {ch: code for code, ch in (src.hj212.channel_of_factor(src).items() if src.hj212 else ())}
            for c in src.channels:
                self.series_of[(sid, c.id)] = len(self.channels)
                self.channels.append((sid, c.id, code_of.get(c.id, c.quantity)))
        n = len(self.channels)
        self.bounds = series_bounds([(site.source(s).channel(c).quantity, site.source(s).channel(c).unit)
                                     for s, c, _ in self.channels])
        self.minutes = Accumulator.empty(MINUTE_NS)  # open minute cells of samples
        self._extremes: dict[int, tuple[float, float]] = {}  # open minute cell key -> (min, max) of valid samples
        self._closed_minutes: list[PeriodTable] = []  # kept until their hour is reported
        self._closed_hours: list[PeriodTable] = []  # kept until their day is reported
        self.latest_ts = np.full(n, -1, dtype=np.int64)  # newest sample of each series (real-time data)
        self.latest_value = np.full(n, np.nan)
        self.latest_flag = np.zeros(n, dtype=np.uint8)
        # end of the last reported period [ns]
        self.minute_done: int | None = None
        self.hour_done: int | None = None
        self.day_done: int | None = None

    # -- input ------------------------------------------------------------------------------------------------------

    def add(self, source_id: str, channel_ids, period_s: int, ts_ns, channel, value, flag) -> None:
        """A stored batch: ``channel`` indexes ``channel_ids``. Sources not reported are ignored."""
        table = np.array([self.series_of.get((source_id, c), -1) for c in channel_ids], dtype=np.int64)
        if not (table >= 0).any():
            return
        series = table[np.asarray(channel, dtype=np.int64)]
        keep = series >= 0
        series, ts, value, flag = series[keep], np.asarray(ts_ns)[keep], np.asarray(value)[keep], np.asarray(flag)[keep]
        if not series.size:
            return
        if period_s == 0:
            self._add_samples(series, ts, value, flag)
        elif period_s in AVERAGE_PERIODS_S:  # a datalogger's minute means: closed minutes
            self._closed_minutes.append(minutes_from_averages(series, ts, period_s, value, flag, bounds=self.bounds))
        # 2061 and 2031 means of a datalogger are not re-reported: hours and days are computed here

    def _add_samples(self, series, ts, value, flag) -> None:
        newer = ts >= self.latest_ts[series]
        order = np.argsort(ts[newer], kind="stable")  # the newest of each series wins
        s = series[newer][order]
        self.latest_ts[s], self.latest_value[s], self.latest_flag[s] = ts[newer][order], value[newer][order], \
            flag[newer][order]
        self.minutes = self.minutes.absorb_readings(series, ts, value, flag, bounds=self.bounds)
        valid = (flag == Flag.N) & np.isfinite(value)
        if valid.any():  # extremes per minute cell: a loop over cells, not readings
            keys = (series[valid] << 32) | ((ts[valid] + 500_000_000) // MINUTE_NS)
            v = value[valid]
            order = np.argsort(keys, kind="stable")
            keys, v = keys[order], v[order]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            lo, hi = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
            for k, a, b in zip(keys[starts].tolist(), lo.tolist(), hi.tolist(), strict=True):
                old = self._extremes.get(k)
                self._extremes[k] = (a, b) if old is None else (min(a, old[0]), max(b, old[1]))

    # -- output -----------------------------------------------------------------------------------------------------

    def realtime(self, now_ns: int, interval_s: float) -> list[Due]:
        """2011 data: per source, the newest sample of each channel within the last ``interval_s``."""
        fresh = self.latest_ts > now_ns - int(interval_s * 1e9)
        out = []
        for sid in dict.fromkeys(s for s, _, _ in self.channels):
            recs = []
            for i in np.flatnonzero(fresh).tolist():
                s, _, code = self.channels[i]
                if s == sid:
                    v = float(self.latest_value[i])
                    recs.append(DataRecord(code, rtd=None if np.isnan(v) else v, flag=Flag(int(self.latest_flag[i]))))
            if recs:
                out.append(Due("2011", sid, _utc(now_ns // 10**9 * 10**9), tuple(recs)))
        return out

    def due(self, now_ns: int) -> list[Due]:
        """Minutes, hours and days that ended at least ``lateness_s`` before ``now_ns`` and were not reported."""
        out = self._due_minutes(now_ns)
        out += self._due_hours(now_ns)
        out += self._due_days(now_ns)
        return out

    def _due_minutes(self, now_ns: int) -> list[Due]:
        horizon = now_ns - self.lateness_ns
        if len(self.minutes):
            done = self.minutes.start_ns + MINUTE_NS <= horizon
            if done.any():
                self._closed_minutes.append(self.minutes.select(done).close(self.policy))
                self.minutes = self.minutes.select(~done)
        m = _concat(self._closed_minutes)
        if m is None:
            return []
        self._closed_minutes = [m]
        start = m.start_ns
        fresh = (start + MINUTE_NS <= horizon) & (start >= (self.minute_done or 0))
        if not fresh.any():
            return []
        self.minute_done = int(start[fresh].max()) + MINUTE_NS
        return self._records("2051", m, fresh, self._minute_extremes)

    def _minute_extremes(self, series: int, start_ns: int) -> tuple[float | None, float | None]:
        e = self._extremes.pop((series << 32) | (start_ns // MINUTE_NS), None)
        return (None, None) if e is None else e

    def _due_hours(self, now_ns: int) -> list[Due]:
        m = _concat(self._closed_minutes)
        if m is None:
            return []
        ready = m.start_ns // HOUR_NS * HOUR_NS + HOUR_NS <= now_ns - self.lateness_ns
        if not ready.any():
            return []
        minutes = _select(m, ready)
        self._closed_minutes = [_select(m, ~ready)]
        hours = hours_from_minutes(minutes).close(self.policy)  # HJ212-D24, HJ212-AC
        self._closed_hours.append(hours)
        return self._records("2061", hours, np.ones(len(hours), bool), _Extremes(minutes, HOUR_NS, 0).get)

    def _due_days(self, now_ns: int) -> list[Due]:
        h = _concat(self._closed_hours)
        if h is None:
            return []
        utc_offset = datetime.fromtimestamp(now_ns / 1e9, UTC).astimezone(self.tz).utcoffset() or timedelta(0)
        # China: constant; a DST zone is off by an hour at its transitions
        offset = int(utc_offset.total_seconds()) * 10**9
        day = (h.start_ns + offset) // _DAY_NS  # local day number
        ready = day * _DAY_NS - offset + _DAY_NS <= now_ns - self.lateness_ns
        self._closed_hours = [h]
        if not ready.any():
            return []
        hours = _select(h, ready)
        self._closed_hours = [_select(h, ~ready)]
        keys = (hours.series << 32) | day[ready]
        uniq, inv = np.unique(keys, return_inverse=True)
        valid_n = np.bincount(inv, weights=hours.valid, minlength=uniq.size)
        total = np.bincount(inv, weights=np.where(hours.valid, hours.mean, 0.0), minlength=uniq.size)
        normal = np.bincount(inv, weights=hours.label == Flag.N, minlength=uniq.size)
        parts = np.bincount(inv, minlength=uniq.size)
        valid = valid_n >= (self.policy.day.min_valid_hours if self.policy.day else 1)  # HJ212-D25
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(valid, total / np.maximum(valid_n, 1), np.nan)
        label = np.where(normal > self.policy.normal_share * parts, Flag.N, self.policy.non_normal_flag)  # HJ212-AC
        series, start = uniq >> 32, (uniq & 0xFFFFFFFF) * _DAY_NS - offset
        ext = _Extremes(hours, _DAY_NS, offset)
        return self._records("2031", _Days(series, start, mean, valid, label.astype(np.uint8)),
                             np.ones(uniq.size, bool), ext.get)

    def _records(self, cn: str, c, sel: np.ndarray, extremes) -> list[Due]:
        """Per (source, period start): one record per channel (configuration-sized loops over the cells)."""
        out: dict[tuple[str, int], list[DataRecord]] = {}
        for i in np.flatnonzero(sel).tolist():
            s, start = int(c.series[i]), int(c.start_ns[i])
            sid, _, code = self.channels[s]
            lo, hi = extremes(s, start)
            avg = float(c.mean[i]) if c.valid[i] else None
            label = int(c.label[i])
            if avg is None and label == Flag.N:  # too few valid parts: not a normal figure, whatever their flags
                label = int(self.policy.non_normal_flag)
            out.setdefault((sid, start), []).append(DataRecord(
                code, min=lo if avg is not None else None, avg=avg, max=hi if avg is not None else None,
                flag=Flag(label)))
        return [Due(cn, sid, _utc(start), tuple(recs)) for (sid, start), recs in sorted(out.items(),
                                                                                     key=lambda kv: kv[0][1])]


class _Days(NamedTuple):
    series: np.ndarray
    start_ns: np.ndarray
    mean: np.ndarray
    valid: np.ndarray
    label: np.ndarray


class _Extremes:
    """Min and max of the valid parts of each parent period (hours from minutes, days from hours)."""

    def __init__(self, parts: PeriodTable, period_ns: int, offset_ns: int) -> None:
        ok = parts.valid
        self.period, self.offset = period_ns, offset_ns
        self.values: dict[tuple[int, int], tuple[float, float]] = {}
        for s, t, v in zip(parts.series[ok].tolist(), parts.start_ns[ok].tolist(), parts.mean[ok].tolist(),
                           strict=True):  # cells, not readings
            k = (s, (t + offset_ns) // period_ns)
            lo, hi = self.values.get(k, (v, v))
            self.values[k] = (min(lo, v), max(hi, v))

    def get(self, series: int, start_ns: int) -> tuple[float | None, float | None]:
        return self.values.get((series, (start_ns + self.offset) // self.period), (None, None))


_ARRAYS = [f.name for f in fields(PeriodTable) if f.name not in ("period_ns", "policy")]


def _select(t: PeriodTable, mask: np.ndarray) -> PeriodTable:
    return replace(t, **{n: getattr(t, n)[mask] for n in _ARRAYS})


def _concat(tables: list[PeriodTable]) -> PeriodTable | None:
    tables = [t for t in tables if len(t)]
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else concat_tables(tables)
