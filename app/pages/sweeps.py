"""Ablation pages: the Ablate form on a run, the sweeps list, one sweep live with its verdicts, add seeds."""
from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.stats import MIN_SEEDS
from fitboard.app.core.status import FINISHED
from fitboard.app.core.sweep_plan import BASE_KEY, get_path
from fitboard.app.pages.forms import priority_of
from fitboard.app.pages.render import FormData, PageId, redirect, render
from fitboard.app.pages.stage_epochs import run_epochs, stage_epochs, with_epochs
from fitboard.app.pages.wording import COLORS, mean_std, paired_diff
from fitboard.app.services import runs, sweeps
from fitboard.app.services.compare import MAX_COMPARE
from fitboard.app.store.models import Run
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep

router = APIRouter()
MAX_SEEDS = 10
TTA_ON = {"n": 4, "use_max": False}


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
                  errors=errors or [], max_seeds=MAX_SEEDS, min_seeds=MIN_SEEDS)


def _current(spec: dict, path: str):
    """The run's value at a field path (None where an older stored recipe lacks the field: the default)."""
    try:
        return get_path(spec, path)
    except (KeyError, IndexError, TypeError):
        return None


def _seed_count(text: str | None, least: int = 1) -> int | None:
    """A seed count from least to MAX_SEEDS, or None."""
    text = (text or "").strip()
    return int(text) if text.isdecimal() and len(text) <= 3 and least <= int(text) <= MAX_SEEDS else None


@router.get("/runs/{run_id}/ablate")
@needs("member")
def get_ablate(request: Request, session: SessionDep, run_id: PageId):
    """Tick the techniques to toggle against this run; each becomes a variant run for several seeds."""
    run = runs.with_recipe(session, run_id)
    return _ablate_page(request, run, {"name": run.name, "seeds": "3", "mode": "one_at_a_time", "picked": [],
                                       "epochs": run_epochs(run.spec)})


@router.post("/runs/{run_id}/ablate")
@needs("member")
def post_ablate(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep,
                publisher: PublisherDep, run_id: PageId,
                data: FormData):
    """Store the sweep, queue one run per variant and seed, and show it."""
    run = runs.with_recipe(session, run_id)
    toggles = [t for t in ablation_toggles(run.spec or {}) if not t["problem"]]
    picked = [t for t in toggles if data.get(f"vary:{t['key']}")]  # values come from the run, never from the form
    stages = (run.spec or {}).get("stages", [])
    typed, epochs, errors = stage_epochs(data, stages)
    form = {"name": (data.get("name") or "").strip() or run.name, "seeds": data.get("seeds", ""),
            "mode": data.get("mode", "one_at_a_time"), "picked": [t["key"] for t in picked], "epochs": typed,
            "priority": priority_of(data)}
    n = _seed_count(form["seeds"], least=MIN_SEEDS)
    if not picked:
        errors.append("Tick at least one technique to toggle.")
    if n is None:
        errors.append(f"seeds: give a whole number of seeds from {MIN_SEEDS} to {MAX_SEEDS} (fewer than {MIN_SEEDS} "
                      f"give no confidence interval); got {form['seeds'][:20]!r}.")
    if errors:
        return _ablate_page(request, run, form, errors, 422)
    try:
        # Both values per field: one-at-a-time drops the run's own value (it is the base), a grid crosses them all.
        vary = {t["path"]: [_current(run.spec, t["path"]), t["value"]] for t in picked}
        # Epochs per stage apply to the whole sweep (base and every variant): ablate a long recipe on a short budget.
        base = {**run.spec, "name": form["name"], "stages": with_epochs(run.spec, epochs)}
        sweep, queued, note = sweeps.create(session, publisher, base, vary,
                                            list(range(n)), form["mode"], settings.data_root, settings.max_sweep_runs,
                                            form["priority"])
    except RecipeError as exc:
        session.rollback()  # a sweep refused half-way stores nothing
        return _ablate_page(request, run, form, [f"{p['loc']}: {p['msg']}" if p.get("loc") else p["msg"]
                                                 for p in exc.problems], 422)
    access.note("launch", f"sweep {sweep.id} ({len(queued)} runs)")
    request.session["notice"] = (f"Sweep {sweep.id} queued: {len(queued)} runs ({len(sweep.variants)} variants × "
                                 f"{n} seeds)." + (f" Not sent yet: {note}." if note else ""))
    return redirect(f"/sweeps/{sweep.id}")


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
        rows.append({**v, "color": color, "base": base, "done": done, "acc": mean_std(v["accuracy"]),
                     "tta": mean_std(v["tta_accuracy"]), "d_acc": None if base else paired_diff(v["diff_accuracy"]),
                     "d_tta": None if base else paired_diff(v["diff_tta_accuracy"])})
        curve = report["curves"].get(v["key"]) or {}
        series.append({"label": v["words"], "color": color, **curve})
    run_ids = [r["id"] for v in report["variants"] for r in v["runs"]]
    base_runs = [r["id"] for r in report["variants"][0]["runs"]] if report["variants"] else []
    compare_url = "/compare?" + urlencode({"ids": ",".join(map(str, run_ids[:MAX_COMPARE])),
                                           **({"baseline": base_runs[0]} if base_runs else {})})
    live = report["runs_finished"] < report["runs_total"]
    data = {"id": report["id"], "live": live, "signature": _signature(report), "series": series}
    return render(request, "sweep.html", status_code, sweep=report, rows=rows, data=data, live=live,
                  compare_url=compare_url, errors=errors or [], sweeps=None, max_seeds=MAX_SEEDS)


@router.get("/sweeps")
@needs("read")
def get_sweeps(request: Request, session: SessionDep):
    """Every sweep, newest first, with how many of its runs have finished."""
    return render(request, "sweep.html", sweeps=sweeps.recent(session))


@router.get("/sweeps/{sweep_id}")
@needs("read")
def get_sweep(request: Request, session: SessionDep, sweep_id: PageId):
    """One sweep, refreshed while its runs train."""
    return _sweep_page(request, sweeps.report(session, sweep_id))


@router.post("/sweeps/{sweep_id}/seeds")
@needs("member")
def post_sweep_seeds(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep,
                     publisher: PublisherDep, sweep_id: PageId, data: FormData):
    """Run every variant for a few more seeds (the next unused ones)."""
    report = sweeps.report(session, sweep_id)
    n = _seed_count(data.get("count"))
    if n is None:
        return _sweep_page(request, report, [f"Add between 1 and {MAX_SEEDS} seeds."], 422)
    seeds = sweeps.next_seeds(session, sweep_id, n)
    try:
        queued, note = sweeps.add_seeds(session, publisher, sweep_id, seeds, settings.max_sweep_runs)
    except RecipeError as exc:
        session.rollback()
        return _sweep_page(request, report, [p["msg"] for p in exc.problems], 422)
    access.note("launch", f"sweep {sweep_id} (+{len(queued)} runs)")
    said = f"seed {seeds[0]}" if n == 1 else f"seeds {seeds[0]} to {seeds[-1]}"
    request.session["notice"] = f"Queued {len(queued)} more runs: {said}." + (f" Not sent yet: {note}." if note else "")
    return redirect(f"/sweeps/{sweep_id}")
