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
