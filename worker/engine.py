"""The recipe engine: a RunSpec becomes DataLoaders, a vision_learner and one fit_one_cycle per stage."""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision.models
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropy
from fastai.metrics import accuracy, error_rate
from fastai.torch_core import set_seed
from fastai.vision.all import noop, valley, vision_learner

from app.core.datasets import ResolvedDataset, resolve_dataset
from app.core.events import (
    BestEpoch,
    Confusion,
    FinalMetrics,
    LRFindEvent,
    NoteEvent,
    ParamSummary,
    ProgressEvent,
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
from app.core.schemas import RunSpec, StageSpec
from app.core.settings import Settings
from worker.callbacks import KeepBestCallback, ReportCallback
from worker.checkpoint import Checkpoint, CheckpointCallback, CheckpointFiles, restore, restore_rng
from worker.data import items_frame, make_dls, norm_stats
from worker.presize_cache import CacheSet, CacheTooSmall, PresizeCache
from worker.reporters import Reporter
from worker.speed import ChannelsLast, SpeedCallback, SpeedPlan, cuda_oom, default_num_workers, plan_speed
from worker.weights import ensure_cached

TOP_LOSSES = 16
LR_CURVE_POINTS = 200


class RunCancelled(Exception):
    """The user cancelled the run; epochs already reported stay."""


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


def _find_or_cancel(learn, idx: int, stage: StageSpec, reporter: Reporter, report_cb) -> float:
    """The LR finder's suggestion; RunCancelled when a cancel (or a stopping worker) cut the finder short, whose
    few points may not even give a suggestion: the stage must not start training then."""
    try:
        lr = _lr_find(learn, idx, stage.lr_find_iters, reporter)
    except Exception:
        if not report_cb.cancelled:
            raise
        lr = None
    if report_cb.cancelled:
        raise RunCancelled(f"cancelled during stage {idx}'s LR finder")
    return lr


def _param_summary(learn) -> ParamSummary:
    """Trainable parameters and per-group learning rates: evidence of freeze and discriminative rates."""
    total = sum(p.numel() for p in learn.model.parameters())
    trainable = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    group_lrs = [float(h["lr"]) for h in learn.opt.hypers] if learn.opt is not None else []
    return ParamSummary(params=total, trainable_params=trainable, group_lrs=group_lrs)


def _run_stage(learn, idx: int, stage: StageSpec, reporter: Reporter, tracked: list, first_epoch: int = 0,
               resume: Checkpoint | None = None) -> StageSummary:
    """Freeze or unfreeze, pick the learning rate, then one fit_one_cycle (with MixUp if asked); returns its summary.

    Resuming mid-stage (first_epoch > 0) reuses the rate the stage found before and continues the same one-cycle
    schedule at first_epoch, with every random generator as the checkpoint left it."""
    report_cb = tracked[0]
    learn.freeze() if stage.freeze else learn.unfreeze()  # fastai clears the optimizer state here
    if resume is not None:
        restore(learn, resume)  # so the checkpoint's optimizer state goes in after it
        lr = resume.lr
    else:
        report_cb.stage = idx  # the LR finder's progress names the stage it runs for
        lr = _find_or_cancel(learn, idx, stage, reporter, report_cb) if stage.lr == "find" else stage.lr
    for cb in tracked:  # the report, keep-best and checkpoint callbacks: which stage, which epochs are replayed
        cb.stage, cb.first_epoch = idx, first_epoch
    plan = StagePlan(stage=idx, epochs=stage.epochs, size=stage.size, presize=stage.presize, bs=stage.bs,
                     frozen=stage.freeze, lr=lr, mixup=stage.mixup)
    if isinstance(tracked[-1], CheckpointCallback):
        tracked[-1].stage_lr = lr
        tracked[-1].resume_smooth = resume.smooth_loss if resume is not None else None
    reporter.emit(StageEvent(**plan.model_dump()))
    cbs = [MixUp(stage.mixup)] if stage.mixup else []
    if resume is not None:
        restore_rng(resume.rng, learn.dls.train)
    learn.fit_one_cycle(stage.epochs, slice(*lr) if isinstance(lr, list) else lr, cbs=cbs, start_epoch=first_epoch)
    summary = _param_summary(learn)
    reporter.emit(StageEndEvent(stage=idx, **summary.model_dump()))
    if report_cb.cancelled:
        raise RunCancelled(f"cancelled during stage {idx}")
    return StageSummary(**plan.model_dump(), **summary.model_dump())


def _metrics(preds, targs, losses) -> FinalMetrics:
    """Loss, accuracy and error rate from gathered predictions."""
    acc = float((preds.argmax(1) == targs).float().mean())
    return FinalMetrics(valid_loss=float(losses.mean()) if losses is not None else None, accuracy=acc,
                        error_rate=1 - acc)


def _evaluate(learn, ds: ResolvedDataset, spec: RunSpec, out_dir: Path) -> dict:
    """Final validation metrics, TTA, confusion matrix, top losses and a per-image predictions file."""
    preds, targs, losses = learn.get_preds(dl=learn.dls.valid, with_loss=True)
    vocab = list(learn.dls.vocab)
    result = {"metrics": _metrics(preds, targs, losses), "tta": None}
    if spec.tta:
        tp, tt = learn.tta(dl=learn.dls.valid, n=spec.tta.n, use_max=spec.tta.use_max)
        m = _metrics(tp, tt, None)
        result["tta"] = TTAMetrics(n=spec.tta.n, use_max=spec.tta.use_max, accuracy=m.accuracy, error_rate=m.error_rate)
    decoded = preds.argmax(1)
    n = len(vocab)
    cm = np.bincount(targs.numpy() * n + decoded.numpy(), minlength=n * n).reshape(n, n)
    result["confusion"] = Confusion(labels=vocab, matrix=cm.tolist())
    valid_ids = learn.dls.valid.items["image_id"].tolist()
    order = torch.argsort(losses, descending=True)[:TOP_LOSSES].tolist()
    result["top_losses"] = [TopLoss(image_id=valid_ids[i], actual=vocab[int(targs[i])],
                                    predicted=vocab[int(decoded[i])], loss=float(losses[i]),
                                    probability=float(preds[i, decoded[i]])) for i in order]
    pred_file = out_dir / "predictions.csv"
    with pred_file.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "actual", "predicted", "correct", "loss"])
        for i, image_id in enumerate(valid_ids):
            w.writerow([image_id, vocab[int(targs[i])], vocab[int(decoded[i])], int(targs[i] == decoded[i]),
                        f"{float(losses[i]):.6f}"])
    result["predictions_path"] = str(pred_file)
    return result


def _vocab(classes: list[str]) -> pd.Series:
    """The dataset's classes as a pandas categorical: fastai's CategoryBlock sorts a plain list alphabetically
    ("eight, five, four") but keeps a categorical's order, so matrices and tables follow the dataset (zero..nine)."""
    return pd.Series(pd.Categorical(classes, categories=classes))


def _images_per_second(n_train: int, epoch_seconds: list[float]) -> float | None:
    """Training throughput over the whole run (validation passes included in the epoch time)."""
    return n_train * len(epoch_seconds) / sum(epoch_seconds) if epoch_seconds else None


def _resume_point(files: CheckpointFiles, resume: bool, reporter: Reporter) -> Checkpoint | None:
    """The checkpoint to continue from, when asked to resume and one was written; says so when none was."""
    if not resume:
        return None
    ckpt = files.load()
    if ckpt is None:
        reporter.emit(NoteEvent(message="no checkpoint was written before the last attempt ended: starting at epoch 0"))
    return ckpt


class _CachedFrames:
    """The items frame with each stage's paths pointing into the presize cache (speed: fast), one set per presize."""

    def __init__(self, frame, plan: SpeedPlan, settings: Settings, reporter: Reporter):
        self.frame, self.plan, self.reporter = frame, plan, reporter
        self.sets: dict[int, CacheSet | None] = {}
        self.cache = PresizeCache(settings.presize_cache_dir, int(settings.cache_max_gb * 2**30),
                                  workers=len(os.sched_getaffinity(0))) if plan.cache else None

    def for_stage(self, idx: int, presize: int):
        """(frame, cached) for a stage: cache entries when the cache is on and holds the set, else the originals."""
        if self.cache is None:
            return self.frame, False
        if presize not in self.sets:
            self.sets[presize] = self._acquire(idx, presize)
        cset = self.sets[presize]
        return (self.frame.assign(path=cset.paths), True) if cset else (self.frame, False)

    def _acquire(self, idx: int, presize: int) -> CacheSet | None:
        """Build or reuse the set, reporting progress; a set too big for the bound falls back with a note."""
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            elapsed = time.perf_counter() - t0
            self.reporter.emit(ProgressEvent(stage=idx, epoch=0, batch=done, total=total, elapsed=elapsed,
                                             eta=elapsed / done * (total - done), phase="presize cache"))
        try:
            return self.cache.acquire(self.frame["path"].tolist(), presize, progress)
        except CacheTooSmall as exc:
            self.reporter.emit(NoteEvent(message=f"presize cache off for presize {presize}: {exc}"))
            return None

    def describe(self) -> str | None:
        """What the cache did for this run, for the speed block."""
        if self.cache is None:
            return None
        return "; ".join(f"presize {p}: {s.describe() if s else 'too big for the bound'}" for p, s in self.sets.items())

    def release(self) -> None:
        """Unpin every set so eviction may take it later."""
        for cset in self.sets.values():
            if cset is not None:
                cset.release()


def run_recipe(spec: RunSpec, reporter: Reporter, data_root: Path, out_dir: Path, *,
               dataset: ResolvedDataset | None = None, registry=None, num_workers: int | None = None,
               extra_cbs: tuple = (), checkpoints: bool = False, resume: bool = False,
               checkpoint_files: CheckpointFiles | None = None, settings: Settings | None = None) -> ResultEvent:
    """Train a recipe end to end, reporting every event; returns the result (also emitted as 'result').

    checkpoints: save a checkpoint after every epoch (out_dir/checkpoint.pth, or checkpoint_files: a worker's
    artifact store). resume: continue after the last checkpoint, when there is one. settings: cache and weights
    options (default: read from the env)."""
    held: list[_CachedFrames] = []
    try:
        return _train_recipe(spec, reporter, data_root, out_dir, dataset=dataset, registry=registry,
                             num_workers=num_workers, extra_cbs=extra_cbs, checkpoints=checkpoints, resume=resume,
                             checkpoint_files=checkpoint_files, settings=settings or Settings(), held=held)
    finally:
        for frames in held:
            frames.release()


def _train_recipe(spec: RunSpec, reporter: Reporter, data_root: Path, out_dir: Path, *, dataset, registry,
                  num_workers, extra_cbs, checkpoints, resume, checkpoint_files, settings: Settings,
                  held: list) -> ResultEvent:
    """run_recipe's body; cache sets it pins are appended to held, for the caller to release."""
    started = time.perf_counter()
    ds = dataset or resolve_dataset(spec.dataset, data_root, seed=spec.seed, registry=registry)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_speed(spec)
    notes = plan.notes + ds.warnings
    n_train = sum(not it.is_valid for it in ds.items)
    files = checkpoint_files or CheckpointFiles(out_dir)
    ckpt = _resume_point(files, resume, reporter)
    start_stage, start_epoch = ckpt.next_position([s.epochs for s in spec.stages]) if ckpt else (0, 0)
    reporter.emit(StartEvent(name=spec.name, dataset=ds.report(), techniques=spec.techniques(),
                             device="cuda" if torch.cuda.is_available() else "cpu", notes=notes,
                             resumed_from={"stage": start_stage, "epoch": start_epoch} if ckpt else None))
    for note in notes:
        reporter.emit(NoteEvent(message=note))
    set_seed(spec.seed, reproducible=True)  # before the split shuffle, the init and the first batches
    frame = items_frame(ds)
    stats = norm_stats(spec.normalize, ds, spec.seed)
    if num_workers is None:
        num_workers = default_num_workers()
    frames = _CachedFrames(frame, plan, settings, reporter)
    held.append(frames)
    built: dict[int, object] = {}

    def dls_for(idx: int):
        """The DataLoaders of a stage, built once (progressive resizing gives each stage its own)."""
        if idx not in built:
            stage_frame, cached = frames.for_stage(idx, spec.stages[idx].presize)
            built[idx] = make_dls(stage_frame, _vocab(ds.classes), spec.stages[idx], stats, num_workers, cached=cached,
                                  pin_memory=plan.pin_memory, prefetch=plan.prefetch if num_workers else None)
        return built[idx]

    report_cb, speed_cb = ReportCallback(reporter, plan=[(s.epochs, s.size) for s in spec.stages]), SpeedCallback()
    keep = KeepBestCallback(spec.keep_best) if spec.keep_best else None
    tracked = [report_cb, speed_cb, *([keep] if keep else [])]
    if checkpoints:
        tracked.append(CheckpointCallback(files, reporter, keep))
    learn = _build_learner(spec, dls_for(ckpt.stage if ckpt else 0), out_dir, [*tracked, *extra_cbs], plan,
                           settings, reporter)
    stages_done = []
    if ckpt is not None:
        restore(learn, ckpt)  # mid-stage, _run_stage restores again after its freeze/unfreeze
        stages_done = [StageSummary(**s) for s in ckpt.stages_done]
        if keep is not None:
            keep.best, keep.best_at = ckpt.best, BestEpoch(**ckpt.best_at) if ckpt.best_at else None
            if keep.best_at is not None and not (out_dir / f"{keep.fname}.pth").is_file():
                # The write that stored those weights failed (a note said so then): keep-best starts over from
                # here rather than failing the run at its end for want of a file.
                reporter.emit(NoteEvent(message=f"the best weights (stage {keep.best_at.stage + 1}, epoch "
                                                f"{keep.best_at.epoch + 1}) were not stored with the checkpoint; "
                                                "keep-best tracks the best epoch from here on"))
                keep.best, keep.best_at = None, None
        if start_epoch == 0:
            # Resuming at a stage boundary: the next stage's DataLoaders are built from these states, as they were.
            restore_rng(ckpt.rng, None)
    for idx in range(start_stage, len(spec.stages)):
        learn.dls = dls_for(idx)
        mid_stage = ckpt is not None and idx == start_stage and start_epoch > 0
        if checkpoints:
            tracked[-1].stages_done = [s.model_dump() for s in stages_done]
        base = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0.0
        try:
            stages_done.append(_run_stage(learn, idx, spec.stages[idx], reporter, tracked,
                                          first_epoch=start_epoch if mid_stage else 0,
                                          resume=ckpt if mid_stage else None))
        except torch.cuda.OutOfMemoryError as exc:
            raise cuda_oom(idx, spec.stages[idx].bs, spec.stages[idx].size, base, exc) from None
    if keep is not None and keep.best_at is not None:
        learn.load(keep.fname, with_opt=False)
        # Evaluate the best weights at the image size they were trained and scored at.
        learn.dls = dls_for(keep.best_at.stage)
    with report_cb.finishing(tta_passes=spec.tta.n + 1 if spec.tta else 0):  # progress: scoring, then TTA's passes
        evaluation = _evaluate(learn, ds, spec, out_dir)
    # They hold reporters (not picklable); channels_last is a training-time choice, not part of the model.
    learn.remove_cbs([*tracked, *extra_cbs, *learn.cbs.filter(lambda cb: isinstance(cb, ChannelsLast))])
    model_path = out_dir / "model.pkl"
    learn.export(model_path)
    result = ResultEvent(**evaluation, best=keep.best_at if keep else None, model_path=str(model_path), notes=notes,
                         stages=stages_done, dataset=ds.report(), normalize_stats=stats,
                         seconds=time.perf_counter() - started,
                         images_per_second=_images_per_second(n_train, report_cb.epoch_seconds),
                         speed=SpeedReport(mode=plan.mode, precision=plan.precision, channels_last=plan.channels_last,
                                           presize_cache=frames.describe(), num_workers=num_workers,
                                           pin_memory=plan.pin_memory, stages=speed_cb.report()))
    reporter.emit(result)
    return result
