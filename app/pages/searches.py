"""Search pages: the Search form on a run (with preset spaces), the searches list, one search with its trials,
charts, budget and the verify sweep's verdicts, and cancel."""
from __future__ import annotations

import json

import yaml
from fastapi import APIRouter, Request

from fitboard.app.core import search_space
from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import MAX_NAME
from fitboard.app.core.search_space import PRESETS
from fitboard.app.core.status import SEARCH_ACTIVE
from fitboard.app.core.variant_words import describe_change, field_title
from fitboard.app.core.yamlsafe import load_yaml
from fitboard.app.pages.forms import priority_of
from fitboard.app.pages.render import FormData, PageId, redirect, render
from fitboard.app.pages.stage_epochs import run_epochs, stage_epochs, with_epochs
from fitboard.app.services import runs, searches
from fitboard.app.services.studies import PRUNERS, SAMPLERS
from fitboard.app.store.models import Run
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep

router = APIRouter()
MAX_SPACE_BYTES = 20_000  # bytes of YAML in the form
NUMBERS = {"max_trials": 12, "max_parallel": "", "k": 2, "seeds": 3}


def _preset_texts() -> dict[str, str]:
    """Each preset space as the YAML the form's box shows."""
    return {name: yaml.safe_dump(space, sort_keys=False) for name, space in PRESETS.items()}


def base_note(base: dict, space) -> str:
    """Whether a search over this space starts from the base recipe (trial 0) or the sampler picks every trial."""
    try:
        space = search_space.check_space(base, space)
    except RecipeError:
        return "The base recipe is the first trial when its own values lie in the space."
    if search_space.base_params(base, space) is not None:
        return "Trial 0 is the base recipe: its own values lie in the space."
    outside = [f"{field_title(path, base)} ({_base_values(base, path)})" for path, dist in space.items()
               if search_space.base_params(base, {path: dist}) is None]
    verb = "lies" if len(outside) == 1 else "lie"
    return (f"The base recipe's {', '.join(outside)} {verb} outside the space, so no trial trains the base recipe "
            f"itself (trial 0 is the sampler's pick); the verify sweep still trains it against the winners.")


def _base_values(base: dict, path: str) -> str:
    """The base recipe's values at a field path, in stage order, each once: 'find, [0.0001, 0.001]'."""
    return ", ".join(dict.fromkeys(_value(search_space.get_path(base, p)) for p in search_space.expand(base, path)))


def _value(v) -> str:
    """A recipe value as the recipe file spells it."""
    return v if isinstance(v, str) else json.dumps(v)


def _form_page(request: Request, run: Run, form: dict, errors: list[str] | None = None, status_code: int = 200):
    """The search form for a run, with any problems listed on top."""
    base = run.spec or {}
    notes = {name: base_note(base, space) for name, space in PRESETS.items()}
    try:  # the one YAML loader of every form: no aliases, tags, huge numbers or deep nesting
        typed = base_note(base, load_yaml(form["space"], "space", MAX_SPACE_BYTES))
    except RecipeError:
        typed = base_note(base, None)
    return render(request, "search_form.html", status_code, run=run, form=form, errors=errors or [],
                  presets=_preset_texts(), notes=notes, note=typed, pruners=PRUNERS, samplers=SAMPLERS,
                  metrics=list(searches.METRICS))


@router.get("/runs/{run_id}/search")
@needs("member")
def get_search_form(request: Request, session: SessionDep, run_id: PageId):
    """Search around this run's recipe: pick a space (or a preset), a budget and a pruner."""
    run = runs.with_recipe(session, run_id)
    first = next(iter(_preset_texts().values()))
    return _form_page(request, run, {"name": f"search: {run.name}", "space": first, "pruner": "asha",
                                     "sampler": "tpe", "metric": "accuracy", "epochs": run_epochs(run.spec),
                                     **{k: str(v) for k, v in NUMBERS.items()}})


def _options(form: dict) -> tuple[dict, list[str]]:
    """The typed numbers and choices as search options, and problems with them."""
    options, errors = {"name": form["name"], "pruner": form["pruner"], "sampler": form["sampler"],
                       "metric": form["metric"]}, []
    for key in NUMBERS:
        text = form[key].strip()
        if not text:
            continue
        if not text.isdecimal() or len(text) > 6:
            errors.append(f"{key}: give a whole number; got {text[:20]!r}.")
        else:
            options[key] = int(text)
    return options, errors


@router.post("/runs/{run_id}/search")
@needs("member")
def post_search(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep,
                publisher: PublisherDep, run_id: PageId,
                data: FormData):
    """Start the search and show it."""
    run = runs.with_recipe(session, run_id)
    form = {k: str(data.get(k) or "") for k in ("name", "space", "pruner", "sampler", "metric", *NUMBERS)}
    form["name"] = form["name"].strip() or f"search: {run.name}"[:MAX_NAME]
    form["priority"] = priority_of(data)
    options, errors = _options(form)
    options["priority"] = form["priority"]  # checked with the other options (searches.create): a 422 naming it
    form["epochs"], epochs, epoch_errors = stage_epochs(data, (run.spec or {}).get("stages", []))
    errors += epoch_errors
    space = None
    try:
        space = load_yaml(form["space"], "space", MAX_SPACE_BYTES)
    except RecipeError as exc:
        errors += [f"{p['loc']}: {p['msg']}" for p in exc.problems]
    if errors:
        return _form_page(request, run, form, errors, 422)
    # Epochs per stage apply to every trial and to the verify sweep: search a long recipe on a short budget.
    base = {**run.spec, "name": run.name, "stages": with_epochs(run.spec, epochs)}
    try:
        search = searches.create(session, publisher, base, space, options, settings.data_root,
                                 settings.max_sweep_runs, settings.worker_lost_after)
    except RecipeError as exc:
        session.rollback()
        return _form_page(request, run, form, [f"{p['loc']}: {p['msg']}" if p.get("loc") else p["msg"]
                                               for p in exc.problems], 422)
    access.note("launch", f"search {search.id}")
    request.session["notice"] = f"Search {search.id} started: its first trials are queued."
    return redirect(f"/searches/{search.id}")


def param_words(params: dict, base: dict) -> str:
    """A trial's params in words, numbers to 3 significant digits: 'lr 2.29e-3, label smoothing 0.1'."""
    return ", ".join(describe_change(path, value, base) for path, value in params.items())


def _param_text(params: dict) -> str:
    """A trial's params exactly, as field paths (shown on hover, and what the API gives)."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())


def _space_data(space: dict, base: dict) -> list[dict]:
    """Each searched field for the charts: its path, its name in words and how it is drawn (log, numbers, choices)."""
    out = []
    for path, dist in space.items():
        kind = next(iter(dist))
        axis = "log" if kind == "log" else "linear" if kind in ("int", "float") else "category"
        out.append({"path": path, "title": field_title(path, base), "axis": axis})
    return out


@router.get("/searches")
@needs("read")
def get_searches(request: Request, session: SessionDep):
    """Every search, newest first."""
    return render(request, "search.html", searches=searches.recent(session), search=None)


@router.get("/searches/{search_id}")
@needs("read")
def get_search(request: Request, session: SessionDep, search_id: PageId):
    """One search: verdicts on top, trials, charts and budget; it reloads itself while active."""
    report = searches.report(session, search_id, with_importance=True)
    base = report["base"]
    rows = [{**t, "param_text": _param_text(t["params"]), "param_words": param_words(t["params"], base)}
            for t in report["trials"]]
    data = {"metric": report["options"]["metric"], "space": _space_data(report["space"], base),
            "trials": [{"number": t["number"], "status": t["status"], "curve": t["curve"], "params": t["params"],
                        "words": {p: describe_change(p, v, base) for p, v in t["params"].items()},
                        "value": t["value"]} for t in report["trials"]],
            "best_so_far": report["best_so_far"], "importance": report["importance"] or {}}
    return render(request, "search.html", search=report, rows=rows, data=data, searches=None,
                  note=base_note(base, report["space"]), live=report["status"] in SEARCH_ACTIVE)


@router.post("/searches/{search_id}/cancel")
@needs("member")
def post_search_cancel(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep,
                       search_id: PageId, data: FormData):
    """Cancel the search's queued and running trials."""
    searches.cancel(session, search_id, settings.worker_lost_after)
    access.note("cancel", f"search {search_id}")
    request.session["notice"] = f"Search {search_id} cancelled."
    return redirect(f"/searches/{search_id}")
