"""Which alerts to publish, and what a reviewer sees: pure, no Kafka (the CLI and the reconciler wrap it).

:class:`AlertBook` holds the last published version of every alert. Evaluating a scope (an entity and period)
gives the findings as they stand now; the book turns them into what must be published: new alerts, revisions of
alerts whose figures or severity changed, and ``cleared`` versions of alerts of that scope that no longer hold.
Evaluating the same data twice publishes nothing the second time, so a rerun, a restart or a replay never
repeats an alert.

:func:`review` joins alerts with their acknowledgements into the reviewer's list: an acknowledgement holds until
the alert is revised after it (a worse deviation reopens the case).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from schemas.alerts import SEVERITIES, Ack, Alert

__all__ = ["AlertBook", "ReviewRow", "matches", "review"]


class AlertBook:
    def __init__(self, published: list[Alert] | None = None) -> None:
        self.last: dict[str, Alert] = {}
        for a in published or ():
            self.absorb(a)

    def absorb(self, alert: Alert) -> None:
        """Take a version already published (read back from the compacted topic at start)."""
        old = self.last.get(alert.id)
        if old is None or alert.revision >= old.revision:
            self.last[alert.id] = alert

    def update(self, findings: list[Alert], scope: tuple[str, str]) -> list[Alert]:
        """The versions to publish after evaluating ``scope`` = (entity id, period), given all its findings."""
        out = []
        for a in findings:
            old = self.last.get(a.id)
            if old is None:
                new = replace(a, revision=0, reason="raised")
            elif old.content() == a.content():
                continue
            else:
                new = replace(a, revision=old.revision + 1, reason="updated")
            self.last[a.id] = new
            out.append(new)
        found = {a.id for a in findings}
        for old in list(self.last.values()):
            if (old.entity_id, old.period) == scope and old.id not in found and old.severity != "cleared":
                new = replace(old, severity="cleared", revision=old.revision + 1, reason="cleared",
                              explanation=f"No longer found: {old.explanation}")
                self.last[old.id] = new
                out.append(new)
        return out


@dataclass(frozen=True)
class ReviewRow:
    alert: Alert
    status: str  # "open" | "acknowledged" | "resolved" | "cleared"
    ack: Ack | None


def review(alerts: list[Alert], acks: list[Ack]) -> list[ReviewRow]:
    """Last version of each alert with its review status, most severe first."""
    book = AlertBook(alerts)
    last_ack: dict[str, Ack] = {}
    for a in acks:
        if a.alert_id not in last_ack or a.at_ns >= last_ack[a.alert_id].at_ns:
            last_ack[a.alert_id] = a
    rows = []
    for alert in book.last.values():
        ack = last_ack.get(alert.id)
        if alert.severity == "cleared":
            status = "cleared"
        elif ack is None or ack.state == "reopened" or ack.revision < alert.revision:
            status = "open"
        else:
            status = ack.state
        rows.append(ReviewRow(alert, status, ack))
    rows.sort(key=lambda r: (-SEVERITIES.index(r.alert.severity), r.alert.id))
    return rows


def matches(alert: Alert, *, province: str | None = None, municipality: str | None = None,
            entity: str | None = None, rule: str | None = None, min_severity: str | None = None,
            period: str | None = None) -> bool:
    """The filters of ``cems alerts``: a review level sees its region, an analyst narrows further."""
    return ((province is None or alert.province == province)
            and (municipality is None or alert.municipality == municipality)
            and (entity is None or alert.entity_id == entity)
            and (rule is None or alert.rule == rule)
            and (period is None or alert.period.startswith(period))
            and (min_severity is None or SEVERITIES.index(alert.severity) >= SEVERITIES.index(min_severity)))
