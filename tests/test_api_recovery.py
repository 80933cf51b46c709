"""The API's side of recovery: bounded recipes and sweeps (422, nothing stored), retry from checkpoint or from
scratch, attempts, and the run page's Retry and attempts table."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fitboard.app.core.events import EpochEvent, LRFindEvent
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, Sweep
from fitboard.app.store.recovery import record_checkpoint, requeue_run
from fitboard.app.store.runs import claim_run, create_run, fail_run, record_epoch, record_lr_find
from fitboard.app.web.app import create_app
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403


@pytest.fixture
def client(tmp_path, sqlite_url, data_root):
    settings = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root, max_sweep_runs=256)
    with TestClient(create_app(settings)) as c:
        yield c


def count(client, model) -> int:
    with session_scope(client.app.state.engine) as s:
        return s.exec(select(func.count()).select_from(model)).scalar_one()


@pytest.mark.parametrize("field, value, loc", [
    ("epochs", 1_000_000_000, "stages[0].epochs"), ("presize", 100_000, "stages[0].presize"),
    ("size", 4096, "stages[0].size"), ("bs", 10**6, "stages[0].bs"), ("lr", 50, "stages[0].lr"),
])
def test_out_of_range_stage_fields_are_refused_naming_the_field(client, field, value, loc):
    recipe = tiny_recipe()
    recipe["stages"][0][field] = value
    response = client.post("/api/v1/runs", json=recipe)
    assert response.status_code == 422 and loc in [p["loc"] for p in response.json()["detail"]]
    assert count(client, Run) == 0


def test_recipe_wide_bounds(client):
    too_many = {**tiny_recipe(), "stages": tiny_recipe()["stages"] * 500}
    for recipe, loc in ((too_many, "stages"), ({**tiny_recipe(), "seed": -1}, "seed"),
                        ({**tiny_recipe(), "seed": 2**32}, "seed"), ({**tiny_recipe(), "tta": {"n": 100}}, "tta.n"),
                        ({**tiny_recipe(), "name": "x" * 201}, "name"), ({**tiny_recipe(), "max_attempts": 0},
                                                                          "max_attempts")):
        response = client.post("/api/v1/runs", json=recipe)
        assert response.status_code == 422 and loc in [p["loc"] for p in response.json()["detail"]], recipe
    assert count(client, Run) == 0


def test_a_sweep_over_the_run_limit_is_refused_before_anything_is_built(client):
    # The 2 KB request that once stored 97,503 runs: 50 x 50 x 13 values x 3 seeds.
    vary = {"label_smoothing": [0.01 * i for i in range(1, 51)], "stages[0].mixup": [0.01 * i for i in range(1, 51)],
            "seed": list(range(13))}
    response = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": vary, "seeds": [0, 1, 2],
                                                   "mode": "grid"})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == "vary" and "97503" in problem["msg"] and "256" in problem["msg"]
    assert count(client, Run) == 0 and count(client, Sweep) == 0


def test_sweep_values_per_field_and_seeds_are_bounded(client):
    many = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"seed": list(range(100))},
                                               "seeds": [0, 1, 2]})
    assert many.status_code == 422 and many.json()["detail"][0]["loc"] in ("vary", "vary.seed")
    bad_seed = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"label_smoothing": [0.1]},
                                                   "seeds": [-5]})
    assert bad_seed.status_code == 422 and bad_seed.json()["detail"][0]["loc"] == "seeds[0]"
    bad_dataset = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"dataset": ["no-such-data"]},
                                                      "seeds": [0, 1, 2]})
    assert bad_dataset.status_code == 422 and "no-such-data" in bad_dataset.json()["detail"][0]["loc"]
    assert count(client, Run) == 0 and count(client, Sweep) == 0


def test_a_sweep_at_the_limit_is_stored_in_batches_and_every_run_waits_in_line(client):
    vary = {"label_smoothing": [round(0.01 * i, 2) for i in range(1, 64)]}  # 64 variants x 4 seeds = 256 runs
    response = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": vary, "seeds": [0, 1, 2, 3]})
    assert response.status_code == 201, response.text
    queued = sorted(r["id"] for r in response.json()["queued"])
    assert len(queued) == 256
    with session_scope(client.app.state.engine) as s:  # no worker is live: the dispatcher sends none of them yet
        assert s.exec(select(func.count()).select_from(Run).where(Run.published_at.is_(None))).scalar_one() == 256
    (line,) = client.get("/api/v1/queue").json()
    assert line["waiting"] == 256 and [r["position"] for r in line["runs"]] == list(range(1, len(line["runs"]) + 1))
    assert [r["run_id"] for r in line["runs"]] == queued[:len(line["runs"])]  # one person, one priority: age


def failed_run_with_rows(client) -> int:
    """A run that trained two epochs (checkpoint after the second) and then failed."""
    engine = client.app.state.engine
    with session_scope(engine) as s:
        recipe = {**tiny_recipe(), "stages": [{"epochs": 4, "size": 32, "bs": 32, "lr": "find"}]}
        run_id = create_run(s, recipe).id
        claim_run(s, run_id, "host:1")
        record_lr_find(s, run_id, LRFindEvent(stage=0, suggestion=1e-3, lrs=[1e-4, 1e-3], losses=[2.0, 1.0]))
        for e in range(2):
            record_epoch(s, run_id, EpochEvent(stage=0, epoch=e, train_loss=1.0, valid_loss=0.9, metrics={}))
        record_checkpoint(s, run_id, {"stage": 0, "epoch": 1})
        fail_run(s, run_id, "CUDA out of memory")
    return run_id


def test_retry_from_checkpoint_keeps_rows_and_resumes_after_them(client):
    run_id = failed_run_with_rows(client)
    response = client.post(f"/api/v1/runs/{run_id}/retry", json={"from": "checkpoint"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "queued" and body["resume_from"] == {"stage": 0, "epoch": 2} and body["error"] is None
    assert len(client.get(f"/api/v1/runs/{run_id}/epochs").json()) == 2
    again = client.post(f"/api/v1/runs/{run_id}/retry", json={"from": "checkpoint"})
    assert again.status_code == 409 and "queued" in again.json()["detail"]


def test_retry_from_scratch_clears_rows_and_keeps_the_id(client):
    run_id = failed_run_with_rows(client)
    response = client.post(f"/api/v1/runs/{run_id}/retry", json={"from": "scratch"})
    assert response.status_code == 200 and response.json()["id"] == run_id
    assert response.json()["resume_from"] is None and response.json()["checkpoint"] is None
    assert client.get(f"/api/v1/runs/{run_id}/epochs").json() == []
    assert client.get(f"/api/v1/runs/{run_id}/lr_finds").json() == []
    assert client.post("/api/v1/runs/999/retry", json={}).status_code == 404
    assert client.post(f"/api/v1/runs/{run_id}/retry", json={"from": "yesterday"}).status_code == 422


def test_attempts_and_the_run_page_show_what_happened(client):
    engine = client.app.state.engine
    run_id = failed_run_with_rows(client)
    client.post(f"/api/v1/runs/{run_id}/retry", json={"from": "checkpoint"})
    with session_scope(engine) as s:
        claim_run(s, run_id, "host:2")
        requeue_run(s, run_id, "worker host:2 lost (no heartbeat for 60 s)")
    attempts = client.get(f"/api/v1/runs/{run_id}/attempts").json()
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[0]["outcome"] == "failed" and attempts[1]["outcome"] == "requeued"
    assert attempts[1]["resumed_from"] == {"stage": 0, "epoch": 2}
    page = client.get(f"/runs/{run_id}").text
    assert 'id="attempts"' in page and "host:2 lost" in page and "stage 1, epoch 3" in page
    assert "Queued to resume at stage 1, epoch 3" in page


def test_run_page_retry_buttons(client):
    run_id = failed_run_with_rows(client)
    page = client.get(f"/runs/{run_id}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    assert f'action="/runs/{run_id}/retry"' in page and "Retry from scratch" in page
    response = client.post(f"/runs/{run_id}/retry", data={"csrf_token": token, "from": "checkpoint"},
                           follow_redirects=True)
    assert response.status_code == 200 and "queued again from stage 1, epoch 3" in response.text
    refused = client.post(f"/runs/{run_id}/retry", data={"csrf_token": token, "from": "checkpoint"})
    assert refused.status_code == 409 and "only a failed or cancelled run can be retried" in refused.text
