"""The run form: new run with the seed notebook's presets, clone of a run, errors beside their fields."""
from __future__ import annotations

from fastapi import APIRouter, Request

from app.core.errors import RecipeError
from app.core.schemas import ARCHITECTURES
from app.pages import forms
from app.pages.presets import dataset_choices
from app.pages.render import FormData, PageId, redirect, render
from app.services import datasets, runs
from app.store.models import Run
from app.web.deps import PublisherDep, SessionDep, SettingsDep

router = APIRouter()


def _form_page(request: Request, session, settings, form: dict | None = None, errors: dict | None = None,
               status_code: int = 200, clone_of: Run | None = None, dataset: str = "digits"):
    """The new-run form, prefilled with the first preset of the dataset (digits by default) unless a form is given."""
    choices = dataset_choices(datasets.dataset_infos(session, settings.data_root))
    active = 0 if form is None else None
    if form is None:
        pick = next((c for c in choices if c["name"] == dataset), choices[0] if choices else None)
        form = pick["presets"][0]["form"] if pick else forms.form_from_spec({"stages": [{"epochs": 1, "size": 32}]})
    return render(request, "run_form.html", status_code, form=form, errors=errors or {}, choices=choices,
                  architectures=ARCHITECTURES, clone_of=clone_of, active=active,
                  presets={c["name"]: {"summary": c["summary"], "presets": c["presets"]} for c in choices})


@router.get("/runs/new")
def get_run_form(request: Request, session: SessionDep, settings: SettingsDep, dataset: str = "digits"):
    """The run form with the seed notebook's presets (for ?dataset=name when given)."""
    return _form_page(request, session, settings, dataset=dataset)


@router.post("/runs/new")
def post_run_form(request: Request, session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
                  data: FormData):
    """Store and queue the run the form describes, or show each problem beside its field."""
    form = forms.form_from_post(data)
    try:
        run, note = runs.submit(session, publisher, forms.recipe_from_form(form), settings.data_root)
    except RecipeError as exc:
        session.rollback()
        return _form_page(request, session, settings, form, forms.field_errors(exc.problems), 422)
    request.session["notice"] = f"Run {run.id} queued." if note is None else f"Run {run.id} stored; {note}."
    return redirect(f"/runs/{run.id}")


@router.get("/runs/{run_id}/clone")
def get_run_clone(request: Request, session: SessionDep, settings: SettingsDep, run_id: PageId):
    """The run form prefilled with this run's recipe."""
    run = runs.get(session, run_id)
    form = forms.form_from_spec(run.spec)
    form["name"] = f"{form['name']}-clone"
    return _form_page(request, session, settings, form, clone_of=run)
