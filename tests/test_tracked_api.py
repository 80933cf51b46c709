"""Tracked runs over the API on a real migrated database: open, rows in batches (idempotent), finish, upload, and the
reaper, the reconciler and retry leaving them alone while a silent one is failed by its own rule."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from fitboard.app.core.settings import Settings
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, utcnow
from fitboard.app.store.recovery import reap_lost_workers
from fitboard.app.store.tracked import fail_silent_tracked
from fitboard.app.web.app import create_app
from tests.store_fixtures import *  # noqa: F401,F403

FACTS = {"arch": "resnet18", "pretrained": False, "loss_func": "CrossEntropyLossFlat", "opt_func": "Adam",
         "metrics": ["accuracy", "error_rate"], "n_train": 240, "n_valid": 60, "classes": ["0", "1"],
         "label_smoothing": 0.1}


@pytest.fixture
def client(tmp_path, sqlite_url, data_root):
    with TestClient(create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root))) as c:
        yield c


def epoch(stage: int, n: int, acc: float) -> dict:
    return {"stage": stage, "epoch": n, "train_loss": 1.0 - acc / 2, "valid_loss": 0.9 - acc / 2,
            "metrics": {"accuracy": acc, "error_rate": 1 - acc}, "seconds": 2.0}


def open_run(client) -> dict:
    r = client.post("/api/v1/tracked", json={"name": "nb-run", "dataset": "digits", "facts": FACTS})
    assert r.status_code == 201, r.text
    return r.json()


def test_tracked_run_lifecycle_rows_idempotent_and_in_lists(client):
    run = open_run(client)
    assert (run["kind"], run["status"], run["spec"]["arch"], run["spec"]["label_smoothing"]) == \
        ("tracked", "running", "resnet18", 0.1)
    assert "tracked" in run["techniques"] and "label smoothing" in run["techniques"]
    rid = run["id"]
    batch = {"stages": [{"stage": 0, "epochs": 2, "size": 16, "bs": 32, "freeze": True, "lr": 0.002,
                         "schedule": "fit_one_cycle"}],
             "epochs": [epoch(0, 0, 0.5), epoch(0, 1, 0.7)],
             "lr_finds": [{"stage": 0, "suggestion": 0.002, "lrs": [1e-4, 1e-3, 1e-2], "losses": [2.0, 1.0, 3.0]}]}
    for _ in range(2):  # the same batch twice (a retried post) must not duplicate a row
        assert client.post(f"/api/v1/tracked/{rid}/rows", json=batch).status_code == 200
    rows = client.get(f"/api/v1/runs/{rid}/epochs").json()
    assert [(r["stage"], r["epoch"], r["metrics"]["accuracy"]) for r in rows] == [(0, 0, 0.5), (0, 1, 0.7)]
    assert client.get(f"/api/v1/runs/{rid}/lr_finds").json()[0]["suggestion"] == 0.002
    page = client.get(f"/runs/{rid}")  # the run page, live, reads the same rows
    assert page.status_code == 200 and "stage 1: 2 epochs at 16 px" in page.text
    client.cookies.clear()  # the page's session cookie would make the API calls below cookie writes (CSRF)
    spec = client.get(f"/api/v1/runs/{rid}").json()["spec"]
    assert spec["stages"] == [{"epochs": 2, "size": 16, "bs": 32, "freeze": True, "lr": 0.002}]
    done = client.post(f"/api/v1/tracked/{rid}/finish", json={
        "metrics": {"valid_loss": 0.55, "accuracy": 0.7, "error_rate": 0.3},
        "confusion": {"labels": ["0", "1"], "matrix": [[20, 10], [8, 22]]}}).json()
    assert (done["status"], done["best_accuracy"], done["result"]["confusion"]["matrix"]) == \
        ("succeeded", 0.7, [[20, 10], [8, 22]])
    listed = client.get("/api/v1/runs").json()["items"]
    assert [(r["id"], r["kind"]) for r in listed] == [(rid, "tracked")]
    # once finished, a late batch is refused, and a tracked run cannot be queued again
    late = client.post(f"/api/v1/tracked/{rid}/rows", json={"epochs": [epoch(0, 2, 0.8)]})
    assert late.status_code == 409 and "finished" in late.json()["detail"]
    retry = client.post(f"/api/v1/runs/{rid}/retry", json={"from": "scratch"})
    assert retry.status_code == 409 and "tracked" in retry.json()["detail"]
    clone = client.get(f"/runs/{rid}/clone")  # Clone: the form with what could be read
    assert clone.status_code == 200 and '<option selected>resnet18</option>' in clone.text
    assert 'value="nb-run-clone"' in clone.text and 'data-field="size" value="16"' in clone.text


def test_bad_batches_name_their_fields(client):
    rid = open_run(client)["id"]
    r = client.post(f"/api/v1/tracked/{rid}/rows", json={"epochs": [{"stage": 0}]})
    assert r.status_code == 422 and "epochs[0].epoch" in r.text
    r = client.post(f"/api/v1/tracked/{rid}/rows", json={"epochs": [epoch(0, i, 0.5) for i in range(1001)]})
    assert r.status_code == 422 and "epochs" in r.text
    assert client.post("/api/v1/tracked", json={"name": ""}).status_code == 422
    assert client.post("/api/v1/tracked/999/rows", json={}).status_code == 404


def test_cancel_ends_a_tracked_run_at_once_and_its_next_batch_is_refused(client):
    rid = open_run(client)["id"]
    assert client.post(f"/api/v1/runs/{rid}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/api/v1/tracked/{rid}/rows", json={"epochs": [epoch(0, 0, 0.5)]}).status_code == 409


def test_uploaded_model_is_kept_and_served_back_byte_for_byte(client):
    rid = open_run(client)["id"]
    payload = bytes(range(256)) * 4096  # 1 MB: over the ordinary body limit, under the upload's
    r = client.put(f"/api/v1/tracked/{rid}/model", content=payload,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["size"] == len(payload)
    assert client.get(f"/api/v1/runs/{rid}/model").content == payload


def test_reaper_leaves_tracked_runs_alone_and_silence_fails_them(client, sqlite_engine):
    rid = open_run(client)["id"]
    old = utcnow() - timedelta(hours=2)
    with session_scope(sqlite_engine) as s:
        s.exec(update(Run).where(Run.id == rid).values(started_at=old, last_contact_at=old))
    with session_scope(sqlite_engine) as s:
        assert reap_lost_workers(s, silent_after=60) == {}  # no worker, no heartbeat: not the reaper's business
    with session_scope(sqlite_engine) as s:
        assert fail_silent_tracked(s, lost_after=3 * 3600) == []  # silent 2 h: not lost yet under a 3 h rule
        assert fail_silent_tracked(s, lost_after=3600) == [rid]
    run = client.get(f"/api/v1/runs/{rid}").json()
    assert run["status"] == "failed" and "no word from the notebook for 3600 s" in run["error"]


@pytest.mark.parametrize("body,field", [
    ({"metrics": {"accuracy": 2.5}}, "metrics.accuracy"),
    ({"metrics": {"error_rate": -0.1}}, "metrics.error_rate"),
    ({"confusion": {"labels": ["0", "1"], "matrix": [[1, 2, 3], [4], [5, 6]]}}, "confusion"),
    ({"confusion": {"labels": ["0", "1", "2"], "matrix": [[1, 2], [3, 4]]}}, "confusion"),
    ({"top_losses": [{"image_id": "a.png", "actual": "0", "predicted": "1", "probability": 7}]},
     "top_losses[0].probability"),
])
def test_finish_refuses_an_accuracy_outside_0_1_and_a_confusion_matrix_that_is_not_labels_by_labels(
        client, body, field):
    """A finish with accuracy 2.5 made the run's best_accuracy 2.5 (first in every list sorted by accuracy), and a
    ragged matrix was stored for the pages to draw; both are 422 naming the field, and the run stays running."""
    rid = open_run(client)["id"]
    r = client.post(f"/api/v1/tracked/{rid}/finish", json=body)
    assert r.status_code == 422 and [p["loc"] for p in r.json()["detail"]] == [field], r.text
    assert client.get(f"/api/v1/runs/{rid}").json()["status"] == "running"
    ok = client.post(f"/api/v1/tracked/{rid}/finish", json={"metrics": {"accuracy": 1.0, "error_rate": 0.0},
                                                            "confusion": {"labels": [], "matrix": []}})
    assert ok.status_code == 200 and ok.json()["best_accuracy"] == 1.0, ok.text


def test_an_lr_finder_curve_needs_one_loss_per_rate(client):
    """The run page plots loss against learning rate: unequal lists were stored and drawn half-empty."""
    rid = open_run(client)["id"]
    curve = {"stage": 0, "lrs": [1e-4, 1e-3, 1e-2], "losses": [2.0, 1.5], "suggestion": 1e-3}
    r = client.post(f"/api/v1/tracked/{rid}/rows", json={"lr_finds": [curve]})
    assert r.status_code == 422 and [p["loc"] for p in r.json()["detail"]] == ["lr_finds[0]"], r.text
    assert "one loss per rate" in r.text and client.get(f"/api/v1/runs/{rid}/lr_finds").json() == []
    ok = client.post(f"/api/v1/tracked/{rid}/rows", json={"lr_finds": [{**curve, "losses": [2.0, 1.5, 1.8]}]})
    assert ok.status_code == 200, ok.text
    assert client.get(f"/api/v1/runs/{rid}/lr_finds").json()[0]["losses"] == [2.0, 1.5, 1.8]


def test_a_tracked_run_offers_no_ablate_or_search_and_their_forms_say_why(client):
    """The run page offered Ablate and Search for a tracked run; both forms then failed with "tracked: Extra inputs
    are not permitted" (its spec is what the notebook told, not a recipe). Now: no buttons, and a 409 in words."""
    rid = open_run(client)["id"]
    client.post(f"/api/v1/tracked/{rid}/rows", json={"stages": [{"stage": 0, "epochs": 2, "size": 32, "lr": 0.001}]})
    assert client.post(f"/api/v1/tracked/{rid}/finish", json={}).status_code == 200
    page = client.get(f"/runs/{rid}").text
    assert f"/runs/{rid}/ablate" not in page and f"/runs/{rid}/search" not in page and f"/runs/{rid}/clone" in page
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    for path in (f"/runs/{rid}/ablate", f"/runs/{rid}/search"):
        for r in (client.get(path), client.post(path, data={"csrf_token": csrf, "seeds": "3"})):
            assert r.status_code == 409 and "trained outside fitboard (tracked)" in r.text, r.text[-2000:]
            assert "Extra inputs" not in r.text


def test_a_refused_finish_still_ends_the_run_without_the_refused_details(tmp_path, sqlite_url, data_root):
    """A finish the dashboard refused (a confusion matrix of 1,001 classes) was posted again until close() timed
    out, said the dashboard "did not answer", and left the run running until it was failed as lost an hour later.
    The tracker now sends the finish again without its details, then without its metrics."""
    from fitboard.tracker import Tracker
    from tests.live import live_app

    settings = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)
    with live_app(settings) as (url, _app):
        for finish, best in (({"metrics": {"accuracy": 0.5}, "confusion": {"labels": ["x"] * 1001, "matrix": []}},
                              0.5), ({"metrics": {"accuracy": 2.5}}, None)):
            said = []
            tracker = Tracker("refused", url=url, flush_every=0.05, say=said.append)
            tracker.put("epoch", {"stage": 0, "epoch": 0, "metrics": {"accuracy": 0.5}})
            tracker.put("finish", {"status": "succeeded", **finish})
            started = time.monotonic()
            assert tracker.close(timeout=20) and time.monotonic() - started < 5, said
            run = TestClient(_app).get(f"/api/v1/runs/{tracker.run_id}").json()
            assert (run["status"], run["best_accuracy"]) == ("succeeded", best), said
            assert any("refused" in s for s in said) and not any("did not answer" in s for s in said), said
