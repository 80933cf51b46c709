"""The worker's pruning callback on a real fastai learner and a real Optuna study in fitboard's SQLite database."""
from __future__ import annotations

from types import SimpleNamespace

import optuna
from fastai.test_utils import synth_learner

from fitboard.app.services import studies
from fitboard.worker.callbacks import ReportCallback
from fitboard.worker.position import Position
from fitboard.worker.pruning import PruneCallback
from fitboard.worker.reporters import ListReporter
from tests.store_fixtures import *  # noqa: F401,F403

OPTIONS = {"pruner": "asha", "min_resource": 1, "reduction_factor": 2}


def _trial(url: str, name: str) -> optuna.Trial:
    study = optuna.create_study(study_name=name, storage=studies.storage(url),
                                pruner=studies.pruner(OPTIONS, total_epochs=4))
    return study, study.ask()


def test_a_resumed_trial_reports_only_the_epochs_it_trains_counting_epochs_trained(sqlite_url):
    study, trial = _trial(sqlite_url, "resume")
    report = ReportCallback(ListReporter())
    prune = PruneCallback(trial, "valid_loss", [4])
    learn = synth_learner(cbs=[report, prune])
    # Resumed after a checkpoint of epoch 2 (0-based 1): epochs 0 and 1 are replayed. The callbacks read the run's
    # position from the learner, as a TrainingRun sets it.
    learn.training_run = SimpleNamespace(position=Position(stage=0, first_epoch=2))
    learn.fit(4, lr=1e-2, start_epoch=2)
    assert sorted(study.trials[0].intermediate_values) == [3, 4]  # steps = epochs trained; none twice
    assert prune.pruned is None


def test_a_trial_far_behind_the_others_at_a_rung_is_stopped_there(sqlite_url):
    study, _ = _trial(sqlite_url, "rung")
    for value in (1e-6, 2e-6):  # two finished trials with tiny losses at every step
        t = study.ask()
        for step in range(1, 5):
            t.report(value, step)
            t.should_prune()  # as their workers asked: it records the rungs they reached
        study.tell(t, value)
    bad = study.ask()
    report = ReportCallback(ListReporter())
    prune = PruneCallback(bad, "valid_loss", [4])
    learn = synth_learner(cbs=[report, prune])
    stops = []
    learn.training_run = SimpleNamespace(position=Position(), stop=stops.append)  # as a TrainingRun's stop() hears it
    learn.fit(4, lr=1e3)  # a rate that sends the loss far above theirs
    assert prune.pruned is not None and prune.pruned["step"] == 1 and stops == ["pruned by its search"]
    assert len(learn.recorder.values) == 1  # the fit ended after its first epoch
    assert sorted(study.trials[bad.number].intermediate_values) == [1]  # stopped at the first rung, not after 4
