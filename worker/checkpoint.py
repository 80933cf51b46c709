"""Epoch checkpoints: everything a lost worker's successor needs to continue a run exactly where it stopped.

One file per run, replaced atomically (written under a temporary name, then renamed) after every epoch: the model
and optimizer state, where training stands (stage, epoch, the stage's learning rate, the stages done), the keep-best
tracker's best value and where it was, and every random number generator's state (Python, NumPy, torch, and the
training DataLoader's own), so that on a CPU with num_workers 0 the resumed epochs repeat the lost ones exactly.
Only files fitboard's own workers wrote are ever loaded, and with torch.load(weights_only=True).

A worker keeps the checkpoint (and the keep-best weights it refers to) in the artifact store, so the next attempt
resumes on whichever host takes the run; `fitboard train` keeps them in its output folder.
"""
from __future__ import annotations

import os
import random
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.torch_core import get_model
from fastcore.foundation import L

from fitboard.app.core.artifacts import ArtifactStore, file_name
from fitboard.app.core.events import BestEpoch, CheckpointEvent, NoteEvent, StageSummary
from fitboard.worker.position import Position, position
from fitboard.worker.reporters import Reporter

CHECKPOINT_FILE = file_name("checkpoint")
BEST_FILE = file_name("best")  # KeepBestCallback's learn.save("best") in the run's folder


def _plain(value):
    """NumPy scalars as Python numbers, recursively (torch.load with weights_only=True refuses NumPy objects)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _copy(value):
    """A CPU copy of every tensor in a nested state, with NumPy scalars as Python numbers (torch.load with
    weights_only=True refuses NumPy objects); training may go on while the copy is written."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return _plain(value)


def _opt_state(opt) -> dict:
    """fastai's optimizer state as plain dicts and lists (its hypers come as a fastcore L)."""
    sd = opt.state_dict()
    return {"state": [_copy(dict(s)) for s in sd["state"]], "hypers": [_plain(dict(h)) for h in sd["hypers"]]}


def _rng_state(train_dl) -> dict:
    """The random generators' states, as plain lists and tensors (loadable with weights_only=True)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    dl_version, dl_internal, dl_gauss = train_dl.rng.getstate()
    return {"python": [version, list(internal), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(), "dl": [dl_version, list(dl_internal), dl_gauss],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict, train_dl) -> None:
    """Put every random generator back where the checkpoint found it (the DataLoader's too, when given)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if train_dl is not None:
        dl_version, dl_internal, dl_gauss = state["dl"]
        train_dl.rng.setstate((dl_version, tuple(dl_internal), dl_gauss))


@dataclass
class Checkpoint:
    """A loaded checkpoint: the position after which training resumes, and the state to restore."""

    stage: int
    epoch: int
    lr: float | list[float]
    stages_done: list[dict]
    smooth_loss: dict  # the recorder's smoothed train loss, so a resumed epoch reports what the lost one would
    best: float | None
    best_at: dict | None
    model: dict = field(repr=False)
    opt: dict = field(repr=False)
    rng: dict = field(repr=False)

    def next_position(self, epochs_per_stage: list[int]) -> tuple[int, int]:
        """(stage, epoch) of the first epoch still to train; stage == len(stages) when only evaluation is left."""
        if self.epoch + 1 < epochs_per_stage[self.stage]:
            return self.stage, self.epoch + 1
        return self.stage + 1, 0

    def resume_position(self, epochs_per_stage: list[int]) -> Position:
        """The run's position after this checkpoint: mid-stage, the stage's rate and smoothed loss carry on."""
        stage, epoch = self.next_position(epochs_per_stage)
        mid_stage = epoch > 0
        return Position(stage=stage, first_epoch=epoch, lr=self.lr if mid_stage else None,
                        stages_done=[StageSummary(**s) for s in self.stages_done], best=self.best,
                        best_at=BestEpoch(**self.best_at) if self.best_at else None,
                        smooth_loss=self.smooth_loss if mid_stage else None)


def load_checkpoint(out_dir: Path) -> Checkpoint | None:
    """The checkpoint in out_dir, or None when it has none (a partly written file never carries the final name)."""
    path = Path(out_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    meta = state["meta"]
    return Checkpoint(stage=meta["stage"], epoch=meta["epoch"], lr=meta["lr"], stages_done=meta["stages_done"],
                      smooth_loss=meta["smooth_loss"],
                      best=meta["best"], best_at=meta["best_at"], model=state["model"], opt=state["opt"],
                      rng=state["rng"])


def snapshot(learn, meta: dict) -> dict:
    """Everything a checkpoint holds, copied, so the next epoch can train while it is written."""
    return {"model": _copy(get_model(learn.model).state_dict()), "opt": _opt_state(learn.opt), "meta": _plain(meta),
            "rng": _rng_state(learn.dls.train)}


def _save_atomically(out_dir: Path, name: str, state: dict) -> Path:
    """torch.save under a temporary name, fsync, rename to name (atomic on one filesystem); the final path."""
    path = Path(out_dir) / name
    tmp = path.with_name(f".{name}.{uuid.uuid4().hex}.tmp")  # one per write: never two writers on one file
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())  # on disk before the rename makes it the checkpoint
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_checkpoint(out_dir: Path, state: dict) -> None:
    """Write a snapshot under a temporary name and rename it over the previous one."""
    _save_atomically(out_dir, CHECKPOINT_FILE, state)


class CheckpointFiles:
    """Where a run's checkpoint is kept: its output folder, and (for a worker) the artifact store every host reads.

    With a store, each checkpoint is moved there after it is written, preceded by the keep-best weights when that
    epoch was a new best, so a stored checkpoint never refers to best weights the store lacks."""

    def __init__(self, out_dir: Path, store: ArtifactStore | None = None, run_id: int | None = None):
        self.out_dir, self.store, self.run_id = Path(out_dir), store, run_id

    def save(self, state: dict) -> None:
        """Write one snapshot (and its new best weights) where the next attempt will look."""
        meta = state["meta"]
        new_best = meta["best_at"] is not None and (meta["best_at"]["stage"], meta["best_at"]["epoch"]) == (
            meta["stage"], meta["epoch"])
        if self.store is not None and new_best:
            # learn.save(with_opt=False) writes exactly the model's state dict: this epoch's, in the snapshot.
            best = _save_atomically(self.out_dir, f"stored-{BEST_FILE}", state["model"])
            self.store.put(self.run_id, "best", best, move=True)
        path = _save_atomically(self.out_dir, CHECKPOINT_FILE, state)
        if self.store is not None:
            self.store.put(self.run_id, "checkpoint", path, move=True)

    def load(self) -> Checkpoint | None:
        """The last checkpoint (fetched from the store into the folder, with its best weights), or None."""
        if self.store is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not self.store.fetch(self.run_id, "checkpoint", self.out_dir / CHECKPOINT_FILE):
                return None
            ckpt = load_checkpoint(self.out_dir)
            if ckpt is not None and ckpt.best_at is not None:
                self.store.fetch(self.run_id, "best", self.out_dir / BEST_FILE)
            return ckpt
        return load_checkpoint(self.out_dir)


def restore_state(learn, ckpt: Checkpoint) -> None:
    """Load the checkpoint's model and optimizer state into a learner built for its stage."""
    get_model(learn.model).load_state_dict(ckpt.model)
    if learn.opt is None:
        learn.create_opt()
    learn.opt.load_state_dict({"state": ckpt.opt["state"], "hypers": L(ckpt.opt["hypers"])})


def _lowest_priority() -> None:
    """Run this thread at the lowest CPU priority (Linux: niceness is per thread), so the write takes the moments
    training leaves idle (the main thread loading a batch) instead of time from the training threads."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: the write simply competes as an equal


class CheckpointCallback(Callback):
    """After every epoch of a stage: snapshot the state with the run's position, write it in a background thread
    while the next epoch trains, then tell the reporter it is safe. At most one write is in flight; each stage's end
    waits for it.

    A write that fails (a full artifacts disk, an unreachable bucket) does not fail the run: it goes on, with a note
    that a lost worker would resume from the previous checkpoint."""

    order = 65  # after Recorder, the report and KeepBestCallback (60), so the best value saved is this epoch's

    def __init__(self, files: CheckpointFiles, reporter: Reporter):
        self.files, self.reporter = files, reporter
        self._writer: threading.Thread | None = None
        self._failure: str | None = None

    def before_fit(self):
        self.run = not hasattr(self.learn, "lr_finder") and not hasattr(self.learn, "gather_preds")

    def before_train(self):
        pos = position(self.learn)
        if pos.smooth_loss is not None and self.epoch == pos.first_epoch:
            smooth = self.learn.recorder.smooth_loss  # reset by the recorder's before_fit; continue the lost one's
            smooth.val, smooth.count = torch.tensor(pos.smooth_loss["val"]), pos.smooth_loss["count"]
            pos.smooth_loss = None

    def after_epoch(self):
        pos = position(self.learn)
        if self.epoch < pos.first_epoch:
            return  # an epoch a resumed fit skips (fastai still calls after_epoch for it)
        smooth = self.learn.recorder.smooth_loss
        meta = {"stage": pos.stage, "epoch": self.epoch, "lr": pos.lr,
                "stages_done": [s.model_dump() for s in pos.stages_done], "best": pos.best,
                "best_at": None if pos.best_at is None else pos.best_at.model_dump(),
                "smooth_loss": {"val": float(smooth.val), "count": int(smooth.count)}}
        self.wait()
        state = snapshot(self.learn, meta)
        self._writer = threading.Thread(target=self._write, args=(state, pos.stage, self.epoch),
                                        name="fitboard-checkpoint", daemon=True)
        self._writer.start()

    def _write(self, state: dict, stage: int, epoch: int) -> None:
        _lowest_priority()
        try:
            self.files.save(state)
        except Exception as exc:  # a full disk, a lost mount, a refused upload: the run itself goes on
            self._failure = f"the checkpoint after stage {stage} epoch {epoch} could not be written ({exc}); " \
                            "training goes on, and a lost worker would resume from the checkpoint before it"
            return
        self.reporter.emit(CheckpointEvent(stage=stage, epoch=epoch))

    def wait(self) -> None:
        """Until the write in flight (if any) is done; reports a failed one as a note."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._failure:
            self.reporter.emit(NoteEvent(message=self._failure))
            self._failure = None

    def after_fit(self):
        self.wait()
        self.run = True
