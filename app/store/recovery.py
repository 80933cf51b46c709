"""Recovery in the database: publish marks, the reconciler's lease and work list, requeueing interrupted runs,
repairing a worker's own runs, checkpoints and manual retry.

The database is the truth and the broker carries hints: a run is committed, then dispatched (published when a
worker is free for it), and published_at says that it was; anything that loses a message (a broker restart, a
failed publish, a killed worker) leaves a queued run that the reconciler sends again. A claim is one conditional
UPDATE, so a duplicate message is harmless.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from fitboard.app.core.errors import Conflict, RunActive
from fitboard.app.core.status import LIVE, RunStatus
from fitboard.app.store.attempts import end_attempt, list_attempts
from fitboard.app.store.models import Artifact, EpochRow, Lease, LRFind, Run, utcnow
from fitboard.app.store.runs import fail_run, get_run, mark_cancelled, silent_since
from fitboard.app.store.workers import any_idle_worker

RECONCILER_LEASE = "reconciler"


def mark_published(session: Session, run_ids: list[int], republished: bool = False) -> None:
    """Record that these queued runs' messages went to the broker now (counting re-sends)."""
    if not run_ids:
        return
    values = {"published_at": utcnow()}
    if republished:
        values["republish_count"] = Run.republish_count + 1
    # Whatever their status now: a worker may claim a run between the send and this write, and its re-send still
    # happened (a status filter here lost the count of exactly those).
    stmt = update(Run).where(Run.id.in_(run_ids)).values(**values)
    session.exec(stmt.execution_options(synchronize_session=False))


def due_for_publish(session: Session, republish_after: float, alive_within: float,
                    limit: int = 256) -> list[tuple[int, str]]:
    """(id, queue) of queued runs whose message must go again: published republish_after seconds ago while some
    live worker sits idle (so the message, not a busy fleet, is what is missing). Runs never published wait for the
    dispatcher (fitboard.app.services.dispatch), which sends them as workers free up."""
    if not any_idle_worker(session, alive_within):
        return []
    stale = Run.published_at < utcnow() - timedelta(seconds=republish_after)
    stmt = (select(Run.id, Run.queue).where(Run.status == RunStatus.queued, Run.cancel_requested.is_(False), stale)
            .order_by(Run.id).limit(limit))
    return [(run_id, queue) for run_id, queue in session.exec(stmt).all()]


def acquire_lease(session: Session, holder: str, ttl: float, name: str = RECONCILER_LEASE) -> bool:
    """Take or renew a named lease for ttl seconds; False while another holder's lease is still running."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    renew = (update(Lease).where(Lease.name == name, or_(Lease.expires_at < now, Lease.holder == holder))
             .values(holder=holder, expires_at=expires).execution_options(synchronize_session=False))
    if session.exec(renew).rowcount == 1:
        return True
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Lease).values(name=name, holder=holder, expires_at=expires).on_conflict_do_nothing()
    return session.exec(stmt).rowcount == 1


def next_position(spec: dict, checkpoint: dict | None) -> dict | None:
    """Where training resumes after a checkpoint: the next epoch of its stage, or the next stage's first epoch
    (one past the last stage means only the evaluation is left); None without a checkpoint."""
    if not checkpoint:
        return None
    stage, epoch = checkpoint["stage"], checkpoint["epoch"]
    if epoch + 1 < spec["stages"][stage]["epochs"]:
        return {"stage": stage, "epoch": epoch + 1}
    return {"stage": stage + 1, "epoch": 0}


def record_checkpoint(session: Session, run_id: int, position: dict) -> None:
    """Remember the last epoch whose checkpoint is fully written."""
    stmt = update(Run).where(Run.id == run_id).values(checkpoint=position)
    session.exec(stmt.execution_options(synchronize_session=False))


def _attempt_limit(run: Run) -> int:
    """How many attempts the run may use in all (a manual retry raises it)."""
    return run.attempt_limit or int((run.spec or {}).get("max_attempts", 3))


def _history(session: Session, run: Run, reason: str) -> str:
    """Every attempt's end in one line, the current one last."""
    ends = [f"attempt {a.attempt}: {a.reason}" for a in list_attempts(session, run.id) if a.ended_at is not None]
    return "; ".join([*ends, f"attempt {run.attempt}: {reason}"])


def requeue_run(session: Session, run_id: int, reason: str, worker: str | None = None) -> str:
    """Send an interrupted running run back to the queue to resume from its last checkpoint, or fail it (with every
    attempt's reason) once it used its attempts, or cancel it when that was asked; returns the status it got.
    With worker: only the attempt of that worker (another may hold the run by now)."""
    run = get_run(session, run_id)
    if run.status != RunStatus.running or (worker is not None and run.worker != worker):
        return run.status
    if run.cancel_requested:
        return mark_cancelled(session, run_id).status
    if run.attempt >= _attempt_limit(run):
        error = f"gave up after {run.attempt} attempts: {_history(session, run, reason)}"
        return fail_run(session, run_id, error).status
    stmt = (update(Run).where(Run.id == run_id, Run.status == RunStatus.running, Run.worker == run.worker)
            .values(status=RunStatus.queued, resume_from=next_position(run.spec, run.checkpoint), published_at=None)
            .execution_options(synchronize_session=False))
    if session.exec(stmt).rowcount != 1:
        return get_run(session, run_id).status
    end_attempt(session, run_id, "requeued", reason)
    return RunStatus.queued.value


def reap_lost_workers(session: Session, silent_after: float) -> dict[int, str]:
    """Requeue (or fail) running runs whose worker stopped heartbeating silent_after seconds ago; id -> new status."""
    # A tracked run has no worker and no heartbeat (fitboard.app.store.tracked fails it after its own silence).
    stmt = select(Run.id, Run.worker).where(Run.status == RunStatus.running, Run.kind == "queued",
                                            silent_since(silent_after))
    return {run_id: requeue_run(session, run_id, f"worker {worker} lost (no heartbeat for {silent_after:.0f} s)",
                                worker=worker)
            for run_id, worker in session.exec(stmt.order_by(Run.id)).all()}


def repair_worker_runs(session: Session, worker: str, current_run_id: int | None,
                       claimed_before: datetime | None = None) -> dict[int, str]:
    """Requeue runs marked running on this worker that it is not running (its task ended without a final state).
    claimed_before: when the caller read current_run_id; a run claimed since is the one being started now (its task
    sets the current run just before the claim, which a repair that read it a moment earlier did not see)."""
    stmt = select(Run.id).where(Run.status == RunStatus.running, Run.worker == worker)
    if claimed_before is not None:
        stmt = stmt.where(Run.started_at < claimed_before)
    if current_run_id is not None:
        stmt = stmt.where(Run.id != current_run_id)
    return {run_id: requeue_run(session, run_id, f"worker {worker} was no longer running it", worker=worker)
            for run_id in session.exec(stmt.order_by(Run.id)).scalars().all()}


def retry_run(session: Session, run_id: int, from_checkpoint: bool, max_attempts: int | None = None) -> Run:
    """Queue a failed or cancelled run again under its own id: from its last checkpoint (rows kept) or from scratch
    (rows, curves and files forgotten). RunActive for a queued or running run; it is published after the commit."""
    run = get_run(session, run_id)
    if run.kind == "tracked":
        raise Conflict(f"run {run_id} was trained outside fitboard (tracked): there is no recipe to queue again; "
                       "clone it to train a queued run from what could be read")
    if run.status in LIVE or run.status == RunStatus.succeeded:
        raise RunActive(run_id, run.status)
    resume = next_position(run.spec, run.checkpoint) if from_checkpoint else None
    if not from_checkpoint:
        for table in (EpochRow, LRFind, Artifact):
            session.exec(delete(table).where(table.run_id == run_id))
    budget = max_attempts or int((run.spec or {}).get("max_attempts", 3))
    stmt = (update(Run).where(Run.id == run_id, Run.status == run.status)
            .values(status=RunStatus.queued, resume_from=resume, published_at=None, cancel_requested=False,
                    finished_at=None, error=None, traceback=None, result=None, best_accuracy=None,
                    tta_accuracy=None, attempt_limit=run.attempt + budget,
                    **({} if from_checkpoint else {"checkpoint": None, "progress": None}))
            .execution_options(synchronize_session=False))
    if session.exec(stmt).rowcount != 1:
        raise RunActive(run_id, get_run(session, run_id).status)  # another retry won the race
    return get_run(session, run_id)
