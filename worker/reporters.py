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
from fitboard.app.core.numbering import where
from fitboard.app.core.progress import progress_text
from fitboard.app.store.attempts import note_resumed_from
from fitboard.app.store.db import session_scope
from fitboard.app.store.recovery import record_checkpoint
from fitboard.app.store.runs import is_cancel_requested, record_epoch, record_lr_find, record_progress, should_stop
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


def _isatty(stream) -> bool:
    """Whether a stream is a terminal (a progress bar's carriage returns only make sense there)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt(v) -> str:
    """Format a table cell as fastai does."""
    return f"{v:.6f}" if isinstance(v, float) else str(v)


class ConsoleReporter(Reporter):
    """Prints the epoch table as fastai does (stages and epochs 1-based), with a one-line progress bar on stderr
    when stderr is a terminal (a log file gets no control codes)."""

    COLUMNS = ("stage", "epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time")

    def __init__(self, out: TextIO = sys.stdout, bar: TextIO = sys.stderr, tty: bool | None = None):
        self.out, self.bar = out, bar
        self.tty = _isatty(bar) if tty is None else tty
        self.header_done = False

    def _clear_bar(self) -> None:
        if self.tty:
            self.bar.write("\r\033[K")

    def _line(self, text: str) -> None:
        self._clear_bar()
        self.out.write(text + "\n")
        self.out.flush()

    def emit(self, event: Event) -> None:
        if isinstance(event, ProgressEvent):
            self._progress(event)
        elif isinstance(event, StageEvent):
            lr = event.lr
            lr_text = f"slice({lr[0]:.2e}, {lr[1]:.2e})" if isinstance(lr, list) else f"{lr:.2e}"
            self._line(f"stage {event.stage + 1}: {event.epochs} epochs, size {event.size} (presize {event.presize}), "
                       f"bs {event.bs}, {'frozen' if event.frozen else 'unfrozen'}, lr {lr_text}"
                       + (f", mixup {event.mixup}" if event.mixup else ""))
        elif isinstance(event, LRFindEvent):
            self._line(f"stage {event.stage + 1}: lr_find valley suggestion {event.suggestion:.2e}")
        elif isinstance(event, EpochEvent):
            self._epoch(event)
        elif isinstance(event, NoteEvent):
            self._line(f"note: {event.message}")
        elif isinstance(event, ResultEvent):
            self._line(result_summary(event))
        elif isinstance(event, ErrorEvent):
            self._line(f"error: {event.message}")

    def _progress(self, event: ProgressEvent) -> None:
        if not self.tty:
            return
        filled = int(event.batch / max(event.total, 1) * 30)
        loss = event.smooth_loss
        eta = f", run ETA {event.run_eta:.0f}s" if event.run_eta is not None else ""
        where = progress_text(event.model_dump())
        self.bar.write(f"\r\033[K[{'#' * filled}{'.' * (30 - filled)}] {where} {event.elapsed:.0f}s<{event.eta:.0f}s"
                       + eta + (f" loss {loss:.4f}" if loss is not None else ""))
        self.bar.flush()

    def _epoch(self, event: EpochEvent) -> None:
        if not self.header_done:
            self._line("  ".join(f"{c:>10}" for c in self.COLUMNS))
            self.header_done = True
        m = event.metrics
        cells = (event.stage + 1, event.epoch + 1, event.train_loss, event.valid_loss, m.get("accuracy"),
                 m.get("error_rate"), f"{event.seconds or 0:.1f}s")
        self._line("  ".join(f"{_fmt(c):>10}" for c in cells))


def _f4(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def result_summary(result: ResultEvent) -> str:
    """A few lines that say how the run ended: metrics, TTA, best epoch, model file."""
    m = result.metrics
    lines = [f"validation: loss {_f4(m.valid_loss)}  accuracy {_f4(m.accuracy)}  error_rate {_f4(m.error_rate)}"]
    if result.tta:
        t = result.tta
        lines.append(f"tta (n={t.n}, use_max={t.use_max}): accuracy {_f4(t.accuracy)}  error_rate {_f4(t.error_rate)}")
    if result.best:
        b = result.best
        lines.append(f"best {b.metric} {_f4(b.value)} at {where(b.stage, b.epoch)} (weights reloaded)")
    if result.model_path:
        lines.append(f"model: {result.model_path}")
    return "\n".join(lines)


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
