"""/api/v1/datasets: register a dataset after validation, list them, read one."""
from __future__ import annotations

from typing import Annotated

from fastapi import Path

from fitboard.app.api import WRITE_ERRORS, api_router, errors
from fitboard.app.core.bodies import DatasetIn
from fitboard.app.services import datasets
from fitboard.app.services.serializers import DatasetOut, serialize_dataset
from fitboard.app.web.access import needs
from fitboard.app.web.deps import SessionDep, SettingsDep

router = api_router("datasets")


@router.post("/datasets", status_code=201, response_model=DatasetOut, responses={**WRITE_ERRORS, **errors(409)})
@needs("admin")
def post_datasets(session: SessionDep, settings: SettingsDep, body: DatasetIn):
    """Register a dataset under a name after validating it (paths must stay inside FITBOARD_DATA_ROOT)."""
    return serialize_dataset(datasets.register(session, body.name, body.spec, settings.data_root, loc_prefix="spec"))


@router.get("/datasets", response_model=list[DatasetOut])
@needs("read")
def get_datasets(session: SessionDep):
    """Registered datasets with their validation reports."""
    return [serialize_dataset(d) for d in datasets.registered(session)]


@router.get("/datasets/{name}", response_model=DatasetOut, responses=errors(404, 422))
@needs("read")
def get_dataset(name: Annotated[str, Path(max_length=200)], session: SessionDep):
    """One registered dataset."""
    return serialize_dataset(datasets.get(session, name))
