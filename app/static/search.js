// Search page: each trial's metric by epoch, the best-so-far line and parallel coordinates (Plotly).
// Search form: a preset fills the space box.
"use strict";

(() => {
  function drawSearch() {
    const el = document.getElementById("search-data");
    if (!el || typeof window.Plotly === "undefined") return;
    const data = JSON.parse(el.textContent);
    const curves = data.trials.filter((t) => t.curve.length).map((t) => ({
      x: t.curve.map((_, i) => i + 1), y: t.curve, mode: "lines+markers", type: "scatter",
      name: `trial ${t.number} (${t.status})`, line: { dash: t.status === "pruned" ? "dot" : "solid" },
    }));
    const layout = (title, x) => ({ margin: { t: 24, r: 8 }, xaxis: { title: x, tickformat: "d" }, yaxis: { title } });
    window.Plotly.newPlot("search-curves", curves, layout(data.metric, "epoch"), { responsive: true });
    const best = data.best_so_far;
    window.Plotly.newPlot("search-best", [{ x: best.map((b) => b.number), y: best.map((b) => b.best),
      mode: "lines+markers", line: { dash: "dash", shape: "hv" }, name: "best so far" }],
    layout(`best ${data.metric}`, "trial"), { responsive: true });
    const done = data.trials.filter((t) => t.value !== null && t.status === "succeeded");
    if (!done.length) return;
    const dims = data.space.map((path) => {
      const raw = done.map((t) => t.params[path]);
      if (raw.every((v) => typeof v === "number")) return { label: path, values: raw };
      const keys = [...new Set(raw.map((v) => JSON.stringify(v)))];
      return { label: path, values: raw.map((v) => keys.indexOf(JSON.stringify(v))),
        tickvals: keys.map((_, i) => i), ticktext: keys };
    });
    dims.push({ label: data.metric, values: done.map((t) => t.value) });
    window.Plotly.newPlot("search-parcoords", [{ type: "parcoords", dimensions: dims,
      line: { color: done.map((t) => t.value), showscale: true } }], { margin: { t: 40 } }, { responsive: true });
  }

  function presets() {
    const el = document.getElementById("search-presets");
    const pick = document.getElementById("search-preset");
    if (!el || !pick) return;
    const texts = JSON.parse(el.textContent);
    pick.addEventListener("change", () => {
      if (pick.value) document.getElementById("search-space").value = texts[pick.value];
    });
  }

  document.addEventListener("DOMContentLoaded", () => { drawSearch(); presets(); });
})();
