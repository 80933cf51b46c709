"""Train a recipe on the digits demo in-process, as a worker does, keeping every event with the time it came
(bench/demo_eta.py and bench/progress_gaps.py read them). bench/ is on sys.path when a benchmark runs as a script."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from fitboard.app.core.demo_data import write_digits
from fitboard.app.core.schemas import parse_spec
from fitboard.worker.engine import run_recipe
from fitboard.worker.reporters import Reporter


class Timed(Reporter):
    """Keeps (seconds since start, event)."""

    def __init__(self):
        self.t0, self.events = time.perf_counter(), []

    def emit(self, event) -> None:
        self.events.append((time.perf_counter() - self.t0, event))


def train_digits(recipe: dict, limit: int | None = None, **run_options) -> tuple[list, float, float]:
    """Train recipe on `limit` digits images (all 1,797 by default); returns the timed events, and the times of
    the start and the result events."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_digits(root / "digits", limit=limit)
        reporter = Timed()
        run_recipe(parse_spec(recipe), reporter, root, Path(tmp) / "out", **run_options)
    start = next(t for t, e in reporter.events if e.event == "start")
    end = next(t for t, e in reporter.events if e.event == "result")
    return reporter.events, start, end
