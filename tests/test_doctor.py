"""`fitboard doctor` on this machine: the real CLI against a real database, Redis and artifact store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import update

from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, utcnow
from fitboard.app.store.runs import create_run
from fitboard.worker.doctor import FAIL, OK, WARN, run_checks, table
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_url, ...
from tests.workers import redis_url


def doctor(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "doctor", *args], capture_output=True,
                           text=True,
                          env={**os.environ, **env}, timeout=120)


def test_doctor_on_this_machine_is_all_ok_or_warn_with_reasons(tmp_path, sqlite_url, data_root):
    env = {"FITBOARD_HOME": str(tmp_path), "FITBOARD_DATABASE_URL": sqlite_url, "FITBOARD_DATA_ROOT": str(data_root),
           "FITBOARD_BROKER_URL": redis_url()}
    done = doctor(env, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"database", "broker", "data root", "artifact store", "gpus", "weights",
                           "visibility timeout", "disk", "clock"}
    assert report["ok"] and report["counts"][FAIL] == 0
    assert all(c["status"] in (OK, WARN) for c in checks.values())
    assert all(c["fix"] for c in checks.values() if c["status"] == WARN)  # every warning says what to do
    assert checks["gpus"]["status"] == WARN and "CPU only" in checks["gpus"]["detail"]  # no GPU here: WARN, not FAIL
    assert checks["database"]["status"] == OK and "schema at revision" in checks["database"]["detail"]
    store = checks["artifact store"]
    assert store["status"] == OK and str(tmp_path / "artifacts") in store["detail"]
    assert checks["data root"]["status"] == OK
    assert not list((tmp_path / "artifacts").iterdir())  # the probe cleaned up after itself
    text = doctor(env)
    assert text.returncode == 0 and "gpus" in text.stdout and "fix: " in text.stdout


def test_doctor_fails_with_exit_1_when_the_database_url_points_nowhere(tmp_path):
    done = doctor({"FITBOARD_HOME": str(tmp_path), "FITBOARD_DATABASE_URL": "postgresql://fitboard@127.0.0.1:9/none"},
                  "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    database = report["checks"][0]
    assert (database["name"], database["status"]) == ("database", FAIL) and "127.0.0.1:9/none" in database["detail"]
    assert "FITBOARD_DATABASE_URL" in database["fix"] and not report["ok"]
    skipped = {c["name"]: c for c in report["checks"]}["weights"]
    assert skipped["status"] == WARN and "not checked" in skipped["detail"]  # not a crash, not a false OK


def test_a_run_longer_than_the_visibility_timeout_fails_the_check(tmp_path, sqlite_url, sqlite_engine, data_root):
    spec = parse_spec({**tiny_recipe(), "pretrained": True, "arch": "resnet18"})
    with session_scope(sqlite_engine) as session:
        run = create_run(session, spec.model_dump(mode="json"), techniques=spec.techniques())
        session.exec(update(Run).where(Run.id == run.id).values(
            started_at=utcnow() - timedelta(hours=3), finished_at=utcnow(), status="succeeded"))
    settings = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root, broker_url=redis_url(),
                        visibility_timeout=3600)
    checks = {c.name: c for c in run_checks(settings)}
    assert checks["visibility timeout"].status == FAIL and "3.0 h" in checks["visibility timeout"].detail
    assert "FITBOARD_VISIBILITY_TIMEOUT" in checks["visibility timeout"].fix
    # the stored recipe trains resnet18 with pretrained weights that this machine has not cached
    assert checks["weights"].status == WARN and "resnet18" in checks["weights"].detail
    assert "visibility timeout  FAIL" in table(list(checks.values()))
