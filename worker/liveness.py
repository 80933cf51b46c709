"""Worker liveness: the HeartbeatThread says this worker is alive (and what it runs), repairs its own runs,
requeues the runs of workers gone silent, asks the dispatcher for work while idle, and runs the reconciler when it
holds the lease."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

import torch
from sqlalchemy.engine import Engine

from fitboard.app.core.settings import Settings
from fitboard.app.services.dispatch import dispatch
from fitboard.app.services.queue import Publisher
from fitboard.app.services.recovery import reconcile
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import utcnow
from fitboard.app.store.recovery import reap_lost_workers, repair_worker_runs
from fitboard.app.store.workers import record_doctor, record_heartbeat
from fitboard.worker.doctor import report, run_checks

log = logging.getLogger(__name__)


def gpu_info() -> tuple[str | None, int | None]:
    """This process's GPU name and memory in bytes, or (None, None) on a CPU host."""
    if not torch.cuda.is_available():
        return None, None
    props = torch.cuda.get_device_properties(0)
    return props.name, props.total_memory


class HeartbeatThread(threading.Thread):
    """Every interval: heartbeat, repair this worker's runs, requeue lost workers' runs, reconcile the queue.

    Each chore is tried on its own: a database or broker that is down fails that chore for this beat only."""

    def __init__(self, engine: Engine, name: str, settings: Settings, publisher: Publisher, queue: str | None = None):
        super().__init__(name="fitboard-heartbeat", daemon=True)
        self.engine, self.worker_name, self.settings, self.publisher = engine, name, settings, publisher
        self.queue = queue or publisher.queue  # the queue(s) it consumes, comma-separated
        self.current_run: int | None = None
        self.gpu, self.gpu_memory = gpu_info()

    def beat(self) -> None:
        """One heartbeat and one pass of each chore."""
        with session_scope(self.engine) as session:
            record_heartbeat(session, self.worker_name, socket.gethostname(), os.getpid(), self.gpu, self.gpu_memory,
                             self.current_run, queue=self.queue)
        for chore in (self._repair, self._reap, self._dispatch, self._reconcile):
            try:
                chore()
            except Exception:
                log.exception("%s failed", chore.__name__.strip("_"))

    def _repair(self) -> None:
        """Runs this worker is marked as running but is not (a final write that never landed) go back to the queue."""
        with session_scope(self.engine) as session:
            since, current = utcnow(), self.current_run  # the time first: a claim after it is never repaired
            repaired = repair_worker_runs(session, self.worker_name, current, claimed_before=since)
        if repaired:
            log.warning("repaired runs of this worker: %s", repaired)

    def _reap(self) -> None:
        """Runs of workers silent for worker_lost_after go back to the queue (or fail after their last attempt)."""
        with session_scope(self.engine) as session:
            lost = reap_lost_workers(session, self.settings.worker_lost_after)
        if lost:
            log.warning("runs of lost workers: %s", lost)

    def _dispatch(self) -> None:
        """While idle (the first beat at start-up too), have the dispatcher send this worker's queues what they can
        start now; a pass already running elsewhere is left to do it."""
        if self.current_run is None:
            dispatch(self.engine, self.publisher, self.queue.split(","), wait=0.0, settings=self.settings)

    def _reconcile(self) -> None:
        """Send queued runs whose message may be gone (only the lease holder acts)."""
        reconcile(self.engine, self.publisher, self.settings, self.worker_name, every=self.settings.heartbeat_interval)

    def run(self) -> None:
        # A daemon thread: it beats for as long as the worker process lives, and dies with it.
        while True:
            try:
                self.beat()
            except Exception:  # a busy database must not kill the thread; the next beat retries
                log.exception("heartbeat failed")
            time.sleep(self.settings.heartbeat_interval)


def record_doctor_report(engine: Engine, name: str, settings: Settings, tries: int = 30) -> dict:
    """Run `fitboard doctor`'s checks once and keep the report on this worker's row (waiting for its first
    heartbeat to create it), so the Workers page shows whether each host is ready."""
    result = report(run_checks(settings))
    for _ in range(tries):
        try:
            with session_scope(engine) as session:
                if record_doctor(session, name, result):
                    break
        except Exception:
            log.exception("could not store the doctor report")
        time.sleep(settings.heartbeat_interval)
    failed = [c["name"] for c in result["checks"] if c["status"] == "FAIL"]
    if failed:
        log.warning("fitboard doctor: failing checks on this host: %s", ", ".join(failed))
    return result
