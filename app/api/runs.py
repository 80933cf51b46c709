"""/api/v1/runs: submit, list, read, edit, delete, cancel, and a run's epochs, LR finds, model file and live events."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import Body, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from pydantic_core import to_json
from starlette.concurrency import iterate_in_threadpool

from fitboard.app.api import CSV, WRITE_ERRORS, RunId, api_router, errors, queued_later, stored
from fitboard.app.core.artifacts import store_for
from fitboard.app.core.bodies import RetryIn
from fitboard.app.core.errors import RecipeError, RunNotFound
from fitboard.app.core.events import EpochEvent
from fitboard.app.core.run_meta import MAX_TAG, TAG_REGEX, check_tag
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.core.status import RunStatus
from fitboard.app.services import runs
from fitboard.app.services.dispatch import run_json, runs_json
from fitboard.app.services.serializers import (
    AttemptOut,
    CancelOut,
    DeletedOut,
    LRFindOut,
    RunOut,
    RunPage,
    epochs_csv,
    serialize_attempt,
    serialize_epoch,
    serialize_lr_find,
)
from fitboard.app.store.run_list import COUNT_LIMIT, MAX_CURSOR, MAX_OFFSET, BadCursor
from fitboard.app.web.access import AccessDep, CheckedPatch, needs
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep
from fitboard.app.web.sse import EVENTS_200, EventStream, resume_point, run_events, stream_slot

router = api_router("runs")
Order = Literal["created_at", "-created_at", "name", "-name", "best_accuracy", "-best_accuracy",
                "tta_accuracy", "-tta_accuracy", "status", "-status", "finished_at", "-finished_at", "id", "-id"]
RUN_SPEC_BODY = {"requestBody": {"required": True,
                                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunSpec"}}}}}


QUEUED_LATER = queued_later(RunOut)


@router.post("/runs", status_code=201, response_model=RunOut, responses={**WRITE_ERRORS, **QUEUED_LATER},
             openapi_extra=RUN_SPEC_BODY)
@needs("member")
def post_runs(access: AccessDep, session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
              payload: dict = Body(...)):
    """Submit a RunSpec: validated with its dataset, stored and queued; 422 names every bad field. 202 with a
    queued_note when the broker is unreachable: the run is stored and is sent when the broker is back."""
    run, note = runs.submit(session, publisher, payload, settings.data_root)
    access.note("launch", f"run {run.id}")
    return stored(run_json(session.get_bind(), settings, run), note)


@router.get("/runs", response_model=RunPage, responses=errors(422))
@needs("read")
def get_runs(session: SessionDep, settings: SettingsDep, status: list[RunStatus] | None = Query(None),
             dataset: str | None = Query(None, max_length=1024), name: str | None = Query(None, max_length=200),
             tag: str | None = Query(None, max_length=MAX_TAG, description="only runs with this tag",
                                     json_schema_extra={"pattern": TAG_REGEX}),
             archived: Literal["hide", "show", "only"] = Query("hide", description="archived runs: hidden (default), "
                                                                                   "listed too, or listed alone"),
             sweep: int | None = Query(None, ge=1, le=MAX_ID, description="only this sweep's runs"),
             search: int | None = Query(None, ge=1, le=MAX_ID, description="only this search's trials"),
             order: Order = "-created_at", limit: int = Query(50, ge=1, le=500),
             offset: int = Query(0, ge=0, le=MAX_OFFSET, description="rows to skip; further pages by cursor"),
             cursor: str | None = Query(None, max_length=MAX_CURSOR, description="next_cursor or prev_cursor of a "
                                                                                 "page of this order"),
             detail: bool = Query(False, description="each run in full (recipe, progress, result), as GET "
                                                     "/runs/{id} answers it: what fitboard.Client tables read")):
    """Runs, newest first, filtered by status (repeatable), dataset, name, tag, sweep and search; archived runs hidden
    unless asked for; paged by cursor (next_cursor, prev_cursor) or a bounded offset. total counts up to 10,000 and is
    null past that (total_at_least says 10,001)."""
    if tag is not None:
        tag = _query_tag(tag)
    try:
        found = runs.page(session, status=status, dataset=dataset, name_contains=name, limit=limit, offset=offset,
                          order=order, tag=tag, archived=runs.ARCHIVED[archived], sweep_id=sweep, search_id=search,
                          cursor=cursor, summary=not detail)
    except BadCursor as exc:
        raise RecipeError.one("cursor", str(exc)) from None
    page = {"items": runs_json(session.get_bind(), settings, found.items, full=detail), "total": found.total,
            "total_at_least": COUNT_LIMIT + 1 if found.total is None else found.total, "limit": limit,
            "offset": offset, "next_cursor": found.next_cursor, "prev_cursor": found.prev_cursor}
    # Sent as they are: each item was built through its model already (a summary, or in full more than RunSummary,
    # which response_model would trim); validating the page again cost a tenth of the request. A NaN the store let
    # through (it writes none) goes out as null, as the response model would send it, never as a 500.
    return Response(to_json(page, inf_nan_mode="null"), media_type="application/json")


def _query_tag(tag: str) -> str:
    """The tag filter, or a 422 naming the tag parameter."""
    try:
        return check_tag(tag)
    except ValueError as exc:
        raise RecipeError.one("tag", str(exc)) from None


@router.patch("/runs/{run_id}", response_model=RunOut, responses={**WRITE_ERRORS, **errors(404)})
@needs("member")
def patch_run(run_id: RunId, request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep,
              patch: CheckedPatch):
    """Rename a run, replace its notes (plain text) or tags, archive or unarchive it, change its priority (admins:
    any; members: lower their own runs'); fields left out stay."""
    run = runs.edit(session, run_id, patch)
    request.app.state.run_cache.invalidate(run_id)
    if patch.archived is not None:
        access.note("archive" if patch.archived else "unarchive", f"run {run_id}")
    if patch.priority is not None:
        access.note(f"priority {patch.priority}", f"run {run_id}")
    return run_json(session.get_bind(), settings, run)


@router.delete("/runs/{run_id}", response_model=DeletedOut, responses={**errors(403, 404, 409, 422)})
@needs("admin", audit="delete")
def delete_run(run_id: RunId, request: Request, session: SessionDep, settings: SettingsDep):
    """Delete a finished run: its epoch rows, LR finds, attempts and files; it leaves its sweep's statistics. 409 for
    a queued or running run (cancel it first)."""
    runs.delete(session, settings, run_id)
    request.app.state.run_cache.invalidate(run_id)
    return {"id": run_id, "deleted": True}


# Served by fitboard.app.web.fastpath for bearer-token and open callers (no response validation there: it is the hottest
# call); this handler answers cookie sessions, misses and 404s.
@router.get("/runs/{run_id}", response_model=RunOut, responses=errors(404, 422))
@needs("read")
def get_run(run_id: RunId, session: SessionDep, settings: SettingsDep):
    """One run: status, spec, live progress, result (metrics, tta, best) and error; while queued, its
    queue_position (1 = next to start) and estimated_start."""
    return run_json(session.get_bind(), settings, runs.get(session, run_id))


@router.get("/runs/{run_id}/epochs", response_model=list[EpochEvent],
            responses={200: {"content": CSV, "description": "the epoch table (CSV with format=csv)"},
                       **errors(404, 422)})
@needs("read")
def get_run_epochs(run_id: RunId, session: SessionDep, format: Literal["json", "csv"] = "json"):
    """The epoch table, as the engine's JSON events or as CSV."""
    rows = runs.epochs(session, run_id)
    if format == "csv":
        return Response(epochs_csv(rows), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-epochs.csv"'})
    return [serialize_epoch(r) for r in rows]


@router.get("/runs/{run_id}/lr_finds", response_model=list[LRFindOut], responses=errors(404, 422))
@needs("read")
def get_run_lr_finds(run_id: RunId, session: SessionDep):
    """Each LR-finder curve of the run, with its valley suggestion."""
    return [serialize_lr_find(r) for r in runs.lr_finds(session, run_id)]


@router.get("/runs/{run_id}/attempts", response_model=list[AttemptOut], responses=errors(404, 422))
@needs("read")
def get_run_attempts(run_id: RunId, session: SessionDep):
    """Each attempt at the run: worker, start, end, where it resumed and why it ended."""
    runs.get(session, run_id)
    return [serialize_attempt(a) for a in runs.attempts(session, run_id)]


@router.get("/runs/{run_id}/model", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                  "format": "binary"}}},
                             "description": "fastai's learn.export file"}, **errors(404, 422, 503)})
@needs("read")
def get_run_model(run_id: RunId, session: SessionDep, settings: SettingsDep):
    """Download the exported model (fastai's learn.export file), from whichever host's store holds it."""
    found, name = runs.model_file(session, store_for(settings), run_id), f"run-{run_id}-model.pkl"
    if isinstance(found, Path):
        return FileResponse(found, filename=name, media_type="application/octet-stream")
    chunks, size = found  # streamed from the bucket as it arrives: a large model never sits in memory
    return StreamingResponse(iterate_in_threadpool(chunks), media_type="application/octet-stream",
                             headers={"Content-Length": str(size),
                                      "Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/runs/{run_id}/cancel", response_model=CancelOut, responses={**errors(403, 404, 409, 422)})
@needs("member", audit="cancel")
def post_run_cancel(run_id: RunId, request: Request, session: SessionDep, settings: SettingsDep):
    """Cancel a queued run, or ask a running one to stop at its next batch (at once when no live worker holds it);
    409 when it already ended."""
    status = runs.cancel(session, run_id, orphaned_after=settings.worker_lost_after)
    request.app.state.run_cache.invalidate(run_id)  # the next GET must show the cancel
    return {"id": run_id, "status": status, "cancel_requested": True}


@router.post("/runs/{run_id}/retry", response_model=RunOut, responses={**errors(403, 404, 409, 422), **QUEUED_LATER})
@needs("member", audit="retry")
def post_run_retry(run_id: RunId, request: Request, session: SessionDep, publisher: PublisherDep,
                   settings: SettingsDep, body: RetryIn | None = None):
    """Queue a failed or cancelled run again under its id: from its last epoch checkpoint (its rows kept) or from
    scratch (rows cleared); 409 for a queued, running or succeeded run."""
    run, note = runs.retry(session, publisher, run_id, from_checkpoint=body is None or body.start == "checkpoint")
    request.app.state.run_cache.invalidate(run_id)
    return stored(run_json(session.get_bind(), settings, run), note, status_code=200)


async def existing_run(run_id: RunId, access: AccessDep) -> int:
    """The run id, once the run is known to exist (404 otherwise): the access check already looked it up, so a
    stream starts without another database round trip or thread hop."""
    if "run_id" not in access.exists:
        raise RunNotFound(run_id)
    return run_id


@router.get("/runs/{run_id}/events", response_class=EventStream,
            dependencies=[Depends(stream_slot)], responses={200: EVENTS_200, **errors(404, 422, 503)})
@needs("read")
async def get_run_events(request: Request, run_id: Annotated[int, Depends(existing_run)],
                         last_event_id: Annotated[str | None, Query(
                             description="resume after this epoch row (for clients that cannot set the header)",
                             max_length=64)] = None,
                         last_event_id_header: Annotated[str | None, Header(
                             alias="Last-Event-ID", description="resume after this epoch row", max_length=64)] = None):
    """Server-sent events: stored epoch rows (`epoch`, id = the row's ordinal), then new rows, batch `progress` and
    `status` changes, until the run has finished; a stream also ends after FITBOARD_STREAM_LIFETIME seconds and the
    client resumes with Last-Event-ID (a value that is not a row ordinal is ignored: the stream starts over)."""
    after = resume_point(last_event_id_header or last_event_id)
    return EventStream(run_events(request.app.state.streams, run_id, after))
