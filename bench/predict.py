"""Predict benchmark: end-to-end latency of POST /api/v1/runs/{id}/predict with one 224 px JPEG, cold (the
predictor loads the run's model) and warm (it stays loaded). Real parts: a model trained here at 224 px, a uvicorn
server, a `fitboard predictor` process, SQLite. Target: warm under 300 ms on this CPU.

    .venv/bin/python bench/predict.py [--warm 30] [--arch squeezenet1_1]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from PIL import Image  # noqa: E402

from fitboard.app.core.demo_data import write_digits  # noqa: E402
from fitboard.app.core.schemas import parse_spec  # noqa: E402
from fitboard.app.core.settings import Settings  # noqa: E402
from fitboard.app.store.db import make_engine, session_scope  # noqa: E402
from fitboard.app.store.predictions import live_predictors  # noqa: E402
from tests.helpers import train_and_store  # noqa: E402
from tests.live import live_app  # noqa: E402


def train(home: Path, data_root: Path, arch: str) -> tuple[str, int]:
    """A succeeded run at 224 px with its model in the artifact store; (database URL, run id)."""
    spec = parse_spec({"name": "bench-predict", "dataset": "digits", "arch": arch, "pretrained": False,
                       "normalize": "imagenet", "seed": 1,
                       "stages": [{"epochs": 1, "size": 224, "presize": 224, "bs": 32, "lr": 1e-3}]})
    return train_and_store(home, spec, data_root)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=30, help="warm predictions to time")
    parser.add_argument("--arch", default="squeezenet1_1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        data_root = home / "datasets"
        write_digits(data_root / "digits", limit=300)
        url, run_id = train(home, data_root, args.arch)
        env = {**os.environ, "FITBOARD_HOME": str(home), "FITBOARD_DATABASE_URL": url}
        predictor = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "predictor"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            engine = make_engine(url)
            while True:
                with session_scope(engine) as session:
                    if live_predictors(session):
                        break
                time.sleep(0.1)
            path = sorted((data_root / "digits" / "train_images").glob("*.jpg"))[0]
            buf = io.BytesIO()
            Image.open(path).convert("RGB").resize((224, 224)).save(buf, "JPEG", quality=90)
            image = buf.getvalue()
            settings = Settings(home=home, database_url=url, data_root=data_root)
            with live_app(settings) as (base, _):
                def once() -> tuple[float, dict]:
                    started = time.perf_counter()
                    r = requests.post(f"{base}/api/v1/runs/{run_id}/predict",
                                      files=[("images", ("digit.jpg", image, "image/jpeg"))], timeout=300)
                    took = time.perf_counter() - started
                    assert r.status_code == 200 and r.json()["status"] == "done", r.text
                    return took, r.json()

                cold, first = once()
                warm = [once() for _ in range(args.warm)]
        finally:
            predictor.terminate()
            predictor.wait(timeout=30)
    times = sorted(t for t, _ in warm)
    inside = statistics.median(b["seconds"] for _, b in warm)
    print(f"model: {args.arch} trained at 224 px; one 224 px JPEG ({len(image) / 1024:.0f} kB) per request")
    print(f"cold (loads the model): {cold * 1000:7.0f} ms end to end  (predictor {first['seconds'] * 1000:.0f} ms, "
          f"loaded_model={first['loaded_model']})")
    print(f"warm x{len(times)}: median {statistics.median(times) * 1000:6.0f} ms, p90 "
          f"{times[int(0.9 * (len(times) - 1))] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms end to end "
          f"(predictor median {inside * 1000:.0f} ms)")
    print(f"target: warm < 300 ms -> {'met' if statistics.median(times) < 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
