"""Domain functions for workers: record a heartbeat, list them, and fail the runs of workers gone silent."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, select, update
from sqlmodel import Session

from app.core.status import RunStatus
from app.store.models import Run, Worker, utcnow
from app.store.runs import upsert


def record_heartbeat(session: Session, worker_name: str, host: str, pid: int, gpu: str | None = None,
                     gpu_memory: int | None = None, current_run_id: int | None = None) -> None:
    """Record that a worker is alive and what it is running (gpu_memory in bytes)."""
    now = utcnow()
    values = {"name": worker_name, "host": host, "pid": pid, "gpu": gpu, "gpu_memory": gpu_memory,
              "current_run_id": current_run_id, "started_at": now, "last_seen": now}
    upsert(session, Worker, values, keys=("name",), keep=("started_at",))


def reap_lost_workers(session: Session, silent_after: float = 60.0) -> list[int]:
    """Fail running runs whose worker stopped heartbeating silent_after seconds ago; returns their ids."""
    cutoff = utcnow() - timedelta(seconds=silent_after)
    silent = exists().where(Worker.name == Run.worker, Worker.last_seen < cutoff)
    # A worker that died before its first heartbeat has no row; give it the same grace from the claim.
    missing = ~exists().where(Worker.name == Run.worker) & (Run.started_at < cutoff)
    stmt = (update(Run).where(Run.status == RunStatus.running, silent | missing)
            .values(status=RunStatus.failed, error="worker lost", finished_at=utcnow())
            .returning(Run.id).execution_options(synchronize_session=False))
    return sorted(session.exec(stmt).scalars().all())


def list_workers(session: Session) -> list[Worker]:
    """Every worker that ever heartbeat, most recently seen first."""
    return list(session.exec(select(Worker).order_by(Worker.last_seen.desc())).scalars().all())
