"""Sweep flood benchmark: while one client posts a sweep of FITBOARD_MAX_SWEEP_RUNS runs to a real `fitboard web`,
another posts single runs; prints how long the sweep took and the single submits' latencies (target: every
concurrent POST /api/v1/runs answers within 1 s).

    .venv/bin/python bench/sweep_flood.py [--runs 256]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fitboard.app.core.demo_data import write_digits  # noqa: E402
from tests.served import free_port  # noqa: E402


def recipe(name: str) -> dict:
    return {"name": name, "dataset": "digits", "arch": "resnet18", "pretrained": False,
            "stages": [{"epochs": 1, "size": 32, "bs": 64, "lr": 1e-3}]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=256, help="variants x seeds of the sweep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fitboard-bench-flood-") as tmp:
        home = Path(tmp)
        write_digits(home / "datasets" / "digits", limit=100)
        port = free_port()
        env = {**os.environ, "FITBOARD_HOME": str(home), "FITBOARD_MAX_SWEEP_RUNS": str(args.runs)}
        for key in ("FITBOARD_DATABASE_URL", "FITBOARD_BROKER_URL", "FITBOARD_API_TOKEN"):
            env.pop(key, None)
        web = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "web", "--port", str(port)], cwd=ROOT,
                                env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=120) as client:
                while True:
                    try:
                        client.get("/healthz")
                        break
                    except httpx.HTTPError:
                        time.sleep(0.2)
                seeds = 4
                values = [round(0.001 * (i + 1), 3) for i in range(args.runs // seeds - 1)]
                sweep = {"base": recipe("flood"), "vary": {"label_smoothing": values}, "seeds": list(range(seeds))}
                latencies, done = [], threading.Event()

                def single_submits():
                    with httpx.Client(base_url=base, timeout=120) as other:
                        i = 0
                        while not done.is_set():
                            t0 = time.perf_counter()
                            response = other.post("/api/v1/runs", json=recipe(f"single-{i}"))
                            latencies.append((time.perf_counter() - t0, response.status_code))
                            i += 1
                            time.sleep(0.05)

                side = threading.Thread(target=single_submits)
                side.start()
                time.sleep(0.3)
                t0 = time.perf_counter()
                response = client.post("/api/v1/sweeps", json=sweep)
                sweep_s = time.perf_counter() - t0
                time.sleep(0.3)
                done.set()
                side.join()
        finally:
            web.terminate()
            web.wait(timeout=30)
        queued = len(response.json().get("queued", []))
        seconds = [s for s, _ in latencies]
        print(f"sweep of {queued} runs: HTTP {response.status_code} in {sweep_s:.2f} s")
        statuses = sorted({c for _, c in latencies})
        print(f"{len(latencies)} single submits meanwhile (statuses {statuses}): median "
              f"{1000 * statistics.median(seconds):.0f} ms, max {1000 * max(seconds):.0f} ms (target <= 1000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
