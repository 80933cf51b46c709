"""The training task's code: claim one stored run, train it, store its files and its final state. Every function
takes the Worker built by fitboard.worker.factory.create_worker; importing this module wires nothing."""
from __future__ import annotations

import logging
import shutil
import socket
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from celery.exceptions import Reject

from fitboard.app.core.artifacts import store_for
from fitboard.app.core.events import ResultEvent
from fitboard.app.core.schemas import DatasetSpec, RunSpec
from fitboard.app.core.status import RunStatus
from fitboard.app.services.dispatch import dispatch
from fitboard.app.services.runs import registry_for
from fitboard.app.services.search_driver import after_run
from fitboard.app.store.db import session_scope
from fitboard.app.store.recovery import requeue_run
from fitboard.app.store.runs import (
    claim_run,
    fail_run,
    finish_run,
    is_cancel_requested,
    mark_cancelled,
    mark_pruned,
)
from fitboard.worker.checkpoint import CheckpointFiles
from fitboard.worker.engine import RunCancelled, run_recipe  # fastai and torch load with the worker, not during a task
from fitboard.worker.pruning import trial_callback
from fitboard.worker.reporters import DatabaseReporter, DatabaseUnavailable
from fitboard.worker.retry import retrying

if TYPE_CHECKING:
    from fitboard.worker.factory import Worker

log = logging.getLogger(__name__)


class FilesNotStored(RuntimeError):
    """A trained run's files could not be put in the artifact store; they stay in its scratch folder."""


def _tail(tb: str, lines: int = 30) -> str:
    """The last lines of a traceback: where it broke, without pages of fastai internals."""
    return "".join(tb.splitlines(True)[-lines:])


def _until_written(worker: Worker, what: str, write) -> object:
    """A final-state write, retried with backoff until the database takes it: a run must never stay 'running'
    because its last write met a full disk or a restarting server. Gives up only when the worker is stopped;
    the heartbeat of a later worker process then repairs the run. Locked, full, restarting is worth waiting for;
    anything else is a bug to report."""
    for attempt in retrying(f"{what}: database write", log, backoff_max=worker.settings.retry_backoff_max,
                            stopping=worker.stopping):
        with attempt, session_scope(worker.engine) as session:
            return write(session)


def _set_current(worker: Worker, run_id: int | None) -> None:
    """Tell the heartbeat which run this worker holds (set before the claim, so a repair never takes it away)."""
    worker.current_run = run_id
    if worker.heartbeat is not None:
        worker.heartbeat.current_run = run_id


def _stopped(worker: Worker, run) -> str:
    """The run stopped at a batch boundary: cancelled by its user, or requeued because this worker is stopping."""
    def settle(session):
        if is_cancel_requested(session, run.id):
            return mark_cancelled(session, run.id).status
        reason = (f"worker {worker.name} was stopped (SIGTERM) during the run" if worker.stopping.is_set()
                  else f"worker {worker.name} no longer held it (requeued after a silence)")
        return requeue_run(session, run.id, reason, worker=worker.name)

    status = _until_written(worker, f"run {run.id}", settle)
    if status == RunStatus.queued:  # back in line: on to a free worker at once (the reconciler would, a beat later)
        _dispatch(worker, [run.queue])
    return status


def _dispatch(worker: Worker, queues: list[str]) -> None:
    """Have the dispatcher send what free workers can start (this one included, once its run ended); a broker or
    database that fails here is left to the next heartbeat and the reconciler."""
    try:
        dispatch(worker.engine, worker.publisher, queues, settings=worker.settings)
    except Exception:
        log.exception("dispatch after a run failed")


def train_run(worker: Worker, run_id: int) -> str:
    """Claim a queued run and train it (resuming after its last checkpoint); a duplicate or redelivered message
    finds it claimed and does nothing. Returns the run's final status (or "skipped")."""
    if worker.stopping.is_set():  # a stopping worker takes nothing new: back to the queue for another worker
        raise Reject(f"worker {worker.name} is stopping", requeue=True)
    _set_current(worker, run_id)
    try:
        with session_scope(worker.engine) as session:
            run = claim_run(session, run_id, worker.name)
    except Exception:
        _set_current(worker, None)
        raise  # not claimed: the message goes back (late ack) or the reconciler re-sends the run
    if run is None:
        _set_current(worker, None)
        log.info("run %s is not queued (already claimed, cancelled or gone); skipping", run_id)
        return "skipped"
    try:
        return _train(worker, run)
    finally:
        _set_current(worker, None)
        after_run(worker.engine, worker.publisher, run)  # a trial ended: its search asks for the next
        _dispatch(worker, sorted({run.queue, *worker.queue.split(",")}))  # this worker is free: fill its queue


def _store_files(worker: Worker, run_id: int, result: ResultEvent) -> dict[str, int]:
    """Move the exported model and predictions into the artifact store, retried with backoff for as long as a
    database write would be (a full shared disk, a restarting bucket); {kind: size}. Drops the run's checkpoint,
    which a succeeded run no longer needs."""
    settings = worker.settings
    store = store_for(settings)
    files = {"model": result.model_path, "predictions": result.predictions_path}
    stored = {}
    for kind, path in files.items():
        if not path:
            continue
        try:  # a full or stale disk, an unreachable bucket, a 5xx is worth another try; a bug fails at once
            for attempt in retrying(f"run {run_id}: storing {kind}", log, stopping=worker.stopping,
                                    backoff_max=settings.retry_backoff_max, seconds=settings.write_retry_seconds):
                with attempt:
                    stored[kind] = store.put(run_id, kind, path, move=True)
        except Exception as exc:
            raise FilesNotStored(f"the {kind} file of run {run_id} could not be stored in {store.location} "
                                 f"({type(exc).__name__}: {exc}); it is still on {socket.gethostname()} "
                                 f"at {path}") from exc
    for kind in ("checkpoint", "best"):
        try:
            store.delete(run_id, kind)
        except Exception as exc:  # only space is lost; the run succeeded
            log.warning("run %s: could not delete its %s from the artifact store (%s)", run_id, kind, exc)
    return stored


def scratch_dir(settings, run_id: int, attempt: int) -> Path:
    """This host's scratch folder for one attempt of a run."""
    return settings.work_dir / f"{run_id}.{attempt}"


def dataset_lookup(worker: Worker, project_id: int | None):
    """Find a dataset registered by name in the run's project (the engine falls back to a folder under the data
    root)."""
    def lookup(name: str) -> DatasetSpec | None:
        with session_scope(worker.engine) as session:
            return registry_for(session, project_id)(name)
    return lookup


def _train(worker: Worker, run) -> str:
    """Train a claimed run to its final state; its files go to the artifact store, its scratch folder goes."""
    run_id, settings = run.id, worker.settings
    reporter = DatabaseReporter(worker.engine, run_id, worker.stopping, progress=run.progress,
                                retry_seconds=settings.write_retry_seconds, worker=worker.name,
                                backoff_max=settings.retry_backoff_max)
    # One scratch folder per attempt: a worker that finds its run taken away (requeued after a silence on a loaded
    # host) deletes its own folder, never the one the run's new holder on the same host is training in.
    out_dir = scratch_dir(settings, run_id, run.attempt)
    pruning = None
    try:
        spec = RunSpec.model_validate(run.spec)
        pruning = trial_callback(worker.engine, run)  # a search trial reports each epoch and may be pruned
        result = run_recipe(spec, reporter, settings.data_root, out_dir,
                            extra_cbs=(pruning,) if pruning else (),
                            registry=dataset_lookup(worker, run.project_id), num_workers=settings.num_workers,
                            checkpoints=True,
                            checkpoint_files=CheckpointFiles(out_dir, store_for(settings), run_id),
                            resume=run.resume_from is not None, settings=settings)
        stored = _store_files(worker, run_id, result)
    except RunCancelled:
        shutil.rmtree(out_dir, ignore_errors=True)  # the checkpoint a retry needs is in the artifact store
        if pruning is not None and pruning.pruned is not None:  # its pruner stopped it: final, not a failure
            return _until_written(worker, f"run {run_id}",
                                  lambda s: mark_pruned(s, run_id, worker.name, pruning.pruned))
        return _stopped(worker, run)
    except Exception as exc:  # every failure (bad data, missing weights, a crash, a dead database) is stored
        error = str(exc) if isinstance(exc, DatabaseUnavailable) else f"{type(exc).__name__}: {exc}"
        tb = _tail(traceback.format_exc())
        if not isinstance(exc, FilesNotStored):  # else keep the trained files for the operator to recover
            shutil.rmtree(out_dir, ignore_errors=True)
        log.error("run %s failed: %s", run_id, error)  # said before its final write, which may wait on the database
        _until_written(worker, f"run {run_id}", lambda s: fail_run(s, run_id, error, tb, worker=worker.name))
        return RunStatus.failed.value
    # The stored result names no host's paths: the files are in the artifact store under the run's id.
    result = result.model_copy(update={"model_path": None, "predictions_path": None})
    _until_written(worker, f"run {run_id}",
                   lambda s: finish_run(s, run_id, result, worker=worker.name, artifacts=stored))
    shutil.rmtree(out_dir, ignore_errors=True)
    return RunStatus.succeeded.value
