"""Two hosts on one machine: a web process and GPU-host workers with their own FITBOARD_HOMEs, sharing only the
PostgreSQL database, Redis, the data root and the artifact store (a shared directory, or an S3-compatible server).
Real worker processes, real training on tiny data, moto's S3 server over HTTP on loopback."""
from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fitboard.app.core.settings import Settings
from fitboard.app.store.attempts import list_attempts
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Worker
from fitboard.app.web.app import create_app
from tests.helpers import tiny_recipe
from tests.s3server import S3Server
from tests.store_fixtures import *  # noqa: F401,F403  postgres_url, ...
from tests.workers import Workers, redis_url


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


class Fleet:
    """A web host and GPU hosts that share the database, the broker, the data root and an artifact root."""

    def __init__(self, tmp: Path, db_url: str, data_root: Path, artifact_root: str, env: dict):
        self.tmp, self.db_url, self.data_root, self.artifact_root, self.env = tmp, db_url, data_root, artifact_root, env
        self.broker = redis_url()
        self.hosts: list[Workers] = []

    def gpu_host(self, name: str, queue: str | None = None, **settings) -> Workers:
        """Workers with a FITBOARD_HOME of their own (nothing else on disk shared with the web host)."""
        home = self.tmp / name
        home.mkdir()
        host = Workers(home, self.db_url, self.data_root, self.broker, artifact_root=self.artifact_root, **settings)
        host.env.update(self.env)  # the S3 endpoint and the AWS credentials, when the store is a bucket
        if queue:
            host.queue = queue
        self.hosts.append(host)
        return host

    def web(self) -> TestClient:
        """The web host's app (in this process, FITBOARD_HOME of its own)."""
        home = self.tmp / "web-host"
        home.mkdir(exist_ok=True)
        settings = Settings(home=home, database_url=self.db_url, broker_url=self.broker, data_root=self.data_root,
                            artifact_root=self.artifact_root, s3_endpoint_url=self.env.get("FITBOARD_S3_ENDPOINT_URL"))
        return TestClient(create_app(settings))

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()


@pytest.fixture(params=["shared-directory", "s3"])
def fleet(request, tmp_path, postgres_url, data_root, monkeypatch):
    """A fleet over this test's own Postgres database, with each kind of artifact store."""
    env: dict[str, str] = {}
    if request.param == "shared-directory":
        root = str(tmp_path / "nfs" / "artifacts")  # what every host mounts at the same path
    else:
        server = request.getfixturevalue("s3")
        root = server.bucket(f"fleet-{uuid.uuid4().hex[:10]}")
        env = dict(server.env)
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)  # the web host's boto3 reads the usual AWS variables
    group = Fleet(tmp_path, postgres_url, data_root, root, env)
    yield group
    group.stop()


def test_runs_trained_on_a_gpu_host_are_downloadable_and_comparable_on_the_web_host(fleet):
    gpu = fleet.gpu_host("gpu-host")
    gpu.start(1)
    a = gpu.submit(tiny_recipe(name="seed-7", seed=7))
    b = gpu.submit(tiny_recipe(name="seed-8", seed=8, stages=[{"epochs": 1, "size": 24, "presize": 32, "bs": 32,
                                                               "lr": 1e-2}]))
    for run_id in (a, b):
        run = gpu.wait_status(run_id, "succeeded", "failed", timeout=240)
        assert run.status == "succeeded", run.error
        assert "model_path" not in run.result or run.result["model_path"] is None  # no host's path is stored
    with fleet.web() as web:
        model = web.get(f"/api/v1/runs/{a}/model")
        assert model.status_code == 200 and len(model.content) > 100_000  # fastai's export of squeezenet
        assert model.headers["content-disposition"].endswith(f'filename="run-{a}-model.pkl"')
        data = web.get("/api/v1/compare", params={"ids": f"{a},{b}"}).json()
        disagree = data["disagreements"]
        assert disagree is not None and disagree["a_right_b_wrong_count"] + disagree["b_right_a_wrong_count"] > 0
        page = web.get(f"/compare?ids={a},{b}").text
        shown = (disagree["a_right_b_wrong"] + disagree["b_right_a_wrong"])[0]["image_id"]
        assert shown in page  # the page reads the same prediction files from the store
        # The worker's doctor report reached the Workers page of the other host.
        gpu.wait(a, lambda _: _doctor(gpu) is not None, timeout=60)
        workers_page = web.get("/workers").text
        assert " OK · " in workers_page and "artifact store" in workers_page
    # Nothing was left on either host's own disk: the files live only in the shared store.
    assert not (fleet.tmp / "web-host" / "artifacts").exists()
    assert not list((fleet.tmp / "gpu-host" / "work").glob("*/*.pkl"))


def _doctor(workers: Workers) -> dict | None:
    with session_scope(workers.engine) as session:
        reports = [d for d in session.exec(select(Worker.doctor)).scalars() if d]
    return reports[0] if reports else None


def test_a_run_lost_on_one_gpu_host_resumes_from_its_checkpoint_on_another(fleet):
    first = fleet.gpu_host("gpu-host-1", worker_lost_after=4)
    first.start(1)
    run_id = first.submit({**tiny_recipe(name="four-epochs", keep_best="accuracy"),
                           "stages": [{"epochs": 4, "size": 32, "presize": 40, "bs": 32, "lr": 2e-3}]})
    first.wait(run_id, lambda r: (r.checkpoint or {}).get("epoch", -1) >= 1, timeout=180)
    first.procs[0].send_signal(signal.SIGKILL)
    first.procs[0].wait()
    second = fleet.gpu_host("gpu-host-2", queue=first.queue, worker_lost_after=4)
    second.start(1)
    run = second.wait_status(run_id, "succeeded", "failed", timeout=240)
    assert run.status == "succeeded" and run.attempt == 2, run.error
    with session_scope(second.engine) as session:
        before, after = list_attempts(session, run_id)
    assert after.resumed_from is not None and after.resumed_from["epoch"] >= 2  # not from scratch
    assert second.rows(run_id) == [(0, e) for e in range(4)]
    with fleet.web() as web:
        assert web.get(f"/api/v1/runs/{run_id}/model").status_code == 200
