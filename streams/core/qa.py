"""The QA state of a pipeline's analysers, from QA records (:mod:`schemas.qa`): which hours are out of control, and
the hourly records gated by it. A thin shell around :mod:`streams.kernels.qa` (is a test passed?) and
:mod:`streams.kernels.qa_state` (which hours are out of control?).

:class:`QaState` is built once from the imported records and the registry of sources. It judges every test under
the QA policy, turns it into an event (analyser row, kind, time, passed, next due), and:

* :meth:`QaState.gate` marks the operating hours (measured or missing) of a source whose CO2 mass depends on an
  analyser out of control as ``out_of_control``: not measured, CO2 mass unknown, the part the analyser feeds
  (concentration or flow) unknown, the other part kept. The monthly rollup then substitutes them under the
  out-of-control rule of the substitution policy and counts them in ``out_of_control_hours``; the capture rate
  counts them as not valid (``streams/core/monthly.py``). Stopped hours stay stopped.
* :meth:`QaState.timeline` lists per channel its tests, their results, the out-of-control periods and when the
  next test of each kind is due; :meth:`QaState.findings` the QA findings a regulator should see (alerts).

Records about a site, source or channel that is not registered are refused with the record named; so are records a
policy cannot judge (a % of full scale limit without ``full_scale``). The gate is deterministic: the same records
and hours give the same gated records, so replays and revisions agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from schemas.qa import ComparisonTest, DriftCheck, LinearityCheck, QaRecord, VelocityTraverse
from schemas.records import HourlyRecord
from streams.kernels.aggregate import HOUR_NS
from streams.kernels.qa import (
    drift_limit_fraction,
    evaluate_comparison,
    evaluate_drift,
    evaluate_linearity,
    get_policy,
    level_means,
    paired_statistics,
)
from streams.kernels.qa_state import KINDS, NEVER, REASONS, Due, channel_state, get_schedule, source_state

__all__ = ["QaEvent", "QaState"]

#: Roles of the stack layout whose channels feed the concentration / the flow of the hourly CO2 mass.
_CONC_ROLES, _FLOW_ROLES = ("co2",), ("velocity", "flow", "temperature", "static_pressure", "ambient_pressure")


@dataclass(frozen=True)
class QaEvent:
    """One judged test of one analyser: what the timeline shows and the kernel's inputs."""

    site_id: str
    source_id: str
    channel_id: str
    row: int  # series number of the channel (Registry.series_of)
    kind: str  # one of streams.kernels.qa_state.KINDS
    test: str  # test id, or "zero"/"span" and the time for a drift check
    time_ns: int  # completion of the test, UTC
    passed: bool
    due_ns: int  # next test of the kind due (grace included) after a pass; NEVER: not scheduled
    figure: float | None  # drift error [record unit], RA [%] or the worst linearity error [%]
    unit: str
    limit_fraction: float | None = None  # drift only: |error| / the principal limit (1: at the limit)

    def to_dict(self, tz: ZoneInfo) -> dict:
        return {"channel_id": self.channel_id, "kind": self.kind, "test": self.test, "time": _iso(self.time_ns, tz),
                "passed": self.passed, "figure": self.figure, "unit": self.unit,
                "limit_fraction": self.limit_fraction,
                "next_due": None if self.due_ns == NEVER or not self.passed else _iso(self.due_ns, tz)}


def _iso(ns: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).astimezone(tz).isoformat()


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def _add_months(local: datetime, months: int) -> datetime:
    m = local.month - 1 + months
    y, m = local.year + m // 12, m % 12 + 1
    last = (datetime(y + m // 12, m % 12 + 1, 1) - timedelta(days=1)).day
    return local.replace(year=y, month=m, day=min(local.day, last))


def due_after(due: Due | None, time_ns: int, tz: ZoneInfo, relative_accuracy: float | None = None) -> int:
    """When the next test is due after a passing one at ``time_ns`` (grace included) [ns, UTC]; NEVER if it is not
    scheduled. Calendar months and quarters are those of the entity's zone ``tz``."""
    if due is None:
        return int(NEVER)
    local = datetime.fromtimestamp(time_ns / 1e9, UTC).astimezone(tz)
    if due.hours is not None:
        end = time_ns + int(due.hours * HOUR_NS)
    elif due.months is not None:
        end = _ns(_add_months(local, due.months))
    elif due.quarters is not None:
        quarters = due.quarters
        if due.quarters_if_ra_at_most and relative_accuracy is not None and \
                relative_accuracy <= due.quarters_if_ra_at_most[0]:
            quarters = due.quarters_if_ra_at_most[1]
        first = local.replace(month=local.month - (local.month - 1) % 3, day=1, hour=0, minute=0, second=0,
                              microsecond=0)
        end = _ns(_add_months(first, 3 * (quarters + 1)))  # the end of the quarters-th quarter after the test's
    else:
        return int(NEVER)
    return end + int(due.grace_h * HOUR_NS)


class QaState:
    """QA records judged under a QA policy, as events per analyser (module docstring)."""

    def __init__(self, records: Sequence[QaRecord], registry, policy: str = "cn-hj75") -> None:
        self.registry, self.policy, self.schedule = registry, get_policy(policy), get_schedule(policy)
        self.records = list(records)
        self.traverses = [r for r in records if isinstance(r, VelocityTraverse)]
        self.events: list[QaEvent] = []
        for r in records:
            if not isinstance(r, VelocityTraverse):
                self.events.append(self._event(r))
        self.events.sort(key=lambda e: (e.row, e.kind, e.time_ns))
        layout = registry.layout
        n = registry.n_series
        self.affects_conc, self.affects_flow = np.zeros(n, bool), np.zeros(n, bool)
        for roles, mask in ((_CONC_ROLES, self.affects_conc), (_FLOW_ROLES, self.affects_flow)):
            for role in roles:
                s = layout.series[role]
                mask[s[s >= 0]] = True
        moisture = layout.series["moisture"]
        for i, m in enumerate(moisture.tolist()):  # moisture feeds what it converts to the dry basis
            if m >= 0:
                self.affects_conc[m] |= layout.co2_basis[i] == "wet"
                self.affects_flow[m] |= layout.flow_basis[i] != "standard_dry"
        self._arrays = (np.array([e.row for e in self.events], np.int64),
                        np.array([KINDS.index(e.kind) for e in self.events], np.int64),
                        np.array([e.time_ns for e in self.events], np.int64),
                        np.array([e.passed for e in self.events], bool),
                        np.array([e.due_ns for e in self.events], np.int64))

    # -- judging the records ---------------------------------------------------------------------------------------

    def _row(self, r: QaRecord) -> tuple[int, ZoneInfo]:
        entity = self.registry.entities.get(r.site_id)
        where = f"QA record {r.site_id}/{r.source_id}/{r.channel_id}"
        if entity is None:
            raise ValueError(f"{where}: site {r.site_id!r} is not a registered site")
        if self.registry.entity_of.get(r.source_id) != r.site_id:
            raise ValueError(f"{where}: source {r.source_id!r} is not a source of site {r.site_id!r}")
        row = self.registry.series_of.get((r.source_id, r.channel_id))
        if row is None:
            raise ValueError(f"{where}: channel {r.channel_id!r} is not a channel of source {r.source_id!r}")
        channel = self.registry.channel_of_series[row]
        quantity = getattr(r, "quantity", "a01011")
        if channel.quantity != quantity:
            raise ValueError(f"{where}: the record is about {quantity}, the channel measures {channel.quantity}")
        return row, entity.tz

    def _event(self, r: DriftCheck | ComparisonTest | LinearityCheck) -> QaEvent:
        row, tz = self._row(r)
        label = f"QA record {r.site_id}/{r.source_id}/{r.channel_id}"
        try:
            if isinstance(r, DriftCheck):
                return self._drift(r, row, tz)
            if isinstance(r, ComparisonTest):
                return self._comparison(r, row, tz)
            return self._linearity(r, row, tz)
        except ValueError as exc:
            raise ValueError(f"{label} ({getattr(r, 'test_id', r.kind)}): {exc}") from None

    def _drift(self, r: DriftCheck, row: int, tz: ZoneInfo) -> QaEvent:
        fs = None if r.full_scale is None else [r.full_scale]
        error, verdict = evaluate_drift(self.policy, r.quantity, r.check, [r.reference_value], [r.measured_value],
                                        unit=r.unit, full_scale=fs)
        kind = f"{r.check}_drift"
        passed = bool(verdict.passed[0] or not verdict.judged[0])
        t = _ns(r.time)
        fraction = drift_limit_fraction(self.policy, r.quantity, r.check, error, unit=r.unit, full_scale=fs)[0]
        return QaEvent(r.site_id, r.source_id, r.channel_id, row, kind, f"{r.check} {r.time.isoformat()}", t, passed,
                       due_after(self.schedule.due.get(kind), t, tz), float(error[0]), r.unit,
                       None if not np.isfinite(fraction) else float(fraction))

    def _comparison(self, r: ComparisonTest, row: int, tz: ZoneInfo) -> QaEvent:
        used = [x for x in r.runs if x.used]
        stats = paired_statistics([[x.reference_value for x in used]], [[x.cems_value for x in used]])
        c = evaluate_comparison(self.policy, r.quantity, stats, unit=r.unit)
        passed = bool(c.enough_runs[0] and (c.accuracy.passed[0] or not c.accuracy.judged[0])
                      and (c.error.passed[0] or not c.error.judged[0]))
        t = _ns(max(x.end for x in r.runs))
        ra = float(c.relative_accuracy[0])
        return QaEvent(r.site_id, r.source_id, r.channel_id, row, "comparison", r.test_id, t, passed,
                       due_after(self.schedule.due.get("comparison"), t, tz, ra), ra, "%")

    def _linearity(self, r: LinearityCheck, row: int, tz: ZoneInfo) -> QaEvent:
        levels = ("low", "mid", "high")
        ref, meas = level_means([levels.index(i.level) for i in r.injections], [i.reference_value for i in r.injections],
                                [i.measured_value for i in r.injections], 3)
        lin = evaluate_linearity(self.policy, r.quantity, ref, meas, unit=r.unit)
        passed = bool(np.all(lin.verdict.passed | ~lin.verdict.judged))
        t = _ns(max(i.time for i in r.injections))
        return QaEvent(r.site_id, r.source_id, r.channel_id, row, "linearity", r.test_id, t, passed,
                       due_after(self.schedule.due.get("linearity"), t, tz), float(np.max(lin.error_percent)), "%")

    # -- the state over hours ------------------------------------------------------------------------------------------

    def channel_reasons(self, hour0_ns: int, n_hours: int) -> np.ndarray:
        """Reason code (:data:`streams.kernels.qa_state.REASONS`) per channel row and hour from ``hour0_ns``."""
        return channel_state(*self._arrays, self.schedule.invalidates(), self.registry.n_series, hour0_ns,
                             n_hours).reason

    def source_hours(self, hour0_ns: int, n_hours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per source row and hour: concentration out of control, flow out of control, reason code."""
        return source_state(self.channel_reasons(hour0_ns, n_hours), self.registry.source_of_series,
                            self.affects_conc, self.affects_flow, len(self.registry.sources))

    def gate(self, records: list[HourlyRecord]) -> list[HourlyRecord]:
        """The hourly records with their operating hours out of control marked so (module docstring)."""
        if not records or not self.events:
            return records
        hours = np.array([r.hour_start_ns for r in records], np.int64)
        h0 = int(hours.min()) // HOUR_NS * HOUR_NS
        conc, flow, _ = self.source_hours(h0, int(hours.max() - h0) // HOUR_NS + 1)
        rows = np.array([self.registry.index[r.source_id] for r in records], np.int64)
        j = (hours - h0) // HOUR_NS
        c, f = conc[rows, j], flow[rows, j]
        out = list(records)
        for i in np.flatnonzero(c | f).tolist():
            r = records[i]
            if r.status in ("measured", "missing"):
                out[i] = replace(r, status="out_of_control", measured=False, missing=True, co2_kg=None,
                                 co2_mg_m3=None if c[i] else r.co2_mg_m3, flow_m3_h=None if f[i] else r.flow_m3_h)
        return out

    # -- reports -------------------------------------------------------------------------------------------------------

    def periods(self, source_id: str, start_ns: int, end_ns: int) -> list[dict]:
        """Out-of-control periods of each channel of a source within [start_ns, end_ns): channel, reason, start and
        end (UTC ns; the end is the first hour in control again, or ``end_ns`` if the period runs on), hours."""
        n = (end_ns - start_ns) // HOUR_NS
        reasons = self.channel_reasons(start_ns, n)
        out = []
        for channel in (c for (s, c) in self.registry.series_of if s == source_id):  # loop over configuration
            row = self.registry.series_of[(source_id, channel)]
            r = reasons[row]
            edges = np.flatnonzero(np.diff(np.concatenate([[0], r, [0]])) != 0)
            for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
                if r[a]:
                    out.append({"channel_id": channel, "reason": REASONS[int(r[a])], "start_ns": start_ns + a * HOUR_NS,
                                "end_ns": start_ns + b * HOUR_NS, "hours": b - a,
                                "gates_co2": bool(self.affects_conc[row] or self.affects_flow[row])})
        return out

    def timeline(self, source_id: str, start_ns: int, end_ns: int) -> dict:
        """A source's QA over [start_ns, end_ns), per channel: the tests completed in it, their results, the
        out-of-control periods, and when the next test of each kind is due (from the last pass before ``end_ns``)."""
        tz = self.registry.entities[self.registry.entity_of[source_id]].tz
        channels: dict[str, dict] = {}
        for e in (e for e in self.events if e.source_id == source_id and e.time_ns < end_ns):
            ch = channels.setdefault(e.channel_id, {"channel_id": e.channel_id, "tests": [], "periods": [],
                                                    "next_due": {}})
            if e.time_ns >= start_ns:
                ch["tests"].append(e.to_dict(tz))
            if e.passed and e.due_ns != NEVER:
                ch["next_due"][e.kind] = _iso(e.due_ns, tz)
            elif not e.passed:
                ch["next_due"][e.kind] = "now (last test failed)"
        for p in self.periods(source_id, start_ns, end_ns):
            ch = channels.setdefault(p["channel_id"], {"channel_id": p["channel_id"], "tests": [], "periods": [],
                                                       "next_due": {}})
            ch["periods"].append({"reason": p["reason"], "start": _iso(p["start_ns"], tz), "end": _iso(p["end_ns"], tz),
                                  "hours": p["hours"], "gates_co2": p["gates_co2"]})
        return {"policy": self.policy.name, "channels": [channels[c] for c in sorted(channels)]}
