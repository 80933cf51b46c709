"""How long a run's progress goes silent: train the digits demo (LR finder, 2 epochs, TTA n=4) in-process and print
the longest gap between progress events, with the events per phase. Usage: python bench/progress_gaps.py"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timed_run import train_digits  # noqa: E402  (bench/ is on sys.path when run as a script)

RECIPE = {"name": "gaps", "dataset": "digits", "arch": "squeezenet1_1", "pretrained": False, "normalize": "dataset",
          "seed": 1, "tta": {"n": 4, "use_max": False},
          "stages": [{"epochs": 2, "size": 32, "presize": 40, "bs": 32, "lr": "find", "lr_find_iters": 100}]}


def main() -> None:
    events, start, end = train_digits(RECIPE, limit=600, num_workers=0)
    marks = [start] + [t for t, e in events if e.event in ("progress", "epoch")] + [end]
    gaps = [(b - a, a) for a, b in zip(marks, marks[1:])]
    longest, at = max(gaps)
    phases = Counter(getattr(e, "phase", None) or "(none)" for _, e in events if e.event == "progress")
    print(f"run: {end - start:.1f} s from start to result; progress events: {sum(phases.values())}")
    print(f"longest silence (no progress or epoch event): {longest:.1f} s, from {at - start:.1f} s after start")
    print("progress events per phase: " + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())))


if __name__ == "__main__":
    main()
