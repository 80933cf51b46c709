"""Worker liveness: the HeartbeatThread says this worker is alive (and what it runs) and fails silent workers' runs."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from sqlalchemy.engine import Engine

from app.store.db import session_scope
from app.store.workers import reap_lost_workers, record_heartbeat

log = logging.getLogger(__name__)


def gpu_info() -> tuple[str | None, int | None]:
    """This process's GPU name and memory in bytes, or (None, None) on a CPU host."""
    import torch

    if not torch.cuda.is_available():
        return None, None
    props = torch.cuda.get_device_properties(0)
    return props.name, props.total_memory


class HeartbeatThread(threading.Thread):
    """Every interval: upsert this worker's row, then reap runs whose worker has been silent too long."""

    def __init__(self, engine: Engine, name: str, interval: float, lost_after: float):
        super().__init__(name="fitboard-heartbeat", daemon=True)
        self.engine, self.worker_name, self.interval, self.lost_after = engine, name, interval, lost_after
        self.current_run: int | None = None
        self.gpu, self.gpu_memory = gpu_info()

    def beat(self) -> None:
        """One heartbeat and one reaping pass."""
        with session_scope(self.engine) as session:
            record_heartbeat(session, self.worker_name, socket.gethostname(), os.getpid(), self.gpu, self.gpu_memory,
                             self.current_run)
        with session_scope(self.engine) as session:
            lost = reap_lost_workers(session, silent_after=self.lost_after)
        if lost:
            log.warning("failed runs %s: their worker went silent for %.0f s", lost, self.lost_after)

    def run(self) -> None:
        # A daemon thread: it beats for as long as the worker process lives, and dies with it.
        while True:
            try:
                self.beat()
            except Exception:  # a busy database must not kill the thread; the next beat retries
                log.exception("heartbeat failed")
            time.sleep(self.interval)
