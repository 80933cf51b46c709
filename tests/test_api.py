"""The REST API on a real migrated database: every endpoint, every error code, SSE resume, the safe defaults."""
from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from fitboard.app.core.events import EpochEvent, LRFindEvent, ResultEvent
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from fitboard.app.store.runs import claim_run, create_run, finish_run, record_epoch, record_lr_find, record_progress
from fitboard.app.store.workers import record_heartbeat
from fitboard.app.web.app import create_app
from tests.api_fixtures import *  # noqa: F401,F403  settings, client
from tests.helpers import BEARER, TOKEN, tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403


@pytest.fixture
def engine(sqlite_engine):
    """The test's migrated SQLite copy (store_fixtures), under a short name."""
    return sqlite_engine


def row(stage: int, epoch: int, acc: float = 0.5) -> EpochEvent:
    return EpochEvent(stage=stage, epoch=epoch, train_loss=1.0, valid_loss=0.9,
                      metrics={"accuracy": acc, "error_rate": 1 - acc}, seconds=1.5)


def stored_run(engine, status: str = "queued", epochs: int = 0, name: str = "stored") -> int:
    """A run put straight into the store in a given state, with some epoch rows."""
    with session_scope(engine) as s:
        run_id = create_run(s, tiny_recipe(name=name), techniques=["normalize:dataset"]).id
    if status == "queued":
        return run_id
    with session_scope(engine) as s:
        claim_run(s, run_id, "test-worker")
        for e in range(epochs):
            record_epoch(s, run_id, row(0, e, 0.5 + e / 10))
        record_lr_find(s, run_id, LRFindEvent(stage=0, suggestion=1e-3, lrs=[1e-5, 1e-4, 1e-3], losses=[2.0, 1.5, 1.0]))
    if status == "succeeded":
        with session_scope(engine) as s:
            finish_run(s, run_id, ResultEvent(metrics={"valid_loss": 0.8, "accuracy": 0.7, "error_rate": 0.3},
                                              tta={"n": 2, "use_max": False, "accuracy": 0.72, "error_rate": 0.28},
                                              best={"stage": 0, "epoch": 1, "metric": "accuracy", "value": 0.7}))
    return run_id


def test_create_run_201_and_get_it(client, engine):
    response = client.post("/api/v1/runs", json=tiny_recipe(name="api-run"))
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "queued" and run["name"] == "api-run" and "normalize:dataset" in run["techniques"]
    got = client.get(f"/api/v1/runs/{run['id']}").json()
    assert got["spec"]["stages"][0]["size"] == 32 and got["result"] is None and got["progress"] is None


def test_invalid_run_422_names_every_field_and_stores_nothing(client, engine):
    recipe = tiny_recipe(arch="resnet5", label_smoothing=2)
    recipe["stages"][0]["lr"] = [1e-2, 1e-4]
    response = client.post("/api/v1/runs", json=recipe)
    assert response.status_code == 422
    locs = {p["loc"] for p in response.json()["detail"]}
    assert locs == {"arch", "label_smoothing", "stages[0].lr"}
    bad_data = client.post("/api/v1/runs", json=tiny_recipe(dataset="missing"))
    assert bad_data.status_code == 422 and bad_data.json()["detail"][0]["loc"] == "dataset"
    with session_scope(engine) as s:
        assert s.exec(select(func.count()).select_from(Run)).one() == 0


def test_list_runs_filters_and_pages(client, engine):
    for i in range(5):
        stored_run(engine, "succeeded" if i % 2 else "queued", epochs=1, name=f"run-{i}")
    page = client.get("/api/v1/runs", params={"limit": 2, "offset": 0}).json()
    assert page["total"] == 5 and [r["name"] for r in page["items"]] == ["run-4", "run-3"]
    done = client.get("/api/v1/runs", params={"status": "succeeded"}).json()
    assert done["total"] == 2 and all(r["status"] == "succeeded" for r in done["items"])
    assert client.get("/api/v1/runs", params={"name": "run-3"}).json()["total"] == 1
    by_acc = client.get("/api/v1/runs", params={"order": "-best_accuracy", "limit": 1}).json()
    assert by_acc["items"][0]["best_accuracy"] == 0.7
    assert client.get("/api/v1/runs", params={"status": "exploded"}).status_code == 422
    assert client.get("/api/v1/runs", params={"limit": 0}).status_code == 422
    assert page["total_at_least"] == 5 and page["prev_cursor"] is None
    following = client.get("/api/v1/runs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [r["name"] for r in following["items"]] == ["run-2", "run-1"] and following["total"] == 5
    last = client.get("/api/v1/runs", params={"limit": 2, "cursor": following["next_cursor"]}).json()
    assert [r["name"] for r in last["items"]] == ["run-0"] and last["next_cursor"] is None
    back = client.get("/api/v1/runs", params={"limit": 2, "cursor": last["prev_cursor"]}).json()
    assert [r["name"] for r in back["items"]] == ["run-2", "run-1"]
    for bad in ({"cursor": "garbage"}, {"cursor": page["next_cursor"], "order": "name"}):
        answer = client.get("/api/v1/runs", params=bad)
        assert answer.status_code == 422 and "cursor" in answer.text
    too_deep = client.get("/api/v1/runs", params={"offset": 10_001})
    assert too_deep.status_code == 422 and "offset" in too_deep.text
    assert [r["id"] for r in client.get("/api/v1/runs", params={"sweep": 1}).json()["items"]] == []


def test_a_listed_run_says_what_its_own_page_says(client, engine):
    """The list reads summaries (without recipe, result, progress, traceback) and builds them its own way: each
    item is the run's GET /runs/{id} cut to RunSummary's fields, and in detail the whole of it."""
    from fitboard.app.services.serializers import RunSummary
    ids = [stored_run(engine, status, epochs=2, name=f"same-{status}") for status in ("succeeded", "running", "queued")]
    client.patch(f"/api/v1/runs/{ids[0]}", json={"tags": ["x", "kept"], "notes": "noted", "archived": False})
    full = {i: client.get(f"/api/v1/runs/{i}").json() for i in ids}
    listed = client.get("/api/v1/runs", params={"name": "same-"}).json()["items"]
    assert [r["id"] for r in listed] == ids[::-1] and all(set(r) == set(RunSummary.model_fields) for r in listed)
    assert all(r == {k: full[r["id"]][k] for k in RunSummary.model_fields} for r in listed)
    assert listed[0]["queue_position"] == 1 and listed[2]["tags"] == ["x", "kept"]  # values, not just their keys
    detailed = client.get("/api/v1/runs", params={"name": "same-", "detail": "true"}).json()["items"]
    assert detailed == [full[i] for i in ids[::-1]] and detailed[2]["result"]["tta"]["accuracy"] == 0.72
    with engine.begin() as conn:  # a NaN the store never writes (written past it): null, as the response model says it
        conn.exec_driver_sql(f"UPDATE run SET result = '{{\"metrics\": {{\"accuracy\": NaN}}}}' WHERE id = {ids[0]}")
    answer = client.get("/api/v1/runs", params={"name": "same-", "detail": "true"})
    assert answer.status_code == 200 and answer.json()["items"][2]["result"]["metrics"] == {"accuracy": None}


def test_run_detail_result_epochs_csv_lr_finds(client, engine):
    run_id = stored_run(engine, "succeeded", epochs=2)
    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["result"]["metrics"]["accuracy"] == 0.7 and run["result"]["tta"]["accuracy"] == 0.72
    assert run["result"]["best"] == {"stage": 0, "epoch": 1, "metric": "accuracy", "value": 0.7}
    epochs = client.get(f"/api/v1/runs/{run_id}/epochs").json()
    assert [(e["stage"], e["epoch"]) for e in epochs] == [(0, 0), (0, 1)]
    assert epochs[1]["metrics"]["accuracy"] == pytest.approx(0.6) and epochs[0]["event"] == "epoch"
    csv_text = client.get(f"/api/v1/runs/{run_id}/epochs", params={"format": "csv"}).text
    assert csv_text.splitlines()[0] == "stage,epoch,train_loss,valid_loss,accuracy,error_rate,seconds"
    assert len(csv_text.splitlines()) == 3
    assert [line.split(",")[:2] for line in csv_text.splitlines()[1:]] == [["1", "1"], ["1", "2"]]  # 1-based for people
    assert client.get(f"/api/v1/runs/{run_id}/lr_finds").json()[0]["suggestion"] == 1e-3


def test_unknown_ids_404(client):
    for path in ("/api/v1/runs/999", "/api/v1/runs/999/epochs", "/api/v1/runs/999/events", "/api/v1/runs/999/model",
                 "/api/v1/datasets/none"):
        assert client.get(path).status_code == 404, path
    assert client.post("/api/v1/runs/999/cancel").status_code == 404


def test_cancel_queued_running_and_409_for_finished(client, engine):
    queued, running, done = stored_run(engine), stored_run(engine, "running"), stored_run(engine, "succeeded")
    assert client.post(f"/api/v1/runs/{queued}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/api/v1/runs/{running}/cancel").json()["status"] == "running"
    assert client.get(f"/api/v1/runs/{running}").json()["cancel_requested"] is True
    finished = client.post(f"/api/v1/runs/{done}/cancel")
    assert finished.status_code == 409 and "succeeded" in finished.json()["detail"]


def read_sse(response, stop_after_status: bool = True, on_event=None) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) for every event of a stream; on_event(event) is called as each arrives."""
    events, event_id, event, data = [], None, None, None
    for line in response.iter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = json.loads(line[5:])
        elif line == "" and event:
            events.append((event_id, event, data))
            if on_event is not None:
                on_event(events[-1])
            event_id = event = data = None
    return events


def test_sse_sends_stored_rows_then_status_and_resumes_by_last_event_id(client, engine):
    run_id = stored_run(engine, "succeeded", epochs=3)
    with client.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_sse(response)
    assert [(i, e) for i, e, _ in events] == [("1", "epoch"), ("2", "epoch"), ("3", "epoch"), (None, "status")]
    assert events[-1][2]["status"] == "succeeded" and events[-1][2]["result"]["metrics"]["accuracy"] == 0.7
    with client.stream("GET", f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": "2"}) as response:
        resumed = read_sse(response)
    assert [(i, e, d.get("epoch")) for i, e, d in resumed] == [("3", "epoch", 2), (None, "status", None)]


def test_a_too_long_last_event_id_header_is_a_422_naming_the_header(client, engine):
    """The 422 said loc "header": a header's name (Last-Event-ID) is no identifier, and the field path dropped it."""
    run_id = stored_run(engine, "succeeded", epochs=1)
    r = client.get(f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": "1" * 65})
    assert r.status_code == 422 and [p["loc"] for p in r.json()["detail"]] == ["header.Last-Event-ID"], r.text


def test_sse_streams_new_rows_and_progress_live(client, engine):
    run_id = stored_run(engine, "running", epochs=1)
    progress_sent = threading.Event()

    def train():
        time.sleep(0.5)
        with session_scope(engine) as s:
            record_progress(s, run_id, {"batch": {"stage": 0, "epoch": 1, "batch": 3, "total": 8, "elapsed": 1.0,
                                                  "eta": 2.0, "smooth_loss": 0.4}})
        # The epoch ends once the stream has said the progress (a fixed 0.5 s was missed under load: the finished
        # run's progress is gone by the stream's next look)
        progress_sent.wait(timeout=60)
        with session_scope(engine) as s:
            record_epoch(s, run_id, row(0, 1))
        with session_scope(engine) as s:
            finish_run(s, run_id, ResultEvent(metrics={"valid_loss": 0.5, "accuracy": 0.8, "error_rate": 0.2}))

    with client.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
        # Trained only once the stream is open: on a loaded machine opening it took longer than the first 0.5 s
        threading.Thread(target=train).start()
        events = read_sse(response, on_event=lambda e: e[1] == "progress" and progress_sent.set())
    kinds = [e for _, e, _ in events]
    assert kinds[0] == "epoch" and kinds[1] == "status" and "progress" in kinds
    assert [d["epoch"] for _, e, d in events if e == "epoch"] == [0, 1]
    assert kinds[-1] == "status" and events[-1][2]["status"] == "succeeded"
    assert next(d for _, e, d in events if e == "progress")["batch"] == 3


def test_datasets_register_list_and_path_escapes_refused(client, data_root, tmp_path):
    spec = {"layout": "csv", "path": "digits", "csv": "train.csv", "images": "train_images",
            "label_map": "label_num_to_disease_map.json"}
    created = client.post("/api/v1/datasets", json={"name": "digits-copy", "spec": spec})
    assert created.status_code == 201 and created.json()["report"]["n_valid"] == 60
    assert client.post("/api/v1/datasets", json={"name": "digits-copy", "spec": spec}).status_code == 409
    assert [d["name"] for d in client.get("/api/v1/datasets").json()] == ["digits-copy"]
    assert client.get("/api/v1/datasets/digits-copy").json()["spec"]["csv"] == "train.csv"
    sibling = data_root.parent / (data_root.name + "2")
    sibling.mkdir(exist_ok=True)
    (data_root / "escape").unlink(missing_ok=True)
    (data_root / "escape").symlink_to(tmp_path)
    for path in ("../elsewhere", "/etc", str(sibling), "escape"):
        bad = client.post("/api/v1/datasets", json={"name": "bad", "spec": {"layout": "folder", "path": path}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == "spec.path", path
    (data_root / "escape").unlink()
    assert client.post("/api/v1/runs", json=tiny_recipe(dataset="digits-copy")).status_code == 201


def test_workers_and_healthz(client, engine):
    with session_scope(engine) as s:
        record_heartbeat(s, "gpu-host:42", "gpu-host", 42, "NVIDIA H200", 141 * 2**30, None)
    workers = client.get("/api/v1/workers").json()
    assert workers[0]["host"] == "gpu-host" and workers[0]["gpu"] == "NVIDIA H200"
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert "/api/v1/runs/{run_id}/events" in spec["paths"] and "/api/v1/sweeps" in spec["paths"]


def test_bodies_over_1mb_get_413(client):
    big = tiny_recipe(name="x" * (1024 * 1024 + 10))
    assert client.post("/api/v1/runs", json=big).status_code == 413


def test_token_required_when_configured(settings):
    with TestClient(create_app(settings.model_copy(update={"api_token": TOKEN}))) as c:
        assert c.get("/api/v1/runs").status_code == 401
        assert c.get("/api/v1/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/v1/runs", headers=BEARER).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_escaped_name_round_trips_as_data(client):
    name = "<script>alert(1)</script>"
    run = client.post("/api/v1/runs", json=tiny_recipe(name=name)).json()
    assert client.get(f"/api/v1/runs/{run['id']}").json()["name"] == name  # JSON carries it; pages escape it


def test_docs_and_chart_library_are_served_locally(client):
    page = client.get("/docs").text
    assert "/vendor/swagger/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/vendor/swagger/swagger-ui-bundle.js").status_code == 200
    plotly = client.get("/vendor/plotly.min.js")
    assert plotly.status_code == 200 and b"plotly" in plotly.content[:2000].lower()


def test_polled_run_detail_is_fresh_after_cancel_and_within_a_quarter_second_of_worker_writes(client, engine):
    run_id = stored_run(engine, "running")
    assert client.get(f"/api/v1/runs/{run_id}").json()["progress"] is None
    with session_scope(engine) as s:  # a worker writes progress from another process
        record_progress(s, run_id, {"batch": {"stage": 0, "epoch": 0, "batch": 1, "total": 4}})
    time.sleep(0.3)
    assert client.get(f"/api/v1/runs/{run_id}").json()["progress"]["batch"]["batch"] == 1
    client.post(f"/api/v1/runs/{run_id}/cancel")
    assert client.get(f"/api/v1/runs/{run_id}").json()["cancel_requested"] is True  # no stale read after a cancel


def test_token_applies_to_the_polled_run_detail(settings, engine):
    run_id = stored_run(engine)
    with TestClient(create_app(settings.model_copy(update={"api_token": TOKEN}))) as c:
        assert c.get(f"/api/v1/runs/{run_id}").status_code == 401
        assert c.get(f"/api/v1/runs/{run_id}", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = c.get(f"/api/v1/runs/{run_id}", headers=BEARER)
        assert ok.status_code == 200 and ok.json()["id"] == run_id
        assert c.get("/api/v1/runs/424242", headers=BEARER).status_code == 404
