// The run page, live: epoch rows and charts grow from the SSE stream; the page reloads when the run ends.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("run-data").textContent);
  const FINISHED = data.finished_statuses; // from fitboard.app.core.status, via the page
  const epochs = data.epochs.slice();
  const tbody = document.getElementById("epoch-rows");
  const f4 = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(4));
  const hasPlotly = () => typeof window.Plotly !== "undefined";
  let lastStage = epochs.length ? epochs[epochs.length - 1].stage : null;
  let lrStage = null;

  // Every cell is set with textContent: run data never becomes markup.
  function cell(tag, text, cls) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }

  function stageLabel(stage) {
    return data.stages[stage] || `stage ${stage + 1}`;
  }

  function addRow(e) {
    if (e.stage !== lastStage) {
      const sep = document.createElement("tr");
      sep.className = "stage-sep";
      sep.dataset.stage = e.stage;
      const th = cell("th", stageLabel(e.stage));
      th.colSpan = 6;
      sep.appendChild(th);
      tbody.appendChild(sep);
      lastStage = e.stage;
    }
    const tr = document.createElement("tr");
    tr.dataset.stage = e.stage;
    tr.className = "fresh";
    const m = e.metrics || {};
    tr.title = `stage ${e.stage + 1} · epoch ${e.epoch + 1}`;  // stored 0-based, shown 1-based
    // The first cell counts over all stages, as the chart counts.
    tr.append(cell("td", String(epochs.length), "num"), cell("td", f4(e.train_loss), "num"), cell("td", f4(e.valid_loss), "num"),
      cell("td", f4(m.accuracy), "num"), cell("td", f4(m.error_rate), "num"),
      cell("td", e.seconds === null || e.seconds === undefined ? "–" : `${Number(e.seconds).toFixed(1)} s`, "num"));
    tbody.appendChild(tr);
    document.getElementById("epoch-table").hidden = false;
    const empty = document.getElementById("epochs-empty");
    if (empty) empty.hidden = true;
  }

  function drawChart() {
    const el = document.getElementById("chart");
    if (!el || !hasPlotly()) return;
    if (!epochs.length) { el.hidden = true; return; }
    el.hidden = false;
    const x = epochs.map((_, i) => i + 1);
    const hover = epochs.map((e, i) => `epoch ${i + 1} (stage ${e.stage + 1} · epoch ${e.epoch + 1})`);
    const line = (y, name, extra) => Object.assign({ x, y, name, text: hover, mode: "lines+markers", type: "scatter",
      hovertemplate: "%{text}<br>" + name + " %{y:.4f}<extra></extra>", marker: { size: 5 } }, extra);
    const traces = [
      line(epochs.map((e) => e.train_loss), "train_loss", { line: { color: "#2563eb" } }),
      line(epochs.map((e) => e.valid_loss), "valid_loss", { line: { color: "#ea580c" } }),
      line(epochs.map((e) => (e.metrics || {}).accuracy), "accuracy", { yaxis: "y2", line: { color: "#16a34a", dash: "dot" } }),
    ];
    // A dashed line where each new stage (new size, lr, freeze or MixUp) starts.
    const shapes = [], annotations = [];
    epochs.forEach((e, i) => {
      if (i > 0 && e.stage !== epochs[i - 1].stage) {
        shapes.push({ type: "line", xref: "x", yref: "paper", x0: i + 0.5, x1: i + 0.5, y0: 0, y1: 1, line: { color: "#94a3b8", dash: "dash", width: 1 } });
        annotations.push({ x: i + 0.5, y: 1, xref: "x", yref: "paper", text: `stage ${e.stage + 1}`, showarrow: false, xanchor: "left", yanchor: "top", font: { size: 11, color: "#64748b" } });
      }
    });
    if (data.best) {
      const i = epochs.findIndex((e) => e.stage === data.best.stage && e.epoch === data.best.epoch);
      if (i >= 0) annotations.push({ x: i + 1, y: (epochs[i].metrics || {}).accuracy, yref: "y2", text: "best", showarrow: true, arrowhead: 2, ay: 30, font: { size: 11 } });
    }
    const layout = {
      margin: { l: 50, r: 50, t: 10, b: 40 }, height: 300, shapes, annotations, hovermode: "x unified",
      xaxis: { title: { text: "epoch (all stages)" }, tickmode: "linear", tick0: 1, dtick: Math.max(1, Math.ceil(epochs.length / 12)), tickformat: "d" },
      yaxis: { title: { text: "loss" }, rangemode: "tozero" },
      yaxis2: { title: { text: "accuracy" }, overlaying: "y", side: "right", range: [0, 1.02], dtick: 0.2, tickformat: ".0%", showgrid: false },
      legend: { orientation: "h", y: -0.25 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    };
    window.Plotly.react(el, traces, layout, window.fitboardPlotConfig);
  }

  function drawLrFinds(finds) {
    const box = document.getElementById("lr-finds");
    if (!box || !hasPlotly() || !finds.length) return;
    box.replaceChildren();
    finds.forEach((f) => {
      const fig = document.createElement("figure");
      const plot = document.createElement("div");
      plot.className = "chart small-chart";
      fig.append(plot, cell("figcaption", `stage ${f.stage + 1}: valley ${f.suggestion ? f.suggestion.toExponential(1) : "–"}`));
      box.appendChild(fig);
      const traces = [{ x: f.lrs, y: f.losses, mode: "lines", name: "loss", line: { color: "#2563eb" }, hovertemplate: "lr %{x:.1e}<br>loss %{y:.4f}<extra></extra>" }];
      if (f.suggestion) {
        // The suggestion's loss: the curve's point nearest to it on the log scale.
        let best = 0;
        f.lrs.forEach((lr, i) => { if (Math.abs(Math.log(lr / f.suggestion)) < Math.abs(Math.log(f.lrs[best] / f.suggestion))) best = i; });
        traces.push({ x: [f.suggestion], y: [f.losses[best]], mode: "markers", name: "valley", marker: { size: 12, color: "#dc2626", symbol: "circle-open", line: { width: 3 } },
          hovertemplate: "valley %{x:.1e}<extra></extra>" });
      }
      window.Plotly.react(plot, traces, {
        margin: { l: 50, r: 10, t: 10, b: 40 }, height: 240, showlegend: false,
        xaxis: { type: "log", title: { text: "learning rate" }, exponentformat: "e" }, yaxis: { title: { text: "loss" } },
        paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      }, window.fitboardPlotConfig);
    });
  }

  // Progress in words, phase by phase, as fitboard.app.core.progress words it on the server. Stored positions are 0-based,
  // people count from 1; a progress event without a phase (stored before phases) is training.
  const TITLES = { "presize cache": "Presize cache", lr_find: "LR finder", train: "Training", score: "Final scoring",
    tta: "Test-time augmentation" };
  const ETA_OF = { "presize cache": "the presize cache", lr_find: "the LR finder", train: "this epoch",
    score: "the final scoring", tta: "TTA" };
  const phaseOf = (p) => (p.phase && TITLES[p.phase] ? p.phase : "train");
  const of = (n) => (n ? ` of ${n}` : "");

  function progressWords(p) {
    const phase = phaseOf(p);
    const stage = `stage ${p.stage + 1}${of(p.stage_count)}`;
    if (phase === "lr_find") return `${stage} · LR finder step ${p.batch}${of(p.total)}`;
    if (phase === "presize cache") return `${stage} · resizing image ${p.batch}${of(p.total)} into the presize cache`;
    if (phase === "score") return `scoring the validation set with the final weights · batch ${p.batch}${of(p.total)}`;
    if (phase === "tta") return `TTA pass ${p.batch}${of(p.total)}${p.total && p.batch === p.total ? " (unaugmented)" : ""}`;
    return `stage ${p.stage + 1}${of(p.stage_count || data.plan.length)} · epoch ${p.epoch + 1}${of(p.epoch_count || data.plan[p.stage])} · batch ${p.batch}${of(p.total)}`;
  }

  function etaWords(p) {
    const known = (v) => v !== null && v !== undefined;
    if (known(p.run_eta)) return `ETA ${duration(p.run_eta)} for the whole run`;
    return known(p.eta) ? `ETA ${duration(p.eta)} for ${ETA_OF[phaseOf(p)]}` : "";
  }

  // Seconds as the server's secs() macro writes them.
  function duration(s) {
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function setStatus(status) {
    // "Run 7 queued." was true when the page loaded; once the run starts it is not.
    const notice = document.getElementById("notice");
    if (notice && status !== data.statuses.queued && data.status === data.statuses.queued) notice.hidden = true;
    document.querySelectorAll("[data-status-badge]").forEach((b) => { b.textContent = status; b.className = `badge badge-${status}`; });
    const card = document.getElementById("progress");
    if (card) card.hidden = status !== data.statuses.running;
  }

  function showProgress(p) {
    const bar = document.getElementById("progress-bar");
    if (!bar) return;
    bar.max = p.total || 1;
    bar.value = p.batch;
    document.getElementById("progress-phase").textContent = TITLES[phaseOf(p)];
    document.getElementById("progress-text").textContent = progressWords(p);
    document.getElementById("progress-eta").textContent = etaWords(p);
    document.getElementById("progress-loss").textContent = p.smooth_loss === null || p.smooth_loss === undefined ? "" : `smoothed loss ${Number(p.smooth_loss).toFixed(4)}`;
    if (phaseOf(p) === "train" && p.stage !== lrStage) {  // the stage's training began: its LR finder has finished
      lrStage = p.stage;
      if (document.getElementById("lr-finds")) {
        fetch(`/api/v1/runs/${data.id}/lr_finds`, { headers: { Accept: "application/json" } })
          .then((r) => (r.ok ? r.json() : [])).then(drawLrFinds).catch(() => {});
      }
    }
  }

  function connect() {
    // Resume after the rows already on the page; EventSource sends Last-Event-ID itself on reconnects.
    const source = new EventSource(`/api/v1/runs/${data.id}/events?last_event_id=${epochs.length}`);
    source.addEventListener("epoch", (ev) => {
      const e = JSON.parse(ev.data);
      epochs.push(e);
      addRow(e);
      drawChart();
    });
    source.addEventListener("progress", (ev) => showProgress(JSON.parse(ev.data)));
    source.addEventListener("status", (ev) => {
      const s = JSON.parse(ev.data);
      setStatus(s.status);
      if (FINISHED.includes(s.status)) {
        source.close();  // otherwise EventSource reconnects to a stream that has nothing more to say
        window.location.reload();  // results, confusion matrix and downloads are rendered by the server
      }
    });
  }

  window.addEventListener("DOMContentLoaded", () => {
    drawChart();
    drawLrFinds(data.lr_finds);
    if (data.batch && phaseOf(data.batch) === "train") lrStage = data.batch.stage;  // its LR finder is drawn
    if (data.live) connect();
  });
})();
