"""Helpers the benchmarks share: waiting for a worker's first heartbeat, reading a run's state, epoch rows."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sqlalchemy import select

from fitboard.app.core.events import EpochEvent
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, Worker


def compare_drawn_ms(page, timeout: float = 120) -> float:
    """Milliseconds from navigation start until compare.js had drawn every chart (it stamps performance.now() on the
    page); polled with evaluate, as the page's CSP refuses wait_for_function's string eval."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamp = page.evaluate("document.documentElement.dataset.chartsDrawnMs || null")
        if stamp:
            return float(stamp)
        time.sleep(0.02)
    raise TimeoutError("the compare charts were not drawn")


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


def epoch_row(i: int, stage: int = 0) -> EpochEvent:
    """An epoch row as the engine reports it, with a slowly rising accuracy."""
    acc = min(0.99, 0.5 + i / 1000)
    return EpochEvent(stage=stage, epoch=i, train_loss=1.0 / (i + 1), valid_loss=1.1 / (i + 1),
                      metrics={"accuracy": acc, "error_rate": 1 - acc}, seconds=12.5)


def print_summary(summary: list[str], started: float, note: str = "") -> int:
    """The closing block every benchmark prints: its lines and the total time; returns the exit status."""
    print(f"\n=== summary ({time.perf_counter() - started:.0f} s{note}) ===")
    print("\n".join(summary))
    return 0
