"""GPU speed: the seed notebook's plain fastai code vs fitboard `default` vs fitboard `fast`, side by side.

Stage-1 and stage-2 shaped training (resnet50, pretrained false, 224 px bs 64 from presize 460, then 448 px bs 32
from presize 560) on synthetic Cassava-sized photos (bench/pipeline.py's), ~150 timed steps per stage after a
warm-up, for each variant; prints images/s, data-wait fraction and peak memory, and the ratios fast/plain and
default/plain (targets >= 1.5 and >= 0.98). At most ~8 minutes on one H200; without CUDA it says so and exits 0.
Usage: python bench/gpu.py [--steps 150] [--warmup 20] [--images 2000] [--prefetch 4]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

DEADLINE = 7.5 * 60  # seconds: variants not started by then are skipped, so the script stays under 8 minutes
CUDA = torch.cuda.is_available()
ARCH = "resnet50"


def sync() -> None:
    """Wait for the GPU's queued work, so a timer reads finished steps."""
    if CUDA:
        torch.cuda.synchronize()


class StepTimer:
    """Times `steps` training steps after `warmup` in each fit (synchronising CUDA), then stops the fit."""

    def __init__(self, warmup: int, steps: int):
        from fastai.callback.core import Callback, CancelFitException

        timer = self

        class _Cb(Callback):
            order = 99

            def before_fit(self):
                self.run = not hasattr(self.learn, "lr_finder") and not hasattr(self.learn, "gather_preds")
                if self.run:
                    self.n, self.wait, self.t_start, self._last = 0, 0.0, None, None
                    if CUDA:
                        torch.cuda.reset_peak_memory_stats()

            def before_batch(self):
                if self.training and self.t_start is not None:
                    self.wait += time.perf_counter() - self._last

            def after_batch(self):
                if not self.training:
                    return
                self.n += 1
                if self.n == warmup:
                    sync()
                    self.t_start = self._last = time.perf_counter()
                elif self.n > warmup:
                    self._last = time.perf_counter()
                if self.n == warmup + steps:
                    sync()
                    secs = time.perf_counter() - self.t_start
                    timer.rows.append({"images_per_second": steps * len(self.learn.yb[0]) / secs,
                                       "data_wait": self.wait / secs,
                                       "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if CUDA else 0.0})
                    raise CancelFitException()

        self.rows: list[dict] = []
        self.cb = _Cb()


def plain_notebook(frame, stages, timer, out: Path, epochs: int) -> None:
    """The seed notebook's code: get_dls per stage (fastai's default loaders), vision_learner, fit_one_cycle."""
    import torchvision.models
    from fastai.vision.all import (
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        ImageBlock,
        Normalize,
        Resize,
        accuracy,
        aug_transforms,
        imagenet_stats,
        vision_learner,
    )

    def get_dls(size, presize, bs):
        db = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=ColReader("path"), get_y=ColReader("label"),
                       splitter=ColSplitter("is_valid"), item_tfms=[Resize(presize)],
                       batch_tfms=[*aug_transforms(size=size, min_scale=0.75), Normalize.from_stats(*imagenet_stats)])
        return db.dataloaders(frame, bs=bs)

    learn = vision_learner(get_dls(*stages[0]), getattr(torchvision.models, ARCH), pretrained=False, metrics=accuracy,
                           path=out, cbs=[timer.cb])
    for i, (size, presize, bs) in enumerate(stages):
        if i:
            learn.dls = get_dls(size, presize, bs)
        with contextlib.redirect_stdout(io.StringIO()):
            learn.fit_one_cycle(epochs[i], 1e-3)


def fitboard(frame_root: Path, stages, timer, out: Path, epochs: list[int], speed: str) -> None:
    """The same training through fitboard's engine in a speed mode."""
    from fitboard.app.core.schemas import parse_spec
    from fitboard.worker.engine import run_recipe
    from fitboard.worker.reporters import ListReporter

    spec = parse_spec({"name": f"gpu-{speed}", "dataset": "photos", "arch": ARCH, "pretrained": False,
                       "normalize": "imagenet", "speed": speed,
                       "stages": [{"epochs": e, "size": s, "presize": p, "bs": b, "lr": 1e-3, "freeze": False}
                                  for (s, p, b), e in zip(stages, epochs)]})
    run_recipe(spec, ListReporter(), frame_root, out, extra_cbs=(timer.cb,))


def main() -> int:
    """Check for CUDA, write the photos, run the three variants, print the table and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--prefetch", type=int, help="loader prefetch factor for fast (default: worker/speed.py's)")
    parser.add_argument("--smoke", action="store_true", help="a tiny CPU run of this script's code (resnet18, small)")
    args = parser.parse_args()
    stages = [(224, 460, 64), (448, 560, 32)]
    if args.smoke:
        global ARCH
        ARCH, stages = "resnet18", [(64, 96, 16), (96, 128, 8)]
        args.steps, args.warmup, args.images = 3, 1, 100
    elif not CUDA:
        print("no CUDA: bench/gpu.py measures GPU training and has nothing to measure on this machine")
        return 0
    started = time.perf_counter()
    from bench.pipeline import write_dataset
    if args.prefetch:
        import fitboard.worker.speed
        fitboard.worker.speed.FAST_PREFETCH = args.prefetch
    if CUDA:
        print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} "
              f"GiB; {os.cpu_count()} CPUs; bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "datasets"
        frame = write_dataset(root / "photos" / "train_images", args.images, os.cpu_count() or 1)
        csv = frame.assign(image_id=frame["image_id"], is_val=frame["is_valid"])[["image_id", "label", "is_val"]]
        csv.to_csv(root / "photos" / "train.csv", index=False)
        n_train = int((~frame["is_valid"]).sum())
        epochs = [math.ceil((args.warmup + args.steps) * bs / n_train) + 1 for _, _, bs in stages]
        print(f"wrote {len(frame)} photos in {time.perf_counter() - started:.0f} s; epochs per stage {epochs} "
              f"(each stage stops after {args.warmup} + {args.steps} steps)", flush=True)
        os.environ["FITBOARD_CACHE_DIR"] = str(Path(tmp) / "cache")
        results = {}
        variants = (("plain", lambda t, o: plain_notebook(frame, stages, t, o, epochs)),
                    ("default", lambda t, o: fitboard(root, stages, t, o, epochs, "default")),
                    ("fast", lambda t, o: fitboard(root, stages, t, o, epochs, "fast")))
        for name, run in variants:
            if time.perf_counter() - started > DEADLINE:
                print(f"{name}: skipped, past the {DEADLINE / 60:.1f}-minute budget", flush=True)
                continue
            timer, t0 = StepTimer(args.warmup, args.steps), time.perf_counter()
            run(timer, Path(tmp) / name)
            results[name] = timer.rows
            print(f"{name}: done in {time.perf_counter() - t0:.0f} s (fast includes building the presize cache)",
                  flush=True)
    print(f"\n=== summary ({time.perf_counter() - started:.0f} s) ===")
    print(f"{'variant':<8} {'stage':<16} {'images/s':>9} {'data wait':>10} {'peak GiB':>9}")
    for name, rows in results.items():
        for (size, _, bs), row in zip(stages, rows):
            print(f"{name:<8} {f'{size} px bs {bs}':<16} {row['images_per_second']:9.1f} {row['data_wait']:10.0%} "
                  f"{row['peak_gb']:9.1f}")
    for name, target in (("default", 0.98), ("fast", 1.5)):
        if name in results and "plain" in results:
            ratios = [a["images_per_second"] / b["images_per_second"] for a, b in zip(results[name], results["plain"])]
            print(f"{name}/plain: " + ", ".join(f"stage {i + 1} {r:.2f}" for i, r in enumerate(ratios)) +
                  f" (target >= {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
