// The run page's Predict card: send chosen or dropped images to the run's model, show the top 5 classes of each.
"use strict";

(() => {  // a closure: its helpers (el, render, ...) must not become globals of the run page
  const MAX_IMAGES = 16;
  const MAX_BYTES = 10 * 1024 * 1024;
  const POLL_MS = 150;

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text; // text only, never markup: file names and labels are user data
    return node;
  }

  function problem(body, status) {
    if (body && Array.isArray(body.detail)) return body.detail.map((p) => (p.loc ? `${p.loc}: ${p.msg}` : p.msg)).join("; ");
    if (body && body.detail) return body.detail;
    return `the server answered ${status}`;
  }

  function render(results, files, box) {
    box.replaceChildren();
    results.forEach((result, i) => {
      const card = el("figure", { class: "prediction" });
      if (files[i]) {
        const img = el("img", { alt: result.name, loading: "lazy" });
        img.src = URL.createObjectURL(files[i]);
        card.append(img);
      }
      const caption = el("figcaption");
      caption.append(el("strong", { class: "predict-name", title: result.name }, result.name));
      const list = el("ol", { class: "top-classes" });
      for (const t of result.top) {
        const pct = (100 * t.probability).toFixed(1);
        const row = el("li");
        const bar = el("span", { class: "bar", "aria-hidden": "true" });
        bar.style.width = `${pct}%`; // of the row: the bar reads as the probability whatever the card's width
        row.append(el("span", { class: "label", title: t.label }, t.label), el("span", { class: "num" }, `${pct}%`), bar);
        list.append(row);
      }
      caption.append(list);
      card.append(caption);
      box.append(card);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const card = document.getElementById("predict");
    if (!card) return;
    const input = document.getElementById("predict-files");
    const drop = document.getElementById("predict-drop");
    const button = document.getElementById("predict-button");
    const status = document.getElementById("predict-status");
    const box = document.getElementById("predict-results");
    let files = [];

    const choose = (list) => {
      files = [...list].filter((f) => f.type.startsWith("image/") || f.type === "");
      const bytes = files.reduce((n, f) => n + f.size, 0);
      if (files.length > MAX_IMAGES) status.textContent = `At most ${MAX_IMAGES} images at once (you chose ${files.length}).`;
      else if (bytes > MAX_BYTES) status.textContent = `At most 10 MB of images at once (these are ${(bytes / 2 ** 20).toFixed(1)} MB).`;
      else status.textContent = files.length ? `${files.length} image${files.length === 1 ? "" : "s"} ready.` : "";
      button.disabled = !files.length || files.length > MAX_IMAGES || bytes > MAX_BYTES;
    };
    input.addEventListener("change", () => choose(input.files));
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files); });

    document.getElementById("predict-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!files.length) return;
      const sent = files;
      const form = new FormData();
      for (const f of sent) form.append("images", f, f.name);
      button.disabled = true;
      status.textContent = "Sending…";
      try {
        const headers = { Accept: "application/json", "X-CSRF-Token": window.fitboardCsrf() };
        let r = await fetch(`/api/v1/runs/${card.dataset.run}/predict?wait=0`, { method: "POST", body: form, headers, credentials: "same-origin" });
        let body = await r.json().catch(() => null);
        while (r.status === 202) {
          status.textContent = body.note ? body.note[0].toUpperCase() + body.note.slice(1) + "…" : "Waiting…";
          await new Promise((done) => setTimeout(done, POLL_MS));
          r = await fetch(r.headers.get("Location") || `/api/v1/predictions/${body.id}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
          body = await r.json().catch(() => null);
        }
        if (!r.ok) throw new Error(problem(body, r.status));
        if (body.status === "failed") throw new Error(body.error || "the predictor could not answer");
        render(body.results, sent, box);
        const took = body.seconds !== null && body.seconds !== undefined ? ` in ${body.seconds < 1 ? Math.round(body.seconds * 1000) + " ms" : body.seconds.toFixed(1) + " s"}` : "";
        status.textContent = `Predicted ${body.results.length} image${body.results.length === 1 ? "" : "s"}${took}${body.loaded_model ? " (the model was loaded for this first prediction)" : ""}.`;
      } catch (err) {
        status.textContent = `Could not predict: ${err.message}`;
      } finally {
        button.disabled = !files.length;
      }
    });
  });
})();
