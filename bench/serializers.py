"""Serializer cost: microseconds per run for the runs list (summary) and the run page (full), now that every API
shape is built through its pydantic model. Usage: python bench/serializers.py [--n 2000]"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fitboard.app.services.serializers import serialize_run  # noqa: E402
from fitboard.app.store.models import Run  # noqa: E402


def sample(i: int) -> Run:
    """A finished run as a page shows it (result, progress, tags, checkpoint)."""
    now = datetime.now(timezone.utc)
    return Run(id=i, name=f"run {i}", dataset="digits", status="succeeded", spec={"name": f"run {i}", "seed": i},
               techniques=["normalize", "mixup"], best_accuracy=0.9, created_at=now, started_at=now, finished_at=now,
               worker="host:1", attempt=1, tags="a,b", checkpoint={"stage": 0, "epoch": 1},
               result={"metrics": {"accuracy": 0.9}, "tta": None, "best": None}, progress={"stages": []})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    runs = [sample(i) for i in range(args.n)]
    for full in (False, True):
        start = time.perf_counter()
        for run in runs:
            serialize_run(run, full=full)
        per = (time.perf_counter() - start) / args.n * 1e6
        print(f"serialize_run(full={full}): {per:.1f} µs per run ({args.n} runs)")


if __name__ == "__main__":
    main()
