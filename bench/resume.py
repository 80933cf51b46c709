"""Resume benchmark: a run trained straight through vs. the same run killed (-9) at each epoch in turn and resumed.

Prints, per kill point, the extra wall time the resume cost (a fresh process, DataLoaders, learner and checkpoint
load) and the largest difference between the two epoch tables; then the cost of the per-epoch checkpoint itself:
epoch time with and without it, alternating, and their ratio (target <= 1.03 on the demo data).

    .venv/bin/python bench/resume.py [--images 1797] [--epochs 4] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fitboard.app.core.demo_data import write_digits  # noqa: E402

# One process per attempt, as a worker would be: it trains `spec` into `out`, printing one JSON event per line.
CHILD = """
import json, sys
from pathlib import Path
from fitboard.app.core.schemas import parse_spec
from fitboard.worker.engine import run_recipe
from fitboard.worker.reporters import JsonReporter
spec, root, out, checkpoints, resume = json.loads(sys.argv[1])
run_recipe(parse_spec(spec), JsonReporter(), Path(root), Path(out), num_workers=0, checkpoints=checkpoints,
           resume=resume)
"""


def recipe(epochs: int) -> dict:
    """The demo recipe's first stage, stretched: one stage, so every kill point falls inside a one-cycle schedule."""
    return {"name": "resume-bench", "dataset": "digits", "arch": "resnet18", "pretrained": False,
            "normalize": "dataset", "seed": 42, "keep_best": "accuracy",
            "stages": [{"epochs": epochs, "size": 32, "presize": 40, "bs": 64, "lr": 1e-3}]}


def attempt(spec: dict, root: Path, out: Path, checkpoints: bool, resume: bool,
            kill_after_epoch: int | None = None) -> tuple[float, list[dict]]:
    """One training process; killed with SIGKILL right after the checkpoint of kill_after_epoch when given.
    Returns its wall seconds and the events it printed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps([spec, str(root), str(out), checkpoints, resume])],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    events = []
    for line in proc.stdout:
        event = json.loads(line)
        event["arrived"] = time.perf_counter()  # epoch to epoch, checkpoint writes included
        events.append(event)
        if event["event"] == "checkpoint" and event["epoch"] == kill_after_epoch:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    return time.perf_counter() - t0, events


def table(events: list[dict]) -> dict[tuple[int, int], tuple[float, float]]:
    """(stage, epoch) -> (train_loss, valid_loss)."""
    return {(e["stage"], e["epoch"]): (e["train_loss"], e["valid_loss"]) for e in events if e["event"] == "epoch"}


def epoch_seconds(events: list[dict]) -> list[float]:
    """Seconds from one epoch row to the next: the epoch itself plus whatever runs after it (the checkpoint)."""
    arrivals = [e["arrived"] for e in events if e["event"] == "epoch"]
    return [b - a for a, b in zip(arrivals, arrivals[1:])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1797, help="digits written (1797: the whole demo dataset)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3, help="alternating pairs for the checkpoint-cost figure")
    parser.add_argument("--skip-kills", action="store_true", help="only the checkpoint-cost figure")
    args = parser.parse_args()
    spec = recipe(args.epochs)
    with tempfile.TemporaryDirectory(prefix="fitboard-bench-resume-") as tmp:
        root = Path(tmp)
        write_digits(root / "digits", limit=args.images)
        print(f"{args.images} images, {args.epochs} epochs of resnet18 at 32 px, num_workers 0, "
              f"{os.cpu_count()} cores", flush=True)
        lines = []
        for k in range(0 if args.skip_kills else args.epochs - 1):
            if k == 0:
                straight_s, straight = attempt(spec, root, root / "straight", checkpoints=True, resume=False)
                reference = table(straight)
                print(f"straight through: {straight_s:.1f} s", flush=True)
            out = root / f"killed-{k}"
            first_s, first = attempt(spec, root, out, checkpoints=True, resume=False, kill_after_epoch=k)
            second_s, second = attempt(spec, root, out, checkpoints=True, resume=True)
            resumed = {**table(first), **table(second)}
            diff = max(max(abs(a - b) for a, b in zip(reference[key], resumed[key])) for key in reference)
            extra = first_s + second_s - straight_s
            start = next(e for e in second if e["event"] == "start")["resumed_from"]
            lines.append(f"killed after epoch {k}: resumed at {start}, extra wall time {extra:+.1f} s, "
                         f"largest loss difference {diff:.2e}")
            print(lines[-1], flush=True)
        with_ck, without_ck = [], []
        for rep in range(args.reps):  # alternating, so drift on a noisy machine hits both sides alike
            without_ck += epoch_seconds(attempt(spec, root, root / f"plain-{rep}", checkpoints=False, resume=False)[1])
            with_ck += epoch_seconds(attempt(spec, root, root / f"ck-{rep}", checkpoints=True, resume=False)[1])
        a, b = statistics.median(with_ck), statistics.median(without_ck)
        lines.append(f"epoch time with checkpoint {a:.3f} s, without {b:.3f} s: ratio {a / b:.3f} (target <= 1.03)")
        print("\n=== summary ===")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
