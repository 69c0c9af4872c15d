"""The monthly archive: what the monthly evidence filing pulls, immutable, versioned and tamper-evident.

One entry per entity, source and local month (``source`` ``-``: the entity's total): CO2 measured by the CEMS,
CF4, C2F6 and CO2e, operating, valid and substituted hours, completeness, the CO2 calculated from the report and the
deviation, and the month's alerts. Entries are never changed in place: a revision (late data, a corrected report,
a new alert) is appended as the next ``version`` with its ``reason``.

**Hash chain.** Every version carries ``hash = sha256(prev_hash + canonical JSON of the version)``, chained over
*all* versions in the order they were archived (a ledger), so changing, inserting or removing any archived
version breaks every hash after it: :meth:`Archive.verify` recomputes the chain and names the first broken link.
(Cutting the newest versions off the end leaves a valid shorter chain: publish the head hash elsewhere, e.g. in
the monthly filing, and check it with ``verify(expect_head=...)``: ``cems archive verify --expect-head``.)

**Deadlines.** Key parameters are archived monthly within 40 days after the month's end (docs/sources.md CN-REVIEW):
:meth:`Archive.deadlines` reports, per entity and month, whether the month is archived in time, late, still due or
missing. Storage is one SQLite file (standard library; the embedded mode's store, or the archive service's).

**Records.** Besides the monthly versions, the same chain holds :class:`Record` rows of other kinds, appended with
:meth:`Archive.append` and never changed: ``entity`` (an entity's time zone, region as GB/T 2260 province and
municipality codes, and first month, written by :meth:`Archive.register` when they change: what the deadline report
and the console read from the ``entities`` table, which :meth:`Archive.verify` checks against the chain),
``hourly`` (a source-month's hourly CO2 and status, :func:`hourly_figures`), and the console's ``evidence``,
``submission``, ``review`` and ``alert_action`` (``streams/console``). Evidence files are content-addressed blobs
(sha256, stored once): :meth:`Archive.verify` checks each one against the hash its ``evidence`` record carries.

**Bad files.** ``Archive(path, read_only=True)`` (verify, serve) never creates a file and refuses one that is
missing, not SQLite or lacks the archive's tables (:class:`StoreError`). A row that does not decode (text that is
not UTF-8, figures that are not a JSON object) raises :class:`StoreError` on reading; :meth:`Archive.verify`
reports it as a problem instead, beside SQLite's own integrity check. Months are bounded to :data:`MONTHS`
and the deadline report's ``as_of`` to :data:`AS_OF` (docs/sources.md ARCHIVE-RANGE).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["AS_OF", "DEADLINE_DAYS", "FIELDS", "MONTHS", "Archive", "ArchiveError", "Record", "StoreError",
           "deadline_of", "printable"]

#: Days after the month's end by which the month's key parameters are archived (docs/sources.md CN-REVIEW).
DEADLINE_DAYS = 40
GENESIS = "0" * 64
#: The months an archive holds, first and last (docs/sources.md ARCHIVE-RANGE): a month outside is refused.
MONTHS = ((2000, 1), (2099, 12))
#: The deadline report's ``as_of``, from (inclusive) and to (exclusive): its last month is then 2099-12 at most.
AS_OF = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
#: What SQLite raises on a damaged file (a message it cannot decode is a UnicodeDecodeError).
_SQLITE_ERRORS = (sqlite3.Error, UnicodeDecodeError)
#: The archive's tables: a file without them is not an archive (or has lost them).
TABLES = ("versions", "records", "entities", "blobs")

#: The figures of an entry, in export column order (units in the names).
FIELDS = ("co2_t", "measured_co2_t", "substituted_co2_t", "cf4_t", "c2f6_t", "co2e_t", "hours_in_month",
          "operating_hours", "measured_hours", "substituted_hours", "missing_hours", "valid_days", "valid",
          "completeness", "calculated_co2_t", "deviation", "deviation_measured", "alerts")


class ArchiveError(ValueError):
    """A bad request to the archive (unknown month format, unknown export format...): a 4xx, never a 500."""


class StoreError(RuntimeError):
    """The archive file cannot be used as it is: missing, not SQLite, a table missing, or a row that does not decode
    (altered or damaged). Not the request's fault: the API answers 503, the CLI exits 1 with the message."""


def deadline_of(month: str, tz: ZoneInfo) -> datetime:
    """End of the 40th day after the local month's end (the month's archive deadline)."""
    y, m = _month(month)
    end = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=tz)
    return end + timedelta(days=DEADLINE_DAYS)


def _month(month: str) -> tuple[int, int]:
    (y0, m0), (y1, m1) = MONTHS
    match = re.fullmatch(r"([0-9]{4})-(0[1-9]|1[0-2])", month) if isinstance(month, str) else None
    if match is None or not (y0, m0) <= (int(match[1]), int(match[2])) <= (y1, m1):
        raise ArchiveError(f"month must be YYYY-MM from {y0:04d}-{m0:02d} to {y1:04d}-{m1:02d}, got {month!r}")
    return int(match[1]), int(match[2])


def _label(index: int) -> str:
    """The month ``index`` months after year 0's January (``y * 12 + m - 1``), as YYYY-MM."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _canonical(d: Any) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _object(text: object, what: str) -> dict:
    """A JSON object stored as text; StoreError naming ``what`` otherwise (never NaN or Infinity: put refuses them)."""
    try:
        value = json.loads(text, parse_constant=_no_constant) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise StoreError(f"{what} is not a JSON object (altered or damaged)")
    return value


def printable(text: str) -> str:
    """``text`` with its control characters escaped: a damaged file puts them in names and SQLite's messages, and a
    message must not move a terminal's cursor."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _said(exc: Exception) -> str:
    return printable(str(exc))


def _strict_text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise StoreError("the archive holds text that is not UTF-8 (altered or damaged): run cems archive verify"
                         ) from None


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


_VERSION_COLUMNS = "seq, entity_id, source_id, month, version, reason, archived_at, figures, prev_hash, hash"
_RECORD_COLUMNS = "seq, kind, entity_id, month, at, data, prev_hash, hash"
#: The stored type of each column (dict: a JSON object stored as text).
_VERSION_TYPES = (int, str, str, str, int, str, str, dict, str, str)
_RECORD_TYPES = (int, str, str, str, str, dict, str, str)


def _decode(cls: type[Entry] | type[Record], row: tuple, table: str) -> Any:
    """A stored row as an Entry or Record, every column of its type; StoreError naming the row and column."""
    names = (_VERSION_COLUMNS if cls is Entry else _RECORD_COLUMNS).split(", ")
    types = _VERSION_TYPES if cls is Entry else _RECORD_TYPES
    values = []
    for name, value, kind in zip(names, row, types, strict=True):
        if kind is dict:
            value = _object(value, f"{table} seq {row[0]}: {name}")
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise StoreError(f"{table} seq {row[0]}: {name} is {type(value).__name__} {value!r:.40}, not "
                             f"{kind.__name__} (altered or damaged)")
        values.append(value)
    return cls(*values)


class Archive:
    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """The archive in the SQLite file ``path``: created if missing, unless ``read_only`` (verify, list, serve),
        which opens it with SQLite's ``mode=ro`` (docs/sources.md SQLITE-RO) and refuses a missing file or one
        without the archive's tables."""
        self.path = Path(path)
        self.read_only = read_only
        try:
            if read_only:
                if not self.path.is_file():
                    raise StoreError(f"{self.path}: no archive there (not a file; nothing was created)")
                self.db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None,
                                          check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.text_factory = _strict_text
            if not read_only:
                self._create()
            missing = [t for t in TABLES if t not in self._tables()]
            if missing:
                raise StoreError(f"{self.path}: not a CEMS archive, or a damaged one: table(s) {', '.join(missing)} "
                                 f"missing")
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(entities)")}
        except _SQLITE_ERRORS as exc:
            raise StoreError(f"{self.path}: not a readable SQLite archive ({_said(exc)})") from None
        # region columns, added to archives made before them (read-only: read as "")
        self._entity_columns = ", ".join(c if c in columns else f"'' AS {c}"
                                         for c in ("entity_id", "timezone", "first_month", "province", "municipality"))

    def _create(self) -> None:
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

    def _tables(self, db: sqlite3.Connection | None = None) -> set[str]:
        return {r[0] for r in (db or self.db).execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def close(self) -> None:
        self.db.close()

    def _q(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Every row of a read; StoreError (the file is damaged, not the request wrong) on SQLite's errors."""
        try:
            return self.db.execute(sql, params).fetchall()
        except _SQLITE_ERRORS as exc:
            raise StoreError(f"{self.path}: {_said(exc)} (altered or damaged: run cems archive verify)") from None

    # -- writing ------------------------------------------------------------------------------------

    def register(self, entity_id: str, timezone: str, first_month: str, province: str = "",
                 municipality: str = "", at: datetime | None = None) -> None:
        """An entity whose months are due from ``first_month`` on (for the deadline report), in its region (GB/T
        2260 codes from the site file). The first month only ever moves earlier (a later one would drop months from
        the deadline report without a word). A new time zone, region or first month is also appended to the chain
        (``entity``): the deadline report and the console read them, so :meth:`verify` checks the table against it
        (docs/sources.md ARCHIVE-ENTITY)."""
        _month(first_month)
        try:
            ZoneInfo(timezone)
        except (ValueError, KeyError):
            raise ArchiveError(f"unknown time zone {timezone!r}") from None
        with self._txn():
            known = self._q("SELECT first_month FROM entities WHERE entity_id=?", (entity_id,))
            first_month = min(first_month, known[0][0]) if known else first_month
            self.db.execute("INSERT OR REPLACE INTO entities (entity_id, timezone, first_month, province, municipality)"
                            " VALUES (?, ?, ?, ?, ?)", (entity_id, timezone, first_month, province, municipality))
            data = {"timezone": timezone, "first_month": first_month, "province": province,
                    "municipality": municipality}
            last = self._records("WHERE kind='entity' AND entity_id=? ORDER BY seq DESC LIMIT 1", (entity_id,))
            if not last or last[0].data != data:
                self._append("entity", entity_id, "", data, at)

    def entities(self) -> list[dict]:
        """Registered entities: id, time zone, first month, province and municipality."""
        columns = ("entity_id", "timezone", "first_month", "province", "municipality")
        rows = self._q(f"SELECT {self._entity_columns} FROM entities ORDER BY entity_id")
        return [dict(zip(columns, r, strict=True)) for r in rows]

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
        with self._txn():
            self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (digest, data))
        return digest

    def blob(self, sha256: str) -> bytes | None:
        rows = self._q("SELECT data FROM blobs WHERE sha256=?", (sha256,))
        return None if not rows or not isinstance(rows[0][0], bytes) else rows[0][0]

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
        return [_decode(Record, r, "records") for r in self._q(f"SELECT {_RECORD_COLUMNS} FROM records {where}",
                                                                 params)]

    def _next(self) -> tuple[int, str]:
        """The next sequence number and the hash it chains to (versions and records share one chain)."""
        head = self._q("SELECT seq, hash FROM (SELECT seq, hash FROM versions UNION ALL "
                       "SELECT seq, hash FROM records) ORDER BY seq DESC LIMIT 1")
        return (head[0][0] + 1, head[0][1]) if head else (1, GENESIS)

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
        if self.read_only:
            raise StoreError(f"{self.path}: opened read-only, nothing is written")
        db = self.db

        class _T:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _T()

    # -- reading ------------------------------------------------------------------------------------

    def _rows(self, where: str = "", params: tuple = (), limit: int | None = None) -> list[Entry]:
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        return [_decode(Entry, r, "versions")
                for r in self._q(f"SELECT {_VERSION_COLUMNS} FROM versions {where} ORDER BY seq{tail}", params)]

    def _last(self, entity_id: str, source: str, month: str) -> Entry | None:
        rows = self._rows("WHERE entity_id=? AND source_id=? AND month=? AND version="
                          "(SELECT MAX(version) FROM versions WHERE entity_id=? AND source_id=? AND month=?)",
                          (entity_id, source, month) * 2)
        return rows[0] if rows else None

    def latest(self, entity_id: str | None = None, month: str | None = None, source_id: str | None = None,
               *, after: int = 0, limit: int | None = None) -> list[Entry]:
        """The newest version of every entry matching the filters, in chain order: at most ``limit`` of them, from
        the one after chain position (seq) ``after`` on (a page: the next starts after the last one's seq)."""
        if month is not None:
            _month(month)
        cond = ["version = (SELECT MAX(v.version) FROM versions v WHERE v.entity_id = versions.entity_id "
                        "AND v.source_id = versions.source_id AND v.month = versions.month)", "seq > ?"]
        params: list[object] = [after]
        for column, value in (("entity_id", entity_id), ("month", month), ("source_id", source_id)):
            if value is not None:
                cond.append(f"{column} = ?")
                params.append(value)
        return self._rows("WHERE " + " AND ".join(cond), tuple(params), limit)

    def history(self, entity_id: str, month: str, source_id: str | None = None, *, after: int = 0,
                limit: int | None = None) -> list[Entry]:
        """Every version of one entry, oldest first (paged like :meth:`latest`)."""
        _month(month)
        return self._rows("WHERE entity_id=? AND month=? AND source_id=? AND seq > ?",
                          (entity_id, month, source_id or "-", after), limit)

    def counts(self) -> dict[str, int]:
        """How many monthly versions and records the chain holds."""
        return {table: self._q(f"SELECT COUNT(*) FROM {table}")[0][0] for table in ("versions", "records")}

    def head(self) -> str:
        return self._next()[1]

    def verify(self, head: str | None = None, expect_head: str | None = None) -> list[str]:
        """Every problem of the archive (empty: intact): SQLite's integrity check (docs/sources.md SQLITE-IC), a table
        missing, a row that does not decode, every broken link of the hash chain (versions and records in one
        sequence), every evidence file missing or not matching its sha256 and every file no evidence record refers
        to, and every entity row (time zone, region, first month) that differs from the chain. An archive with
        nothing in it is a problem too (the data are gone).

        ``head``: a head hash published earlier, which must still be in the chain (catches versions or records cut
        off the end, but not those appended since). ``expect_head``: the head it must be now (catches both)."""
        try:  # a connection of its own, reading text as it is stored (invalid UTF-8 breaks the hash, not the read)
            db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            db.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
        except _SQLITE_ERRORS as exc:
            return [f"{self.path}: cannot be opened ({_said(exc)})"]
        try:
            return self._verify(db, head, expect_head)
        except _SQLITE_ERRORS as exc:
            return [f"{self.path}: not a readable SQLite archive ({_said(exc)})"]
        finally:
            db.close()

    def _verify(self, db: sqlite3.Connection, head: str | None, expect_head: str | None) -> list[str]:
        checks = [r[0] for r in db.execute("PRAGMA integrity_check(20)")]
        problems = [] if checks == ["ok"] else [f"SQLite integrity check: {c}" for c in checks]
        tables = self._tables(db)
        problems += [f"table {t} is missing (dropped?)" for t in TABLES if t not in tables]
        chain: list[Entry | Record | _Undecoded] = []
        for cls, table in ((Entry, "versions"), (Record, "records")):
            if table in tables:
                chain += _read(db, cls, table, problems)
        chain.sort(key=lambda e: e.seq)
        files = _files(db) if "blobs" in tables else {}
        problems += _links(chain, files)
        if not chain:
            problems.append("the archive holds no versions and no records (empty: the data are gone, or this is not "
                            "the archive meant)")
        problems += _unreferred(chain, files)
        if "entities" in tables:
            problems += self._verify_entities(db, [e for e in chain if isinstance(e, Record) and e.kind == "entity"])
        now = chain[-1].hash if chain else GENESIS
        if expect_head is not None and expect_head != now:
            problems.append(f"head is {now}, expected {expect_head} (versions or records were cut off the end, or "
                            f"added since)")
        if head is not None and head != GENESIS and head not in {e.hash for e in chain}:
            problems.append(f"head {head} is not in the chain (versions or records were cut off its end)")
        return problems

    def _verify_entities(self, db: sqlite3.Connection, chained: list[Record]) -> list[str]:
        """The entities table (what the deadline report and the console read) against the chain's newest ``entity``
        record of each entity: the same time zone, region and first month, and the same entities."""
        newest = {r.entity_id: r.data for r in chained}
        problems = []
        try:
            rows = db.execute(f"SELECT {self._entity_columns} FROM entities ORDER BY entity_id").fetchall()
        except _SQLITE_ERRORS as exc:
            return [f"table entities cannot be read ({_said(exc)})"]
        keys = ("timezone", "first_month", "province", "municipality")
        for entity_id, *values in rows:
            data = newest.pop(entity_id, None)
            if data is None:
                problems.append(f"entity {entity_id}: in the entities table but not in the chain (added outside the "
                                f"archive)")
            elif "first_month" not in data:
                problems.append(f"entity {entity_id}: its first month is not in the chain (archived before it "
                                f"was; register the entity again, e.g. by cems archive sync, to chain it)")
            elif [data.get(k) for k in keys] != values:
                what = "first month" if values[1:2] != [data["first_month"]] else "time zone or region"
                problems.append(f"entity {entity_id}: {what} in the entities table does not match the chain (altered)")
        problems += [f"entity {e}: in the chain but not in the entities table (removed)" for e in newest]
        return problems

    def deadlines(self, as_of: datetime, *, start: int = 0, limit: int | None = None) -> list[dict]:
        """Per registered entity and month from its first month to the last ended one: archived in time, late,
        due (deadline not yet passed) or missing (deadline passed, nothing archived). ``start``, ``limit``: a page
        of that list (the months of an entity before the page are skipped unread)."""
        lo, hi = AS_OF
        if as_of.tzinfo is None or not lo <= as_of < hi:
            raise ArchiveError(f"as_of must be a date-time from {lo:%Y-%m-%dT%H:%M:%SZ} up to (not including) "
                               f"{hi:%Y-%m-%dT%H:%M:%SZ}, got {as_of.isoformat()}")
        out: list[dict] = []
        for entity in self.entities():
            if limit is not None and len(out) >= limit:
                break
            try:
                tz = ZoneInfo(entity["timezone"])
                y, m = _month(entity["first_month"])
            except (ValueError, KeyError, TypeError):  # ArchiveError is a ValueError
                raise StoreError(f"{self.path}: entity {entity['entity_id']!r} has time zone {entity['timezone']!r} "
                                 f"and first month {entity['first_month']!r} (altered or damaged: run cems archive "
                                 f"verify)") from None
            local = as_of.astimezone(tz)
            first, end = y * 12 + m - 1, local.year * 12 + local.month - 1  # month indices; end is not ended yet
            if start >= max(end - first, 0):
                start -= max(end - first, 0)
                continue
            stop = end if limit is None else min(end, first + start + limit - len(out))
            archived = dict(self._q("SELECT month, MIN(archived_at) FROM versions WHERE entity_id=? GROUP BY month",
                                    (entity["entity_id"],)))
            for index in range(first + start, stop):
                out.append(self._deadline(entity["entity_id"], _label(index), tz, as_of, archived.get(_label(index))))
            start = 0
        return out

    def _deadline(self, entity_id: str, label: str, tz: ZoneInfo, as_of: datetime, first_at: str | None) -> dict:
        deadline = deadline_of(label, tz)
        try:
            archived = (None if first_at is None
                        else datetime.strptime(first_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
        except (ValueError, TypeError):
            raise StoreError(f"{self.path}: entity {entity_id!r} month {label}: archived_at {first_at!r} is not "
                             f"a UTC time (altered or damaged: run cems archive verify)") from None
        if archived is not None:
            status = "in_time" if archived <= deadline else "late"
        else:
            status = "due" if as_of <= deadline else "missing"
        return {"entity_id": entity_id, "month": label, "deadline": deadline.isoformat(), "archived_at": first_at,
                "status": status, "days_left": None if archived is not None else (deadline - as_of).days}

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


@dataclass(frozen=True)
class _Undecoded:
    """A chain row that does not decode (already reported): a broken link whose stored hash the next one chains to."""

    seq: int
    hash: object


def _read(db: sqlite3.Connection, cls: type[Entry] | type[Record], table: str, problems: list[str]
          ) -> list[Entry | Record | _Undecoded]:
    """Every row of a chain table, decoded; one that does not decode is reported in ``problems``."""
    out: list[Entry | Record | _Undecoded] = []
    for r in db.execute(f"SELECT {_VERSION_COLUMNS if cls is Entry else _RECORD_COLUMNS} FROM {table} ORDER BY seq"):
        try:
            out.append(_decode(cls, r, table))
        except StoreError as exc:
            problems.append(str(exc))
            out.append(_Undecoded(r[0], r[-1]))
    return out


def _links(chain: list[Entry | Record | _Undecoded], files: dict[object, bool]) -> list[str]:
    """Every broken link of the chain (in seq order) and every evidence file missing or altered (``files``: whether
    each stored file matches its sha256, by sha256)."""
    problems: list[str] = []
    prev: object = GENESIS
    for e in chain:
        if isinstance(e, _Undecoded):
            prev = e.hash
            continue
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
            if not isinstance(digest, str) or digest not in files:
                problems.append(f"seq {e.seq} ({name}): evidence file {digest} is missing")
            elif not files[digest]:
                problems.append(f"seq {e.seq} ({name}): evidence file {digest} does not match its sha256 (altered)")
        prev = e.hash
    return problems


def _files(db: sqlite3.Connection) -> dict[object, bool]:
    """Whether each stored file matches the sha256 it is stored under, by that sha256 (one pass, one file in memory
    at a time)."""
    return {key: isinstance(data, bytes) and hashlib.sha256(data).hexdigest() == key
            for key, data in db.execute("SELECT sha256, data FROM blobs")}


def _unreferred(chain: list[Entry | Record | _Undecoded], files: dict[object, bool]) -> list[str]:
    """Every stored file that no evidence record refers to (the file holds nothing outside the chain)."""
    referred = {str(e.data.get("sha256")) for e in chain if isinstance(e, Record) and e.kind == "evidence"}
    return [f"evidence file {printable(str(key))[:80]}: stored, but no evidence record refers to it (added outside "
            f"the chain)" for key in files if key not in referred]


def _hash(e: Entry | Record) -> str:
    # surrogateescape: text read as stored (verify) hashes to its stored bytes; valid text is unaffected
    return hashlib.sha256((e.prev_hash + _canonical(e.body())).encode("utf-8", "surrogateescape")).hexdigest()


def _stamp(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
