// Small behaviours shared by every page: confirm dialogs, the "Compare selected" button and the list actions.
"use strict";

// The CSRF token for fetch() writes to the API (sent as X-CSRF-Token).
window.fitboardCsrf = () => document.querySelector('meta[name="csrf-token"]').content;

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("compare-form");
  if (!form) return;
  const button = document.getElementById("compare-button");
  const hint = document.getElementById("compare-hint");
  const picked = () => [...form.querySelectorAll('input[name="ids"]:checked')].map((box) => box.value);
  const update = () => {
    const n = picked().length;
    if (!button) return;
    button.disabled = n < 2;
    button.textContent = n >= 2 ? `Compare selected (${n})` : "Compare selected";
    if (hint) hint.hidden = n >= 2;
  };
  form.addEventListener("change", (event) => {
    const box = event.target;
    if (box.matches && box.matches("[data-pick-group]")) {  // a sweep's box ticks (or unticks) all its runs here
      box.closest("tbody").querySelectorAll('input[name="ids"]').forEach((b) => { b.checked = box.checked; });
    }
    update();
  });
  // A sweep's runs are folded under it; its button unfolds them.
  form.querySelectorAll("[data-toggle-group]").forEach((button) => button.addEventListener("click", () => {
    const group = button.closest("tbody");
    const open = group.classList.toggle("collapsed") === false;
    button.setAttribute("aria-expanded", String(open));
    button.textContent = (open ? "▾" : "▸") + button.textContent.slice(1);
  }));
  // The compare page takes ids=1,2,3 (one parameter), not the form's repeated ids=1&ids=2.
  form.addEventListener("submit", (event) => {
    const by = event.submitter;
    if (by && by.dataset.bulk !== undefined) {  // Archive / Delete post the ticked runs to /runs/bulk
      if (!picked().length) { event.preventDefault(); window.alert("Tick one or more runs first."); return; }
      if (by.dataset.confirm && !window.confirm(by.dataset.confirm)) event.preventDefault();
      return;
    }
    event.preventDefault();
    const ids = picked();
    if (ids.length) window.location.href = "/compare?ids=" + ids.join(",");
  });
  update();
});

// Every chart's Plotly config: fitboard is self-hosted and offline, so no logo, no "Share chart" to Plotly Cloud, no
// "Edit in Chart Studio" and no link out (the last two are older Plotly names: harmless where unknown).
window.fitboardPlotConfig = {
  displaylogo: false, responsive: true, showSendToCloud: false, showEditInChartStudio: false, showLink: false,
  modeBarButtonsToRemove: ["sendChartToCloud", "sendDataToCloud"],
};

// Seconds as the server's secs() macro writes them.
window.fitboardDuration = (s) => {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
};

// The runs list: a running run's time so far keeps counting from what the server rendered (the browser's clock
// may be off, its stopwatch is not); when one of them stops running, the list reloads to show how it ended.
document.addEventListener("DOMContentLoaded", () => {
  const POLL_MS = 5000;
  const clocks = [...document.querySelectorAll(".elapsed[data-run]")];
  if (!clocks.length) return;
  const loaded = performance.now();
  window.setInterval(() => {
    const since = (performance.now() - loaded) / 1000;
    clocks.forEach((el) => {
      el.querySelector("[data-elapsed-text]").textContent = window.fitboardDuration(Number(el.dataset.elapsed) + since);
    });
  }, 1000);
  const poll = window.setInterval(async () => {
    try {
      const r = await fetch("/api/v1/runs?status=running&archived=show&limit=500", { headers: { Accept: "application/json" } });
      if (!r.ok) return;
      const running = new Set((await r.json()).items.map((run) => String(run.id)));
      if (clocks.some((el) => !running.has(el.dataset.run))) {
        window.clearInterval(poll);
        window.location.reload();
      }
    } catch { /* the server restarting: ask again next time */ }
  }, POLL_MS);
});

