"""What the archive keeps of a month, computed in one place: an entry's figures summed over its sources' monthly
records, the deviation of the CEMS figure from the calculated one (on the substituted and the measured basis), what
is kept of an alert, the hourly series for the charts, and the calculation-based figures of a report. Pure: the
archive store (``streams/archive/store.py``) stores these, the report and the console show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from schemas.records import MonthlyRecord
from streams.kernels.aggregate import HOUR_NS

__all__ = ["HOUR_STATUS", "alert_figures", "calculated", "deviation", "hourly_figures", "month_figures"]


def deviation(cems_t: float | None, calculated_t: float | None) -> float | None:
    """CEMS against calculated, ``cems / calculated - 1``; None when either is missing or nothing was calculated."""
    if cems_t is None or not calculated_t:
        return None
    return cems_t / calculated_t - 1


#: One letter per hour in :func:`hourly_figures`: valid (measured), substituted, missing (operating, nothing
#: substituted: needs review), out of control, stopped, and no record for the hour.
HOUR_STATUS = {"V": "valid", "S": "substituted", "M": "missing", "O": "out_of_control", "P": "stopped",
               "-": "no_record"}


def hourly_figures(hours: list, month, start_ns: int, end_ns: int) -> dict:
    """A source-month's hours for the charts, compactly: ``co2_kg`` (one number or null per clock hour of the local
    month [start_ns, end_ns), UTC) and ``status`` (one :data:`HOUR_STATUS` letter per hour). ``hours``: the
    source's hourly records (revisions in order, the last one per hour wins); ``month``: its closed monthly
    record. The hourly records do not say which missing hours the monthly rollup filled in: when the month has no
    missing hours left (``missing_hours`` 0) every missing hour was substituted (S), else they are all shown as
    missing (M)."""
    n = (end_ns - start_ns) // HOUR_NS
    co2: list = [None] * n
    status = ["-"] * n
    letter = {"measured": "V", "missing": "S" if month.missing_hours == 0 else "M", "out_of_control": "O",
              "stopped": "P"}
    for h in hours:
        i = (h.hour_start_ns - start_ns) // HOUR_NS
        if 0 <= i < n:
            co2[i] = None if h.co2_kg is None or h.co2_kg != h.co2_kg else float(h.co2_kg)
            status[i] = letter.get(h.status, "M")
    return {"start": datetime.fromtimestamp(start_ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timezone": month.timezone, "co2_kg": co2, "status": "".join(status)}


def month_figures(records: Sequence[MonthlyRecord], calculated: dict | None = None,
                  alerts: Sequence[dict] = ()) -> dict:
    """An archive entry's figures from the closed monthly records of its sources (summed; one record: a source's
    own entry), the CO2 and PFCs calculated from the report (``co2_t``, ``cf4_t``, ``c2f6_t``, ``pfc_co2e_t``)
    and the month's alerts."""
    calc = calculated or {}
    co2 = sum(m.co2_t for m in records)
    measured_co2 = sum(m.measured_co2_t for m in records)
    operating = sum(m.operating_hours for m in records)
    measured = sum(m.measured_hours for m in records)
    return {
        "co2_t": co2, "measured_co2_t": measured_co2,
        "substituted_co2_t": sum(m.substituted_co2_t for m in records), "cf4_t": calc.get("cf4_t", 0.0),
        "c2f6_t": calc.get("c2f6_t", 0.0), "co2e_t": co2 + calc.get("pfc_co2e_t", 0.0),
        "hours_in_month": records[0].hours_in_month, "operating_hours": operating, "measured_hours": measured,
        "substituted_hours": sum(m.substituted_hours for m in records),
        "missing_hours": sum(m.missing_hours for m in records), "valid_days": min(m.valid_days for m in records),
        "valid": all(m.valid for m in records), "completeness": measured / operating if operating else None,
        "calculated_co2_t": calc.get("co2_t"), "deviation": deviation(co2, calc.get("co2_t")),
        "deviation_measured": deviation(measured_co2, calc.get("co2_t")),
        "alerts": sorted(alerts, key=lambda a: a["id"])}


def alert_figures(alert) -> dict:
    """What the archive keeps of an alert (:class:`schemas.alerts.Alert`): enough for a reviewer to read it beside
    the month (rule, severity, figures, explanation, the evidence pointers with their time spans)."""
    return {"id": alert.id, "rule": alert.rule, "severity": alert.severity, "deviation": alert.deviation,
            "source_id": alert.source_id, "period": alert.period, "measured": alert.measured,
            "expected": alert.expected, "allowed": alert.allowed, "unit": alert.unit,
            "explanation": alert.explanation, "evidence": list(alert.evidence)}


def calculated(report) -> dict:
    """The calculation-based figures of one accounting report that an archive entry keeps (t)."""
    from streams.kernels.accounting import accounting_emissions, inputs_from_reports

    em = accounting_emissions(inputs_from_reports([report]))
    return {"co2_t": float(em.co2_t[0]), "cf4_t": float(em.cf4_t[0]), "c2f6_t": float(em.c2f6_t[0]),
            "pfc_co2e_t": float(em.cf4_co2e_t[0] + em.c2f6_co2e_t[0])}
