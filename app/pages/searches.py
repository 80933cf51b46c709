"""Search pages: the Search form on a run (with preset spaces), the searches list, one search with its trials,
charts, budget and the verify sweep's verdicts, and cancel."""
from __future__ import annotations

import json

import yaml
from fastapi import APIRouter, Request

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.search_space import PRESETS
from fitboard.app.core.status import SEARCH_ACTIVE
from fitboard.app.pages.render import FormData, PageId, redirect, render
from fitboard.app.services import runs, searches
from fitboard.app.services.studies import PRUNERS, SAMPLERS
from fitboard.app.store.models import Run
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep

router = APIRouter()
MAX_SPACE_TEXT = 20_000  # characters of YAML in the form
NUMBERS = {"max_trials": 12, "max_parallel": "", "k": 2, "seeds": 3}


def _preset_texts() -> dict[str, str]:
    """Each preset space as the YAML the form's box shows."""
    return {name: yaml.safe_dump(space, sort_keys=False) for name, space in PRESETS.items()}


def _form_page(request: Request, run: Run, form: dict, errors: list[str] | None = None, status_code: int = 200):
    """The search form for a run, with any problems listed on top."""
    return render(request, "search_form.html", status_code, run=run, form=form, errors=errors or [],
                  presets=_preset_texts(), pruners=PRUNERS, samplers=SAMPLERS, metrics=list(searches.METRICS))


@router.get("/runs/{run_id}/search")
def get_search_form(request: Request, session: SessionDep, run_id: PageId):
    """Search around this run's recipe: pick a space (or a preset), a budget and a pruner."""
    run = runs.get(session, run_id)
    first = next(iter(_preset_texts().values()))
    return _form_page(request, run, {"name": f"search: {run.name}", "space": first, "pruner": "asha",
                                     "sampler": "tpe", "metric": "accuracy", **{k: str(v) for k, v in NUMBERS.items()}})


def _options(form: dict) -> tuple[dict, list[str]]:
    """The typed numbers and choices as search options, and problems with them."""
    options, errors = {"name": form["name"], "pruner": form["pruner"], "sampler": form["sampler"],
                       "metric": form["metric"]}, []
    for key in NUMBERS:
        text = form[key].strip()
        if not text:
            continue
        if not text.isdigit() or len(text) > 6:
            errors.append(f"{key}: give a whole number; got {text[:20]!r}.")
        else:
            options[key] = int(text)
    return options, errors


@router.post("/runs/{run_id}/search")
def post_search(request: Request, session: SessionDep, settings: SettingsDep, publisher: PublisherDep, run_id: PageId,
                data: FormData):
    """Start the search and show it."""
    run = runs.get(session, run_id)
    form = {k: str(data.get(k) or "") for k in ("name", "space", "pruner", "sampler", "metric", *NUMBERS)}
    form["name"] = form["name"].strip() or f"search: {run.name}"
    options, errors = _options(form)
    space = None
    if len(form["space"]) > MAX_SPACE_TEXT:
        errors.append(f"space: at most {MAX_SPACE_TEXT} characters.")
    else:
        try:
            space = yaml.safe_load(form["space"])
        except yaml.YAMLError as exc:
            errors.append(f"space: not valid YAML ({str(exc).splitlines()[0]}).")
    if errors:
        return _form_page(request, run, form, errors, 422)
    base = {**run.spec, "name": run.name}
    try:
        search = searches.create(session, publisher, base, space, options, settings.data_root,
                                 settings.max_sweep_runs, settings.worker_lost_after)
    except RecipeError as exc:
        session.rollback()
        return _form_page(request, run, form, [f"{p['loc']}: {p['msg']}" if p.get("loc") else p["msg"]
                                               for p in exc.problems], 422)
    request.session["notice"] = f"Search {search.id} started: its first trials are queued."
    return redirect(f"/searches/{search.id}")


def _param_text(params: dict) -> str:
    """A trial's params in one line."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())


@router.get("/searches")
def get_searches(request: Request, session: SessionDep):
    """Every search, newest first."""
    return render(request, "search.html", searches=searches.recent(session), search=None)


@router.get("/searches/{search_id}")
def get_search(request: Request, session: SessionDep, search_id: PageId):
    """One search: verdicts on top, trials, charts and budget; it reloads itself while active."""
    report = searches.report(session, search_id, with_importance=True)
    rows = [{**t, "param_text": _param_text(t["params"])} for t in report["trials"]]
    data = {"metric": report["options"]["metric"], "space": list(report["space"]),
            "trials": [{"number": t["number"], "status": t["status"], "curve": t["curve"], "params": t["params"],
                        "value": t["value"]} for t in report["trials"]],
            "best_so_far": report["best_so_far"], "importance": report["importance"] or {}}
    return render(request, "search.html", search=report, rows=rows, data=data, searches=None,
                  live=report["status"] in SEARCH_ACTIVE)


@router.post("/searches/{search_id}/cancel")
def post_search_cancel(request: Request, session: SessionDep, settings: SettingsDep, search_id: PageId):
    """Cancel the search's queued and running trials."""
    searches.cancel(session, search_id, settings.worker_lost_after)
    request.session["notice"] = f"Search {search_id} cancelled."
    return redirect(f"/searches/{search_id}")
