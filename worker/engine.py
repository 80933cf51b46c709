"""The recipe engine: a RunSpec becomes DataLoaders, a vision_learner and one fit_one_cycle per stage.

A TrainingRun owns one run's training and tells its story in order: resolve -> plan -> build -> restore -> stages ->
evaluate -> export. The learner carries the run (learn.training_run), so callbacks read its position from the
learner, as fastai callbacks read `learn`; they are found by type, never by their place in a list."""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision.models
from fastai.callback.core import CancelFitException
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropy
from fastai.metrics import accuracy, error_rate
from fastai.torch_core import set_seed
from fastai.vision.all import noop, valley, vision_learner

from fitboard.app.core.artifacts import file_name
from fitboard.app.core.datasets import ResolvedDataset, resolve_dataset
from fitboard.app.core.events import (
    Confusion,
    FinalMetrics,
    LRFindEvent,
    NoteEvent,
    ParamSummary,
    ResultEvent,
    SpeedReport,
    StageEndEvent,
    StageEvent,
    StagePlan,
    StageSummary,
    StartEvent,
    TopLoss,
    TTAMetrics,
)
from fitboard.app.core.schemas import RunSpec, StageSpec
from fitboard.app.core.settings import Settings
from fitboard.worker.callbacks import KeepBestCallback, ReportCallback
from fitboard.worker.checkpoint import (
    BEST_FILE,
    Checkpoint,
    CheckpointCallback,
    CheckpointFiles,
    restore_rng,
    restore_state,
)
from fitboard.worker.data import items_frame, make_dls, norm_stats
from fitboard.worker.frames import CachedFrames
from fitboard.worker.position import Position, find_cb
from fitboard.worker.reporters import Reporter
from fitboard.worker.speed import ChannelsLast, SpeedCallback, SpeedPlan, cuda_oom, default_num_workers, plan_speed
from fitboard.worker.weights import ensure_cached

TOP_LOSSES = 16
LR_CURVE_POINTS = 200


class RunCancelled(Exception):
    """Training was stopped (a user's cancel, a stopping worker, the search's pruner); epochs already reported stay."""


@dataclass
class Evaluation:
    """What the final scoring measured on the validation set, with the per-image predictions file it wrote."""

    metrics: FinalMetrics
    tta: TTAMetrics | None
    confusion: Confusion
    top_losses: list[TopLoss]
    predictions_path: str


def _build_learner(spec: RunSpec, dls, out_dir: Path, cbs: list, plan: SpeedPlan, settings: Settings,
                   reporter: Reporter):
    """vision_learner with our loss, metrics and callbacks; fastai's console bars and logger off."""
    if spec.pretrained:
        ensure_cached(spec.arch, download=settings.download_weights, mirror=settings.weights_mirror,
                      note=lambda message: reporter.emit(NoteEvent(message=message)))
    loss = LabelSmoothingCrossEntropy(eps=spec.label_smoothing) if spec.label_smoothing else CrossEntropyLossFlat()
    # normalize=False: the recipe decides normalization, not fastai's pretrained default.
    learn = vision_learner(dls, getattr(torchvision.models, spec.arch), normalize=False, pretrained=spec.pretrained,
                           loss_func=loss, metrics=[accuracy, error_rate], path=out_dir, model_dir=".", cbs=cbs)
    learn.remove_cb(ProgressCallback)
    learn.logger = noop
    if plan.precision == "fp16":
        learn.to_fp16()
    elif plan.precision == "bf16":
        learn.to_bf16()
    if plan.channels_last:
        learn.model.to(memory_format=torch.channels_last)
        learn.add_cb(ChannelsLast())
    return learn


def _lr_find(learn, stage_idx: int, num_it: int, reporter: Reporter) -> float:
    """Run the LR finder, report its curve and valley suggestion, and return the suggestion."""
    suggestion = float(learn.lr_find(num_it=num_it, show_plot=False, suggest_funcs=(valley,)).valley)
    lrs, losses = np.array(learn.recorder.lrs, dtype=float), np.array([float(x) for x in learn.recorder.losses])
    keep = np.unique(np.linspace(0, len(lrs) - 1, min(LR_CURVE_POINTS, len(lrs))).astype(int)) if len(lrs) else []
    if not np.isfinite(suggestion) or suggestion <= 0:
        reporter.emit(NoteEvent(message=f"stage {stage_idx}: lr_find gave no usable suggestion; using 1e-3"))
        suggestion = 1e-3
    reporter.emit(LRFindEvent(stage=stage_idx, suggestion=suggestion, method="valley", lrs=lrs[keep].tolist(),
                              losses=losses[keep].tolist()))
    return suggestion


def _param_summary(learn) -> ParamSummary:
    """Trainable parameters and per-group learning rates: evidence of freeze and discriminative rates."""
    total = sum(p.numel() for p in learn.model.parameters())
    trainable = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    group_lrs = [float(h["lr"]) for h in learn.opt.hypers] if learn.opt is not None else []
    return ParamSummary(params=total, trainable_params=trainable, group_lrs=group_lrs)


def _metrics(preds, targs, losses) -> FinalMetrics:
    """Loss, accuracy and error rate from gathered predictions."""
    acc = float((preds.argmax(1) == targs).float().mean())
    return FinalMetrics(valid_loss=float(losses.mean()) if losses is not None else None, accuracy=acc,
                        error_rate=1 - acc)


def _evaluate(learn, spec: RunSpec, out_dir: Path) -> Evaluation:
    """Final validation metrics, TTA, confusion matrix, top losses and a per-image predictions file."""
    preds, targs, losses = learn.get_preds(dl=learn.dls.valid, with_loss=True)
    vocab = list(learn.dls.vocab)
    tta = None
    if spec.tta:
        tp, tt = learn.tta(dl=learn.dls.valid, n=spec.tta.n, use_max=spec.tta.use_max)
        m = _metrics(tp, tt, None)
        tta = TTAMetrics(n=spec.tta.n, use_max=spec.tta.use_max, accuracy=m.accuracy, error_rate=m.error_rate)
    decoded = preds.argmax(1)
    n = len(vocab)
    cm = np.bincount(targs.numpy() * n + decoded.numpy(), minlength=n * n).reshape(n, n)
    valid_ids = learn.dls.valid.items["image_id"].tolist()
    order = torch.argsort(losses, descending=True)[:TOP_LOSSES].tolist()
    top_losses = [TopLoss(image_id=valid_ids[i], actual=vocab[int(targs[i])], predicted=vocab[int(decoded[i])],
                          loss=float(losses[i]), probability=float(preds[i, decoded[i]])) for i in order]
    pred_file = out_dir / file_name("predictions")
    with pred_file.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "actual", "predicted", "correct", "loss"])
        for i, image_id in enumerate(valid_ids):
            w.writerow([image_id, vocab[int(targs[i])], vocab[int(decoded[i])], int(targs[i] == decoded[i]),
                        f"{float(losses[i]):.6f}"])
    confusion = Confusion(labels=vocab, matrix=cm.tolist())
    return Evaluation(metrics=_metrics(preds, targs, losses), tta=tta, confusion=confusion, top_losses=top_losses,
                      predictions_path=str(pred_file))


def _vocab(classes: list[str]) -> pd.Series:
    """The dataset's classes as a pandas categorical: fastai's CategoryBlock sorts a plain list alphabetically
    ("eight, five, four") but keeps a categorical's order, so matrices and tables follow the dataset (zero..nine)."""
    return pd.Series(pd.Categorical(classes, categories=classes))


def _images_per_second(n_train: int, epoch_seconds: list[float]) -> float | None:
    """Training throughput over the whole run (validation passes included in the epoch time)."""
    return n_train * len(epoch_seconds) / sum(epoch_seconds) if epoch_seconds else None


class TrainingRun:
    """One run's training, owned in one place: the spec, its speed plan, the learner, where its files go (the
    checkpoint files, over the artifact store for a worker) and its position (stage, first epoch, rate, stages done,
    best so far). The learner carries it as learn.training_run; every callback reads the position from there and
    stops the run through stop()."""

    def __init__(self, spec: RunSpec, reporter: Reporter, data_root: Path, out_dir: Path, *, settings: Settings,
                 dataset: ResolvedDataset | None = None, registry=None, num_workers: int | None = None,
                 files: CheckpointFiles | None = None, checkpoints: bool = False, extra_cbs: tuple = ()):
        self.spec, self.reporter, self.data_root, self.settings = spec, reporter, data_root, settings
        self.out_dir = Path(out_dir)
        self.ds, self.registry = dataset, registry
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.files = files or CheckpointFiles(self.out_dir)
        self.checkpoints, self.extra_cbs = checkpoints, tuple(extra_cbs)
        # Set by resolve(): with a checkpoint, the position is where training resumes after it.
        self.checkpoint: Checkpoint | None = None  # the one this attempt continues after
        self.position = Position()
        # Set by plan().
        self.speed: SpeedPlan | None = None
        self.notes: list[str] = []  # the speed plan's and the dataset's, in the start event and the result
        self.stats: tuple[list[float], list[float]] | None = None  # normalization (mean, std); None: none
        self.frames: CachedFrames | None = None
        # Set by build().
        self.learn = None
        self.cbs: list = []  # the callbacks this run added to its learner (removed again before export)
        # Filled and set as training goes.
        self._dls: dict[int, object] = {}  # each stage's DataLoaders, built on first use (dls_for)
        self.stopped: str | None = None  # why training was stopped (stop()), if it was
        self.started = time.perf_counter()

    def train(self, resume: bool = False) -> ResultEvent:
        """The whole story; returns the result (also emitted as 'result')."""
        self.resolve(resume)
        self.plan()
        self.build()
        self.restore()
        for idx in range(self.position.stage, len(self.spec.stages)):
            self.train_stage(idx)
        return self.export(self.evaluate())

    def resolve(self, resume: bool) -> None:
        """The dataset and, when asked to resume, the checkpoint to continue after and the position after it (saying
        so when none was written)."""
        self.ds = self.ds or resolve_dataset(self.spec.dataset, self.data_root, seed=self.spec.seed,
                                             registry=self.registry)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            return
        self.checkpoint = self.files.load()
        if self.checkpoint is None:
            self.reporter.emit(NoteEvent(message="no checkpoint was written before the last attempt ended: "
                                                 "starting at epoch 0"))
        else:
            self.position = self.checkpoint.resume_position([s.epochs for s in self.spec.stages])

    def plan(self) -> None:
        """The speed plan; the start event and notes; the seed, then what every stage's data shares."""
        spec, ds, at = self.spec, self.ds, self.position
        self.speed = plan_speed(spec)
        self.notes = self.speed.notes + ds.warnings
        resumed = {"stage": at.stage, "epoch": at.first_epoch} if self.checkpoint else None
        self.reporter.emit(StartEvent(name=spec.name, dataset=ds.report(), techniques=spec.techniques(),
                                      device="cuda" if torch.cuda.is_available() else "cpu", notes=self.notes,
                                      resumed_from=resumed))
        for note in self.notes:
            self.reporter.emit(NoteEvent(message=note))
        set_seed(spec.seed, reproducible=True)  # before the split shuffle, the init and the first batches
        frame = items_frame(ds)
        self.stats = norm_stats(spec.normalize, ds, spec.seed)
        self.frames = CachedFrames(frame, self.speed, self.settings, self.reporter)

    def dls_for(self, idx: int):
        """The DataLoaders of a stage, built once (progressive resizing gives each stage its own)."""
        if idx not in self._dls:
            stage = self.spec.stages[idx]
            frame, cached = self.frames.for_stage(idx, stage.presize)
            self._dls[idx] = make_dls(frame, _vocab(self.ds.classes), stage, self.stats, self.num_workers,
                                      cached=cached, pin_memory=self.speed.pin_memory,
                                      prefetch=self.speed.prefetch if self.num_workers else None,
                                      augment=self.spec.augment)
        return self._dls[idx]

    def callbacks(self) -> list:
        """The run's callbacks; each reads the run's position from the learner, so their order is fastai's `order`
        alone (a new callback is appended here, or passed in extra_cbs)."""
        # After training: one scoring pass over the validation set, then TTA's n augmented passes and a plain one.
        final = 1 + (self.spec.tta.n + 1 if self.spec.tta else 0)
        report = ReportCallback(self.reporter, plan=[(s.epochs, s.size) for s in self.spec.stages],
                                final_passes=final)
        keep = [KeepBestCallback(self.spec.keep_best)] if self.spec.keep_best else []
        checkpoint = [CheckpointCallback(self.files, self.reporter)] if self.checkpoints else []
        return [report, SpeedCallback(), *keep, *checkpoint, *self.extra_cbs]

    def build(self) -> None:
        """The learner, on the data of the stage the checkpoint was written in, when resuming (at a stage boundary
        the next stage's DataLoaders are built only after the random generators are restored)."""
        self.cbs = self.callbacks()
        self.learn = _build_learner(self.spec, self.dls_for(self.checkpoint.stage if self.checkpoint else 0),
                                    self.out_dir, self.cbs, self.speed, self.settings, self.reporter)
        self.learn.training_run = self

    def restore(self) -> None:
        """Continue after the checkpoint, when there is one, at the position resolve() found: the weights and
        optimizer state, the best so far and every random generator, so the resumed epochs repeat the lost ones
        exactly."""
        ckpt, learn, pos = self.checkpoint, self.learn, self.position
        if ckpt is None:
            return
        mid_stage = pos.first_epoch > 0
        if mid_stage:
            learn.dls = self.dls_for(pos.stage)
            self._freeze(pos.stage)  # fastai clears the optimizer state here: the checkpoint's goes in after it
        restore_state(learn, ckpt)
        if pos.best_at is not None and not (self.out_dir / BEST_FILE).is_file():
            # The write that stored those weights failed (a note said so then): keep-best starts over from here
            # rather than failing the run at its end for want of a file.
            self.reporter.emit(NoteEvent(message=f"the best weights (stage {pos.best_at.stage + 1}, epoch "
                                                 f"{pos.best_at.epoch + 1}) were not stored with the checkpoint; "
                                                 "keep-best tracks the best epoch from here on"))
            pos.best, pos.best_at = None, None
        # At a stage boundary the next stage's DataLoaders are built from these states, as they were.
        restore_rng(ckpt.rng, learn.dls.train if mid_stage else None)

    def stop(self, reason: str) -> None:
        """Stop training now (a user's cancel, a stopping worker, the search's pruner): fastai's CancelFitException
        ends this fit, and the run ends after it with RunCancelled naming the reason."""
        self.stopped = reason
        raise CancelFitException()

    def _freeze(self, idx: int) -> None:
        """Freeze the body for a frozen stage, else unfreeze (fastai clears the optimizer state either way)."""
        self.learn.freeze() if self.spec.stages[idx].freeze else self.learn.unfreeze()

    def train_stage(self, idx: int) -> None:
        """One stage; a CUDA out-of-memory error becomes one that names the stage's batch and image size."""
        stage = self.spec.stages[idx]
        base = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0.0
        try:
            self._fit_stage(idx, stage)
        except torch.cuda.OutOfMemoryError as exc:
            raise cuda_oom(idx, stage.bs, stage.size, base, exc) from None

    def _find_lr(self, idx: int, stage: StageSpec) -> float:
        """The LR finder's suggestion; RunCancelled when a stop cut the finder short, whose few points may not even
        give a suggestion: the stage must not start training then."""
        try:
            lr = _lr_find(self.learn, idx, stage.lr_find_iters, self.reporter)
        except Exception:
            if self.stopped is None:
                raise
            lr = None
        if self.stopped is not None:
            raise RunCancelled(f"{self.stopped} during stage {idx}'s LR finder")
        return lr

    def _fit_stage(self, idx: int, stage: StageSpec) -> None:
        """Freeze or unfreeze, pick the rate, then one fit_one_cycle (with MixUp if asked). A stage restore() resumed
        mid-way keeps its rate and continues its one-cycle schedule at the position's first epoch."""
        learn, pos = self.learn, self.position
        learn.dls = self.dls_for(idx)
        if not (idx == pos.stage and pos.first_epoch > 0):
            pos.stage, pos.first_epoch = idx, 0
            self._freeze(idx)
            pos.lr = self._find_lr(idx, stage) if stage.lr == "find" else stage.lr
        plan = StagePlan(stage=idx, epochs=stage.epochs, size=stage.size, presize=stage.presize, bs=stage.bs,
                         frozen=stage.freeze, lr=pos.lr, mixup=stage.mixup)
        self.reporter.emit(StageEvent(**plan.model_dump()))
        cbs = [MixUp(stage.mixup)] if stage.mixup else []
        learn.fit_one_cycle(stage.epochs, slice(*pos.lr) if isinstance(pos.lr, list) else pos.lr, cbs=cbs,
                            start_epoch=pos.first_epoch)
        summary = _param_summary(learn)
        self.reporter.emit(StageEndEvent(stage=idx, **summary.model_dump()))
        if self.stopped is not None:
            raise RunCancelled(f"{self.stopped} during stage {idx}")
        pos.stages_done.append(StageSummary(**plan.model_dump(), **summary.model_dump()))

    def evaluate(self) -> Evaluation:
        """Final metrics on the best weights (keep-best), at the image size they were trained and scored at."""
        best_at = self.position.best_at
        if best_at is not None:
            self.learn.load(find_cb(self.learn, KeepBestCallback).fname, with_opt=False)
            self.learn.dls = self.dls_for(best_at.stage)
        tta_passes = self.spec.tta.n + 1 if self.spec.tta else 0  # fastai's n augmented passes and a plain one
        with find_cb(self.learn, ReportCallback).finishing(tta_passes=tta_passes):  # progress: scoring, then TTA
            return _evaluate(self.learn, self.spec, self.out_dir)

    def export(self, evaluation: Evaluation) -> ResultEvent:
        """Export the model without the run's callbacks (they hold reporters, not picklable; channels_last is a
        training-time choice) and emit the result."""
        learn, pos, speed = self.learn, self.position, self.speed
        report, speed_cb = find_cb(learn, ReportCallback), find_cb(learn, SpeedCallback)
        learn.remove_cbs([*self.cbs, *learn.cbs.filter(lambda cb: isinstance(cb, ChannelsLast))])
        del learn.training_run
        model_path = self.out_dir / file_name("model")
        learn.export(model_path)
        n_train = sum(not it.is_valid for it in self.ds.items)
        result = ResultEvent(metrics=evaluation.metrics, tta=evaluation.tta, confusion=evaluation.confusion,
                             top_losses=evaluation.top_losses, predictions_path=evaluation.predictions_path,
                             best=pos.best_at, model_path=str(model_path), notes=self.notes,
                             stages=pos.stages_done, dataset=self.ds.report(), normalize_stats=self.stats,
                             seconds=time.perf_counter() - self.started,
                             images_per_second=_images_per_second(n_train, report.epoch_seconds),
                             speed=SpeedReport(mode=speed.mode, precision=speed.precision,
                                               channels_last=speed.channels_last,
                                               presize_cache=self.frames.describe(), num_workers=self.num_workers,
                                               pin_memory=speed.pin_memory, stages=speed_cb.report()))
        self.reporter.emit(result)
        return result

    def release(self) -> None:
        """Unpin the presize cache sets this run holds."""
        if self.frames is not None:
            self.frames.release()


def run_recipe(spec: RunSpec, reporter: Reporter, data_root: Path, out_dir: Path, *,
               dataset: ResolvedDataset | None = None, registry=None, num_workers: int | None = None,
               extra_cbs: tuple = (), checkpoints: bool = False, resume: bool = False,
               checkpoint_files: CheckpointFiles | None = None, settings: Settings | None = None) -> ResultEvent:
    """Train a recipe end to end, reporting every event; returns the result (also emitted as 'result').

    checkpoints: save a checkpoint after every epoch (out_dir/checkpoint.pth, or checkpoint_files: a worker's
    artifact store). resume: continue after the last checkpoint, when there is one. settings: cache and weights
    options (default: read from the env)."""
    run = TrainingRun(spec, reporter, data_root, out_dir, settings=settings or Settings(), dataset=dataset,
                      registry=registry, num_workers=num_workers, files=checkpoint_files, checkpoints=checkpoints,
                      extra_cbs=extra_cbs)
    try:
        return run.train(resume)
    finally:
        run.release()
