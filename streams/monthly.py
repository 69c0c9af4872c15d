"""Hourly records in, monthly records out: the stream's monthly rollup, pure (no Kafka, no clock).

Per source it keeps the published hours (CO2 mass and status) from ``lookback_h`` hours before the oldest
month that can still be revised, so that a month is always rolled up from the same window:

1. **Substitution** of missing operating hours (:func:`streams.kernels.substitute`) over the window from
   ``lookback_h`` hours before the local month start (or the source's first hour, if later) to the month's
   last published hour. HJ 75's longest lookback is 2160 valid hours (``cems-standards.md`` §2, [S/U]); the
   window counts clock hours (default 2160), so a source with invalid or stopped hours in the previous quarter
   has fewer valid hours in reach: raise ``lookback_h`` to trade memory (9 bytes per source-hour) for reach. EU MRR and US Part 75 take their own rules; Part 75's "maximum potential value" is not
   configured per source yet, so below 80 % availability its hours stay missing (``no-history``) for review.
2. **Totals** (:func:`streams.kernels.rollup`) over the month's hours in the entity's time zone: CO2 [t],
   hour counts, valid days and month validity under the policy (HJ 76-2017 App. B for ``cn-hj75``).

A month is ``open`` until its last hour is published (the processor publishes every hour in order, missing
ones included, so that is when the month is complete), then ``closed``; a later revision of one of its
hours that changes the totals issues the next revision with reason ``late_data``. Replaying the same hourly
records from a snapshot gives the same monthly records, revisions included.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from schemas.records import HourlyRecord, MonthlyRecord

from .kernels import HOUR_NS, ValidityPolicy, rollup, substitute
from .state_store import json_array, npz_bytes

__all__ = ["DEFAULT_SUBSTITUTION", "MonthlyRollup", "month_bounds", "month_range"]

#: Substitution policy that goes with each validity policy unless configured otherwise.
DEFAULT_SUBSTITUTION = {"cn-hj75": "hj75-2017", "eu-mrr": "eu-mrr", "us-part75": "us-part75"}

DAY_NS = 24 * HOUR_NS
_UNPUBLISHED, _STOPPED, _MEASURED, _MISSING = 0, 1, 2, 3


def month_bounds(hour_ns: int, tz: ZoneInfo) -> tuple[str, int, int]:
    """The local month holding the hour starting at ``hour_ns``: (label "YYYY-MM", start ns, end ns, UTC)."""
    local = datetime.fromtimestamp(hour_ns // 10**9, UTC).astimezone(tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return f"{start.year:04d}-{start.month:02d}", int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9


def month_range(label: str, tz: ZoneInfo) -> tuple[int, int]:
    """Start and end [ns, UTC] of the local month ``label`` ("YYYY-MM")."""
    y, m = (int(x) for x in label.split("-"))
    _, start, end = month_bounds(int(datetime(y, m, 15, tzinfo=tz).timestamp()) * 10**9, tz)
    return start, end


class _Hours:
    """One source's published hours from ``origin`` on: CO2 mass [kg] and status, growing at the end."""

    def __init__(self, origin: int, co2: np.ndarray | None = None, status: np.ndarray | None = None) -> None:
        self.origin = origin
        self.co2 = np.zeros(0) if co2 is None else co2
        self.status = np.zeros(0, np.uint8) if status is None else status

    @property
    def end(self) -> int:
        """End of the last published hour (hours are published in order, so all before it are known)."""
        known = np.flatnonzero(self.status != _UNPUBLISHED)
        return self.origin + (int(known[-1]) + 1) * HOUR_NS if known.size else self.origin

    def put(self, r: HourlyRecord) -> None:
        i = (r.hour_start_ns - self.origin) // HOUR_NS
        if i < 0:  # an hour before the buffer (the source's first data came later than this hour)
            pad = -i
            self.co2 = np.concatenate([np.zeros(pad), self.co2])
            self.status = np.concatenate([np.zeros(pad, np.uint8), self.status])
            self.origin -= pad * HOUR_NS
            i = 0
        if i >= self.co2.size:
            grow = max(i + 1 - self.co2.size, 24 * 31)
            self.co2 = np.concatenate([self.co2, np.zeros(grow)])
            self.status = np.concatenate([self.status, np.zeros(grow, np.uint8)])
        self.status[i] = _MEASURED if r.measured else _MISSING if r.operating else _STOPPED
        self.co2[i] = r.co2_kg if r.measured and r.co2_kg is not None else 0.0

    def trim(self, keep_from_ns: int) -> None:
        cut = (keep_from_ns - self.origin) // HOUR_NS
        if cut > 24 * 7:  # in steps of a week or more, not every hour
            self.co2, self.status = self.co2[cut:].copy(), self.status[cut:].copy()
            self.origin += cut * HOUR_NS

    def window(self, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = (start_ns - self.origin) // HOUR_NS, (end_ns - self.origin) // HOUR_NS
        return self.co2[a:b], self.status[a:b]


class MonthlyRollup:
    def __init__(self, registry, policy: ValidityPolicy, substitution: str | None = None,
                 lookback_h: int = 2160, revision_horizon_ns: int = 2 * 86_400 * 10**9) -> None:
        self.registry, self.policy = registry, policy
        self.substitution = substitution or DEFAULT_SUBSTITUTION.get(policy.name, "hj75-2017")
        self.lookback_ns = lookback_h * HOUR_NS
        self.horizon_ns = revision_horizon_ns
        self.hours: dict[str, _Hours] = {}
        self.published: dict[str, dict[str, MonthlyRecord]] = {}  # source -> month -> last record
        self.days: set[int] = set()  # UTC days (hour_start // DAY_NS) holding published hours still in a buffer
        self._dirty_days: set[int] = set()
        self._dirty_index = False

    def update(self, records: list[HourlyRecord]) -> list[MonthlyRecord]:
        """Absorb hourly records (first publications and revisions); return the monthly records that changed."""
        touched: dict[tuple[str, str], tuple[int, int]] = {}
        for r in records:
            hours = self.hours.get(r.source_id)
            if hours is None:
                hours = self.hours[r.source_id] = _Hours(r.hour_start_ns)
            hours.put(r)
            self.days.add(r.hour_start_ns // DAY_NS)
            self._dirty_days.add(r.hour_start_ns // DAY_NS)
            label, start, end = month_bounds(r.hour_start_ns, self._tz(r.source_id))
            touched[(r.source_id, label)] = (start, end)
        groups = defaultdict(list)  # same window geometry and zone -> one vectorised substitute + rollup
        for (source, label), (start, end) in touched.items():
            h = self.hours[source]
            w0, w1 = max(h.origin, start - self.lookback_ns), min(h.end, end)
            groups[(w0, w1, max(h.origin, start), start, end, label, self.registry.entity_of[source])].append(source)
        out = []
        for (w0, w1, m0, start, end, label, entity), sources in sorted(groups.items()):
            out += self._roll(sources, entity, label, w0, w1, m0, start, end)
        for source in {s for s, _ in touched}:
            self._trim(source)
        if touched:
            self._dirty_index = True
            first = min(h.origin for h in self.hours.values()) // DAY_NS
            self.days = {d for d in self.days if d >= first}
        return out

    def _tz(self, source_id: str) -> ZoneInfo:
        return self.registry.entities[self.registry.entity_of[source_id]].tz

    def _roll(self, sources, entity, label, w0, w1, m0, start, end) -> list[MonthlyRecord]:
        co2, status = (np.stack(x) for x in zip(*(self.hours[s].window(w0, w1) for s in sources), strict=True))
        measured, missing = status == _MEASURED, status == _MISSING
        sub = substitute(co2, measured, missing, self.substitution,
                         max_potential=np.nan if self.substitution == "us-part75" else None)
        k = (m0 - w0) // HOUR_NS  # the month's hours inside the window
        month = slice(k, None)
        substituted = sub.substituted[:, month]
        tz = self.registry.entities[entity].tz
        _, months = rollup(np.nan_to_num(sub.values[:, month]), measured[:, month], substituted,
                           (measured | missing)[:, month], m0, tz, self.policy)
        out = []
        for i, source in enumerate(sources):
            closed = w1 >= end
            rec = MonthlyRecord(
                entity_id=entity, source_id=source, month=label, timezone=tz.key, month_start_ns=start,
                status="closed" if closed else "open", revision=0, reason="closed" if closed else "running",
                policy=self.policy.name, substitution=self.substitution,
                co2_t=float(months.total[i, 0]) / 1000, measured_co2_t=float(months.measured_total[i, 0]) / 1000,
                substituted_co2_t=float(months.substituted_total[i, 0]) / 1000,
                hours_in_month=(end - start) // HOUR_NS, hours=int(months.hours[i, 0]),
                operating_hours=int(months.operating_hours[i, 0]), measured_hours=int(months.measured_hours[i, 0]),
                substituted_hours=int(months.substituted_hours[i, 0]), missing_hours=int(months.missing_hours[i, 0]),
                valid_days=int(months.valid_parts[i, 0]), valid=bool(months.valid[i, 0]),
                completeness=None if months.operating_hours[i, 0] == 0 else float(months.completeness[i, 0]))
            last = self.published.setdefault(source, {}).get(label)
            if last is not None and last.content() == rec.content():
                continue
            if last is not None and last.status == "closed":
                rec = MonthlyRecord(**{**rec.__dict__, "revision": last.revision + 1, "reason": "late_data"})
            self.published[source][label] = rec
            out.append(rec)
        return out

    def _trim(self, source: str) -> None:
        """Forget months that can no longer be revised, and hours no window reaches any more."""
        h = self.hours[source]
        _, oldest, _ = month_bounds(h.end - HOUR_NS - self.horizon_ns - HOUR_NS, self._tz(source))
        h.trim(oldest - self.lookback_ns)
        months = self.published.get(source, {})
        for label in [m for m, r in months.items() if r.month_start_ns < oldest]:
            del months[label]

    # -- state -------------------------------------------------------------------------------------
    # Two kinds of segment (the processor's checkpoint writes only the ones that changed): "monthly" (per source
    # the buffer's origin and length, and the records of the months that can still be revised) and "mday:<day>"
    # (the published hours of one UTC day, all sources: 24 CO2 masses and statuses each, 9 bytes per source-hour).

    def segments(self, full: bool) -> tuple[dict[str, bytes], set[str]]:
        """The segments that changed since the last call (all if ``full``), and the names of all live ones."""
        live = {"monthly"} | {f"mday:{d}" for d in self.days}
        days = self.days if full else self._dirty_days & self.days
        out = {f"mday:{d}": self._day(d) for d in sorted(days)}
        if full or self._dirty_index:
            sources = sorted(self.hours)
            meta = {"sources": sources, "published": [r.to_json().decode() for months in self.published.values()
                                                      for r in months.values()]}
            out["monthly"] = npz_bytes(origin=np.array([self.hours[s].origin for s in sources], dtype=np.int64),
                                  length=np.array([self.hours[s].co2.size for s in sources], dtype=np.int64),
                                  meta=json_array(meta))
        if not full:
            self._dirty_days, self._dirty_index = set(), False
        return out, live

    def _day(self, day: int) -> bytes:
        n = len(self.registry.sources)
        co2, status = np.zeros((n, 24)), np.zeros((n, 24), np.uint8)
        start = day * DAY_NS
        for source, h in self.hours.items():
            a = max(0, (start - h.origin) // HOUR_NS)
            b = min(h.co2.size, (start + DAY_NS - h.origin) // HOUR_NS)
            if a < b:
                i, k = self.registry.index[source], (h.origin - start) // HOUR_NS + a
                co2[i, k:k + b - a], status[i, k:k + b - a] = h.co2[a:b], h.status[a:b]
        return npz_bytes(co2=co2, status=status)

    def restore_segments(self, segments: dict[str, bytes]) -> None:
        self.hours, self.published, self.days = {}, {}, set()
        self._dirty_days, self._dirty_index = set(), False
        if "monthly" not in segments:
            return
        z = np.load(io.BytesIO(segments["monthly"]))
        days = {int(name[5:]): np.load(io.BytesIO(data)) for name, data in segments.items() if name.startswith("mday:")}
        self.days = set(days)
        meta = json.loads(z["meta"].tobytes())
        for source, origin, n in zip(meta["sources"], z["origin"].tolist(), z["length"].tolist(), strict=True):
            h = self.hours[source] = _Hours(origin, np.zeros(n), np.zeros(n, np.uint8))
            i = self.registry.index[source]
            for d in range(origin // DAY_NS, (origin + n * HOUR_NS - 1) // DAY_NS + 1):
                if d in days:
                    a = max(0, (d * DAY_NS - origin) // HOUR_NS)
                    b = min(n, (d * DAY_NS + DAY_NS - origin) // HOUR_NS)
                    k = (origin - d * DAY_NS) // HOUR_NS + a
                    h.co2[a:b], h.status[a:b] = days[d]["co2"][i, k:k + b - a], days[d]["status"][i, k:k + b - a]
        for text in meta["published"]:
            r = MonthlyRecord.from_json(text.encode())
            self.published.setdefault(r.source_id, {})[r.month] = r

