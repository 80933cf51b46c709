"""Augmentation on the digits demo: plain and TTA accuracy with fastai's default augmentations versus flips off.

Run: .venv/bin/python bench/augment.py [--seeds 3] [--jobs 2] [--threads 1] [--tta-n N]
Trains recipes/demo.yaml as written (3 epochs in 2 stages, 24 -> 32 px, TTA n=2) on the full digits demo data
(1,797 images, 359 held out), on the CPU, once per seed and augmentation setting, and prints one table row per
setting (mean and each seed) and the seed-paired difference. --jobs trains that many runs at once, each in its
own process with --threads torch threads. Digits are not symmetric: a mirrored 2 or 7 is not a digit, so flips
should cost accuracy, and TTA (which averages augmented passes) more than plain scoring.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fitboard.app.core.datasets import resolve_dataset  # noqa: E402
from fitboard.app.core.demo_data import write_digits  # noqa: E402
from fitboard.app.core.recipes import read_recipe_file  # noqa: E402
from fitboard.app.core.schemas import AugmentSpec, parse_spec  # noqa: E402
from fitboard.worker.engine import run_recipe  # noqa: E402
from fitboard.worker.reporters import ListReporter  # noqa: E402

SETTINGS = (("fastai defaults (flips on)", AugmentSpec().model_dump()),
            ("flips off (demo recipe)", AugmentSpec(flip=False).model_dump()))


def train(recipe: dict, root: Path, out: Path, seed: int, augment: dict, threads: int) -> tuple[float, float]:
    """(plain accuracy, TTA accuracy) of one run of the recipe with this seed and augment block."""
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    spec = parse_spec({**recipe, "seed": seed, "augment": augment})
    ds = resolve_dataset(spec.dataset, root, seed=spec.seed)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        result = run_recipe(spec, ListReporter(), root, out, dataset=ds, num_workers=0)
    print(f"  flip={augment['flip']} seed {seed}: plain {result.metrics.accuracy:.4f}, TTA {result.tta.accuracy:.4f}"
          f" ({time.perf_counter() - started:.0f} s)", flush=True)
    return result.metrics.accuracy, result.tta.accuracy


def main() -> int:
    """Train every (setting, seed) pair and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--tta-n", type=int, default=None, help="TTA passes (default: the demo recipe's)")
    args = parser.parse_args()
    recipe = read_recipe_file(ROOT / "recipes" / "demo.yaml")
    if args.tta_n:
        recipe["tta"] = {**recipe["tta"], "n": args.tta_n}
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "datasets"
        write_digits(root / "digits")
        import torch

        threads = args.threads or torch.get_num_threads()
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {label: [pool.submit(train, recipe, root, Path(tmp) / f"{i}-{s}", s, augment, threads)
                               for s in seeds] for i, (label, augment) in enumerate(SETTINGS)}
            rows = {label: [f.result() for f in fs] for label, fs in futures.items()}
    epochs = sum(s["epochs"] for s in recipe["stages"])
    print(f"\nrecipes/demo.yaml ({epochs} epochs, TTA n={recipe['tta']['n']}), digits 1,797 images, CPU, "
          f"seeds {seeds}, {args.jobs} at once x {threads} torch threads, "
          f"{time.perf_counter() - started:.0f} s in all\n")
    print("| augmentation | plain accuracy (mean) | TTA accuracy (mean) | TTA - plain | per seed plain / TTA |")
    print("|---|---|---|---|---|")
    for label, res in rows.items():
        plain, tta = [p for p, _ in res], [t for _, t in res]
        seeds_text = ", ".join(f"{100 * p:.1f} / {100 * t:.1f}" for p, t in res)
        print(f"| {label} | {100 * statistics.mean(plain):.2f}% | {100 * statistics.mean(tta):.2f}% | "
              f"{100 * (statistics.mean(tta) - statistics.mean(plain)):+.2f} pts | {seeds_text} |")
    (a_label, a), (b_label, b) = rows.items()
    for i, name in ((0, "plain"), (1, "TTA")):
        diffs = [100 * (y[i] - x[i]) for x, y in zip(a, b)]
        print(f"\n{name}: {b_label} minus {a_label}, paired by seed: mean {statistics.mean(diffs):+.2f} pts, "
              f"per seed {', '.join(f'{d:+.1f}' for d in diffs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
