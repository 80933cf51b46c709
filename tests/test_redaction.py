"""One redaction rule (fitboard.app.core.redact): secrets planted in every setting that takes a URL never appear in an
answer, a page, a log line or a doctor report; 422s name paths relative to the data root."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from fitboard.app.core.redact import redact
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.workers import record_doctor, record_heartbeat
from fitboard.app.web.app import create_app
from fitboard.worker.doctor import report, run_checks
from tests.helpers import finish_by_hand, tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403  postgres_url

SECRETS = ["PGSECRET1x", "QSECRET2x", "REDISSECRET3x", "RTOKSECRET4x", "AKIAIOSFODNN7EXAMPLE", "S3SECRET5/ab+cd",
           "EPSECRET6x", "SIGSECRET7x", "WMSECRET8x", "WMTOKEN9x", "brokeruser", "epuser", "wmuser"]


@pytest.mark.parametrize("text, shown", [
    ("postgresql://u:pw@db:5432/x?sslmode=require&password=hunter2",
     "postgresql://***:***@db:5432/x?sslmode=require&password=***"),
    ("s3://AKIAIOSFODNN7EXAMPLE:a/b+c@bucket/prefix", "s3://***:***@bucket/prefix"),
    ("redis://:pw@localhost:6379/0", "redis://***:***@localhost:6379/0"),
    ("redis://user@h/0, mail me@x.org", "redis://***@h/0, mail me@x.org"),
    ("https://h/f?X-Amz-Signature=abc&X-Amz-Credential=AK/2020&n=1", "https://h/f?X-Amz-Signature=***&X-Amz-Credential=***&n=1"),
    ("https://h/p?token=t&api_key=k&sig=s&secret=x", "https://h/p?token=***&api_key=***&sig=***&secret=***"),
    ("host=db password=hunter2 user=x", "host=db password=*** user=x"),
    ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
    ("revoking fbt_" + "Xb3-_q" * 7 + "A for mia; listed as fbt_Xb3-_q…",
     "revoking fbt_*** for mia; listed as fbt_Xb3-_q…"),
    ("stage 0 accuracy=0.91 at /data/digits/x.csv", "stage 0 accuracy=0.91 at /data/digits/x.csv"),
])
def test_the_rule_hides_users_passwords_query_secrets_and_keys_and_nothing_else(text, shown):
    assert redact(text) == shown
    assert redact(shown) == shown  # idempotent: a redacted text passes through unchanged


@pytest.fixture
def planted(tmp_path, postgres_url, data_root, monkeypatch) -> Settings:
    """Settings whose every URL carries credentials: database, broker, artifact root, S3 endpoint, weights mirror."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    url = make_url(postgres_url).set(password="PGSECRET1x", query={"password": "QSECRET2x"})
    return Settings(home=tmp_path / "home", data_root=data_root,
                    database_url=url.render_as_string(hide_password=False),
                    broker_url="redis://brokeruser:REDISSECRET3x@127.0.0.1:6379/0?token=RTOKSECRET4x",
                    artifact_root="s3://AKIAIOSFODNN7EXAMPLE:S3SECRET5/ab+cd@fitboard-bucket/prefix",
                    s3_endpoint_url="http://epuser:EPSECRET6x@127.0.0.1:9/?X-Amz-Signature=SIGSECRET7x",
                    weights_mirror="https://wmuser:WMSECRET8x@mirror.example/?token=WMTOKEN9x")


def assert_clean(where: str, text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} shows {leaked}: {text[:2000]}"


def test_no_planted_secret_reaches_an_answer_a_page_a_log_line_or_a_doctor_report(planted, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    seen: dict[str, str] = {}
    with TestClient(create_app(planted)) as client:
        ids = []
        for name in ("a", "b"):
            r = client.post("/api/v1/runs", json=tiny_recipe(name=name))
            assert r.status_code in (201, 202), r.text  # 202: stored, the broker refused the credentials
            seen[f"POST /runs {name}"] = r.text
            ids.append(r.json()["id"])
        engine = make_engine(planted.database_url)
        for run_id, acc in zip(ids, (0.8, 0.9)):
            finish_by_hand(engine, run_id, acc=acc, predictions=[("x1", "a", "a"), ("x2", "b", "a")],
                           home=tmp_path)
        checks = run_checks(planted)  # the doctor a worker runs at start, with these settings
        with session_scope(engine) as s:
            record_heartbeat(s, "w1", "host", 1)
            record_doctor(s, "w1", report(checks))
        engine.dispose()
        compared = client.get(f"/api/v1/compare?ids={ids[0]},{ids[1]}")
        # the bucket cannot be reached: 503 naming the store, its credentials hidden
        assert compared.status_code == 503 and "s3://fitboard-bucket/prefix at http://***:***@" in compared.text
        assert compared.headers["retry-after"]
        ids.append(client.post("/api/v1/runs", json=tiny_recipe(name="gone")).json()["id"])
        client.post(f"/api/v1/runs/{ids[2]}/cancel")
        r = client.delete(f"/api/v1/runs/{ids[2]}")  # its files cannot be removed from the bucket: a logged warning
        assert r.status_code == 200, r.text
        bad = client.post("/api/v1/runs", json=tiny_recipe(dataset="no/such/folder"))
        assert bad.status_code == 422
        seen["422"] = bad.text
        assert str(planted.data_root) not in bad.text and "no/such/folder" in bad.text  # relative to the data root
        for path in (f"/api/v1/runs/{ids[0]}/model", f"/api/v1/compare?ids={ids[0]},{ids[1]}",
                     f"/compare?ids={ids[0]},{ids[1]}", "/workers", "/api/v1/workers", f"/runs/{ids[0]}",
                     f"/api/v1/runs/{ids[0]}", "/", "/api/v1/runs", "/datasets", "/healthz"):
            r = client.get(path)
            assert r.status_code < 500 or r.status_code == 503, (path, r.status_code, r.text)
            seen[path] = r.text
        workers = client.get("/api/v1/workers").json()
        database = {c["name"]: c for c in workers[0]["doctor"]["checks"]}["database"]
        assert database["status"] == "OK" and "***:***@127.0.0.1:5432" in database["detail"]  # shown, redacted
        assert "password=***" in database["detail"]
    assert "could not be removed" in caplog.text
    seen["log"] = caplog.text
    for where, text in seen.items():
        assert_clean(where, text)
    assert_clean("doctor report", json.dumps(report(checks)))


def test_the_doctor_command_prints_no_planted_secret(planted):
    env = {**os.environ, "FITBOARD_HOME": str(planted.home), "FITBOARD_DATA_ROOT": str(planted.data_root),
           "AWS_DEFAULT_REGION": "us-east-1"}
    for key in ("database_url", "broker_url", "artifact_root", "s3_endpoint_url", "weights_mirror"):
        env[f"FITBOARD_{key.upper()}"] = getattr(planted, key)
    done = subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "doctor"], capture_output=True, text=True,
                           env=env,
                          timeout=120)
    assert "database" in done.stdout and "artifact store" in done.stdout, done.stdout + done.stderr
    assert "***:***@127.0.0.1:5432" in done.stdout  # the database is named, its credentials hidden
    assert_clean("fitboard doctor", done.stdout + done.stderr)
