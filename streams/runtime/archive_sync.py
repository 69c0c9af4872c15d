"""``cems archive sync``: the pipeline's closed months into the monthly archive, read from the compacted topics.

Every entity-month whose CEMS months are all closed goes in: CO2 and hours summed over its sources
(:func:`streams.core.figures.month_figures`), CF4, C2F6 and CO2e and the calculated CO2 from its report, its alerts,
and the hours behind each source-month for the console's charts. The archive keeps a new version only where the
figures changed, so running it again is harmless.
"""

from __future__ import annotations

from collections import defaultdict

from schemas.accounting import AccountingReport
from schemas.records import HourlyRecord, MonthlyRecord
from streams.archive.store import Archive, Entry
from streams.config import WorkerConfig, load_sites
from streams.core.figures import alert_figures, calculated, hourly_figures, month_figures
from streams.core.monthly import month_range
from streams.runtime.reconciler import read_alerts, read_latest

__all__ = ["sync_archive"]


def sync_archive(cfg: WorkerConfig, archive: Archive) -> list[Entry]:
    """Every entity-month with a closed CEMS month into the archive: CO2 and hours summed over its sources, CF4,
    C2F6 and CO2e and the calculated CO2 from its report, its alerts; a new version only where they changed."""
    entities = {e.id: e for e in load_sites(cfg.sites)}
    months = read_latest(cfg, cfg.topics.monthly, MonthlyRecord.from_json)
    reports = {(r.entity_id, r.month): r for r in read_latest(cfg, cfg.topics.accounting,
                                                              AccountingReport.model_validate_json)
               if r.source_id is None}
    alerts = defaultdict(list)
    for a in read_alerts(cfg):
        if a.severity != "cleared":
            alerts[(a.entity_id, a.period)].append(alert_figures(a))
    by_month = defaultdict(list)
    for m in months:
        by_month[(m.entity_id, m.month)].append(m)
    hours = defaultdict(list)
    for h in read_latest(cfg, cfg.topics.hourly, HourlyRecord.from_json):
        hours[h.source_id].append(h)
    written = []
    for (entity_id, label), ms in sorted(by_month.items()):
        if entity_id not in entities or any(m.status == "open" for m in ms):
            continue
        entity = entities[entity_id]
        archive.register(entity_id, entity.timezone, min(lbl for e, lbl in by_month if e == entity_id),
                         entity.region.province if entity.region else "",
                         entity.region.municipality if entity.region else "")
        calc = calculated(reports[(entity_id, label)]) if (entity_id, label) in reports else {}
        figures = month_figures(ms, calc, alerts.get((entity_id, label), []))
        reason = "late_data" if any(m.reason == "late_data" for m in ms) else "sync"
        for source_id, fig in [(None, figures)] + [(m.source_id, month_figures([m])) for m in ms]:
            entry = archive.put(entity_id, source_id, label, fig, reason)
            if entry is not None:
                written.append(entry)
        start, end = month_range(label, entity.tz)
        for m in ms:  # the hours behind the month, for the console's charts
            archive.put_hourly(entity_id, m.source_id, label, hourly_figures(hours.get(m.source_id, []), m, start, end))
    return written
