// Search page: each trial's metric by epoch, the best-so-far line, and the metric against each searched field
// (Plotly SVG scatter only: WebGL traces such as parcoords need a GPU context a headless or locked-down browser lacks,
// and their shader compiler needs eval, which the pages' CSP refuses).
// Search form: a preset fills the space box and says whether the base recipe is the first trial.
"use strict";

(() => {
  const config = () => window.fitboardPlotConfig;

  function drawCurves(data) {
    const curves = data.trials.filter((t) => t.curve.length).map((t) => ({
      x: t.curve.map((_, i) => i + 1), y: t.curve, mode: "lines+markers", type: "scatter",
      name: `trial ${t.number} (${t.status})`, line: { dash: t.status === "pruned" ? "dot" : "solid" },
    }));
    const layout = (title, x) => ({ margin: { t: 24, r: 8 }, xaxis: { title: { text: x }, tickformat: "d" },
      yaxis: { title: { text: title } }, legend: { orientation: "h", y: -0.25 } });
    window.Plotly.newPlot("search-curves", curves, layout(data.metric, "epoch"), config());
    const best = data.best_so_far;
    window.Plotly.newPlot("search-best", [{ x: best.map((b) => b.number), y: best.map((b) => b.best), type: "scatter",
      mode: "lines+markers", line: { dash: "dash", shape: "hv" }, name: "best so far" }],
    layout(`best ${data.metric}`, "trial"), config());
  }

  // One small chart per searched field: the field's value (x) against the finished trials' metric (y).
  function drawParams(data) {
    const grid = document.getElementById("search-params");
    const done = data.trials.filter((t) => t.value !== null && t.status === "succeeded");
    if (!grid || !done.length) return;
    data.space.forEach((field) => {
      const figure = document.createElement("figure");
      const chart = document.createElement("div");
      chart.className = "chart chart-param";
      chart.setAttribute("aria-label", `${data.metric} against ${field.title}`);
      figure.append(chart);
      grid.append(figure);
      const raw = done.map((t) => t.params[field.path]);
      const x = field.axis === "category" ? raw.map((v) => (v === null ? "none" : String(v))) : raw;
      window.Plotly.newPlot(chart, [{ x, y: done.map((t) => t.value), type: "scatter", mode: "markers",
        marker: { size: 9 }, text: done.map((t) => `trial ${t.number}: ${t.words[field.path]}`),
        hovertemplate: "%{text}<br>" + data.metric + " %{y:.4f}<extra></extra>" }],
      { margin: { t: 16, r: 8 }, xaxis: { title: { text: field.title }, type: field.axis, exponentformat: "e" },
        yaxis: { title: { text: data.metric } } }, config());
    });
  }

  function presets() {
    const el = document.getElementById("search-presets");
    const pick = document.getElementById("search-preset");
    if (!el || !pick) return;
    const texts = JSON.parse(el.textContent);
    const notes = JSON.parse(document.getElementById("search-notes").textContent);
    const note = document.getElementById("search-base-note");
    const box = document.getElementById("search-space");
    pick.addEventListener("change", () => {
      if (!pick.value) return;
      box.value = texts[pick.value];
      note.textContent = notes[pick.value];
    });
    // A space typed by hand is checked when the form is sent; until then, say the rule rather than a stale answer.
    box.addEventListener("input", () => {
      pick.value = "";
      note.textContent = "The base recipe is the first trial when its own values lie in the space; the search's " +
        "page says which once it starts.";
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const el = document.getElementById("search-data");
    if (el && typeof window.Plotly !== "undefined") {
      const data = JSON.parse(el.textContent);
      drawCurves(data);
      drawParams(data);
    }
    presets();
  });
})();
