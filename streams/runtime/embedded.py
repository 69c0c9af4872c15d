"""The whole pipeline in one process, with no Kafka and no InfluxDB: for a single site, a first look, or the demo.

Recorded reading batches (files in the wire format, versions 1-3 in any mix, e.g. an edge outbox's ``*.batch``) go as
signed messages through the same :class:`~streams.core.processor.PartitionProcessor` the faust worker drives, so the
hourly and monthly records, sequence numbers and section refusals are the stream's; the closed minutes become the
grids of the data-quality indicators and the meters' totals; the self-reported files are reconciled by
:func:`streams.core.reconcile.reconcile_month`; every closed month lands in the file-based
:class:`~streams.archive.store.Archive` (SQLite), which ``cems archive serve`` and ``cems console serve`` put on
localhost. The demo (``streams/cli/demo.py``) records its simulated plants as an edge outbox and comes through here
like any recording.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ingest.accounting import load_reports
from ingest.batches import KeyRing, Rejection
from schemas import envelope
from schemas.accounting import AccountingReport
from schemas.agent_batch import AgentBatch, decode_message
from schemas.batch import AGENT_VERSION, ReadingBatch
from schemas.errors import BatchDecodeError, UnsupportedSchemaVersion
from schemas.records import HourlyRecord, MonthlyRecord
from schemas.site import Entity
from streams.archive.store import Archive
from streams.core.figures import alert_figures, calculated, hourly_figures, month_figures
from streams.core.monthly import month_bounds, month_range
from streams.core.processor import Message, PartitionProcessor, Registry, Settings
from streams.core.qa import QaState, qa_figures
from streams.core.reconcile import MonthEvidence, ReconcilePolicy, metered_totals, reconcile_month
from streams.kernels.aggregate import MINUTE_NS, PeriodTable, concat_tables
from streams.kernels.indicators import Grid

__all__ = ["RECORDING_REASONS", "DeadLetter", "PlantResult", "Recording", "archive_plants", "batch_files",
           "other_files", "process_entity", "reconcile_plants", "repeated_readings", "run_batches", "run_recorded",
           "write_dead_letters", "write_records"]

@dataclass
class PlantResult:
    """One entity's records, minute grid and reconciliation, as the report, the archive and the CLI use them."""

    entity: Entity
    hourly: list[HourlyRecord]
    monthly: list[MonthlyRecord]
    minutes: Grid | None  # None: records read back from the services (their minutes are in InfluxDB)
    series: list[tuple[str, str]]
    metered: dict[str, float]
    readings: int
    alerts: list = field(default_factory=list)
    report: AccountingReport | None = None
    meters: dict[str, str] = field(default_factory=dict)  # "source/channel" -> what the meter measures
    calculated: dict[str, float] = field(default_factory=dict)
    qa: QaState | None = None  # the QA state that gated the hours (None: no QA records given)
    dead_letters: list[tuple[int, Rejection]] = field(default_factory=list)  # (message offset, why) the processor
    holes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # agent -> sequence ranges never received


def _channels(entity: Entity) -> dict:
    return {(s.id, c.id): (c.quantity, c.unit) for s in entity.sources for c in s.channels}


#: Why a recorded batch file is dead-lettered besides the stream's own reasons (``ingest.batches.REASONS``,
#: ``streams.core.processor.PROCESSOR_REASONS``): what only a whole recording on disk shows.
RECORDING_REASONS = {
    "unreadable": "the file could not be read",
    "seq_reused": "another file of the recording has the same agent and sequence number but other bytes",
    "duplicate_readings": "readings of a channel at a time an earlier batch of the recording already gave (the same "
                          "readings under a new sequence number): absorbing them would count them twice",
}


@dataclass(frozen=True)
class DeadLetter:
    """A batch file the run did not use, or one section of a version-3 file whose other sections it did: where it
    was, why (a reason code), what exactly, its bytes as read (the whole file's), and the section's source id."""

    path: Path
    reason: str
    detail: str
    data: bytes
    section: str | None = None  # the source of the one section refused (the stream's ``cems-dlq-section``)


@dataclass
class Recording:
    """What :func:`run_batches` made of a recording: the plants' results, and every file it did not use, and why."""

    results: list[PlantResult]
    dead_letters: list[DeadLetter]
    repeats: int = 0  # files repeating another byte for byte (same agent and sequence number): read once
    holes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # agent -> sequence ranges not recorded

    def by_reason(self) -> dict[str, int]:
        """Dead letters (files, and single sections of version-3 files) per reason code, most frequent first."""
        counts: dict[str, int] = {}
        for d in self.dead_letters:
            counts[d.reason] = counts.get(d.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def process_entity(entity: Entity, messages: list[Message], keys: dict[str, bytes], start: int, end: int,
                   settings: Settings = Settings(), qa_records: list | None = None,
                   qa_recompute: bool = False) -> PlantResult:
    """One entity's messages (time order) through a partition processor: records, and the closed minutes as a
    grid over [start, end) for the indicators and meters. Messages the processor refuses are in the result's
    ``dead_letters`` (message offset, rejection). The recording is all there is: at its end the minutes still open
    (a hole in a sequence keeps them open, waiting for the missing batch) are closed too, so that a missing batch
    only lowers a meter's coverage and never cuts its month short. ``qa_records`` (:mod:`schemas.qa`, this
    entity's): the QA state that marks out-of-control hours and applies results from their date
    (``streams/core/qa.py``); ``qa_recompute`` lets a result apply before its test (an explicit recomputation)."""
    registry = Registry([entity])
    qa = QaState(qa_records, registry, settings.policy, qa_recompute) if qa_records else None
    proc = PartitionProcessor(registry, KeyRing(keys=keys), settings, qa)
    hourly: list[HourlyRecord] = []
    monthly: dict[str, MonthlyRecord] = {}  # key -> the newest version
    minutes: list[PeriodTable] = []
    readings = 0
    dead: list[tuple[int, Rejection]] = []
    holes: dict[str, list[tuple[int, int]]] = {}
    for i in range(0, len(messages), 500):
        out = proc.process(messages[i:i + 500])
        dead += [(m.offset, r) for m, r in out.dead_letters]
        holes |= out.holes
        hourly += out.hourly
        monthly |= {r.key: r for r in out.monthly}
        readings += out.readings
        if out.minutes is not None and len(out.minutes):
            minutes.append(out.minutes)
    if len(proc.minutes):  # the end of the recording: nothing more will come for the minutes still open
        minutes.append(proc.minutes.close(proc.policy))
    series = [(s.id, c.id) for s in entity.sources for c in s.channels]
    n = (end - start) // MINUTE_NS
    grid = (Grid.from_table(concat_tables(minutes), registry.n_series, start, n) if minutes
            else Grid(np.full((len(series), n), np.nan), start))
    return PlantResult(entity, hourly, list(monthly.values()), grid, series, {}, readings, qa=qa, dead_letters=dead,
                       holes={a: h for a, h in holes.items() if h})


#: Files an edge outbox holds besides its batches (edge_agent/outbox.py): not batches, and not worth a word.
_OUTBOX_FILES = ("next_seq", "*.tmp")


def batch_files(paths: list[Path]) -> list[Path]:
    """The reading batches to run: files as given, and every ``*.batch`` under a directory and its subdirectories
    (an edge outbox, or a folder of outboxes, one per gateway), in path order."""
    out: list[Path] = []
    for p in paths:
        out += sorted(f for f in p.rglob("*.batch") if not f.is_dir()) if p.is_dir() else [p]  # a dangling link too
    return out


def other_files(paths: list[Path]) -> list[Path]:
    """Files under the directories of ``paths`` that :func:`batch_files` does not read (not ``*.batch``), less an
    outbox's own bookkeeping (``next_seq``, ``*.tmp``): for the run to say it skipped them."""
    out: list[Path] = []
    for p in (p for p in paths if p.is_dir()):
        out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix != ".batch"
                      and not any(f.match(g) for g in _OUTBOX_FILES))
    return out


class _Read(NamedTuple):
    path: Path
    data: bytes
    msg: AgentBatch  # any wire version, as schemas.agent_batch.decode_message reads it (versions 1-2: one section)


def _unknown_section(path: Path, data: bytes, source_id: str) -> DeadLetter:
    """A version-3 section whose source is in no site file: that section refused, as the stream processor refuses it
    (the detail prefixed with the source, the section named), the file's other sections read."""
    return DeadLetter(path, "unknown_source", f"source {source_id!r}: in none of the site files", data, source_id)


def _read_files(files: list[Path], entity_of: dict[str, Entity]) -> tuple[list[_Read], list[DeadLetter], int]:
    """Every file read and decoded once, wire versions 1-3 in any mix: the messages with a known source, the files
    refused (unreadable, undecodable, no known source, a sequence number reused for other bytes), the sections of
    version-3 files refused (a source in no site file: that section only), and how many files repeated another.
    A sequence number is the agent's whatever the version (``docs/wire-format.md``): one per version-3 message, which
    holds several sources, so a repeat is the same agent and number, as on the stream."""
    good: list[_Read] = []
    dead: list[DeadLetter] = []
    seen: dict[tuple[str, int], _Read] = {}
    repeats = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            dead.append(DeadLetter(path, "unreadable", exc.strerror or str(exc), b""))
            continue
        try:
            msg = decode_message(data)
        except UnsupportedSchemaVersion as exc:
            dead.append(DeadLetter(path, "unsupported_version", exc.detail, data))
            continue
        except BatchDecodeError as exc:
            dead.append(DeadLetter(path, "undecodable", f"{exc.reason}: {exc.detail}", data))
            continue
        sectioned = msg.version == AGENT_VERSION
        unknown = [s for s in msg.source_ids if s not in entity_of]
        if unknown and not sectioned:
            dead.append(DeadLetter(path, "unknown_source", f"source {unknown[0]!r} is in none of the site files",
                                   data))
            continue
        if unknown and len(unknown) == len(msg.source_ids):  # no section to read: refused before it takes a number
            dead += [_unknown_section(path, data, s) for s in unknown]
            continue
        first = seen.setdefault((msg.agent_id, msg.seq), _Read(path, data, msg))
        if first.path != path:
            if first.data == data:
                repeats += 1
            else:
                dead.append(DeadLetter(path, "seq_reused", f"agent {msg.agent_id!r} seq {msg.seq} is also "
                                                           f"{first.path}, with other bytes (that one is read)", data))
            continue
        dead += [_unknown_section(path, data, s) for s in unknown]
        good.append(first)
    return good, dead, repeats


def repeated_readings(batches: list[ReadingBatch]) -> dict[int, tuple[int, int]]:
    """Batches (of one source, in the order they are processed) that repeat readings of earlier ones: batch index ->
    (how many of its readings an earlier batch gave already: same channel id, same timestamp; the index of the
    first such earlier batch). Samples only: HJ 212 period means given twice are the processor's ``repeat``.

    Per channel id, one pass over the times of all the batches, not a comparison per batch pair: an edge agent cuts
    its batches at successive times, so two batches of one source never hold a reading of the same channel at the
    same instant unless the same readings were sent again; and where a channel's times already increase batch by
    batch (the usual recording) nothing is sorted."""
    codes: dict[str, int] = {}
    parts = []
    for i, b in enumerate(batches):
        if b.period_s or not b.ts_ns.size:
            continue
        table = np.array([codes.setdefault(c.id, len(codes)) for c in b.channels], dtype=np.int64)
        parts.append((np.full(b.ts_ns.size, i, dtype=np.int64), table[b.channel], b.ts_ns))
    if len(parts) < 2:
        return {}
    index, channel, ts = (np.concatenate(p) for p in zip(*parts, strict=True))
    counts = np.zeros(len(batches), dtype=np.int64)
    first = np.full(len(batches), len(batches), dtype=np.int64)
    for c in range(len(codes)):  # per channel id (configuration): one stable sort by time keeps the batch order
        mine = channel == c
        i, t = index[mine], ts[mine]
        if (t[1:] > t[:-1]).all():  # the usual recording: every channel's times strictly increase, batch by batch
            continue
        order = np.argsort(t, kind="stable")
        i, t = i[order], t[order]
        again = np.r_[False, t[1:] == t[:-1]]
        leader = i[np.flatnonzero(~again)][np.cumsum(~again) - 1]  # the first batch that gave each reading
        later = again & (i != leader)
        counts += np.bincount(i[later], minlength=len(batches))
        np.minimum.at(first, i[later], leader[later])
    return {int(k): (int(counts[k]), int(first[k])) for k in np.flatnonzero(counts)}


class _Part(NamedTuple):
    """What one recorded message gives one entity's processor: its sections of the entity's sources that the
    recording did not refuse (a version-1 or -2 file: its one batch)."""

    read: _Read
    sections: tuple[ReadingBatch, ...]

    @property
    def readings(self) -> int:
        return sum(s.ts_ns.size for s in self.sections)

    def first_ns(self) -> int:
        return min(int(s.ts_ns.min()) for s in self.sections if s.ts_ns.size)

    def wire(self) -> bytes:
        """The bytes the processor is given: the file's own when they are all this entity's, else a version-3 message
        of the same agent and number with only the sections it is to read (none: an empty message, which takes its
        number as an empty batch does). Local files are signed in process anyway; a dead letter keeps the file's."""
        msg = self.read.msg
        if len(self.sections) == len(msg.sections):
            return self.read.data
        return AgentBatch.from_sections(agent_id=msg.agent_id, seq=msg.seq, sections=self.sections).encode()


def _produced_ms(r: _Read) -> int:
    """When a recorded message is taken as produced [ms]: one second after its newest reading (of any section)."""
    return int(r.msg.ts_ns.max()) // 10**6 + 1000


def _with_empty(rows: list[_Part], produced: list[int], empty: list[_Part]) -> tuple[list[_Part], list[int]]:
    """Messages without readings for the entity put among the others after their agent's message numbered just below
    (produced at the same time), so that their sequence numbers are taken in order and never show as a hole."""
    if not empty:
        return rows, produced
    below: dict[str, tuple[list[int], list[int]]] = {}  # agent -> its rows' sequence numbers (ascending), positions
    for k, p in sorted(enumerate(rows), key=lambda kp: (kp[1].read.msg.agent_id, kp[1].read.msg.seq)):
        seqs, at = below.setdefault(p.read.msg.agent_id, ([], []))
        seqs.append(p.read.msg.seq)
        at.append(k)
    after: dict[int, list[_Part]] = {}  # row position (-1: before the first row) -> empties, in sequence order
    for e in sorted(empty, key=lambda p: (p.read.msg.agent_id, p.read.msg.seq)):
        seqs, at = below.get(e.read.msg.agent_id, ([], []))
        i = bisect.bisect_left(seqs, e.read.msg.seq)
        after.setdefault(at[i - 1] if i else -1, []).append(e)
    out = [(e, produced[0]) for e in after.get(-1, ())]
    for k, (r, t) in enumerate(zip(rows, produced, strict=True)):
        out += [(r, t)] + [(e, t) for e in after.get(k, ())]
    return [r for r, _ in out], [t for _, t in out]


def run_batches(entities: list[Entity], files: list[Path], meters: dict[str, str] | None = None,
                settings: Settings = Settings(), qa_records: list | None = None,
                qa_recompute: bool = False) -> Recording:
    """Recorded reading batches (files in the wire format, versions 1-3 in any mix, e.g. an edge outbox's
    ``*.batch``) through the processor, per entity; every file that cannot be used is a :class:`DeadLetter` with its
    reason, and the rest are processed as if it had never been there. A version-3 file (an agent batch: one
    message, one sequence number, a section per source) whose refusal concerns one source loses that section only,
    as on the stream: the dead letter names the section (``DeadLetter.section``), the other sections are read.

    Local files are trusted as they are: they are signed here with a key of this run (the signature guards the
    network, not the disk). Each message is stamped as produced one second after its newest reading. Months close by
    the data's own clock, as on the stream: a month whose end plus the allowed lateness the recording does not
    reach stays open (a recording of part of a month is never a whole month). ``qa_records``: QA records
    (``ingest.qa.load_records``) of the entities' analysers, which gate their hours."""
    import secrets

    unknown = sorted({r.site_id for r in qa_records or ()} - {e.id for e in entities})
    if unknown:
        raise ValueError(f"QA records of site(s) {unknown}, which are in none of the site files")
    key = secrets.token_bytes(32)
    entity_of = {s.id: e for e in entities for s in e.sources}
    good, dead, repeats = _read_files(files, entity_of)
    sections_of: list[dict[str, list[ReadingBatch]]] = []  # per message: entity id -> its sections of the entity
    for r in good:
        mine: dict[str, list[ReadingBatch]] = {}
        for s in r.msg.sections:
            if s.source_id in entity_of:
                mine.setdefault(entity_of[s.source_id].id, []).append(s)
        sections_of.append(mine)
    order: dict[str, list[int]] = {}  # entity id -> its messages with readings, in the order they are processed
    refused: set[tuple[int, str]] = set()  # (message, source): the same readings again under a new number
    for entity in entities:
        order[entity.id] = sorted(
            (i for i, m in enumerate(sections_of) if any(s.ts_ns.size for s in m.get(entity.id, ()))),
            key=lambda i: (_produced_ms(good[i]), good[i].msg.agent_id, good[i].msg.seq))  # a replay's seq is higher
        by_source: dict[str, list[tuple[int, ReadingBatch]]] = {}
        for i in order[entity.id]:
            for s in sections_of[i][entity.id]:
                by_source.setdefault(s.source_id, []).append((i, s))
        for source_id, mine_s in by_source.items():  # counted once: the later batch (or section) is refused
            for j, (count, first) in repeated_readings([s for _, s in mine_s]).items():
                i, s = mine_s[j]
                r = good[i]
                detail = (f"{count} of its {s.ts_ns.size} readings were given by {good[mine_s[first][0]].path} "
                          f"already (source {source_id!r}, agent {r.msg.agent_id!r} seq {r.msg.seq})")
                if r.msg.version == AGENT_VERSION:
                    dead.append(DeadLetter(r.path, "duplicate_readings", f"source {source_id!r}: {detail}", r.data,
                                           source_id))
                else:
                    dead.append(DeadLetter(r.path, "duplicate_readings", detail, r.data))
                refused.add((i, source_id))
    kept = [{e: tuple(s for s in secs if (i, s.source_id) not in refused) for e, secs in m.items()}
            for i, m in enumerate(sections_of)]
    # a message takes its number if any section of it is read (the stream's rule), or if it has none (empty)
    numbered = [not r.msg.source_ids or any(kept[i].values()) for i, r in enumerate(good)]
    results: list[PlantResult] = []
    holes: dict[str, list[tuple[int, int]]] = {}
    for entity in entities:
        rows = [_Part(good[i], kept[i][entity.id]) for i in order[entity.id]]
        rows = [p for p in rows if p.readings]
        if not rows:
            continue
        agents = {p.read.msg.agent_id for p in rows}
        taken = {id(p.read) for p in rows}
        # nothing to absorb, but their numbers count: empty batches, and the entity's agents' messages for other
        # entities only (an agent whose sources are in several site files), so that its sequence shows no false hole
        empty = [_Part(r, kept[i].get(entity.id, ())) for i, r in enumerate(good)
                 if numbered[i] and id(r) not in taken and (entity.id in sections_of[i] or r.msg.agent_id in agents)]
        _, start, _ = month_bounds(min(p.first_ns() for p in rows), entity.tz)
        _, _, end = month_bounds(_produced_ms(rows[-1].read) * 10**6 - 1, entity.tz)
        produced = [_produced_ms(p.read) for p in rows]
        rows, produced = _with_empty(rows, produced, empty)
        messages = []
        for i, (p, t) in enumerate(zip(rows, produced, strict=True)):
            data = p.wire()
            messages.append(Message(i, data, envelope.headers(p.read.msg.agent_id, p.read.msg.seq, key, data), t))
        agents |= {p.read.msg.agent_id for p in rows}
        qa = [r for r in qa_records or () if r.site_id == entity.id]
        res = process_entity(entity, messages, dict.fromkeys(agents, key), start, end, settings, qa, qa_recompute)
        dead += [DeadLetter(rows[offset].read.path, rej.reason, rej.detail, rows[offset].read.data, rej.source_id)
                 for offset, rej in res.dead_letters]
        holes |= res.holes
        res.meters = dict(meters or {})
        results.append(res)
    return Recording(results, dead, repeats, holes)


def run_recorded(entities: list[Entity], files: list[Path], meters: dict[str, str] | None = None,
                 settings: Settings = Settings(), qa_records: list | None = None,
                 qa_recompute: bool = False) -> list[PlantResult]:
    """:func:`run_batches` for a recording that must be whole (the demo's own): a file it cannot use is an
    error (``ValueError`` naming the file and why), not a dead letter."""
    rec = run_batches(entities, files, meters, settings, qa_records, qa_recompute)
    if rec.dead_letters:
        d = rec.dead_letters[0]
        raise ValueError(f"{d.path}: {d.reason}: {d.detail}")
    return rec.results


def write_dead_letters(dead_letters: list[DeadLetter], directory: Path) -> None:
    """Each dead letter into ``directory`` (made afresh: a run's dead letters, not an accumulation): its bytes as
    read under a numbered copy of its name, and beside it ``<name>.json`` with the file it came from, the reason
    code, the detail and (one section of a version-3 file) the section's source, for ``cems batch inspect`` and for
    sending it again once mended."""
    import json
    import shutil

    if directory.exists():
        shutil.rmtree(directory)
    if not dead_letters:
        return
    directory.mkdir(parents=True)
    for k, d in enumerate(sorted(dead_letters, key=lambda d: str(d.path))):
        name = f"{k:05d}-{d.path.name}"
        (directory / name).write_bytes(d.data)
        (directory / f"{name}.json").write_text(json.dumps(
            {"file": str(d.path), "reason": d.reason, "detail": d.detail, "bytes": len(d.data)}
            | ({"section": d.section} if d.section is not None else {}), indent=1) + "\n",
            encoding="utf-8")


def reconcile_plants(results: list[PlantResult], report_files: list[Path],
                     policy: ReconcilePolicy = ReconcilePolicy()) -> None:
    """Reconcile each entity's months against its reports (all files validated together, all or nothing)."""
    reports = {(r.entity_id, r.month): r for f in report_files for r in load_reports(f) if r.source_id is None}
    for res in results:
        res.alerts = []
        g = res.minutes
        if g is None:
            raise ValueError(f"{res.entity.id}: no minute grid to reconcile (records read back from the services)")
        for label in sorted({m.month for m in res.monthly}):  # one bundle per month, every source of it
            ms = [m for m in res.monthly if m.month == label]
            m = ms[0]
            report = reports.get((res.entity.id, m.month))
            _, start, end = month_bounds(m.month_start_ns, res.entity.tz)
            a, b = ((x - g.start_ns) // MINUTE_NS for x in (start, end))
            month_grid = Grid(g.mean[:, a:b], start, g.period_ns, g.flag[:, a:b], g.operating[:, a:b],
                              g.calibrating[:, a:b])
            res.alerts += reconcile_month(MonthEvidence(
                entity=res.entity, month=m.month, report=report,
                monthly=ms if all(x.status == "closed" for x in ms) else [], minutes=month_grid,
                metered=metered_totals(month_grid, res.series, _channels(res.entity), res.meters),
                series=res.series), policy)  # no CO2max: no trusted history to calibrate on
            if report is not None:  # the report of the (last) month, for the summary and the archive
                res.report, res.calculated = report, calculated(report)


def archive_plants(results: list[PlantResult], archive: Archive, at: datetime | None = None) -> None:
    """Each plant's closed months into the archive: the entity's total with the report and alerts, and each source.
    A month still open (its end plus the allowed lateness not yet reached by the data) is not archived."""
    for res in results:
        for label in sorted({m.month for m in res.monthly}):
            ms = [m for m in res.monthly if m.month == label]
            if any(m.status != "closed" for m in ms):  # open months are not archived
                continue
            qa = qa_figures(res.qa, res.entity, label, res.monthly, res.hourly)
            alerts = [alert_figures(a) for a in res.alerts + qa.pop("findings")]
            region = res.entity.region
            archive.register(res.entity.id, res.entity.timezone, label, region.province if region else "",
                             region.municipality if region else "", at)
            reason = "qa_recompute" if res.qa and res.qa.recompute else "report" if res.report else "cems"
            archive.put(res.entity.id, None, label, month_figures(ms, res.calculated, alerts), reason, at)
            start, end = month_range(label, res.entity.tz)
            for m in ms:
                archive.put(res.entity.id, m.source_id, label, month_figures([m]) | qa["sources"].get(m.source_id, {}),
                            reason, at)
                hours = [h for h in res.hourly if h.source_id == m.source_id]
                archive.put_hourly(res.entity.id, m.source_id, label, hourly_figures(hours, m, start, end), at)


def write_records(results: list[PlantResult], out: Path) -> tuple[Path, Path]:
    """Every hour's and month's latest record as CSV (``hourly.csv``, ``monthly.csv`` in ``out``): what a user or an
    independent check compares, hour by hour (status, CO2, concentration, flow) and month by month."""
    import csv

    from schemas.records import HourlyRecord, MonthlyRecord

    paths = out / "hourly.csv", out / "monthly.csv"
    for path, cls, rows in ((paths[0], HourlyRecord, [r for res in results for r in res.hourly]),
                            (paths[1], MonthlyRecord, [r for res in results for r in res.monthly])):
        latest = {}
        for r in rows:  # revisions in order: the last one of each key wins
            latest[r.key] = r
        names = list(cls.__dataclass_fields__)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow((["hour_start"] if cls is HourlyRecord else []) + names)
            for r in sorted(latest.values(), key=lambda r: r.key):
                values = ["" if v is None or (isinstance(v, float) and v != v) else v
                          for v in (getattr(r, n) for n in names)]
                w.writerow(([r.hour_iso] if isinstance(r, HourlyRecord) else []) + values)
    return paths
