"""A run's attempts: each claim opens one (worker, start, where it resumed) and every ending closes it with why."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlmodel import Session

from fitboard.app.core.redact import redact
from fitboard.app.store.models import RunAttempt, utcnow


def start_attempt(session: Session, run_id: int, attempt: int, worker: str, resumed_from: dict | None) -> None:
    """Open attempt number `attempt` for a run a worker just claimed."""
    session.add(RunAttempt(run_id=run_id, attempt=attempt, worker=worker, resumed_from=resumed_from))
    session.flush()


def end_attempt(session: Session, run_id: int, outcome: str, reason: str | None = None) -> None:
    """Close the run's open attempt (there is at most one) with its outcome and why (redacted)."""
    stmt = (update(RunAttempt).where(RunAttempt.run_id == run_id, RunAttempt.ended_at.is_(None))
            .values(ended_at=utcnow(), outcome=outcome, reason=redact(reason) if reason else reason))
    session.exec(stmt.execution_options(synchronize_session=False))


def note_resumed_from(session: Session, run_id: int, position: dict) -> None:
    """Record where the open attempt actually resumed (the worker reads it from the checkpoint file)."""
    stmt = (update(RunAttempt).where(RunAttempt.run_id == run_id, RunAttempt.ended_at.is_(None))
            .values(resumed_from=position))
    session.exec(stmt.execution_options(synchronize_session=False))


def list_attempts(session: Session, run_id: int) -> list[RunAttempt]:
    """A run's attempts, first to last."""
    stmt = select(RunAttempt).where(RunAttempt.run_id == run_id).order_by(RunAttempt.attempt)
    return list(session.exec(stmt).scalars().all())
