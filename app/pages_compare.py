"""HTML pages for comparing runs and ablating them: /compare, /runs/{id}/ablate, /sweeps and /sweeps/{id}."""
from __future__ import annotations

import json
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import func, select

from app.api import commit_and_enqueue
from app.api_compare import MAX_COMPARE, parse_ids
from app.compare import compare_runs
from app.deps import SessionDep, SettingsDep
from app.models import FINISHED, Run, Sweep
from app.pages import FormData, redirect, render, require_login
from app.runs import RunNotFound, get_run
from app.schemas import RecipeError
from app.security import check_csrf
from app.sweeps import BASE_KEY, SweepNotFound, add_seeds, create_sweep, get_path, sweep_report

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])
# One color per run (or variant), shared by the tables' swatches and the charts so a name can be found in both.
COLORS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563",
          "#65a30d")
MAX_SEEDS = 10
TTA_ON = {"n": 4, "use_max": False}


# ---- formatting ---------------------------------------------------------------------------------------------

def _num(v) -> bool:
    """True for a real number (not None, not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def secs(s) -> str:
    """Seconds in words: 42 s, 3 min 5 s, 2 h 10 min."""
    s = abs(s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


# The final table's columns: value format, difference format, whether higher is better, and the difference that
# still reads as none (wall time is measured in whole seconds, speed to a tenth).
COLUMNS = (("accuracy", lambda v: f"{100 * v:.2f}%", lambda d: f"{100 * d:+.2f} pts", True, 1e-9),
           ("tta_accuracy", lambda v: f"{100 * v:.2f}%", lambda d: f"{100 * d:+.2f} pts", True, 1e-9),
           ("wall_seconds", secs, lambda d: ("+" if d > 0 else "−") + secs(d), False, 0.5),
           ("images_per_second", lambda v: f"{v:.1f}", lambda d: f"{d:+.1f}", True, 0.05))


def _delta(d, fmt, higher_is_better: bool, tol: float) -> dict:
    """A difference to the baseline with a class saying whether it is an improvement."""
    if not _num(d):
        return {"text": "–", "cls": "muted"}
    if abs(d) < tol:
        return {"text": "±0", "cls": "muted"}
    return {"text": fmt(d), "cls": "better" if (d > 0) == higher_is_better else "worse"}


def table_rows(data: dict) -> list[dict]:
    """The final table: each run's values and its differences to the baseline run, as display text."""
    return [{"id": r["id"], "name": r["name"], "status": r["status"], "color": COLORS[i % len(COLORS)],
             "baseline": r["id"] == data["baseline"], "best_epoch": r["best_epoch"] or "–",
             "cells": [(fmt(r[key]) if _num(r[key]) else "–", _delta(r["diff"][key], dfmt, up, tol))
                       for key, fmt, dfmt, up, tol in COLUMNS]}
            for i, r in enumerate(data["runs"])]


def show(v) -> str:
    """A recipe value as the recipe file would spell it."""
    return v if isinstance(v, str) else json.dumps(v)


# ---- compare ------------------------------------------------------------------------------------------------

MAX_CONFUSIONS = 12


@router.get("/compare")
def compare_page(request: Request, session: SessionDep, ids: list[str] = Query([]), baseline: str = ""):
    """Runs side by side: curves, LR finders, final table against a baseline, recipe diff, confusions, disagreements."""
    joined = ",".join(ids)  # ids=3,5,8 from links, ids=3&ids=5 from the runs list's checkboxes without JS
    if not joined.replace(",", "").strip():
        return render(request, "compare.html", data=None, message="Pick two or more runs on the runs list to compare.")
    try:
        id_list = parse_ids(joined)
    except HTTPException as exc:
        return render(request, "compare.html", 422, data=None, message=exc.detail[0]["msg"])
    try:
        # No chart series here: compare.js fetches them from the API, so this page stays small and quick.
        data = compare_runs(session, id_list, int(baseline) if baseline.strip().isdigit() else None, curves=False)
    except RunNotFound as exc:
        return render(request, "not_found.html", 404, what=f"run {exc.run_id}")
    names = {r["id"]: r["name"] for r in data["runs"]}
    diff = [(path, [(show(vals[i]), show(vals[i]) != show(vals[data["baseline"]])) for i in id_list])
            for path, vals in data["config_diff"].items()]
    # Side by side only works for a handful: past MAX_CONFUSIONS the page would be megabytes of tables.
    confusions = [(r, COLORS[i % len(COLORS)]) for i, r in enumerate(data["runs"]) if r["confusion"]]
    shown = confusions[:MAX_CONFUSIONS]
    ids_text = ",".join(map(str, id_list))
    chart_data = {"colors": COLORS, "api": "/api/v1/compare?" + urlencode({"ids": ids_text, "baseline": data["baseline"]})}
    return render(request, "compare.html", data=data, chart=chart_data, rows=table_rows(data), diff=diff,
                  confusions=shown, confusions_total=len(confusions), names=names, ids_text=ids_text, message=None,
                  csv_url="/api/v1/compare?" + urlencode({"ids": ids_text, "baseline": data["baseline"],
                                                          "format": "csv"}))


# ---- ablate -------------------------------------------------------------------------------------------------

def ablation_toggles(spec: dict) -> list[dict]:
    """The chapter-7 techniques a run can be ablated on; each flips one recipe field against the run's value."""
    out = []

    def add(path, value, title, hint, problem=None):
        out.append({"key": path, "path": path, "value": value, "title": title, "hint": hint, "problem": problem})

    norm = spec.get("normalize", "imagenet")
    flip = "none" if norm != "none" else ("imagenet" if spec.get("pretrained") else "dataset")
    add("normalize", flip, f"Normalization: {norm} → {flip}",
        "Normalize.from_stats on every batch; matters most for a pretrained model.")
    eps = spec.get("label_smoothing")
    add("label_smoothing", None if eps else 0.1, f"Label smoothing: {eps or 'off'} → {'off' if eps else 0.1}",
        "LabelSmoothingCrossEntropy: a less over-confident model, robust to mislabeled images.")
    stages = spec.get("stages") or []
    for i, stage in enumerate(stages):
        a = stage.get("mixup")
        add(f"stages[{i}].mixup", None if a else 0.2, f"MixUp in stage {i + 1}: {f'α={a}' if a else 'off'} → "
            f"{'off' if a else 'α=0.2'}", "Trains on blends of two images and their labels; pays off over many epochs.")
    tta = spec.get("tta")
    add("tta", None if tta else TTA_ON, f"Test-time augmentation: {'n=%s' % tta['n'] if tta else 'off'} → "
        f"{'off' if tta else 'n=4'}", "Averages predictions over augmented copies of each validation image.")
    kb = spec.get("keep_best")
    add("keep_best", None if kb else "accuracy", f"Keep best epoch: {kb or 'off'} → {'off' if kb else 'accuracy'}",
        "SaveModelCallback: reload the best epoch's weights at the end instead of the last.")
    sizes = [s.get("size") for s in stages]
    if len(set(sizes)) > 1:
        # One field only, so one variant in one-at-a-time mode: stage 1 trains at the size every later stage uses.
        final, presize = sizes[-1], stages[0].get("presize") or sizes[0]
        problem = None
        if set(sizes[1:]) != {final}:
            problem = "only when every stage after the first has the same size (vary sizes through the API instead)"
        elif presize < final:
            problem = f"stage 1's presize ({presize}) is smaller than {final}; raise it first"
        add("stages[0].size", final, f"Progressive resizing: stage 1 at {sizes[0]} px → {final} px, like the rest",
            "Starting small is faster and acts as augmentation; this trains at the final size throughout "
            "(same batch size, so stage 1 needs more memory).", problem)
    return out


def _ablate_page(request: Request, run: Run, form: dict, errors: list[str] | None = None, status_code: int = 200):
    """The ablation form for a run, with any problems listed on top."""
    return render(request, "ablate.html", status_code, run=run, toggles=ablation_toggles(run.spec or {}), form=form,
                  errors=errors or [], max_seeds=MAX_SEEDS)


def _current(spec: dict, path: str):
    """The run's value at a field path (None where an older stored recipe lacks the field: the default)."""
    try:
        return get_path(spec, path)
    except (KeyError, IndexError, TypeError):
        return None


def _seed_count(text: str | None) -> int | None:
    """A seed count from 1 to MAX_SEEDS, or None."""
    text = (text or "").strip()
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_SEEDS else None


@router.get("/runs/{run_id}/ablate")
def ablate_page(request: Request, session: SessionDep, run_id: int):
    """Tick the techniques to toggle against this run; each becomes a variant run for several seeds."""
    try:
        run = get_run(session, run_id)
    except RunNotFound:
        return render(request, "not_found.html", 404, what=f"run {run_id}")
    return _ablate_page(request, run, {"name": run.name, "seeds": "3", "mode": "one_at_a_time", "picked": []})


@router.post("/runs/{run_id}/ablate")
def ablate(request: Request, session: SessionDep, settings: SettingsDep, run_id: int, data: FormData):
    """Store the sweep, queue one run per variant and seed, and show it."""
    check_csrf(request, data.get("csrf_token"))
    try:
        run = get_run(session, run_id)
    except RunNotFound:
        return render(request, "not_found.html", 404, what=f"run {run_id}")
    toggles = [t for t in ablation_toggles(run.spec or {}) if not t["problem"]]
    picked = [t for t in toggles if data.get(f"vary:{t['key']}")]  # values come from the run, never from the form
    form = {"name": (data.get("name") or "").strip() or run.name, "seeds": data.get("seeds", ""),
            "mode": data.get("mode", "one_at_a_time"), "picked": [t["key"] for t in picked]}
    n, errors = _seed_count(form["seeds"]), []
    if not picked:
        errors.append("Tick at least one technique to toggle.")
    if n is None:
        errors.append(f"seeds: give a whole number of seeds from 1 to {MAX_SEEDS}.")
    if errors:
        return _ablate_page(request, run, form, errors, 422)
    try:
        # Both values per field: one-at-a-time drops the run's own value (it is the base), a grid crosses them all.
        vary = {t["path"]: [_current(run.spec, t["path"]), t["value"]] for t in picked}
        sweep, runs = create_sweep(session, {**run.spec, "name": form["name"]}, vary, list(range(n)), form["mode"],
                                   settings.data_root)
    except RecipeError as exc:
        session.rollback()  # a sweep refused half-way stores nothing
        return _ablate_page(request, run, form, [f"{p['loc']}: {p['msg']}" if p.get("loc") else p["msg"]
                                                 for p in exc.problems], 422)
    commit_and_enqueue(request, session, runs)
    request.session["notice"] = (f"Sweep {sweep.id} queued: {len(runs)} runs "
                                 f"({len(sweep.variants)} variants × {n} seeds).")
    return redirect(f"/sweeps/{sweep.id}")


# ---- sweeps -------------------------------------------------------------------------------------------------

def _mean_std(s: dict) -> str:
    """'85.30% ± 1.20' (points), '85.30%' for one seed, '–' for none."""
    if s["mean"] is None:
        return "–"
    return f"{100 * s['mean']:.2f}%" + (f" ± {100 * s['std']:.2f}" if s["std"] is not None else "")


def _diff(d: dict | None) -> dict:
    """A seed-paired difference to base: text, its CI and how it reads."""
    if not d or not d["n"]:
        return {"text": "–", "ci": "", "cls": "muted"}
    ci = "1 seed" if d["low"] is None else \
        f"{int(d['level'] * 100)}% CI {100 * d['low']:+.2f} to {100 * d['high']:+.2f}"
    cls = "better" if (d["low"] or 0) > 0 else "worse" if d["high"] is not None and d["high"] < 0 else "noise"
    return {"text": f"{100 * d['mean']:+.2f} pts", "ci": ci, "cls": cls}


def _signature(report: dict) -> str:
    """Every run's id and status; the page reloads when the API's answer differs (sweep.js computes the same)."""
    return ",".join(f"{r['id']}:{r['status']}" for v in report["variants"] for r in v["runs"])


def _sweep_page(request: Request, report: dict, errors: list[str] | None = None, status_code: int = 200):
    """One sweep: the variants table, verdicts, mean accuracy curves and the add-seeds form."""
    rows, series = [], []
    for i, v in enumerate(report["variants"]):
        color = COLORS[i % len(COLORS)]
        done = sum(r["status"] in FINISHED for r in v["runs"])
        base = v["key"] == BASE_KEY
        rows.append({**v, "color": color, "base": base, "done": done, "acc": _mean_std(v["accuracy"]),
                     "tta": _mean_std(v["tta_accuracy"]), "d_acc": None if base else _diff(v["diff_accuracy"]),
                     "d_tta": None if base else _diff(v["diff_tta_accuracy"])})
        curve = report["curves"].get(v["key"]) or {}
        series.append({"label": v["label"], "color": color, **curve})
    run_ids = [r["id"] for v in report["variants"] for r in v["runs"]]
    base_runs = [r["id"] for r in report["variants"][0]["runs"]] if report["variants"] else []
    compare_url = "/compare?" + urlencode({"ids": ",".join(map(str, run_ids[:MAX_COMPARE])),
                                           **({"baseline": base_runs[0]} if base_runs else {})})
    live = report["runs_finished"] < report["runs_total"]
    data = {"id": report["id"], "live": live, "signature": _signature(report), "series": series}
    return render(request, "sweep.html", status_code, sweep=report, rows=rows, data=data, live=live,
                  compare_url=compare_url, errors=errors or [], sweeps=None, max_seeds=MAX_SEEDS)


@router.get("/sweeps")
def sweeps_page(request: Request, session: SessionDep):
    """Every sweep, newest first, with how many of its runs have finished."""
    sweeps = session.exec(select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(200)).scalars().all()
    counts = {}
    if sweeps:
        for sweep_id, status, n in session.exec(select(Run.sweep_id, Run.status, func.count()).where(
                Run.sweep_id.in_([s.id for s in sweeps])).group_by(Run.sweep_id, Run.status)).all():
            total, done = counts.get(sweep_id, (0, 0))
            counts[sweep_id] = (total + n, done + (n if status in FINISHED else 0))
    return render(request, "sweep.html", sweeps=sweeps, counts=counts)


@router.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, session: SessionDep, sweep_id: int):
    """One sweep, refreshed while its runs train."""
    try:
        return _sweep_page(request, sweep_report(session, sweep_id))
    except SweepNotFound:
        return render(request, "not_found.html", 404, what=f"sweep {sweep_id}")


@router.post("/sweeps/{sweep_id}/seeds")
def add_seeds_form(request: Request, session: SessionDep, sweep_id: int, data: FormData):
    """Run every variant for a few more seeds (the next unused ones)."""
    check_csrf(request, data.get("csrf_token"))
    try:
        report = sweep_report(session, sweep_id)
    except SweepNotFound:
        return render(request, "not_found.html", 404, what=f"sweep {sweep_id}")
    n = _seed_count(data.get("count"))
    if n is None:
        return _sweep_page(request, report, [f"Add between 1 and {MAX_SEEDS} seeds."], 422)
    start = max(report["seeds"], default=-1) + 1
    try:
        runs = add_seeds(session, sweep_id, list(range(start, start + n)))
    except RecipeError as exc:
        session.rollback()
        return _sweep_page(request, report, [p["msg"] for p in exc.problems], 422)
    commit_and_enqueue(request, session, runs)
    seeds = f"seed {start}" if n == 1 else f"seeds {start} to {start + n - 1}"
    request.session["notice"] = f"Queued {len(runs)} more runs: {seeds}."
    return redirect(f"/sweeps/{sweep_id}")
