"""How long the demo recipe takes on this machine and how true its whole-run ETA is: train recipes/demo.yaml on the
digits demo (all 1,797 images, as `fitboard up` registers them) in-process, as a worker does, and print the wall
time and, per progress event, the ETA shown beside the time that was actually left.
Usage: python bench/demo_eta.py [--json events.json]"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timed_run import train_digits  # noqa: E402  (bench/ is on sys.path when run as a script)

from fitboard.app.pages.presets import DEMO_RECIPE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="write the training progress events and epoch rows here")
    args = parser.parse_args()
    events, start, end = train_digits(DEMO_RECIPE)
    print(f"demo recipe: {end - start:.1f} s from start to result")
    rows, worst, jump, last = [], 0.0, 0.0, None
    for t, e in events:
        if e.event == "epoch":
            rows.append({"t": round(t - start, 3), "event": "epoch", "stage": e.stage, "epoch": e.epoch,
                         "seconds": e.seconds})
        if e.event != "progress" or e.run_eta is None:
            continue
        left = end - t
        rows.append({"t": round(t - start, 3), "event": "progress", "phase": e.phase, "stage": e.stage,
                     "epoch": e.epoch, "batch": e.batch, "total": e.total, "elapsed": e.elapsed,
                     "run_eta": e.run_eta, "left": left})
        print(f"{t - start:6.1f} s  stage {e.stage + 1} epoch {e.epoch + 1} batch {e.batch}/{e.total} "
              f"{e.phase or '':8} ETA {e.run_eta:6.1f} s  actually left {left:6.1f} s")
        worst = max(worst, abs(e.run_eta - left))
        if last is not None:  # a jump: the ETA moved by more than the time that passed
            jump = max(jump, abs((last[1] - e.run_eta) - (t - last[0])))
        last = (t, e.run_eta)
    print(f"largest ETA error: {worst:.1f} s; largest jump between two events beyond the time passed: {jump:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
