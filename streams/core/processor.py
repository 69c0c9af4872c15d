"""The stream worker's core, with no Kafka in it: messages of one readings partition in, hourly records,
dead letters and sequence holes out. The faust worker, the embedded mode and batch recomputation all
drive this one class, so they cannot disagree.

Exactly-once in effect, by construction:

* **Duplicates count once.** Each agent's batches arrive in one partition in sequence order (the
  topic is keyed by agent, ``docs/decisions.md``); :class:`~ingest.sequence.SeqTracker` knows every
  sequence number already absorbed and drops repeats before they touch a sum.
* **Order and splitting do not matter.** Minute state is the kernels' :class:`Accumulator`, whose sums
  are exact integers (``docs/kernels.md``): absorbing messages one by one, in chunks, or replayed after
  a restart gives bit-identical state.
* **A batch says what its values are.** Its channel table (id, quantity code, unit) is checked against the site
  file once per table: values in another unit of the quantity are converted to the site file's
  (``schemas.quantities.unit_conversion``); an unknown channel, another quantity code or a unit that does not
  convert is dead-lettered (``unknown_channel``, ``quantity_mismatch``, ``unit_mismatch``).
* **Time is event time, never the wall clock.** An hour is published when its end plus the allowed
  lateness is behind the source's newest reading, or behind the partition clock (the newest Kafka
  timestamp seen, so a source that went quiet still gets its hours closed). Both come from the log,
  so replaying the same messages from a snapshot reproduces the same records, revisions included.
* **Late data revises.** Readings for an hour already published re-open it; if its figures change, a
  record with the next revision number and reason ``late_data`` follows. Readings older than the
  revision horizon (the hour's state is gone) are dead-lettered as ``too_late``, with their
  bytes, for batch recomputation.
* **State is about one hour cell per channel and hour.** A minute stays a minute cell only until the
  source's own readings are ``fold_lateness_s`` past its end and its agent's sequence has no hole; then
  it is closed and folded into its hour cell (the kernels' exact merge, so the figures are the same as
  from all minutes at once). While a hole is open (batches missing below the newest), the source's
  minutes stay open, so the missing batches merge exactly when they come; late data for whole minutes
  merges exactly anyway. Readings for a minute already folded could not, and are dead-lettered as
  ``minute_closed``: that takes an agent whose sequence was complete sending older readings later.

:meth:`PartitionProcessor.snapshot` captures everything, including the next input offset; a worker
that restores a snapshot and resumes from that offset continues exactly where the snapshot was taken.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

import numpy as np

from ingest.batches import KeyRing, Rejection, check_messages
from ingest.sequence import SeqTracker
from schemas.agent_batch import AgentBatch
from schemas.batch import ChannelSpec, ReadingBatch
from schemas.quantities import unit_conversion
from schemas.records import GapReport, HourlyRecord, IndicatorDay, MonthlyRecord
from schemas.site import Channel, Entity
from streams.core.findings import IndicatorStream
from streams.core.monthly import MonthlyRollup
from streams.core.state import json_array, npz_bytes
from streams.kernels import (
    HOUR_NS,
    Accumulator,
    PeriodTable,
    StackLayout,
    get_policy,
    hourly_emissions,
    hours_from_minutes,
)
from streams.kernels.aggregate import MINUTE_NS, ROUND_NS, combine, concat_tables, minutes_from_averages
from streams.kernels.plausibility import series_bounds
from streams.kernels.substitute import Part75Limits

__all__ = ["Message", "Output", "PartitionProcessor", "Registry", "Settings"]

#: Reasons the processor itself dead-letters an otherwise valid batch (see also ``ingest.batches.REASONS``).
PROCESSOR_REASONS = {
    "unknown_source": "the batch's source is not in any registered site file",
    "unknown_channel": "a channel of the batch is not a channel of its source in the site file",
    "quantity_mismatch": "a channel of the batch has another quantity code than the site file gives it",
    "unit_mismatch": "a channel's unit differs from the site file's and cannot be converted to it",
    "future_timestamp": "a reading is stamped later than the message was produced, beyond the allowed clock skew",
    "too_late": "readings for an hour older than the revision horizon (its minute state is gone)",
    "minute_closed": "readings for a minute already closed and folded into its hour (out-of-order delivery)",
    "bad_period": "period means (HJ 212 minute data) that cannot stand for minutes: another length, an interval "
                  "start off its boundary, or one channel's minute given twice",
}


class Registry:
    """The sources the centre knows, from the site files: channel -> series number, stack layout, bounds."""

    def __init__(self, entities: list[Entity]) -> None:
        self.entities = {e.id: e for e in entities}
        self.sources = [s for e in entities for s in e.sources]
        self.entity_of = {s.id: e.id for e in entities for s in e.sources}
        if len(self.entity_of) != len(self.sources):
            raise ValueError("a source id appears in two site files")
        self.index = {s.id: i for i, s in enumerate(self.sources)}
        self.series_of: dict[tuple[str, str], int] = {}
        channels: list[tuple[str, Channel]] = []
        for s in self.sources:
            for c in s.channels:
                self.series_of[(s.id, c.id)] = len(channels)
                channels.append((s.id, c))
        self.n_series = len(channels)
        self.channel_of_series = [c for _, c in channels]  # Channel (id, quantity, unit) of each series
        self.source_of_series = np.array([self.index[s] for s, _ in channels], dtype=np.int64)
        self.bounds = series_bounds([(c.quantity, c.unit) for _, c in channels])
        self.set_values_valid = np.array([c.manual_values == "valid" for _, c in channels], dtype=bool)
        self.layout = StackLayout.from_sources(self.sources, self.series_of)
        # HJ 212 sources (issue 16): the averaging period whose data feed the figures (0: instantaneous samples).
        # Batches of another period (2011 next to 2051 minutes, 2061, 2031) are accepted and counted, not absorbed.
        self.feed_period_s = np.array([s.hj212.period_s if s.hj212 else 0 for s in self.sources], dtype=np.int64)


@dataclass(frozen=True)
class Settings:
    policy: str = "cn-hj75"
    allowed_lateness_s: float = 600.0  # publish an hour this long after its end (event time)
    revision_horizon_s: float = 2 * 86_400.0  # keep minute state this long after an hour's end, for revisions
    max_clock_skew_s: float = 600.0  # a reading may be this much later than its message's Kafka timestamp
    fold_lateness_s: float = 120.0  # close a minute into its hour once the source's readings are this far past it
    substitution: str | None = None  # missing-hour substitution; None: the policy's own (streams/core/monthly.py)
    substitution_lookback_h: int | None = None  # hours of history the substitution reaches back; None: the rule's own
    part75_limits: dict[str, Part75Limits] = field(default_factory=dict)  # source id -> Part 75 maximum potentials


@dataclass(frozen=True)
class Message:
    """One record of the readings topic, as any consumer sees it."""

    offset: int
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int  # Kafka record timestamp (producer create time)


@dataclass
class Output:
    hourly: list[HourlyRecord] = field(default_factory=list)
    monthly: list[MonthlyRecord] = field(default_factory=list)  # monthly records changed by ``hourly``
    minutes: PeriodTable | None = None  # minutes closed (folded) in this call, each once (series numbers: Registry)
    dead_letters: list[tuple[Message, Rejection]] = field(default_factory=list)
    duplicates: int = 0
    holes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # agent -> missing seq ranges, when changed
    gaps: list[GapReport] = field(default_factory=list)  # the same, as records for the gaps topic
    indicators: list[IndicatorDay] = field(default_factory=list)  # hour partials per source-day (core/findings.py)
    accepted: int = 0
    readings: int = 0
    not_fed: int = 0  # accepted batches whose period does not feed their source's figures (HJ 212: 2061, 2031...)


_NEVER = np.iinfo(np.int64).min // 2


def _flat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
#: Outcomes of a batch that is counted and sequenced but not absorbed: data that do not feed the figures, the same
#: minutes again.
_Counted = Literal["not_fed", "repeat"]


class _ChannelMap(NamedTuple):
    """A batch's channel table against the site file: series numbers, and values converted to the site's units."""

    series: np.ndarray  # series number of each channel of the table (-1: unknown)
    convert: tuple[np.ndarray, np.ndarray] | None  # (scale, offset) per channel: site value = value x scale + offset;
    # None: every channel in the site's units
    refusal: Rejection | None  # an unknown channel, another quantity, a unit that does not convert


class _Accepted(NamedTuple):
    """Readings that passed every check, as series columns, and per source (index) their time span: one batch, or
    the clean sections of an agent batch together."""

    columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # series, ts_ns, value, flag
    spans: list[tuple[int, int, int]]  # (source, first ns, last ns)
    means: bool  # period means (HJ 212) for a source whose figures they feed; else samples


class _Plan(NamedTuple):
    """An agent batch's section table against the site files, the same every interval (cached): what can be absorbed
    as a whole, vectorised, and how its channels map to series."""

    clean: np.ndarray  # indices of the sections that are known sources with an accepted channel table, samples
    # feeding a samples source, and readings: the candidates for absorbing at once
    unclean: list[int]  # the other sections, for the exact path
    source: np.ndarray  # source index of each clean section
    starts: np.ndarray  # first reading of each non-empty section (ascending: the segments for reduceat)
    pick: np.ndarray  # each clean section's place among the non-empty ones
    series: np.ndarray  # series number of every section's channels, one table after the other (-1: unknown)
    base: np.ndarray  # per reading: where its section's channels start in ``series``
    convert: tuple[np.ndarray, np.ndarray] | None  # (scale, offset) beside ``series``; None: all in the site's units
    counts: np.ndarray  # readings of each section


class PartitionProcessor:
    def __init__(self, registry: Registry, keys: KeyRing, settings: Settings = Settings(), qa=None) -> None:
        self.registry, self.keys, self.settings = registry, keys, settings
        self.qa = qa  # streams.core.qa.QaState or None: out-of-control hours are marked before the monthly rollup
        self.policy = get_policy(settings.policy)
        self.minutes = Accumulator.empty(MINUTE_NS)  # open minute cells
        self.hours: dict[int, Accumulator] = {}  # hour start -> hour cells of the minutes folded so far
        self.folded: dict[int, np.ndarray] = {}  # hour start -> per source, bit m set: minute m folded
        self.sources_of_agent: dict[str, set[int]] = {}
        self.hole_open = np.zeros(len(registry.sources), dtype=bool)  # the source's agent misses batches
        self.trackers: dict[str, SeqTracker] = {}
        self.watermark = np.full(len(registry.sources), _NEVER, dtype=np.int64)  # newest reading per source
        self.clock_ns = _NEVER  # newest Kafka timestamp seen in the partition
        self.published: dict[int, dict[int, HourlyRecord]] = {}  # hour start -> source index -> last record
        self.closed_upto = np.full(len(registry.sources), _NEVER, dtype=np.int64)  # hours before this are published
        self.next_offset = 0
        self._tables: dict = {}
        self._plans: dict = {}  # agent batch section tables -> _Plan
        self._dirty_hours: set[int] = set()  # hours whose cells or records changed since the last checkpoint
        self._chunk_means: dict[int, set[int]] = {}  # HJ 212 means accepted in the current chunk: source -> minutes
        self._saved: set[str] = set()  # segments the last checkpoint left saved
        self._lateness = int(settings.allowed_lateness_s * 1e9)
        self._horizon = int(settings.revision_horizon_s * 1e9)
        self._skew = int(settings.max_clock_skew_s * 1e9)
        self._fold = int(settings.fold_lateness_s * 1e9)
        self.monthly = MonthlyRollup(registry, self.policy, settings.substitution, settings.substitution_lookback_h,
                                     self._horizon, settings.part75_limits)
        self.findings = IndicatorStream(registry, lateness_s=settings.allowed_lateness_s,
                                        horizon_s=settings.revision_horizon_s)

    # -- one chunk of messages -------------------------------------------------------------------

    def process(self, messages: list[Message]) -> Output:
        out = Output()
        parts: list[tuple[np.ndarray, ...]] = []  # readings' columns
        means: list[tuple[np.ndarray, ...]] = []  # period means' columns
        touched: set[tuple[int, int]] = set()  # (source, hour start ns)
        self._chunk_means = {}
        checked = check_messages([(m.value, m.headers) for m in messages], self.keys)  # columns once per chunk
        for m, c in zip(messages, checked, strict=True):
            self.next_offset = max(self.next_offset, m.offset + 1)
            self.clock_ns = max(self.clock_ns, m.timestamp_ms * 1_000_000)
            for batch in self._accept(m, c, out):
                (means if batch.means else parts).append(batch.columns)
                for src, first, last in batch.spans:
                    touched.update((src, h) for h in range(first // HOUR_NS * HOUR_NS, last + ROUND_NS + 1, HOUR_NS))
        if parts:
            series, ts, value, flag = (np.concatenate(c) for c in zip(*parts, strict=True))
            out.readings = int(ts.size)
            self.minutes = self.minutes.absorb_readings(series, ts, value, flag, bounds=self.registry.bounds,
                                                        set_values_valid=self.registry.set_values_valid)
        out.minutes = self._fold_minutes()
        if means:
            out.readings += sum(p[1].size for p in means)
            averaged = self._fold_means(means)
            out.minutes = averaged if out.minutes is None else concat_tables([out.minutes, averaged])
        out.hourly = self._publish(touched)
        out.indicators = self.findings.update(out.minutes, np.maximum(self.watermark, self.clock_ns))
        if self.qa is not None:
            out.hourly = self.qa.gate(out.hourly)
        out.monthly = self.monthly.update(out.hourly)
        out.gaps = [GapReport(a, h, self.trackers[a].missing, self.trackers[a].highest, self.clock_ns)
                    for a, h in out.holes.items()]
        self._evict()
        return out

    def _accept(self, m: Message, checked, out: Output) -> list[_Accepted]:
        """A checked message's batches that pass every check (one, or one per source of an agent batch, wire
        version 3); dead letters, duplicates and counts go into ``out``. The sequence number is the message's: a
        repeat drops every section; it is recorded once if any section is absorbed or counted, and, as for a
        single batch, not when every section is refused (the gap report then shows it)."""
        if isinstance(checked, Rejection):
            out.dead_letters.append((m, checked))
            return []
        tracker = self.trackers.setdefault(checked.agent_id, SeqTracker())
        if tracker.seen(checked.seq):
            out.duplicates += 1
            return []
        sectioned = isinstance(checked, AgentBatch)
        accepted: list[_Accepted] = []
        recorded: list[int] = []
        if sectioned:  # the clean sections at once; the others (if any) one by one below
            whole, unusual = self._absorb_clean(m, checked)
            if whole is not None:
                accepted.append(whole)
                recorded += [s for s, _, _ in whole.spans]
            sections = [checked.sections[k] for k in unusual]
        else:
            sections = [checked]
        for b in sections:
            verdict = self._section(m, b, out)
            if isinstance(verdict, Rejection):
                if sectioned:  # the other sections are absorbed: say which one this is
                    verdict = replace(verdict, detail=f"source {b.source_id!r}: {verdict.detail}",
                                      source_id=b.source_id)
                out.dead_letters.append((m, verdict))
                continue
            src, batch = verdict
            recorded.append(src)
            if batch is not None:
                accepted.append(batch)
        if recorded or (sectioned and not checked.source_ids):
            self._record_seq(checked.agent_id, checked.seq, tracker, recorded, out)
        return accepted

    def _section(self, m: Message, b: ReadingBatch, out: Output) -> Rejection | tuple[int, _Accepted | None]:
        """One batch of a new sequence number: refused, or its source and (with readings to absorb) its columns."""
        src = self.registry.index.get(b.source_id)
        if src is None:
            return Rejection("unknown_source", f"source {b.source_id!r} is in no registered site file")
        table = self._table(b.source_id, b.channels)
        span = (int(b.ts_ns.min()), int(b.ts_ns.max())) if b.ts_ns.size else None
        reject = self._judge(m, b, src, table, span)
        if isinstance(reject, str):  # "not_fed" or "repeat": counted, sequence recorded, nothing absorbed
            out.not_fed += reject == "not_fed"
            out.duplicates += reject == "repeat"
            return src, None
        if reject is not None:
            return reject
        if span is None:
            return src, None
        first, last = span
        self.watermark[src] = max(self.watermark[src], last)
        if self.closed_upto[src] == _NEVER:  # a source's first data: its hours count from here on
            self.closed_upto[src] = first // HOUR_NS * HOUR_NS
        value = b.value
        if table.convert is not None:  # to the site file's units, per reading by its channel's factors
            scale, offset = table.convert
            value = value * scale[b.channel] + offset[b.channel]
        return src, _Accepted((table.series[b.channel], b.ts_ns, value, b.flag), [(src, first, last)],
                              bool(self.registry.feed_period_s[src]))

    # -- agent batches (wire version 3): the sections of a message that need nothing special, vectorised ----------

    def _absorb_clean(self, m: Message, ab: AgentBatch) -> tuple[_Accepted | None, list[int]]:
        """An agent batch's clean sections (known source and table, samples, readings, none future, too late or near
        a folded minute) absorbed together, a handful of numpy calls for the whole message instead of a batch's
        checks per section; and the indices of the other sections, for the exact per-section path (:meth:`_section`,
        whose verdict they get). The result is the same as every section through :meth:`_section`: the screen only
        sends on what it cannot tell is clean, and sources are unique within a message."""
        plan = self._plan(ab)
        if not plan.clean.size:
            return None, plan.unclean
        first = np.minimum.reduceat(ab.ts_ns, plan.starts)[plan.pick]  # per non-empty section, then the clean ones
        last = np.maximum.reduceat(ab.ts_ns, plan.starts)[plan.pick]
        srcs = plan.source
        wm = self.watermark[srcs]
        ok = ((last <= m.timestamp_ms * 1_000_000 + self._skew)  # else future_timestamp
              & (first >= np.maximum(wm, self.clock_ns) - self._horizon)  # else too_late
              & (first // MINUTE_NS * MINUTE_NS + MINUTE_NS + self._fold > wm))  # else maybe minute_closed
        unusual, absorbed = plan.unclean, plan.clean
        if not ok.all():
            if not ok.any():
                return None, list(range(plan.counts.size))
            unusual = sorted(unusual + plan.clean[~ok].tolist())
            absorbed, srcs, first, last, wm = absorbed[ok], srcs[ok], first[ok], last[ok], wm[ok]
        self.watermark[srcs] = np.maximum(wm, last)
        new = self.closed_upto[srcs] == _NEVER  # a source's first data: its hours count from here on
        if new.any():
            self.closed_upto[srcs[new]] = first[new] // HOUR_NS * HOUR_NS
        at = ab.channel + plan.base  # each reading's channel in the flattened table
        value = ab.value
        if plan.convert is not None:  # to the site file's units, per reading by its channel's factors
            scale, offset = plan.convert
            value = value * scale[at] + offset[at]
        columns = (plan.series[at], ab.ts_ns, value, ab.flag)
        if unusual:
            whole = np.zeros(plan.counts.size, bool)
            whole[absorbed] = True
            keep = np.repeat(whole, plan.counts)
            columns = tuple(c[keep] for c in columns)  # type: ignore[assignment]
        return _Accepted(columns, list(zip(srcs.tolist(), first.tolist(), last.tolist(), strict=True)), False), unusual

    def _plan(self, ab: AgentBatch) -> _Plan:
        """:class:`_Plan` of an agent batch's section table, cached on its metadata bytes (which hold the table and
        the reading counts, so an agent repeats them every interval)."""
        key = ab.meta or (ab.source_ids, ab.channels, ab.offsets.tobytes())
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 100_000:
                self._plans.clear()
            plan = self._plans[key] = self._make_plan(ab)
        return plan

    def _make_plan(self, ab: AgentBatch) -> _Plan:
        counts = np.diff(ab.offsets)
        clean, src, series, scale, offset = [], [], [], [], []
        for k, (sid, period, chans, n) in enumerate(zip(ab.source_ids, ab.periods, ab.channels, counts.tolist(),
                                                        strict=True)):
            s = self.registry.index.get(sid, -1)
            table = self._table(sid, chans) if s >= 0 else None
            if table is not None and table.refusal is None and period == 0 and n > 0 \
                    and not self.registry.feed_period_s[s]:
                clean.append(k)
                src.append(s)
            series.append(table.series if table is not None else np.full(len(chans), -1, np.int64))
            conv = table.convert if table is not None else None
            scale.append(conv[0] if conv is not None else np.ones(len(chans)))
            offset.append(conv[1] if conv is not None else np.zeros(len(chans)))
        sizes = np.array([len(c) for c in ab.channels], np.int64)
        place = np.cumsum(counts > 0) - 1  # a non-empty section's place among the non-empty ones
        sc, of = _flat(scale, np.float64), _flat(offset, np.float64)
        taken = set(clean)
        return _Plan(np.array(clean, np.int64), [k for k in range(counts.size) if k not in taken],
                     np.array(src, np.int64), ab.offsets[:-1][counts > 0], place[clean], _flat(series, np.int64),
                     np.repeat(np.cumsum(sizes) - sizes, counts).astype(np.intp),
                     None if (sc == 1.0).all() and (of == 0.0).all() else (sc, of), counts)

    def _judge(self, m: Message, b: ReadingBatch, src: int, table: _ChannelMap,
               span: tuple[int, int] | None) -> Rejection | _Counted | None:
        """Why a batch of a registered source is not absorbed (None: it is). ``span``: its first and last reading
        time [ns], None when it has no readings."""
        if table.refusal is not None:
            return table.refusal
        if b.period_s != self.registry.feed_period_s[src]:  # HJ 212 data that do not feed the figures
            return "not_fed"
        if span is None:
            return None
        first, last = span
        if last > m.timestamp_ms * 1_000_000 + self._skew:
            return Rejection("future_timestamp", f"newest reading {last} ns is after the message "
                                                 f"time {m.timestamp_ms} ms plus {self._skew / 1e9:g} s")
        if first < self._now(src) - self._horizon:
            return Rejection("too_late", f"oldest reading {first} ns is beyond the revision "
                                         f"horizon of {self._horizon / 3.6e12:g} h")
        if b.period_s:  # means fold at once: any folded minute is checked, however recent
            return self._check_means(src, table, b)
        if first // MINUTE_NS * MINUTE_NS + MINUTE_NS + self._fold <= self.watermark[src] and (
                closed := self._folded_minutes(src, b.ts_ns)):
            return Rejection("minute_closed", f"{closed} minute(s) of the batch were already closed, the "
                                              f"first at {first} ns or later")
        return None

    def _record_seq(self, agent_id: str, seq: int, tracker: SeqTracker, srcs: list[int], out: Output) -> None:
        before = tracker.missing
        tracker.add(seq)
        mine = self.sources_of_agent.setdefault(agent_id, set())
        mine.update(srcs)
        if tracker.missing != before:  # a hole opened (seq skipped ahead) or closed (a late batch filled it)
            out.holes[agent_id] = tracker.holes()
        if tracker.missing or tracker.missing != before:
            self.hole_open[list(mine)] = tracker.missing > 0
        out.accepted += 1

    # -- HJ 212 period means (issue 16): closed minutes as they arrive --------------------------------------------

    def _check_means(self, src: int, table: _ChannelMap, b: ReadingBatch) -> Rejection | Literal["repeat"] | None:
        """A batch of means: refused if they cannot stand for minutes or some of their minutes are folded already;
        ``"repeat"`` when every one is (the same minutes again: a datalogger's retransmission in a new batch)."""
        try:
            minutes_from_averages(table.series[b.channel], b.ts_ns, b.period_s, b.value, b.flag)
        except ValueError as exc:
            return Rejection("bad_period", str(exc))
        k = b.period_s // 60
        minutes = np.unique(((b.ts_ns + ROUND_NS) // MINUTE_NS)[:, None] + np.arange(k))  # every minute covered
        pending = self._chunk_means.setdefault(src, set())
        mine = minutes.tolist()
        closed = self._folded_minutes(src, minutes * MINUTE_NS) + sum(m in pending for m in mine)
        if not closed:
            pending.update(mine)
            return None
        if closed == minutes.size:
            return "repeat"
        return Rejection("minute_closed", f"{closed} of the batch's {minutes.size} minutes were already received")

    def _fold_means(self, means: list[tuple[np.ndarray, ...]]) -> PeriodTable:
        """Means checked by :meth:`_check_means` -> closed minutes, folded into their hours at once."""
        src_of = self.registry.source_of_series
        periods = [int(self.registry.feed_period_s[src_of[p[0][0]]]) for p in means]  # batches with readings only
        tables = []
        for period in sorted(set(periods)):
            sel = [p for p, q in zip(means, periods, strict=True) if q == period]
            series, ts, value, flag = (np.concatenate(c) for c in zip(*sel, strict=True))
            tables.append(minutes_from_averages(series, ts, int(period), value, flag, bounds=self.registry.bounds,
                                                set_values_valid=self.registry.set_values_valid))
        table = concat_tables(tables) if len(tables) > 1 else tables[0]
        self._fold_table(table, src_of[table.series])
        return table

    # -- end of HJ 212 period means ------------------------------------------------------------------------------

    def _table(self, source_id: str, channels: tuple[ChannelSpec, ...]) -> _ChannelMap:
        """A batch's channel table against the site file, cached per table: the series of each channel, the
        conversion of its values to the site file's unit (``schemas.quantities.unit_conversion``), or why the batch
        is refused (an unknown channel; a quantity code the site file does not give the channel, e.g. CO2 sent as
        O2; a unit that does not convert). The table is the batch's own statement of what its values are, so a
        unit change at the edge is converted or refused, never absorbed as if in the old unit."""
        key = (source_id, channels)
        table = self._tables.get(key)
        if table is None:
            table = self._map_channels(source_id, channels)
            if len(self._tables) > 100_000:
                self._tables.clear()
            self._tables[key] = table
        return table

    def _map_channels(self, source_id: str, channels: tuple[ChannelSpec, ...]) -> _ChannelMap:
        series = np.array([self.registry.series_of.get((source_id, c.id), -1) for c in channels], dtype=np.int64)
        if (series < 0).any():
            unknown = [c.id for c, s in zip(channels, series, strict=True) if s < 0]
            return _ChannelMap(series, None,
                               Rejection("unknown_channel", f"source {source_id!r} has no channel(s) {unknown}"))
        factors = []
        for c, s in zip(channels, series.tolist(), strict=True):  # the channel table, not the readings
            site = self.registry.channel_of_series[s]
            if c.quantity != site.quantity:
                return _ChannelMap(series, None, Rejection("quantity_mismatch", (
                    f"source {source_id!r} channel {c.id!r}: the batch gives quantity code {c.quantity!r}, the site "
                    f"file {site.quantity!r}")))
            factor = unit_conversion(site.quantity, c.unit, site.unit)
            if factor is None:
                return _ChannelMap(series, None, Rejection("unit_mismatch", (
                    f"source {source_id!r} channel {c.id!r} ({site.quantity}): unit {c.unit!r} in the batch cannot "
                    f"be converted to the site file's {site.unit!r}")))
            factors.append(factor)
        if all(f == (1.0, 0.0) for f in factors):
            return _ChannelMap(series, None, None)
        scale, offset = (np.array(x, dtype=np.float64) for x in zip(*factors, strict=True))
        return _ChannelMap(series, (scale, offset), None)

    def _folded_minutes(self, src: int, ts_ns: np.ndarray) -> int:
        """How many minutes of a batch's readings were already folded (only asked for batches old enough)."""
        minute = np.unique((ts_ns + ROUND_NS) // MINUTE_NS)  # as the kernels assign readings to minutes
        hour = minute * MINUTE_NS // HOUR_NS * HOUR_NS
        bits = np.array([int(self.folded[h][src]) if h in self.folded else 0 for h in hour.tolist()], dtype=np.int64)
        return int(np.count_nonzero(bits & (np.int64(1) << (minute % 60))))

    def _now(self, src: int) -> int:
        """Event-time "now" of a source: its newest reading, or the partition clock if that is later."""
        return max(int(self.watermark[src]), self.clock_ns)

    # -- hours -----------------------------------------------------------------------------------

    def _fold_minutes(self) -> PeriodTable | None:
        """Close the minutes a source's own readings have passed by the fold lateness, unless its agent has a
        hole (or those the partition clock has passed by the revision horizon), and fold them into hour cells."""
        if not len(self.minutes):
            return None
        end = self.minutes.start_ns + MINUTE_NS
        src = self.registry.source_of_series[self.minutes.series]
        ready = (((end + self._fold <= self.watermark[src]) & ~self.hole_open[src])
                 | (end + self._horizon <= self.clock_ns))
        if not ready.any():
            return None
        table = self.minutes.select(ready).close(self.policy)
        self.minutes = self.minutes.select(~ready)
        self._fold_table(table, src[ready])
        return table

    def _fold_table(self, table: PeriodTable, fsrc: np.ndarray) -> None:
        """Closed minutes (of sources ``fsrc``) into their hour cells, and their minutes marked folded."""
        cells = hours_from_minutes(table)
        hour_of_cell = cells.start_ns
        for h in np.unique(hour_of_cell).tolist():
            part = cells.select(hour_of_cell == h)
            self.hours[h] = self.hours[h].merge(part) if h in self.hours else part
            self._dirty_hours.add(h)
        start = table.start_ns
        for h in np.unique(start // HOUR_NS * HOUR_NS).tolist():
            bits = self.folded.setdefault(h, np.zeros(len(self.registry.sources), dtype=np.int64))
            mine = start // HOUR_NS * HOUR_NS == h
            np.bitwise_or.at(bits, fsrc[mine], np.int64(1) << ((start[mine] - h) // MINUTE_NS))

    def _publish(self, touched: set[tuple[int, int]]) -> list[HourlyRecord]:
        """Records for every hour that became due (with data or not: an hour without readings is published
        as missing), and revisions for published hours that received data."""
        now = np.maximum(self.watermark, self.clock_ns)
        bound = (now - self._lateness - HOUR_NS) // HOUR_NS * HOUR_NS + HOUR_NS  # hours starting before are due
        due: set[tuple[int, int]] = set()  # (source, hour start ns)
        cems = self.registry.layout.cems  # process sources (meters) have minutes, not CO2 hours
        for s in np.flatnonzero(cems & (self.closed_upto != _NEVER) & (bound > self.closed_upto)).tolist():
            due.update((s, h) for h in range(int(self.closed_upto[s]), int(bound[s]), HOUR_NS))
            self.closed_upto[s] = bound[s]
        due.update(p for p in touched if cems[p[0]] and (p[0] in self.published.get(p[1], ())
                                                         or p[1] < self.closed_upto[p[0]]))
        return self._records(sorted(due)) if due else []

    def _records(self, due: list[tuple[int, int]]) -> list[HourlyRecord]:
        """Hour cells of the due (source, hour) pairs, folded and still-open minutes together, closed under the
        policy and turned into emissions."""
        due_src = np.array([s for s, _ in due], dtype=np.int64)
        due_hour = np.array([h for _, h in due], dtype=np.int64)
        wanted = due_src * (1 << 32) + due_hour // HOUR_NS

        def cell(acc: Accumulator) -> np.ndarray:
            return self.registry.source_of_series[acc.series] * (1 << 32) + acc.start_ns // HOUR_NS

        parts = []
        if len(self.minutes):
            open_minutes = self.minutes.select(np.isin(cell(self.minutes), wanted))
            parts.append(hours_from_minutes(open_minutes.close(self.policy)))
        for h in np.unique(due_hour).tolist():
            if h in self.hours:
                parts.append(self.hours[h].select(np.isin(cell(self.hours[h]), wanted)))
        cells = combine(parts) if parts else Accumulator.empty(HOUR_NS)
        hours = cells.close(self.policy)
        h0 = int(due_hour.min())
        n_hours = int((due_hour.max() - h0) // HOUR_NS) + 1
        em = hourly_emissions(hours, self.registry.n_series, self.registry.layout, h0, n_hours, self.policy.reference)
        keys, where = np.unique(cell(cells), return_inverse=True)
        per_cell = np.bincount(where, weights=cells.sample_flags.sum(axis=1), minlength=keys.size)
        readings = dict(zip(keys.tolist(), per_cell.astype(np.int64).tolist(), strict=True))
        out = []
        for s, h in zip(due_src.tolist(), due_hour.tolist(), strict=True):
            j = (h - h0) // HOUR_NS
            last = self.published.get(h, {}).get(s)
            source_id = self.registry.sources[s].id
            rec = HourlyRecord(
                entity_id=self.registry.entity_of[source_id], source_id=source_id, hour_start_ns=h,
                revision=0 if last is None else last.revision + 1, reason="closed" if last is None else "late_data",
                policy=self.policy.name, co2_kg=float(em.co2_kg[s, j]), co2_mg_m3=float(em.co2_mg_m3[s, j]),
                flow_m3_h=float(em.flow_m3_h[s, j]), operating=bool(em.operating[s, j]),
                measured=bool(em.measured[s, j]), missing=bool(em.missing[s, j]),
                readings=readings.get(s * (1 << 32) + h // HOUR_NS, 0),
                status="measured" if em.measured[s, j] else "missing" if em.missing[s, j] else "stopped",
                load=float(em.load[s, j]), analyser_off=bool(em.analyser_off[s, j]),
                co2_ambient=bool(em.co2_ambient[s, j]))
            if last is not None and last.content() == rec.content():
                continue  # late data that changes nothing: no new revision
            self.published.setdefault(h, {})[s] = rec
            self._dirty_hours.add(h)
            out.append(rec)
        return out

    def _evict(self) -> None:
        """Drop the state of hours past the revision horizon of the partition clock (every source's "now" is at
        least the clock, so no source can still revise them: their readings are ``too_late``)."""
        limit = self.clock_ns - self._horizon
        for store in (self.hours, self.folded, self.published):
            for h in [h for h in store if h + HOUR_NS < limit]:
                del store[h]

    # -- state -------------------------------------------------------------------------------------
    # Cut into segments so that a checkpoint writes what changed, not everything (``streams/runtime/state_store.py``):
    #   "core"          open minutes, folded-minute bits, watermarks, trackers, clock, next offset (every time)
    #   "hour:<ns>"     one hour's cells and published records (while it folds minutes or is revised)
    #   "monthly", "mday:<day>"  the monthly rollup's index and records, and one UTC day of its hour history

    def checkpoint(self) -> dict[str, bytes | None]:
        """The segments changed since the last checkpoint (``None``: a segment that is gone), to be saved over
        the previous ones; saving every checkpoint in order reproduces :meth:`snapshot`."""
        changed, live = self._segments(full=False)
        gone: dict[str, bytes | None] = dict.fromkeys(self._saved - live)
        self._saved, self._dirty_hours = live, set()
        return changed | gone

    def snapshot(self) -> bytes:
        """Every segment in one blob: everything needed to resume (for tests, the embedded mode, and tools)."""
        segments, _ = self._segments(full=True)
        return npz_bytes(**{name: np.frombuffer(data, dtype=np.uint8) for name, data in segments.items()})

    def _segments(self, full: bool) -> tuple[dict[str, bytes], set[str]]:
        live_hours = set(self.hours) | set(self.published)
        folded_hours = sorted(self.folded)
        meta = {
            "next_offset": self.next_offset, "clock_ns": self.clock_ns,
            "trackers": {a: t.to_dict() for a, t in self.trackers.items()},
            "sources_of_agent": {a: sorted(v) for a, v in self.sources_of_agent.items()},
            "sources": [s.id for s in self.registry.sources],
        }
        out = {"core": npz_bytes(
            watermark=self.watermark, closed_upto=self.closed_upto, meta=json_array(meta),
            folded_hours=np.array(folded_hours, dtype=np.int64),
            folded=(np.stack([self.folded[h] for h in folded_hours]) if folded_hours
                    else np.zeros((0, len(self.registry.sources)), dtype=np.int64)),
            **{n: getattr(self.minutes, n) for n in Accumulator._ARRAYS})}
        for h in sorted(live_hours if full else self._dirty_hours & live_hours):
            cells = self.hours.get(h, Accumulator.empty(HOUR_NS))
            records = [r.to_json().decode() for r in self.published.get(h, {}).values()]
            arrays = {n: getattr(cells, n) for n in Accumulator._ARRAYS}
            out[f"hour:{h}"] = npz_bytes(meta=json_array(records), **arrays)
        monthly, monthly_live = self.monthly.segments(full)
        findings, findings_live = self.findings.segments(full)
        return out | monthly | findings, {"core"} | {f"hour:{h}" for h in live_hours} | monthly_live | findings_live

    def restore(self, state: bytes | dict[str, bytes]) -> None:
        """Resume from :meth:`snapshot`'s blob or from the saved segments."""
        if isinstance(state, bytes | bytearray):
            z = np.load(io.BytesIO(state))
            state = {name: z[name].tobytes() for name in z.files}
        z = np.load(io.BytesIO(state["core"]))
        meta = json.loads(z["meta"].tobytes())
        if meta["sources"] != [s.id for s in self.registry.sources]:
            raise ValueError("snapshot was taken with another set of registered sources")
        self.minutes = Accumulator.from_arrays(MINUTE_NS, z)
        self.folded = {h: row.copy() for h, row in zip(z["folded_hours"].tolist(), z["folded"], strict=True)}
        self.watermark, self.closed_upto = z["watermark"].copy(), z["closed_upto"].copy()
        self.next_offset, self.clock_ns = int(meta["next_offset"]), int(meta["clock_ns"])
        self.trackers = {a: SeqTracker.from_dict(d) for a, d in meta["trackers"].items()}
        self.sources_of_agent = {a: set(v) for a, v in meta["sources_of_agent"].items()}
        self.hole_open = np.zeros(len(self.registry.sources), dtype=bool)
        for a, srcs in self.sources_of_agent.items():
            self.hole_open[list(srcs)] = self.trackers[a].missing > 0
        self.hours, self.published = {}, {}
        for name in (n for n in state if n.startswith("hour:")):
            h, z = int(name[5:]), np.load(io.BytesIO(state[name]))
            cells = Accumulator.from_arrays(HOUR_NS, z)
            if len(cells):
                self.hours[h] = cells
            for text in json.loads(z["meta"].tobytes()):
                r = HourlyRecord.from_json(text.encode())
                self.published.setdefault(h, {})[self.registry.index[r.source_id]] = r
        self.monthly.restore_segments(state)
        self.findings.restore_segments(state)
        self._saved, self._dirty_hours = set(state), set()

