"""The training task in-process: worker.tasks imported by a test and run through a worker that create_worker builds
from real settings (a SQLite database migrated by Alembic, the embedded broker), training the digits data."""
from __future__ import annotations

import csv
import errno
import io
import shutil

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
    first = task.run(run_id)
    with session_scope(worker.engine) as session:
        row = session.get(Run, run_id)
        seen = (row.status, row.worker, row.attempt, row.started_at, row.cancel_requested, row.published_at)
    assert first == RunStatus.succeeded, seen
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
    assert not list(worker.settings.work_dir.glob(f"{run_id}.*"))  # every attempt's scratch folder went


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


class _FailingModelPut:
    """The real artifact store, except that the first put of a run's model raises `error`: what a bug in a store
    backend (a TypeError) or a dropped connection would raise there."""

    def __init__(self, real, error: Exception):
        self.real, self.error, self.model_puts = real, error, 0

    def put(self, run_id, kind, src, move=False):
        if kind == "model":
            self.model_puts += 1
            if self.model_puts == 1:
                raise self.error
        return self.real.put(run_id, kind, src, move=move)

    def __getattr__(self, name):
        return getattr(self.real, name)


def _train_with_store(worker, data_root, monkeypatch, error: Exception):
    """Train one tiny run through the task with a store whose first model put raises error; (status, run, store)."""
    store = _FailingModelPut(open_store(str(worker.settings.home / "artifacts")), error)
    monkeypatch.setattr(tasks, "store_for", lambda settings: store)
    with session_scope(worker.engine) as session:
        run_id = runs.submit(session, worker.publisher, tiny_recipe(), data_root)[0].id
    status = tasks.train_run(worker, run_id)  # the task's code, with this test's worker
    with session_scope(worker.engine) as session:
        return status, session.get(Run, run_id), store


def test_a_programming_error_in_the_task_is_not_retried_and_its_message_is_on_the_run(worker, data_root,
                                                                                       monkeypatch):
    """A TypeError is a bug: tried once (the retry window is 600 s, the backoff 30 s), the run fails with it."""
    assert worker.settings.write_retry_seconds == 600
    status, run, store = _train_with_store(worker, data_root, monkeypatch,
                                           TypeError("put() got an unexpected keyword argument 'mode'"))
    assert status == RunStatus.failed and run.status == RunStatus.failed
    assert store.model_puts == 1
    assert "TypeError: put() got an unexpected keyword argument 'mode'" in run.error
    assert "could not be stored" in run.error and run.finished_at is not None


def test_a_transient_store_error_in_the_task_is_retried_and_the_run_succeeds(worker, data_root, monkeypatch):
    """A connection reset by the store is worth another try: the second put stores the model."""
    status, run, store = _train_with_store(worker, data_root, monkeypatch,
                                           ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    assert status == RunStatus.succeeded and run.status == RunStatus.succeeded, run.error
    assert store.model_puts == 2 and store.real.local_path(run.id, "model") is not None


def test_a_final_write_that_meets_a_missing_table_is_not_retried(worker):
    """SQLite's OperationalError covers a bug too ("no such table"): that one is raised at once, not for 600 s."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    calls = []

    def broken(session):
        calls.append(1)
        session.execute(text("UPDATE no_such_table SET x = 1"))

    with pytest.raises(OperationalError, match="no such table"):
        tasks._until_written(worker, "run 1", broken)
    assert len(calls) == 1


def test_two_workers_made_in_one_process_each_run_their_own_task(tmp_path, sqlite_template, data_root):
    """Celery adds a task registered as shared to every app finalized later, the first one winning: a second worker
    made in one process ran its runs through the first worker's closure, on the first worker's database (the run was
    not there: "skipped", a test failure that came and went with the order of the test files)."""
    made = []
    for name in ("first", "second"):
        shutil.copyfile(sqlite_template, tmp_path / f"{name}.db")
        made.append(create_worker(Settings(home=tmp_path / name, database_url=f"sqlite:///{tmp_path / name}.db",
                                           data_root=data_root, broker_url=None, worker_name=f"in-process:{name}")))
        made[-1].celery.tasks[TRAIN_TASK]  # finalized, as a Celery worker's app is before it consumes
    first, second = made
    with session_scope(second.engine) as session:  # pretrained weights are not cached here: it fails at once
        run_id = runs.submit(session, second.publisher, tiny_recipe(pretrained=True), data_root)[0].id
    assert second.celery.tasks[TRAIN_TASK].run(run_id) == RunStatus.failed
    with session_scope(second.engine) as session:
        assert session.get(Run, run_id).worker == "in-process:second"
    with session_scope(first.engine) as session:
        assert session.get(Run, run_id) is None  # nothing was written to the first worker's database
    for worker in made:
        worker.engine.dispose()
