"""FitboardCallback on real fastai training (tiny digits) against a real served fitboard: the rows, curve, final
metrics, confusion and exported model the dashboard holds are the learner's own; a dashboard that is down costs
nothing but the rows (said once), and rows kept while it was down arrive once it is back."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import uvicorn
from fastai.vision.all import ImageDataLoaders, Resize, accuracy, error_rate, load_learner, vision_learner
from torchvision.models import squeezenet1_1

import fitboard
from fitboard.app.core.demo_data import write_digits
from fitboard.app.core.settings import Settings
from fitboard.app.web.app import create_app
from fitboard.fastai import FitboardCallback
from fitboard.tracker import Tracker
from tests.conftest import TINY_IMAGES
from tests.served import free_port, serving
from tests.store_fixtures import *  # noqa: F401,F403


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`fitboard up` (web, worker, predictor) with the tiny digits as its demo dataset."""
    home = tmp_path_factory.mktemp("callback-home")
    write_digits(home / "datasets" / "digits", limit=TINY_IMAGES)
    with serving(home) as server:
        yield server


def tiny_learner(data: Path):
    """squeezenet on the tiny digits at 32 px, from scratch, as a notebook would build it."""
    torch.manual_seed(0)
    df = pd.read_csv(data / "train.csv")
    dls = ImageDataLoaders.from_df(df, data / "train_images", valid_col="is_val", item_tfms=Resize(32), bs=32,
                                   num_workers=0, seed=0)
    return vision_learner(dls, squeezenet1_1, pretrained=False, metrics=[accuracy, error_rate])


def test_callback_sends_the_learners_own_values(served, tmp_path):
    learn = tiny_learner(served.home / "datasets" / "digits")
    cb = FitboardCallback(served.url, name="nb-tracked", dataset="digits", confusion=True, top_losses=3,
                          export_model=True, verbose=False)
    learn.add_cb(cb)
    learn.lr_find(num_it=12, show_plot=False)
    with learn.no_bar():
        learn.fit_one_cycle(2, 3e-3)
    recorded = [list(v) for v in learn.recorder.values]  # [train_loss, valid_loss, accuracy, error_rate] per epoch
    final = learn.validate()
    run_id = cb.finish()
    assert cb.export_path.name == "export.pkl" and not cb.export_path.parent.exists()  # sent, then removed
    run = fitboard.Client(served.url).run(run_id)
    assert (run["kind"], run.status, run["spec"]["arch"], run["spec"]["tracked"]["n_valid"]) == \
        ("tracked", "succeeded", "squeezenet1_1", 60)
    # Every epoch row, the last one included, is the recorder's (fastai#3102: trackers logged the epoch before).
    epochs = run.epochs()
    assert list(zip(epochs.stage, epochs.epoch)) == [(1, 1), (1, 2)]
    got = epochs[["train_loss", "valid_loss", "accuracy", "error_rate"]].values.tolist()
    assert sum(got, []) == pytest.approx(sum(recorded, []), rel=1e-6)
    stage = run["spec"]["stages"][0]
    assert (stage["epochs"], stage["size"], stage["bs"], stage["freeze"]) == (2, 32, 32, False)
    assert 3e-3 / 2 < stage["lr"] <= 3e-3  # fit_one_cycle's peak, as the callback saw it per batch
    (find,) = run.lr_finds()
    assert find["stage"] == 0 and find["suggestion"] in find["lrs"]
    metrics = run["result"]["metrics"]
    assert (metrics["valid_loss"], metrics["accuracy"]) == pytest.approx((float(final[0]), float(final[1])))
    matrix = run["result"]["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == 60 and sum(matrix[i][i] for i in range(10)) / 60 == pytest.approx(final[1])
    assert len(run["result"]["top_losses"]) == 3
    # The uploaded model, downloaded and loaded fresh twice, answers as the notebook's learner does.
    path = run.download_model(tmp_path)
    image = learn.dls.valid_ds.items.iloc[0]["image_id"]
    image_path = served.home / "datasets" / "digits" / "train_images" / image
    expected = learn.predict(image_path)[2]
    for _ in range(2):
        assert torch.allclose(load_learner(path).predict(image_path)[2], expected, atol=1e-5)


def test_unreachable_dashboard_costs_training_nothing_and_is_said_once(capsys, data_root):
    learn = tiny_learner(data_root / "digits")
    cb = FitboardCallback(f"http://127.0.0.1:{free_port()}", name="nowhere", max_pending=1, flush_every=0.05)
    with learn.no_bar():
        learn.fit_one_cycle(1, 3e-3, cbs=cb)
        learn.fit_one_cycle(1, 1e-3, cbs=cb)
    assert len(learn.recorder.values) == 1 and cb.stage == 1  # both fits ran, each a stage
    assert cb.finish(timeout=5) is None  # no run id: the dashboard never answered; no exception either
    said = capsys.readouterr().out
    assert said.count("keeping rows and retrying") == 1 and said.count("dropping tracked epoch rows beyond 1") == 1
    assert cb.tracker.dropped == 1  # two rows, one kept
    assert said.count("were not sent") == 1


def test_rows_kept_while_the_dashboard_is_down_arrive_when_it_is_back(sqlite_url, tmp_path, data_root):
    port = free_port()
    said = []
    tracker = Tracker("late", url=f"http://127.0.0.1:{port}", flush_every=0.05, say=said.append)
    tracker.put("stage", {"stage": 0, "epochs": 2, "size": 32, "bs": 32, "lr": 0.003})
    for e in range(2):
        tracker.put("epoch", {"stage": 0, "epoch": e, "train_loss": 1.0 - e / 10, "valid_loss": 0.9,
                              "metrics": {"accuracy": 0.5 + e / 10}, "seconds": 1.0})
    deadline = time.monotonic() + 30
    while not any("unreachable" in s for s in said) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tracker.run_id is None and len(tracker.epochs) == 2  # kept, not lost
    app = create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.05)
    try:
        tracker.put("finish", {"metrics": {"accuracy": 0.6}})
        assert tracker.close(timeout=60)  # its backoff is at most 30 s: it tries again and everything goes
        run = fitboard.Client(f"http://127.0.0.1:{port}").run(tracker.run_id)
        assert [round(a, 6) for a in run.epochs().accuracy] == [0.5, 0.6]
        assert (run.status, run["best_accuracy"]) == ("succeeded", 0.6)
    finally:
        server.should_exit = True
        thread.join(10)
