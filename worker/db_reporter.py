"""A Reporter that writes a run's events into the database, one short transaction each."""
from __future__ import annotations

import threading

from sqlalchemy.engine import Engine

from app.db import session_scope
from app.runs import is_cancel_requested, record_epoch, record_lr_find, record_progress
from worker.reporting import Reporter


class DatabaseReporter(Reporter):
    """Epoch rows, LR-finder curves and live progress (with stage plans and notes) go to the run's rows."""

    def __init__(self, engine: Engine, run_id: int, stop: threading.Event | None = None):
        self.engine, self.run_id, self.stop = engine, run_id, stop or threading.Event()
        self.state: dict = {"stages": [], "notes": []}  # the run's progress document, rewritten as it grows

    def _save_state(self, session) -> None:
        record_progress(session, self.run_id, self.state)

    def emit(self, event: dict) -> None:
        kind = event["event"]
        with session_scope(self.engine) as session:
            if kind == "epoch":
                record_epoch(session, self.run_id, event)
            elif kind == "lr_find":
                record_lr_find(session, self.run_id, event["stage"], event["suggestion"], event["lrs"], event["losses"])
            elif kind == "progress":
                self.state["batch"] = {k: v for k, v in event.items() if k != "event"}
                self._save_state(session)
            elif kind == "start":
                self.state.update(dataset=event["dataset"], device=event["device"])
                self._save_state(session)
            elif kind in ("stage", "stage_end"):
                self._merge_stage(event)
                self._save_state(session)
            elif kind == "note":
                self.state["notes"].append(event["message"])
                self._save_state(session)

    def _merge_stage(self, event: dict) -> None:
        """Keep one entry per stage: its plan (lr used, size, ...) and, at its end, parameter counts."""
        fields = {k: v for k, v in event.items() if k != "event"}
        stages = self.state["stages"]
        if stages and stages[-1]["stage"] == event["stage"]:
            stages[-1].update(fields)
        else:
            stages.append(fields)

    def should_cancel(self) -> bool:
        if self.stop.is_set():  # the worker is shutting down
            return True
        with session_scope(self.engine) as session:
            return is_cancel_requested(session, self.run_id)
