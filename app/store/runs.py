"""Domain functions for runs: create, claim, record, finish, cancel and list.

Each takes the session first and leaves the commit to the caller (session_scope), so a route or task
can combine several steps in one transaction. State changes are single conditional UPDATEs, so two
processes racing on one run (a redelivered message, a cancel during a claim) cannot both win.
"""
from __future__ import annotations

import functools
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from fitboard.app.core.errors import RunFinished, RunLive, RunNotFound
from fitboard.app.core.events import EpochEvent, LRFindEvent, ResultEvent
from fitboard.app.core.jsonsafe import finite_float
from fitboard.app.core.redact import redact
from fitboard.app.core.run_meta import tags_column
from fitboard.app.core.status import FINISHED, LIVE, RunStatus
from fitboard.app.store.attempts import end_attempt, start_attempt
from fitboard.app.store.db import NOTIFY, json_dumps, notify_sent
from fitboard.app.store.models import Artifact, EpochRow, LRFind, Run, RunAttempt, RunTag, Worker, utcnow
from fitboard.app.store.ownership import scoped_project
from fitboard.app.store.run_list import RunFilter, RunsPage, page_runs

DEFAULT_QUEUE = "fitboard"  # the broker queue workers consume unless told otherwise


class RunNotRunning(RuntimeError):
    """A worker reported a result for a run it does not hold (still queued)."""


@functools.lru_cache(maxsize=64)
def _upsert_statement(dialect: str, table: sa.Table, columns: tuple[str, ...], keys: tuple[str, ...],
                      keep: tuple[str, ...]):
    """INSERT ... ON CONFLICT (keys) DO UPDATE of these columns, with a bound parameter per column: built once per
    shape (building `excluded` costs more than the write itself at an epoch a second)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table).values({c: sa.bindparam(c) for c in columns})
    changed = {c: stmt.excluded[c] for c in columns if c not in keys and c not in keep}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=changed)


def upsert(session: Session, model, values: dict, keys: tuple[str, ...], keep: tuple[str, ...] = ()) -> None:
    """INSERT values, or UPDATE the row with the same keys (all columns except keys and keep)."""
    conn = session.connection()  # a Core statement: no ORM state to set up for a row nothing reads back
    conn.execute(_upsert_statement(conn.dialect.name, model.__table__, tuple(values), keys, keep), values)


def get_or_raise(session: Session, model, key, missing: Exception):
    """The row of model with this primary key; raises missing (a NotFound naming it) when there is none."""
    row = session.get(model, key)
    if row is None:
        raise missing
    return row


def _update(session: Session, run_id: int, *where, **values) -> bool:
    """UPDATE one run if it matches where; True when it did."""
    stmt = update(Run).where(Run.id == run_id, *where).values(**values)
    return session.exec(stmt.execution_options(synchronize_session=False)).rowcount == 1


def silent_since(silent_after: float):
    """SQL: true for a run whose worker has not heartbeat for silent_after seconds (or never did, since its claim)."""
    cutoff = utcnow() - timedelta(seconds=silent_after)
    silent = exists().where(Worker.name == Run.worker, Worker.last_seen < cutoff)
    # A worker that died before its first heartbeat has no row; give it the same grace from the claim.
    missing = ~exists().where(Worker.name == Run.worker) & (Run.started_at < cutoff)
    return silent | missing


_STATUS = select(Run.status).where(Run.id == sa.bindparam("run_id"))


def _status(session: Session, run_id: int) -> str:
    """The run's status (one column, read on the session's connection: no ORM work), or RunNotFound; a session
    scoped to a project sees only its runs."""
    # The connection skips the ORM's project criteria: without this, a bulk delete of another project's ids (taken
    # from the form, past the access check) answered "run 3 is queued" where an unknown id is "not found".
    project = scoped_project(session)
    stmt = _STATUS if project is None else _STATUS.where(Run.project_id == project)
    status = session.connection().execute(stmt, {"run_id": run_id}).scalar_one_or_none()
    if status is None:
        raise RunNotFound(run_id)
    return status


def get_run(session: Session, run_id: int) -> Run:
    """The run with this id, freshly read; RunNotFound if none."""
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:
        raise RunNotFound(run_id)
    return run


def create_run(session: Session, spec: dict, name: str | None = None, dataset: str | None = None,
               techniques: list[str] | None = None, queue: str = DEFAULT_QUEUE, **fields) -> Run:
    """Add a queued run for spec (name and dataset default to the spec's); enqueue it only after the commit. fields
    (sweep_id, search_id, ...) are set before the flush, so a sweep's or search's run inherits its project."""
    if dataset is None:
        ds = spec["dataset"]
        dataset = ds if isinstance(ds, str) else ds["path"]
    run = Run(name=name or spec["name"], dataset=dataset, spec=spec, techniques=list(techniques or []), queue=queue,
              **fields)
    session.add(run)
    session.flush()  # assigns run.id
    return run


def claim_run(session: Session, run_id: int, worker: str) -> Run | None:
    """Move a queued, uncancelled run to running for worker and open its attempt; None when another claim (or a
    cancel) won."""
    won = _update(session, run_id, Run.status == RunStatus.queued, Run.cancel_requested.is_(False),
                  status=RunStatus.running, started_at=utcnow(), worker=worker, attempt=Run.attempt + 1)
    if not won:
        return None
    run = get_run(session, run_id)
    start_attempt(session, run_id, run.attempt, worker, run.resume_from)
    return run


ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"  # this transaction's commit does not wait for the WAL


def telemetry_commit(session: Session) -> None:
    """PostgreSQL: this transaction's commit does not wait for its WAL to reach the disk (an fsync per epoch row is
    most of a 4 ms write). Safe for rows a resume writes again: the WAL is replayed in order, so a crash that loses
    this commit loses every later one too (the checkpoint that would skip the row included), and the resumed
    attempt trains and writes the row again. SQLite in WAL mode with synchronous=NORMAL already works this way."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(ASYNC_COMMIT)


_EPOCH_KEYS, _EPOCH_KEPT = ("run_id", "stage", "epoch"), ("created_at",)


def _pg_epoch_write() -> str:
    """PostgreSQL: an epoch row's whole write as one round trip (the pool's ping, BEGIN and COMMIT aside): the
    telemetry commit, the NOTIFY that wakes the event streams, and the upsert, which stores nothing when the run
    does not exist (its rowcount says which). Every worker sends it every epoch: seven round trips took 1.2-1.4 ms."""
    table = EpochRow.__table__
    names = [c.name for c in table.c]
    values = ", ".join(f"%({n})s::json" if n == "metrics" else f"%({n})s" for n in names)
    changed = ", ".join(f"{n} = excluded.{n}" for n in names if n not in _EPOCH_KEYS + _EPOCH_KEPT)
    return (f"{ASYNC_COMMIT}; {NOTIFY}; "
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {values} "
            f"WHERE EXISTS (SELECT 1 FROM {Run.__table__.name} WHERE id = %(run_id)s) "
            f"ON CONFLICT ({', '.join(_EPOCH_KEYS)}) DO UPDATE SET {changed}")


_PG_EPOCH_WRITE = _pg_epoch_write()


def record_epoch(session: Session, run_id: int, row: EpochEvent) -> None:
    """Store one epoch row; a repeat of the same (stage, epoch) overwrites it, so redelivery never duplicates."""
    values = {"run_id": run_id, "stage": row.stage, "epoch": row.epoch, "train_loss": finite_float(row.train_loss),
              "valid_loss": finite_float(row.valid_loss), "metrics": dict(row.metrics),
              "seconds": finite_float(row.seconds),
              "created_at": utcnow()}
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        stored = conn.exec_driver_sql(_PG_EPOCH_WRITE, {**values, "metrics": json_dumps(values["metrics"]),
                                                        "created_at": values["created_at"].replace(tzinfo=None)})
        notify_sent(conn)
        if stored.rowcount != 1:
            raise RunNotFound(run_id)
        return
    _status(session, run_id)
    upsert(session, EpochRow, values, keys=_EPOCH_KEYS, keep=_EPOCH_KEPT)


def record_epochs(session: Session, run_id: int, rows: list[EpochEvent]) -> None:
    """Store a batch of epoch rows in one statement (a tracked run's batch holds up to a thousand); a repeated
    (stage, epoch) keeps the last row, and one stored before is overwritten, as record_epoch does."""
    if not rows:
        return
    _status(session, run_id)
    now = utcnow()
    by_key = {(r.stage, r.epoch): {"run_id": run_id, "stage": r.stage, "epoch": r.epoch,
                                   "train_loss": finite_float(r.train_loss), "valid_loss": finite_float(r.valid_loss),
                                   "metrics": dict(r.metrics), "seconds": finite_float(r.seconds), "created_at": now}
              for r in rows}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(EpochRow).values(list(by_key.values()))
    changed = {k: stmt.excluded[k] for k in ("train_loss", "valid_loss", "metrics", "seconds")}
    session.exec(stmt.on_conflict_do_update(index_elements=["run_id", "stage", "epoch"], set_=changed))


def record_progress(session: Session, run_id: int, progress: dict) -> None:
    """Replace the run's live batch progress (one UPDATE, no read); its notes redacted (a fallback note may quote
    a URL)."""
    if progress.get("notes"):
        progress = {**progress, "notes": [redact(note) for note in progress["notes"]]}
    telemetry_commit(session)
    if not _update(session, run_id, progress=progress):
        raise RunNotFound(run_id)


def record_lr_find(session: Session, run_id: int, find: LRFindEvent) -> None:
    """Store a stage's LR-finder curve and suggestion; a repeat overwrites it."""
    _status(session, run_id)
    values = {"run_id": run_id, "stage": find.stage, "suggestion": finite_float(find.suggestion),
              "lrs": [finite_float(x) for x in find.lrs], "losses": [finite_float(x) for x in find.losses]}
    upsert(session, LRFind, values, keys=("run_id", "stage"))


def _held_by(worker: str | None) -> tuple:
    """SQL: the run is held by this worker (no condition when worker is None)."""
    return () if worker is None else (Run.worker == worker,)


def finish_run(session: Session, run_id: int, result: ResultEvent, worker: str | None = None,
               artifacts: dict[str, int] | None = None) -> Run:
    """Mark a running run succeeded with its result, headline metrics and the artifacts already in the store ({kind:
    size}); with worker, only while that worker still holds it (a worker reaped by mistake must not finish its
    successor's attempt)."""
    done = _update(session, run_id, Run.status == RunStatus.running, *_held_by(worker), status=RunStatus.succeeded,
                   finished_at=utcnow(), result=result.stored(), progress=None,
                   best_accuracy=finite_float(result.metrics.accuracy),
                   tta_accuracy=finite_float(result.tta.accuracy if result.tta else None))
    if not done:
        status = _status(session, run_id)
        if status in FINISHED:
            raise RunFinished(run_id, status)
        raise RunNotRunning(f"run {run_id} is {status} and not held by {worker or 'any worker'}; it cannot succeed")
    end_attempt(session, run_id, RunStatus.succeeded)
    for kind, size in (artifacts or {}).items():
        upsert(session, Artifact, {"run_id": run_id, "kind": kind, "size": size}, keys=("run_id", "kind"))
    return get_run(session, run_id)


def fail_run(session: Session, run_id: int, error: str, traceback: str | None = None, worker: str | None = None) -> Run:
    """Mark a queued or running run failed with its error (with worker: only while that worker holds it); a
    finished run is returned unchanged."""
    # No raise on a finished run: error handlers and the reaper call this and must not fail themselves.
    # Redacted here, where every failure is written: an error may quote a URL with credentials (a weights mirror).
    error, traceback = redact(error), (redact(traceback) if traceback else traceback)
    if _update(session, run_id, Run.status.in_(LIVE), *_held_by(worker), status=RunStatus.failed, finished_at=utcnow(),
               error=error, traceback=traceback):
        end_attempt(session, run_id, RunStatus.failed, error)
    return get_run(session, run_id)


def mark_pruned(session: Session, run_id: int, worker: str, where: dict) -> str:
    """Mark a running run pruned (its search's pruner stopped it at `where`: stage, epoch, step, value) while this
    worker holds it; returns the status it has afterwards."""
    if _update(session, run_id, Run.status == RunStatus.running, *_held_by(worker), status=RunStatus.pruned,
               finished_at=utcnow(), progress=None, result={"pruned": where}):
        end_attempt(session, run_id, RunStatus.pruned, f"pruned after {where['step']} epochs")
        return RunStatus.pruned.value
    return _status(session, run_id)


def mark_cancelled(session: Session, run_id: int) -> Run:
    """Mark a queued or running run cancelled (the worker stopped it); a finished run is returned unchanged."""
    if _update(session, run_id, Run.status.in_(LIVE), status=RunStatus.cancelled, finished_at=utcnow(),
               cancel_requested=True):
        end_attempt(session, run_id, RunStatus.cancelled, "cancelled")
    return get_run(session, run_id)


def request_cancel(session: Session, run_id: int, orphaned_after: float | None = None) -> str:
    """Cancel a queued run now or ask a running one to stop; returns the status; RunFinished if it ended.

    A running run whose worker has been silent for orphaned_after seconds (or never heartbeat) is cancelled at once:
    no worker is left to notice the request."""
    if _update(session, run_id, Run.status == RunStatus.queued, status=RunStatus.cancelled,
               cancel_requested=True, finished_at=utcnow()):
        return RunStatus.cancelled.value
    if orphaned_after is not None and _update(session, run_id, Run.status == RunStatus.running,
                                              silent_since(orphaned_after), status=RunStatus.cancelled,
                                              cancel_requested=True, finished_at=utcnow()):
        end_attempt(session, run_id, RunStatus.cancelled, "cancelled while no live worker held it")
        return RunStatus.cancelled.value
    if _update(session, run_id, Run.status == RunStatus.running, cancel_requested=True):
        return RunStatus.running.value  # the worker's callback notices and stops at the next batch
    raise RunFinished(run_id, _status(session, run_id))


def should_stop(session: Session, run_id: int, worker: str) -> bool:
    """Whether a worker training this run must stop: someone asked it to, or it is no longer this worker's (the
    reaper gave it to another after a silence), so two workers never train one run."""
    row = session.exec(select(Run.cancel_requested, Run.status, Run.worker).where(Run.id == run_id)).first()
    if row is None:
        raise RunNotFound(run_id)
    cancel, status, holder = row
    return bool(cancel) or status != RunStatus.running or holder != worker


def is_cancel_requested(session: Session, run_id: int) -> bool:
    """Whether someone asked this run to stop (one column, cheap enough to poll from a training loop)."""
    flag = session.exec(select(Run.cancel_requested).where(Run.id == run_id)).scalar_one_or_none()
    if flag is None:
        raise RunNotFound(run_id)
    return bool(flag)


def update_run(session: Session, run_id: int, changes: dict) -> Run:
    """Rename a run, replace its notes or tags, archive or unarchive it, change its priority (any status); the run
    afterwards."""
    values = {k: v for k, v in changes.items() if k in ("name", "notes", "archived", "priority")}
    if "tags" in changes:
        values["tags"] = tags_column(changes["tags"])
    if values and not _update(session, run_id, **values):
        raise RunNotFound(run_id)
    if "tags" in changes:  # the indexed copy the list's tag filter reads, in the same transaction
        session.exec(delete(RunTag).where(RunTag.run_id == run_id).execution_options(synchronize_session=False))
        project, archived = session.exec(select(Run.project_id, Run.archived).where(Run.id == run_id)).one()
        session.add_all([RunTag(run_id=run_id, tag=t, project_id=project, archived=archived)
                         for t in dict.fromkeys(changes["tags"])])
        session.flush()
    elif "archived" in values:  # the tags' copy of the flag (their index is ordered by it)
        session.exec(update(RunTag).where(RunTag.run_id == run_id).values(archived=values["archived"])
                     .execution_options(synchronize_session=False))
    return get_run(session, run_id)


def delete_run(session: Session, run_id: int) -> None:
    """Delete a finished run with its epoch rows, LR finds, attempts and artifact rows (its files are the caller's);
    RunLive for a queued or running run. A sweep's statistics simply no longer see it."""
    status = _status(session, run_id)
    if status in LIVE:
        raise RunLive(run_id, status)
    for model in (EpochRow, LRFind, Artifact, RunAttempt, RunTag):  # the foreign keys cascade too; explicit here
        session.exec(delete(model).where(model.run_id == run_id).execution_options(synchronize_session=False))
    session.exec(update(Worker).where(Worker.current_run_id == run_id).values(current_run_id=None)
                 .execution_options(synchronize_session=False))
    # Only while still finished: a retry racing this delete makes it fail whole (the caller rolls back).
    gone = session.exec(delete(Run).where(Run.id == run_id, Run.status.in_(FINISHED))
                        .execution_options(synchronize_session=False)).rowcount
    if gone != 1:
        raise RunLive(run_id, _status(session, run_id))


def runs_page(session: Session, status: str | list[str] | None = None, dataset: str | None = None,
              name_contains: str | None = None, limit: int = 50, offset: int = 0,
              order: str = "-created_at", tag: str | None = None, archived: bool | None = None,
              sweep_id: int | None = None, search_id: int | None = None, cursor: str | None = None,
              summary: bool = False) -> RunsPage:
    """A page of runs matching the filters with its count and cursors (see run_list.page_runs); order is a column,
    "-" for descending. archived: None lists all, False hides archived runs, True lists only them. summary: the runs
    without their recipe, result, progress and traceback."""
    statuses = () if status is None else tuple(dict.fromkeys([status] if isinstance(status, str) else status))
    f = RunFilter(status=tuple(str(s) for s in statuses), dataset=dataset, name_contains=name_contains or None,
                  tag=tag or None, archived=archived, sweep_id=sweep_id, search_id=search_id,
                  projects=() if scoped_project(session) is None else (scoped_project(session),))
    return page_runs(session, f, order=order, limit=limit, offset=offset, cursor=cursor, summary=summary)


def list_runs(session: Session, **filters) -> tuple[list[Run], int | None]:
    """A page of runs matching the filters (see runs_page) and how many match (None: more than COUNT_LIMIT)."""
    page = runs_page(session, **filters)
    return page.items, page.total


# One index probe per distinct name (a "loose index scan"): SELECT DISTINCT would read every run's entry, which
# PostgreSQL does (100 ms at a million runs) where SQLite may skip.
_DATASETS = """WITH RECURSIVE d(name) AS (
    SELECT min(dataset) FROM run WHERE {where}
    UNION ALL
    SELECT (SELECT min(dataset) FROM run WHERE {where} AND dataset > d.name) FROM d WHERE d.name IS NOT NULL)
SELECT name FROM d WHERE name IS NOT NULL"""


def dataset_names(session: Session) -> list[str]:
    """Every dataset name some run (of the session's project) used, sorted."""
    project = scoped_project(session)
    conn = session.connection()
    if project is None:  # every project: the dataset column's own index
        return list(conn.execute(sa.text(_DATASETS.format(where="dataset IS NOT NULL"))).scalars())
    where = "project_id = :p AND archived = :a"  # the list's (project_id, archived, dataset, ...) index
    return sorted({name for archived in (False, True) for name in conn.execute(
        sa.text(_DATASETS.format(where=where)), {"p": project, "a": archived}).scalars()})


def list_epochs(session: Session, run_id: int, after: int = 0) -> list[EpochRow]:
    """A run's epoch table in training order, past its first `after` rows (rows are only ever appended in order)."""
    stmt = select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.stage, EpochRow.epoch)
    return list(session.exec(stmt.offset(after) if after else stmt).scalars().all())


def list_lr_finds(session: Session, run_id: int) -> list[LRFind]:
    """A run's LR-finder curves by stage."""
    return list(session.exec(select(LRFind).where(LRFind.run_id == run_id).order_by(LRFind.stage)).scalars().all())


def list_artifacts(session: Session, run_id: int) -> dict[str, int | None]:
    """A run's stored files: kind -> size in bytes."""
    return {a.kind: a.size for a in session.exec(select(Artifact).where(Artifact.run_id == run_id)).scalars()}
