// The run form: presets for the chosen dataset, and the stage editor (add, remove, renumber rows).
"use strict";

(() => {
  const presets = JSON.parse(document.getElementById("presets-data").textContent);
  const form = document.getElementById("run-form");
  const rows = document.getElementById("stage-rows");
  const template = document.getElementById("stage-template");
  const dataset = document.getElementById("dataset");

  // Names follow stages-<i>-<field>, in row order, so the server reads the stages as shown.
  function renumber() {
    [...rows.querySelectorAll("tr.stage-row")].forEach((tr, i) => {
      tr.querySelector(".stage-no").textContent = String(i + 1);
      tr.querySelectorAll("[data-field]").forEach((input) => {
        input.name = `stages-${i}-${input.dataset.field}`;
        input.id = `f-stages-${i}-${input.dataset.field}`;
      });
    });
    const only = rows.querySelectorAll("tr.stage-row").length <= 1;
    rows.querySelectorAll(".remove-stage").forEach((b) => { b.disabled = only; });
  }

  function clearErrors(tr) {
    tr.querySelectorAll(".error").forEach((e) => e.remove());
    tr.querySelectorAll("[aria-invalid]").forEach((e) => { e.removeAttribute("aria-invalid"); e.removeAttribute("aria-describedby"); });
  }

  function newRow(values) {
    const tr = template.content.querySelector("tr").cloneNode(true);
    if (values) setRow(tr, values);
    rows.appendChild(tr);
    return tr;
  }

  function setRow(tr, values) {
    tr.querySelectorAll("[data-field]").forEach((input) => {
      const v = values[input.dataset.field];
      if (input.type === "checkbox") input.checked = Boolean(v);
      else input.value = v === null || v === undefined ? "" : String(v);
    });
  }

  function applyPreset(index) {
    const entry = presets[dataset.value];
    if (!entry || !entry.presets[index]) return;
    const values = entry.presets[index].form;
    for (const [name, v] of Object.entries(values)) {
      if (name === "stages") continue;
      const input = form.elements.namedItem(name);
      if (!input) continue;
      if (input.type === "checkbox") input.checked = Boolean(v);
      else input.value = String(v);
    }
    rows.replaceChildren();
    values.stages.forEach((s) => newRow(s));
    form.querySelectorAll(".error").forEach((e) => e.remove());
    form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
    document.querySelectorAll(".preset").forEach((b) => b.classList.toggle("active", b.dataset.preset === String(index)));
    syncTta();  // a preset ticks TTA in code (no change event): its passes and max fields must follow
    syncAugment();
    active = index;
    renumber();
  }

  function showSummary() {
    const entry = presets[dataset.value];
    document.getElementById("dataset-summary").textContent = entry ? entry.summary : "";
    // Datasets differ in their presets (only the digits demo has the demo recipe): one button per preset.
    const box = document.getElementById("presets");
    box.querySelectorAll(".preset").forEach((b) => b.remove());
    (entry ? entry.presets : []).forEach((p, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = i === active ? "preset active" : "preset";
      button.dataset.preset = String(i);
      const title = document.createElement("strong");
      title.textContent = p.title;
      const about = document.createElement("span");
      about.textContent = p.about;
      button.append(title, about);
      box.appendChild(button);
    });
  }

  document.getElementById("add-stage").addEventListener("click", () => {
    // A new stage starts as a copy of the last one: the usual next step changes one or two fields.
    const last = rows.querySelector("tr.stage-row:last-child");
    const tr = last ? last.cloneNode(true) : newRow();
    if (last) { clearErrors(tr); rows.appendChild(tr); }
    renumber();
    tr.querySelector("[data-field=epochs]").focus();
  });

  rows.addEventListener("click", (event) => {
    const button = event.target.closest(".remove-stage");
    if (!button || button.disabled) return;
    button.closest("tr").remove();
    renumber();
  });

  document.getElementById("presets").addEventListener("click", (event) => {
    const button = event.target.closest(".preset");
    if (button) applyPreset(Number(button.dataset.preset));
  });

  // A preset the user has not edited since follows the dataset: its sizes depend on the images.
  let active = form.dataset.activePreset === undefined ? null : Number(form.dataset.activePreset);
  dataset.addEventListener("change", () => {
    const entry = presets[dataset.value];
    if (active !== null && !(entry && entry.presets[active])) active = null;  // that preset is not offered here
    showSummary();
    if (active !== null) applyPreset(active);
  });
  form.addEventListener("input", (event) => { if (event.target !== dataset) active = null; });

  const tta = document.getElementById("tta");
  const ttaFields = '[name="tta_n"], [name="tta_use_max"]';
  const syncTta = () => form.querySelectorAll(ttaFields).forEach((i) => { i.disabled = !tta.checked; });
  tta.addEventListener("change", syncTta);
  // Augmentation off: its settings are kept but greyed out, as TTA's are.
  const augment = document.getElementById("augment");
  const augmentFields = '[name^="augment_"]';
  const syncAugment = () => form.querySelectorAll(augmentFields).forEach((i) => { i.disabled = !augment.checked; });
  augment.addEventListener("change", syncAugment);
  // Disabled inputs are not submitted; enable them just before sending so the typed values are kept.
  form.addEventListener("submit", () => form.querySelectorAll(`${ttaFields}, ${augmentFields}`).forEach((i) => { i.disabled = false; }));
  syncTta();
  syncAugment();
  renumber();
})();
