// The compare page's charts: one trace per run on each metric, stage starts dashed, LR finders on a log axis.
"use strict";

(() => {
  const METRICS = ["train_loss", "valid_loss", "accuracy", "error_rate"];
  // Plotly reads <b>, <br> and entities in names; escape them so a run name is shown as typed, never as markup.
  const plain = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const base = { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", hovermode: "closest",
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, margin: { l: 55, r: 15, t: 10, b: 45 } };
  // Past this many runs a chart drops its point markers, and only the accuracy chart has a legend, at its right
  // (it scrolls): one list of the runs rather than five, and each legend of 100 entries cost ~90 ms to draw. Every
  // run stays its own trace: hover names it, its legend entry hides it on every chart. Where the served Plotly can
  // (a strict build: meta.webgl, see fitboard.app.web.docs.webgl_charts) the lines are WebGL traces, one canvas
  // however many runs; the installed package's bundle cannot compile WebGL under the pages' CSP: SVG there.
  const MANY = 12;
  const LEGEND_METRIC = "accuracy";
  const LEGEND_RIGHT = { orientation: "v", x: 1.02, xanchor: "left", y: 1, yanchor: "top", font: { size: 10 },
    tracegroupgap: 0 };

  // A run's line: the palette's colors in turn, then the same colors again in the next dash style (11th run: the
  // first color, dotted), as the table's swatches show them.
  function look(data, i) {
    const n = data.colors.length;
    return { color: data.colors[i % n], dash: data.dashes[Math.floor(i / n) % data.dashes.length] };
  }

  const runName = (run) => plain(`#${run.id} ${run.name}`);

  function drawMetric(data, metric, el) {
    const starts = new Map();
    const many = data.runs.length > MANY;
    const traces = data.runs.map((run, i) => {
      const { color, dash } = look(data, i);
      const c = run.curves;
      // A dashed line in the run's color where each of its later stages starts (grey where several runs share it).
      c.stage_starts.filter((s) => s > 0).forEach((s) => starts.set(s, starts.has(s) ? "#94a3b8" : color));
      return { type: many && data.webgl ? "scattergl" : "scatter", mode: many ? "lines" : "lines+markers",
        name: runName(run), legendgroup: String(run.id), x: c.x.map((x) => x + 1), y: c[metric], connectgaps: false,
        line: { color, dash, width: many ? 1.5 : 2 }, marker: { size: 4 },
        hovertemplate: `%{fullData.name}<br>epoch %{x}<br>${metric} %{y:.4f}<extra></extra>` };
    });
    const shapes = [...starts].map(([s, color]) => ({ type: "line", xref: "x", yref: "paper",
      x0: s + 0.5, x1: s + 0.5, y0: 0, y1: 1, line: { color, dash: "dash", width: 1 }, opacity: 0.7 }));
    const layout = Object.assign({}, base, { height: many ? 360 : 320, shapes,
      showlegend: !many || metric === LEGEND_METRIC,
      ...(many && metric === LEGEND_METRIC ? { legend: LEGEND_RIGHT, margin: { ...base.margin, r: 5 } } : {}),
      xaxis: { title: { text: "epoch (all stages)" }, rangemode: "tozero", tickformat: "d", tick0: 0,
        dtick: Math.max(1, Math.ceil(Math.max(...data.runs.map((r) => r.curves.x.length)) / 12)) },
      yaxis: { title: { text: metric }, rangemode: metric.endsWith("loss") ? "tozero" : "normal" } });
    return window.Plotly.newPlot(el, traces, layout, window.fitboardPlotConfig);
  }

  function nearest(lrs, target) {
    let best = 0;
    lrs.forEach((lr, i) => { if (Math.abs(Math.log(lr / target)) < Math.abs(Math.log(lrs[best] / target))) best = i; });
    return best;
  }

  function drawLr(data, el) {
    const traces = [];
    const many = data.runs.length > MANY;
    const dashes = ["solid", "dot", "dash", "dashdot"];  // a few runs: each stage's curve in its own dash
    data.runs.forEach((run, i) => {
      const { color, dash } = look(data, i);
      const group = String(run.id);
      const marks = { x: [], y: [], text: [] };
      run.lr_finds.forEach((f, k) => {
        const stage = `stage ${f.stage + 1}`;
        traces.push(many
          ? { type: data.webgl ? "scattergl" : "scatter", mode: "lines", name: runName(run), legendgroup: group,
            showlegend: k === 0, x: f.lrs, y: f.losses, line: { color, dash, width: 1.5 },
            hovertemplate: `%{fullData.name} · ${stage}<br>lr %{x:.2e}<br>loss %{y:.4f}<extra></extra>` }
          : { type: "scatter", mode: "lines", name: plain(`#${run.id} ${run.name} · ${stage}`), legendgroup: group,
            x: f.lrs, y: f.losses, line: { color, dash: dashes[k % dashes.length] },
            hovertemplate: "%{fullData.name}<br>lr %{x:.2e}<br>loss %{y:.4f}<extra></extra>" });
        if (f.suggestion) {
          const j = nearest(f.lrs, f.suggestion);
          marks.x.push(f.suggestion); marks.y.push(f.losses[j]); marks.text.push(stage);
        }
      });
      if (marks.x.length) {  // the valleys: in the run's legend group, so they hide with its curves
        traces.push({ type: many && data.webgl ? "scattergl" : "scatter", mode: "markers", name: runName(run),
          legendgroup: group, showlegend: false, x: marks.x, y: marks.y, text: marks.text,
          marker: { size: many ? 11 : 13, color, symbol: "circle-open", line: { width: many ? 2 : 3, color } },
          hovertemplate: "%{fullData.name} · %{text}: valley %{x:.2e}<extra></extra>" });
      }
    });
    const layout = Object.assign({}, base, { height: 360, showlegend: !many,
      xaxis: { type: "log", dtick: 1, title: { text: "learning rate" }, exponentformat: "e" }, yaxis: { title: { text: "loss" } } });
    return window.Plotly.newPlot(el, traces, layout, window.fitboardPlotConfig);
  }

  // A legend click hides (or shows again) that run on every chart, not only the one clicked: its curves, its LR-finder
  // stages and valleys are one legend group per chart. Double-click keeps Plotly's own meaning (that chart alone).
  function linkLegends(charts) {
    charts.forEach((el) => el.on("plotly_legendclick", (ev) => {
      const group = ev.data[ev.curveNumber].legendgroup;
      if (!group) return true;
      const visible = ev.fullData[ev.curveNumber].visible === "legendonly" ? true : "legendonly";
      charts.forEach((chart) => {
        const idx = [];
        chart.data.forEach((t, k) => { if (t.legendgroup === group) idx.push(k); });
        if (idx.length) window.Plotly.restyle(chart, { visible }, idx);
      });
      return false;
    }));
  }

  // The final table sorts by a column when its header is clicked (again: the other way); numbers sort as numbers
  // (each cell's data-value holds the raw value), a cell without a value sorts last either way, and the header's
  // aria-sort says the direction. Headers get their buttons here: without JS they are plain headers.
  function sortableTable(table) {
    const heads = [...table.tHead.rows[0].cells].filter((th) => th.dataset.sort);
    heads.forEach((th) => {
      const button = document.createElement("button");
      button.type = "button";  // inside the baseline form: never a submit
      button.className = "sort";
      button.title = `sort by ${th.textContent.trim().toLowerCase()}`;
      const ind = document.createElement("span");
      ind.className = "sort-ind";
      ind.setAttribute("aria-hidden", "true");
      ind.textContent = "⇅";
      button.append(...th.childNodes, ind);
      th.append(button);
      button.addEventListener("click", () => {
        const now = th.getAttribute("aria-sort");
        const dir = now ? (now === "ascending" ? "descending" : "ascending") : (th.dataset.first || "ascending");
        const col = th.cellIndex;
        const numeric = th.dataset.sort === "number";
        const key = (tr) => { const v = tr.cells[col].dataset.value; return v === undefined || v === "" ? null : v; };
        const body = table.tBodies[0];
        const rows = [...body.rows].sort((a, b) => {
          const ka = key(a), kb = key(b);
          if (ka === null || kb === null) return (ka === null) - (kb === null);
          const d = numeric ? Number(ka) - Number(kb) : ka.localeCompare(kb, undefined, { numeric: true });
          return dir === "ascending" ? d : -d;
        });
        body.append(...rows);
        heads.forEach((h) => {
          h.removeAttribute("aria-sort");
          h.querySelector(".sort-ind").textContent = "⇅";
          h.querySelector("button.sort").classList.remove("active");
        });
        th.setAttribute("aria-sort", dir);
        ind.textContent = dir === "ascending" ? "▲" : "▼";
        button.classList.add("active");
      });
    });
  }

  // This script runs before plotly.min.js (both deferred, in order): the series are on their way while the browser
  // parses Plotly, and are drawn once it is ready.
  const node = document.getElementById("compare-data");
  const meta = node ? JSON.parse(node.textContent) : null;
  // The series come from the JSON API (same session cookie): the HTML page stays small for 100 runs.
  // No extra headers: the page's <link rel=preload> asked for the same request, and only an equal one reuses it.
  const series = meta && fetch(meta.api, { credentials: "same-origin" })
    .then((r) => { if (!r.ok) throw new Error(`compare data: HTTP ${r.status}`); return r.json(); });

  window.addEventListener("DOMContentLoaded", () => {
    if (!node) return;
    // Picking another baseline reloads the page with &baseline=.
    const form = document.getElementById("baseline-form");
    if (form) form.addEventListener("change", () => form.submit());
    const table = document.querySelector("table.compare-table");
    if (table) sortableTable(table);
    if (typeof window.Plotly === "undefined") return;
    series
      .then((data) => {
        performance.mark("compare:data");  // the series are here (bench/compare_draw.py prints the split)
        data.colors = meta.colors;
        data.dashes = meta.dashes;
        data.webgl = meta.webgl === true;
        const charts = [], drawn = [];
        METRICS.forEach((m) => {
          const el = document.getElementById(`chart-${m}`);
          if (el) { charts.push(el); drawn.push(drawMetric(data, m, el)); }
        });
        const lr = document.getElementById("chart-lr");
        if (lr) { charts.push(lr); drawn.push(drawLr(data, lr)); }
        return Promise.all(drawn).then(() => {
          linkLegends(charts);
          // When every chart was drawn and the frame showing them is due, since navigation started
          // (bench/compare_draw.py, bench/compare.py and the browser tests read it).
          window.requestAnimationFrame(() => {
            document.documentElement.dataset.chartsDrawnMs = String(Math.round(performance.now()));
          });
        });
      })
      .catch((err) => {
        document.querySelectorAll(".chart").forEach((el) => { el.textContent = `Charts unavailable: ${err.message}`; });
      });
  });
})();
