"""The dataset pages: the list with the register form, one dataset's report and sample images."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse
from pydantic import ValidationError

from fitboard.app.core.datasets import ResolvedDataset
from fitboard.app.core.errors import DatasetExists, RecipeError
from fitboard.app.core.schemas import MAX_ID, DatasetSpec, problems_from
from fitboard.app.pages import forms
from fitboard.app.pages.render import FormData, redirect, render
from fitboard.app.services import datasets
from fitboard.app.web.access import needs
from fitboard.app.web.deps import SessionDep, SettingsDep

router = APIRouter()


def _datasets_page(request: Request, session, settings, form: dict | None = None, errors: dict | None = None,
                   status_code: int = 200):
    """Registered datasets and bare folders with their reports, and the register form."""
    infos = datasets.dataset_infos(session, settings.data_root)
    form = form or {f: "" for f in forms.DATASET_FIELDS} | {"layout": "csv"}
    return render(request, "datasets.html", status_code, infos=infos, form=form, errors=errors or {},
                  data_root=settings.data_root)


@router.get("/datasets")
@needs("read")
def get_datasets(request: Request, session: SessionDep, settings: SettingsDep):
    """The dataset list and register form."""
    return _datasets_page(request, session, settings)


@router.post("/datasets")
@needs("admin")
def post_datasets(request: Request, session: SessionDep, settings: SettingsDep, data: FormData):
    """Validate a dataset (paths inside the data root) and register it under a new name."""
    form = forms.dataset_form(data)
    problems = []
    if not forms.DATASET_NAME.match(form["name"]):
        problems.append({"loc": "name",
                         "msg": "up to 200 letters, digits, '.', '_' or '-', starting with a letter or digit"})
    elif datasets.is_registered(session, form["name"]):
        problems.append({"loc": "name", "msg": str(DatasetExists(form["name"]))})
    try:
        spec = DatasetSpec.model_validate(forms.dataset_spec_from_form(form))
        resolved = datasets.validate(spec, settings.data_root)
    except ValidationError as exc:
        problems += problems_from(exc)
    except RecipeError as exc:
        problems += exc.problems
    if problems:
        return _datasets_page(request, session, settings, form, forms.field_errors(problems, forms.dataset_field), 422)
    datasets.store(session, form["name"], spec, resolved)
    request.session["notice"] = f"Dataset {form['name']} registered."
    return redirect(f"/datasets/{form['name']}")


@router.get("/datasets/{name}")
@needs("read")
def get_dataset(request: Request, session: SessionDep, settings: SettingsDep, name: str):
    """One dataset: its report and a few sample images."""
    info = datasets.find(session, name, settings.data_root)
    samples = [(k, info.resolved.items[k]) for k in sample_indices(info.resolved)] if info.resolved else []
    return render(request, "dataset.html", info=info, samples=samples)


@router.get("/datasets/{name}/images/{k}")
@needs("read")
def get_dataset_image(session: SessionDep, settings: SettingsDep, name: str, k: Annotated[int, Path(ge=0, le=MAX_ID)]):
    """The k-th image of a validated dataset (inside the data root), with the type PIL recognises it as."""
    path, media_type = datasets.image_file(session, name, k, settings.data_root)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})


def sample_indices(resolved: ResolvedDataset, per_class: int = 2, limit: int = 12) -> list[int]:
    """Indices of a few images, spread over the classes, for the dataset page."""
    seen: dict[str, int] = {}
    picked = []
    for i, item in enumerate(resolved.items):
        if seen.get(item.label, 0) < per_class and len(picked) < limit:
            seen[item.label] = seen.get(item.label, 0) + 1
            picked.append(i)
    return picked
