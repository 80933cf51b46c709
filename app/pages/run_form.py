"""The run form: new run with the seed notebook's presets, clone of a run, recipe import and download."""
from __future__ import annotations

import re
from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from fitboard.app.core.errors import RecipeError, RunNotFound
from fitboard.app.core.recipes import MAX_RECIPE_BYTES, parse_recipe_text
from fitboard.app.core.schemas import ARCHITECTURES, MAX_ID, RunSpec, parse_spec
from fitboard.app.pages import forms
from fitboard.app.pages.presets import dataset_choices
from fitboard.app.pages.render import FormData, PageId, redirect, render
from fitboard.app.services import datasets, runs
from fitboard.app.store.models import Run
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep
from fitboard.app.web.security import check_csrf

router = APIRouter()
BLANK = {"stages": [{"epochs": 1, "size": 32}]}  # everything else at RunSpec's and StageSpec's defaults
BLANK_STAGE = forms.form_from_spec(BLANK)["stages"][0]  # what "+ Add stage" adds to an empty table


def _form_page(request: Request, session, settings, form: dict | None = None, errors: dict | None = None,
               status_code: int = 200, clone_of: Run | None = None, dataset: str = "digits", **extra):
    """The new-run form, prefilled with the first preset of the dataset (digits by default) unless a form is given.

    extra: the import box's state (import_text, import_errors, imported)."""
    choices = dataset_choices(datasets.dataset_infos(session, settings.data_root))
    active = 0 if form is None else None
    if form is None:
        pick = next((c for c in choices if c["name"] == dataset), choices[0] if choices else None)
        form = pick["presets"][0]["form"] if pick else forms.form_from_spec(BLANK)  # no dataset: RunSpec's defaults
    return render(request, "run_form.html", status_code, form=form, errors=errors or {}, choices=choices,
                  architectures=ARCHITECTURES, clone_of=clone_of, active=active,
                  max_recipe_kb=MAX_RECIPE_BYTES // 1024, blank_stage=BLANK_STAGE, **extra,
                  presets={c["name"]: {"summary": c["summary"], "presets": c["presets"]} for c in choices})


def _clone_source(session, value: str | None) -> Run | None:
    """The run a re-posted clone form was cloned from (its hidden clone_of field), if it still exists."""
    if not value or not value.isdecimal() or not 1 <= int(value) <= MAX_ID:
        return None
    try:
        return runs.get(session, int(value))
    except RunNotFound:
        return None


@router.get("/runs/new")
@needs("member")
def get_run_form(request: Request, session: SessionDep, settings: SettingsDep, dataset: str = "digits"):
    """The run form with the seed notebook's presets (for ?dataset=name when given)."""
    return _form_page(request, session, settings, dataset=dataset)


@router.post("/runs/new")
@needs("member")
def post_run_form(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep,
                  publisher: PublisherDep,
                  data: FormData):
    """Store and queue the run the form describes, or show each problem beside its field."""
    form = {**forms.form_from_post(data), "priority": forms.priority_of(data)}
    try:
        recipe = {**forms.recipe_from_form(form), "priority": form["priority"]}
        run, note = runs.submit(session, publisher, recipe, settings.data_root)
    except RecipeError as exc:
        session.rollback()
        return _form_page(request, session, settings, form, forms.field_errors(exc.problems), 422,
                          clone_of=_clone_source(session, data.get("clone_of")))
    access.note("launch", f"run {run.id}")
    request.session["notice"] = f"Run {run.id} queued." if note is None else f"Run {run.id} stored; {note}."
    return redirect(f"/runs/{run.id}")


@router.get("/runs/{run_id}/clone")
@needs("member")
def get_run_clone(request: Request, session: SessionDep, settings: SettingsDep, run_id: PageId):
    """The run form prefilled with this run's recipe."""
    run = runs.get(session, run_id)
    form = forms.form_from_spec(run.spec)
    form["name"] = f"{form['name']}-clone"
    return _form_page(request, session, settings, form, clone_of=run)


async def recipe_upload(request: Request) -> str | RecipeError:
    """The recipe text posted to the import box: the uploaded file when one was chosen, else the pasted text."""
    posted = await request.form()
    check_csrf(request, posted.get("csrf_token") if isinstance(posted.get("csrf_token"), str) else None)
    upload = posted.get("recipe_file")
    if upload is not None and not isinstance(upload, str) and upload.filename:
        raw = await upload.read(MAX_RECIPE_BYTES + 1)
        if len(raw) > MAX_RECIPE_BYTES:
            return RecipeError.one("recipe_file", f"a recipe may have at most {MAX_RECIPE_BYTES // 1024} KB")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return RecipeError.one("recipe_file", f"{upload.filename} is not UTF-8 text (a YAML or JSON recipe)")
    text = posted.get("recipe")
    if isinstance(text, str) and text.strip():
        return text
    return RecipeError.one("recipe", "choose a file or paste a recipe")


RecipeUpload = Annotated[object, Depends(recipe_upload)]


@router.post("/runs/new/import")
@needs("member")
def post_run_import(request: Request, session: SessionDep, settings: SettingsDep, upload: RecipeUpload):
    """A YAML or JSON recipe loaded into the form (not queued); its problems shown beside their fields."""
    text = upload if isinstance(upload, str) else ""
    try:
        if isinstance(upload, RecipeError):
            raise upload
        raw = parse_recipe_text(text, "recipe", as_json=text.lstrip().startswith("{"))
    except RecipeError as exc:
        return _form_page(request, session, settings, status_code=422, import_text=text[:MAX_RECIPE_BYTES],
                          import_errors=[p["msg"] for p in exc.problems])
    try:
        parse_spec(raw)
        problems = []
    except RecipeError as exc:
        problems = exc.problems
    # Problems of fields the form has go beside them; the rest (an unknown key) stay with the import box.
    known = [p for p in problems if re.match(r"\w+", p["loc"] or "") and
             re.match(r"\w+", p["loc"])[0] in RunSpec.model_fields]
    others = [f"{p['loc']}: {p['msg']}" if p["loc"] else p["msg"] for p in problems if p not in known]
    return _form_page(request, session, settings, forms.form_from_spec(raw), forms.field_errors(known),
                      422 if problems else 200, import_errors=others, imported=True)


def recipe_yaml(spec: dict) -> str:
    """A stored recipe as a YAML file, in RunSpec's field order (the stored spec, nothing added or dropped)."""
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


@router.get("/runs/{run_id}/recipe.yaml")
@needs("read")
def get_run_recipe(session: SessionDep, run_id: PageId):
    """This run's recipe as a YAML file to keep, edit, import into the form or pass to `fitboard train`."""
    run = runs.get(session, run_id)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", run.name or "")[:100].strip("-.") or f"run-{run.id}"
    return Response(recipe_yaml(run.spec or {}), media_type="application/yaml",
                    headers={"Content-Disposition": f'attachment; filename="{stem}.yaml"'})
