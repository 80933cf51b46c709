"""The store on SQLite and Postgres: migrations, run lifecycle, idempotent rows, cancel, reaping, concurrency."""
from __future__ import annotations

import math
import multiprocessing
import os
import subprocess
import sys
import threading
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from fitboard.app.core import errors
from fitboard.app.core.events import EpochEvent, LRFindEvent, ResultEvent
from fitboard.app.core.settings import Settings
from fitboard.app.store import attempts, recovery, registry, runs, workers
from fitboard.app.store.db import (
    VERSION_TABLE,
    alembic_config,
    default_database_url,
    make_engine,
    session_scope,
    upgrade,
)
from fitboard.app.store.models import Artifact, EpochRow, Lease, LRFind, Run, Worker, utcnow
from fitboard.app.store.name_search import TRGM_INDEX, is_index_table
from tests.store_fixtures import *  # noqa: F401,F403  (conftest may import them too; same objects)

ROOT = Path(__file__).resolve().parent.parent
TABLES = {"fitboard_alembic_version", "search", "dataset", "run", "epoch", "lr_find", "artifact", "worker", "sweep",
          "run_attempt", "lease", "prediction", "run_tag", "project", "person", "api_token",
          "membership", "audit", "access_generation"}


def _tables(engine) -> set[str]:
    """The database's tables but the run-name search index's (SQLite's FTS table and its shadow tables)."""
    return {t for t in inspect(engine).get_table_names() if not is_index_table(t)}


def _models_only(name, type_, parent_names) -> bool:
    """compare_metadata sees the models' objects only: not the name search's FTS tables or trigram index."""
    return not (type_ == "table" and is_index_table(name)) and not (type_ == "index" and name == TRGM_INDEX)
SPEC = {"name": "cassava-normalize", "dataset": "cassava", "arch": "resnet34",
        "stages": [{"epochs": 2, "size": 64, "lr": "find"}]}


def _new_run(engine, name: str = "cassava-normalize", dataset: str = "cassava", claim_by: str | None = None) -> int:
    """Create a run (claimed by claim_by when given) and return its id."""
    with session_scope(engine) as s:
        run_id = runs.create_run(s, {**SPEC, "name": name, "dataset": dataset}, techniques=["lr finder"]).id
    if claim_by:
        with session_scope(engine) as s:
            assert runs.claim_run(s, run_id, claim_by) is not None
    return run_id


def _epoch(stage: int, epoch: int, loss: float = 0.5, acc: float = 0.8, **changes) -> EpochEvent:
    """An epoch row as the training callback reports it."""
    return EpochEvent(**{"stage": stage, "epoch": epoch, "train_loss": loss, "valid_loss": loss + 0.1,
                         "metrics": {"accuracy": acc, "error_rate": 1 - acc}, "seconds": 1.5, **changes})


def _lr_find(stage: int, suggestion: float, lrs: list[float], losses: list[float]) -> LRFindEvent:
    """An LR-finder curve as the engine reports it."""
    return LRFindEvent(stage=stage, suggestion=suggestion, lrs=lrs, losses=losses)


def _finish(s, run_id: int, result: dict):
    """Finish a run with a result given as its JSON (the engine sends a typed ResultEvent)."""
    return runs.finish_run(s, run_id, ResultEvent(**result))


# --- migrations -------------------------------------------------------------------------------------------


def test_migrations_create_every_table_and_match_the_models(db_url, db_engine):
    insp = inspect(db_engine)
    assert _tables(db_engine) == TABLES
    assert {"ix_run_status", "ix_run_list_created_at"} <= {ix["name"] for ix in insp.get_indexes("run")}
    assert insp.get_pk_constraint("epoch")["constrained_columns"] == ["run_id", "stage", "epoch"]
    with db_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE,
                                                     "include_name": _models_only})
        assert compare_metadata(ctx, SQLModel.metadata) == []  # the head revision builds exactly the models
        head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
        assert ctx.get_current_revision() == head
    upgrade(db_url)  # a second upgrade (every process start) is a no-op


@pytest.mark.parametrize("column", ["priority", "status"])
def test_the_migrated_database_refuses_a_value_outside_a_columns_choices(db_engine, column):
    run_id = _new_run(db_engine)
    with db_engine.connect() as conn, pytest.raises(IntegrityError, match=f"ck_run_{column}"):
        conn.execute(text(f"UPDATE run SET {column} = 'urgent' WHERE id = :id"), {"id": run_id})
    with db_engine.connect() as conn:
        kept = conn.execute(text(f"SELECT {column} FROM run WHERE id = :id"), {"id": run_id}).scalar_one()
    assert kept == {"priority": "normal", "status": "queued"}[column]  # the refused value left the stored one


def test_sqlite_connections_get_wal_busy_timeout_and_foreign_keys(sqlite_engine):
    with sqlite_engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") == 30000
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 1  # NORMAL


def _upgrade_in_processes(url: str, cwd: Path, n: int = 3) -> list[subprocess.CompletedProcess]:
    """Run upgrade(url) in n fresh interpreters at once, from a directory that is not the repository."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = f"from fitboard.app.store.db import upgrade; upgrade({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate()) for p in procs]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_from_three_processes_at_once_succeeds_in_all(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'new' / 'fitboard.db'}"  # its folder does not exist yet either
    else:
        url = request.getfixturevalue("postgres_empty_url")
    results = _upgrade_in_processes(url, cwd=tmp_path)
    assert [r.returncode for r in results] == [0, 0, 0], "\n".join(r.stderr for r in results)
    engine = make_engine(url)
    try:
        assert _tables(engine) == TABLES
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM fitboard_alembic_version")).scalar() == 1
    finally:
        engine.dispose()


def test_default_database_url_is_a_sqlite_file_in_home_unless_configured(tmp_path):
    assert default_database_url(Settings(home=tmp_path)) == f"sqlite:///{tmp_path}/fitboard.db"
    pg = "postgresql+psycopg2://fitboard@db/fitboard"
    assert default_database_url(Settings(home=tmp_path, database_url=pg)) == pg


# --- lifecycle --------------------------------------------------------------------------------------------


def test_create_run_is_queued_with_spec_and_utc_timestamps(db_engine):
    run_id = _new_run(db_engine)
    with session_scope(db_engine) as s:
        run = runs.get_run(s, run_id)
        assert (run.status, run.name, run.dataset, run.attempt) == ("queued", "cassava-normalize", "cassava", 0)
        assert run.spec["stages"][0]["lr"] == "find" and run.techniques == ["lr finder"]
        assert run.created_at.tzinfo == timezone.utc and abs(utcnow() - run.created_at) < timedelta(minutes=1)
        assert run.started_at is None and not run.cancel_requested


def test_claim_run_has_exactly_one_winner_among_racing_workers(db_engine):
    run_id = _new_run(db_engine)
    n = 8
    barrier, won, errors = threading.Barrier(n), [], []

    def claim(i):
        try:
            with session_scope(db_engine) as s:
                barrier.wait()
                run = runs.claim_run(s, run_id, f"host:{i}")
                if run is not None:
                    won.append(run.worker)
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert errors == [] and len(won) == 1
    with session_scope(db_engine) as s:
        run = runs.get_run(s, run_id)
        assert (run.status, run.worker, run.attempt) == ("running", won[0], 1)
        assert run.started_at is not None
        assert runs.claim_run(s, run_id, "host:redelivered") is None  # a redelivered message does nothing
        assert runs.get_run(s, run_id).attempt == 1


def test_a_cancelled_queued_run_is_never_claimed(db_engine):
    run_id = _new_run(db_engine)
    with session_scope(db_engine) as s:
        assert runs.request_cancel(s, run_id) == "cancelled"
    with session_scope(db_engine) as s:
        assert runs.claim_run(s, run_id, "host:1") is None
        run = runs.get_run(s, run_id)
        assert run.status == "cancelled" and run.started_at is None and run.finished_at is not None


def test_request_cancel_running_asks_the_worker_and_finished_runs_refuse(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        assert runs.is_cancel_requested(s, run_id) is False
        assert runs.request_cancel(s, run_id) == "running"
    with session_scope(db_engine) as s:
        assert runs.is_cancel_requested(s, run_id) is True
        assert runs.get_run(s, run_id).status == "running"  # still running until the worker stops
        assert runs.mark_cancelled(s, run_id).status == "cancelled"
    with session_scope(db_engine) as s, pytest.raises(errors.RunFinished, match="cancelled"):
        runs.request_cancel(s, run_id)
    done = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        _finish(s, done, {"metrics": {"accuracy": 0.9}})
    with session_scope(db_engine) as s, pytest.raises(errors.RunFinished, match="succeeded"):
        runs.request_cancel(s, done)


def test_finish_run_stores_result_headline_metrics_and_artifacts(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    result = {"metrics": {"accuracy": 0.91, "error_rate": 0.09, "valid_loss": 0.3},
              "tta": {"n": 4, "use_max": False, "accuracy": 0.93, "error_rate": 0.07},
              "best": {"stage": 1, "epoch": 3, "metric": "accuracy", "value": 0.91},
              "seconds": 12.5}
    with session_scope(db_engine) as s:
        runs.record_progress(s, run_id, {"batch": 3, "total": 10})
        run = runs.finish_run(s, run_id, ResultEvent(**result), artifacts={"model": 2048, "predictions": 64})
    assert (run.status, run.best_accuracy, run.tta_accuracy) == ("succeeded", 0.91, 0.93)
    assert run.result["best"]["epoch"] == 3
    assert run.progress is None  # the progress bar goes away when the run ends
    assert run.finished_at.tzinfo == timezone.utc and run.finished_at >= run.started_at
    with session_scope(db_engine) as s:
        assert runs.list_artifacts(s, run_id) == {"model": 2048, "predictions": 64}  # sizes: no host's paths
        with pytest.raises(errors.RunFinished):
            _finish(s, run_id, result)  # a second result for the same run is a conflict
    no_tta = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        assert _finish(s, no_tta, {"metrics": {"accuracy": 0.5}, "tta": None}).tta_accuracy is None
    queued = _new_run(db_engine)
    with session_scope(db_engine) as s, pytest.raises(runs.RunNotRunning):
        _finish(s, queued, result)


def test_fail_run_records_error_and_never_overwrites_a_finished_run(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        run = runs.fail_run(s, run_id, "CUDA out of memory", traceback="Traceback ...\nRuntimeError")
    assert (run.status, run.error, run.traceback) == ("failed", "CUDA out of memory", "Traceback ...\nRuntimeError")
    assert run.finished_at is not None
    queued = _new_run(db_engine)
    with session_scope(db_engine) as s:
        assert runs.fail_run(s, queued, "dataset folder not found").status == "failed"
    done = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        _finish(s, done, {"metrics": {"accuracy": 0.8}})
        run = runs.fail_run(s, done, "late error")
    assert (run.status, run.error) == ("succeeded", None)


def test_status_check_constraint_rejects_unknown_status_in_the_database(db_engine):
    run_id = _new_run(db_engine)
    with pytest.raises(IntegrityError, match="(?i)check"):
        with session_scope(db_engine) as s:
            s.exec(text("UPDATE run SET status = 'paused' WHERE id = :id").bindparams(id=run_id))
    with session_scope(db_engine) as s:
        assert runs.get_run(s, run_id).status == "queued"


def test_unknown_run_ids_raise_run_not_found(db_engine):
    with session_scope(db_engine) as s:
        for call in (lambda: runs.get_run(s, 999), lambda: runs.record_epoch(s, 999, _epoch(0, 0)),
                     lambda: runs.record_progress(s, 999, {}), lambda: runs.is_cancel_requested(s, 999),
                     lambda: runs.request_cancel(s, 999),
                     lambda: runs.record_lr_find(s, 999, _lr_find(0, 1e-3, [], []))):
            with pytest.raises(errors.RunNotFound, match="run 999 not found"):
                call()


def test_session_scope_rolls_back_when_the_block_raises(db_engine):
    with pytest.raises(ZeroDivisionError), session_scope(db_engine) as s:
        runs.create_run(s, SPEC)
        _ = 1 / 0
    with session_scope(db_engine) as s:
        assert runs.list_runs(s) == ([], 0)


# --- rows recorded while training -------------------------------------------------------------------------


def test_record_epoch_twice_keeps_one_row_with_the_last_values(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    before = datetime.now(timezone.utc)
    with session_scope(db_engine) as s:
        runs.record_epoch(s, run_id, _epoch(0, 0, loss=0.9, acc=0.5))
    with session_scope(db_engine) as s:
        first_written = runs.list_epochs(s, run_id)[0].created_at
    with session_scope(db_engine) as s:
        runs.record_epoch(s, run_id, _epoch(0, 0, loss=0.4, acc=0.7))  # a redelivery with newer values
        runs.record_epoch(s, run_id, _epoch(1, 0, loss=0.3, acc=0.8))
    with session_scope(db_engine) as s:
        rows = runs.list_epochs(s, run_id)
    assert [(r.stage, r.epoch) for r in rows] == [(0, 0), (1, 0)]
    assert (rows[0].train_loss, rows[0].metrics["accuracy"]) == (0.4, 0.7)
    # stored in UTC when first written, and kept by the redelivery
    assert before <= first_written == rows[0].created_at <= rows[1].created_at <= datetime.now(timezone.utc)


def test_epoch_and_progress_writes_commit_without_waiting_for_the_wal_and_other_writes_wait(postgres_engine):
    run_id = _new_run(postgres_engine, claim_by="host:1")

    def setting(s) -> str:
        return s.connection().exec_driver_sql("SHOW synchronous_commit").scalar()

    with session_scope(postgres_engine) as s:
        runs.record_epoch(s, run_id, _epoch(0, 0))
        assert setting(s) == "off"  # this transaction only (SET LOCAL): the row is written again by a resume
    with session_scope(postgres_engine) as s:
        runs.record_progress(s, run_id, {"batch": 1, "total": 2})
        assert setting(s) == "off"
    with session_scope(postgres_engine) as s:
        assert setting(s) == "on"  # the next transaction on the pooled connection: state changes wait for the disk
        assert runs.list_epochs(s, run_id)[0].epoch == 0
    with session_scope(postgres_engine) as s, pytest.raises(errors.RunNotFound):
        runs.record_epoch(s, 10**6, _epoch(0, 0))


def test_epochs_list_in_training_order_and_diverged_losses_read_back_as_null(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        for stage, epoch in [(1, 1), (0, 1), (1, 0), (0, 0)]:
            runs.record_epoch(s, run_id, _epoch(stage, epoch))
        runs.record_epoch(s, run_id, _epoch(2, 0, valid_loss=math.nan, metrics={"accuracy": math.inf}))
    with session_scope(db_engine) as s:
        rows = runs.list_epochs(s, run_id)
    assert [(r.stage, r.epoch) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert rows[-1].valid_loss is None and rows[-1].metrics == {"accuracy": None}


def test_record_lr_find_and_progress(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        runs.record_lr_find(s, run_id, _lr_find(0, 1e-3, [1e-5, 1e-4], [2.0, 1.5]))
        runs.record_lr_find(s, run_id, _lr_find(0, 2e-3, [1e-5, 1e-4, 1e-3], [2.0, 1.4, 1.9]))
        runs.record_progress(s, run_id, {"stage": 0, "epoch": 0, "batch": 5, "total": 20})
    with session_scope(db_engine) as s:
        (found,) = runs.list_lr_finds(s, run_id)
        assert (found.suggestion, found.lrs, found.losses) == (2e-3, [1e-5, 1e-4, 1e-3], [2.0, 1.4, 1.9])
        assert runs.get_run(s, run_id).progress == {"stage": 0, "epoch": 0, "batch": 5, "total": 20}


def test_deleting_a_run_removes_its_rows_and_frees_its_worker(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        runs.record_epoch(s, run_id, _epoch(0, 0))
        runs.record_lr_find(s, run_id, _lr_find(0, 1e-3, [1e-4], [1.0]))
        runs.finish_run(s, run_id, ResultEvent(metrics={"accuracy": 0.9}), artifacts={"model": 10})
        workers.record_heartbeat(s, "host:1", "host", 1, current_run_id=run_id)
    with session_scope(db_engine) as s:
        s.exec(delete(Run).where(Run.id == run_id))
    with session_scope(db_engine) as s:
        for model in (EpochRow, LRFind, Artifact):
            assert s.exec(select(model).where(model.run_id == run_id)).first() is None
        assert s.get(Worker, "host:1").current_run_id is None


# --- listing ----------------------------------------------------------------------------------------------


def test_list_runs_filters_pages_and_orders(db_engine):
    ids = {name: _new_run(db_engine, name=name, dataset=ds) for name, ds in
           [("Cassava-base", "cassava"), ("cassava-mixup", "cassava"), ("pets-100%", "pets"), ("pets-tta", "pets")]}
    with session_scope(db_engine) as s:
        for name, acc in [("Cassava-base", 0.7), ("cassava-mixup", 0.9)]:
            runs.claim_run(s, ids[name], "host:1")
            _finish(s, ids[name], {"metrics": {"accuracy": acc}})
        items, total = runs.list_runs(s, limit=2)
        assert total == 4 and [r.name for r in items] == ["pets-tta", "pets-100%"]  # newest first
        assert [r.name for r in runs.list_runs(s, limit=2, offset=2)[0]] == ["cassava-mixup", "Cassava-base"]
        by_name = runs.list_runs(s, name_contains="CASSAVA", order="name")[0]
        assert [r.name for r in by_name] == ["Cassava-base", "cassava-mixup"]  # case-insensitive
        assert [r.name for r in runs.list_runs(s, name_contains="100%")[0]] == ["pets-100%"]  # % is literal
        assert runs.list_runs(s, dataset="pets")[1] == 2
        assert runs.list_runs(s, status=["queued", "running"])[1] == 2
        best = [r.best_accuracy for r in runs.list_runs(s, order="-best_accuracy")[0]]
        assert best == [0.9, 0.7, None, None]  # unscored runs last on both backends
        with pytest.raises(ValueError, match="cannot order runs by 'password'"):
            runs.list_runs(s, order="-password")


# --- workers ----------------------------------------------------------------------------------------------


def test_heartbeat_keeps_one_row_per_worker_and_tracks_its_run(db_engine):
    run_id = _new_run(db_engine, claim_by="gpu0:11")
    with session_scope(db_engine) as s:
        workers.record_heartbeat(s, "gpu0:11", "gpu0", 11, gpu="NVIDIA H200", gpu_memory=141 * 2**30)
    with session_scope(db_engine) as s:
        first = s.get(Worker, "gpu0:11")
        started, seen = first.started_at, first.last_seen
        workers.record_heartbeat(s, "gpu0:11", "gpu0", 11, gpu="NVIDIA H200", gpu_memory=141 * 2**30,
                                 current_run_id=run_id)
    with session_scope(db_engine) as s:
        rows = s.exec(select(Worker)).scalars().all()
    assert len(rows) == 1 and rows[0].current_run_id == run_id and rows[0].gpu_memory == 141 * 2**30
    assert rows[0].started_at == started and rows[0].last_seen >= seen


def test_reap_lost_workers_requeues_only_runs_whose_worker_went_silent(db_engine):
    alive = _new_run(db_engine, claim_by="alive:1")
    silent = _new_run(db_engine, claim_by="silent:1")
    ghost = _new_run(db_engine, claim_by="ghost:1")  # died before its first heartbeat
    fresh_ghost = _new_run(db_engine, claim_by="ghost:2")  # just claimed, heartbeat not in yet
    queued = _new_run(db_engine)
    long_ago = utcnow() - timedelta(minutes=5)
    with session_scope(db_engine) as s:
        workers.record_heartbeat(s, "alive:1", "alive", 1, current_run_id=alive)
        workers.record_heartbeat(s, "silent:1", "silent", 1, current_run_id=silent)
        s.exec(update(Worker).where(Worker.name == "silent:1").values(last_seen=long_ago))
        s.exec(update(Run).where(Run.id.in_([alive, silent, ghost])).values(started_at=long_ago))
        runs.record_epoch(s, silent, _epoch(0, 0))
        recovery.record_checkpoint(s, silent, {"stage": 0, "epoch": 0})
    with session_scope(db_engine) as s:
        assert recovery.reap_lost_workers(s, silent_after=60) == {silent: "queued", ghost: "queued"}
    with session_scope(db_engine) as s:
        status = {i: runs.get_run(s, i).status for i in (alive, silent, ghost, fresh_ghost, queued)}
        assert status == {alive: "running", silent: "queued", ghost: "queued", fresh_ghost: "running", queued: "queued"}
        back = runs.get_run(s, silent)
        assert back.resume_from == {"stage": 0, "epoch": 1} and back.published_at is None  # the reconciler sends it
        assert runs.get_run(s, ghost).resume_from is None  # no checkpoint: starts again at epoch 0
        (attempt,) = attempts.list_attempts(s, silent)
        assert attempt.outcome == "requeued" and "silent:1 lost" in attempt.reason and attempt.ended_at
        assert recovery.reap_lost_workers(s, silent_after=60) == {}  # reaping twice changes nothing


def test_a_run_out_of_attempts_fails_with_every_reason(db_engine):
    run_id = _new_run(db_engine)
    with session_scope(db_engine) as s:
        s.exec(update(Run).where(Run.id == run_id).values(spec={**SPEC, "max_attempts": 2}))
    for n in (1, 2):
        with session_scope(db_engine) as s:
            assert runs.claim_run(s, run_id, f"host:{n}") is not None
            assert recovery.requeue_run(s, run_id, f"lost #{n}") == ("queued" if n == 1 else "failed")
    with session_scope(db_engine) as s:
        run = runs.get_run(s, run_id)
        assert run.error == "gave up after 2 attempts: attempt 1: lost #1; attempt 2: lost #2"
        assert [a.outcome for a in attempts.list_attempts(s, run_id)] == ["requeued", "failed"]


def test_requeue_of_a_run_asked_to_cancel_cancels_it(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        runs.request_cancel(s, run_id)
        assert recovery.requeue_run(s, run_id, "worker lost") == "cancelled"


def test_cancel_of_a_run_no_live_worker_holds_is_immediate(db_engine):
    orphan, held = _new_run(db_engine, claim_by="gone:1"), _new_run(db_engine, claim_by="here:1")
    with session_scope(db_engine) as s:
        workers.record_heartbeat(s, "gone:1", "gone", 1, current_run_id=orphan)
        workers.record_heartbeat(s, "here:1", "here", 1, current_run_id=held)
        s.exec(update(Worker).where(Worker.name == "gone:1").values(last_seen=utcnow() - timedelta(minutes=5)))
    with session_scope(db_engine) as s:
        assert runs.request_cancel(s, orphan, orphaned_after=60) == "cancelled"
        assert runs.request_cancel(s, held, orphaned_after=60) == "running"  # its worker stops it at the next batch


def test_repair_requeues_runs_this_worker_holds_but_does_not_run(db_engine):
    stuck, current = _new_run(db_engine, claim_by="w:1"), _new_run(db_engine, claim_by="w:1")
    with session_scope(db_engine) as s:
        assert recovery.repair_worker_runs(s, "w:1", current) == {stuck: "queued"}
        assert runs.get_run(s, current).status == "running"
    # A repair that read "no current run" just before this worker's task claimed one leaves that claim alone.
    read_at = utcnow()
    started = _new_run(db_engine, claim_by="w:1")
    with session_scope(db_engine) as s:
        assert recovery.repair_worker_runs(s, "w:1", None, claimed_before=read_at) == {current: "queued"}
        assert runs.get_run(s, started).status == "running"


def test_reconciler_lease_publish_marks_and_due_runs(db_engine):
    unsent, sent, stale = (_new_run(db_engine) for _ in range(3))
    with session_scope(db_engine) as s:
        assert recovery.acquire_lease(s, "web:1", ttl=30) and recovery.acquire_lease(s, "web:1", ttl=30)
        assert not recovery.acquire_lease(s, "worker:2", ttl=30)  # one acting at a time
        recovery.mark_published(s, [sent, stale])
        s.exec(update(Run).where(Run.id == stale).values(published_at=utcnow() - timedelta(minutes=10)))
    with session_scope(db_engine) as s:
        # Every worker busy: a long wait is expected, nothing is sent again. The never-sent run is the dispatcher's
        # (it waits in the database until a worker can start it), never the reconciler's.
        assert recovery.due_for_publish(s, republish_after=300, alive_within=60) == []
        workers.record_heartbeat(s, "idle:1", "idle", 1)
    with session_scope(db_engine) as s:  # an idle live worker: the stale run's message must have been lost
        assert recovery.due_for_publish(s, republish_after=300, alive_within=60) == [(stale, "fitboard")]
        recovery.mark_published(s, [stale], republished=True)
    with session_scope(db_engine) as s:
        assert runs.get_run(s, stale).republish_count == 1
        s.exec(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
    with session_scope(db_engine) as s:
        assert recovery.acquire_lease(s, "worker:2", ttl=30)  # an expired lease passes on


def test_retry_from_checkpoint_keeps_rows_and_from_scratch_clears_them(db_engine):
    run_id = _new_run(db_engine, claim_by="host:1")
    with session_scope(db_engine) as s:
        runs.record_epoch(s, run_id, _epoch(0, 0))
        recovery.record_checkpoint(s, run_id, {"stage": 0, "epoch": 0})
        runs.fail_run(s, run_id, "CUDA out of memory")
    with session_scope(db_engine) as s:
        run = recovery.retry_run(s, run_id, from_checkpoint=True)
        assert (run.status, run.resume_from, run.error) == ("queued", {"stage": 0, "epoch": 1}, None)
        assert run.attempt_limit == 1 + 3  # one attempt used, three more allowed
        assert len(runs.list_epochs(s, run_id)) == 1
        with pytest.raises(errors.RunActive):
            recovery.retry_run(s, run_id, from_checkpoint=True)  # already queued: 409
    with session_scope(db_engine) as s:
        runs.request_cancel(s, run_id)
        run = recovery.retry_run(s, run_id, from_checkpoint=False)
        assert (run.resume_from, run.checkpoint) == (None, None) and runs.list_epochs(s, run_id) == []


def test_next_position_after_a_checkpoint():
    spec = {"stages": [{"epochs": 2}, {"epochs": 1}]}
    assert recovery.next_position(spec, None) is None
    assert recovery.next_position(spec, {"stage": 0, "epoch": 0}) == {"stage": 0, "epoch": 1}
    assert recovery.next_position(spec, {"stage": 0, "epoch": 1}) == {"stage": 1, "epoch": 0}
    assert recovery.next_position(spec, {"stage": 1, "epoch": 0}) == {"stage": 2, "epoch": 0}  # evaluation left


# --- registry ---------------------------------------------------------------------------------------------


def test_registry_refuses_duplicate_names_and_returns_specs(db_engine):
    spec = {"layout": "csv", "path": "cassava", "csv": "train.csv", "images": "train_images"}
    with session_scope(db_engine) as s:
        registry.register_dataset(s, "cassava", spec, {"n_train": 80, "n_valid": 20})
        registry.register_dataset(s, "beans", {"layout": "folder", "path": "beans"}, {})
    with session_scope(db_engine) as s:
        with pytest.raises(ValueError, match="'cassava' is already registered"):
            registry.register_dataset(s, "cassava", spec, {})
        assert registry.get_dataset_spec(s, "cassava") == spec
        assert registry.get_dataset_spec(s, "imagenette") is None
        assert [d.name for d in registry.list_datasets(s)] == ["beans", "cassava"]
        assert registry.get_dataset(s, "cassava").report["n_valid"] == 20


# --- concurrency on SQLite --------------------------------------------------------------------------------


def _write_epochs(url: str, run_id: int, n: int, start, errors) -> None:
    """A worker process: n epoch rows and n progress updates, each in its own transaction."""
    engine = make_engine(url)
    try:
        start.wait(30)
        for i in range(n):
            with session_scope(engine) as s:
                runs.record_epoch(s, run_id, _epoch(i // 50, i % 50, loss=1 / (i + 1)))
            with session_scope(engine) as s:
                runs.record_progress(s, run_id, {"batch": i + 1, "total": n})
    except Exception:
        errors.put(traceback.format_exc())
    finally:
        engine.dispose()


def test_concurrent_writers_and_a_reader_on_sqlite_never_hit_database_is_locked(sqlite_url, sqlite_engine):
    n_writers, n_rows = 4, 200
    run_ids = [_new_run(sqlite_engine, name=f"w{i}", claim_by=f"host:{i}") for i in range(n_writers)]
    sqlite_engine.dispose()  # no pooled connections cross the fork
    ctx = multiprocessing.get_context("fork")
    start, errors = ctx.Barrier(n_writers + 1), ctx.Queue()
    procs = [ctx.Process(target=_write_epochs, args=(sqlite_url, rid, n_rows, start, errors)) for rid in run_ids]
    [p.start() for p in procs]
    reads, read_errors = [0], []

    def read():
        start.wait(30)
        try:
            while any(p.is_alive() for p in procs):
                with session_scope(sqlite_engine) as s:
                    items, total = runs.list_runs(s, status="running")
                    runs.list_epochs(s, items[0].id)
                reads[0] += 1
        except Exception:
            read_errors.append(traceback.format_exc())

    reader = threading.Thread(target=read)
    reader.start()
    [p.join(60) for p in procs]
    reader.join(60)
    failures = [errors.get() for _ in range(errors.qsize())] + read_errors
    assert failures == [] and [p.exitcode for p in procs] == [0] * n_writers, "\n".join(failures)
    assert reads[0] > 0
    with session_scope(sqlite_engine) as s:
        for rid in run_ids:
            assert len(runs.list_epochs(s, rid)) == n_rows
            assert runs.get_run(s, rid).progress == {"batch": n_rows, "total": n_rows}


def test_a_worker_reaped_by_mistake_cannot_touch_its_successors_attempt(db_engine):
    run_id = _new_run(db_engine, claim_by="slow:1")
    with session_scope(db_engine) as s:
        assert recovery.requeue_run(s, run_id, "silent", worker="slow:1") == "queued"
        assert runs.claim_run(s, run_id, "next:2") is not None
    with session_scope(db_engine) as s:
        assert runs.should_stop(s, run_id, "slow:1") and not runs.should_stop(s, run_id, "next:2")
        assert recovery.requeue_run(s, run_id, "SIGTERM", worker="slow:1") == "running"  # not its attempt any more
        with pytest.raises(runs.RunNotRunning):
            runs.finish_run(s, run_id, ResultEvent(metrics={"accuracy": 0.5}), worker="slow:1")
        assert runs.fail_run(s, run_id, "late crash", worker="slow:1").status == "running"
        assert runs.get_run(s, run_id).worker == "next:2"
