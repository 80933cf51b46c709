"""/api/v1/tracked: runs trained outside fitboard (a notebook's FitboardCallback) open, send rows, finish."""
from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from fitboard.app.api import WRITE_ERRORS, RunId, api_router, errors
from fitboard.app.core.artifacts import store_for
from fitboard.app.core.errors import RecipeError, TooLarge
from fitboard.app.core.tracked import MAX_MODEL_BYTES, TrackedBatch, TrackedFinish, TrackedOpen
from fitboard.app.services import tracked
from fitboard.app.services.serializers import RunOut, serialize_run
from fitboard.app.store.db import session_scope
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import SessionDep

router = api_router("tracked")


@router.post("/tracked", status_code=201, response_model=RunOut, responses=WRITE_ERRORS)
@needs("member", worker=True)
def post_tracked(access: AccessDep, session: SessionDep, payload: TrackedOpen):
    """Open a tracked run: name, dataset label and what the callback read from the learner (arch, loss, optimiser,
    ...). It is running from now and takes its rows over POST /tracked/{id}/rows."""
    run = tracked.open_run(session, payload)
    access.note("launch", f"tracked run {run.id}")
    return serialize_run(run)


@router.post("/tracked/{run_id}/rows", response_model=RunOut, responses={**WRITE_ERRORS, **errors(404, 409)})
@needs("member", worker=True)
def post_tracked_rows(run_id: RunId, request: Request, session: SessionDep, payload: TrackedBatch):
    """A batch of stage plans, epoch rows (keyed (stage, epoch): a batch sent twice changes nothing), LR-finder
    curves and batch progress; 409 once the run has ended (cancelled on the dashboard, or lost)."""
    run = tracked.add_rows(session, run_id, payload)
    request.app.state.run_cache.invalidate(run_id)
    return serialize_run(run)


@router.post("/tracked/{run_id}/finish", response_model=RunOut, responses={**WRITE_ERRORS, **errors(404, 409)})
@needs("member", worker=True)
def post_tracked_finish(run_id: RunId, request: Request, session: SessionDep, payload: TrackedFinish):
    """End a tracked run: status (succeeded, failed, cancelled), final metrics, optional confusion and top losses."""
    run = tracked.finish(session, run_id, payload)
    request.app.state.run_cache.invalidate(run_id)
    return serialize_run(run)


@router.put("/tracked/{run_id}/model", responses={**errors(403, 404, 408, 409, 413, 422, 503)},
            openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "minLength": 1, "maxLength": MAX_MODEL_BYTES}}}}})
@needs("member", worker=True)
async def put_tracked_model(run_id: RunId, request: Request) -> dict:
    """Upload the run's learn.export file (1 byte to 1 GB) while it is running, kept for download at
    /runs/{id}/model; fitboard never loads it (unpickling runs code). 409 once the run has finished."""
    await run_in_threadpool(_check_running, request, run_id)  # before reading a byte of the body
    with tempfile.TemporaryDirectory(prefix="fitboard-upload-") as tmp:
        path, seen = Path(tmp) / "model.pkl", 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > MAX_MODEL_BYTES:
                    raise TooLarge(f"an uploaded model may have at most {MAX_MODEL_BYTES // 1024**3} GB")
                await run_in_threadpool(out.write, chunk)
        if seen == 0:
            raise RecipeError.one("body", "the uploaded model is empty: send the learn.export file's bytes")
        size = await run_in_threadpool(_keep, request, run_id, path)
    return {"id": run_id, "kind": tracked.UPLOAD_KIND, "size": size}


def _check_running(request: Request, run_id: int) -> None:
    """404 for an unknown run, 409 for one not tracked or already finished."""
    with session_scope(request.app.state.engine) as session:
        tracked.check_uploadable(session, run_id)


def _keep(request: Request, run_id: int, path: Path) -> int:
    """Store the upload in a session of its own (the route is async: it streams the body)."""
    state = request.app.state
    with session_scope(state.engine) as session:
        return tracked.keep_model(session, store_for(state.settings), run_id, path)
