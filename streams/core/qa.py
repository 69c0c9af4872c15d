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

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from schemas.alerts import Alert, alert_id
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
    traverse_kv,
)
from streams.kernels.qa_state import (
    KINDS,
    NEVER,
    REASONS,
    Due,
    channel_state,
    get_schedule,
    source_state,
    step_factor,
)

__all__ = ["QA_POLICY_OF", "Adjustment", "QaEvent", "QaState", "due_after", "qa_figures", "quarter_figures"]

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


@dataclass(frozen=True)
class Adjustment:
    """A passed test's result applied to the figures from a stated date (``apply_from``): a new velocity-field
    coefficient (``kv``: the new Kv, its factor new Kv / the site file's Kv) or a bias adjustment factor (``baf``),
    each multiplying the flow, and so the CO2 mass, of the source's hours from then on [P-QA-APPLY-FROM]."""

    source_id: str
    test_id: str
    kind: str  # "kv" | "baf"
    from_ns: int  # apply_from, UTC
    completed_ns: int  # the test's completion, UTC
    value: float  # the new Kv, or the BAF [1]
    factor: float  # on the flow from from_ns on, relative to the site file [1]

    @property
    def retroactive(self) -> bool:
        return self.from_ns < self.completed_ns

    def to_dict(self, tz: ZoneInfo) -> dict:
        return {"test_id": self.test_id, "kind": self.kind, "from": _iso(self.from_ns, tz),
                "completed": _iso(self.completed_ns, tz), "value": self.value, "factor": self.factor,
                "retroactive": self.retroactive}


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


def _parts(layout, n_series: int) -> tuple[np.ndarray, np.ndarray]:
    """Per series: it feeds the standard dry CO2 concentration / the standard dry flow of its source's CO2 mass
    (``P-QA-PARTS``). Moisture feeds what it converts to the dry basis."""
    conc, flow = np.zeros(n_series, bool), np.zeros(n_series, bool)
    for roles, mask in ((_CONC_ROLES, conc), (_FLOW_ROLES, flow)):
        for role in roles:  # a loop over configuration
            s = layout.series[role]
            mask[s[s >= 0]] = True
    for i, m in enumerate(layout.series["moisture"].tolist()):
        if m >= 0:
            conc[m] |= layout.co2_basis[i] == "wet"
            flow[m] |= layout.flow_basis[i] != "standard_dry"
    return conc, flow


class QaState:
    """QA records judged under a QA policy, as events per analyser (module docstring)."""

    def __init__(self, records: Sequence[QaRecord], registry, policy: str = "cn-hj75", recompute: bool = False) -> None:
        """``policy``: a QA policy name, or the validity policy whose QA policy to use (:data:`QA_POLICY_OF`).
        ``recompute``: let a test's result apply before the test was completed (an explicit recomputation, which
        the archive keeps as a new version of the months it changes); refused otherwise."""
        policy = QA_POLICY_OF.get(policy, policy)
        self.registry, self.policy, self.schedule = registry, get_policy(policy), get_schedule(policy)
        self.recompute = recompute
        # a traverse is not passed or failed: it only sets Kv (an adjustment, below)
        self.events = sorted((self._event(r) for r in records if not isinstance(r, VelocityTraverse)),
                             key=lambda e: (e.row, e.kind, e.time_ns))
        self.affects_conc, self.affects_flow = _parts(registry.layout, registry.n_series)
        self.adjustments = self._adjustments([r for r in records if getattr(r, "apply_from", None) is not None])
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
        inj = r.injections
        ref, meas = level_means([levels.index(i.level) for i in inj], [i.reference_value for i in inj],
                                [i.measured_value for i in inj], 3)
        lin = evaluate_linearity(self.policy, r.quantity, ref, meas, unit=r.unit)
        passed = bool(np.all(lin.verdict.passed | ~lin.verdict.judged))
        t = _ns(max(i.time for i in r.injections))
        return QaEvent(r.site_id, r.source_id, r.channel_id, row, "linearity", r.test_id, t, passed,
                       due_after(self.schedule.due.get("linearity"), t, tz), float(np.max(lin.error_percent)), "%")

    # -- results applied from a stated date ---------------------------------------------------------------------------

    def _adjustments(self, records: list) -> list[Adjustment]:
        out: list[Adjustment] = []
        for r in sorted(records, key=lambda r: r.apply_from):  # in date order: a comparison's Kv builds on the last
            label = f"QA record {r.site_id}/{r.test_id}"
            try:
                start = _ns(r.apply_from)
                a = self._traverse(r, start) if isinstance(r, VelocityTraverse) else self._bias(r, start, out)
            except ValueError as exc:
                raise ValueError(f"{label}: {exc}") from None
            if a.retroactive and not self.recompute:
                tz = self.registry.entities[r.site_id].tz
                raise ValueError(f"{label}: apply_from {_iso(a.from_ns, tz)} is before the test was completed "
                                 f"({_iso(a.completed_ns, tz)}): figures before a test are never rewritten silently; "
                                 "ask for a recomputation explicitly (cems embedded --qa-recompute)")
            out.append(a)
        return out

    def _site_kv(self, source_id: str) -> float:
        kv = float(self.registry.layout.velocity_field_coefficient[self.registry.index[source_id]])
        if not np.isfinite(kv):
            raise ValueError(f"source {source_id!r} does not compute its flow from velocity with a Kv; there is no "
                             "Kv to update")
        return kv

    def _traverse(self, r: VelocityTraverse, from_ns: int) -> Adjustment:
        row, _ = self._row(r)
        if self.registry.layout.series["velocity"][self.registry.index[r.source_id]] != row:
            raise ValueError(f"channel {r.channel_id!r} is not the velocity channel its source's flow is computed from")
        site_kv = self._site_kv(r.source_id)
        points = [(k, p.reference_velocity_m_s) for k, run in enumerate(r.runs) for p in run.points]
        tr = traverse_kv([k for k, _ in points], [v for _, v in points], [run.cems_velocity_m_s for run in r.runs],
                         [0] * len(r.runs), 1)
        kv = float(tr.kv[0])
        return Adjustment(r.source_id, r.test_id, "kv", from_ns, _ns(max(run.end for run in r.runs)), kv, kv / site_kv)

    def _bias(self, r: ComparisonTest, from_ns: int, earlier: list[Adjustment]) -> Adjustment:
        event = next(e for e in self.events if e.kind == "comparison" and e.test == r.test_id
                     and e.source_id == r.source_id)
        if not event.passed:
            raise ValueError("the test did not pass; only a passed test can change the figures")
        used = [x for x in r.runs if x.used]
        stats = paired_statistics([[x.reference_value for x in used]], [[x.cems_value for x in used]])
        c = evaluate_comparison(self.policy, r.quantity, stats, unit=r.unit)
        if self.policy.rules(r.quantity).bias_test:
            baf = float(c.baf[0])
            return Adjustment(r.source_id, r.test_id, "baf", from_ns, event.time_ns, baf, baf)
        if r.quantity != "a01011":
            raise ValueError(f"the {self.policy.name} policy applies no bias adjustment to {r.quantity}, and only a "
                             "velocity test updates Kv; leave apply_from empty")
        site_kv = self._site_kv(r.source_id)
        # the CEMS velocities of the test were computed with the Kv in force then: the new Kv builds on it (HJ75-KV)
        before = [a for a in earlier if a.kind == "kv" and a.source_id == r.source_id and a.from_ns <= event.time_ns]
        in_force = before[-1].factor if before else 1.0
        ratio = float(stats.mean_reference[0] / stats.mean_cems[0])
        return Adjustment(r.source_id, r.test_id, "kv", from_ns, event.time_ns, site_kv * in_force * ratio,
                          in_force * ratio)

    def factors(self, hour0_ns: int, n_hours: int) -> np.ndarray:
        """Per source row and hour, the factor on the flow (and the CO2 mass) of the adjustments in force: the
        latest Kv times the latest BAF (1 before any)."""
        out = np.ones((len(self.registry.sources), n_hours))
        for kind in ("kv", "baf"):  # a loop over the two kinds of adjustment
            mine = [a for a in self.adjustments if a.kind == kind]
            if mine:
                out *= step_factor([self.registry.index[a.source_id] for a in mine], [a.from_ns for a in mine],
                                   [a.factor for a in mine], len(self.registry.sources), hour0_ns, n_hours)
        return out

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
        if not records or not (self.events or self.adjustments):
            return records
        hours = np.array([r.hour_start_ns for r in records], np.int64)
        h0 = int(hours.min()) // HOUR_NS * HOUR_NS
        n = int(hours.max() - h0) // HOUR_NS + 1
        conc, flow, _ = self.source_hours(h0, n)
        rows = np.array([self.registry.index[r.source_id] for r in records], np.int64)
        j = (hours - h0) // HOUR_NS
        c, f, k = conc[rows, j], flow[rows, j], self.factors(h0, n)[rows, j]
        out = list(records)
        for i in np.flatnonzero(k != 1.0).tolist():  # a result applied from its date: the flow and the mass scale
            r = out[i]
            out[i] = replace(r, flow_m3_h=None if r.flow_m3_h is None else r.flow_m3_h * k[i],
                             co2_kg=None if r.co2_kg is None else r.co2_kg * k[i])
        for i in np.flatnonzero(c | f).tolist():
            r = out[i]
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
        return {"policy": self.policy.name, "channels": [channels[c] for c in sorted(channels)],
                "adjustments": [a.to_dict(tz) for a in self.adjustments if a.source_id == source_id
                                and a.from_ns < end_ns]}

    def findings(self, entity, label: str, start_ns: int, end_ns: int) -> list[Alert]:
        """QA findings of one entity's month [start_ns, end_ns) as alerts (``P-QA-FINDINGS``): a failed test not
        followed by a passing one within :data:`CORRECTIVE_H` hours (``qa_failed_uncorrected``; critical while none
        has passed by the month's end), a drift rising over the last :data:`TREND_CHECKS` passing checks to at
        least :data:`TREND_FRACTION` of its limit (``qa_drift_trend``), and a scheduled test overdue at the month's
        end (``qa_test_overdue``; critical where the overdue test invalidates the data)."""
        region = entity.region
        province, municipality = (region.province, region.municipality) if region else ("", "")
        out: list[Alert] = []

        def add(e: QaEvent, rule: str, severity: str, explanation: str, measured: float | None = None,
                allowed: float | None = None) -> None:
            out.append(Alert(
                id=alert_id(province, municipality, entity.id, e.source_id, label, f"{rule}:{e.channel_id}/{e.kind}"),
                entity_id=entity.id, province=province, municipality=municipality, source_id=e.source_id,
                period=label, rule=rule, severity=severity, measured=measured, expected=None,
                unit="" if measured is None else "share of limit", deviation=None, allowed=allowed,
                explanation=explanation, evidence=(f"qa:{e.source_id}/{e.channel_id}/{e.kind}/{e.test}",)))

        mine = {s.id for s in entity.sources}
        series: dict[tuple[int, str], list[QaEvent]] = {}
        for e in self.events:
            if e.source_id in mine and e.time_ns < end_ns:
                series.setdefault((e.row, e.kind), []).append(e)
        for events in series.values():  # a loop over analysers and kinds of test
            for finding in (_uncorrected(events, start_ns, entity.tz), _rising(events, start_ns),
                            self._overdue(events, end_ns, entity.tz)):
                if finding is not None:
                    add(*finding)
        return sorted(out, key=lambda a: a.id)

    def _overdue(self, events: list[QaEvent], end_ns: int, tz: ZoneInfo) -> _Finding | None:
        final = events[-1]
        due = self.schedule.due.get(final.kind)
        if due is None or final.kind not in ("comparison", "linearity") or not final.passed or final.due_ns >= end_ns:
            return None
        then = ": the data are out of control until one passes." if due.invalidates else "."
        return (final, "qa_test_overdue", "critical" if due.invalidates else "warning",
                f"{final.channel_id}: the {final.kind} test after {final.test} was due by {_iso(final.due_ns, tz)} "
                f"({due.source}); none is recorded{then}")


_Finding = tuple  # (event, rule, severity, explanation[, measured, allowed]): the arguments of an alert


def _uncorrected(events: list[QaEvent], start_ns: int, tz: ZoneInfo) -> _Finding | None:
    """The month's first failed test of one analyser and kind not followed by a pass within CORRECTIVE_H."""
    for i, e in enumerate(events):
        if e.passed or e.time_ns < start_ns:
            continue
        fix = next((x for x in events[i + 1:] if x.passed), None)
        if fix is not None and fix.time_ns - e.time_ns <= CORRECTIVE_H * HOUR_NS:
            continue
        when = ("no passing test followed by the month's end" if fix is None
                else f"the next passing test came {(fix.time_ns - e.time_ns) / HOUR_NS:.0f} h later")
        return (e, "qa_failed_uncorrected", "critical" if fix is None else "warning",
                f"{e.channel_id}: {e.kind} test {e.test} failed at {_iso(e.time_ns, tz)}; {when}. Its hours are out "
                "of control and substituted.")
    return None


def _rising(events: list[QaEvent], start_ns: int) -> _Finding | None:
    """A drift rising over the month's last TREND_CHECKS passing checks to TREND_FRACTION of its limit or more."""
    fractions = [(x, x.limit_fraction) for x in events
                 if x.passed and x.limit_fraction is not None and x.time_ns >= start_ns][-TREND_CHECKS:]
    if not events[-1].passed or len(fractions) < TREND_CHECKS:
        return None
    values = [f for _, f in fractions]
    if not (all(a < b for a, b in itertools.pairwise(values)) and values[-1] >= TREND_FRACTION):
        return None
    e = fractions[-1][0]
    return (e, "qa_drift_trend", "warning",
            f"{e.channel_id}: {e.kind} rose over the last {TREND_CHECKS} checks to {values[-1]:.0%} of its limit; "
            "it will fail soon unless the analyser is serviced.", values[-1], 1.0)


# -- monthly figures: quarter capture rate, availability, timeline, findings ----------------------------------------

#: QA policy judging the analysers under each validity policy (``Settings.policy``).
QA_POLICY_OF = {"cn-hj75": "cn-hj75", "eu-mrr": "eu-en14181", "us-part75": "us-part75"}
#: Project thresholds of the QA findings (``P-QA-FINDINGS``): hours a failed test may stand before a passing one
#: must follow; share of its limit from which a rising drift is reported, over how many checks.
CORRECTIVE_H, TREND_FRACTION, TREND_CHECKS = 24, 0.8, 3


def _latest(records: list) -> list:
    latest = {}
    for r in records:  # revisions in order: the last one per key wins
        latest[r.key] = r
    return list(latest.values())


def quarter_figures(source_id: str, label: str, tz: ZoneInfo, monthly: list, hourly: list) -> dict:
    """The calendar quarter of month ``label`` to its end, for one source: HJ 75's valid-data capture rate (valid
    hours / operating hours, out-of-control hours not valid) [HJ75-CR], and Part 75 style monitor data availability
    of the concentration and the flow (hours with a quality-assured value / operating hours) [P75-32], out of
    control hours and the quarter's label ("2026-Q1")."""
    y, m = (int(x) for x in label.split("-"))
    first = m - (m - 1) % 3
    months = {f"{y:04d}-{k:02d}" for k in range(first, m + 1)}
    ms = [r for r in _latest(monthly) if r.source_id == source_id and r.month in months]
    start = int(datetime(y, first, 1, tzinfo=tz).timestamp()) * 10**9
    end = int(_add_months(datetime(y, m, 1, tzinfo=tz), 1).timestamp()) * 10**9
    hs = [h for h in _latest(hourly) if h.source_id == source_id and start <= h.hour_start_ns < end and h.operating]
    operating = sum(r.operating_hours for r in ms)
    conc = sum(h.co2_mg_m3 is not None for h in hs)  # the gate clears the part an analyser out of control feeds
    flow = sum(h.flow_m3_h is not None for h in hs)

    def share(n: int) -> float | None:
        return n / operating if operating else None

    return {"quarter": f"{y:04d}-Q{(first + 2) // 3}", "months": sorted(months), "operating_hours": operating,
            "valid_hours": sum(r.measured_hours for r in ms),
            "out_of_control_hours": sum(r.out_of_control_hours for r in ms),
            "capture_rate": share(sum(r.measured_hours for r in ms)),
            "availability_co2_concentration": share(conc), "availability_flow": share(flow)}


def qa_figures(qa: QaState | None, entity, label: str, monthly: list, hourly: list) -> dict:
    """What the archive keeps of a month's QA: per source ``{"qa": {quarter, timeline}}`` and the month's QA
    findings as alerts (``findings``, :class:`schemas.alerts.Alert`)."""
    from streams.core.monthly import month_range

    start, end = month_range(label, entity.tz)
    sources = {}
    for s in entity.sources:
        fig: dict = {"quarter": quarter_figures(s.id, label, entity.tz, monthly, hourly)}
        if qa is not None:
            fig["timeline"] = qa.timeline(s.id, start, end)
        sources[s.id] = {"qa": fig}
    return {"sources": sources, "findings": [] if qa is None else qa.findings(entity, label, start, end)}
