"""/api/v1/runs: submit, list, read, cancel, and a run's epochs, LR finds, model file and live events."""
from __future__ import annotations

from typing import Literal

from fastapi import Body, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from app.api import api_router
from app.core.schemas import RunSpec
from app.core.status import RunStatus
from app.services import runs
from app.services.serializers import epochs_csv, serialize_attempt, serialize_epoch, serialize_lr_find, serialize_run
from app.store.db import session_scope
from app.web.deps import PublisherDep, SessionDep, SettingsDep
from app.web.sse import run_events

router = api_router("runs")
Order = Literal["created_at", "-created_at", "name", "-name", "best_accuracy", "-best_accuracy",
                "tta_accuracy", "-tta_accuracy", "status", "-status", "finished_at", "-finished_at", "id", "-id"]


def stored(run, note: str | None, status_code: int = 201) -> JSONResponse:
    """A stored run: 201 (or status_code) once published, 202 with the note when the broker could not take it yet."""
    if note is None:
        return JSONResponse(serialize_run(run), status_code=status_code)
    return JSONResponse({**serialize_run(run), "queued_note": note}, status_code=202)


@router.post("/runs", status_code=201,
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": RunSpec.model_json_schema()}}}})
def post_runs(session: SessionDep, settings: SettingsDep, publisher: PublisherDep, payload: dict = Body(...)):
    """Submit a RunSpec: validated with its dataset, stored and queued; 422 names every bad field. 202 with a
    queued_note when the broker is unreachable: the run is stored and is sent when the broker is back."""
    return stored(*runs.submit(session, publisher, payload, settings.data_root))


@router.get("/runs")
def get_runs(session: SessionDep, status: list[RunStatus] | None = Query(None), dataset: str | None = None,
             name: str | None = None, order: Order = "-created_at", limit: int = Query(50, ge=1, le=500),
             offset: int = Query(0, ge=0)):
    """Runs, newest first, filtered by status (repeatable), dataset and name; paginated."""
    items, total = runs.page(session, status=status, dataset=dataset, name_contains=name, limit=limit,
                             offset=offset, order=order)
    return {"items": [serialize_run(r, full=False) for r in items], "total": total, "limit": limit, "offset": offset}


@router.get("/runs/{run_id}")
def get_run(run_id: int, session: SessionDep):
    """One run: status, spec, live progress, result (metrics, tta, best) and error."""
    return serialize_run(runs.get(session, run_id))


@router.get("/runs/{run_id}/epochs")
def get_run_epochs(run_id: int, session: SessionDep, format: Literal["json", "csv"] = "json"):
    """The epoch table, as the engine's JSON events or as CSV."""
    rows = runs.epochs(session, run_id)
    if format == "csv":
        return Response(epochs_csv(rows), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-epochs.csv"'})
    return [serialize_epoch(r) for r in rows]


@router.get("/runs/{run_id}/lr_finds")
def get_run_lr_finds(run_id: int, session: SessionDep):
    """Each LR-finder curve of the run, with its valley suggestion."""
    return [serialize_lr_find(r) for r in runs.lr_finds(session, run_id)]


@router.get("/runs/{run_id}/attempts")
def get_run_attempts(run_id: int, session: SessionDep):
    """Each attempt at the run: worker, start, end, where it resumed and why it ended."""
    runs.get(session, run_id)
    return [serialize_attempt(a) for a in runs.attempts(session, run_id)]


@router.get("/runs/{run_id}/model")
def get_run_model(run_id: int, session: SessionDep):
    """Download the exported model (fastai's learn.export file)."""
    return FileResponse(runs.model_file(session, run_id), filename=f"run-{run_id}-model.pkl",
                        media_type="application/octet-stream")


@router.post("/runs/{run_id}/cancel")
def post_run_cancel(run_id: int, request: Request, session: SessionDep, settings: SettingsDep):
    """Cancel a queued run, or ask a running one to stop at its next batch (at once when its worker is gone);
    409 when it already ended."""
    status = runs.cancel(session, run_id, orphaned_after=settings.worker_lost_after)
    request.app.state.run_cache.invalidate(run_id)  # the next GET must show the cancel
    return {"id": run_id, "status": status, "cancel_requested": True}


@router.post("/runs/{run_id}/retry")
def post_run_retry(run_id: int, request: Request, session: SessionDep, publisher: PublisherDep,
                   start: Literal["checkpoint", "scratch"] = Body("checkpoint", alias="from", embed=True)):
    """Queue a failed or cancelled run again under its id: from its last epoch checkpoint (its rows kept) or from
    scratch (rows cleared); 409 for a queued, running or succeeded run."""
    run, note = runs.retry(session, publisher, run_id, from_checkpoint=start == "checkpoint")
    request.app.state.run_cache.invalidate(run_id)
    return stored(run, note, status_code=200)


@router.get("/runs/{run_id}/events")
def get_run_events(run_id: int, request: Request):
    """Server-sent events: stored epoch rows, then new rows, progress and status changes; resumes by Last-Event-ID."""
    with session_scope(request.app.state.engine) as session:  # not a request-long session: streams last for hours
        runs.get(session, run_id)
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    after = int(last) if last and last.isdigit() else 0
    return StreamingResponse(run_events(request, run_id, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
