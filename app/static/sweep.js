// Sweep page: variants' mean accuracy with a ±std band, and a reload whenever one of its runs changes status.
// Ablate page: how many runs the ticked boxes will start.
"use strict";

(() => {
  const POLL_MS = 5000;
  const plain = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const signature = (report) => report.variants.flatMap((v) => v.runs.map((r) => `${r.id}:${r.status}`)).join(",");

  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  // Epochs are whole numbers: ticks at 1, 2, 3 (every few epochs on long runs), never 1.5.
  function integerTicks(n) {
    return { tickmode: "linear", tick0: 1, dtick: Math.max(1, Math.ceil(n / 12)), tickformat: "d" };
  }

  function drawCurves(data) {
    const el = document.getElementById("sweep-chart");
    if (!el || typeof window.Plotly === "undefined") return;
    const traces = [];
    data.series.filter((s) => s.n).forEach((s) => {
      const x = s.epoch.map((e) => e + 1);
      const group = s.label;
      // The band: an invisible lower edge, then the upper edge filled down to it (fill: "tonexty").
      traces.push({ x, y: s.mean.map((m, i) => m - s.std[i]), mode: "lines", line: { width: 0, color: s.color },
        hoverinfo: "skip", showlegend: false, legendgroup: group, type: "scatter" });
      traces.push({ x, y: s.mean.map((m, i) => m + s.std[i]), mode: "lines", line: { width: 0, color: s.color },
        fill: "tonexty", fillcolor: rgba(s.color, 0.15), hoverinfo: "skip", showlegend: false, legendgroup: group, type: "scatter" });
      traces.push({ x, y: s.mean, mode: "lines+markers", name: plain(`${s.label} (n=${s.n})`), legendgroup: group,
        line: { color: s.color, width: 2 }, marker: { size: 4 }, type: "scatter",
        customdata: s.std, hovertemplate: "epoch %{x}<br>accuracy %{y:.4f} ± %{customdata:.4f}" });
    });
    if (!traces.length) return;
    window.Plotly.newPlot(el, traces, {
      height: 340, margin: { l: 55, r: 15, t: 10, b: 40 }, hovermode: "closest",
      xaxis: { title: { text: "epoch (all stages)" }, ...integerTicks(Math.max(...data.series.map((s) => s.epoch.length))) },
      yaxis: { title: { text: "accuracy" } },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    }, window.fitboardPlotConfig);
  }

  // The server renders everything; while runs train, ask the API every few seconds and reload on any change.
  function follow(data) {
    const timer = window.setInterval(async () => {
      const busy = document.activeElement && document.activeElement.closest("form");
      if (busy) return;  // do not throw away what the user is typing
      try {
        const r = await fetch(`/api/v1/sweeps/${data.id}`, { headers: { Accept: "application/json" } });
        if (!r.ok) return;
        const report = await r.json();
        if (signature(report) !== data.signature) {
          window.clearInterval(timer);
          window.location.reload();
        }
      } catch { /* the server restarting: try again next tick */ }
    }, POLL_MS);
  }

  function countRuns(form) {
    const out = document.getElementById("run-count");
    const update = () => {
      const k = form.querySelectorAll('input[type="checkbox"]:checked').length;
      const seeds = parseInt(form.elements.seeds.value, 10) || 0;
      const grid = form.querySelector('input[name="mode"]:checked').value === "grid";
      const variants = k ? (grid ? 2 ** k : 1 + k) : 0;
      out.textContent = k && seeds ? `${variants} variants × ${seeds} seeds = ${variants * seeds} runs` : "";
    };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
  }

  window.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("ablate-form");
    if (form) countRuns(form);
    const node = document.getElementById("sweep-data");
    if (!node) return;
    const data = JSON.parse(node.textContent);
    drawCurves(data);
    if (data.live) follow(data);
  });
})();
