"""Speed modes: what `speed: fast` can enable on this host, per-stage speed figures, and a useful OOM message."""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.learner import Recorder

from fitboard.app.core.events import StageSpeed
from fitboard.app.core.schemas import RunSpec
from fitboard.worker.position import position

MAX_LOADER_WORKERS = 16
# Batches each loader process keeps ready (torch's default is 2): rides out a slow image without holding much memory.
# Not yet chosen by a GPU measurement: bench/gpu.py --prefetch N measures another value.
FAST_PREFETCH = 4
OOM_HEADROOM = 0.9  # suggest a batch size that fills at most this share of the GPU


def host_gpus() -> int:
    """GPUs on this host (all of them, not only those CUDA_VISIBLE_DEVICES shows): one worker runs per GPU."""
    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir():
        return max(1, len(list(nvidia.iterdir())))
    return max(1, torch.cuda.device_count())


def default_num_workers() -> int:
    """Loader processes per worker: this host's CPUs shared by its GPUs' workers (1..16); 0 without CUDA."""
    if not torch.cuda.is_available():
        return 0  # on a CPU-only host loader processes would steal the cores the model trains on
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_LOADER_WORKERS, max(1, cpus // host_gpus()))


@dataclass
class SpeedPlan:
    """What this run enables, decided once from the recipe and the hardware, with a note for each fallback."""

    mode: str
    precision: str
    channels_last: bool = False
    cache: bool = False
    pin_memory: bool = False
    prefetch: int | None = None
    notes: list[str] = field(default_factory=list)


def plan_speed(spec: RunSpec) -> SpeedPlan:
    """The precision and speed features this hardware can give the recipe; what it cannot is noted."""
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    precision, notes = spec.precision, []
    if precision != "fp32" and not cuda:
        notes.append(f"precision {precision} needs a CUDA GPU; none here, so this run trained in fp32")
        precision = "fp32"
    elif precision == "bf16" and not bf16:
        notes.append("precision bf16 is not supported by this GPU; this run trained in fp32")
        precision = "fp32"
    if spec.speed != "fast":
        return SpeedPlan(mode=spec.speed, precision=precision, notes=notes)
    plan = SpeedPlan(mode="fast", precision=precision, cache=True, notes=notes)
    if cuda:
        if precision == "fp32":  # fast means mixed precision unless the recipe chose one
            plan.precision = "bf16" if bf16 else "fp16"
        plan.channels_last = plan.pin_memory = True
        plan.prefetch = FAST_PREFETCH
    else:
        notes.append("speed fast: no CUDA GPU here, so no mixed precision, channels_last or pinned memory; "
                     "the presize cache is on")
    # fastai hands each epoch's shuffled order to its loader processes when they start: persistent workers would
    # replay the first epoch's order every epoch, so they stay off.
    return plan


class ChannelsLast(Callback):
    """Feeds batches in channels_last memory format (the model is converted once), which tensor cores prefer."""

    order = 1  # before MixUp and the training step

    def before_batch(self):
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                              for x in self.learn.xb)


class SpeedCallback(Callback):
    """Per stage: training images/s, peak GPU memory, and data wait = time waiting for the next batch / step time."""

    order = Recorder.order + 2

    def __init__(self):
        self.figures: dict[int, dict] = {}

    def before_fit(self):
        self.run = not (hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds"))
        if self.run and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def before_train(self):
        self._last = time.perf_counter()

    def before_batch(self):
        if self.training:
            self._fetched = time.perf_counter()

    def after_batch(self):
        if not self.training:
            return
        now = time.perf_counter()
        f = self.figures.setdefault(position(self.learn).stage,
                                    {"images": 0, "step": 0.0, "wait": 0.0, "steps": 0, "peak": None})
        f["images"] += len(self.learn.yb[0]) if self.learn.yb else 0
        f["wait"] += self._fetched - self._last
        f["step"] += now - self._last
        f["steps"] += 1
        self._last = now

    def after_fit(self):
        f = self.figures.get(position(self.learn).stage)
        if f is not None and torch.cuda.is_available():
            f["peak"] = max(f["peak"] or 0.0, torch.cuda.max_memory_allocated() / 2**20)

    def report(self) -> list[StageSpeed]:
        """The figures of every stage that trained in this attempt."""
        return [StageSpeed(stage=s, images_per_second=f["images"] / f["step"] if f["step"] else None,
                           data_wait=f["wait"] / f["step"] if f["step"] else None, peak_memory_mb=f["peak"],
                           steps=f["steps"]) for s, f in sorted(self.figures.items())]


class OutOfMemory(RuntimeError):
    """The GPU ran out of memory; the message says where and what batch size would fit."""


def _tried_bytes(message: str) -> float:
    """The allocation that failed, from torch's message ("Tried to allocate 2.00 GiB")."""
    m = re.search(r"Tried to allocate ([\d.]+) (GiB|MiB|KiB)", message)
    return float(m[1]) * {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}[m[2]] if m else 0.0


def oom_message(stage_idx: int, bs: int, size: int, base: float, peak: float, capacity: float, error: str) -> str:
    """Name the stage and batch size, and suggest a batch size that fits from the memory measured (bytes)."""
    per_image = max(peak - base + _tried_bytes(error), 1.0) / bs
    fits = int((capacity * OOM_HEADROOM - base) // per_image)
    hint = (f"a batch size of {2 ** int(math.log2(fits))} should fit (stages[{stage_idx}].bs)" if fits >= 1 else
            "even a batch size of 1 may not fit: lower the stage's size or choose a smaller arch")
    return (f"CUDA out of memory in stage {stage_idx + 1} at batch size {bs} ({size} px): the model took "
            f"{base / 2**30:.1f} GiB and training reached {peak / 2**30:.1f} GiB of {capacity / 2**30:.1f} GiB; {hint}")


def cuda_oom(stage_idx: int, bs: int, size: int, base: float, error: BaseException) -> OutOfMemory:
    """The OutOfMemory to raise for a torch OOM error in a stage (peak and capacity read from the device)."""
    peak = torch.cuda.max_memory_allocated()
    capacity = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return OutOfMemory(oom_message(stage_idx, bs, size, base, peak, capacity, str(error)))
