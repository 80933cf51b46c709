"""The training task in-process: worker.tasks imported by a test and run through a worker that create_worker builds
from real settings (a SQLite database migrated by Alembic, the embedded broker), training the digits data."""
from __future__ import annotations

import csv
import io

import pytest

from fitboard.app.core.artifacts import open_store
from fitboard.app.core.settings import Settings
from fitboard.app.core.status import RunStatus
from fitboard.app.services import runs
from fitboard.app.services.queue import TRAIN_TASK
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from fitboard.app.store.runs import list_epochs
from fitboard.worker import tasks
from fitboard.worker.factory import create_worker
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_template, sqlite_url, ...


@pytest.fixture
def worker(tmp_path, sqlite_url, data_root):
    """A worker of this test's own: its home, database and embedded broker under tmp_path."""
    made = create_worker(Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root,
                                  broker_url=None, num_workers=0, worker_name="in-process:1"))
    yield made
    made.engine.dispose()


def test_the_training_task_trains_a_queued_run_in_process(worker, data_root):
    recipe = tiny_recipe(keep_best="accuracy")
    recipe["stages"][0]["epochs"] = 2
    with session_scope(worker.engine) as session:
        run, note = runs.submit(session, worker.publisher, recipe, data_root)  # stored, then sent to the broker
        run_id = run.id
    assert note is None and run.status == RunStatus.queued
    task = worker.celery.tasks[TRAIN_TASK]  # the task the factory registered, called here rather than by a consumer
    assert task.run(run_id) == RunStatus.succeeded
    assert task.run(run_id) == "skipped"  # a redelivered message finds the run claimed and does nothing

    with session_scope(worker.engine) as session:
        run = session.get(Run, run_id)
        epochs = [(e.stage, e.epoch, e.metrics["accuracy"]) for e in list_epochs(session, run_id)]
    assert run.status == RunStatus.succeeded and run.worker == "in-process:1" and run.attempt == 1, run.error
    assert [(s, e) for s, e, _ in epochs] == [(0, 0), (0, 1)]
    best = max(acc for _, _, acc in epochs)  # keep-best reloaded the best epoch's weights for the final metrics
    assert run.result["best"]["value"] == pytest.approx(best) and run.best_accuracy == pytest.approx(best)
    store = open_store(str(worker.settings.home / "artifacts"))
    rows = list(csv.DictReader(io.StringIO(store.read_text(run_id, "predictions"))))
    assert sum(int(r["correct"]) for r in rows) / len(rows) == pytest.approx(run.result["metrics"]["accuracy"])
    assert store.local_path(run_id, "model") is not None and store.local_path(run_id, "checkpoint") is None
    assert not (worker.settings.work_dir / str(run_id)).exists()


def test_a_final_write_is_retried_until_the_database_takes_it(worker):
    """The retry is tenacity's, with the backoff cap from settings; a stopping worker gives up at once."""
    from sqlalchemy.exc import OperationalError

    calls = []

    def flaky(session):
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("UPDATE run", {}, Exception("database is locked"))
        return "written"

    fast = worker.settings.model_copy(update={"retry_backoff_max": 0.01})
    quick = type(worker)(**{**worker.__dict__, "settings": fast})
    assert tasks._until_written(quick, "run 1", flaky) == "written" and len(calls) == 3
    quick.stopping.set()
    calls.clear()
    with pytest.raises(OperationalError):
        tasks._until_written(quick, "run 1", flaky)
    assert len(calls) == 1
