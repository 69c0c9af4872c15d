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
import json
from collections.abc import Sequence

import numpy as np

from schemas.records import INDICATOR_HOUR, METER_HOUR, IndicatorDay
from streams.core.state import json_array, npz_bytes
from streams.kernels import HOUR_NS, PeriodTable
from streams.kernels.aggregate import MINUTE_NS
from streams.kernels.indicators import DEFAULT_POLICY, Grid, HourPartials, IndicatorPolicy, hour_partials
from streams.kernels.indicators.grid import NO_DATA

__all__ = ["DAY_NS", "IndicatorStream", "day_records", "is_meter", "month_partials"]

DAY_NS = 24 * HOUR_NS
_PER_HOUR = HOUR_NS // MINUTE_NS


class IndicatorStream:
    """The hour partials of one partition's sources, made as their hours close (module docstring).

    State: the closed minutes of hours whose minutes are kept (``minutes``; saved as a journal of what each minute
    of event time added, segments ``fmin:<hour>:<minute>``, so that a checkpoint writes what is new, not every kept
    minute again), and the partials of closed hours (``parts``, segments ``fpart:<hour>``) while their day can still
    change. Eviction follows the partition's event time (the lowest "now" of its sources), whole hours and whole days
    at once, so a restore and a replay take the same decisions as the run that saved the state.
    """

    def __init__(self, registry, *, lateness_s: float = 600.0, keep_s: float = 6 * 3600.0,
                 horizon_s: float = 2 * 86_400.0, policy: IndicatorPolicy = DEFAULT_POLICY) -> None:
        self.registry, self.policy = registry, policy
        self.sources = [s.id for s in registry.sources]
        self.channels = [[c.id for c in s.channels] for s in registry.sources]
        self.meter_rows = [[j for j, c in enumerate(s.channels) if is_meter(c.quantity)] for s in registry.sources]
        counts = np.bincount(registry.source_of_series, minlength=len(self.sources))
        self.first_series = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._lateness, self._keep, self._horizon = int(lateness_s * 1e9), int(keep_s * 1e9), int(horizon_s * 1e9)
        self.minutes: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}  # hour -> source -> (mean, flag)
        self.journal: dict[tuple[int, int], list[tuple[np.ndarray, ...]]] = {}  # (hour, minute of event time) -> adds
        self.parts: dict[int, dict[int, tuple[dict[str, np.ndarray], bool, int]]] = {}  # hour -> source ->
        #                                                                 (partial per field [rows], stale, version)
        self._dirty: set[str] = set()

    # -- one processor call --------------------------------------------------------------------------

    def update(self, minutes: PeriodTable | None, now: np.ndarray) -> list[IndicatorDay]:
        """Take the minutes the processor closed in this call; close the hours event time has passed (``now``: per
        source [ns]); return the day records that changed."""
        redo: set[tuple[int, int]] = set()  # (source, hour) whose partial is (re)computed
        touched: set[tuple[int, int]] = set()  # (source, day) to publish
        clock = int(now.min()) if now.size else 0
        if minutes is not None and len(minutes):
            self._absorb(minutes, clock // MINUTE_NS, redo, touched)
        for h, by_source in self.minutes.items():
            for s in by_source:
                if s not in self.parts.get(h, {}) and h + HOUR_NS + self._lateness <= now[s]:
                    redo.add((s, h))
        if redo:
            self._close(sorted(redo), touched)
        out = [self._record(s, d) for s, d in sorted(touched)]
        self._evict(clock)
        return out

    def _absorb(self, minutes: PeriodTable, window: int, redo: set, touched: set) -> None:
        series = minutes.series
        src = self.registry.source_of_series[series]
        row = series - self.first_series[src]
        hour = minutes.start_ns // HOUR_NS * HOUR_NS
        slot = (minutes.start_ns - hour) // MINUTE_NS
        mean = np.where(minutes.valid & np.isfinite(minutes.mean), minutes.mean, np.nan)  # as InfluxDB holds them
        key = src * (1 << 40) + hour // HOUR_NS
        for k in np.unique(key).tolist():  # one (source, hour) at a time: a loop over hours, not readings
            sel = key == k
            s, h = int(k >> 40), int(k & ((1 << 40) - 1)) * HOUR_NS
            kept = self.minutes.get(h, {}).get(s)
            part = self.parts.get(h, {}).get(s)
            if kept is None and part is not None:  # its minutes are let go: the partial misses these
                if not part[1]:
                    self.parts[h][s] = (part[0], True, part[2] + 1)
                    self._dirty.add(f"fpart:{h}")
                    touched.add((s, h // DAY_NS * DAY_NS))
                continue
            entry = (np.full(int(sel.sum()), s, dtype=np.int64), row[sel], slot[sel], mean[sel], minutes.label[sel])
            self._put(h, *entry)
            self.journal.setdefault((h, window), []).append(entry)
            self._dirty.add(f"fmin:{h}:{window}")
            if part is not None:
                redo.add((s, h))

    def _put(self, h: int, src: np.ndarray, row: np.ndarray, slot: np.ndarray, mean: np.ndarray,
             label: np.ndarray) -> None:
        """Minutes of one source into its hour's minute arrays."""
        s = int(src[0])
        kept = self.minutes.setdefault(h, {}).get(s)
        if kept is None:
            n = len(self.channels[s])
            kept = self.minutes[h][s] = (np.full((n, _PER_HOUR), np.nan), np.full((n, _PER_HOUR), NO_DATA, np.uint8))
        kept[0][row, slot] = mean
        kept[1][row, slot] = label

    def _close(self, redo: list[tuple[int, int]], touched: set) -> None:
        """The partials of the (source, hour) pairs, from their kept minutes."""
        means = [self.minutes[h][s][0] for s, h in redo]
        flags = [self.minutes[h][s][1] for s, h in redo]
        parts = hour_partials(Grid(np.concatenate(means), 0, MINUTE_NS, np.concatenate(flags)), self.policy).arrays()
        at = 0
        for (s, h), m in zip(redo, means, strict=True):
            before = self.parts.setdefault(h, {}).get(s)
            self.parts[h][s] = ({name: x[at:at + len(m), 0].copy() for name, x in parts.items()},
                                False if before is None else before[1], 0 if before is None else before[2] + 1)
            self._dirty.add(f"fpart:{h}")
            at += len(m)
            touched.add((s, h // DAY_NS * DAY_NS))

    def _record(self, s: int, d: int) -> IndicatorDay:
        """The day record of source ``s`` and UTC day ``d`` from its closed hours."""
        arrays = HourPartials.empty(len(self.channels[s]), 24, d).arrays()
        closed = stale = revision = 0
        for j in range(24):  # the day's hours
            part = self.parts.get(d + j * HOUR_NS, {}).get(s)
            if part is None:
                continue
            for name, x in part[0].items():
                arrays[name][:, j] = x
            closed |= 1 << j
            stale |= int(part[1]) << j
            revision += part[2] + 1  # every publication of the day adds one
        return _record(self.registry.entity_of[self.sources[s]], self.sources[s], d, self.channels[s],
                       self.meter_rows[s], arrays, closed, stale, revision - 1)

    def _evict(self, clock: int) -> None:
        """Let go of an hour's minutes ``keep_s`` after it closed, and of a day's partials once no minute of it can
        fold any more (the revision horizon), by the partition's event time."""
        for h in [h for h in self.minutes if h + HOUR_NS + self._lateness + self._keep <= clock]:
            del self.minutes[h]
            for key in [key for key in self.journal if key[0] == h]:
                del self.journal[key]
                self._dirty.add(f"fmin:{h}:{key[1]}")
        last = self._lateness + self._keep + self._horizon
        for h in [h for h in self.parts if h // DAY_NS * DAY_NS + DAY_NS + last <= clock]:
            del self.parts[h]
            self._dirty.add(f"fpart:{h}")

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
        return npz_bytes(**dict(zip(("source", "row", "slot", "mean", "label"), cols, strict=True)))

    def _parts_segment(self, h: int) -> bytes:
        srcs = sorted(self.parts[h])
        meta = {"sources": srcs, "stale": [self.parts[h][s][1] for s in srcs],
                "version": [self.parts[h][s][2] for s in srcs]}
        return npz_bytes(meta=json_array(meta), **{name: np.concatenate([self.parts[h][s][0][name] for s in srcs])
                                                   for name in HourPartials.ARRAYS})

    def restore_segments(self, segments: dict[str, bytes]) -> None:
        self.minutes, self.journal, self.parts, self._dirty = {}, {}, {}, set()
        for name in sorted((n for n in segments if n.startswith("fmin:")), key=lambda n: int(n.split(":")[2])):
            _, h, k = name.split(":")
            z = np.load(io.BytesIO(segments[name]))
            entry = tuple(z[c] for c in ("source", "row", "slot", "mean", "label"))
            self.journal[(int(h), int(k))] = [entry]
            for s in np.unique(entry[0]).tolist():  # replayed in the order of event time, as absorbed
                sel = entry[0] == s
                self._put(int(h), *(c[sel] for c in entry))
        for name in (n for n in segments if n.startswith("fpart:")):
            z = np.load(io.BytesIO(segments[name]))
            meta = json.loads(z["meta"].tobytes())
            cuts = np.cumsum([0] + [len(self.channels[s]) for s in meta["sources"]])
            self.parts[int(name[6:])] = {
                s: ({f: z[f][a:b].copy() for f in HourPartials.ARRAYS}, bool(st), int(v))
                for s, a, b, st, v in zip(meta["sources"], cuts[:-1], cuts[1:], meta["stale"], meta["version"],
                                          strict=True)}


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
