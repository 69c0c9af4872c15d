"""Alerts for regulators, and their acknowledgements.

An alert is one finding for one place, period and rule: a discrepancy between measured and reported figures, or
a data-quality sign (``streams/core/reconcile.py``). It is keyed by its ``id``,
``{province}/{municipality}/{entity}/{source or "-"}/{period}/{rule}``, on the compacted topic ``cems.alerts.v1``:

* **routing**: the id leads with the region, and the headers ``cems-province``, ``cems-municipality`` and
  ``cems-severity`` repeat it, so each level of the national-provincial-municipal review takes its own alerts by
  prefix without decoding (``cems alerts --province 320000``);
* **no repeats**: evaluating the same period again publishes the alert again only when its figures or severity
  change (``revision`` n+1, reason ``updated``); when the condition is gone it is published once more with
  severity ``cleared``. Compaction keeps the last version per id.

An acknowledgement is keyed by alert id on the compacted topic ``cems.alerts.ack.v1``: ``acknowledged`` (seen,
being looked at), ``resolved`` (explained or corrected) or ``reopened``, by whom, when, with a note. It refers
to the revision it saw: a later revision of the alert reopens it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from schemas.records import _Revised

__all__ = ["ACK_STATES", "SEVERITIES", "Ack", "Alert", "alert_id"]

#: Severity order; ``cleared`` closes an alert whose condition is gone.
SEVERITIES = ("cleared", "info", "warning", "critical")
ACK_STATES = ("acknowledged", "resolved", "reopened")


def alert_id(province: str, municipality: str, entity_id: str, source_id: str | None, period: str, rule: str) -> str:
    return f"{province or '-'}/{municipality or '-'}/{entity_id}/{source_id or '-'}/{period}/{rule}"


@dataclass(frozen=True)
class Alert(_Revised):
    id: str
    entity_id: str
    province: str
    municipality: str
    source_id: str | None  # None: the whole entity
    period: str  # "YYYY-MM" (local month of the entity), or "YYYY-MM-DD" for a day
    rule: str  # e.g. "measured_vs_calculated", "fuel_metered_vs_reported", "stuck_channel", "bad_signature"
    severity: str  # one of SEVERITIES
    measured: float | None  # the observed figure (unit below)
    expected: float | None  # what it is compared with
    unit: str
    deviation: float | None  # (measured - expected) / expected, or the rule's own statistic
    allowed: float | None  # the deviation the rule tolerates before this severity
    explanation: str  # one or two sentences a reviewer can act on
    evidence: tuple[str, ...] = field(default_factory=tuple)  # pointers: "topic:key", "influx:measurement?filters"
    # measured_vs_calculated: the deviation on the measured basis (the measured hours' CO2 at their rate over the
    # operating hours; the one judged, = deviation) and on the substituted basis (measured + substituted CO2)
    deviation_measured_basis: float | None = None
    deviation_substituted_basis: float | None = None
    coverage: float | None = None  # share of the month the data behind the figure cover (hours or meter minutes)
    revision: int = 0
    reason: str = "raised"  # "raised" | "updated" | "cleared"

    @property
    def key(self) -> str:
        return self.id

    def headers(self) -> list[tuple[str, bytes]]:
        return [("cems-province", self.province.encode()), ("cems-municipality", self.municipality.encode()),
                ("cems-severity", self.severity.encode()), ("cems-rule", self.rule.encode())]

    def to_json(self) -> bytes:
        return self._json()

    @classmethod
    def from_json(cls, data: bytes) -> Alert:
        d = json.loads(data)
        return cls(**(d | {"evidence": tuple(d.get("evidence", ()))}))


@dataclass(frozen=True)
class Ack:
    alert_id: str
    state: str  # one of ACK_STATES
    by: str
    at_ns: int  # wall clock of the acknowledgement (a human action, not event time)
    revision: int  # the alert revision that was acknowledged
    note: str = ""

    def __post_init__(self) -> None:
        if self.state not in ACK_STATES:
            raise ValueError(f"acknowledgement state {self.state!r} is not one of {ACK_STATES}")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Ack:
        return cls(**json.loads(data))
