"""InfluxDB sink for the stream worker's outputs: hourly records and closed minute means, as line protocol.

Why it looks the way it does (layout and queries: ``docs/influx-layout.md``):

* **Idempotent overwrite.** InfluxDB identifies a point by measurement + tag set + timestamp; writing the
  same identity again replaces the fields written. So the tag set holds only what never changes for a
  series (entity, source, channel, quantity), and everything a revision can change (``revision``, ``reason``,
  ``policy``, the figures) is a field. A revised hour lands on the point of its first publication, and a
  replay after a crash rewrites identical points: the count of hours never grows.
* **NaN is absence.** InfluxDB has no NaN or null (``f=nan`` is a parse error), so a missing figure is an
  omitted field; the booleans (``missing``, ``valid``) and ``revision`` are always written, so a missing hour
  or an invalid minute is visible. Overwriting only replaces the fields a write carries, though: a field a
  revision omits would keep its old value. Before such a write the sink therefore deletes the affected
  points (hourly: automatically, for a revision with an omitted figure; minutes: with ``replace=True``).
* **Batching, synchronous, loud.** Lines are built column-wise with plain string formatting (influxdb-client's
  ``Point`` costs ~30 us per minute row here), buffered, and posted ``batch_size`` lines per request with the client's
  synchronous write API. Transient failures (connection refused, timeouts, HTTP 5xx and 429) are retried with
  bounded exponential backoff; then :class:`SinkError` is raised. A refusal of the data (any other 4xx) raises
  :class:`SinkRejected` at once with InfluxDB's message. Nothing is swallowed: the worker acks its input only
  after :meth:`InfluxSink.flush` returned.

Not thread-safe: one sink per worker thread.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

import numpy as np

from schemas.quantities import Flag, flag_letters
from schemas.records import HourlyRecord, MonthlyRecord

__all__ = [
    "HOURLY_MEASUREMENT",
    "MINUTE_MEASUREMENT",
    "MONTHLY_MEASUREMENT",
    "InfluxSink",
    "MinuteRows",
    "SinkError",
    "SinkRejected",
    "SinkStats",
    "escape_tag",
    "hourly_lines",
    "minute_lines",
    "monthly_lines",
]

log = logging.getLogger(__name__)

HOURLY_MEASUREMENT = "cems_hourly"
MINUTE_MEASUREMENT = "cems_minute"
MONTHLY_MEASUREMENT = "cems_monthly"

HOUR_NS = 3600 * 10**9
MINUTE_NS = 60 * 10**9


class SinkError(Exception):
    """A write (or delete) did not reach InfluxDB. Nothing written since the last successful flush is safe."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True, attempts: int = 1):
        super().__init__(message)
        self.status = status  # HTTP status, None when no response came (connection refused, timeout)
        self.retryable = retryable  # True: the server or network failed, retrying later may succeed
        self.attempts = attempts


class SinkRejected(SinkError):
    """The data (or the request) was refused: an HTTP 4xx other than 429, or a value line protocol cannot carry."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1):
        super().__init__(message, status=status, retryable=False, attempts=attempts)


# ---------------------------------------------------------------------------------------------------------------
# Line protocol encoding (pure functions, no client needed)

_TAG_ESCAPE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
# InfluxDB 2.7 unescapes only "\," "\=" "\ " in tag values and keeps other backslashes literally, so a value with a
# backslash before a special character or at its end cannot be written faithfully; control characters end a line.
_TAG_FORBIDDEN = re.compile(r"[\\\x00-\x1f\x7f]")
_STR_FORBIDDEN = re.compile(r"[\n\r]")


def escape_tag(value: str) -> str:
    """Tag value -> line protocol (commas, equals signs, spaces escaped). Empty values, backslashes and control
    characters raise :class:`SinkRejected` (line protocol cannot carry them faithfully)."""
    if not isinstance(value, str) or not value or _TAG_FORBIDDEN.search(value):
        raise SinkRejected(f"tag value {value!r} cannot be written to InfluxDB (empty, backslash or control character)")
    return value.translate(_TAG_ESCAPE)


def _escape_str(value: str) -> str:
    """String field value -> quoted line protocol (backslash and double quote escaped)."""
    if not isinstance(value, str) or _STR_FORBIDDEN.search(value):
        raise SinkRejected(f"string field value {value!r} cannot be written to InfluxDB (line break)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _float_field(name: str, value) -> str:
    """``name=value,`` for a finite number, ``""`` for None, NaN or infinity (omitted: InfluxDB has no NaN)."""
    if value is None:
        return ""
    value = float(value)
    if not math.isfinite(value):
        if not math.isnan(value):
            log.warning("field %s is %s; written as missing", name, value)
        return ""
    return f"{name}={value!r},"


def _bool(value) -> str:
    return "true" if value else "false"


def hourly_lines(records: Iterable[HourlyRecord]) -> list[str]:
    """Line protocol for hourly records: ``cems_hourly,entity=..,source=.. <fields> <hour start ns>``."""
    out = []
    for r in records:
        head = f"{HOURLY_MEASUREMENT},entity={escape_tag(r.entity_id)},source={escape_tag(r.source_id)} "
        figures = (
            _float_field("co2_kg", r.co2_kg)
            + _float_field("co2_mg_m3", r.co2_mg_m3)
            + _float_field("flow_m3_h", r.flow_m3_h)
        )
        out.append(
            f"{head}{figures}operating={_bool(r.operating)},measured={_bool(r.measured)},missing={_bool(r.missing)},"
            f"readings={int(r.readings)}i,revision={int(r.revision)}i,reason={_escape_str(r.reason)},"
            f"policy={_escape_str(r.policy)} {int(r.hour_start_ns)}"
        )
    return out


def monthly_lines(records: Iterable[MonthlyRecord]) -> list[str]:
    """Line protocol for monthly records: ``cems_monthly,entity=..,source=.. <fields> <local month start ns>``.
    ``month`` is a field (the point's time is the UTC instant of the local month start); so are the status and
    revision bookkeeping, so every version of a month lands on one point."""
    out = []
    for r in records:
        head = f"{MONTHLY_MEASUREMENT},entity={escape_tag(r.entity_id)},source={escape_tag(r.source_id)} "
        figures = (_float_field("co2_t", r.co2_t) + _float_field("measured_co2_t", r.measured_co2_t)
                   + _float_field("substituted_co2_t", r.substituted_co2_t) + _float_field("completeness", r.completeness))
        counts = "".join(f"{k}={int(getattr(r, k))}i," for k in (
            "hours_in_month", "hours", "operating_hours", "measured_hours", "substituted_hours", "missing_hours",
            "valid_days", "revision"))
        out.append(
            f"{head}{figures}{counts}valid={_bool(r.valid)},month={_escape_str(r.month)},status={_escape_str(r.status)},"
            f"reason={_escape_str(r.reason)},policy={_escape_str(r.policy)},substitution={_escape_str(r.substitution)} "
            f"{int(r.month_start_ns)}"
        )
    return out


def _omits_figures(r: HourlyRecord) -> bool:
    return any(v is None or not math.isfinite(float(v)) for v in (r.co2_kg, r.co2_mg_m3, r.flow_m3_h))


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous
class MinuteRows:
    """Closed minutes of many channels, one row per (channel, minute), as parallel arrays.

    ``mean`` is NaN when the minute is invalid; ``label`` is the HJ 212 flag code of the minute aggregate
    (:class:`schemas.quantities.Flag`); ``n`` counts the readings absorbed into the minute. Arrays are coerced
    to their dtypes on construction and must all have the same length.
    """

    entity_id: np.ndarray  # str/object
    source_id: np.ndarray  # str/object
    channel_id: np.ndarray  # str/object
    quantity: np.ndarray  # str/object, HJ 212 code (schemas.quantities.QUANTITIES)
    unit: np.ndarray  # str/object (schemas.quantities.UNITS)
    start_ns: np.ndarray  # int64, minute start, UTC ns since the epoch
    mean: np.ndarray  # float64, NaN when invalid
    valid: np.ndarray  # bool
    label: np.ndarray  # uint8, HJ 212 flag code
    n: np.ndarray  # int64

    _DTYPES = {"start_ns": np.int64, "mean": np.float64, "valid": np.bool_, "label": np.uint8, "n": np.int64}

    def __post_init__(self) -> None:
        size = None
        for f in fields(self):
            a = np.asarray(getattr(self, f.name))
            if f.name in self._DTYPES:
                a = a.astype(self._DTYPES[f.name], copy=False)
            if a.ndim != 1:
                raise ValueError(f"MinuteRows.{f.name} must be one-dimensional, not shape {a.shape}")
            if size is None:
                size = a.size
            elif a.size != size:
                raise ValueError(f"MinuteRows.{f.name} has {a.size} rows, the others {size}")
            object.__setattr__(self, f.name, a)

    def __len__(self) -> int:
        return int(self.start_ns.size)

    def take(self, index) -> MinuteRows:
        """The rows at ``index`` (integer indices or a boolean mask)."""
        return MinuteRows(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts: Sequence[MinuteRows]) -> MinuteRows:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


_N_FLAGS = len(Flag)


def minute_lines(rows: MinuteRows) -> list[str]:
    """Line protocol for closed minutes:
    ``cems_minute,channel=..,entity=..,quantity=..,source=.. [mean=..,]valid=..,flag="N",n=..i,unit=".." <ns>``.

    Column-wise: tag prefixes and unit strings are escaped once per distinct value, flags are looked up as
    arrays, and one f-string per row joins the pieces.
    """
    if not len(rows):
        return []
    if (rows.label >= _N_FLAGS).any():
        bad = sorted(set(rows.label[rows.label >= _N_FLAGS].tolist()))
        raise SinkRejected(f"minute label code(s) {bad} are not HJ 212 flags (0..{_N_FLAGS - 1})")
    prefixes: dict[tuple, str] = {}

    def prefix(key: tuple) -> str:
        p = prefixes.get(key)
        if p is None:
            e, s, c, q = key
            p = prefixes[key] = (
                f"{MINUTE_MEASUREMENT},channel={escape_tag(c)},entity={escape_tag(e)},"
                f"quantity={escape_tag(q)},source={escape_tag(s)} "
            )
        return p

    keys = zip(rows.entity_id.tolist(), rows.source_id.tolist(), rows.channel_id.tolist(), rows.quantity.tolist())
    heads = [prefixes.get(k) or prefix(k) for k in keys]
    units = {u: _escape_str(u) for u in set(rows.unit.tolist())}
    unit_s = [units[u] for u in rows.unit.tolist()]
    show = rows.valid & np.isfinite(rows.mean)
    means = [f"mean={m!r}," if ok else "" for m, ok in zip(rows.mean.tolist(), show.tolist())]
    tails = np.where(rows.valid, 'valid=true,flag="', 'valid=false,flag="').tolist()
    letters = flag_letters(rows.label).tolist()
    return [
        f'{h}{m}{t}{f}",n={n}i,unit={u} {ts}'
        for h, m, t, f, n, u, ts in zip(heads, means, tails, letters, rows.n.tolist(), unit_s, rows.start_ns.tolist())
    ]


def _runs(keys: list[tuple], times: list[int], step: int, needs: list[bool]) -> list[tuple[tuple, int, int]]:
    """``(key, first, last)`` runs of consecutive times (``step`` apart) per key that hold at least one ``needs`` row.

    Deleting a whole run is safe when every time in it is rewritten right after; runs without a ``needs`` row are
    overwritten field by field anyway and need no delete.
    """
    wanted = {k for k, nd in zip(keys, needs) if nd}
    if not wanted:
        return []
    cells: dict[tuple, dict[int, bool]] = {}
    for k, t, nd in zip(keys, times, needs):
        if k in wanted:
            d = cells.setdefault(k, {})
            d[t] = d.get(t, False) or nd
    out = []
    for k, d in cells.items():
        first = last = None
        hit = False
        for t in sorted(d):
            if last is not None and t != last + step:
                if hit:
                    out.append((k, first, last))
                first, hit = t, False
            elif first is None:
                first = t
            last, hit = t, hit or d[t]
        if hit:
            out.append((k, first, last))
    return out


def _rfc3339(ns: int) -> str:
    s, frac = divmod(int(ns), 10**9)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _predicate_value(value: str) -> str:
    return '"' + value.replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------------------------
# The sink


@dataclass
class SinkStats:
    points: int = 0  # lines accepted by InfluxDB
    requests: int = 0  # successful write requests
    retries: int = 0  # failed attempts that were retried
    deletes: int = 0  # delete requests (delete-before-rewrite runs)
    bytes: int = 0  # line protocol bytes accepted
    encode_s: float = 0.0  # time spent building line protocol
    write_s: float = 0.0  # time spent in write requests, retries and backoff included
    last_error: str | None = field(default=None, repr=False)


class InfluxSink:
    """Writes hourly records, minute means and monthly totals to one InfluxDB 2 bucket, in batches, synchronously.

    ``write_hourly``/``write_minutes`` buffer lines and post every full batch of ``batch_size`` lines;
    :meth:`flush` posts the rest. Data is in InfluxDB once ``flush()`` returned; ack input only then. On
    :class:`SinkError` the buffer is dropped: replay everything since the last successful flush (writes are
    idempotent). Backoff before retry ``k`` (0-based) is ``min(max_backoff_s, backoff_s * 2**k)`` times a jitter
    in [0.5, 1], or the server's ``Retry-After`` when it sends one (capped the same way).
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        batch_size: int = 5000,
        max_retries: int = 5,
        timeout_s: float = 10,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        gzip: bool = False,
    ) -> None:
        try:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS
        except ImportError as e:  # pragma: no cover - depends on the installed extras
            raise ImportError("the InfluxDB sink needs influxdb-client: pip install 'cems-pipeline[central]'") from e
        if batch_size < 1 or max_retries < 0:
            raise ValueError("batch_size must be >= 1 and max_retries >= 0")
        self.url, self.org, self.bucket = url, org, bucket
        self.batch_size, self.max_retries = int(batch_size), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        # retries=False (the client's default): urllib3 does not retry behind our back; this class owns retries.
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000), enable_gzip=gzip)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._delete_api = self._client.delete_api()
        self._buf: list[str] = []
        self._closed = False
        self.stats = SinkStats()

    # -- public API -----------------------------------------------------------------------------------------------

    def write_hourly(self, records: list[HourlyRecord]) -> None:
        """Queue hourly records. A revision (``revision > 0``) that omits a figure (missing, NaN) first deletes
        the source's point(s) of that hour, so no figure of an older revision survives next to it."""
        self._check_open()
        t = time.perf_counter()
        lines = hourly_lines(records)
        self.stats.encode_s += time.perf_counter() - t
        runs = _runs(
            [(r.source_id,) for r in records],
            [int(r.hour_start_ns) for r in records],
            HOUR_NS,
            [r.revision > 0 and _omits_figures(r) for r in records],
        )
        self._delete_runs(HOURLY_MEASUREMENT, ("source",), runs)
        self._enqueue(lines)

    def write_minutes(self, rows: MinuteRows, *, replace: bool = False) -> None:
        """Queue closed minutes. ``replace=True`` (for minutes of revised hours) first deletes the points of
        runs of consecutive minutes that hold an invalid minute, so a ``mean`` written before cannot survive
        next to ``valid=false``; without it an invalid minute only overwrites ``valid``, ``flag``, ``n``, ``unit``."""
        self._check_open()
        t = time.perf_counter()
        lines = minute_lines(rows)
        self.stats.encode_s += time.perf_counter() - t
        if replace and len(rows):
            bad = ~(rows.valid & np.isfinite(rows.mean))
            if bad.any():
                runs = _runs(
                    list(zip(rows.source_id.tolist(), rows.channel_id.tolist())),
                    rows.start_ns.tolist(),
                    MINUTE_NS,
                    bad.tolist(),
                )
                self._delete_runs(MINUTE_MEASUREMENT, ("source", "channel"), runs)
        self._enqueue(lines)

    def write_monthly(self, records: list[MonthlyRecord]) -> None:
        """Queue monthly records; one point per source and month, every version overwriting it. A record without
        ``completeness`` (the source never ran) first deletes the point, so no older completeness survives."""
        self._check_open()
        if not records:
            return
        lines = monthly_lines(records)
        runs = [((r.source_id,), r.month_start_ns, r.month_start_ns) for r in records if r.completeness is None]
        self._delete_runs(MONTHLY_MEASUREMENT, ("source",), runs)
        self._enqueue(lines)

    def write_lines(self, lines: Iterable[str]) -> None:
        """Queue ready-made line protocol (ns timestamps). For measurements without an encoder here yet."""
        self._check_open()
        self._enqueue(list(lines))

    def flush(self) -> None:
        """Post everything buffered. Returns once InfluxDB accepted it; raises :class:`SinkError` otherwise."""
        self._check_open()
        self._send(final=True)

    def close(self) -> None:
        """Flush, then release the HTTP client (also when the flush fails; the error is raised)."""
        if self._closed:
            return
        try:
            self._send(final=True)
        finally:
            self._closed = True
            self._client.close()

    def __enter__(self) -> InfluxSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # do not post a half-done unit of work on the way out of an error
            self._buf.clear()
            self._closed = True
            self._client.close()

    @property
    def pending(self) -> int:
        """Lines buffered, not yet posted."""
        return len(self._buf)

    # -- internals ------------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("InfluxSink is closed")

    def _enqueue(self, lines: list[str]) -> None:
        self._buf.extend(lines)
        if len(self._buf) >= self.batch_size:
            self._send(final=False)

    def _send(self, *, final: bool) -> None:
        buf, self._buf = self._buf, []  # on error the buffer stays dropped: the caller replays
        bs = self.batch_size
        for i in range(0, len(buf), bs):
            chunk = buf[i : i + bs]
            if len(chunk) < bs and not final:
                self._buf = chunk
                return
            body = "\n".join(chunk).encode()
            self._retrying(
                f"write of {len(chunk)} lines",
                lambda body=body: self._write_api.write(self.bucket, self.org, body, write_precision="ns"),
            )
            self.stats.points += len(chunk)
            self.stats.requests += 1
            self.stats.bytes += len(body)

    def _delete_runs(self, measurement: str, tag_keys: tuple[str, ...], runs: list[tuple[tuple, int, int]]) -> None:
        if not runs:
            return
        self._send(final=True)  # earlier lines for the same points must land before the delete, not after it
        for key, first, last in runs:
            for v in key:
                escape_tag(v)  # the same values the write will refuse; refuse them before deleting anything
            predicate = " AND ".join(
                [f'_measurement="{measurement}"'] + [f"{k}={_predicate_value(v)}" for k, v in zip(tag_keys, key)]
            )
            start, stop = _rfc3339(first), _rfc3339(last)  # both ends inclusive
            self._retrying(
                f"delete of {predicate} [{start}, {stop}]",
                lambda: self._delete_api.delete(start, stop, predicate, self.bucket, self.org),
            )
            self.stats.deletes += 1

    def _retrying(self, what: str, call) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        t0 = time.perf_counter()
        try:
            for attempt in range(self.max_retries + 1):
                retry_after = None
                try:
                    call()
                    return
                except ApiException as e:
                    status = e.status
                    message = _api_message(e)
                    if not (status == 429 or (status is not None and status >= 500)):
                        self.stats.last_error = message
                        raise SinkRejected(f"InfluxDB refused the {what} (HTTP {status}): {message}",
                                           status=status, attempts=attempt + 1) from e
                    retry_after = _retry_after(e)
                    failure, cause = f"HTTP {status}: {message}", e
                except (Urllib3Error, OSError) as e:  # connection refused/reset, timeouts
                    status, failure, cause = None, f"{type(e).__name__}: {e}", e
                self.stats.last_error = failure
                if attempt == self.max_retries:
                    raise SinkError(
                        f"InfluxDB {what} to {self.url} failed after {attempt + 1} attempt(s): {failure}",
                        status=status,
                        attempts=attempt + 1,
                    ) from cause
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
                if retry_after is not None:
                    delay = min(self.max_backoff_s, retry_after)
                log.warning("InfluxDB %s failed (%s); retry %d/%d in %.2f s", what, failure, attempt + 1,
                            self.max_retries, delay)
                self.stats.retries += 1
                time.sleep(delay)
        finally:
            self.stats.write_s += time.perf_counter() - t0


def _api_message(e) -> str:
    """InfluxDB's own error text from an ``ApiException`` (its JSON ``message``), else the HTTP reason."""
    msg = getattr(e, "message", None)
    if msg:
        return str(msg)
    body = getattr(e, "body", None)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    return str(body or getattr(e, "reason", "") or e)


def _retry_after(e) -> float | None:
    headers = getattr(e, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
