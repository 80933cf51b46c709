"""Runs behind a real broker and real worker processes, on real migrated databases, training the digits data."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from sqlalchemy import func
from sqlmodel import select

from fitboard.app.core.errors import RecipeError
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from fitboard.app.store.runs import list_lr_finds, request_cancel
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_template, sqlite_url, ...
from tests.workers import Workers, redis_url


@pytest.fixture
def make_workers(tmp_path, sqlite_url, data_root):
    """Build a Workers group on a fresh copy of the migrated database; kills every process afterwards."""
    groups = []

    def make(broker: str | None = None, **settings) -> Workers:
        group = Workers(tmp_path, sqlite_url, data_root, broker, **settings)
        groups.append(group)
        return group

    yield make
    for group in groups:
        group.stop()


def long_recipe(epochs_: int = 6, **kw) -> dict:
    """A run long enough to interrupt: several epochs of the tiny recipe."""
    recipe = tiny_recipe(**kw)
    recipe["stages"][0]["epochs"] = epochs_
    return recipe


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_queued_run_succeeds_with_every_epoch_stored_once(make_workers, broker):
    workers = make_workers(None if broker == "embedded" else redis_url())
    workers.start(1)
    recipe = tiny_recipe(keep_best="accuracy", tta={"n": 1})
    recipe["stages"] = [{"epochs": 2, "size": 32, "presize": 40, "bs": 32, "lr": "find", "lr_find_iters": 10},
                        {"epochs": 1, "size": 40, "presize": 48, "bs": 32, "lr": [1e-4, 1e-3]}]
    run_id = workers.submit(recipe)
    run = workers.wait_status(run_id, "succeeded", "failed")
    assert run.status == "succeeded", run.error
    assert workers.rows(run_id) == [(0, 0), (0, 1), (1, 0)]
    assert run.attempt == 1 and run.best_accuracy == pytest.approx(run.result["metrics"]["accuracy"])
    assert run.result["tta"]["n"] == 1 and run.result["best"]["metric"] == "accuracy"
    stored = workers.home / "artifacts" / str(run_id)  # the default artifact store; the scratch folder is gone
    assert sorted(p.name for p in stored.iterdir()) == ["model.pkl", "predictions.csv"]
    # The scratch folder goes right after the status commits (the files are in the artifact store by then): on a
    # loaded machine the test can look in between.
    deadline = time.monotonic() + 30
    while list((workers.home / "work").glob(f"{run_id}.*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((workers.home / "work").glob(f"{run_id}.*")) and run.result["model_path"] is None
    assert [s["stage"] for s in run.result["stages"]] == [0, 1] and run.result["stages"][1]["lr"] == [1e-4, 1e-3]
    with session_scope(workers.engine) as session:
        finds = list_lr_finds(session, run_id)
    assert [f.stage for f in finds] == [0] and finds[0].suggestion > 0


def test_two_workers_six_runs_each_executed_once(make_workers):
    workers = make_workers(redis_url())
    workers.start(2)
    ids = [workers.submit(tiny_recipe(name=f"run-{i}", seed=i)) for i in range(6)]
    runs = [workers.wait_status(i, "succeeded", "failed", timeout=300) for i in ids]
    assert [r.status for r in runs] == ["succeeded"] * 6
    assert all(r.attempt == 1 for r in runs)
    assert all(workers.rows(i) == [(0, 0)] for i in ids)
    assert len({r.worker for r in runs}) == 2  # both workers took work
    assert workers.logs().count("Task fitboard.train_run") - workers.logs().count("skipping") >= 6


def test_cancel_queued_and_running(make_workers):
    workers = make_workers(redis_url())
    queued = workers.submit(tiny_recipe(name="never-runs"))
    with session_scope(workers.engine) as session:
        assert request_cancel(session, queued) == "cancelled"
    running = workers.submit(long_recipe(20, name="stopped-mid-way"))
    workers.start(1)
    workers.wait(running, lambda r: (r.progress or {}).get("batch", {}).get("epoch", 0) >= 1, timeout=120)
    with session_scope(workers.engine) as session:
        assert request_cancel(session, running) == "running"  # the worker's callback will notice
    run = workers.wait_status(running, "cancelled", "failed", "succeeded", timeout=30)
    assert run.status == "cancelled"
    kept = workers.rows(running)
    assert kept and kept[0] == (0, 0) and len(kept) < 20
    never = workers.run(queued)
    assert never.status == "cancelled" and never.started_at is None and workers.rows(queued) == []


def test_run_longer_than_visibility_timeout_is_not_executed_twice(make_workers):
    workers = make_workers(redis_url(), visibility_timeout=2)
    workers.start(2)
    run_id = workers.submit(long_recipe(6))
    run = workers.wait_status(run_id, "succeeded", "failed", timeout=240)
    assert run.status == "succeeded" and run.attempt == 1
    assert workers.rows(run_id) == [(0, e) for e in range(6)]


def test_bad_recipe_or_dataset_refused_at_enqueue_and_nothing_stored(make_workers, tmp_path):
    workers = make_workers(None)
    with pytest.raises(RecipeError, match="unknown dataset"):
        workers.submit(tiny_recipe(dataset="no-such-data"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_recipe(arch="resnet5")))
    proc = subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "enqueue", str(bad), "--queue", workers.queue],
                          env=workers.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "arch: unknown architecture 'resnet5'" in proc.stderr
    with session_scope(workers.engine) as session:
        assert session.exec(select(func.count()).select_from(Run)).one() == 0


def test_operator_cli_enqueue_runs_show_cancel(make_workers, tmp_path):
    workers = make_workers(None)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(name="from-cli")))
    def cli(*a):
        return subprocess.run([sys.executable, "-m", "fitboard.worker.cli", *a], env=workers.env, capture_output=True,
                              text=True, timeout=120)
    enq = cli("enqueue", str(recipe), "--queue", workers.queue)
    assert enq.returncode == 0, enq.stderr
    run_id = int(enq.stdout.strip())
    listing = cli("runs")
    assert "from-cli" in listing.stdout and "queued" in listing.stdout
    workers.start(1)
    workers.wait_status(run_id, "succeeded", "failed")
    shown = json.loads(cli("show", str(run_id), "--json").stdout)
    assert shown["status"] == "succeeded" and [e["epoch"] for e in shown["epochs"]] == [0]
    again = cli("cancel", str(run_id))
    assert again.returncode == 1 and "finished" in again.stderr


DECLARE = """
import sys, time
from pathlib import Path
from fitboard.app.core.settings import Settings
from fitboard.app.services.queue import declare_queues, make_celery
celery = make_celery(Settings(home=Path(sys.argv[1]), broker_url=None))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process starts the declaration at the same moment
declare_queues(celery, [sys.argv[3]])
"""


def test_workers_started_together_on_the_embedded_broker_all_declare_their_new_queue(tmp_path):
    """kombu's SQLAlchemy transport let the second of two workers started together die of an IntegrityError
    (kombu_queue.name) when both created the queue's row: declared up front, every process gets through."""
    for round_ in range(3):
        home = tmp_path / f"round-{round_}"
        home.mkdir()
        at = time.time() + 3.0
        procs = [subprocess.Popen([sys.executable, "-c", DECLARE, str(home), str(at), "fresh-queue"],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
