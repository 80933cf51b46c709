"""The Celery task that trains one stored run, and the worker process that hosts it."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import traceback

from celery import signals
from celery.exceptions import Reject

from app.core.artifacts import store_for
from app.core.events import ResultEvent
from app.core.schemas import DatasetSpec, RunSpec
from app.core.settings import get_settings
from app.core.status import RunStatus
from app.services.queue import TRAIN_TASK, Publisher, make_celery
from app.services.recovery import publish
from app.services.runs import registry_for
from app.services.search_driver import after_run  # [search]
from app.store.db import default_database_url, make_engine, session_scope, upgrade
from app.store.recovery import requeue_run
from app.store.runs import claim_run, fail_run, finish_run, is_cancel_requested, mark_cancelled
from app.store.searches import mark_pruned  # [search]
from worker.checkpoint import CheckpointFiles
from worker.engine import RunCancelled, run_recipe  # fastai and torch load with the worker, not during a task
from worker.liveness import HeartbeatThread, record_doctor_report
from worker.pruning import trial_callback  # [search]
from worker.reporters import UNAVAILABLE, DatabaseReporter, DatabaseUnavailable

log = logging.getLogger(__name__)
settings = get_settings()
celery = make_celery(settings)
engine = make_engine(default_database_url(settings))
WORKER_NAME = os.environ.get("FITBOARD_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"
_heartbeat: HeartbeatThread | None = None
SHUTTING_DOWN = threading.Event()  # set on SIGTERM/Ctrl-C: the current run stops at its next batch
PUBLISHER = Publisher(celery)  # sends each run to its own queue
FINAL_WRITE_BACKOFF_MAX = 30.0


class FilesNotStored(RuntimeError):
    """A trained run's files could not be put in the artifact store; they stay in its scratch folder."""


def registry_lookup(name: str) -> DatasetSpec | None:
    """Find a registered dataset by name (the engine falls back to a folder under the data root)."""
    with session_scope(engine) as session:
        return registry_for(session)(name)


def _tail(tb: str, lines: int = 30) -> str:
    """The last lines of a traceback: where it broke, without pages of fastai internals."""
    return "".join(tb.splitlines(True)[-lines:])


def _until_written(what: str, write) -> object:
    """A final-state write, retried with backoff until the database takes it: a run must never stay 'running'
    because its last write met a full disk or a restarting server. Gives up only when the worker is stopped;
    the heartbeat of a later worker process then repairs the run."""
    delay = 0.5
    while True:
        try:
            with session_scope(engine) as session:
                return write(session)
        except UNAVAILABLE as exc:  # locked, full, restarting: worth waiting for; anything else is a bug to report
            if SHUTTING_DOWN.is_set():
                raise
            log.warning("%s: database write failed (%s); retrying in %.0f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, FINAL_WRITE_BACKOFF_MAX)


def _set_current(run_id: int | None) -> None:
    """Tell the heartbeat which run this worker holds (set before the claim, so a repair never takes it away)."""
    if _heartbeat is not None:
        _heartbeat.current_run = run_id


def _stopped(run) -> str:
    """The run stopped at a batch boundary: cancelled by its user, or requeued because this worker is stopping."""
    def settle(session):
        if is_cancel_requested(session, run.id):
            return mark_cancelled(session, run.id).status
        reason = (f"worker {WORKER_NAME} was stopped (SIGTERM) during the run" if SHUTTING_DOWN.is_set()
                  else f"worker {WORKER_NAME} no longer held it (requeued after a silence)")
        return requeue_run(session, run.id, reason, worker=WORKER_NAME)

    status = _until_written(f"run {run.id}", settle)
    if status == RunStatus.queued:  # on to another worker at once (the reconciler would, a heartbeat later)
        with session_scope(engine) as session:
            publish(session, PUBLISHER, [(run.id, run.queue)])
    return status


@celery.task(name=TRAIN_TASK)
def train_run(run_id: int) -> str:
    """Claim a queued run and train it (resuming after its last checkpoint); a duplicate or redelivered message
    finds it claimed and does nothing."""
    if SHUTTING_DOWN.is_set():  # a stopping worker takes nothing new: back to the queue for another worker
        raise Reject(f"worker {WORKER_NAME} is stopping", requeue=True)
    _set_current(run_id)
    try:
        with session_scope(engine) as session:
            run = claim_run(session, run_id, WORKER_NAME)
    except Exception:
        _set_current(None)
        raise  # not claimed: the message goes back (late ack) or the reconciler re-sends the run
    if run is None:
        _set_current(None)
        log.info("run %s is not queued (already claimed, cancelled or gone); skipping", run_id)
        return "skipped"
    try:
        return _train(run)
    finally:
        _set_current(None)
        after_run(engine, PUBLISHER, run)  # [search] a trial ended: its search asks for the next (no-op otherwise)


def _store_files(run_id: int, result: ResultEvent) -> dict[str, int]:
    """Move the exported model and predictions into the artifact store, retried with backoff for as long as a
    database write would be (a full shared disk, a restarting bucket); {kind: size}. Drops the run's checkpoint,
    which a succeeded run no longer needs."""
    store = store_for(settings)
    files = {"model": result.model_path, "predictions": result.predictions_path}
    stored, delay, deadline = {}, 0.5, time.monotonic() + settings.write_retry_seconds
    for kind, path in files.items():
        while path and kind not in stored:
            try:
                stored[kind] = store.put(run_id, kind, path, move=True)
            except Exception as exc:  # any backend's failure: OSError, botocore's errors
                if SHUTTING_DOWN.is_set() or time.monotonic() > deadline:
                    raise FilesNotStored(f"the {kind} file of run {run_id} could not be stored in {store.location} "
                                       f"({type(exc).__name__}: {exc}); it is still on {socket.gethostname()} "
                                       f"at {path}") from exc
                log.warning("run %s: storing %s failed (%s); retrying in %.0f s", run_id, kind, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, FINAL_WRITE_BACKOFF_MAX)
    for kind in ("checkpoint", "best"):
        try:
            store.delete(run_id, kind)
        except Exception as exc:  # only space is lost; the run succeeded
            log.warning("run %s: could not delete its %s from the artifact store (%s)", run_id, kind, exc)
    return stored


def _train(run) -> str:
    """Train a claimed run to its final state; its files go to the artifact store, its scratch folder goes."""
    run_id = run.id
    reporter = DatabaseReporter(engine, run_id, SHUTTING_DOWN, progress=run.progress,
                                retry_seconds=settings.write_retry_seconds, worker=WORKER_NAME)
    out_dir = settings.work_dir / str(run_id)
    pruning = None  # [search]
    try:
        spec = RunSpec.model_validate(run.spec)
        pruning = trial_callback(engine, run)  # [search] a search trial reports each epoch and may be pruned
        result = run_recipe(spec, reporter, settings.data_root, out_dir,
                            extra_cbs=(pruning,) if pruning else (),  # [search]
                            registry=registry_lookup, num_workers=settings.num_workers, checkpoints=True,
                            checkpoint_files=CheckpointFiles(out_dir, store_for(settings), run_id),
                            resume=run.resume_from is not None, settings=settings)
        stored = _store_files(run_id, result)
    except RunCancelled:
        shutil.rmtree(out_dir, ignore_errors=True)  # the checkpoint a retry needs is in the artifact store
        if pruning is not None and pruning.pruned is not None:  # [search] its pruner stopped it: final, not a failure
            return _until_written(f"run {run_id}", lambda s: mark_pruned(s, run_id, WORKER_NAME, pruning.pruned))
        return _stopped(run)
    except Exception as exc:  # every failure (bad data, missing weights, a crash, a dead database) is stored
        error = str(exc) if isinstance(exc, DatabaseUnavailable) else f"{type(exc).__name__}: {exc}"
        tb = _tail(traceback.format_exc())
        if not isinstance(exc, FilesNotStored):  # else keep the trained files for the operator to recover
            shutil.rmtree(out_dir, ignore_errors=True)
        _until_written(f"run {run_id}", lambda s: fail_run(s, run_id, error, tb, worker=WORKER_NAME))
        return RunStatus.failed.value
    # The stored result names no host's paths: the files are in the artifact store under the run's id.
    result = result.model_copy(update={"model_path": None, "predictions_path": None})
    _until_written(f"run {run_id}", lambda s: finish_run(s, run_id, result, worker=WORKER_NAME, artifacts=stored))
    shutil.rmtree(out_dir, ignore_errors=True)
    return RunStatus.succeeded.value


@signals.worker_shutting_down.connect
def _stop_current_run(**_) -> None:
    """Warm shutdown would wait for the whole run; stop it cooperatively instead, within a batch."""
    SHUTTING_DOWN.set()


@signals.worker_ready.connect
def _start_heartbeat(**_) -> None:
    """Begin heartbeating once the worker consumes, so a dead worker's runs can be reaped by the living."""
    global _heartbeat
    _heartbeat = HeartbeatThread(engine, WORKER_NAME, settings, PUBLISHER)
    _heartbeat.start()
    # In the background: a probe of a slow bucket or broker must not hold up the first task.
    threading.Thread(target=record_doctor_report, args=(engine, WORKER_NAME, settings), name="fitboard-doctor",
                     daemon=True).start()


def run_worker(queue: str) -> None:
    """Migrate, then consume one task at a time in this process (solo pool)."""
    upgrade(default_database_url(settings))
    celery.worker_main(["worker", "--pool", "solo", "--concurrency", "1", "--queues", queue,
                        "--hostname", f"fitboard-{os.getpid()}@%h", "--loglevel", "INFO",
                        "--without-gossip", "--without-mingle", "--without-heartbeat"])
