"""HTML pages (server-rendered with Jinja2): runs, a run live, the run form, datasets, workers and the login."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import select

from app import page_forms as pf
from app.api import create_and_enqueue
from app.datasets import inside, resolve_dataset
from app.deps import SessionDep, SettingsDep
from app.models import FINISHED, Run, RunStatus, Worker, utcnow
from app.registry import get_dataset, list_datasets, register_dataset
from app.runs import RunFinished, RunNotFound, get_run, list_artifacts, list_epochs, list_lr_finds, list_runs, request_cancel
from app.schemas import ARCHITECTURES, DatasetSpec, RecipeError, problems_from
from app.security import check_csrf, csrf_token, logged_in, token_matches
from app.views import duration, epoch_json, lr_find_json

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
SORTABLE = ("name", "status", "dataset", "best_accuracy", "tta_accuracy", "created_at")
PAGE_SIZE = 25
TRACEBACK_LINES = 40


def _context(request: Request) -> dict:
    """What every page needs: the CSRF token, the login state and a one-time notice."""
    return {"csrf": csrf_token(request), "auth_on": bool(request.app.state.settings.api_token),
            "authed": logged_in(request), "notice": request.session.pop("notice", None)}


env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True)
env.filters.update(lr=pf.fmt_lr, field_label=pf.field_label, heat_cells=pf.heat,
                   f4=lambda v: "–" if v is None else f"{v:.4f}",
                   pct=lambda v: "–" if v is None else f"{100 * v:.1f}%")
templates = Jinja2Templates(env=env, context_processors=[_context])


def render(request: Request, name: str, status_code: int = 200, **context):
    """A page from templates/, with the shared context."""
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """See other: after a POST the browser GETs the result, so a reload does not resubmit."""
    return RedirectResponse(url, status_code=303)


def require_login(request: Request) -> None:
    """Send a browser that has not logged in (when a token is configured) to the login page."""
    if not logged_in(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "log in first", headers={"Location": "/login?" + urlencode({"next": target})})


async def form_data(request: Request) -> dict[str, str]:
    """The submitted form fields (the one await, so the routes stay plain def)."""
    form = await request.form()
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


FormData = Annotated[dict, Depends(form_data)]
router = APIRouter(include_in_schema=False)
pages = APIRouter(dependencies=[Depends(require_login)])


# ---- login --------------------------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not bounce the user to another site."""
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
def login_page(request: Request, settings: SettingsDep, next: str = "/"):
    """The token form (straight to the runs when no token is configured)."""
    if not settings.api_token:
        return redirect(_safe_next(next))
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, settings: SettingsDep, data: FormData):
    """Log this browser in when it presents the configured token."""
    check_csrf(request, data.get("csrf_token"))
    target = _safe_next(data.get("next"))
    if not settings.api_token:
        return redirect(target)
    if not token_matches(data.get("token"), settings.api_token):
        return render(request, "login.html", 401, next=target, error="That token is not the configured one.")
    request.session["auth"] = True
    return redirect(target)


@router.post("/logout")
def logout(request: Request, settings: SettingsDep, data: FormData):
    """Forget this browser's login."""
    check_csrf(request, data.get("csrf_token"))
    request.session.pop("auth", None)
    return redirect("/login" if settings.api_token else "/")


# ---- runs ---------------------------------------------------------------------------------------------------

@pages.get("/")
@pages.get("/runs")
def runs_page(request: Request, session: SessionDep, status: list[str] = Query([]), dataset: str = "",
              name: str = "", order: str = "-created_at", limit: int = PAGE_SIZE, offset: int = 0):
    """Every run with its techniques and headline metrics; filter, sort, page, pick runs to compare."""
    status = [s for s in status if s in RunStatus.__members__]
    order = order if order.lstrip("-") in SORTABLE else "-created_at"
    limit, offset = min(max(limit, 1), 200), max(offset, 0)
    runs, total = list_runs(session, status=status or None, dataset=dataset or None, name_contains=name or None,
                            limit=limit, offset=offset, order=order)
    params = {"status": status, "dataset": dataset, "name": name, "order": order,
              "limit": limit if limit != PAGE_SIZE else None}
    sort = {c: pf.query(params, order=pf.next_order(c, order), offset=None) for c in SORTABLE}
    n_pages, current = max(1, math.ceil(total / limit)), offset // limit
    page_links = [(p + 1, pf.query(params, offset=p * limit or None), p == current)
                  for p in range(n_pages) if p in (0, n_pages - 1) or abs(p - current) <= 2]
    datasets = sorted(set(session.exec(select(Run.dataset).distinct()).scalars()) | {d.name for d in list_datasets(session)})
    return render(request, "runs.html", runs=runs, total=total, params=params, sort=sort, order=order,
                  page_links=page_links, offset=offset, limit=limit, statuses=list(RunStatus.__members__),
                  datasets=datasets, duration=duration,
                  prev=pf.query(params, offset=(offset - limit) or None) if offset > 0 else None,
                  next=pf.query(params, offset=offset + limit) if offset + limit < total else None)


def _run_page(request: Request, session, run_id: int, message: str | None = None, status_code: int = 200):
    """The run page: recipe in words, live progress and epochs, charts, results or the error."""
    try:
        run = get_run(session, run_id)
    except RunNotFound:
        return render(request, "not_found.html", 404, what=f"run {run_id}")
    spec, result, progress = run.spec or {}, run.result or {}, run.progress or {}
    epochs, finds = list_epochs(session, run_id), list_lr_finds(session, run_id)
    valley = {f.stage: f.suggestion for f in finds}
    stages = [pf.describe_stage(i, s, valley.get(i)) for i, s in enumerate(spec.get("stages") or [])]
    confusion = result.get("confusion")
    tail = "\n".join((run.traceback or "").rstrip().splitlines()[-TRACEBACK_LINES:])
    data = {"id": run.id, "status": str(run.status), "live": run.status not in FINISHED, "stages": stages,
            "epochs": [epoch_json(e) for e in epochs], "lr_finds": [lr_find_json(f) for f in finds],
            "best": result.get("best"), "batch": progress.get("batch")}
    return render(request, "run.html", status_code, run=run, spec=spec, result=result, progress=progress,
                  stages=stages, techniques=pf.describe_techniques(spec) if spec else [], epochs=epochs,
                  finds=finds, confusion=confusion, tail=tail, data=data, message=message,
                  live=data["live"], artifacts=list_artifacts(session, run_id), duration=duration(run),
                  stage_summaries=result.get("stages") or progress.get("stages") or [])


# ---- the run form -------------------------------------------------------------------------------------------

def _form_page(request: Request, session, settings, form: dict | None = None, errors: dict | None = None,
               status_code: int = 200, clone_of: Run | None = None, dataset: str = "digits"):
    """The new-run form, prefilled with the first preset of the dataset (digits by default) unless a form is given."""
    choices = pf.dataset_choices(pf.dataset_infos(list_datasets(session), settings.data_root))
    active = 0 if form is None else None
    if form is None:
        pick = next((c for c in choices if c["name"] == dataset), choices[0] if choices else None)
        form = pick["presets"][0]["form"] if pick else pf.form_from_spec({"stages": [{"epochs": 1, "size": 32}]})
    return render(request, "run_form.html", status_code, form=form, errors=errors or {}, choices=choices,
                  architectures=ARCHITECTURES, clone_of=clone_of, active=active,
                  presets={c["name"]: {"summary": c["summary"], "presets": c["presets"]} for c in choices})


@pages.get("/runs/new")
def new_run_page(request: Request, session: SessionDep, settings: SettingsDep, dataset: str = "digits"):
    """The run form with the seed notebook's presets (for ?dataset=name when given)."""
    return _form_page(request, session, settings, dataset=dataset)


@pages.post("/runs/new")
def new_run(request: Request, session: SessionDep, settings: SettingsDep, data: FormData):
    """Store and queue the run the form describes, or show each problem beside its field."""
    check_csrf(request, data.get("csrf_token"))
    form = pf.form_from_post(data)
    try:
        run = create_and_enqueue(request, session, pf.recipe_from_form(form))
    except RecipeError as exc:
        session.rollback()
        return _form_page(request, session, settings, form, pf.field_errors(exc.problems), 422)
    request.session["notice"] = f"Run {run.id} queued."
    return redirect(f"/runs/{run.id}")


@pages.get("/runs/{run_id}")
def run_page(request: Request, session: SessionDep, run_id: int):
    """One run, live while it trains."""
    return _run_page(request, session, run_id)


@pages.get("/runs/{run_id}/clone")
def clone_run_page(request: Request, session: SessionDep, settings: SettingsDep, run_id: int):
    """The run form prefilled with this run's recipe."""
    try:
        run = get_run(session, run_id)
    except RunNotFound:
        return render(request, "not_found.html", 404, what=f"run {run_id}")
    form = pf.form_from_spec(run.spec)
    form["name"] = f"{form['name']}-clone"
    return _form_page(request, session, settings, form, clone_of=run)


@pages.post("/runs/{run_id}/cancel")
def cancel_run(request: Request, session: SessionDep, run_id: int, data: FormData):
    """Cancel a queued run, or ask a running one to stop at its next batch."""
    check_csrf(request, data.get("csrf_token"))
    try:
        status = request_cancel(session, run_id)
    except RunNotFound:
        return render(request, "not_found.html", 404, what=f"run {run_id}")
    except RunFinished as exc:
        return _run_page(request, session, run_id, f"Nothing to cancel: run {run_id} already {exc.status}.", 409)
    session.commit()
    request.app.state.run_cache.invalidate(run_id)  # API readers see the cancel at once
    request.session["notice"] = ("Run cancelled before it started." if status == "cancelled"
                                 else "Asked the worker to stop at the next batch.")
    return redirect(f"/runs/{run_id}")


# ---- datasets -----------------------------------------------------------------------------------------------

def _datasets_page(request: Request, session, settings, form: dict | None = None, errors: dict | None = None,
                   status_code: int = 200):
    """Registered datasets and bare folders with their reports, and the register form."""
    infos = pf.dataset_infos(list_datasets(session), settings.data_root)
    form = form or {f: "" for f in pf.DATASET_FIELDS} | {"layout": "csv"}
    return render(request, "datasets.html", status_code, infos=infos, form=form, errors=errors or {},
                  data_root=settings.data_root)


@pages.get("/datasets")
def datasets_page(request: Request, session: SessionDep, settings: SettingsDep):
    """The dataset list and register form."""
    return _datasets_page(request, session, settings)


@pages.post("/datasets")
def register_dataset_form(request: Request, session: SessionDep, settings: SettingsDep, data: FormData):
    """Validate a dataset (paths inside the data root) and register it under a new name."""
    check_csrf(request, data.get("csrf_token"))
    form = pf.dataset_form(data)
    problems = []
    if not pf.DATASET_NAME.match(form["name"]):
        problems.append({"loc": "name", "msg": "up to 200 letters, digits, '.', '_' or '-', starting with a letter or digit"})
    elif get_dataset(session, form["name"]) is not None:
        problems.append({"loc": "name", "msg": f"a dataset named {form['name']!r} is already registered"})
    try:
        spec = DatasetSpec.model_validate(pf.dataset_spec_from_form(form))
        resolved = resolve_dataset(spec, settings.data_root)
    except ValidationError as exc:
        problems += problems_from(exc)
    except RecipeError as exc:
        problems += exc.problems
    if problems:
        return _datasets_page(request, session, settings, form, pf.field_errors(problems, pf.dataset_field), 422)
    register_dataset(session, form["name"], spec.model_dump(mode="json"), resolved.report())
    request.session["notice"] = f"Dataset {form['name']} registered."
    return redirect(f"/datasets/{form['name']}")


def _dataset(session, settings, name: str) -> pf.DatasetInfo | None:
    """A registered dataset or a folder under the data root, resolved; None when neither exists."""
    ds = get_dataset(session, name)
    folder = Path(settings.data_root) / name
    if ds is None and not (inside(folder, settings.data_root) and folder.is_dir()):
        return None
    return pf.dataset_info(name, settings.data_root, ds.spec if ds else None)


@pages.get("/datasets/{name}")
def dataset_page(request: Request, session: SessionDep, settings: SettingsDep, name: str):
    """One dataset: its report and a few sample images."""
    info = _dataset(session, settings, name)
    if info is None:
        return render(request, "not_found.html", 404, what=f"dataset {name!r}")
    samples = [(k, info.resolved.items[k]) for k in pf.sample_indices(info.resolved)] if info.resolved else []
    return render(request, "dataset.html", info=info, samples=samples)


@pages.get("/datasets/{name}/images/{k}")
def dataset_image(session: SessionDep, settings: SettingsDep, name: str, k: int):
    """The k-th image of a validated dataset (its path was checked to lie inside the data root)."""
    info = _dataset(session, settings, name)
    if info is None or info.resolved is None or not 0 <= k < len(info.resolved.items):
        raise HTTPException(404, "no such image")
    path = info.resolved.items[k].path
    if not inside(path, settings.data_root) or not path.is_file():
        raise HTTPException(404, "no such image")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=300"})


# ---- workers ------------------------------------------------------------------------------------------------

@pages.get("/workers")
def workers_page(request: Request, session: SessionDep, settings: SettingsDep):
    """Workers with their GPU, last heartbeat and current run; silent ones marked stale."""
    now, rows = utcnow(), []
    for w in session.exec(select(Worker).order_by(Worker.last_seen.desc())).scalars():
        ago = max(0.0, (now - w.last_seen).total_seconds())  # hosts' clocks may disagree a little
        run = session.get(Run, w.current_run_id) if w.current_run_id else None
        rows.append({"w": w, "ago": ago, "stale": ago > settings.worker_lost_after, "run": run})
    return render(request, "workers.html", rows=rows, lost_after=settings.worker_lost_after)


router.include_router(pages)  # last: include_router copies the routes registered so far
