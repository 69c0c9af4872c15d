"""What the console does, for pages and API alike: read the archive within the user's scope, deposit evidence,
submit, review and act on alerts, each action appended to the archive's hash chain.

Every entry point takes the :class:`~streams.console.policy.User` first and resolves the entity through
:meth:`Console.entity`, which answers :class:`NotFound` for anything the policy hides. Refusals inside the user's
scope are :class:`Refused` (the role may not do this: 403) or :class:`Conflict` (not in this state: 409).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter, defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from streams.archive.store import Archive, deadline_of
from streams.core.figures import calculated

from . import review
from .policy import User, sees, visible

__all__ = ["CATEGORIES", "MAX_FILE_BYTES", "BadRequest", "Conflict", "Console", "NotFound", "Refused", "sniff"]

#: Evidence categories a plant files under (the work plan's supporting evidence).
CATEGORIES = ("accounting_report", "lab_report", "weighbridge_ticket", "invoice", "sampling_record", "other")
MAX_FILE_BYTES = 10 * 2**20
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


class NotFound(LookupError):
    """Nothing there for this user (also what is outside the user's scope)."""


class Refused(PermissionError):
    """The user's role may not do this."""


class Conflict(ValueError):
    """Not possible in the current state (the message says why)."""


class BadRequest(ValueError):
    """A malformed request: bad file, unknown category, missing field."""


# -- evidence files: allowed types by content --------------------------------------------------------------------

_TYPES = {  # extension -> media type; the content must agree (magic bytes or a strict parse)
    ".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".csv": "text/csv", ".json": "application/json",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def sniff(name: str, data: bytes) -> str:
    """The media type of an evidence file, from its content and extension together, or :class:`BadRequest`."""
    ext = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    want = _TYPES.get(ext)
    if want is None:
        raise BadRequest(f"{name}: type not allowed (allowed: {', '.join(sorted(_TYPES))})")
    if not data:
        raise BadRequest(f"{name}: empty file")
    ok = {"application/pdf": lambda: data.startswith(b"%PDF-"),
          "image/png": lambda: data.startswith(b"\x89PNG\r\n\x1a\n"),
          "image/jpeg": lambda: data.startswith(b"\xff\xd8\xff"),
          "text/csv": lambda: _text(data) is not None,
          "application/json": lambda: _json(data),
          _TYPES[".xlsx"]: lambda: _xlsx(data)}[want]()
    if not ok:
        raise BadRequest(f"{name}: the content is not {want} (checked by its bytes, not its name)")
    return want


def _text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _json(data: bytes) -> bool:
    text = _text(data)
    try:
        return text is not None and json.loads(text) is not None
    except ValueError:
        return False


def _xlsx(data: bytes) -> bool:
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "[Content_Types].xml" in z.namelist() and any(n.startswith("xl/") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _clean_name(name: str) -> str:
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip()[:120]
    if not base or base in (".", ".."):
        raise BadRequest("the file needs a name")
    return base


def report_parameters(report: dict) -> list[dict]:
    """An accounting report (``AccountingReport`` as JSON) as rows: parameter, item, value, unit, basis."""
    rows = []

    def walk(d: dict, section: str, item: str | None) -> None:
        for key, value in d.items():
            if isinstance(value, dict) and "basis" in value:
                rows.append({"parameter": f"{section}.{key}", "item": item, "value": value.get("value"),
                             "unit": value.get("unit"), "basis": value["basis"],
                             "confirmed": value.get("confirmed")})
            elif isinstance(value, list):
                for x in value:
                    if isinstance(x, dict):
                        name = x.get("fuel") or x.get("material")
                        walk(x, "fuel" if "fuel" in x else "material", name)
            elif isinstance(value, dict):
                walk(value, key, item)
            elif value is not None and key not in ("fuel", "material") and not isinstance(value, bool):
                rows.append({"parameter": f"{section}.{key}", "item": item, "value": value, "unit": None,
                             "basis": None, "confirmed": None})

    walk({k: v for k, v in report.items() if k not in ("entity_id", "source_id", "month", "sector")}, "report", None)
    return rows


def co2_tolerance(report_json: dict | None, alert_allowed: float | None) -> float:
    """The tolerance band of CEMS against calculated CO2 (fraction): the reconciliation's own, from its alert when
    it raised one, else the same combination for this report as reported
    (``streams.core.reconcile.calculation_tolerance``: the CEMS tier with each input's uncertainty weighted by the CO2
    it carries; docs/reconciliation.md)."""
    if alert_allowed is not None:
        return float(alert_allowed)
    from schemas.accounting import validate_report
    from streams.core.reconcile import CEMS_TIER_UNCERTAINTY, ReconcilePolicy, calculation_tolerance

    policy = ReconcilePolicy()
    band = None if report_json is None else calculation_tolerance(validate_report(report_json), policy)
    return band if band is not None else CEMS_TIER_UNCERTAINTY[policy.cems_tier]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class Console:
    def __init__(self, archive: Archive, clock=lambda: datetime.now(UTC)) -> None:
        self.archive, self.clock = archive, clock

    # -- scope -----------------------------------------------------------------------------------------------

    def entities(self, user: User) -> list[dict]:
        return visible(user, self.archive.entities())

    def entity(self, user: User, entity_id: str) -> dict:
        for e in self.archive.entities():
            if e["entity_id"] == entity_id and sees(user, e):
                return e
        raise NotFound("no such entity")

    def _month(self, month: str) -> str:
        if not MONTH.fullmatch(month or ""):
            raise NotFound("no such month")
        return month

    # -- reading ---------------------------------------------------------------------------------------------

    def months(self, user: User, entity_id: str) -> list[dict]:
        """The entity's months: archived CEMS months and any with a deposit, each with its review state and
        deadline."""
        e = self.entity(user, entity_id)
        labels = {v.month for v in self.archive.latest(entity_id=entity_id, source_id="-")}
        labels |= {r.month for r in self.archive.records(entity_id=entity_id) if r.month}
        return [self._summary(e, m) for m in sorted(labels, reverse=True)]

    def _summary(self, e: dict, month: str) -> dict:
        tz = ZoneInfo(e["timezone"])
        recs = self.archive.records(entity_id=e["entity_id"], month=month)
        subs = [r for r in recs if r.kind == "submission"]
        deadline = deadline_of(month, tz)
        now = self.clock()
        first = _parse(subs[0].at) if subs else None
        if first is not None:
            status = "in_time" if first <= deadline else "late"
        else:
            status = "due" if now <= deadline else "missing"
        total = self.archive.latest(entity_id=e["entity_id"], month=month, source_id="-")
        alerts = total[0].figures.get("alerts", []) if total else []
        states = self._alert_states(recs)
        return {"entity_id": e["entity_id"], "month": month, "state": self._state(recs),
                "deadline": deadline.isoformat(), "deadline_status": status,
                "seconds_left": None if first is not None else int((deadline - now).total_seconds()),
                "submitted_at": subs[0].at if subs else None, "versions": len(subs),
                "open_alerts": sum(1 for a in alerts if states.get(a["id"], "open") in ("open", "acknowledged")),
                "archived": bool(total)}

    @staticmethod
    def _state(recs) -> str:
        return review.month_state([(r.data["action"], r.data["role"]) for r in recs if r.kind == "review"])

    @staticmethod
    def _alert_states(recs) -> dict[str, str]:
        acts = defaultdict(list)
        for r in recs:
            if r.kind == "alert_action":
                acts[r.data["alert_id"]].append(r.data["action"])
        return {k: review.alert_state(v) for k, v in acts.items()}

    def month(self, user: User, entity_id: str, month: str) -> dict:
        """Everything of one plant-month: figures (total and per source), hourly series, alerts with their
        state, the deposited report and evidence, the submissions, the review history and what the user may do."""
        e = self.entity(user, entity_id)
        month = self._month(month)
        versions = self.archive.latest(entity_id=entity_id, month=month)
        recs = self.archive.records(entity_id=entity_id, month=month)
        if not versions and not recs and not self._may_deposit(user, e):
            raise NotFound("no such month")
        total = next((v for v in versions if v.source_id == "-"), None)
        figures = total.figures if total else {}
        states = self._alert_states(recs)
        actions = [r for r in recs if r.kind == "alert_action"]
        alerts = [{**a, "state": states.get(a["id"], "open"), "province": e["province"],
                   "municipality": e["municipality"],
                   "actions": [self._public(r) for r in actions if r.data["alert_id"] == a["id"]],
                   "may": review.alert_actions_for(states.get(a["id"], "open"), user.role)}
                  for a in figures.get("alerts", [])]
        evidence = [self._public(r) for r in recs if r.kind == "evidence"]
        report = next((r.data for r in reversed(recs) if r.kind == "evidence"
                       and r.data.get("category") == "accounting_report"), None)
        subs = [self._public(r) for r in recs if r.kind == "submission"]
        state = self._state(recs)
        mvc = next((a for a in figures.get("alerts", []) if a["rule"] == "measured_vs_calculated"), None)
        submitted_report = None
        if subs:
            submitted_report = next((x["data"].get("report") for x in evidence
                                     if x["data"]["sha256"] == subs[-1]["data"].get("report_sha256")), None)
        shown_report = submitted_report or (report or {}).get("report")
        reported_calc = calculated_from(shown_report)
        history = [self._public(r) for r in recs if r.kind in ("submission", "review")
                   or (r.kind == "alert_action" and r.data["action"] == "finding")]
        return {
            "entity": e, "month": month, "summary": self._summary(e, month), "state": state,
            "figures": figures, "sources": {v.source_id: v.figures for v in versions if v.source_id != "-"},
            "archive": [{"source_id": v.source_id, "version": v.version, "reason": v.reason,
                         "archived_at": v.archived_at, "hash": v.hash} for v in versions],
            "hourly": self.archive.hourly(entity_id, month),
            "comparison": {"cems_co2_t": figures.get("co2_t"), "calculated_co2_t": figures.get("calculated_co2_t"),
                           "deviation": figures.get("deviation"),
                           "reported_calculated_co2_t": reported_calc,
                           "tolerance": co2_tolerance(shown_report, mvc["allowed"] if mvc and mvc.get("allowed")
                                                      is not None else None)},
            "alerts": alerts, "evidence": evidence,
            "parameters": report_parameters(shown_report) if shown_report else [],
            "submissions": subs, "history": history,
            "may": {"review": [a for a in review.actions_for(state, user.role) if a != "submit"],
                    "submit": self._may_deposit(user, e) and "submit" in review.actions_for(state, "plant"),
                    "deposit": self._may_deposit(user, e) and state in ("open", "returned", "accepted")},
        }

    @staticmethod
    def _public(r) -> dict:
        return {"seq": r.seq, "kind": r.kind, "at": r.at, "data": r.data, "hash": r.hash}

    def alerts(self, user: User, severity: str | None = None, state: str | None = None,
               province: str | None = None, municipality: str | None = None, month: str | None = None,
               entity_id: str | None = None) -> list[dict]:
        """The alert queue within the user's scope, newest month first, worst first, with filters."""
        rank = {s: i for i, s in enumerate(("critical", "warning", "info", "cleared"))}
        out = []
        for e in self.entities(user):
            if (province and e["province"] != province) or (municipality and e["municipality"] != municipality) \
                    or (entity_id and e["entity_id"] != entity_id):
                continue
            for v in self.archive.latest(entity_id=e["entity_id"], source_id="-", month=month):
                states = self._alert_states(self.archive.records("alert_action", e["entity_id"], v.month))
                for a in v.figures.get("alerts", []):
                    s = states.get(a["id"], "open")
                    if (severity and a["severity"] != severity) or (state and s != state):
                        continue
                    out.append({**a, "entity_id": e["entity_id"], "month": v.month, "province": e["province"],
                                "municipality": e["municipality"], "state": s})
        return sorted(out, key=lambda a: (a["month"], -rank.get(a["severity"], 9), a["id"]), reverse=True)

    def overview(self, user: User, month: str | None = None) -> dict:
        """Per region (province for national users, municipality below): entities on time, late, missing and
        due for ``month`` (default: the newest archived month in scope), and open alerts."""
        entities = self.entities(user)
        months = sorted({v.month for e in entities for v in self.archive.latest(entity_id=e["entity_id"],
                                                                                 source_id="-")})
        month = self._month(month) if month else (months[-1] if months else None)
        by = "province" if user.role in ("national", "admin") else "municipality"
        rows: dict[str, Counter] = defaultdict(Counter)
        for e in entities:
            key = e[by] or "-"
            rows[key]["entities"] += 1
            if month is None:
                continue
            s = self._summary(e, month)
            rows[key][s["deadline_status"]] += 1
            rows[key]["open_alerts"] += s["open_alerts"]
            rows[key][s["state"]] += 1
        return {"month": month, "months": months, "by": by,
                "regions": [{"region": k, **{f: c.get(f, 0) for f in (
                    "entities", "in_time", "late", "missing", "due", "open_alerts", *review.STATES)}}
                    for k, c in sorted(rows.items())]}

    def evidence_file(self, user: User, entity_id: str, sha256: str) -> tuple[dict, bytes]:
        """An evidence file of a visible entity, by its sha256."""
        self.entity(user, entity_id)
        for r in self.archive.records("evidence", entity_id):
            if r.data["sha256"] == sha256:
                data = self.archive.blob(sha256)
                if data is not None:
                    return r.data, data
        raise NotFound("no such evidence file")

    # -- plant side ------------------------------------------------------------------------------------------

    def _may_deposit(self, user: User, e: dict) -> bool:
        return user.role == "plant" and user.entity_id == e["entity_id"]

    def deposit(self, user: User, entity_id: str, month: str, category: str, name: str, data: bytes) -> dict:
        """An evidence file into the archive (stored once under its sha256, an ``evidence`` record in the chain).
        An accounting report (CSV or JSON, the pipeline's import format) is validated and kept parsed."""
        e = self.entity(user, entity_id)
        month = self._month(month)
        if not self._may_deposit(user, e):
            raise Refused("only the plant deposits its evidence")
        state = self._state(self.archive.records("review", entity_id, month))
        if state not in ("open", "returned", "accepted"):
            raise Conflict(f"the month is in {state}: evidence can be added once it is returned")
        if category not in CATEGORIES:
            raise BadRequest(f"category must be one of {', '.join(CATEGORIES)}")
        name = _clean_name(name)
        if len(data) > MAX_FILE_BYTES:
            raise BadRequest(f"{name}: {len(data):,} bytes, more than the {MAX_FILE_BYTES:,} allowed")
        media = sniff(name, data)
        record = {"sha256": "", "name": name, "media_type": media, "size": len(data), "category": category,
                  "by": user.username}
        if category == "accounting_report":
            record["report"] = self._report(e, month, name, media, data)
        record["sha256"] = self.archive.put_blob(data)
        return self._public(self.archive.append("evidence", entity_id, month, record, self.clock()))

    @staticmethod
    def _report(e: dict, month: str, name: str, media: str, data: bytes) -> dict:
        from ingest.accounting import parse_csv, parse_json
        from schemas.errors import CemsError

        if media not in ("text/csv", "application/json"):
            raise BadRequest(f"{name}: an accounting report is CSV or JSON (the pipeline's import format)")
        text = _text(data) if media == "text/csv" else None
        if media == "text/csv" and text is None:  # sniff() takes a CSV file only as UTF-8 text
            raise BadRequest(f"{name}: a CSV report is UTF-8 text")
        try:
            reports = parse_csv(text, name) if text is not None else parse_json(data, name)
        except (CemsError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        mine = [r for r in reports if r.entity_id == e["entity_id"] and r.month == month and r.source_id is None]
        if len(reports) != 1 or len(mine) != 1:
            raise BadRequest(f"{name}: needs exactly one entity report of {e['entity_id']} for {month}; it has "
                             + ", ".join(f"{r.entity_id}/{r.source_id or '-'}/{r.month}" for r in reports))
        return mine[0].model_dump(mode="json")

    def submit(self, user: User, entity_id: str, month: str, reason: str = "",
               evidence: list[str] | None = None) -> dict:
        """Freeze the month's report and evidence as the next version (``submission``), and start its review.
        ``evidence``: the sha256 of the files to include (default: all deposited); a correction needs a reason."""
        e = self.entity(user, entity_id)
        month = self._month(month)
        if not self._may_deposit(user, e):
            raise Refused("only the plant submits its month")
        recs = self.archive.records(entity_id=entity_id, month=month)
        files = {r.data["sha256"]: r.data for r in recs if r.kind == "evidence"}
        chosen = list(dict.fromkeys(evidence)) if evidence is not None else list(files)
        unknown = [s for s in chosen if s not in files]
        if unknown:
            raise BadRequest(f"not deposited for this month: {', '.join(unknown)}")
        reports = [s for s in chosen if files[s].get("category") == "accounting_report"]
        if not reports:
            raise BadRequest("a submission needs the month's accounting report (category accounting_report)")
        state = self._state(recs)
        t = self._step(state, "submit", user.role, reason)
        version = sum(1 for r in recs if r.kind == "submission")
        total = self.archive.latest(entity_id=entity_id, month=month, source_id="-")
        sub = self.archive.append("submission", entity_id, month, {
            "version": version, "reason": reason.strip() or "first", "by": user.username, "role": user.role,
            "report_sha256": reports[-1], "evidence": chosen,
            "cems_version_hash": total[0].hash if total else None}, self.clock())
        self.archive.append("review", entity_id, month, {
            "action": "submit", "by": user.username, "role": user.role, "reason": reason.strip(),
            "from": state, "to": t.to, "version": version, "submission_hash": sub.hash}, self.clock())
        return self._summary(e, month)

    # -- regulator side --------------------------------------------------------------------------------------

    @staticmethod
    def _step(state: str, action: str, role: str, reason: str) -> review.Transition:
        """The review transition, or Refused (this role never does this) / Conflict (not now, or no reason)."""
        try:
            return review.step(state, action, role, reason)
        except review.ReasonRequired as exc:
            raise BadRequest(str(exc)) from None
        except review.TransitionError as exc:
            if not any(r == role and a == action for (_, a, r) in review.TRANSITIONS):
                raise Refused(str(exc)) from None
            raise Conflict(str(exc)) from None

    def act(self, user: User, entity_id: str, month: str, action: str, reason: str = "") -> dict:
        """A review action (accept, escalate, return) by the reviewer of the month's current level."""
        e = self.entity(user, entity_id)
        month = self._month(month)
        if action == "submit":
            raise BadRequest("submit through the submission (it freezes a version)")
        if not user.reviewer:
            raise Refused(f"review actions are for reviewers, not the {user.role} role")
        recs = self.archive.records(entity_id=entity_id, month=month)
        state = self._state(recs)
        t = self._step(state, action, user.role, reason)
        version = sum(1 for r in recs if r.kind == "submission") - 1
        self.archive.append("review", entity_id, month, {
            "action": action, "by": user.username, "role": user.role, "reason": reason.strip(), "from": state,
            "to": t.to, "version": version}, self.clock())
        return self._summary(e, month)

    def alert_action(self, user: User, alert_id: str, action: str, reason: str = "") -> dict:
        """Acknowledge, dismiss (with a reason) or turn an alert into a finding on the month's review."""
        for e in self.entities(user):
            for v in self.archive.latest(entity_id=e["entity_id"], source_id="-"):
                alert = next((a for a in v.figures.get("alerts", []) if a["id"] == alert_id), None)
                if alert is None:
                    continue
                recs = self.archive.records(entity_id=e["entity_id"], month=v.month)
                state = self._alert_states(recs).get(alert_id, "open")
                try:
                    t = review.alert_step(state, action, user.role, reason)
                except review.ReasonRequired as exc:
                    raise BadRequest(str(exc)) from None
                except review.TransitionError as exc:
                    raise (Refused if not user.reviewer else Conflict)(str(exc)) from None
                version = sum(1 for r in recs if r.kind == "submission") - 1
                rec = self.archive.append("alert_action", e["entity_id"], v.month, {
                    "alert_id": alert_id, "rule": alert["rule"], "action": action, "by": user.username,
                    "role": user.role, "reason": reason.strip(), "from": state, "to": t.to,
                    "version": None if version < 0 else version, "review_state": self._state(recs)}, self.clock())
                return self._public(rec)
        raise NotFound("no such alert")


def calculated_from(report_json: dict | None) -> float | None:
    """CO2 [t] calculated from a deposited report (None without one)."""
    if report_json is None:
        return None
    from schemas.accounting import AccountingReport

    return calculated(AccountingReport.model_validate(report_json))["co2_t"]
