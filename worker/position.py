"""Where a training run stands: the one place every callback reads it from (as fastai callbacks read `learn`), and
the one way a callback stops it."""
from __future__ import annotations

from dataclasses import dataclass, field

from fastai.callback.core import CancelFitException

from fitboard.app.core.events import BestEpoch, StageSummary


@dataclass
class Position:
    """The run's position: the stage in training, the first epoch this attempt trains, the stage's rate, the stages
    done and keep-best's best so far. A checkpoint saves it after every epoch; a resume restores it before the loop."""

    stage: int = 0
    first_epoch: int = 0  # a resumed fit replays the epochs before this one without training them
    lr: float | list[float] | None = None  # the stage's rate (given, or found by the LR finder)
    stages_done: list[StageSummary] = field(default_factory=list)
    best: float | None = None  # keep-best's monitored value so far (None: no epoch improved on nothing yet)
    best_at: BestEpoch | None = None
    smooth_loss: dict | None = None  # a resumed stage's first epoch continues the lost one's smoothed train loss


def position(learn) -> Position:
    """The position of the run a learner trains (a learner outside a TrainingRun stands at the start)."""
    run = getattr(learn, "training_run", None)
    return run.position if run is not None else Position()


def stop_training(learn, reason: str) -> None:
    """End the fit now and the run after it: the learner's TrainingRun.stop(reason) records why and raises fastai's
    CancelFitException (a learner outside a TrainingRun just stops its fit)."""
    run = getattr(learn, "training_run", None)
    if run is not None:
        run.stop(reason)
    raise CancelFitException()


def find_cb(learn, cls):
    """The learner's callback of a type, or None: callbacks are found by type, never by their place in a list."""
    return next((cb for cb in learn.cbs if isinstance(cb, cls)), None)
