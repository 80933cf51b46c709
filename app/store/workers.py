"""Domain functions for workers: record a heartbeat and a doctor report, list them, find the silent and the idle."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from fitboard.app.core.redact import redact_tree
from fitboard.app.store.models import Worker, utcnow
from fitboard.app.store.runs import upsert


def record_heartbeat(session: Session, worker_name: str, host: str, pid: int, gpu: str | None = None,
                     gpu_memory: int | None = None, current_run_id: int | None = None,
                     queue: str | None = None) -> None:
    """Record that a worker is alive, the queue(s) it consumes and what it is running (gpu_memory in bytes)."""
    now = utcnow()
    values = {"name": worker_name, "host": host, "pid": pid, "gpu": gpu, "gpu_memory": gpu_memory,
              "current_run_id": current_run_id, "started_at": now, "last_seen": now, "queue": queue}
    upsert(session, Worker, values, keys=("name",), keep=("started_at",))


def record_doctor(session: Session, worker_name: str, report: dict) -> bool:
    """Keep a worker's latest `fitboard doctor` report; False while the worker has no row yet (no heartbeat)."""
    stmt = update(Worker).where(Worker.name == worker_name).values(doctor=redact_tree(report))
    return session.exec(stmt.execution_options(synchronize_session=False)).rowcount == 1


def list_workers(session: Session) -> list[Worker]:
    """Every worker that ever heartbeat, most recently seen first."""
    return list(session.exec(select(Worker).order_by(Worker.last_seen.desc())).scalars().all())


def any_idle_worker(session: Session, alive_within: float) -> bool:
    """Whether some worker heartbeat within alive_within seconds and holds no run."""
    cutoff = utcnow() - timedelta(seconds=alive_within)
    stmt = select(Worker.name).where(Worker.last_seen >= cutoff, Worker.current_run_id.is_(None)).limit(1)
    return session.exec(stmt).first() is not None
