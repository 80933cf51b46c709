"""fastai callbacks that report a run's progress and epochs, poll for cancel, and keep the best weights."""
from __future__ import annotations

import time

from fastai.callback.core import Callback, CancelFitException
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Recorder

from app.core.events import BestEpoch, EpochEvent, ProgressEvent
from app.core.numbering import run_eta
from worker.position import position
from worker.reporters import Reporter

PROGRESS_INTERVAL = 0.5  # at most 2 progress events a second
CANCEL_INTERVAL = 0.5  # how often the reporter (maybe a database) is asked about cancel


def _in_side_loop(learn) -> bool:
    """True while fastai runs lr_find or get_preds, which are not epochs of the run."""
    return hasattr(learn, "lr_finder") or hasattr(learn, "gather_preds")


class ReportCallback(Callback):
    """Sends progress (throttled) and one row per epoch to a Reporter; stops the fit when cancel is asked."""

    order = Recorder.order + 1  # after Recorder so the epoch's log is complete

    def __init__(self, reporter: Reporter, plan: list[tuple[int, int]] | None = None):
        self.reporter, self.cancelled, self.side = reporter, False, False
        self.plan = plan or []  # (epochs, size) per stage: for "epoch e of E" and the whole-run ETA
        self.epoch_seconds: list[float] = []
        self.timed: list[tuple[int, float]] = []  # (stage, seconds) of each epoch trained by this attempt
        self._last_progress = self._last_cancel_check = 0.0

    def before_fit(self):
        # lr_find and get_preds are not epochs of the run: no rows or progress from them, but a cancel (or a stopping
        # worker) still counts, or it would wait out a long LR finder.
        self.side = _in_side_loop(self.learn)

    @property
    def stage(self) -> int:
        """The stage in training, read from the run."""
        return position(self.learn).stage

    @property
    def first_epoch(self) -> int:
        """The first epoch this attempt trains in the stage (a resumed fit replays those before it)."""
        return position(self.learn).first_epoch

    def before_epoch(self):
        self._epoch_start = time.perf_counter()

    def before_train(self):
        self._train_start = time.perf_counter()

    def after_batch(self):
        if not self.training:
            return
        now = time.perf_counter()
        if now - self._last_cancel_check >= CANCEL_INTERVAL:
            self._last_cancel_check = now
            if self.reporter.should_cancel():
                self.cancelled = True
                raise CancelFitException()
        if not self.side and now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            self._emit_progress(now)

    def _emit_progress(self, now: float) -> None:
        batch, total = self.iter + 1, self.n_iter
        elapsed = now - self._train_start
        smooth = self.recorder.smooth_loss.value
        known = self.stage < len(self.plan)
        self.reporter.emit(ProgressEvent(stage=self.stage, epoch=self.epoch, batch=batch, total=total, elapsed=elapsed,
                                         eta=elapsed / batch * (total - batch),
                                         smooth_loss=None if smooth is None else float(smooth),
                                         stage_count=len(self.plan) or None,
                                         epoch_count=self.plan[self.stage][0] if known else None,
                                         run_eta=run_eta(self.plan, self.stage, self.epoch, batch, total, elapsed,
                                                         self.timed)))

    def after_epoch(self):
        if self.side or self.epoch < self.first_epoch:
            return  # a side loop, or skipped by a resumed fit (fastai still calls after_epoch): its row is stored
        seconds = time.perf_counter() - self._epoch_start
        self.epoch_seconds.append(seconds)
        self.timed.append((self.stage, seconds))
        row = dict(zip(self.recorder.metric_names, self.recorder.log))
        metrics = {k: _num(v) for k, v in row.items() if k not in ("epoch", "train_loss", "valid_loss", "time")}
        self.reporter.emit(EpochEvent(stage=self.stage, epoch=int(row["epoch"]), train_loss=_num(row.get("train_loss")),
                                      valid_loss=_num(row.get("valid_loss")), metrics=metrics, seconds=seconds))

    def after_fit(self):
        self.side = False


def _num(v) -> float | None:
    """A logged value as a plain float (None when fastai skipped the pass; the event nulls a NaN)."""
    return None if v is None else float(v)


class KeepBestCallback(TrackerCallback):
    """Saves the weights whenever the monitored metric improves, across all stages of a run."""

    def __init__(self, monitor: str, fname: str = "best"):
        super().__init__(monitor=monitor, reset_on_fit=False)  # one best over every stage
        self.fname = fname

    def before_fit(self):
        self.best = position(self.learn).best  # the run's best so far (a resumed one's too); None starts afresh
        super().before_fit()

    def after_epoch(self):
        pos = position(self.learn)
        if self.epoch < pos.first_epoch:
            return  # skipped by a resumed fit: the recorder holds no values for it
        super().after_epoch()
        if self.new_best:
            pos.best = float(self.best)
            pos.best_at = BestEpoch(stage=pos.stage, epoch=self.epoch, metric=self.monitor, value=pos.best)
            self.learn.save(self.fname, with_opt=False)
