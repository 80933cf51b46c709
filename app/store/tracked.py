"""Tracked runs in the database: open one, fold a batch of rows into it, finish it, and fail the ones gone silent.

A tracked run is trained outside fitboard: it has no broker message and no worker, so the reaper and the
reconciler leave it alone (they select queued runs and runs whose `kind` is queued). What keeps it honest is
last_contact_at: a tracked run still running with no write for `lost_after` seconds is failed, saying why.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from fitboard.app.core.errors import Conflict, RecipeError, RunFinished
from fitboard.app.core.events import ResultEvent
from fitboard.app.core.jsonsafe import finite_float
from fitboard.app.core.redact import redact
from fitboard.app.core.status import RunStatus
from fitboard.app.core.tracked import (
    MAX_TRACKED_ROWS,
    TrackedBatch,
    TrackedFacts,
    TrackedFinish,
    TrackedOpen,
    recipe_from,
    techniques_of,
)
from fitboard.app.store.models import Artifact, EpochRow, Run, utcnow
from fitboard.app.store.runs import get_run, record_epochs, record_lr_find, upsert

TRACKED = "tracked"


class NotTracked(Conflict):
    """Rows over the tracked API for a run a worker trains."""

    def __init__(self, run_id: int):
        super().__init__(f"run {run_id} is trained by a worker; only a tracked run takes rows over this API")


def open_tracked(session: Session, body: TrackedOpen) -> Run:
    """Add a tracked run, running from now (not committed)."""
    spec = recipe_from(body.name, body.dataset, body.facts, [])
    now = utcnow()
    run = Run(name=body.name, dataset=body.dataset, spec=spec, techniques=techniques_of(spec), kind=TRACKED,
              status=RunStatus.running.value, started_at=now, last_contact_at=now, attempt=1,
              published_at=now, progress={"stages": [], "notes": []})
    session.add(run)
    session.flush()
    return run


def running_tracked(session: Session, run_id: int) -> Run:
    """The run, if it is tracked and still running; NotTracked or RunFinished (409) otherwise."""
    run = get_run(session, run_id)
    if run.kind != TRACKED:
        raise NotTracked(run_id)
    if run.status != RunStatus.running:
        raise RunFinished(run_id, run.status)
    return run


def _check_row_count(session: Session, run_id: int, batch: TrackedBatch) -> None:
    """RecipeError (422) when the batch would give the run more than MAX_TRACKED_ROWS epoch rows."""
    keys = {(row.stage, row.epoch) for row in batch.epochs}
    if not keys:
        return
    kept = set(session.exec(select(EpochRow.stage, EpochRow.epoch).where(EpochRow.run_id == run_id)).all())
    total = len(kept | keys)
    if total > MAX_TRACKED_ROWS:
        raise RecipeError.one("epochs", f"a tracked run keeps at most {MAX_TRACKED_ROWS} epoch rows; this batch "
                                        f"would make it {total}")


def record_batch(session: Session, run_id: int, batch: TrackedBatch) -> Run:
    """Fold stages, epoch rows, curves and progress into the run (idempotent: rows keyed (stage, epoch))."""
    run = running_tracked(session, run_id)
    _check_row_count(session, run_id, batch)
    values: dict = {"last_contact_at": utcnow()}
    progress = dict(run.progress or {"stages": [], "notes": []})
    if batch.stages:
        stages = {s["stage"]: s for s in progress.get("plans") or []}
        stages.update({s.stage: s.model_dump(mode="json") for s in batch.stages})
        plans = progress["plans"] = [stages[k] for k in sorted(stages)]
        spec = recipe_from(run.name, run.dataset, _facts(run.spec), plans)
        values.update(spec=spec, techniques=techniques_of(spec))
        progress["stages"] = [{"stage": p["stage"], "epochs": p["epochs"], "size": p.get("size"), "bs": p.get("bs"),
                               "frozen": p.get("freeze"), "lr": p.get("lr"), "mixup": p.get("mixup")} for p in plans]
    if batch.progress is not None:
        progress["batch"] = batch.progress.model_dump(mode="json", exclude={"event"})
    values["progress"] = progress
    record_epochs(session, run_id, batch.epochs)
    for find in batch.lr_finds:
        record_lr_find(session, run_id, find)
    session.exec(update(Run).where(Run.id == run_id).values(**values).execution_options(synchronize_session=False))
    return get_run(session, run_id)


def _facts(spec: dict) -> TrackedFacts:
    """The facts a tracked run was opened with, read back from its spec."""
    tracked = {k: v for k, v in (spec.get("tracked") or {}).items() if k in TrackedFacts.model_fields}
    base = {k: spec[k] for k in ("arch", "pretrained", "normalize", "label_smoothing", "precision", "seed")
            if k in spec}
    return TrackedFacts.model_validate({**tracked, **base})


def finish_tracked(session: Session, run_id: int, body: TrackedFinish) -> Run:
    """End a tracked run with its status, final metrics and what the user asked to keep; RunFinished if it ended."""
    running_tracked(session, run_id)
    result = ResultEvent(metrics=body.metrics, best=body.best, confusion=body.confusion, top_losses=body.top_losses,
                         seconds=body.seconds)
    stmt = (update(Run).where(Run.id == run_id, Run.status == RunStatus.running)
            .values(status=body.status, finished_at=utcnow(), last_contact_at=utcnow(), result=result.stored(),
                    best_accuracy=finite_float(body.metrics.accuracy), error=redact(body.error) if body.error else None,
                    cancel_requested=body.status == RunStatus.cancelled,
                    progress={k: v for k, v in (get_run(session, run_id).progress or {}).items() if k != "batch"})
            .execution_options(synchronize_session=False))
    if session.exec(stmt).rowcount != 1:
        raise RunFinished(run_id, get_run(session, run_id).status)
    return get_run(session, run_id)


def record_upload(session: Session, run_id: int, kind: str, size: int) -> None:
    """Note a file the notebook uploaded (kept in the artifact store, never loaded by fitboard); only while the
    run is running (RunFinished, 409, after its finish)."""
    running_tracked(session, run_id)
    upsert(session, Artifact, {"run_id": run_id, "kind": kind, "size": size}, keys=("run_id", "kind"))


def fail_silent_tracked(session: Session, lost_after: float) -> list[int]:
    """Fail tracked runs still running with no write for lost_after seconds (the notebook died, or its kernel was
    restarted before the callback could finish the run); the ids failed."""
    cutoff = utcnow() - timedelta(seconds=lost_after)
    ids = list(session.exec(select(Run.id).where(Run.kind == TRACKED, Run.status == RunStatus.running,
                                                 Run.last_contact_at < cutoff)).scalars())
    if ids:
        error = (f"tracked run lost: no word from the notebook for {lost_after:.0f} s "
                 "(FITBOARD_TRACKED_LOST_AFTER); its rows so far are kept")
        session.exec(update(Run).where(Run.id.in_(ids), Run.status == RunStatus.running)
                     .values(status=RunStatus.failed, finished_at=utcnow(), error=error)
                     .execution_options(synchronize_session=False))
    return ids
