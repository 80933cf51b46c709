"""Progress for every phase: the worker reports the LR finder's steps, training, the final scoring and TTA's passes
with the counts fastai really ran, and the run page says each in words (server-rendered and live, the same)."""
from __future__ import annotations

import pytest
from fastai.callback.core import Callback

from fitboard.app.core.schemas import parse_spec
from fitboard.worker.engine import run_recipe
from fitboard.worker.reporters import ListReporter
from tests.helpers import tiny_recipe

FINDER_STEPS, TTA_N = 12, 2


class CountPasses(Callback):
    """What fastai really ran: LR-finder training steps, and the prediction passes (get_preds, TTA) after training."""

    def __init__(self):
        self.finder_steps, self.prediction_passes = 0, 0

    def after_batch(self):
        if self.training and hasattr(self.learn, "lr_finder"):
            self.finder_steps += 1

    def before_validate(self):
        if hasattr(self.learn, "gather_preds"):
            self.prediction_passes += 1


@pytest.fixture(scope="module")
def phased_run(data_root, tmp_path_factory):
    """One stage after an LR finder, then TTA: every progress event and what fastai ran."""
    recipe = tiny_recipe(tta={"n": TTA_N, "use_max": False})
    recipe["stages"] = [{"epochs": 1, "size": 28, "presize": 32, "bs": 32, "lr": "find",
                         "lr_find_iters": FINDER_STEPS}]
    reporter, probe = ListReporter(), CountPasses()
    run_recipe(parse_spec(recipe), reporter, data_root, tmp_path_factory.mktemp("phases"), extra_cbs=(probe,),
               num_workers=0)
    return reporter, probe


def positions(reporter, kind: str) -> list[int]:
    return [i for i, e in enumerate(reporter.events) if e.event == kind]


def test_lr_finder_reports_each_step_up_to_the_count_it_ran(phased_run):
    reporter, probe = phased_run
    finder = [e for e in reporter.of("progress") if e.phase == "lr_find"]
    curve = reporter.of("lr_find")[0]
    assert probe.finder_steps >= 2 and len(curve.lrs) == probe.finder_steps  # the curve keeps every step here
    assert finder and finder[-1].batch == probe.finder_steps  # the last step reported is the last step run
    assert all(e.total == FINDER_STEPS and e.stage == 0 and e.stage_count == 1 and e.eta >= 0 for e in finder)
    assert [e.batch for e in finder] == sorted(set(e.batch for e in finder))  # steps only go forward, each once
    first_stage = positions(reporter, "stage")[0]
    assert all(i < first_stage for i, e in enumerate(reporter.events) if getattr(e, "phase", None) == "lr_find")


def test_training_progress_is_the_train_phase(phased_run):
    reporter, _ = phased_run
    train = [e for e in reporter.of("progress") if e.phase == "train"]
    assert train and all(e.run_eta is not None and e.epoch_count == 1 for e in train)
    assert set(e.phase for e in reporter.of("progress")) == {"lr_find", "train", "score", "tta"}


def test_final_scoring_then_every_tta_pass_in_order(phased_run):
    reporter, probe = phased_run
    events = reporter.events
    last_epoch, result = positions(reporter, "epoch")[-1], positions(reporter, "result")[0]
    finishing = [(i, e) for i, e in enumerate(events) if getattr(e, "phase", None) in ("score", "tta")]
    assert finishing and all(last_epoch < i < result for i, _ in finishing)
    phases = [e.phase for _, e in finishing]
    assert phases == sorted(phases, key=("score", "tta").index)  # scoring first, then TTA
    score = [e for _, e in finishing if e.phase == "score"]
    assert score and len({e.total for e in score}) == 1 and all(1 <= e.batch <= e.total for e in score)
    tta = [e for _, e in finishing if e.phase == "tta"]
    passes = [p for i, p in enumerate(e.batch for e in tta) if i == 0 or p != tta[i - 1].batch]
    # fastai's TTA: n augmented passes and one plain one, after the one scoring pass.
    assert passes == list(range(1, TTA_N + 2)) and probe.prediction_passes == 1 + TTA_N + 1
    assert all(e.total == TTA_N + 1 and e.eta >= 0 and e.run_eta == e.eta for e in tta)
    assert all(e.run_eta >= e.eta >= 0 for e in score)
