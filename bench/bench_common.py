"""Helpers the benchmarks share: waiting for a worker's first heartbeat and reading a run's state."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sqlalchemy import select

from app.store.db import session_scope
from app.store.models import Run, Worker


def wait_worker_ready(engine, proc: subprocess.Popen, log_path: Path, timeout: float = 120) -> float:
    """Wait for the worker's first heartbeat (sent on worker_ready); returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        with session_scope(engine) as session:
            if session.exec(select(Worker.name)).first() is not None:
                return time.perf_counter() - t0
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def run_state(engine, run_id: int) -> tuple[str, dict | None, str | None]:
    """The run's status, progress document and error, freshly read."""
    with session_scope(engine) as session:
        row = session.exec(select(Run.status, Run.progress, Run.error).where(Run.id == run_id)).one()
    return row[0], row[1], row[2]
