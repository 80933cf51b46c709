"""The engine: every chapter-7 technique really acts, shown on real training of the digits data."""
from __future__ import annotations

import csv
import json
import shutil
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from fastai.callback.core import Callback
from fastai.learner import load_learner
from fastai.vision.all import Normalize, Resize, imagenet_stats

from fitboard.app.core.datasets import resolve_dataset
from fitboard.app.core.demo_data import DIGIT_NAMES
from fitboard.app.core.schemas import parse_spec
from fitboard.worker.checkpoint import CheckpointCallback
from fitboard.worker.data import items_frame, make_dls, norm_stats
from fitboard.worker.engine import run_recipe
from fitboard.worker.reporters import ListReporter
from fitboard.worker.weights import WeightsMissing
from tests.helpers import tiny_recipe


class Probe(Callback):
    """Records, per fit, what the training loop actually saw: batch shapes, lrs per group, loss, MixUp."""

    order = 90  # after MixUp has mixed the batch

    def __init__(self):
        self.all_fits = []

    @property
    def fits(self):
        """Fits that trained (TTA also fires before_fit, with no training batch)."""
        return [f for f in self.all_fits if f["shapes"]]

    def before_fit(self):
        if hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds"):
            return
        self.all_fits.append({"shapes": set(), "group_lrs": [0.0] * len(self.opt.hypers) if self.opt else [],
                          "loss": self.learn.loss_func, "mixup_lams": []})

    def before_batch(self):
        if not self.training or hasattr(self.learn, "lr_finder") or not self.all_fits:
            return
        fit = self.all_fits[-1]
        fit["shapes"].add(tuple(self.xb[0].shape[1:]))
        fit["group_lrs"] = [max(a, h["lr"])
                            for a, h in zip(fit["group_lrs"] or [0.0] * len(self.opt.hypers), self.opt.hypers)]
        if hasattr(self.learn, "mix_up"):
            fit["mixup_lams"].append(float(self.learn.mix_up.lam.mean()))


FULL = tiny_recipe(
    name="full", label_smoothing=0.1, keep_best="accuracy", tta={"n": 2, "use_max": False},
    stages=[
        {"epochs": 2, "size": 32, "presize": 40, "bs": 32, "freeze": True, "lr": "find", "lr_find_iters": 20},
        {"epochs": 1, "size": 40, "presize": 48, "bs": 32, "freeze": False, "lr": [1e-4, 1e-2], "mixup": 0.4},
        # A learning rate far too high wrecks the weights, so keep-best must bring earlier ones back.
        {"epochs": 1, "size": 40, "presize": 48, "bs": 32, "freeze": False, "lr": 10.0},
    ])


@pytest.fixture(scope="module")
def full_run(data_root, tmp_path_factory):
    """One run with every technique on, and what the probe saw."""
    reporter, probe = ListReporter(), Probe()
    out = tmp_path_factory.mktemp("full-run")
    result = run_recipe(parse_spec(FULL), reporter, data_root, out, extra_cbs=(probe,))
    return reporter, probe, result, out


def test_progressive_resizing_changes_batch_size_per_stage(full_run):
    _, probe, _, _ = full_run
    assert [fit["shapes"] for fit in probe.fits] == [{(3, 32, 32)}, {(3, 40, 40)}, {(3, 40, 40)}]


def test_lr_find_runs_first_and_its_valley_is_used(full_run):
    reporter, probe, _, _ = full_run
    finds = reporter.of("lr_find")
    assert [f.stage for f in finds] == [0]
    assert len(finds[0].lrs) == 20 and finds[0].suggestion > 0
    stage0 = reporter.of("stage")[0]
    assert stage0.lr == finds[0].suggestion
    # the one-cycle peak, sampled per batch
    assert max(probe.fits[0]["group_lrs"]) == pytest.approx(finds[0].suggestion, rel=0.05)


def test_discriminative_rates_give_each_group_its_own_lr(full_run):
    _, probe, _, _ = full_run
    lrs = probe.fits[1]["group_lrs"]
    assert lrs[0] == pytest.approx(1e-4, rel=0.05) and lrs[-1] == pytest.approx(1e-2, rel=0.05)
    assert lrs == sorted(lrs) and len(set(lrs)) == len(lrs)
    assert len(set(probe.fits[0]["group_lrs"])) == 1  # a plain number: one rate for all groups


def test_freeze_then_unfreeze(full_run):
    reporter, _, _, _ = full_run
    ends = reporter.of("stage_end")
    assert ends[0].trainable_params < ends[0].params
    assert ends[1].trainable_params == ends[1].params


def test_mixup_acts_only_in_its_stage(full_run):
    _, probe, _, _ = full_run
    lams = probe.fits[1]["mixup_lams"]
    assert lams and all(0.5 <= lam < 1 for lam in lams)  # fastai keeps the larger share of each pair
    assert not probe.fits[0]["mixup_lams"] and not probe.fits[2]["mixup_lams"]


def test_label_smoothing_loss(full_run):
    _, probe, _, _ = full_run
    loss = probe.fits[0]["loss"]
    assert type(loss).__name__ == "LabelSmoothingCrossEntropy" and loss.eps == 0.1


def test_keep_best_reloads_the_best_weights(full_run):
    reporter, _, result, _ = full_run
    rows = reporter.of("epoch")
    assert [(r.stage, r.epoch) for r in rows] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    best = max(rows, key=lambda r: r.metrics["accuracy"])
    assert result.best.value == pytest.approx(best.metrics["accuracy"])
    assert (result.best.stage, result.best.epoch) == (best.stage, best.epoch)
    assert result.metrics.accuracy == pytest.approx(best.metrics["accuracy"], abs=1e-6)
    assert result.metrics.accuracy > rows[-1].metrics["accuracy"]  # the wrecked last epoch


def test_tta_is_reported_beside_plain_metrics(full_run):
    _, _, result, _ = full_run
    assert result.tta.n == 2 and result.tta.use_max is False
    assert 0 <= result.tta.accuracy <= 1


def test_the_final_metrics_are_what_the_exported_model_predicts_on_the_validation_set(full_run, data_root):
    """The oracle: the exported model, loaded as production loads it, predicts every validation image again; the
    reported accuracy and error rate are the share it gets right and wrong, counted here with plain torch."""
    _, _, result, out = full_run
    learn = load_learner(out / "model.pkl")
    frame = items_frame(resolve_dataset("digits", data_root))
    valid = frame[frame["is_valid"]].reset_index(drop=True)
    preds, _ = learn.get_preds(dl=learn.dls.test_dl(valid))
    labels = torch.tensor([list(learn.dls.vocab).index(label) for label in valid["label"]])
    right = int((preds.argmax(1) == labels).sum())
    assert 0 < right < len(valid)  # a model that is neither always right nor always wrong: the count means something
    assert result.metrics.accuracy == pytest.approx(right / len(valid), abs=1e-6)
    assert result.metrics.error_rate == pytest.approx((len(valid) - right) / len(valid), abs=1e-6)
    with (out / "predictions.csv").open(newline="") as fh:
        wrong = sum(row["correct"] == "0" for row in csv.DictReader(fh))
    assert wrong == len(valid) - right  # the per-image file counts the same mistakes


def test_confusion_matrix_top_losses_and_exported_model(full_run, data_root):
    reporter, _, result, out = full_run
    n_valid = reporter.of("start")[0].dataset["n_valid"]
    confusion = result.confusion
    # The dataset's label order (the digits label map: zero..nine), not alphabetical (eight, five, four, ...).
    assert confusion.labels == list(DIGIT_NAMES) and sum(map(sum, confusion.matrix)) == n_valid
    losses = [t.loss for t in result.top_losses]
    assert losses == sorted(losses, reverse=True) and result.top_losses[0].image_id.endswith(".jpg")
    learn = load_learner(out / "model.pkl")  # our own export, written by this test's run
    ds = resolve_dataset("digits", data_root)
    label, _, _ = learn.predict(str(ds.items[0].path))
    assert label in confusion.labels
    assert (out / "predictions.csv").read_text().count("\n") == n_valid + 1


def test_epoch_rows_and_throttled_progress(full_run):
    reporter, _, _, _ = full_run
    for row in reporter.of("epoch")[:-1]:
        assert set(row.metrics) == {"accuracy", "error_rate"} and row.seconds > 0
        assert row.train_loss > 0 and row.valid_loss > 0
    wrecked = reporter.of("epoch")[-1]  # lr 10 diverges: a NaN loss is reported as null, never as bare NaN
    assert wrecked.train_loss is None or wrecked.train_loss > 0
    for event in reporter.events:
        json.dumps(event.to_json(), allow_nan=False)
    progress = [p for p in reporter.of("progress") if p.phase == "train"]  # the other phases: test_progress_phases
    assert progress and all(p.batch <= p.total and p.eta >= 0 for p in progress)
    # "stage s of S · epoch e of E" and a whole-run ETA that covers at least the rest of this epoch, shrinking.
    assert all(p.stage_count == 3 and p.epoch_count == FULL["stages"][p.stage]["epochs"] for p in progress)
    assert all(p.run_eta >= p.eta for p in progress) and progress[0].run_eta > progress[-1].run_eta
    for a, b in zip(progress, progress[1:]):
        if (a.stage, a.epoch) == (b.stage, b.epoch):
            assert b.elapsed - a.elapsed >= 0.45  # at most two progress events a second


def dls_for(data_root, normalize):
    """DataLoaders for the tiny recipe's first stage under a normalize setting."""
    spec = parse_spec(tiny_recipe(normalize=normalize))
    ds = resolve_dataset("digits", data_root)
    return make_dls(items_frame(ds), ds.classes, spec.stages[0], norm_stats(normalize, ds, spec.seed), num_workers=0)


def test_normalization_settings(data_root):
    raw = dls_for(data_root, "none").one_batch()[0]
    assert raw.min() >= 0 and raw.max() <= 1
    imagenet = dls_for(data_root, "imagenet")
    norm = [t for t in imagenet.after_batch.fs if isinstance(t, Normalize)]
    assert torch.allclose(norm[0].mean.flatten().cpu(), torch.tensor(imagenet_stats[0]))
    x = dls_for(data_root, "dataset").valid.one_batch()[0]
    means, stds = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    assert means.abs().max() < 0.25 and ((stds > 0.75) & (stds < 1.25)).all()


def test_presize_is_the_item_resize(data_root):
    dls = dls_for(data_root, "none")
    resize = [t for t in dls.train.after_item.fs if isinstance(t, Resize)]
    assert resize[0].size == (40, 40) and dls.one_batch()[0].shape[-2:] == (32, 32)


def test_seed_reproduces_first_epoch_and_fp16_falls_back_on_cpu(data_root, tmp_path):
    def first_epoch(seed):
        reporter = ListReporter()
        run_recipe(parse_spec(tiny_recipe(seed=seed, precision="fp16")), reporter, data_root, tmp_path / str(seed))
        return reporter
    a, b, c = first_epoch(3), first_epoch(3), first_epoch(4)
    def loss(r):
        return r.of("epoch")[0].train_loss
    assert loss(a) == pytest.approx(loss(b), abs=1e-6) and loss(a) != pytest.approx(loss(c), abs=1e-6)
    if not torch.cuda.is_available():
        assert any("fp16" in n.message and "fp32" in n.message for n in a.of("note"))
        assert any("fp16" in n for n in a.of("result")[0].notes)


def test_missing_pretrained_weights_fail_at_once_with_directions(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    reporter = ListReporter()
    with pytest.raises(WeightsMissing) as info:
        run_recipe(parse_spec(tiny_recipe(pretrained=True)), reporter, data_root, tmp_path / "out")
    assert str(tmp_path / "empty-torch-home" / "hub" / "checkpoints") in str(info.value)
    assert "pretrained: false" in str(info.value)
    assert not reporter.of("epoch")


class StopAfter(Callback):
    """Stands in for a lost worker: interrupts the run right after a given epoch (counted over all stages)."""

    order = 99

    def __init__(self, epochs: int):
        self.left = epochs

    def after_epoch(self):
        if not hasattr(self.learn, "lr_finder") and not hasattr(self.learn, "gather_preds"):
            self.left -= 1
            if self.left == 0:
                raise KeyboardInterrupt("worker lost")


RESUMABLE = tiny_recipe(name="resumable", keep_best="accuracy", stages=[
    {"epochs": 3, "size": 24, "presize": 32, "bs": 32, "lr": "find", "lr_find_iters": 10},
    {"epochs": 2, "size": 32, "bs": 32, "lr": [1e-4, 1e-3], "mixup": 0.2}])


class Straight(NamedTuple):
    """RESUMABLE trained without interruption: what every resumed attempt below must reproduce."""

    reporter: ListReporter
    seen: list  # (stage, epoch) as a callback ordered after the checkpoint callback saw them (AfterCheckpoint)
    model: Path


@pytest.fixture(scope="module")
def straight(data_root, tmp_path_factory) -> Straight:
    """RESUMABLE trained once for the module (each resume test compares with it; it trained three times before)."""
    folder, reporter, after = tmp_path_factory.mktemp("straight"), ListReporter(), AfterCheckpoint()
    run_recipe(parse_spec(RESUMABLE), reporter, data_root, folder, num_workers=0, checkpoints=True, extra_cbs=(after,))
    return Straight(reporter, after.seen, folder / "model.pkl")


@pytest.mark.parametrize("lost_after", [2, 3], ids=["mid-stage", "stage-boundary"])
def test_a_resumed_run_reproduces_the_uninterrupted_losses(data_root, tmp_path, lost_after, straight):
    straight = straight.reporter
    first, second = ListReporter(), ListReporter()
    with pytest.raises(KeyboardInterrupt):
        run_recipe(parse_spec(RESUMABLE), first, data_root, tmp_path / "lost", num_workers=0, checkpoints=True,
                   extra_cbs=(StopAfter(lost_after),))
    while any(t.name == "fitboard-checkpoint" for t in threading.enumerate()):
        time.sleep(0.05)  # a real successor starts long after the lost worker's last checkpoint write ends
    result = run_recipe(parse_spec(RESUMABLE), second, data_root, tmp_path / "lost", num_workers=0,
                        checkpoints=True, resume=True)
    start = second.of("start")[0].resumed_from
    assert start == ({"stage": 0, "epoch": 2} if lost_after == 2 else {"stage": 1, "epoch": 0})
    assert not second.of("lr_find")  # the stage's rate comes from the checkpoint, not a new search
    rows = {(e.stage, e.epoch): e for e in first.of("epoch") + second.of("epoch")}
    expected = straight.of("epoch")
    assert sorted(rows) == [(e.stage, e.epoch) for e in expected]
    for e in expected:  # CPU, num_workers 0, fixed seed: the same numbers, not merely close ones
        got = rows[(e.stage, e.epoch)]
        assert got.train_loss == pytest.approx(e.train_loss, abs=1e-6)
        assert got.valid_loss == pytest.approx(e.valid_loss, abs=1e-6)
    assert result.best.model_dump() == straight.of("result")[0].best.model_dump()


class AfterCheckpoint(Callback):
    """A callback ordered after the checkpoint callback, as a pruner or a reporter would be: it reads the run's
    position from the learner (learn.training_run) and records each trained epoch as (stage, epoch)."""

    order = CheckpointCallback.order + 5

    def __init__(self):
        self.seen = []

    def after_epoch(self):
        if hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds"):
            return
        position = self.learn.training_run.position
        if self.epoch >= position.first_epoch:
            self.seen.append((position.stage, self.epoch))


def _weights(path):
    """The exported model's weights, loaded fresh from its file."""
    return {k: v.clone() for k, v in load_learner(path).model.state_dict().items()}


def test_a_callback_after_the_checkpoint_callback_keeps_a_resume_exact(data_root, tmp_path, straight):
    model, after_seen, straight = straight.model, straight.seen, straight.reporter
    first, second, lost_after, resumed_after = ListReporter(), ListReporter(), AfterCheckpoint(), AfterCheckpoint()
    with pytest.raises(KeyboardInterrupt):
        run_recipe(parse_spec(RESUMABLE), first, data_root, tmp_path / "lost", num_workers=0, checkpoints=True,
                   extra_cbs=(lost_after, StopAfter(2)))
    while any(t.name == "fitboard-checkpoint" for t in threading.enumerate()):
        time.sleep(0.05)
    run_recipe(parse_spec(RESUMABLE), second, data_root, tmp_path / "lost", num_workers=0, checkpoints=True,
               resume=True, extra_cbs=(resumed_after,))
    assert after_seen == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert lost_after.seen + resumed_after.seen == after_seen  # the resumed attempt starts at stage 0 epoch 2
    rows = {(e.stage, e.epoch): (e.train_loss, e.valid_loss) for e in first.of("epoch") + second.of("epoch")}
    assert rows.keys() == {(e.stage, e.epoch) for e in straight.of("epoch")}
    for e in straight.of("epoch"):
        assert rows[(e.stage, e.epoch)] == pytest.approx((e.train_loss, e.valid_loss), abs=1e-6)
    expected, got = _weights(model), _weights(tmp_path / "lost" / "model.pkl")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():  # the same model, weight for weight
        assert torch.allclose(got[name].float(), tensor.float(), atol=1e-6), name


def test_a_run_resumes_on_another_hosts_folder_through_the_artifact_store(data_root, tmp_path):
    """The lost worker's folder is gone (another host): checkpoint and keep-best weights come from the store; and a
    checkpoint whose best weights never reached the store resumes with a note instead of failing at the end."""
    from fitboard.app.core.artifacts import DirectoryStore
    from fitboard.worker.checkpoint import CheckpointFiles

    store = DirectoryStore(tmp_path / "shared")
    first = ListReporter()
    with pytest.raises(KeyboardInterrupt):
        run_recipe(parse_spec(RESUMABLE), first, data_root, tmp_path / "host-a", num_workers=0, checkpoints=True,
                   checkpoint_files=CheckpointFiles(tmp_path / "host-a", store, 1), extra_cbs=(StopAfter(2),))
    while any(t.name == "fitboard-checkpoint" for t in threading.enumerate()):
        time.sleep(0.05)
    assert store.local_path(1, "checkpoint") and store.local_path(1, "best")  # both reached the store
    shutil.copytree(tmp_path / "shared", tmp_path / "shared-without-best")
    broken = DirectoryStore(tmp_path / "shared-without-best")
    broken.delete(1, "best")

    second = ListReporter()
    result = run_recipe(parse_spec(RESUMABLE), second, data_root, tmp_path / "host-b", num_workers=0,
                        checkpoints=True, resume=True, checkpoint_files=CheckpointFiles(tmp_path / "host-b", store, 1))
    assert second.of("start")[0].resumed_from == {"stage": 0, "epoch": 2}
    rows = first.of("epoch") + second.of("epoch")
    top = max(rows, key=lambda e: e.metrics["accuracy"])  # keep-best saw every epoch, across both hosts
    assert (result.best.stage, result.best.epoch) == (top.stage, top.epoch)

    third = ListReporter()
    result = run_recipe(parse_spec(RESUMABLE), third, data_root, tmp_path / "host-c", num_workers=0,
                        checkpoints=True, resume=True, checkpoint_files=CheckpointFiles(tmp_path / "host-c", broken, 1))
    assert any("were not stored with the checkpoint" in n.message for n in third.of("note"))
    assert result.best is not None and (result.best.stage, result.best.epoch) >= (0, 2)  # from the resume on


class CancelAfter(ListReporter):
    """Answers the cancel poll with yes from its second poll on (the first comes with the first batch)."""

    def __init__(self):
        super().__init__()
        self.polls = 0

    def should_cancel(self) -> bool:
        self.polls += 1
        return self.polls > 1


def test_a_cancel_during_the_lr_finder_stops_it_before_any_training(data_root, tmp_path):
    from fitboard.worker.engine import RunCancelled

    recipe = tiny_recipe()
    recipe["stages"][0].update(lr="find", lr_find_iters=1000)  # minutes of finder if the cancel went unheard
    reporter = CancelAfter()
    start = time.monotonic()
    with pytest.raises(RunCancelled):
        run_recipe(parse_spec(recipe), reporter, data_root, tmp_path / "out", num_workers=0)
    assert time.monotonic() - start < 60 and reporter.polls >= 2
    assert not reporter.of("epoch") and not reporter.of("stage")  # the stage never started training
