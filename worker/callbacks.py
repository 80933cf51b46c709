"""fastai callbacks that report a run's progress and epochs, poll for cancel, and keep the best weights."""
from __future__ import annotations

import time
from contextlib import contextmanager

from fastai.callback.core import Callback
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Recorder

from fitboard.app.core.events import BestEpoch, EpochEvent, ProgressEvent
from fitboard.app.core.numbering import run_eta
from fitboard.app.core.progress import LR_FIND, SCORE, TRAIN, TTA
from fitboard.worker.position import position, stop_training
from fitboard.worker.reporters import Reporter

PROGRESS_INTERVAL = 0.5  # at most 2 progress events a second
CANCEL_INTERVAL = 0.5  # how often the reporter (maybe a database) is asked about cancel


def in_side_loop(learn) -> bool:
    """True while fastai runs lr_find or get_preds, which are not epochs of the run."""
    return hasattr(learn, "lr_finder") or hasattr(learn, "gather_preds")


class ReportCallback(Callback):
    """Sends progress (throttled) and one row per epoch to a Reporter; stops the run when cancel is asked."""

    order = Recorder.order + 1  # after Recorder so the epoch's log is complete

    def __init__(self, reporter: Reporter, plan: list[tuple[int, int]] | None = None, final_passes: int = 0):
        self.reporter, self.side = reporter, False
        self.plan = plan or []  # (epochs, size) per stage: for "epoch e of E" and the whole-run ETA
        self.final_passes = final_passes  # validation passes after training (scoring, TTA): the ETA counts them
        self.epoch_seconds: list[float] = []
        # (stage, seconds, of which training, of which validation) per epoch trained by this attempt: the run's ETA
        self.timed: list[tuple[int, float, float, float]] = []
        self._train_seconds = self._valid_seconds = self._valid_start = 0.0
        self._last_progress = self._last_cancel_check = 0.0
        self._finder: tuple[int, int, float] | None = None  # LR finder: (steps so far, planned steps, start)
        self._finder_shown = 0  # the last LR-finder step reported
        self._finish: _Finishing | None = None  # the final scoring and TTA, while they run
        self._first_batch = True

    def before_fit(self):
        # lr_find and get_preds are not epochs of the run: no rows from them, but a cancel (or a stopping worker)
        # still counts, or it would wait out a long LR finder; the LR finder reports its own progress.
        self.side = in_side_loop(self.learn)
        finder = getattr(self.learn, "lr_finder", None)
        self._finder = (0, finder.num_it, time.perf_counter()) if finder is not None else None
        self._finder_shown = 0
        self._first_batch = True  # of this fit: said at once, however soon after the LR finder's last step

    @contextmanager
    def finishing(self, tta_passes: int):
        """Progress for the evaluation after training: one scoring pass over the validation set (get_preds), then
        tta_passes passes of TTA (fastai's n augmented passes and one plain one), in that order."""
        self._finish = _Finishing(tta_passes, time.perf_counter())
        try:
            yield
        finally:
            self._finish = None

    def before_validate(self):
        self._valid_start = time.perf_counter()
        if self._finish is not None:
            self._finish.passes += 1
            if self._finish.passes > 1:  # every TTA pass is announced as it starts (a few events in all)
                self._emit_finishing(time.perf_counter())

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

    def after_train(self):
        self._train_seconds = time.perf_counter() - self._train_start

    def after_validate(self):
        self._valid_seconds = time.perf_counter() - self._valid_start

    def after_batch(self):
        if not self.training:
            if self._finish is not None:
                self._finish.batches += 1
                self._finish.per_pass = self.n_iter
                if self._finish.batches == 1:
                    self._last_progress = 0.0  # the scoring's first batch is always said, however soon after training
                self._throttled(self._emit_finishing)
            return
        now = time.perf_counter()
        if now - self._last_cancel_check >= CANCEL_INTERVAL:
            self._last_cancel_check = now
            if self.reporter.should_cancel():
                stop_training(self.learn, "cancelled")
        if self._finder is not None:
            steps, planned, start = self._finder
            self._finder = (steps + 1, planned, start)
            self._throttled(self._emit_finder)
        elif not self.side:
            if self._first_batch:  # a short stage could otherwise pass unreported, throttled behind the finder
                self._first_batch, self._last_progress = False, 0.0
            self._throttled(self._emit_progress)

    def _throttled(self, emit) -> None:
        """Call emit(now) at most every PROGRESS_INTERVAL."""
        now = time.perf_counter()
        if now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            emit(now)

    def _where(self) -> dict:
        """The fields every progress event of this run shares: the stage and its place in the plan."""
        known = self.stage < len(self.plan)
        return dict(stage=self.stage, stage_count=len(self.plan) or None,
                    epoch_count=self.plan[self.stage][0] if known else None)

    def _emit_finder(self, now: float) -> None:
        """'LR finder step n of N' (N: the steps asked for; the finder stops sooner when the loss diverges)."""
        steps, planned, start = self._finder
        elapsed, self._finder_shown = now - start, steps
        self.reporter.emit(ProgressEvent(**self._where(), epoch=0, batch=steps, total=planned, elapsed=elapsed,
                                         eta=elapsed / steps * max(planned - steps, 0), phase=LR_FIND))

    def _emit_finishing(self, now: float) -> None:
        """'scoring · batch b of B', then 'TTA pass p of P'; ETAs from the pace of the batches scored so far."""
        f = self._finish
        elapsed, per_batch = now - f.start, (now - f.start) / max(f.batches, 1)
        left_in_run = per_batch * max((1 + f.tta_passes) * f.per_pass - f.batches, 0)
        if f.passes <= 1:
            batch, total, left = self.iter + 1, self.n_iter, per_batch * max(self.n_iter - self.iter - 1, 0)
        else:
            batch, total, left = f.passes - 1, f.tta_passes, left_in_run
        self.reporter.emit(ProgressEvent(**self._where(), epoch=self.epoch, batch=batch, total=total,
                                         elapsed=elapsed, eta=left, run_eta=left_in_run,
                                         phase=SCORE if f.passes <= 1 else TTA))

    def _emit_progress(self, now: float) -> None:
        batch, total = self.iter + 1, self.n_iter
        elapsed = now - self._train_start
        smooth = self.recorder.smooth_loss.value
        self.reporter.emit(ProgressEvent(**self._where(), epoch=self.epoch, batch=batch, total=total, elapsed=elapsed,
                                         eta=elapsed / batch * (total - batch), phase=TRAIN,
                                         smooth_loss=None if smooth is None else float(smooth),
                                         run_eta=run_eta(self.plan, self.stage, self.epoch, batch, total, elapsed,
                                                         self.timed, len(self.dls.valid), self.final_passes)))

    def after_epoch(self):
        if self.side or self.epoch < self.first_epoch:
            return  # a side loop, or skipped by a resumed fit (fastai still calls after_epoch): its row is stored
        seconds = time.perf_counter() - self._epoch_start
        self.epoch_seconds.append(seconds)
        self.timed.append((self.stage, seconds, self._train_seconds, self._valid_seconds))
        row = dict(zip(self.recorder.metric_names, self.recorder.log))
        metrics = {k: _num(v) for k, v in row.items() if k not in ("epoch", "train_loss", "valid_loss", "time")}
        self.reporter.emit(EpochEvent(stage=self.stage, epoch=int(row["epoch"]), train_loss=_num(row.get("train_loss")),
                                      valid_loss=_num(row.get("valid_loss")), metrics=metrics, seconds=seconds))

    def after_fit(self):
        if self._finder is not None and self._finder[0] > self._finder_shown:
            self._emit_finder(time.perf_counter())  # the last step, unthrottled: the count the finder really ran
        self.side, self._finder = False, None


class _Finishing:
    """The final scoring and TTA as they run: validation passes started, batches scored, batches per pass."""

    def __init__(self, tta_passes: int, start: float):
        self.tta_passes, self.start = tta_passes, start
        self.passes = self.batches = self.per_pass = 0


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
