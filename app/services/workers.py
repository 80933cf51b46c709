"""Workers as the API and the pages show them: each with its last heartbeat, how long ago, and its current run."""
from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from fitboard.app.store.models import Run, Worker, utcnow
from fitboard.app.store.workers import list_workers


@dataclass
class WorkerState:
    """A worker, seconds since its last heartbeat, whether that is too long, and the run it holds."""

    worker: Worker
    seconds_ago: float
    stale: bool
    run: Run | None


def states(session: Session, lost_after: float) -> list[WorkerState]:
    """Every worker, most recently seen first; stale once silent longer than lost_after seconds."""
    now, out = utcnow(), []
    for w in list_workers(session):
        ago = max(0.0, (now - w.last_seen).total_seconds())  # hosts' clocks may disagree a little
        run = session.get(Run, w.current_run_id) if w.current_run_id else None
        out.append(WorkerState(w, ago, ago > lost_after, run))
    return out
