// The compare page's charts: one trace per run on each metric, stage starts dashed, LR finders on a log axis.
"use strict";

(() => {
  const METRICS = ["train_loss", "valid_loss", "accuracy", "error_rate"];
  // Plotly reads <b>, <br> and entities in names; escape them so a run name is shown as typed, never as markup.
  const plain = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const base = { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", hovermode: "closest",
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, margin: { l: 55, r: 15, t: 10, b: 45 } };
  // Past this many runs a chart drops its point markers and legend (the table's swatches name the runs) and draws
  // one stage line per position: 100 runs of 50 epochs were 20,000 SVG markers, 400 legend entries and 400 shapes.
  const MANY = 12;

  // With many runs, the runs that share a color become one trace (their lines split by a null point): a chart of
  // 100 runs draws 10 SVG paths instead of 100, and hovering still names each point's run.
  // items: [{color, name, x, y}] -> Map color -> {x, y, text}.
  function merged(items) {
    const byColor = new Map();
    items.forEach(({ color, name, x, y }) => {
      if (!byColor.has(color)) byColor.set(color, { x: [], y: [], text: [] });
      const t = byColor.get(color);
      x.forEach((v, k) => { t.x.push(v); t.y.push(y[k]); t.text.push(plain(name)); });
      t.x.push(null); t.y.push(null); t.text.push("");
    });
    return byColor;
  }

  function drawMetric(data, metric, el) {
    const traces = [], starts = new Map();
    const many = data.runs.length > MANY;
    if (many) {
      merged(data.runs.map((run, i) => ({ color: data.colors[i % data.colors.length], name: `#${run.id} ${run.name}`,
        x: run.curves.x.map((x) => x + 1), y: run.curves[metric] }))).forEach((t, color) => {
        traces.push({ type: "scatter", mode: "lines", x: t.x, y: t.y, text: t.text, connectgaps: false,
          line: { color, width: 1.25 }, showlegend: false,
          hovertemplate: `%{text}<br>epoch %{x}<br>${metric} %{y:.4f}<extra></extra>` });
      });
    }
    data.runs.forEach((run, i) => {
      const color = data.colors[i % data.colors.length];
      const c = run.curves;
      if (!many) {
        traces.push({ type: "scatter", mode: "lines+markers", name: plain(`#${run.id} ${run.name}`),
          legendgroup: String(run.id), x: c.x.map((x) => x + 1), y: c[metric], connectgaps: false,
          line: { color, width: 2 }, marker: { size: 4 }, hovertemplate: `epoch %{x}<br>${metric} %{y:.4f}` });
      }
      // A dashed line in the run's color where each of its later stages starts (grey where several runs share it).
      c.stage_starts.filter((s) => s > 0).forEach((s) => starts.set(s, starts.has(s) ? "#94a3b8" : color));
    });
    const shapes = [...starts].map(([s, color]) => ({ type: "line", xref: "x", yref: "paper",
      x0: s + 0.5, x1: s + 0.5, y0: 0, y1: 1, line: { color, dash: "dash", width: 1 }, opacity: 0.7 }));
    const layout = Object.assign({}, base, { height: 320, shapes, showlegend: !many,
      xaxis: { title: { text: "epoch (all stages)" }, rangemode: "tozero", tickformat: "d", tick0: 0,
        dtick: Math.max(1, Math.ceil(Math.max(...data.runs.map((r) => r.curves.x.length)) / 12)) },
      yaxis: { title: { text: metric }, rangemode: metric.endsWith("loss") ? "tozero" : "normal" } });
    window.Plotly.newPlot(el, traces, layout, window.fitboardPlotConfig);
  }

  function nearest(lrs, target) {
    let best = 0;
    lrs.forEach((lr, i) => { if (Math.abs(Math.log(lr / target)) < Math.abs(Math.log(lrs[best] / target))) best = i; });
    return best;
  }

  function drawLr(data, el) {
    const traces = [];
    const many = data.runs.length > MANY;
    const valleys = { x: [], y: [], text: [], color: [] };  // with many runs, every valley in one trace
    if (many) {  // every run's curves (each stage's) merged by color, as on the metric charts
      merged(data.runs.flatMap((run, i) => run.lr_finds.map((f) => ({ color: data.colors[i % data.colors.length],
        name: `#${run.id} ${run.name} · stage ${f.stage + 1}`, x: f.lrs, y: f.losses })))).forEach((t, color) => traces.push({ type: "scatter", mode: "lines", x: t.x, y: t.y, text: t.text,
        connectgaps: false, showlegend: false, line: { color, width: 1.25 },
        hovertemplate: "%{text}<br>lr %{x:.2e}<br>loss %{y:.4f}<extra></extra>" }));
    }
    data.runs.forEach((run, i) => {
      const color = data.colors[i % data.colors.length];
      const dashes = ["solid", "dot", "dash", "dashdot"];
      const marks = { x: [], y: [], text: [] };
      run.lr_finds.forEach((f, k) => {
        if (!many) traces.push({ type: "scatter", mode: "lines", name: plain(`#${run.id} ${run.name} · stage ${f.stage + 1}`),
          legendgroup: String(run.id), x: f.lrs, y: f.losses, line: { color, dash: dashes[k % dashes.length] },
          hovertemplate: "lr %{x:.2e}<br>loss %{y:.4f}", showlegend: !many });
        if (f.suggestion) {
          const j = nearest(f.lrs, f.suggestion);
          marks.x.push(f.suggestion); marks.y.push(f.losses[j]); marks.text.push(`stage ${f.stage + 1}`);
        }
      });
      if (many) {
        valleys.x.push(...marks.x); valleys.y.push(...marks.y);
        valleys.text.push(...marks.text.map((t) => `#${run.id} ${t}`)); valleys.color.push(...marks.x.map(() => color));
      } else if (marks.x.length) {
        traces.push({ type: "scatter", mode: "markers", name: plain(`#${run.id} valley`), legendgroup: String(run.id),
          showlegend: false, x: marks.x, y: marks.y, text: marks.text,
          marker: { size: 13, color, symbol: "circle-open", line: { width: 3, color } },
          hovertemplate: "%{text}: valley %{x:.2e}" });
      }
    });
    if (valleys.x.length) {
      traces.push({ type: "scatter", mode: "markers", name: "valleys", showlegend: false, x: valleys.x, y: valleys.y,
        text: valleys.text, marker: { size: 11, symbol: "circle-open", color: valleys.color, line: { width: 2 } },
        hovertemplate: "%{text}: valley %{x:.2e}" });
    }
    const layout = Object.assign({}, base, { height: 360, showlegend: !many,
      xaxis: { type: "log", dtick: 1, title: { text: "learning rate" }, exponentformat: "e" }, yaxis: { title: { text: "loss" } } });
    window.Plotly.newPlot(el, traces, layout, window.fitboardPlotConfig);
  }

  // This script runs before plotly.min.js (both deferred, in order): the series are on their way while the browser
  // parses Plotly, and are drawn once it is ready.
  const node = document.getElementById("compare-data");
  const meta = node ? JSON.parse(node.textContent) : null;
  // The series come from the JSON API (same session cookie): the HTML page stays small for 100 runs.
  const series = meta && fetch(meta.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((r) => { if (!r.ok) throw new Error(`compare data: HTTP ${r.status}`); return r.json(); });

  window.addEventListener("DOMContentLoaded", () => {
    if (!node) return;
    // Picking another baseline reloads the page with &baseline=.
    const form = document.getElementById("baseline-form");
    if (form) form.addEventListener("change", () => form.submit());
    if (typeof window.Plotly === "undefined") return;
    series
      .then((data) => {
        data.colors = meta.colors;
        METRICS.forEach((m) => { const el = document.getElementById(`chart-${m}`); if (el) drawMetric(data, m, el); });
        const lr = document.getElementById("chart-lr");
        if (lr) drawLr(data, lr);
        // When the last chart was drawn, since navigation started (bench/compare.py and the browser tests read it).
        document.documentElement.dataset.chartsDrawnMs = String(Math.round(performance.now()));
      })
      .catch((err) => {
        document.querySelectorAll(".chart").forEach((el) => { el.textContent = `Charts unavailable: ${err.message}`; });
      });
  });
})();
