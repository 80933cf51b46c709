"""Engine overhead: the demo recipe as a plain fastai script (as the seed notebook writes it) versus the engine.

Runs both alternately, several times, in one invocation, and prints the median seconds per epoch of each and
their ratio (target: engine / plain <= 1.02). Usage: python bench/engine_overhead.py [--reps 3]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torchvision.models  # noqa: E402
from fastai.callback.core import Callback  # noqa: E402
from fastai.vision.all import (  # noqa: E402
    CategoryBlock,
    ColReader,
    ColSplitter,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    LabelSmoothingCrossEntropy,
    MixUp,
    Normalize,
    Resize,
    SaveModelCallback,
    accuracy,
    aug_transforms,
    error_rate,
    set_seed,
    vision_learner,
)

from fitboard.app.core.datasets import resolve_dataset  # noqa: E402
from fitboard.app.core.demo_data import write_digits  # noqa: E402
from fitboard.app.core.recipes import load_recipe  # noqa: E402
from fitboard.worker.data import dataset_stats, items_frame  # noqa: E402
from fitboard.worker.engine import run_recipe  # noqa: E402
from fitboard.worker.reporters import JsonReporter  # noqa: E402


class EpochTimer(Callback):
    """The same stopwatch in both variants: wall seconds of every training epoch."""

    order = 0

    def __init__(self):
        self.seconds = []

    def before_epoch(self):
        self._t = time.perf_counter()

    def after_epoch(self):
        if not hasattr(self.learn, "lr_finder"):
            self.seconds.append(time.perf_counter() - self._t)


def plain_fastai(spec, frame, stats, timer, out: Path) -> None:
    """The recipe written out by hand, notebook style: get_dls per stage, fit_one_cycle, MixUp, SaveModel, TTA."""
    def get_dls(size, presize, bs):
        db = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=ColReader("path"), get_y=ColReader("label"),
                       splitter=ColSplitter("is_valid"), item_tfms=[Resize(presize)],
                       batch_tfms=[*aug_transforms(size=size, min_scale=0.75), Normalize.from_stats(*stats)])
        return db.dataloaders(frame, bs=bs, num_workers=0)

    set_seed(spec.seed, reproducible=True)
    s0 = spec.stages[0]
    learn = vision_learner(get_dls(s0.size, s0.presize, s0.bs), getattr(torchvision.models, spec.arch),
                           pretrained=False, normalize=False, metrics=[accuracy, error_rate], path=out,
                           loss_func=LabelSmoothingCrossEntropy(eps=spec.label_smoothing) if spec.label_smoothing
                           else CrossEntropyLossFlat(), cbs=[timer])
    for i, st in enumerate(spec.stages):
        if i:
            learn.dls = get_dls(st.size, st.presize, st.bs)
        learn.freeze() if st.freeze else learn.unfreeze()
        cbs = [SaveModelCallback(monitor="accuracy", fname="best")] + ([MixUp(st.mixup)] if st.mixup else [])
        learn.fit_one_cycle(st.epochs, slice(*st.lr) if isinstance(st.lr, list) else st.lr, cbs=cbs)
    if spec.tta:
        learn.tta(n=spec.tta.n)


def main() -> None:
    """Alternate plain and engine runs; print medians and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    spec = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "datasets"
        write_digits(root / "digits")
        ds = resolve_dataset(spec.dataset, root, seed=spec.seed)
        frame, stats = items_frame(ds), dataset_stats(ds, spec.seed)
        plain, engine = [], []
        for rep in range(args.reps):
            timer = EpochTimer()
            with contextlib.redirect_stdout(io.StringIO()):  # fastprogress's console bars, as a script prints them
                plain_fastai(spec, frame, stats, timer, Path(tmp) / f"plain{rep}")
            plain += timer.seconds
            timer = EpochTimer()
            with open("/dev/null", "w") as sink:
                run_recipe(spec, JsonReporter(sink), root, Path(tmp) / f"engine{rep}", dataset=ds, extra_cbs=(timer,))
            engine += timer.seconds
            print(f"rep {rep}: plain {statistics.median(plain):.3f} s/epoch, "
                  f"engine {statistics.median(engine):.3f} s/epoch", flush=True)
    p, e = statistics.median(plain), statistics.median(engine)
    print(f"demo recipe, {len(plain)} epochs each: plain fastai median {p:.3f} s/epoch, "
          f"engine median {e:.3f} s/epoch, ratio {e / p:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
