"""How many LR-finder steps the presets need on the digits demo: the valley each step count suggests, and what the
presets reach with it.

For each step count, runs fastai's lr_find on the presets' first stage (full digits, 1,797 images, CPU) and prints the
valley suggestion and where the smoothed loss is lowest; with --train, trains the baseline and the other presets with
that step count and prints their final accuracy (every preset should beat the baseline).
Usage: python bench/lr_find_steps.py [--steps 20 50 100 200] [--train] [--presets baseline progressive]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from fitboard.app.core.demo_data import write_digits  # noqa: E402
from fitboard.app.core.schemas import parse_spec  # noqa: E402
from fitboard.app.pages.presets import preset_recipes  # noqa: E402
from fitboard.worker.engine import run_recipe  # noqa: E402
from fitboard.worker.reporters import ListReporter  # noqa: E402

DIGITS_SIDE = 32  # write_digits' image size


def finder_only(recipe: dict) -> dict:
    """The recipe cut to its first stage with no training epochs to speak of: only the finder matters here."""
    stage = {**recipe["stages"][0], "epochs": 1}
    return {**recipe, "stages": [stage], "tta": None, "keep_best": None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--train", action="store_true", help="also train the presets with each step count")
    parser.add_argument("--presets", nargs="+", default=["baseline", "progressive", "mixup", "smoothing"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "datasets"
        write_digits(root / "digits")
        for steps in args.steps:
            recipes = {key: recipe for key, _, _, recipe in preset_recipes("digits", DIGITS_SIDE, finder=steps)}
            reporter = ListReporter()
            t0 = time.perf_counter()
            run_recipe(parse_spec(finder_only(recipes["progressive"])), reporter, root, Path(tmp) / f"f{steps}",
                       num_workers=0)
            find = reporter.of("lr_find")[0]
            lowest = min(range(len(find.losses)), key=lambda i: find.losses[i] if find.losses[i] is not None
                         else float("inf"))
            print(f"{steps:>4} steps: valley {find.suggestion:.1e}, lowest loss at lr {find.lrs[lowest]:.1e} "
                  f"(finder + 1 epoch {time.perf_counter() - t0:.0f} s)", flush=True)
            if not args.train:
                continue
            for key in args.presets:
                t0 = time.perf_counter()
                result = run_recipe(parse_spec(recipes[key]), ListReporter(), root, Path(tmp) / f"{key}{steps}",
                                    num_workers=0)
                print(f"      {key:<12} accuracy {result.metrics.accuracy:.4f}"
                      + (f"  tta {result.tta.accuracy:.4f}" if result.tta else "")
                      + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
