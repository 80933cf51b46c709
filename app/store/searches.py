"""Searches in the database: the search row, its trial runs and the search lease."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlmodel import Session

from fitboard.app.core.errors import SearchNotFound
from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.status import SEARCH_ACTIVE, RunStatus, SearchStatus
from fitboard.app.store.models import EpochRow, Lease, Run, Search, utcnow
from fitboard.app.store.recovery import acquire_lease
from fitboard.app.store.runs import create_run, get_or_raise


def store_search(session: Session, name: str, base: dict, space: dict, options: dict) -> Search:
    """Add a search row with its study's name (the caller creates the study and commits)."""
    search = Search(name=name, base=base, space=space, options=options, study_name="pending")
    session.add(search)
    session.flush()
    search.study_name = f"fitboard-search-{search.id}"
    session.flush()
    return search


def get_search(session: Session, search_id: int) -> Search:
    """A search by id, or SearchNotFound."""
    return get_or_raise(session, Search, search_id, SearchNotFound(search_id))


def active_ids(session: Session) -> list[int]:
    """Searches still asking for trials or verifying."""
    query = select(Search.id).where(Search.status.in_(SEARCH_ACTIVE)).order_by(Search.id)
    return list(session.exec(query).scalars().all())


def trial_runs(session: Session, search_id: int) -> list[Run]:
    """The search's trial runs in trial order."""
    stmt = select(Run).where(Run.search_id == search_id).order_by(Run.trial_number, Run.id)
    return list(session.exec(stmt).scalars().all())


def add_trial_run(session: Session, search: Search, number: int, spec: dict, queue: str,
                  error: str | None = None) -> Run:
    """A queued run for trial `number` (the caller commits, then publishes); with error, a recipe the space made
    invalid: stored failed at once, so the trials table shows it."""
    name = f"{search.name} | trial {number}"
    techniques = [] if error else parse_spec(spec).techniques()
    run = create_run(session, {**spec, "name": name}, techniques=techniques, queue=queue, search_id=search.id,
                     trial_number=number, priority=search.options.get("priority", "normal"))
    if error:
        run.status, run.error, run.finished_at = RunStatus.failed.value, error, utcnow()
    session.flush()
    return run


def set_state(session: Session, search_id: int, status: SearchStatus, reason: str | None = None, **values) -> None:
    """Move a search to a new state (finished states get finished_at)."""
    if status not in SEARCH_ACTIVE:
        values["finished_at"] = utcnow()
    stmt = update(Search).where(Search.id == search_id).values(status=status, reason=reason, **values)
    session.exec(stmt.execution_options(synchronize_session=False))


def epochs_trained(session: Session, run_ids: list[int]) -> dict[int, tuple[int, float]]:
    """run id -> (epoch rows, seconds trained)."""
    if not run_ids:
        return {}
    stmt = (select(EpochRow.run_id, func.count(), func.coalesce(func.sum(EpochRow.seconds), 0.0))
            .where(EpochRow.run_id.in_(run_ids)).group_by(EpochRow.run_id))
    return {rid: (n, float(s)) for rid, n, s in session.exec(stmt).all()}


def trial_rows(session: Session, search_id: int) -> list:
    """What the search page shows of each trial run, in trial order, in one query (no run objects): id, trial_number,
    status, error and where a pruned one stopped (its result's "pruned")."""
    stmt = (select(Run.id, Run.trial_number, Run.status, Run.error, Run.result["pruned"].label("pruned"))
            .where(Run.search_id == search_id).order_by(Run.trial_number, Run.id))
    return list(session.exec(stmt).all())


def metric_curves(session: Session, run_ids: list[int], metric: str) -> dict[int, list[float | None]]:
    """run id -> the metric at each epoch, stages run end to end."""
    if not run_ids:
        return {}
    value = EpochRow.valid_loss if metric == "valid_loss" else EpochRow.metrics[metric].as_float()
    stmt = (select(EpochRow.run_id, value).where(EpochRow.run_id.in_(run_ids))
            .order_by(EpochRow.run_id, EpochRow.stage, EpochRow.epoch))
    out: dict[int, list] = {}
    for run_id, v in session.exec(stmt).all():
        out.setdefault(run_id, []).append(v)
    return out


def list_searches(session: Session, limit: int = 100) -> list[Search]:
    """The newest searches."""
    return list(session.exec(select(Search).order_by(Search.id.desc()).limit(limit)).scalars().all())


def take_lease(session: Session, holder: str, ttl: float) -> bool:
    """The searches lease (one driver pass at a time across processes)."""
    return acquire_lease(session, holder, ttl, name="searches")


def release_lease(session: Session, holder: str) -> None:
    """Hand the searches lease back at once, so the next finished trial's driver need not wait out its ttl."""
    stmt = (update(Lease).where(Lease.name == "searches", Lease.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1)))
    session.exec(stmt.execution_options(synchronize_session=False))
