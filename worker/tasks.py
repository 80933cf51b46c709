"""The Celery task that trains one stored run, and the worker process that hosts it."""
from __future__ import annotations

import logging
import os
import socket
import threading
import traceback

from celery import signals

from app.core.schemas import DatasetSpec, RunSpec
from app.core.settings import get_settings
from app.core.status import RunStatus
from app.services.queue import TRAIN_TASK, make_celery
from app.services.runs import registry_for
from app.store.db import default_database_url, make_engine, session_scope, upgrade
from app.store.runs import claim_run, fail_run, finish_run, is_cancel_requested, mark_cancelled
from worker.engine import RunCancelled, run_recipe  # fastai and torch load with the worker, not during a task
from worker.liveness import HeartbeatThread
from worker.reporters import DatabaseReporter

log = logging.getLogger(__name__)
settings = get_settings()
celery = make_celery(settings)
engine = make_engine(default_database_url(settings))
WORKER_NAME = os.environ.get("FITBOARD_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"
_heartbeat = None
SHUTTING_DOWN = threading.Event()  # set on SIGTERM/Ctrl-C: the current run stops at its next batch


def registry_lookup(name: str) -> DatasetSpec | None:
    """Find a registered dataset by name (the engine falls back to a folder under the data root)."""
    with session_scope(engine) as session:
        return registry_for(session)(name)


def _tail(tb: str, lines: int = 30) -> str:
    """The last lines of a traceback: where it broke, without pages of fastai internals."""
    return "".join(tb.splitlines(True)[-lines:])


@celery.task(name=TRAIN_TASK)
def train_run(run_id: int) -> str:
    """Claim a queued run and train it; a duplicate or redelivered message finds it claimed and does nothing."""
    with session_scope(engine) as session:
        run = claim_run(session, run_id, WORKER_NAME)
    if run is None:
        log.info("run %s is not queued (already claimed, cancelled or gone); skipping", run_id)
        return "skipped"
    if _heartbeat is not None:
        _heartbeat.current_run = run_id
    try:
        spec = RunSpec.model_validate(run.spec)
        result = run_recipe(spec, DatabaseReporter(engine, run_id, SHUTTING_DOWN), settings.data_root,
                            settings.artifacts_dir / str(run_id), registry=registry_lookup,
                            num_workers=settings.num_workers)
        with session_scope(engine) as session:
            finish_run(session, run_id, result)
        return RunStatus.succeeded.value
    except RunCancelled:
        with session_scope(engine) as session:
            if is_cancel_requested(session, run_id):
                mark_cancelled(session, run_id)
                return RunStatus.cancelled.value
            fail_run(session, run_id, "worker stopped during the run (it was shut down); clone the run to retry")
        return RunStatus.failed.value
    # every failure (a dataset gone bad, weights missing, a crash) is stored with its message, never lost
    except Exception as exc:
        with session_scope(engine) as session:
            fail_run(session, run_id, f"{type(exc).__name__}: {exc}", _tail(traceback.format_exc()))
        return RunStatus.failed.value
    finally:
        if _heartbeat is not None:
            _heartbeat.current_run = None


@signals.worker_shutting_down.connect
def _stop_current_run(**_) -> None:
    """Warm shutdown would wait for the whole run; stop it cooperatively instead, within a batch."""
    SHUTTING_DOWN.set()


@signals.worker_ready.connect
def _start_heartbeat(**_) -> None:
    """Begin heartbeating once the worker consumes, so a dead worker's runs can be reaped by the living."""
    global _heartbeat
    _heartbeat = HeartbeatThread(engine, WORKER_NAME, settings.heartbeat_interval, settings.worker_lost_after)
    _heartbeat.start()


def run_worker(queue: str) -> None:
    """Migrate, then consume one task at a time in this process (solo pool)."""
    upgrade(default_database_url(settings))
    celery.worker_main(["worker", "--pool", "solo", "--concurrency", "1", "--queues", queue,
                        "--hostname", f"fitboard-{os.getpid()}@%h", "--loglevel", "INFO",
                        "--without-gossip", "--without-mingle", "--without-heartbeat"])
