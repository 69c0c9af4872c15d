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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from schemas.records import HourlyRecord, MonthlyRecord
from streams.core.backoff import Backoff
from streams.kernels.aggregate import HOUR_NS, MINUTE_NS
from streams.sinks.base import SinkError, SinkRejected
from streams.sinks.line_protocol import (
    HOURLY_MEASUREMENT,
    MINUTE_MEASUREMENT,
    MONTHLY_MEASUREMENT,
    MinuteRows,
    _omits_figures,
    _predicate_value,
    _rfc3339,
    _runs,
    escape_tag,
    hourly_lines,
    minute_lines,
    monthly_lines,
)

__all__ = ["InfluxSink", "SinkStats"]

log = logging.getLogger(__name__)

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
    in [0.5, 1], or the server's ``Retry-After`` when it sends one (capped the same way). ``sleep`` waits out a
    backoff (seconds; tests pass one that records what was asked instead of waiting).
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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            from influxdb_client import InfluxDBClient, WritePrecision
            from influxdb_client.client.write_api import SYNCHRONOUS
        except ImportError as e:  # pragma: no cover - depends on the installed extras
            raise ImportError("the InfluxDB sink needs influxdb-client: pip install 'cems-pipeline[central]'") from e
        if batch_size < 1 or max_retries < 0:
            raise ValueError("batch_size must be >= 1 and max_retries >= 0")
        self.url, self.org, self.bucket = url, org, bucket
        self.batch_size, self.max_retries = int(batch_size), int(max_retries)
        self.backoff = Backoff(initial_s=float(backoff_s), max_s=float(max_backoff_s))
        self._sleep = sleep
        # retries=False (the client's default): urllib3 does not retry behind our back; this class owns retries.
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000), enable_gzip=gzip)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        # The client annotates write_precision as WritePrecision, whose constants (WritePrecision.NS) are str.
        ns = WritePrecision.NS
        self._write = partial(self._write_api.write, bucket, org, write_precision=ns)  # type: ignore[arg-type]
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
                    list(zip(rows.source_id.tolist(), rows.channel_id.tolist(), strict=True)),
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
                partial(self._write, body),
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
            tags = [f"{k}={_predicate_value(v)}" for k, v in zip(tag_keys, key, strict=True)]
            predicate = " AND ".join([f'_measurement="{measurement}"'] + tags)
            start, stop = _rfc3339(first), _rfc3339(last)  # both ends inclusive
            self._retrying(
                f"delete of {predicate} [{start}, {stop}]",
                partial(self._delete_api.delete, start, stop, predicate, self.bucket, self.org),
            )
            self.stats.deletes += 1

    def _retrying(self, what: str, call: Callable[[], object]) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        t0 = time.perf_counter()
        cause: Exception
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
                delay = self.backoff.delay(attempt, retry_after)
                log.warning("InfluxDB %s failed (%s); retry %d/%d in %.2f s", what, failure, attempt + 1,
                            self.max_retries, delay)
                self.stats.retries += 1
                self._sleep(delay)
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
