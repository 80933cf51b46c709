"""A worker's heartbeat thread: says it is alive (and what it runs) and fails runs of workers gone silent."""
from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy.engine import Engine

from app.db import session_scope
from app.runs import heartbeat, reap_lost_workers

log = logging.getLogger(__name__)


def gpu_info() -> tuple[str | None, int | None]:
    """This process's GPU name and memory in bytes, or (None, None) on a CPU host."""
    import torch

    if not torch.cuda.is_available():
        return None, None
    props = torch.cuda.get_device_properties(0)
    return props.name, props.total_memory


class Heartbeat(threading.Thread):
    """Every interval: upsert this worker's row, then reap runs whose worker has been silent too long."""

    def __init__(self, engine: Engine, name: str, interval: float, lost_after: float):
        super().__init__(name="fitboard-heartbeat", daemon=True)
        self.engine, self.worker_name, self.interval, self.lost_after = engine, name, interval, lost_after
        self.current_run: int | None = None
        self.gpu, self.gpu_memory = gpu_info()
        self._stop_event = threading.Event()

    def beat(self) -> None:
        """One heartbeat and one reaping pass."""
        with session_scope(self.engine) as session:
            heartbeat(session, self.worker_name, socket.gethostname(), os.getpid(), self.gpu, self.gpu_memory,
                      self.current_run)
        with session_scope(self.engine) as session:
            lost = reap_lost_workers(session, silent_after=self.lost_after)
        if lost:
            log.warning("failed runs %s: their worker went silent for %.0f s", lost, self.lost_after)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.beat()
            except Exception:  # a busy database must not kill the thread; the next beat retries
                log.exception("heartbeat failed")
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
