"""The indicators' evidence in the stream: each closed hour of each source reduced to its hour partials, published
per source and UTC day (:class:`~schemas.records.IndicatorDay`) for the reconciler, which evaluates a month's
indicators from them (:func:`streams.kernels.indicators.scan_hours`) instead of reading the minutes back.

Pure, no Kafka: :class:`IndicatorStream` lives in the :class:`~streams.core.processor.PartitionProcessor`, is fed the
minutes it closes (the ones the InfluxDB sink writes) and the sources' event-time "now", and its state is saved
with the processor's (segments ``fmin:<hour>:<minute>`` and ``fpart:<hour>``), so its records are exactly-once with
the rest.

* A source's closed minutes wait in a minute array of their hour. The hour closes when event time passes its end
  plus the allowed lateness (the hourly records' rule, for meters too); its partial goes into the day record and
  the day is published.
* Minutes of a closed hour that fold later (an agent's hole filled, late data for a minute never closed) recompute
  its partial from the kept minutes and publish the day again, while the hour's minutes are kept: ``keep_s`` past
  the close. Minutes later than that set the hour's ``stale`` bit (its partial misses them); the reconciler then
  recomputes that month from InfluxDB (``cems reconcile --recompute``; docs/reconciliation.md).
* A day's partials are kept until no minute of it can fold any more (past the processor's revision horizon), so a
  late hour never publishes a day record that lacks the day's other hours.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from schemas.records import INDICATOR_HOUR, METER_HOUR, IndicatorDay
from streams.core.state import npz_bytes
from streams.kernels import HOUR_NS, PeriodTable
from streams.kernels.aggregate import MINUTE_NS
from streams.kernels.indicators import DEFAULT_POLICY, Grid, HourPartials, IndicatorPolicy, hour_partials
from streams.kernels.indicators.grid import NO_DATA

__all__ = ["DAY_NS", "IndicatorStream", "day_records", "is_meter", "month_partials"]

DAY_NS = 24 * HOUR_NS
_PER_HOUR = HOUR_NS // MINUTE_NS


class _Minutes:
    """The kept minutes of one hour: one row per series that has any (sorted), 60 minutes each."""

    def __init__(self) -> None:
        self.series = np.zeros(0, dtype=np.int64)
        self.sources = np.zeros(0, dtype=np.int64)  # the sources of those series (sorted), kept by the caller
        self.mean = np.zeros((0, _PER_HOUR))
        self.flag = np.zeros((0, _PER_HOUR), dtype=np.uint8)

    def put(self, series: np.ndarray, slot: np.ndarray, mean: np.ndarray, label: np.ndarray) -> None:
        new = np.setdiff1d(series, self.series)
        if new.size:  # rows for series seen for the first time this hour
            merged = np.union1d(self.series, new)
            mean_all = np.full((merged.size, _PER_HOUR), np.nan)
            flag_all = np.full((merged.size, _PER_HOUR), NO_DATA, dtype=np.uint8)
            at = np.searchsorted(merged, self.series)
            mean_all[at], flag_all[at] = self.mean, self.flag
            self.series, self.mean, self.flag = merged, mean_all, flag_all
        row = np.searchsorted(self.series, series)
        self.mean[row, slot] = mean
        self.flag[row, slot] = label


class _Parts:
    """The partials of one hour's closed sources: one row per series (sorted); per source closed, stale and the
    number of times its partial was published before (dense over the registry's sources)."""

    def __init__(self, n_sources: int) -> None:
        self.series = np.zeros(0, dtype=np.int64)
        self.fields = {f: np.zeros(0, dtype=d) for f, d in zip(HourPartials.ARRAYS, HourPartials.DTYPES,
                                                               strict=True)}
        self.closed = np.zeros(n_sources, dtype=bool)
        self.stale = np.zeros(n_sources, dtype=bool)
        self.version = np.zeros(n_sources, dtype=np.int64)

    def put(self, series: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        merged = np.union1d(self.series, series)
        if merged.size != self.series.size:
            at = np.searchsorted(merged, self.series)
            for f, d in zip(HourPartials.ARRAYS, HourPartials.DTYPES, strict=True):
                x = np.zeros(merged.size, dtype=d)
                x[at] = self.fields[f]
                self.fields[f] = x
            self.series = merged
        row = np.searchsorted(self.series, series)
        for f, x in fields.items():
            self.fields[f][row] = x


class IndicatorStream:
    """The hour partials of one partition's sources, made as their hours close (module docstring).

    State: the closed minutes of hours whose minutes are kept (``minutes``; saved as a journal of what each minute
    of event time added, segments ``fmin:<hour>:<minute>``, so that a checkpoint writes what is new, not every kept
    minute again), and the partials of closed hours (``parts``, segments ``fpart:<hour>``) while their day can still
    change. Eviction follows the partition's event time (the lowest "now" of its sources), whole hours and whole days
    at once, so a restore and a replay take the same decisions as the run that saved the state. Work per call is a
    few array operations per hour kept, not a loop over sources.
    """

    def __init__(self, registry, *, lateness_s: float = 600.0, keep_s: float = 6 * 3600.0,
                 horizon_s: float = 2 * 86_400.0, policy: IndicatorPolicy = DEFAULT_POLICY) -> None:
        self.registry, self.policy = registry, policy
        self.sources = [s.id for s in registry.sources]
        self.channels = [[c.id for c in s.channels] for s in registry.sources]
        self.meter_rows = [[j for j, c in enumerate(s.channels) if is_meter(c.quantity)] for s in registry.sources]
        self.source_of = np.asarray(registry.source_of_series, dtype=np.int64)
        counts = np.bincount(self.source_of, minlength=len(self.sources))
        self.first_series = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._lateness, self._keep, self._horizon = int(lateness_s * 1e9), int(keep_s * 1e9), int(horizon_s * 1e9)
        self.minutes: dict[int, _Minutes] = {}  # hour start -> its kept minutes
        self.journal: dict[tuple[int, int], list[tuple[np.ndarray, ...]]] = {}  # (hour, event-time minute) -> adds
        self.parts: dict[int, _Parts] = {}  # hour start -> the partials of its closed sources
        self._dirty: set[str] = set()

    # -- one processor call --------------------------------------------------------------------------

    def update(self, minutes: PeriodTable | None, now: np.ndarray) -> list[IndicatorDay]:
        """Take the minutes the processor closed in this call; close the hours event time has passed (``now``: per
        source [ns]); return the day records that changed."""
        redo: dict[int, set[int]] = {}  # hour -> sources whose partial is (re)computed
        touched: set[tuple[int, int]] = set()  # (day, source) to publish
        clock = int(now.min()) if now.size else 0
        if minutes is not None and len(minutes):
            self._absorb(minutes, clock // MINUTE_NS, redo, touched)
        latest = int(now.max()) if now.size else 0
        for h, kept in self.minutes.items():  # a loop over hours
            if h + HOUR_NS + self._lateness > latest:
                continue  # due for no source yet
            srcs = kept.sources
            closed = self.parts[h].closed[srcs] if h in self.parts else np.zeros(srcs.size, dtype=bool)
            due = srcs[~closed & (h + HOUR_NS + self._lateness <= now[srcs])]
            if due.size:
                redo.setdefault(h, set()).update(due.tolist())
        for h, due_sources in sorted(redo.items()):
            self._close(h, np.array(sorted(due_sources), dtype=np.int64), touched)
        out = self._records(touched)
        self._evict(clock)
        return out

    def _absorb(self, minutes: PeriodTable, window: int, redo: dict, touched: set) -> None:
        hour = minutes.start_ns // HOUR_NS * HOUR_NS
        mean = np.where(minutes.valid & np.isfinite(minutes.mean), minutes.mean, np.nan)  # as InfluxDB holds them
        for h in np.unique(hour).tolist():  # a loop over hours
            sel = hour == h
            series, start = minutes.series[sel], minutes.start_ns[sel]
            src = self.source_of[series]
            kept = self.minutes.get(h)
            has = np.isin(src, kept.sources) if kept is not None else np.zeros(src.size, dtype=bool)
            parts = self.parts.get(h)
            closed = parts.closed[src] if parts is not None else np.zeros(src.size, dtype=bool)
            gone = closed & ~has  # minutes of a closed hour whose minutes are let go: its partial misses these
            if gone.any() and parts is not None:
                late = np.unique(src[gone])
                fresh = late[~parts.stale[late]]
                parts.stale[fresh] = True
                parts.version[fresh] += 1
                self._dirty.add(f"fpart:{h}")
                touched.update((h // DAY_NS * DAY_NS, s) for s in fresh.tolist())
            keep = ~gone
            if not keep.any():
                continue
            entry = (series[keep].astype(np.int32), ((start[keep] - h) // MINUTE_NS).astype(np.uint8),  # 14 B a minute
                     mean[sel][keep], minutes.label[sel][keep].astype(np.uint8))
            self._put(h, *entry)
            self.journal.setdefault((h, window), []).append(entry)
            self._dirty.add(f"fmin:{h}:{window}")
            if (closed & keep).any():
                redo.setdefault(h, set()).update(np.unique(src[closed & keep]).tolist())

    def _put(self, h: int, series: np.ndarray, slot: np.ndarray, mean: np.ndarray, label: np.ndarray) -> None:
        kept = self.minutes.setdefault(h, _Minutes())
        known = kept.series.size
        kept.put(series, slot, mean, label)
        if kept.series.size != known:
            kept.sources = np.union1d(kept.sources, self.source_of[series])

    def _close(self, h: int, srcs: np.ndarray, touched: set) -> None:
        """The partials of sources ``srcs`` in hour ``h``, from the kept minutes."""
        kept = self.minutes[h]
        rows = np.flatnonzero(np.isin(self.source_of[kept.series], srcs))
        found = hour_partials(Grid(kept.mean[rows], 0, MINUTE_NS, kept.flag[rows]), self.policy).arrays()
        parts = self.parts.setdefault(h, _Parts(len(self.sources)))
        parts.put(kept.series[rows], {f: x[:, 0] for f, x in found.items()})
        parts.version[srcs] += parts.closed[srcs]  # a partial published again
        parts.closed[srcs] = True
        self._dirty.add(f"fpart:{h}")
        touched.update((h // DAY_NS * DAY_NS, s) for s in srcs.tolist())

    def _records(self, touched: set[tuple[int, int]]) -> list[IndicatorDay]:
        """The day records of the touched (day, source) pairs, from the partials of the day's closed hours."""
        out = []
        for d in sorted({d for d, _ in touched}):  # a loop over days
            srcs = np.array(sorted(s for dd, s in touched if dd == d), dtype=np.int64)
            n = np.bincount(self.source_of, minlength=len(self.sources))[srcs]
            rows = np.concatenate([self.first_series[s] + np.arange(k) for s, k in zip(srcs, n, strict=True)])
            arrays = HourPartials.empty(rows.size, 24, d).arrays()
            closed = np.zeros(srcs.size, dtype=np.int64)
            stale, revision = closed.copy(), np.full(srcs.size, -1, dtype=np.int64)
            for j in range(24):  # the day's hours
                parts = self.parts.get(d + j * HOUR_NS)
                if parts is None:
                    continue
                at = np.minimum(np.searchsorted(parts.series, rows), max(parts.series.size - 1, 0))
                hit = (parts.series[at] == rows) if parts.series.size else np.zeros(rows.size, dtype=bool)
                for f, x in arrays.items():
                    x[hit, j] = parts.fields[f][at[hit]]
                closed |= parts.closed[srcs].astype(np.int64) << j
                stale |= parts.stale[srcs].astype(np.int64) << j
                revision += np.where(parts.closed[srcs], parts.version[srcs] + 1, 0)  # every publication adds one
            cuts = np.concatenate([[0], np.cumsum(n)])
            for i, s in enumerate(srcs.tolist()):  # one record per source
                part = {f: x[cuts[i]:cuts[i + 1]] for f, x in arrays.items()}
                out.append(_record(self.registry.entity_of[self.sources[s]], self.sources[s], d, self.channels[s],
                                   self.meter_rows[s], part, int(closed[i]), int(stale[i]), int(revision[i])))
        return out

    def _evict(self, clock: int) -> None:
        """Let go of an hour's minutes ``keep_s`` after it closed, and of a day's partials once no minute of it can
        fold any more (the revision horizon), by the partition's event time."""
        for h in [h for h in self.minutes if h + HOUR_NS + self._lateness + self._keep <= clock]:
            del self.minutes[h]
            for key in [key for key in self.journal if key[0] == h]:
                del self.journal[key]
        last = self._lateness + self._keep + self._horizon
        for h in [h for h in self.parts if h // DAY_NS * DAY_NS + DAY_NS + last <= clock]:
            del self.parts[h]

    # -- state -----------------------------------------------------------------------------------------

    def segments(self, full: bool) -> tuple[dict[str, bytes], set[str]]:
        """The segments changed since the last call (all if ``full``) and the names of the live ones."""
        live = {f"fmin:{h}:{k}" for h, k in self.journal} | {f"fpart:{h}" for h in self.parts}
        out = {}
        for name in sorted(live if full else self._dirty & live):
            kind, *t = name.split(":")
            out[name] = (self._journal_segment(int(t[0]), int(t[1])) if kind == "fmin"
                         else self._parts_segment(int(t[0])))
        if not full:
            self._dirty = set()
        return out, live

    def _journal_segment(self, h: int, k: int) -> bytes:
        cols = [np.concatenate(c) for c in zip(*self.journal[(h, k)], strict=True)]
        return npz_bytes(**dict(zip(("series", "slot", "mean", "label"), cols, strict=True)))

    def _parts_segment(self, h: int) -> bytes:
        p = self.parts[h]
        srcs = np.flatnonzero(p.closed)
        return npz_bytes(series=p.series, sources=srcs, stale=p.stale[srcs], version=p.version[srcs], **p.fields)

    def restore_segments(self, segments: dict[str, bytes]) -> None:
        self.minutes, self.journal, self.parts, self._dirty = {}, {}, {}, set()
        for name in sorted((n for n in segments if n.startswith("fmin:")), key=lambda n: int(n.split(":")[2])):
            _, h, k = name.split(":")
            z = np.load(io.BytesIO(segments[name]))
            entry = tuple(z[c] for c in ("series", "slot", "mean", "label"))
            self.journal[(int(h), int(k))] = [entry]
            self._put(int(h), *entry)  # in the order of event time, as absorbed
        for name in (n for n in segments if n.startswith("fpart:")):
            z = np.load(io.BytesIO(segments[name]))
            p = self.parts[int(name[6:])] = _Parts(len(self.sources))
            p.series = z["series"].copy()
            p.fields = {f: z[f].copy() for f in HourPartials.ARRAYS}
            srcs = z["sources"]
            p.closed[srcs], p.stale[srcs], p.version[srcs] = True, z["stale"], z["version"]


def is_meter(quantity: str) -> bool:
    """Fuel, material and electricity meters (schemas/quantities.py ``xf``, ``xp``, ``xe`` codes): the channels the
    meter totals are made of, whose day records carry the meters' fields."""
    return quantity[:2] in ("xf", "xp", "xe")


def _record(entity_id: str, source_id: str, day_ns: int, channels: list[str], meter_rows: list[int],
            arrays: dict[str, np.ndarray], closed: int, stale: int, revision: int) -> IndicatorDay:
    hours = np.empty((len(channels), 24), dtype=INDICATOR_HOUR)
    for name in INDICATOR_HOUR.names or ():
        hours[name] = arrays[name]
    meters = np.empty((len(meter_rows), 24), dtype=METER_HOUR)
    for name in METER_HOUR.names or ():
        meters[name] = arrays[name][meter_rows]
    return IndicatorDay(entity_id, source_id, day_ns, list(channels), closed, stale, revision, hours,
                        [channels[j] for j in meter_rows], meters)


def month_partials(series: list[tuple[str, str]], start_ns: int, end_ns: int,
                   days: list[IndicatorDay]) -> tuple[HourPartials, int]:
    """An entity's hour partials over ``[start_ns, end_ns)`` (whole hours) from its day records, rows numbered as
    ``series`` ((source id, channel id)); hours no record closed stay empty (an hour without minutes), and so do
    the meters' fields of channels that are no meters. Also the number of stale hours in the range (partials that
    miss minutes: recompute from InfluxDB)."""
    n_hours = (end_ns - start_ns) // HOUR_NS
    out = HourPartials.empty(len(series), n_hours, start_ns)
    arrays = out.arrays()
    index = {key: i for i, key in enumerate(series)}
    stale = 0
    for group, layout in ((0, INDICATOR_HOUR), (1, METER_HOUR)):
        pieces, rows, offsets = [], [], []  # per record: its hours of the channels asked for, their rows, its hour 0
        for day in days:  # a loop over records (one per source and day), not over readings
            h0 = (day.day_start_ns - start_ns) // HOUR_NS
            if h0 >= n_hours or h0 + 24 <= 0:
                continue
            if group == 0:
                a, b = max(0, -h0), min(24, n_hours - h0)
                stale += bin(day.stale >> a & ((1 << (b - a)) - 1)).count("1")
            channels, hours = (day.channels, day.hours) if group == 0 else (day.meter_channels, day.meter_hours)
            pairs = [(j, index[(day.source_id, c)]) for j, c in enumerate(channels) if (day.source_id, c) in index]
            if pairs:
                j, r = zip(*pairs, strict=True)
                pieces.append(hours if len(j) == len(channels) else hours[list(j)])
                rows.append(np.array(r, dtype=np.int64))
                offsets.append(np.full(len(r), h0, dtype=np.int64))
        if not pieces:
            continue
        stacked = np.concatenate(pieces)  # [rows of every record, 24]: one scatter per field for the whole month
        row = np.concatenate(rows)[:, None]
        hour = np.concatenate(offsets)[:, None] + np.arange(24)
        inside = (hour >= 0) & (hour < n_hours)
        r_idx, h_idx = np.broadcast_to(row, hour.shape)[inside], hour[inside]
        for name in layout.names or ():
            arrays[name][r_idx, h_idx] = stacked[name][inside]
    return out, stale


def day_records(entity_id: str, source_id: str, channels: list[str], parts: HourPartials,
                meter_channels: Sequence[str] = (), revision: int = 0) -> list[IndicatorDay]:
    """One source's hour partials (rows: ``channels``; ``meter_channels`` those that are meters) cut into the day
    records the stream publishes, every hour of ``parts`` closed. For tools and tests that hold a month of
    partials (a backfill from InfluxDB, the benchmark); the stream makes its records hour by hour
    (:class:`IndicatorStream`)."""
    n, h = parts.shape
    first = parts.start_ns // DAY_NS * DAY_NS
    meter_rows = [channels.index(c) for c in meter_channels]
    out = []
    for d in range(first, parts.start_ns + h * HOUR_NS, DAY_NS):  # a loop over days
        a = (d - parts.start_ns) // HOUR_NS  # hour of parts at the day's hour 0 (negative: before parts)
        lo, hi = max(0, -a), min(24, h - a)
        arrays = HourPartials.empty(n, 24, d).arrays()
        for name, x in parts.arrays().items():
            arrays[name][:, lo:hi] = x[:, a + lo:a + hi]
        out.append(_record(entity_id, source_id, d, channels, meter_rows, arrays,
                           ((1 << hi) - 1) & ~((1 << lo) - 1), 0, revision))
    return out
