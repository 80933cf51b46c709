"""The worker factory: Settings in, a worker's parts out (Celery app with its training task, database engine,
publisher, name), built on call as Superset builds its app. Importing fitboard.worker.tasks wires nothing, so a test can
build a worker of its own and run the task function in-process."""
from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field

from celery import Celery, signals
from sqlalchemy.engine import Engine

from fitboard.app.core.settings import Settings, get_settings
from fitboard.app.services.queue import TRAIN_TASK, Publisher, declare_queues, make_celery
from fitboard.app.store.db import default_database_url, make_engine, upgrade
from fitboard.app.store.runs import DEFAULT_QUEUE
from fitboard.worker import tasks
from fitboard.worker.liveness import HeartbeatThread, record_doctor_report


@dataclass
class Worker:
    """One worker process's parts; fitboard.worker.tasks' functions take it."""

    settings: Settings
    celery: Celery
    engine: Engine
    publisher: Publisher  # sends each run to its own queue
    name: str
    stopping: threading.Event = field(default_factory=threading.Event)  # SIGTERM/Ctrl-C: the run stops at a batch
    heartbeat: HeartbeatThread | None = None
    current_run: int | None = None  # the run this worker holds; the heartbeat must never repair it away
    queue: str = DEFAULT_QUEUE  # the queue(s) it consumes (comma-separated): the dispatcher fills them as it frees

    def start_heartbeat(self) -> None:
        """Heartbeat (so a dead worker's runs can be reaped by the living) and record a doctor report."""
        heartbeat = HeartbeatThread(self.engine, self.name, self.settings, self.publisher, self.queue)
        self.heartbeat = heartbeat
        # A task can claim its run before worker_ready starts the heartbeat: the first repair must know that run.
        heartbeat.current_run = self.current_run
        heartbeat.start()
        # In the background: a probe of a slow bucket or broker must not hold up the first task.
        threading.Thread(target=record_doctor_report, args=(self.engine, self.name, self.settings),
                         name="fitboard-doctor", daemon=True).start()

    def run(self, queue: str) -> None:
        """Migrate, then consume one task at a time in this process (solo pool)."""
        self.queue = queue
        upgrade(default_database_url(self.settings))
        declare_queues(self.celery, queue.split(","))  # before consuming: workers started together race otherwise
        self.celery.worker_main(["worker", "--pool", "solo", "--concurrency", "1", "--queues", queue,
                                 "--hostname", f"fitboard-{os.getpid()}@%h", "--loglevel", "INFO",
                                 "--without-gossip", "--without-mingle", "--without-heartbeat"])


def create_worker(settings: Settings | None = None) -> Worker:
    """A worker for these settings (default: the environment's), its training task registered on its Celery app."""
    settings = settings or get_settings()
    celery = make_celery(settings)
    worker = Worker(settings=settings, celery=celery, engine=make_engine(default_database_url(settings)),
                    publisher=Publisher(celery),
                    name=settings.worker_name or f"{socket.gethostname()}:{os.getpid()}")

    # shared=False: Celery adds a shared task to every app the process finalizes later, and the last one added wins;
    # a second worker made in one process (tests, tools) then ran its runs through the first worker's closure (its
    # database: "skipped").
    @celery.task(name=TRAIN_TASK, shared=False)
    def train_run(run_id: int) -> str:
        """Claim a queued run and train it (resuming after its last checkpoint)."""
        return tasks.train_run(worker, run_id)

    consumers = []  # this worker's Celery consumer, once it consumes

    @signals.worker_shutting_down.connect(weak=False)
    def stop_current_run(**_) -> None:
        """Warm shutdown would wait for the whole run; stop it cooperatively instead, within a batch. An idle
        worker's wait for a message (the embedded broker's) ends at once instead of after two 2 s polls."""
        worker.stopping.set()
        for consumer in consumers:
            transport = getattr(consumer.connection, "transport", None)
            if hasattr(transport, "stop_waiting"):
                transport.stop_waiting()

    @signals.worker_ready.connect(weak=False)
    def start_heartbeat(sender=None, **_) -> None:
        """Begin heartbeating once this worker's app consumes."""
        if getattr(sender, "app", celery) is celery:
            consumers.append(sender)
            worker.start_heartbeat()

    return worker
