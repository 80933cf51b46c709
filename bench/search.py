"""Search benchmark (not a test): a search with ASHA on the digits demo across 2 real worker processes, against
training every configuration of its space fully. Prints a markdown table: epochs trained by the search versus the
full grid (target <= 40%), the search winner's rank in the full grid at the same seed (target top 3), wall time from
submit to the verify verdict and how much of it runs waited in the queue.

    .venv/bin/python bench/search.py [--limit 1000] [--trials 8] [--seeds 3]

The space (12 configurations) holds clearly bad ones: a learning rate 100x too high, and MixUp 1.0 on a 1-epoch
stage.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fitboard.app.core import search_space  # noqa: E402
from fitboard.app.core.demo_data import write_digits  # noqa: E402
from fitboard.app.core.status import FINISHED  # noqa: E402
from fitboard.app.services import searches  # noqa: E402
from fitboard.app.services.queue import Publisher, make_celery  # noqa: E402
from fitboard.app.store import searches as search_store  # noqa: E402
from fitboard.app.store.db import session_scope, upgrade  # noqa: E402
from fitboard.app.store.models import EpochRow, Run  # noqa: E402
from tests.workers import Workers  # noqa: E402

BASE = {"name": "digits-search", "dataset": "digits", "arch": "resnet18", "pretrained": False,
        "normalize": "dataset", "seed": 42,
        "stages": [{"epochs": 1, "size": 32, "presize": 32, "bs": 64, "lr": 1e-3},
                   {"epochs": 3, "size": 32, "presize": 32, "bs": 64, "lr": 1e-3}]}
# 4 rates x 3 MixUp settings = 12; 1e-1 is 100x the base's rate; MixUp 1.0 on stage 0 (1 epoch) is clearly bad.
SPACE = {"stages[*].lr": [3e-4, 1e-3, 3e-3, 1e-1], "stages[0].mixup": [None, 0.2, 1.0]}


def _wait(engine, ids: list[int], timeout: float) -> None:
    """Until every run has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            if all(s.get(Run, i).status in FINISHED for i in ids):
                return
        time.sleep(1)
    raise RuntimeError("runs did not finish in time")


def _queue_waits(engine, run_ids: list[int]) -> list[float]:
    """Seconds each run waited between being stored and its first start."""
    with session_scope(engine) as s:
        runs = [s.get(Run, i) for i in run_ids]
        return [(r.started_at - r.created_at).total_seconds() for r in runs if r.started_at]


def _epochs(engine, run_ids: list[int]) -> int:
    with session_scope(engine) as s:
        return s.exec(select(func.count()).select_from(EpochRow).where(EpochRow.run_id.in_(run_ids))).scalar_one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="digits images (of 1797)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3, help="fresh seeds of the verify sweep")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fitboard-bench-search-") as tmp:
        home = Path(tmp)
        write_digits(home / "datasets" / "digits", limit=args.limit)
        url = f"sqlite:///{home / 'fitboard.db'}"
        upgrade(url)
        workers = Workers(home, url, home / "datasets", None)
        try:
            workers.start(2)
            publisher = Publisher(make_celery(workers.settings()), queue=workers.queue)
            t0 = time.monotonic()
            with session_scope(workers.engine) as s:
                search = searches.create(s, publisher, BASE, SPACE, {"max_trials": args.trials, "max_parallel": 2,
                                                                   "seeds": args.seeds, "k": 2},
                                         home / "datasets", 256, 600)
            verifying_at = None
            while True:
                with session_scope(workers.engine) as s:
                    status = search_store.get_search(s, search.id).status
                if status == "verifying" and verifying_at is None:
                    verifying_at = time.monotonic() - t0
                if status in ("done", "failed", "cancelled"):
                    break
                time.sleep(1)
            wall = time.monotonic() - t0
            with session_scope(workers.engine) as s:
                report = searches.report(s, search.id)
                trial_ids = [t["run_id"] for t in report["trials"] if t["run_id"]]
                verify_ids = list(s.exec(select(Run.id).where(
                    Run.sweep_id == report["verify"]["sweep_id"])).scalars()) if report["verify"] else []
            waits = _queue_waits(workers.engine, trial_ids + verify_ids)
            # The full grid: every configuration trained fully at the base's seed.
            grid = []
            for lr in SPACE["stages[*].lr"]:
                for mix in SPACE["stages[0].mixup"]:
                    params = {"stages[*].lr": lr, "stages[0].mixup": mix}
                    spec = search_space.apply(BASE, params)
                    grid.append((params, workers.submit({**spec, "name": f"grid {json.dumps(params)}"})))
            g0 = time.monotonic()
            _wait(workers.engine, [i for _, i in grid], 7200)
            grid_wall = time.monotonic() - g0
            with session_scope(workers.engine) as s:
                scored = sorted(((s.get(Run, i).best_accuracy or 0.0, p) for p, i in grid), key=lambda x: -x[0])
            grid_epochs = _epochs(workers.engine, [i for _, i in grid])
        finally:
            workers.stop()
    best = report["best"]
    rank = next(i + 1 for i, (_, p) in enumerate(scored) if p == best["params"]) if best else None
    b = report["budget"]
    pruned = [t for t in report["trials"] if t["status"] == "pruned"]
    lines = [
        "| figure | value |", "|---|---|",
        f"| configurations in the space | {len(grid)} (4 learning rates x 3 MixUp settings on a 1-epoch stage) |",
        f"| trials (2 workers, ASHA, reduction factor 3) | {len(report['trials'])}, {len(pruned)} pruned |",
        f"| epochs trained by the search | {b['epochs_trained']} |",
        f"| epochs of the full grid (every configuration, 4 epochs) | {grid_epochs} |",
        f"| search / full grid | {100 * b['epochs_trained'] / grid_epochs:.0f}% (target <= 40%) |",
        f"| search winner | trial {best['number']}: {json.dumps(best['params'])}, accuracy {best['value']:.4f} |"
        if best else "| search winner | none |",
        f"| winner's rank in the full grid (same seed) | {rank} of {len(grid)} (target top 3) |",
        f"| full grid's best | {json.dumps(scored[0][1])}, accuracy {scored[0][0]:.4f} |",
        f"| wall time submit -> budget spent (verify sweep started) | {verifying_at:.0f} s |" if verifying_at else
        "| wall time submit -> verify started | n/a |",
        f"| wall time submit -> verify verdict | {wall:.0f} s ({report['status']}) |",
        f"| queue wait per run (trials + verify runs) | mean {sum(waits) / len(waits):.1f} s, max {max(waits):.1f} s,"
        f" total {sum(waits):.0f} s over {len(waits)} runs |",
        f"| wall time of the full grid on the same 2 workers | {grid_wall:.0f} s |",
    ]
    for w in (report["verify"] or {}).get("winners", []):
        lines.append(f"| verify: {w['label']} | search {w['search_value']:.4f}, verified mean "
                     f"{w['verified']['mean']}, {w['verdict']} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
