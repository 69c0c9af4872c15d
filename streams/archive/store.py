"""The monthly archive: what the monthly evidence filing pulls, immutable, versioned and tamper-evident.

One entry per entity, source and local month (``source`` ``-``: the entity's total): CO2 measured by the CEMS,
CF4, C2F6 and CO2e, operating, valid and substituted hours, completeness, the CO2 calculated from the report and the
deviation, and the month's alerts. Entries are never changed in place: a revision (late data, a corrected report,
a new alert) is appended as the next ``version`` with its ``reason``.

**Hash chain.** Every version carries ``hash = sha256(prev_hash + canonical JSON of the version)``, chained over
*all* versions in the order they were archived (a ledger), so changing, inserting or removing any archived
version breaks every hash after it: :meth:`Archive.verify` recomputes the chain and names the first broken link.
(Cutting the newest versions off the end leaves a valid shorter chain: publish the head hash elsewhere, e.g. in
the monthly filing, to catch that too.)

**Deadlines.** Key parameters are archived monthly within 40 days after the month's end (docs/sources.md CN-REVIEW):
:meth:`Archive.deadlines` reports, per entity and month, whether the month is archived in time, late, still due or
missing. Storage is one SQLite file (standard library; the embedded mode's store, or the archive service's).

**Records.** Besides the monthly versions, the same chain holds :class:`Record` rows of other kinds, appended with
:meth:`Archive.append` and never changed: ``entity`` (an entity's time zone and region, GB/T 2260 province and
municipality codes, written by :meth:`Archive.register` when they change), ``hourly`` (a source-month's hourly CO2
and status, :func:`hourly_figures`), and the console's ``evidence``, ``submission``, ``review`` and
``alert_action`` (``streams/console``). Evidence files are content-addressed blobs (sha256, stored once):
:meth:`Archive.verify` checks each one against the hash its ``evidence`` record carries.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["DEADLINE_DAYS", "FIELDS", "Archive", "ArchiveError", "Record", "deadline_of"]

#: Days after the month's end by which the month's key parameters are archived (docs/sources.md CN-REVIEW).
DEADLINE_DAYS = 40
GENESIS = "0" * 64

#: The figures of an entry, in export column order (units in the names).
FIELDS = ("co2_t", "measured_co2_t", "substituted_co2_t", "cf4_t", "c2f6_t", "co2e_t", "hours_in_month",
          "operating_hours", "measured_hours", "substituted_hours", "missing_hours", "valid_days", "valid",
          "completeness", "calculated_co2_t", "deviation", "deviation_measured", "alerts")


class ArchiveError(ValueError):
    """A bad request to the archive (unknown month format, unknown export format...): a 4xx, never a 500."""


def deadline_of(month: str, tz: ZoneInfo) -> datetime:
    """End of the 40th day after the local month's end (the month's archive deadline)."""
    y, m = _month(month)
    end = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=tz)
    return end + timedelta(days=DEADLINE_DAYS)


def _month(month: str) -> tuple[int, int]:
    try:
        y, m = (int(x) for x in month.split("-"))
        date(y, m, 1)
    except (ValueError, TypeError):
        raise ArchiveError(f"month must be YYYY-MM, got {month!r}") from None
    return y, m


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Entry:
    seq: int
    entity_id: str
    source_id: str  # "-": the entity's total
    month: str
    version: int
    reason: str
    archived_at: str  # ISO 8601 UTC
    figures: dict
    prev_hash: str
    hash: str

    def body(self) -> dict:
        """What the hash covers: everything but the hash itself."""
        return {"seq": self.seq, "entity_id": self.entity_id, "source_id": self.source_id, "month": self.month,
                "version": self.version, "reason": self.reason, "archived_at": self.archived_at,
                "figures": self.figures, "prev_hash": self.prev_hash}

    def row(self) -> dict:
        """Flat, for CSV and Parquet (alerts as JSON text)."""
        flat = {k: self.figures.get(k) for k in FIELDS}
        flat["alerts"] = json.dumps(self.figures.get("alerts", []), ensure_ascii=False)
        return {"entity_id": self.entity_id, "source_id": self.source_id, "month": self.month,
                "version": self.version, "reason": self.reason, "archived_at": self.archived_at, **flat,
                "hash": self.hash}


@dataclass(frozen=True)
class Record:
    """One non-figure row of the chain (kind: entity | hourly | evidence | submission | review | alert_action)."""

    seq: int
    kind: str
    entity_id: str
    month: str  # "" for an entity-wide record
    at: str  # ISO 8601 UTC
    data: dict
    prev_hash: str
    hash: str

    def body(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "entity_id": self.entity_id, "month": self.month, "at": self.at,
                "data": self.data, "prev_hash": self.prev_hash}


class Archive:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("""CREATE TABLE IF NOT EXISTS versions (
            seq INTEGER PRIMARY KEY, entity_id TEXT NOT NULL, source_id TEXT NOT NULL, month TEXT NOT NULL,
            version INTEGER NOT NULL, reason TEXT NOT NULL, archived_at TEXT NOT NULL, figures TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (entity_id, source_id, month, version))""")
        self.db.execute("""CREATE TABLE IF NOT EXISTS entities (
            entity_id TEXT PRIMARY KEY, timezone TEXT NOT NULL, first_month TEXT NOT NULL)""")
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(entities)")}
        for column in ("province", "municipality"):  # region columns, added to archives made before them
            if column not in columns:
                self.db.execute(f"ALTER TABLE entities ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        self.db.execute("""CREATE TABLE IF NOT EXISTS records (
            seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, entity_id TEXT NOT NULL, month TEXT NOT NULL,
            at TEXT NOT NULL, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""")
        self.db.execute("CREATE INDEX IF NOT EXISTS records_by_key ON records (kind, entity_id, month)")
        self.db.execute("CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL)")

    def close(self) -> None:
        self.db.close()

    # -- writing ------------------------------------------------------------------------------------

    def register(self, entity_id: str, timezone: str, first_month: str, province: str = "",
                 municipality: str = "", at: datetime | None = None) -> None:
        """An entity whose months are due from ``first_month`` on (for the deadline report), in its region (GB/T
        2260 codes from the site file). A new time zone or region is also appended to the chain (``entity``)."""
        _month(first_month)
        ZoneInfo(timezone)
        with self._txn():
            self.db.execute("INSERT OR REPLACE INTO entities (entity_id, timezone, first_month, province, municipality)"
                            " VALUES (?, ?, ?, ?, ?)", (entity_id, timezone, first_month, province, municipality))
            data = {"timezone": timezone, "province": province, "municipality": municipality}
            last = self._records("WHERE kind='entity' AND entity_id=? ORDER BY seq DESC LIMIT 1", (entity_id,))
            if not last or last[0].data != data:
                self._append("entity", entity_id, "", data, at)

    def entities(self) -> list[dict]:
        """Registered entities: id, time zone, first month, province and municipality."""
        cur = self.db.execute("SELECT entity_id, timezone, first_month, province, municipality FROM entities "
                              "ORDER BY entity_id")
        columns = ("entity_id", "timezone", "first_month", "province", "municipality")
        return [dict(zip(columns, r, strict=True)) for r in cur]

    def append(self, kind: str, entity_id: str, month: str, data: dict, at: datetime | None = None) -> Record:
        """A record at the head of the chain (``month`` "" for an entity-wide one). Never changed afterwards."""
        if month:
            _month(month)
        with self._txn():
            return self._append(kind, entity_id, month, data, at)

    def _append(self, kind: str, entity_id: str, month: str, data: dict, at: datetime | None) -> Record:
        seq, prev = self._next()
        rec = Record(seq, kind, entity_id, month, _stamp(at), json.loads(_canonical(data)), prev, "")
        rec = Record(**{**rec.__dict__, "hash": _hash(rec)})
        self.db.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", (rec.seq, kind, entity_id, month, rec.at,
                                                                         _canonical(rec.data), prev, rec.hash))
        return rec

    def put_blob(self, data: bytes) -> str:
        """Store a file once under its sha256 (hex); the same content again stores nothing."""
        digest = hashlib.sha256(data).hexdigest()
        self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (digest, data))
        return digest

    def blob(self, sha256: str) -> bytes | None:
        row = self.db.execute("SELECT data FROM blobs WHERE sha256=?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_hourly(self, entity_id: str, source_id: str, month: str, hourly: dict, at: datetime | None = None
                   ) -> Record | None:
        """A source-month's hourly CO2 and status (:func:`hourly_figures`), appended when it differs from the
        newest one (None: unchanged)."""
        data = {"source_id": source_id, **hourly}
        with self._txn():
            last = self._records("WHERE kind='hourly' AND entity_id=? AND month=? AND json_extract(data, "
                                 "'$.source_id')=? ORDER BY seq DESC LIMIT 1", (entity_id, month, source_id))
            if last and last[0].data == json.loads(_canonical(data)):
                return None
            return self._append("hourly", entity_id, month, data, at)

    def hourly(self, entity_id: str, month: str) -> dict[str, dict]:
        """The newest hourly series of each source of an entity-month, by source id."""
        return {r.data["source_id"]: r.data for r in self.records("hourly", entity_id, month)}

    def records(self, kind: str | None = None, entity_id: str | None = None, month: str | None = None) -> list[Record]:
        """Records matching the filters, in chain order."""
        cond, params = [], []
        for column, value in (("kind", kind), ("entity_id", entity_id), ("month", month)):
            if value is not None:
                cond.append(f"{column} = ?")
                params.append(value)
        return self._records(("WHERE " + " AND ".join(cond) if cond else "") + " ORDER BY seq", tuple(params))

    def _records(self, where: str, params: tuple = ()) -> list[Record]:
        cur = self.db.execute(f"SELECT seq, kind, entity_id, month, at, data, prev_hash, hash FROM records {where}",
                              params)
        return [Record(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in cur]

    def _next(self) -> tuple[int, str]:
        """The next sequence number and the hash it chains to (versions and records share one chain)."""
        head = self.db.execute("SELECT seq, hash FROM (SELECT seq, hash FROM versions UNION ALL "
                               "SELECT seq, hash FROM records) ORDER BY seq DESC LIMIT 1").fetchone()
        return (head[0] + 1, head[1]) if head else (1, GENESIS)

    def put(self, entity_id: str, source_id: str | None, month: str, figures: dict, reason: str,
            at: datetime | None = None) -> Entry | None:
        """Archive a month's figures; a new version only if they differ from the newest one (None: unchanged)."""
        _month(month)
        source = source_id or "-"
        figures = json.loads(_canonical(figures))  # JSON types only, NaN refused
        with self._txn():
            last = self._last(entity_id, source, month)
            if last is not None and last.figures == figures:
                return None
            seq, prev = self._next()
            at_text = _stamp(at)
            entry = Entry(seq, entity_id, source, month, 0 if last is None else last.version + 1,
                          reason if last is not None else "first", at_text, figures, prev, "")
            entry = Entry(**{**entry.__dict__, "hash": _hash(entry)})
            self.db.execute("INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (entry.seq, entity_id, source, month, entry.version, entry.reason, at_text,
                             _canonical(figures), prev, entry.hash))
        return entry

    def _txn(self):
        db = self.db

        class _T:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _T()

    # -- reading ------------------------------------------------------------------------------------

    def _rows(self, where: str = "", params: tuple = ()) -> list[Entry]:
        cur = self.db.execute(f"SELECT seq, entity_id, source_id, month, version, reason, archived_at, figures, "
                              f"prev_hash, hash FROM versions {where} ORDER BY seq", params)
        return [Entry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9]) for r in cur]

    def _last(self, entity_id: str, source: str, month: str) -> Entry | None:
        rows = self._rows("WHERE entity_id=? AND source_id=? AND month=? AND version="
                          "(SELECT MAX(version) FROM versions WHERE entity_id=? AND source_id=? AND month=?)",
                          (entity_id, source, month) * 2)
        return rows[0] if rows else None

    def latest(self, entity_id: str | None = None, month: str | None = None,
               source_id: str | None = None) -> list[Entry]:
        """The newest version of every entry matching the filters."""
        if month is not None:
            _month(month)
        cond, params = ["version = (SELECT MAX(v.version) FROM versions v WHERE v.entity_id = versions.entity_id "
                        "AND v.source_id = versions.source_id AND v.month = versions.month)"], []
        for column, value in (("entity_id", entity_id), ("month", month), ("source_id", source_id)):
            if value is not None:
                cond.append(f"{column} = ?")
                params.append(value)
        return self._rows("WHERE " + " AND ".join(cond), tuple(params))

    def history(self, entity_id: str, month: str, source_id: str | None = None) -> list[Entry]:
        _month(month)
        return self._rows("WHERE entity_id=? AND month=? AND source_id=?", (entity_id, month, source_id or "-"))

    def verify(self, head: str | None = None) -> list[str]:
        """Every broken link of the hash chain, versions and records in one sequence, and every evidence file
        that is missing or does not match its sha256 (empty: intact). ``head``: a head hash published earlier,
        which must still be in the chain (catches versions or records cut off the end)."""
        problems: list[str] = []
        prev, seen = GENESIS, set()
        chain: list[Entry | Record] = [*self._rows(), *self._records("")]
        for e in sorted(chain, key=lambda e: e.seq):
            name = (f"{e.entity_id}/{e.source_id}/{e.month} v{e.version}" if isinstance(e, Entry)
                    else f"{e.kind} {e.entity_id}/{e.month or '-'}")
            if e.prev_hash != prev:
                problems.append(f"seq {e.seq} ({name}): prev_hash does not match the version before it (a version "
                                f"was removed or inserted)" if isinstance(e, Entry) else
                                f"seq {e.seq} ({name}): prev_hash does not match the entry before it (a version or "
                                f"record was removed or inserted)")
            if _hash(e) != e.hash:
                problems.append(f"seq {e.seq} ({name}): content does not match its hash (altered)")
            if isinstance(e, Record) and e.kind == "evidence":
                digest = e.data.get("sha256", "")
                data = self.blob(digest)
                if data is None:
                    problems.append(f"seq {e.seq} ({name}): evidence file {digest} is missing")
                elif hashlib.sha256(data).hexdigest() != digest:
                    problems.append(f"seq {e.seq} ({name}): evidence file {digest} does not match its sha256 (altered)")
            prev = e.hash
            seen.add(e.hash)
        chained = {r.entity_id: r.data for r in self._records("WHERE kind='entity' ORDER BY seq")}
        for row in self.entities():  # the table is what the console filters by; the chain is what counts
            if row["entity_id"] in chained and chained[row["entity_id"]] != {k: row[k] for k in ("timezone", "province",
                                                                                                "municipality")}:
                problems.append(f"entity {row['entity_id']}: time zone or region in the entities table does not match "
                                f"the chain (altered)")
        if head is not None and head != GENESIS and head not in seen:
            problems.append(f"head {head} is not in the chain (versions or records were cut off its end)")
        return problems

    def head(self) -> str:
        return self._next()[1]

    def deadlines(self, as_of: datetime) -> list[dict]:
        """Per registered entity and month from its first month to the last ended one: archived in time, late,
        due (deadline not yet passed) or missing (deadline passed, nothing archived)."""
        out = []
        for entity_id, tz_name, first in self.db.execute(
                "SELECT entity_id, timezone, first_month FROM entities ORDER BY entity_id").fetchall():
            tz = ZoneInfo(tz_name)
            y, m = _month(first)
            local = as_of.astimezone(tz)
            while (y, m) < (local.year, local.month):
                label = f"{y:04d}-{m:02d}"
                deadline = deadline_of(label, tz)
                first_at = self.db.execute("SELECT MIN(archived_at) FROM versions WHERE entity_id=? AND month=?",
                                           (entity_id, label)).fetchone()[0]
                archived = (None if first_at is None
                            else datetime.strptime(first_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
                if archived is not None:
                    status = "in_time" if archived <= deadline else "late"
                else:
                    status = "due" if as_of <= deadline else "missing"
                out.append({"entity_id": entity_id, "month": label, "deadline": deadline.isoformat(),
                            "archived_at": first_at, "status": status,
                            "days_left": None if archived is not None else (deadline - as_of).days})
                y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out

    # -- export -------------------------------------------------------------------------------------

    def export(self, entries: list[Entry], fmt: str) -> tuple[bytes, str]:
        """(body, media type) in ``json``, ``csv`` or ``parquet``."""
        if fmt == "json":
            return (json.dumps([{**e.body(), "hash": e.hash} for e in entries], ensure_ascii=False).encode(),
                    "application/json")
        rows = [e.row() for e in entries]
        columns = list(rows[0]) if rows else ["entity_id", "source_id", "month", "version", "reason", "archived_at",
                                              *FIELDS, "hash"]
        if fmt == "csv":
            text = io.StringIO()
            w = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            return text.getvalue().encode(), "text/csv; charset=utf-8"
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in columns})
            buf = io.BytesIO()
            pq.write_table(table, buf)
            return buf.getvalue(), "application/vnd.apache.parquet"
        raise ArchiveError(f"format must be json, csv or parquet, got {fmt!r}")


def _hash(e: Entry | Record) -> str:
    return hashlib.sha256((e.prev_hash + _canonical(e.body())).encode()).hexdigest()


def _stamp(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
