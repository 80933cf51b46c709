"""The runs list and one run's page (live while it trains), with cancel."""
from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from fitboard.app.core.artifacts import store_for
from fitboard.app.core.errors import RunActive, RunFinished
from fitboard.app.core.run_meta import TAG_PATTERN
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.core.status import FINISHED, STATUSES, RunStatus
from fitboard.app.pages.render import FormData, PageId, redirect, render
from fitboard.app.pages.wording import attempt_ending, attempts_seconds, describe_stage, describe_techniques
from fitboard.app.services import datasets, dispatch, error_images, runs, sweeps
from fitboard.app.services.serializers import serialize_epoch, serialize_lr_find
from fitboard.app.store.models import utcnow
from fitboard.app.store.run_list import COUNT_LIMIT, MAX_CURSOR, MAX_OFFSET, BadCursor
from fitboard.app.web.access import AccessDep, CheckedPriority, needs, priorities_allowed
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep

router = APIRouter()
SORTABLE = ("name", "status", "dataset", "best_accuracy", "tta_accuracy", "created_at")
PAGE_SIZE = 25
TRACEBACK_LINES = 40


def query(params: dict, **changes) -> str:
    """A query string for the runs list with some parameters changed (empty ones dropped)."""
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "", [])}
    return "?" + urlencode(merged, doseq=True) if merged else "?"


def next_order(column: str, order: str) -> str:
    """A header click sorts by that column, a second click reverses; text starts at A, numbers and dates high."""
    if order == column:
        return f"-{column}"
    if order == f"-{column}":
        return column
    return column if column in ("name", "dataset", "status") else f"-{column}"


@router.get("/")
@router.get("/runs")
@needs("read")
def get_runs(request: Request, session: SessionDep, status: list[str] = Query([]), dataset: str = "",
             name: str = "", tag: str = "", archived: str = "", order: str = "-created_at", limit: int = PAGE_SIZE,
             offset: int = 0, cursor: str = ""):
    """Every run with its techniques and headline metrics; filter, sort, page (by cursor), pick runs to compare or
    tidy."""
    status = [s for s in status if s in STATUSES]
    order = order if order.lstrip("-") in SORTABLE else "-created_at"
    limit, offset = min(max(limit, 1), 200), min(max(offset, 0), MAX_OFFSET)
    tag = tag.strip() if TAG_PATTERN.fullmatch(tag.strip()) else ""
    archived = archived if archived in ("show", "only") else ""
    filters = {"status": status or None, "dataset": dataset[:1024] or None, "name_contains": name[:200] or None,
               "tag": tag or None, "archived": runs.ARCHIVED[archived or "hide"], "limit": limit, "order": order}
    try:
        found = runs.page(session, offset=offset, cursor=cursor[:MAX_CURSOR] or None, **filters)
    except BadCursor:  # a stale or edited link: the first page rather than an error
        cursor, found = "", runs.page(session, **filters)
    params = {"status": status, "dataset": dataset, "name": name, "tag": tag, "archived": archived, "order": order,
              "limit": limit if limit != PAGE_SIZE else None}
    sort = {c: query(params, order=next_order(c, order)) for c in SORTABLE}
    names = sorted(set(runs.dataset_names(session)) | {d.name for d in datasets.registered(session)})
    items = found.items
    return render(request, "runs.html", runs=items, groups=group_by_sweep(session, items), total=found.total,
                  places=dispatch.places(session.get_bind(), request.app.state.settings, items),
                  count_limit=COUNT_LIMIT, running_for=running_for(items, utcnow()),
                  params=params, sort=sort, order=order,
                  back=request.url.path + query(params, offset=offset or None, cursor=cursor or None),
                  statuses=list(STATUSES), datasets=names,
                  first=query(params) if (cursor or offset) and found.prev_cursor else None,
                  prev=query(params, cursor=found.prev_cursor) if found.prev_cursor else None,
                  next=query(params, cursor=found.next_cursor) if found.next_cursor else None)


def running_for(items: list, now: datetime) -> dict[int, float]:
    """Seconds each running run of the list has been running (since its current attempt started), by id."""
    return {r.id: max((now - r.started_at).total_seconds(), 0.0) for r in items
            if r.status == RunStatus.running and r.started_at is not None}


def group_by_sweep(session, items: list) -> list[dict]:
    """The page's runs in list order, each sweep's runs gathered under it where its first run appears, with the
    sweep's verdicts: [{"run": r}] or [{"sweep": {...}, "runs": [...]}]."""
    groups, by_sweep = [], {}
    for r in items:
        if r.sweep_id is None:
            groups.append({"run": r})
        elif r.sweep_id in by_sweep:
            by_sweep[r.sweep_id]["runs"].append(r)
        else:
            by_sweep[r.sweep_id] = {"sweep": sweeps.verdicts(session, r.sweep_id), "runs": [r]}
            groups.append(by_sweep[r.sweep_id])
    return groups


def run_page(request: Request, session, run_id: int, message: str | None = None, status_code: int = 200,
             cell: tuple[str, str, int] | None = None):
    """The run page: recipe in words, live progress and epochs, charts, results or the error; with cell (actual,
    predicted, offset), the validation images of that confusion-matrix cell."""
    run = runs.get(session, run_id)
    data_root = request.app.state.settings.data_root
    spec, result, progress = run.spec or {}, run.result or {}, run.progress or {}
    epochs, finds = runs.epochs(session, run_id), runs.lr_finds(session, run_id)
    valley = {f.stage: f.suggestion for f in finds}
    stages = [describe_stage(i, s, valley.get(i)) for i, s in enumerate(spec.get("stages") or [])]
    confusion = result.get("confusion")
    tail = "\n".join((run.traceback or "").rstrip().splitlines()[-TRACEBACK_LINES:])
    data = {"id": run.id, "status": str(run.status), "live": run.status not in FINISHED, "stages": stages,
            "epochs": [serialize_epoch(e) for e in epochs], "lr_finds": [serialize_lr_find(f) for f in finds],
            "best": result.get("best"), "batch": progress.get("batch"),
            "plan": [s.get("epochs") for s in spec.get("stages") or []],  # epochs per stage: "epoch e of E"
            "statuses": {s.name: s.value for s in RunStatus}, "finished_statuses": [s.value for s in FINISHED]}
    attempts = runs.attempts(session, run_id)
    place = dispatch.places(session.get_bind(), request.app.state.settings, [run]).get(run.id)
    access = getattr(request.state, "access", None)
    priorities = priorities_allowed(access, run.launched_by, run.priority) if access else ()
    return render(request, "run.html", status_code, run=run, spec=spec, result=result, progress=progress, place=place,
                  priorities=priorities,
                  attempts=attempts, attempt_ending=attempt_ending,
                  total_seconds=attempts_seconds(attempts, run.finished_at),
                  stages=stages, techniques=describe_techniques(spec) if spec else [], epochs=epochs,
                  finds=finds, confusion=confusion, tail=tail, data=data, message=message,
                  live=data["live"], artifacts=runs.artifacts(session, run_id), duration=run.duration,
                  stage_summaries=result.get("stages") or progress.get("stages") or [],
                  loss_images=error_images.image_links(session, run.dataset, [t["image_id"] for t in
                                                                               result.get("top_losses") or []],
                                                       data_root) if result.get("top_losses") else {},
                  cell=error_images.cell(session, store_for(request.app.state.settings), run_id, *cell, data_root)
                  if cell and confusion else None)


@router.get("/runs/{run_id}")
@needs("read")
def get_run(request: Request, session: SessionDep, run_id: PageId, actual: str | None = Query(None, max_length=200),
            predicted: str | None = Query(None, max_length=200), offset: int = Query(0, ge=0, le=MAX_ID)):
    """One run, live while it trains; ?actual=&predicted= shows the validation images of that confusion cell."""
    cell = (actual, predicted, offset) if actual is not None and predicted is not None else None
    return run_page(request, session, run_id, cell=cell)


@router.post("/runs/{run_id}/cancel")
@needs("member")
def post_run_cancel(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep, run_id: PageId,
                    data: FormData):
    """Cancel a queued run, or ask a running one to stop at its next batch."""
    try:
        status = runs.cancel(session, run_id, orphaned_after=settings.worker_lost_after)
    except RunFinished as exc:
        return run_page(request, session, run_id, f"Nothing to cancel: run {run_id} already {exc.status}.", 409)
    request.app.state.run_cache.invalidate(run_id)  # API readers see the cancel at once
    access.note("cancel", f"run {run_id}")
    request.session["notice"] = ("Run cancelled before it started." if status == RunStatus.cancelled
                                 else "Asked the worker to stop at the next batch.")
    return redirect(f"/runs/{run_id}")


@router.post("/runs/{run_id}/priority")
@needs("member")
def post_run_priority(request: Request, access: AccessDep, session: SessionDep, run_id: PageId,
                      priority: CheckedPriority):
    """Change a run's priority (admins: any; members: lower their own runs'), back to its page."""
    runs.set_priority(session, run_id, priority)
    request.app.state.run_cache.invalidate(run_id)
    access.note(f"priority {priority}", f"run {run_id}")
    request.session["notice"] = f"Priority set to {priority}."
    return redirect(f"/runs/{run_id}")


@router.post("/runs/{run_id}/retry")
@needs("member")
def post_run_retry(request: Request, access: AccessDep, session: SessionDep, publisher: PublisherDep, run_id: PageId,
                   data: FormData):
    """Queue a failed or cancelled run again: from its last checkpoint, or from scratch."""
    scratch = data.get("from") == "scratch"
    try:
        run, note = runs.retry(session, publisher, run_id, from_checkpoint=not scratch)
    except RunActive as exc:
        return run_page(request, session, run_id, str(exc), 409)
    request.app.state.run_cache.invalidate(run_id)
    access.note("retry", f"run {run_id}")
    where = "from scratch (its epoch rows were cleared)" if scratch else (
        f"from stage {run.resume_from['stage'] + 1}, epoch {run.resume_from['epoch'] + 1}" if run.resume_from
        else "from the start (it had no checkpoint)")
    request.session["notice"] = f"Run {run_id} queued again {where}." + (f" Not sent yet: {note}." if note else "")
    return redirect(f"/runs/{run_id}")
