"""What tracking costs: FitboardCallback's time per epoch, tracked vs untracked, alternating in one process (and
with the dashboard unreachable), and client.runs().to_pandas() over N stored runs.

    .venv/bin/python bench/callback.py [--epochs 6] [--runs 2000]

Starts `fitboard up` in a temporary home (tests/served.py) and trains squeezenet on the tiny digits at 32 px.
Prints the figures; asserts nothing (the machine may be loaded)."""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import torch
from fastai.vision.all import ImageDataLoaders, Resize, accuracy, error_rate, vision_learner
from torchvision.models import squeezenet1_1

import fitboard
from fitboard.app.core.demo_data import write_digits
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.models import Run
from fitboard.fastai import FitboardCallback
from tests.served import free_port, serving


def learner(data: Path):
    torch.manual_seed(0)
    dls = ImageDataLoaders.from_df(pd.read_csv(data / "train.csv"), data / "train_images", valid_col="is_val",
                                   item_tfms=Resize(32), bs=32, num_workers=0, seed=0)
    return vision_learner(dls, squeezenet1_1, pretrained=False, metrics=[accuracy, error_rate])


def epoch_seconds(learn, cb) -> float:
    """Seconds for one fit_one_cycle(1) with cb (or none)."""
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-3, cbs=[cb] if cb else None)
    return time.perf_counter() - start


def alternate(learn, make_cb, pairs: int) -> tuple[float, float]:
    """Median epoch time untracked and tracked, alternating so load drifts hit both alike."""
    plain, tracked = [], []
    cb = make_cb()
    epoch_seconds(learn, None)  # warm-up
    for _ in range(pairs):
        plain.append(epoch_seconds(learn, None))
        tracked.append(epoch_seconds(learn, cb))
    cb.finish(timeout=5)
    return statistics.median(plain), statistics.median(tracked)


def insert_runs(url: str, n: int) -> None:
    """n finished runs straight into the database, as a busy dashboard holds them."""
    engine = make_engine(url)
    spec = {"name": "bench", "dataset": "digits", "arch": "resnet18", "pretrained": False, "seed": 0,
            "stages": [{"epochs": 3, "size": 64, "presize": 80, "bs": 32, "lr": 1e-3, "freeze": True}]}
    with session_scope(engine) as session:
        for i in range(n):
            session.add(Run(name=f"bench-{i}", dataset="digits", spec={**spec, "seed": i}, status="succeeded",
                            best_accuracy=0.5 + i / (4 * n), result={"metrics": {"accuracy": 0.5, "valid_loss": 1.0}}))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3, help="tracked/untracked epoch pairs")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="fitboard-bench-"))
    data = home / "datasets" / "digits"
    write_digits(data, limit=300)
    with serving(home) as server:
        learn = learner(data)
        plain, tracked = alternate(learn, lambda: FitboardCallback(server.url, name="bench", verbose=False),
                                   args.pairs)
        print(f"epoch, untracked: {plain:.2f} s   tracked: {tracked:.2f} s   ratio {tracked / plain:.3f}")
        down = f"http://127.0.0.1:{free_port()}"
        plain, tracked = alternate(learn, lambda: FitboardCallback(down, name="bench", verbose=False), args.pairs)
        print(f"dashboard unreachable: untracked {plain:.2f} s   tracked {tracked:.2f} s   "
              f"ratio {tracked / plain:.3f}")
        insert_runs(f"sqlite:///{home / 'fitboard.db'}", args.runs)
        client = fitboard.Client(server.url)
        start = time.perf_counter()
        runs = client.runs()
        fetched = time.perf_counter() - start
        frame = runs.to_pandas()
        total = time.perf_counter() - start
        print(f"client.runs().to_pandas() over {len(frame)} runs: {total:.2f} s "
              f"({fetched:.2f} s fetching, {total - fetched:.2f} s building the DataFrame; {frame.shape[1]} columns)")


if __name__ == "__main__":
    main()
