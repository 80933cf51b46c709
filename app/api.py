"""The REST API under /api/v1: runs, their epochs and events, datasets and workers."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import select

from app.datasets import resolve_dataset
from app.db import session_scope
from app.deps import SessionDep, SettingsDep
from app.events import run_events
from app.models import Worker
from app.queue import enqueue_run
from app.registry import get_dataset, list_datasets, register_dataset
from app.runs import get_run, list_artifacts, list_epochs, list_lr_finds, list_runs, request_cancel
from app.schemas import DatasetSpec, RecipeError, RunSpec
from app.security import require_api_auth
from app.submit import submit_run
from app.views import dataset_json, epoch_json, epochs_csv, lr_find_json, run_json, worker_json

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_auth)])
Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Order = Literal["created_at", "-created_at", "name", "-name", "best_accuracy", "-best_accuracy",
                "tta_accuracy", "-tta_accuracy", "status", "-status", "finished_at", "-finished_at", "id", "-id"]


def commit_and_enqueue(request: Request, session, runs: list) -> None:
    """Commit, then queue each run (a worker must never see a run id before its row exists)."""
    session.commit()
    for run in runs:
        enqueue_run(request.app.state.celery, run.id)


def create_and_enqueue(request: Request, session, data: dict | RunSpec):
    """Store a run from a recipe and queue it."""
    run = submit_run(session, data, request.app.state.settings.data_root)
    commit_and_enqueue(request, session, [run])
    return run


@router.post("/runs", status_code=201, tags=["runs"],
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": RunSpec.model_json_schema()}}}})
def create_run_route(request: Request, session: SessionDep, payload: dict = Body(...)):
    """Submit a RunSpec: validated with its dataset, stored and queued; 422 names every bad field."""
    return run_json(create_and_enqueue(request, session, payload))


@router.get("/runs", tags=["runs"])
def list_runs_route(session: SessionDep, status: list[Status] | None = Query(None), dataset: str | None = None,
                    name: str | None = None, order: Order = "-created_at", limit: int = Query(50, ge=1, le=500),
                    offset: int = Query(0, ge=0)):
    """Runs, newest first, filtered by status (repeatable), dataset and name; paginated."""
    items, total = list_runs(session, status=status, dataset=dataset, name_contains=name, limit=limit,
                             offset=offset, order=order)
    return {"items": [run_json(r, full=False) for r in items], "total": total, "limit": limit, "offset": offset}


@router.get("/runs/{run_id}", tags=["runs"])
def get_run_route(run_id: int, session: SessionDep):
    """One run: status, spec, live progress, result (metrics, tta, best) and error."""
    return run_json(get_run(session, run_id))


@router.get("/runs/{run_id}/epochs", tags=["runs"])
def epochs_route(run_id: int, session: SessionDep, format: Literal["json", "csv"] = "json"):
    """The epoch table, as the engine's JSON events or as CSV."""
    get_run(session, run_id)
    rows = list_epochs(session, run_id)
    if format == "csv":
        return Response(epochs_csv(rows), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-epochs.csv"'})
    return [epoch_json(r) for r in rows]


@router.get("/runs/{run_id}/lr_finds", tags=["runs"])
def lr_finds_route(run_id: int, session: SessionDep):
    """Each LR-finder curve of the run, with its valley suggestion."""
    get_run(session, run_id)
    return [lr_find_json(r) for r in list_lr_finds(session, run_id)]


@router.get("/runs/{run_id}/model", tags=["runs"])
def model_route(run_id: int, session: SessionDep):
    """Download the exported model (fastai's learn.export file)."""
    get_run(session, run_id)
    path = list_artifacts(session, run_id).get("model")
    if not path or not Path(path).is_file():
        raise HTTPException(404, f"run {run_id} has no exported model")
    return FileResponse(path, filename=f"run-{run_id}-model.pkl", media_type="application/octet-stream")


@router.post("/runs/{run_id}/cancel", tags=["runs"])
def cancel_route(run_id: int, request: Request, session: SessionDep):
    """Cancel a queued run, or ask a running one to stop at its next batch; 409 when it already ended."""
    status = request_cancel(session, run_id)
    session.commit()
    request.app.state.run_cache.invalidate(run_id)  # the next GET must show the cancel
    return {"id": run_id, "status": status, "cancel_requested": True}


@router.get("/runs/{run_id}/events", tags=["runs"])
def events_route(run_id: int, request: Request):
    """Server-sent events: stored epoch rows, then new rows, progress and the status change; resumes by Last-Event-ID."""
    with session_scope(request.app.state.engine) as session:  # not a request-long session: streams last for hours
        get_run(session, run_id)
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    after = int(last) if last and last.isdigit() else 0
    return StreamingResponse(run_events(request, run_id, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/datasets", status_code=201, tags=["datasets"])
def register_dataset_route(session: SessionDep, settings: SettingsDep, name: str = Body(..., min_length=1, max_length=200,
                           pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"), spec: DatasetSpec = Body(...)):
    """Register a dataset under a name after validating it (paths must stay inside FITBOARD_DATA_ROOT)."""
    if get_dataset(session, name) is not None:
        raise HTTPException(409, f"a dataset named {name!r} is already registered")
    try:
        resolved = resolve_dataset(spec, settings.data_root)
    except RecipeError as exc:  # the engine says "dataset.path"; in this request body the field is "spec.path"
        raise RecipeError([{**p, "loc": p["loc"].replace("dataset", "spec", 1)} for p in exc.problems]) from None
    return dataset_json(register_dataset(session, name, spec.model_dump(mode="json"), resolved.report()))


@router.get("/datasets", tags=["datasets"])
def list_datasets_route(session: SessionDep):
    """Registered datasets with their validation reports."""
    return [dataset_json(d) for d in list_datasets(session)]


@router.get("/datasets/{name}", tags=["datasets"])
def get_dataset_route(name: str, session: SessionDep):
    """One registered dataset."""
    ds = get_dataset(session, name)
    if ds is None:
        raise HTTPException(404, f"no dataset named {name!r}")
    return dataset_json(ds)


@router.get("/workers", tags=["workers"])
def workers_route(session: SessionDep):
    """Workers with their host, GPU, last heartbeat and current run."""
    return [worker_json(w) for w in session.exec(select(Worker).order_by(Worker.last_seen.desc())).scalars()]


