"""Reporters: where a run's typed events go (terminal table, JSON lines, a list, the database)."""
from __future__ import annotations

import json
import logging
import sys
import threading
from typing import TextIO

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from fitboard.app.core.errors import RunNotFound
from fitboard.app.core.events import (
    CheckpointEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    LRFindEvent,
    NoteEvent,
    ProgressEvent,
    ResultEvent,
    StageEndEvent,
    StageEvent,
    StartEvent,
)
from fitboard.app.store.attempts import note_resumed_from
from fitboard.app.store.db import session_scope
from fitboard.app.store.recovery import record_checkpoint
from fitboard.app.store.runs import is_cancel_requested, record_epoch, record_lr_find, record_progress, should_stop
from fitboard.worker.console import Console, result_text
from fitboard.worker.retry import retrying, transient

log = logging.getLogger(__name__)


# What a database may say when it cannot take a write just now (locked, disk full, connection lost, restarting);
# retry.transient tells those from a bug's OperationalError (a missing table).
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError)


class DatabaseUnavailable(RuntimeError):
    """The database refused a write that must not be lost for longer than the retry window."""


class Reporter:
    """Receives a run's events; subclasses decide where they go."""

    def emit(self, event: Event) -> None:
        """Handle one event (start, stage, lr_find, epoch, progress, stage_end, checkpoint, note, result, error)."""

    def should_cancel(self) -> bool:
        """True when the user asked this run to stop; polled by the training callback."""
        return False


class ListReporter(Reporter):
    """Keeps every event in memory (benchmarks, tests, embedding the engine in a notebook)."""

    def __init__(self):
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        """Events of one kind, in order."""
        return [e for e in self.events if e.event == kind]


class JsonReporter(Reporter):
    """Prints one JSON object per line, flushed, for scripts that follow a run."""

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out

    def emit(self, event: Event) -> None:
        self.out.write(json.dumps(event.to_json()) + "\n")
        self.out.flush()


class ConsoleReporter(Reporter):
    """Prints the epoch table as fastai does (stages and epochs 1-based), with a one-line progress bar on stderr
    when stderr is a terminal (a log file gets no control codes): the story lines here, the table in Console."""

    def __init__(self, out: TextIO = sys.stdout, bar: TextIO = sys.stderr, tty: bool | None = None):
        self.console = Console(out, bar, tty)

    def emit(self, event: Event) -> None:
        line = self.console.line
        if isinstance(event, ProgressEvent):
            self.console.progress(event.model_dump())
        elif isinstance(event, StageEvent):
            lr = event.lr
            lr_text = f"slice({lr[0]:.2e}, {lr[1]:.2e})" if isinstance(lr, list) else f"{lr:.2e}"
            line(f"stage {event.stage + 1}: {event.epochs} epochs, size {event.size} (presize {event.presize}), "
                 f"bs {event.bs}, {'frozen' if event.frozen else 'unfrozen'}, lr {lr_text}"
                 + (f", mixup {event.mixup}" if event.mixup else ""))
        elif isinstance(event, LRFindEvent):
            line(f"stage {event.stage + 1}: lr_find valley suggestion {event.suggestion:.2e}")
        elif isinstance(event, EpochEvent):
            self.console.epoch(event.model_dump())
        elif isinstance(event, NoteEvent):
            line(f"note: {event.message}")
        elif isinstance(event, ResultEvent):
            line(result_summary(event))
        elif isinstance(event, ErrorEvent):
            line(f"error: {event.message}")


def result_summary(result: ResultEvent) -> str:
    """A few lines that say how the run ended: metrics, TTA, best epoch, model file."""
    return result_text(result.model_dump())


class DatabaseReporter(Reporter):
    """Epoch rows, LR-finder curves, checkpoints and live progress (with stage plans and notes) go to the run's rows.

    A write that fails (database locked, disk full, connection lost) is retried with backoff: rows, curves and
    checkpoints for up to retry_seconds (then the run fails, saying why), progress only once (a dropped progress
    update never fails a run)."""

    def __init__(self, engine: Engine, run_id: int, stop: threading.Event | None = None,
                 progress: dict | None = None, retry_seconds: float = 600.0, worker: str | None = None,
                 backoff_max: float = 30.0):
        self.engine, self.run_id, self.stop = engine, run_id, stop or threading.Event()
        self.worker = worker  # when given, training also stops once the run is no longer this worker's
        self.retry_seconds, self.backoff_max = retry_seconds, backoff_max
        # The run's progress document, rewritten as it grows; a resumed attempt continues the lost one's.
        self.state: dict = {"stages": [], "notes": [], **{k: v for k, v in (progress or {}).items() if k != "batch"}}

    def emit(self, event: Event) -> None:
        if isinstance(event, EpochEvent):
            self._write(lambda s: record_epoch(s, self.run_id, event))
        elif isinstance(event, LRFindEvent):
            self._write(lambda s: record_lr_find(s, self.run_id, event))
        elif isinstance(event, CheckpointEvent):
            self._write(lambda s: record_checkpoint(s, self.run_id, {"stage": event.stage, "epoch": event.epoch}))
        elif isinstance(event, StartEvent) and event.resumed_from is not None:
            self._write(lambda s: note_resumed_from(s, self.run_id, event.resumed_from))
        if self._update_state(event):
            self._write(lambda s: record_progress(s, self.run_id, self.state), best_effort=True)

    def _write(self, write, best_effort: bool = False) -> None:
        """Run one write in its own transaction, retrying with backoff unless it is best effort."""
        try:
            for attempt in retrying(f"run {self.run_id}: database write", log, backoff_max=self.backoff_max,
                                    seconds=0 if best_effort else self.retry_seconds):
                with attempt, session_scope(self.engine) as session:
                    write(session)
        except UNAVAILABLE as exc:  # a locked, full or unreachable database, for longer than the window
            if best_effort:
                log.warning("run %s: progress update dropped: %s", self.run_id, exc)
                return
            if not transient(exc):
                raise  # a bug (a missing table or column), tried once: its own message, not "for 600 s"
            raise DatabaseUnavailable(f"could not write to the database for {self.retry_seconds:.0f} s: "
                                      f"{type(exc).__name__}: {exc}") from exc

    def _update_state(self, event: Event) -> bool:
        """Fold an event into the progress document; True when it changed."""
        if isinstance(event, ProgressEvent):
            self.state["batch"] = event.model_dump(mode="json", exclude={"event"})
        elif isinstance(event, StartEvent):
            self.state.update(dataset=event.dataset, device=event.device)
        elif isinstance(event, (StageEvent, StageEndEvent)):
            self._merge_stage(event)
        elif isinstance(event, NoteEvent):
            self.state["notes"].append(event.message)
        else:
            return False
        return True

    def _merge_stage(self, event: StageEvent | StageEndEvent) -> None:
        """Keep one entry per stage: its plan (lr used, size, ...) and, at its end, parameter counts."""
        fields = event.model_dump(mode="json", exclude={"event"})
        stages = self.state["stages"]
        same = [s for s in stages if s["stage"] == event.stage]  # a resumed stage updates its entry
        if same:
            same[0].update(fields)
        else:
            stages.append(fields)

    def should_cancel(self) -> bool:
        if self.stop.is_set():  # the worker is shutting down
            return True
        try:
            with session_scope(self.engine) as session:
                if self.worker is not None:
                    return should_stop(session, self.run_id, self.worker)
                return is_cancel_requested(session, self.run_id)
        except RunNotFound:
            return True  # the run was deleted: stop spending the GPU on it
        except Exception as exc:  # an unreachable database must not stop training; ask again next time
            log.warning("run %s: could not read the cancel flag: %s", self.run_id, exc)
            return False
