// The console's charts (Apache ECharts, served from /static/vendor) and the deadline countdown.
// Page data comes from the JSON block #page-data; times are drawn in the entity's local time zone.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const L = (k) => (data.labels && data.labels[k]) || k;
  const R = (code) => (data.regions && data.regions[code]) || code;
  const SEV = { critical: "#c0392b", warning: "#e67e22", info: "#2980b9", cleared: "#95a5a6" };
  const STATUS = [["V", "status_V", "#2e9e5b"], ["S", "status_S", "#f1c40f"], ["M", "status_M", "#c0392b"],
                  ["O", "status_O", "#8e44ad"], ["P", "status_P", "#7f8c8d"], ["-", "status_-", "#ecf0f1"]];
  const HOUR = 3600 * 1000;
  const charts = [];

  function localParts(ms, tz) {
    const f = new Intl.DateTimeFormat("en-GB", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
                                                 hour: "2-digit", hour12: false });
    const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
    return { month: p.month, day: +p.day, hour: +p.hour % 24 };
  }

  function spans(alert, source) {  // evidence pointers "influx:...?source=S&channel=C&range=T0/T1"
    const out = [];
    for (const ev of alert.evidence || []) {
      const q = ev.split("?")[1] || "";
      const params = new URLSearchParams(q);
      const range = params.get("range");
      if (!range || (params.get("source") && params.get("source") !== source)) continue;
      const [a, b] = range.split("/").map((s) => Date.parse(s));
      if (!isNaN(a) && !isNaN(b)) out.push([a, b]);
    }
    return out;
  }

  function draw(el, option) {
    const chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(Object.assign({ animation: false }, option));
    chart.on("finished", () => { el.dataset.rendered = "1"; });
    el.dataset.rendered = "1";
    charts.push(chart);
    return chart;
  }

  const builders = {
    comparison(el) {
      const c = data.comparison;
      if (c.cems_co2_t == null) { el.textContent = L("no_data"); return; }
      const calc = c.calculated_co2_t;
      const bars = [{ value: c.cems_co2_t, itemStyle: { color: "#2c7fb8" } }];
      const names = [L("cems_co2")];
      if (calc != null) { bars.push({ value: calc, itemStyle: { color: "#7fcdbb" } }); names.push(L("calculated_co2")); }
      if (c.reported_calculated_co2_t != null && calc != null && Math.abs(c.reported_calculated_co2_t - calc) > 0.05) {
        bars.push({ value: c.reported_calculated_co2_t, itemStyle: { color: "#bcbddc" } }); names.push(L("reported_calc"));
      }
      const band = calc != null ? [[{ yAxis: calc * (1 - c.tolerance), name: L("tolerance") + " ±" + (c.tolerance * 100).toFixed(1) + " %" },
                                     { yAxis: calc * (1 + c.tolerance) }]] : [];
      const top = Math.max(...bars.map((b) => b.value), calc ? calc * (1 + c.tolerance) : 0) * 1.1;
      draw(el, {
        grid: { left: 70, right: 20, top: 30, bottom: 30 }, tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: names }, yAxis: { type: "value", name: L("t"), max: Math.ceil(top) },
        series: [{ type: "bar", data: bars, barWidth: "40%", label: { show: true, position: "top",
                   formatter: (p) => Math.round(p.value).toLocaleString() },
                   markArea: { silent: true, itemStyle: { color: "rgba(46,158,91,0.15)" },
                              label: { position: "insideBottomLeft", color: "#2e7d4f" }, data: band }}],
      });
    },
    hourly(el) {
      const source = el.dataset.source, h = data.hourly[source], tz = data.timezone;
      const t0 = Date.parse(h.start);
      const n = h.co2_kg.length;
      const cats = [];
      for (let i = 0; i < n; i++) {
        const p = localParts(t0 + i * HOUR, tz);
        cats.push(p.month + "-" + String(p.day).padStart(2, "0") + " " + String(p.hour).padStart(2, "0") + ":00");
      }
      const areas = [], whole = [];
      for (const a of data.alerts) {
        if (a.source_id && a.source_id !== source) continue;
        const s = spans(a, source);
        if (!s.length) { whole.push(a); continue; }
        for (const [a0, a1] of s) {
          const i0 = Math.max(0, Math.floor((a0 - t0) / HOUR)), i1 = Math.min(n - 1, Math.floor((a1 - 1 - t0) / HOUR));
          if (i1 >= 0 && i0 < n) areas.push([{ xAxis: cats[i0], name: a.rule, itemStyle: { color: SEV[a.severity] || "#c0392b", opacity: 0.25 } },
                                             { xAxis: cats[Math.max(i0, i1)] }]);
        }
      }
      const bad = [];
      for (let i = 0; i < n; i++) if (h.status[i] !== "V" && h.status[i] !== "P") bad.push([cats[i], 0]);
      const chart = draw(el, {
        title: { text: "", subtext: whole.map((a) => "▲ " + a.rule + " (" + L(a.severity) + ", " + L("whole_month") + ")").join("   "),
                 left: 60, top: -4, subtextStyle: { color: "#c0392b" } },
        grid: { left: 70, right: 20, top: 40, bottom: 60 }, tooltip: { trigger: "axis" },
        dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }],
        xAxis: { type: "category", data: cats, axisLabel: { interval: 47 } }, yAxis: { type: "value", name: L("kg") },
        series: [{ name: L("hourly_co2"), type: "line", data: h.co2_kg, showSymbol: false, connectNulls: false,
                   lineStyle: { width: 1 }, markArea: { data: areas, label: { show: true, position: "insideTop" } } },
                 { name: L("status_S") + "/" + L("status_M"), type: "scatter", data: bad, symbolSize: 5,
                   itemStyle: { color: "#c0392b" } }],
      });
      el.dataset.markers = String(areas.length + whole.length);
      return chart;
    },
    heatmap(el) {
      const source = el.dataset.source, h = data.hourly[source], tz = data.timezone;
      const t0 = Date.parse(h.start), n = h.status.length;
      const code = Object.fromEntries(STATUS.map((s, i) => [s[0], i]));
      const cells = [], days = new Set();
      for (let i = 0; i < n; i++) {
        const p = localParts(t0 + i * HOUR, tz);
        days.add(p.day);
        cells.push([p.day - 1, p.hour, code[h.status[i]] ?? 5]);
      }
      const dayCats = Array.from({ length: Math.max(...days) }, (_, i) => String(i + 1));
      const counts = STATUS.map((s) => (h.status.split(s[0]).length - 1));
      draw(el, {
        grid: { left: 50, right: 20, top: 10, bottom: 70 },
        tooltip: { formatter: (p) => L("day") + " " + (p.value[0] + 1) + " " + String(p.value[1]).padStart(2, "0") + ":00 · " + L(STATUS[p.value[2]][1]) },
        xAxis: { type: "category", data: dayCats, name: L("day"), splitArea: { show: true } },
        yAxis: { type: "category", data: Array.from({ length: 24 }, (_, i) => String(i)), name: L("hour"), inverse: true },
        visualMap: { type: "piecewise", dimension: 2, orient: "horizontal", left: "center", bottom: 0,
                     pieces: STATUS.map((s, i) => ({ value: i, label: L(s[1]) + " (" + counts[i] + ")", color: s[2] })) },
        series: [{ type: "heatmap", data: cells, itemStyle: { borderColor: "#fff", borderWidth: 1 } }],
      });
    },
    deadlines(el) {
      const ov = data.overview;
      const regions = ov.regions.map((r) => r.region);
      const keys = [["in_time", "#2e9e5b"], ["late", "#e67e22"], ["missing", "#c0392b"], ["due", "#95a5a6"]];
      draw(el, {
        grid: { left: 60, right: 20, top: 40, bottom: 40 }, tooltip: { trigger: "axis" }, legend: { top: 0 },
        xAxis: { type: "category", data: regions.map(R) }, yAxis: { type: "value", minInterval: 1 },
        series: keys.map(([k, color]) => ({ name: L(k), type: "bar", stack: "s", itemStyle: { color },
                                            data: ov.regions.map((r) => r[k]) })),
      });
    },
    "region-alerts"(el) {
      const counts = data.alerts, regions = Object.keys(counts);
      draw(el, {
        grid: { left: 60, right: 20, top: 40, bottom: 40 }, tooltip: { trigger: "axis" }, legend: { top: 0 },
        xAxis: { type: "category", data: regions.map(R) }, yAxis: { type: "value", minInterval: 1 },
        series: ["critical", "warning", "info"].map((s) => ({ name: L(s), type: "bar", stack: "a", itemStyle: { color: SEV[s] },
                                                              data: regions.map((r) => counts[r][s] || 0) })),
      });
    },
    queue(el) {
      const rows = data.queue;
      const regions = [...new Set(rows.map((a) => a.municipality || a.province))].sort();
      draw(el, {
        grid: { left: 60, right: 20, top: 30, bottom: 30 }, tooltip: { trigger: "axis" }, legend: { top: 0 },
        xAxis: { type: "category", data: regions.map(R) }, yAxis: { type: "value", minInterval: 1 },
        series: ["critical", "warning", "info"].map((s) => ({ name: L(s), type: "bar", stack: "q", itemStyle: { color: SEV[s] },
          data: regions.map((r) => rows.filter((a) => (a.municipality || a.province) === r && a.severity === s).length) })),
      });
    },
  };

  function countdown() {
    const el = document.getElementById("countdown");
    if (!el) return;
    let left = +el.dataset.seconds;
    const tick = () => {
      if (left <= 0) { el.textContent = L("overdue"); return; }
      const d = Math.floor(left / 86400), h = Math.floor(left % 86400 / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      el.textContent = d + " " + L("days_left") + " " + [h, m, s].map((x) => String(x).padStart(2, "0")).join(":");
      left -= 1;
    };
    tick();
    setInterval(tick, 1000);
  }

  window.addEventListener("DOMContentLoaded", () => {
    for (const el of document.querySelectorAll("[data-chart]")) {
      const build = builders[el.dataset.chart];
      if (build) build(el);
    }
    window.addEventListener("resize", () => charts.forEach((c) => c.resize()));
    countdown();
    document.body.dataset.charts = String(charts.length);
  });
})();
