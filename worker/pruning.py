"""A search trial in the worker: report the metric after every epoch to its Optuna trial, stop the fit at the epoch
the pruner says, and hand the search back to its driver when the run ends."""
from __future__ import annotations

import logging
import math

import optuna
from fastai.callback.core import Callback
from sqlalchemy import Engine

from fitboard.app.services import studies
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from fitboard.app.store.searches import get_search
from fitboard.worker.callbacks import in_side_loop
from fitboard.worker.position import position, stop_training

log = logging.getLogger(__name__)


class PruneCallback(Callback):
    """After each epoch: trial.report(metric, step), then stop if should_prune. The step is the number of epochs
    trained so far, stages end to end (the resource successive halving counts: rung 0 is min_resource epochs)."""

    order = 70  # after the report (61) and the checkpoint (65): the epoch's row and checkpoint are stored first

    def __init__(self, trial: optuna.Trial, metric: str, stage_epochs: list[int]):
        self.trial, self.metric = trial, metric
        self.offsets = [sum(stage_epochs[:i]) for i in range(len(stage_epochs))]
        self.last_step = sum(stage_epochs)
        self.pruned: dict | None = None  # where the pruner stopped the run

    def after_epoch(self):
        if in_side_loop(self.learn):
            return
        at = position(self.learn)
        if self.epoch < at.first_epoch:
            return  # replayed by a resumed fit: reported by the attempt that trained it
        row = dict(zip(self.recorder.metric_names, self.recorder.log))
        value = row.get(self.metric)
        value = float(value) if value is not None else math.nan
        step = self.offsets[at.stage] + self.epoch + 1
        try:
            self.trial.report(value, step)
            # The last epoch is never pruned: the trial has done all it was asked, and its final metric counts.
            prune = step < self.last_step and self.trial.should_prune()
        except Exception as exc:  # the study unreachable for a moment: train on rather than lose the trial
            log.warning("trial %s: could not report epoch %s to Optuna (%s)", self.trial.number, step, exc)
            return
        if prune:
            self.pruned = {"stage": at.stage, "epoch": self.epoch, "step": step, "metric": self.metric,
                           "value": None if math.isnan(value) else value}
            stop_training(self.learn, "pruned by its search")  # the task stores it pruned, not cancelled


def trial_callback(engine: Engine, run: Run) -> PruneCallback | None:
    """The pruning callback for a search trial's run; None for any other run."""
    if run.search_id is None or run.trial_number is None:
        return None
    with session_scope(engine) as session:
        search = get_search(session, run.search_id)
    return PruneCallback(studies.trial(engine, search, run.trial_number), search.options["metric"],
                         [int(s["epochs"]) for s in run.spec["stages"]])
