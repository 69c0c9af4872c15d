"""InfluxDB line protocol of the stream's outputs, built column-wise with plain string formatting (influxdb-client's
``Point`` costs ~30 us per minute row here). Pure: no client, no I/O; :mod:`streams.sinks.influx` posts the lines.
Layout and queries: ``docs/influx-layout.md``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import ClassVar

import numpy as np

from schemas.quantities import Flag, flag_letters
from schemas.records import HourlyRecord, MonthlyRecord
from streams.sinks.base import SinkRejected

__all__ = ["HOURLY_MEASUREMENT", "MINUTE_MEASUREMENT", "MONTHLY_MEASUREMENT", "MinuteRows", "escape_tag",
           "hourly_lines", "minute_lines", "monthly_lines"]

HOURLY_MEASUREMENT = "cems_hourly"
MINUTE_MEASUREMENT = "cems_minute"
MONTHLY_MEASUREMENT = "cems_monthly"

log = logging.getLogger(__name__)


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
                   + _float_field("substituted_co2_t", r.substituted_co2_t)
                   + _float_field("completeness", r.completeness))
        counts = "".join(f"{k}={int(getattr(r, k))}i," for k in (
            "hours_in_month", "hours", "operating_hours", "measured_hours", "substituted_hours", "missing_hours",
            "valid_days", "revision"))
        out.append(
            f"{head}{figures}{counts}valid={_bool(r.valid)},month={_escape_str(r.month)},"
            f"status={_escape_str(r.status)},reason={_escape_str(r.reason)},policy={_escape_str(r.policy)},"
            f"substitution={_escape_str(r.substitution)} "
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

    _DTYPES: ClassVar[dict[str, type]] = {
        "start_ns": np.int64, "mean": np.float64, "valid": np.bool_, "label": np.uint8, "n": np.int64}

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

    keys = zip(rows.entity_id.tolist(), rows.source_id.tolist(), rows.channel_id.tolist(), rows.quantity.tolist(),
               strict=True)  # MinuteRows' columns have one length
    heads = [prefixes.get(k) or prefix(k) for k in keys]
    units = {u: _escape_str(u) for u in set(rows.unit.tolist())}
    unit_s = [units[u] for u in rows.unit.tolist()]
    show = rows.valid & np.isfinite(rows.mean)
    means = [f"mean={m!r}," if ok else "" for m, ok in zip(rows.mean.tolist(), show.tolist(), strict=True)]
    tails = np.where(rows.valid, 'valid=true,flag="', 'valid=false,flag="').tolist()
    letters = flag_letters(rows.label).tolist()
    return [
        f'{h}{m}{t}{f}",n={n}i,unit={u} {ts}'
        for h, m, t, f, n, u, ts in zip(heads, means, tails, letters, rows.n.tolist(), unit_s, rows.start_ns.tolist(),
                                        strict=True)
    ]


def _runs(keys: list[tuple], times: list[int], step: int, needs: list[bool]) -> list[tuple[tuple, int, int]]:
    """``(key, first, last)`` runs of consecutive times (``step`` apart) per key that hold at least one ``needs`` row.

    Deleting a whole run is safe when every time in it is rewritten right after; runs without a ``needs`` row are
    overwritten field by field anyway and need no delete.
    """
    wanted = {k for k, nd in zip(keys, needs, strict=True) if nd}  # one key, time and need per row
    if not wanted:
        return []
    cells: dict[tuple, dict[int, bool]] = {}
    for k, t, nd in zip(keys, times, needs, strict=True):
        if k in wanted:
            d = cells.setdefault(k, {})
            d[t] = d.get(t, False) or nd
    out: list[tuple[tuple, int, int]] = []
    for k, d in cells.items():
        first, *rest = sorted(d)
        last, hit = first, d[first]
        for t in rest:
            if t != last + step:
                if hit:
                    out.append((k, first, last))
                first, hit = t, False
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
