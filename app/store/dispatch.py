"""What the dispatcher reads: each worker queue's waiting runs, its live and idle workers, the messages already in the
broker, recent GPU use per person and project, and what the running runs have left. The choosing is
fitboard.app.core.fairshare's; publishing is fitboard.app.services.dispatch's."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlmodel import Session

from fitboard.app.core.fairshare import Spell, Waiting
from fitboard.app.core.status import RunStatus
from fitboard.app.store.models import Lease, Project, Run, RunAttempt, Worker, utcnow
from fitboard.app.store.recovery import acquire_lease
from fitboard.app.store.runs import DEFAULT_QUEUE

DISPATCH_LEASE = "dispatch"
MAX_LINE = 5000  # waiting runs of one queue the policy orders at once (the oldest first past that)
HISTORY = 20  # finished runs whose median length stands for a queued run's


@dataclass(frozen=True)
class Queued:
    """A waiting run and whether its message is already in the broker (sent_at: when, on the policy's clock)."""

    run: Waiting
    published: bool
    sent_at: float | None = None


def seconds(when: datetime) -> float:
    """A stored time as the policy's clock (POSIX seconds)."""
    return when.timestamp()


def _waiting_where(queue: str | None = None) -> tuple:
    where = (Run.status == RunStatus.queued, Run.kind == "queued", Run.cancel_requested.is_(False))
    return where if queue is None else (*where, Run.queue == queue)


def busy_queues(session: Session) -> list[str]:
    """Every queue with a waiting run."""
    stmt = select(Run.queue).where(*_waiting_where()).distinct()
    return sorted(session.exec(stmt).scalars().all())


def waiting(session: Session, queue: str) -> list[Queued]:
    """A queue's waiting runs (at most MAX_LINE, oldest first)."""
    stmt = (select(Run.id, Run.priority, Run.launched_by, Run.project_id, Run.created_at, Run.published_at)
            .where(*_waiting_where(queue)).order_by(Run.id).limit(MAX_LINE))
    return [Queued(Waiting(i, p or "normal", person, project, seconds(created)), published is not None,
                   None if published is None else seconds(published))
            for i, p, person, project, created, published in session.exec(stmt).all()]


def spells(session: Session, since: datetime) -> list[Spell]:
    """Every attempt at a queued run that ran after `since` (open ones too), as GPU use of its person and project."""
    stmt = (select(Run.launched_by, Run.project_id, RunAttempt.started_at, RunAttempt.ended_at)
            .join(Run, Run.id == RunAttempt.run_id)
            .where(Run.kind == "queued", or_(RunAttempt.ended_at.is_(None), RunAttempt.ended_at >= since)))
    return [Spell(person, project, seconds(start), None if end is None else seconds(end))
            for person, project, start, end in session.exec(stmt).all()]


def running_by_project(session: Session) -> dict[int, int]:
    """project id -> its running runs (every queue: a quota counts them all)."""
    stmt = (select(Run.project_id, func.count()).where(Run.status == RunStatus.running, Run.kind == "queued")
            .group_by(Run.project_id))
    return dict(session.exec(stmt).all())


def sent_by_project(session: Session, other_than: str) -> dict[int, int]:
    """project id -> its runs whose message is in the broker of another queue than other_than (each starts soon)."""
    stmt = (select(Run.project_id, func.count()).where(*_waiting_where(), Run.queue != other_than,
                                                       Run.published_at.is_not(None)).group_by(Run.project_id))
    return dict(session.exec(stmt).all())


def project_ids(session: Session, names: dict[str, int]) -> dict[int, int]:
    """Quotas by project name -> by project id (names of no project are left out)."""
    if not names:
        return {}
    rows = session.exec(select(Project.name, Project.id).where(Project.name.in_(list(names)))).all()
    return {pid: names[name] for name, pid in rows}


def _consumes(worker_queue: str | None, queue: str) -> bool:
    return queue in (worker_queue or DEFAULT_QUEUE).split(",")


def fleet(session: Session, queue: str, alive_within: float) -> tuple[list[str], set[str]]:
    """(live workers consuming queue, those of them holding a running run)."""
    cutoff = utcnow() - timedelta(seconds=alive_within)
    rows = session.exec(select(Worker.name, Worker.queue).where(Worker.last_seen >= cutoff)).all()
    live = [name for name, q in rows if _consumes(q, queue)]
    busy = set(session.exec(select(Run.worker).where(Run.status == RunStatus.running, Run.worker.in_(live)))
               .scalars().all()) if live else set()
    return live, busy


def live_worker_queues(session: Session, alive_within: float) -> list[str]:
    """The queue setting of every live worker (comma-separated queues each)."""
    cutoff = utcnow() - timedelta(seconds=alive_within)
    rows = session.exec(select(Worker.queue).where(Worker.last_seen >= cutoff)).scalars().all()
    return [q or DEFAULT_QUEUE for q in rows]


def in_broker(session: Session, queue: str) -> int:
    """Waiting runs of the queue whose message went to the broker (each will start, or be skipped, soon)."""
    stmt = select(func.count()).select_from(Run).where(*_waiting_where(queue), Run.published_at.is_not(None))
    return session.exec(stmt).scalar_one()


def typical_length(session: Session, queue: str) -> float | None:
    """The median length in seconds of the queue's last finished runs; None before any finished."""
    stmt = (select(Run.started_at, Run.finished_at)
            .where(Run.queue == queue, Run.kind == "queued", Run.status == RunStatus.succeeded,
                   Run.started_at.is_not(None), Run.finished_at.is_not(None))
            .order_by(Run.id.desc()).limit(HISTORY))
    lengths = [(end - start).total_seconds() for start, end in session.exec(stmt).all()]
    return statistics.median(lengths) if lengths else None


def running_left(session: Session, queue: str, typical: float | None) -> list[float]:
    """Seconds each running run of the queue has left: its own ETA, else the typical length less its age."""
    stmt = select(Run.started_at, Run.progress).where(Run.queue == queue, Run.status == RunStatus.running,
                                                      Run.kind == "queued")
    now, left = utcnow(), []
    for started, progress in session.exec(stmt).all():
        batch = (progress or {}).get("batch") or {}
        eta = batch.get("run_eta")
        if isinstance(eta, (int, float)):
            left.append(max(float(eta), 0.0))
        elif typical is not None and started is not None:
            left.append(max(typical - (now - started).total_seconds(), 0.0))
    return left


def take_lease(session: Session, holder: str, ttl: float) -> bool:
    """The dispatch lease: one dispatcher at a time, so two never fill the same free slots."""
    return acquire_lease(session, holder, ttl, name=DISPATCH_LEASE)


def release_lease(session: Session, holder: str) -> None:
    """Hand the dispatch lease back at once."""
    stmt = (update(Lease).where(Lease.name == DISPATCH_LEASE, Lease.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1)))
    session.exec(stmt.execution_options(synchronize_session=False))
