"""A one-file HTML report of a month: summary, hourly CO2 per source, completeness and substitutions, measured vs
calculated, and the alerts. Plots are inline SVG drawn here (no plotting library: the file opens anywhere,
offline, and the demo installs nothing more)."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import numpy as np

from streams.core.figures import deviation

__all__ = ["render"]

_SEVERITY = {"critical": "#b3261e", "warning": "#c77700", "info": "#4a6fa5", "cleared": "#5b7f5b"}
_W, _H = 720, 170


def _line_svg(hours_ns: np.ndarray, values: np.ndarray, missing: np.ndarray, label: str) -> str:
    """Hourly series as a polyline; missing hours as red ticks under the axis."""
    ok = np.isfinite(values)
    top = float(np.nanmax(values)) * 1.1 if ok.any() and np.nanmax(values) > 0 else 1.0
    n = max(len(values) - 1, 1)
    x = 40 + np.arange(len(values)) * (_W - 50) / n
    y = _H - 25 - np.where(ok, values, 0) / top * (_H - 40)
    runs, cur = [], []
    for xi, yi, k in zip(x, y, ok, strict=True):
        if k:
            cur.append(f"{xi:.1f},{yi:.1f}")
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    lines = "".join(f'<polyline fill="none" stroke="#2b6cb0" stroke-width="1" points="{" ".join(r)}"/>' for r in runs)
    ticks = "".join(f'<line x1="{xi:.1f}" y1="{_H - 22}" x2="{xi:.1f}" y2="{_H - 16}" stroke="#b3261e"/>'
                    for xi, m in zip(x, missing, strict=True) if m)
    days = "".join(f'<text x="{40 + d * 24 * (_W - 50) / n:.0f}" y="{_H - 4}" font-size="9" fill="#555">'
                   f'{datetime.fromtimestamp(hours_ns[d * 24] / 1e9, UTC):%m-%d}</text>'
                   for d in range(0, len(values) // 24, 7))
    return (f'<svg width="{_W}" height="{_H}" role="img" aria-label="{html.escape(label)}">'
            f'<line x1="40" y1="{_H - 25}" x2="{_W - 10}" y2="{_H - 25}" stroke="#999"/>'
            f'<text x="2" y="14" font-size="10" fill="#555">{top:,.0f}</text>'
            f'<text x="2" y="{_H - 27}" font-size="10" fill="#555">0</text>{lines}{ticks}{days}</svg>')


def _bars_svg(groups: list[tuple[str, list[tuple[str, float, str]]]], unit: str) -> str:
    """Grouped horizontal bars: (group label, [(bar label, value, colour)])."""
    rows = sum(len(b) for _, b in groups) + len(groups)
    height = 18 * rows + 10
    top = max([v for _, b in groups for _, v, _ in b] + [1.0])
    out, yy = [], 5
    for name, bars in groups:
        out.append(f'<text x="0" y="{yy + 12}" font-size="11" font-weight="bold">{html.escape(name)}</text>')
        yy += 18
        for label, value, colour in bars:
            w = value / top * (_W - 330)
            out.append(f'<text x="10" y="{yy + 12}" font-size="11">{html.escape(label)}</text>'
                       f'<rect x="170" y="{yy + 2}" width="{w:.1f}" height="12" fill="{colour}"/>'
                       f'<text x="{175 + w:.1f}" y="{yy + 12}" font-size="11">{value:,.1f} {unit}</text>')
            yy += 18
    return f'<svg width="{_W}" height="{height}">{"".join(out)}</svg>'


def render(results, title: str, archive_head: str) -> str:
    """``results``: :class:`streams.runtime.embedded.PlantResult` after reconciliation."""
    summary, sections, alerts = [], [], []
    completeness, versus = [], []
    for r in results:
        m = next((m for m in r.monthly if m.status == "closed"), r.monthly[0])  # the archived month, if any
        calc = r.calculated.get("co2_t")
        d = deviation(m.co2_t, calc)
        dev = "" if d is None else f"{d:+.1%}"
        worst = max((a.severity for a in r.alerts), key=["info", "warning", "critical"].index, default="")
        summary.append(f"<tr><td>{html.escape(r.entity.name)}</td><td>{r.entity.sector.value}</td><td>{m.month}</td>"
                       f"<td>{m.status}</td><td class=n>{m.co2_t:,.0f}</td><td class=n>{m.measured_co2_t:,.0f}</td>"
                       f"<td class=n>{m.substituted_co2_t:,.0f}</td>"
                       f"<td class=n>{'' if calc is None else f'{calc:,.0f}'}</td><td class=n>{dev}</td>"
                       f"<td class=n>{'' if m.completeness is None else f'{m.completeness:.1%}'}</td>"
                       f"<td class=n>{m.substituted_hours}</td><td style='color:{_SEVERITY.get(worst, '#333')}'>"
                       f"{len(r.alerts)} {worst}</td></tr>")
        hours = sorted(r.hourly, key=lambda h: h.hour_start_ns)
        last = {h.hour_start_ns: h for h in hours}  # newest revision
        hs = np.array(sorted(last), dtype=np.int64)
        co2 = np.array([np.nan if last[h].co2_kg is None else last[h].co2_kg / 1000 for h in hs])
        missing = np.array([last[h].missing for h in hs])
        sections.append(f"<h3>{html.escape(r.entity.name)}: hourly CO2 [t/h], {m.month}</h3>"
                        + _line_svg(hs, co2, missing, f"hourly CO2 of {r.entity.id}"))
        completeness.append((r.entity.id, [("measured hours", m.measured_hours, "#2b6cb0"),
                                            ("substituted hours", m.substituted_hours, "#c77700"),
                                            ("missing hours", m.missing_hours, "#b3261e"),
                                            ("stopped hours", m.hours - m.operating_hours, "#999")]))
        versus.append((r.entity.id, [("CEMS, measured hours", m.measured_co2_t, "#2b6cb0"),
                                     ("CEMS, with substitutes", m.co2_t, "#6b8fc7")]
                       + ([("calculated (report)", calc, "#7a5195")] if calc is not None else [])))
        for a in r.alerts:
            colour = _SEVERITY.get(a.severity, "#333")
            alerts.append(f"<tr><td style='color:{colour};font-weight:bold'>{a.severity}</td>"
                          f"<td>{html.escape(a.rule)}</td><td>{html.escape(a.entity_id)}</td><td>{a.period}</td>"
                          f"<td class=n>{'' if a.deviation is None else f'{a.deviation:+.1%}'}</td>"
                          f"<td>{html.escape(a.explanation)}<br><small>{html.escape(a.id)}</small></td></tr>")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}small{{color:#666}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Archive head hash <code>{archive_head[:16]}…</code>
(every archived version is chained to the one before it).</p>
<h2>Alerts ({len(alerts)})</h2>
<table><tr><th>severity</th><th>rule</th><th>entity</th><th>month</th><th>deviation</th><th>explanation</th></tr>
{''.join(alerts) or '<tr><td colspan=6>none</td></tr>'}</table>
<h2>Summary</h2>
<table><tr><th>plant</th><th>sector</th><th>month</th><th>status</th><th>CEMS CO2 [t]</th><th>of which measured [t]</th>
<th>substituted [t]</th><th>calculated CO2 [t]</th><th>deviation</th>
<th>completeness</th><th>substituted h</th><th>alerts</th></tr>{''.join(summary)}</table>
<h2>Measured vs calculated, per month [t CO2]</h2>{_bars_svg(versus, "t")}
<h2>Completeness and substitutions per source [hours]</h2>{_bars_svg(completeness, "h")}
<h2>Hourly CO2 (red ticks: missing hours)</h2>{''.join(sections)}
</body></html>"""
