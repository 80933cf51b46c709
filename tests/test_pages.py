"""The HTML pages on a real migrated SQLite database: what a user sees, types and clicks, without a browser."""
from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from fitboard.app.core.artifacts import store_for
from fitboard.app.core.events import EpochEvent, LRFindEvent, ResultEvent
from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.pages.forms import recipe_from_form
from fitboard.app.pages.presets import presets
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Dataset, Run, Worker, utcnow
from fitboard.app.store.runs import (
    claim_run,
    create_run,
    fail_run,
    finish_run,
    record_epoch,
    record_lr_find,
    record_progress,
)
from fitboard.app.store.workers import record_heartbeat
from fitboard.app.web.app import create_app
from tests.helpers import TOKEN
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_template, sqlite_url, ...

XSS = "<script>alert(1)</script>"
STATIC = Path(__file__).resolve().parent.parent / "app" / "static"
LABELS = ["zero", "one", "two"]
TWO_STAGES = [{"epochs": 2, "size": 24, "presize": 32, "bs": 64, "freeze": True, "lr": "find"},
              {"epochs": 2, "size": 32, "presize": 40, "bs": 64, "freeze": False, "lr": [1e-4, 1e-3], "mixup": 0.2}]


@pytest.fixture
def make_client(tmp_path, sqlite_url, data_root):
    """A TestClient on a fresh app over this test's database; settings can be overridden."""
    def make(**overrides) -> TestClient:
        settings = Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root, **overrides)
        return TestClient(create_app(settings))
    return make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def engine(client: TestClient):
    return client.app.state.engine


def csrf(client: TestClient, url: str = "/runs/new") -> str:
    """The CSRF token a page hands this browser (from the <meta> tag)."""
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get(url).text)[1]


def add_run(client: TestClient, status: str = "queued", name: str = "digits-run", stages=TWO_STAGES,
            accuracy: float = 0.9333, **spec_overrides) -> int:
    """Store a run and walk it to status the way a worker would, without training."""
    spec = parse_spec({"name": name, "dataset": "digits", "arch": "resnet18", "pretrained": False,
                       "normalize": "dataset", "keep_best": "accuracy", "tta": {"n": 4, "use_max": False},
                       "stages": stages, **spec_overrides})
    with session_scope(engine(client)) as session:
        run_id = create_run(session, spec.model_dump(mode="json"), techniques=spec.techniques()).id
        if status == "queued":
            return run_id
        claim_run(session, run_id, "gpu-host:4242")
        record_lr_find(session, run_id, LRFindEvent(stage=0, suggestion=1.2e-3, lrs=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2],
                                                    losses=[2.3, 2.2, 1.9, 1.2, 4.0]))
        for stage, n in ((0, 2), (1, 2) if status != "running" else (1, 1)):
            for epoch in range(n):
                record_epoch(session, run_id, EpochEvent(
                    stage=stage, epoch=epoch, train_loss=1.5 - 0.3 * epoch, valid_loss=1.2 - 0.2 * epoch, seconds=1.5,
                    metrics={"accuracy": 0.6 + 0.1 * epoch, "error_rate": 0.4 - 0.1 * epoch}))
        if status == "running":
            record_progress(session, run_id, {"stages": [], "notes": [], "device": "cuda", "batch": {
                "stage": 1, "epoch": 1, "batch": 3, "total": 4, "elapsed": 2.0, "eta": 0.7, "smooth_loss": 0.61}})
        elif status == "failed":
            fail_run(session, run_id, "CUDA out of memory",
                     "Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory")
        elif status == "succeeded":
            model = Path(client.app.state.settings.home) / f"model-{run_id}.pkl"
            model.write_bytes(b"model bytes")
            size = store_for(client.app.state.settings).put(run_id, "model", model, move=True)
            finish_run(session, run_id, succeeded_result(accuracy), artifacts={"model": size})
    return run_id


def succeeded_result(accuracy: float) -> ResultEvent:
    """A result as the engine reports it."""
    return ResultEvent(**{"metrics": {"valid_loss": 0.2345, "accuracy": accuracy, "error_rate": 1 - accuracy},
            "tta": {"n": 4, "use_max": False, "accuracy": 0.95, "error_rate": 0.05},
            "best": {"stage": 1, "epoch": 1, "metric": "accuracy", "value": 0.94},
            "confusion": {"labels": LABELS, "matrix": [[18, 1, 1], [0, 20, 0], [2, 0, 18]]},
            "top_losses": [{"image_id": "0005.jpg", "actual": "two", "predicted": "zero", "loss": 3.21,
                            "probability": 0.88}],
            "stages": [{**STAGE_PLAN, "stage": 0, "lr": 1.2e-3, "frozen": True, "params": 11000,
                        "trainable_params": 500, "group_lrs": [1.2e-3]},
                       {**STAGE_PLAN, "stage": 1, "lr": [1e-4, 1e-3], "params": 11000, "trainable_params": 11000,
                        "group_lrs": [1e-4, 3e-4, 1e-3]}],
            "notes": [], "seconds": 12.0, "images_per_second": 240.0})


STAGE_PLAN = {"epochs": 2, "size": 32, "presize": 32, "bs": 64, "frozen": False}


def errors_of(page: str) -> dict[str, str]:
    """Field error messages on a page, by the input they belong to."""
    return {k.removeprefix("err-"): html.unescape(v)
            for k, v in re.findall(r'<span class="error" id="([^"]+)">([^<]*)', page)}


def value_of(page: str, name: str) -> str:
    """The value attribute of an input, as the page will show it."""
    return html.unescape(re.search(rf'<input [^>]*name="{re.escape(name)}"[^>]*value="([^"]*)"', page)[1])


def n_runs(client: TestClient) -> int:
    with session_scope(engine(client)) as session:
        return session.exec(select(func.count()).select_from(Run)).scalar_one()


def test_every_page_renders_what_a_user_looks_for(client):
    ok = add_run(client, "succeeded", name="normalize-progressive")
    add_run(client, "queued", name="waiting-run")
    with session_scope(engine(client)) as session:
        record_heartbeat(session, "gpu-host:4242", "gpu-host", 4242, gpu="NVIDIA H200", gpu_memory=141 * 2**30,
                         current_run_id=ok)
        record_heartbeat(session, "old-host:1", "old-host", 1)
        session.exec(update(Worker).where(Worker.name == "old-host:1")
                     .values(last_seen=utcnow() - timedelta(minutes=10)))

    runs = client.get("/").text
    assert "normalize-progressive" in runs and "waiting-run" in runs
    assert 'badge-succeeded' in runs and 'badge-queued' in runs
    assert "progressive resizing" in runs and "mixup" in runs  # technique chips
    assert "93.3%" in runs and "95.0%" in runs  # accuracy and TTA accuracy
    assert 'id="compare-button"' in runs and 'action="/compare"' in runs
    assert client.get("/runs").status_code == 200

    new = client.get("/runs/new").text
    assert '<option value="digits" selected>' in new
    assert "1. Baseline" in new and "4. + Label smoothing" in new
    assert value_of(new, "stages-0-size") in ("24", "32") and 'name="csrf_token"' in new

    datasets = client.get("/datasets").text
    assert "digits" in datasets and "folder, not registered" in datasets and "csv layout" in datasets
    assert "240 training and 60 validation images" in datasets

    one = client.get("/datasets/digits").text
    assert "zero" in one and "/datasets/digits/images/" in one
    image = client.get(re.search(r'src="(/datasets/digits/images/\d+)"', one)[1])
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"  # a JPEG
    assert client.get("/datasets/digits/images/100000").status_code == 404
    assert client.get("/datasets/nope").status_code == 404

    workers = client.get("/workers").text
    assert "NVIDIA H200" in workers and "141.0 GiB" in workers and "ago" in workers
    assert f'href="/runs/{ok}">normalize-progressive' in workers
    assert workers.count(">stale</span>") == 1 and "old-host" in workers


def test_succeeded_run_page_shows_recipe_epochs_and_results(client):
    run_id = add_run(client, "succeeded", name="prog")
    page = client.get(f"/runs/{run_id}").text
    assert "stage 1: 2 epochs at 24 px (presize 32), bs 64, frozen, lr found by LR finder (valley 1.2e-3)" in page
    assert ("stage 2: 2 epochs at 32 px (presize 40), bs 64, unfrozen, "
            "discriminative lr slice(1e-4, 1e-3), MixUp α=0.2" in page)
    assert "resnet18 (from scratch)" in page and "normalized with the dataset&#39;s own stats" in page
    assert page.count('class="stage-sep"') == 2  # each stage starts with a separator row
    assert 'class="best"' in page  # the kept epoch is marked
    assert "93.3%" in page and "95.0%" in page and "0.9400" in page  # plain, TTA and best
    assert all(f'<th scope="row">{c}</th>' in page for c in LABELS) and " h18\"" in page  # 90%: shade step 18
    assert "0005.jpg" in page and "loss 3.21 · p 0.88" in page and "two / zero" in page
    # Top losses are thumbnails through the confined dataset image route, loaded lazily.
    src = re.search(r'<figure class="thumb wrong" data-image-id="0005.jpg">\s*<a href="([^"]+)"', page)[1]
    assert src.startswith("/datasets/digits/images/") and 'loading="lazy"' in page
    image = client.get(src)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert f"/api/v1/runs/{run_id}/model" in page and f"/api/v1/runs/{run_id}/epochs?format=csv" in page
    assert f"/runs/{run_id}/clone" in page and "/vendor/plotly.min.js" in page
    data = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', page, re.S)[1]
    assert '"suggestion": 0.0012' in data and '"live": false' in data
    assert client.get(f"/api/v1/runs/{run_id}/model").content == b"model bytes"
    assert client.get("/runs/999").status_code == 404


def test_running_run_shows_progress_and_can_be_cancelled(client):
    run_id = add_run(client, "running")
    page = client.get(f"/runs/{run_id}").text
    assert 'id="progress-bar" max="4" value="3"' in page and "ETA 1 s" in page
    assert '"live": true' in page and "/static/run.js" in page
    assert f'action="/runs/{run_id}/cancel"' in page
    token = csrf(client, f"/runs/{run_id}")
    r = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert "stop at the next batch" in client.get(f"/runs/{run_id}").text

    done = add_run(client, "succeeded")
    r = client.post(f"/runs/{done}/cancel", data={"csrf_token": token})
    assert r.status_code == 409 and "already succeeded" in r.text

    queued = add_run(client, "queued")
    client.post(f"/runs/{queued}/cancel", data={"csrf_token": token})
    assert "badge-cancelled" in client.get(f"/runs/{queued}").text


def test_failed_run_shows_error_and_traceback(client):
    page = client.get(f"/runs/{add_run(client, 'failed')}").text
    assert "CUDA out of memory" in page and "Traceback (most recent call last)" in page and "badge-failed" in page


def test_user_text_is_escaped_everywhere(client):
    run_id = add_run(client, "succeeded", name=XSS)
    with session_scope(engine(client)) as session:
        record_heartbeat(session, "w:1", "w", 1, current_run_id=run_id)
    escaped = html.escape(XSS, quote=False)
    for url in ("/", f"/runs/{run_id}", f"/runs/{run_id}/clone", "/workers"):
        page = client.get(url).text
        assert XSS not in page, url
        assert escaped in page or html.escape(XSS) in page, url
    # The rows the live stream adds are built with textContent; no script turns data into markup.
    assert not any("innerHTML" in p.read_text() for p in STATIC.glob("*.js"))


def run_form(token: str, **fields) -> dict:
    """A complete run form as the browser posts it (two stages)."""
    form = {"csrf_token": token, "name": "typed-name", "dataset": "digits", "arch": "resnet18", "normalize": "dataset",
            "label_smoothing": "", "seed": "42", "precision": "fp32", "keep_best": "accuracy",
            "tta": "on", "tta_n": "2",
            "stages-0-epochs": "1", "stages-0-size": "24", "stages-0-presize": "32", "stages-0-bs": "64",
            "stages-0-lr": "find", "stages-0-lr_find_iters": "20", "stages-0-mixup": "",
            "stages-1-epochs": "1", "stages-1-size": "32", "stages-1-presize": "40", "stages-1-bs": "64",
            "stages-1-lr": "1e-4, 1e-3", "stages-1-lr_find_iters": "100", "stages-1-mixup": "0.2"}
    form.update(fields)
    return form


def test_form_errors_show_beside_fields_with_the_form_kept(client):
    token = csrf(client)
    r = client.post("/runs/new", data=run_form(token, **{"stages-1-lr": "fast", "stages-1-epochs": "2x",
                                                         "stages-0-presize": "16", "label_smoothing": "3"}))
    assert r.status_code == 422
    errors = errors_of(r.text)
    assert "lr must be a positive number" in errors["stages-1-lr"] and "'fast'" in errors["stages-1-lr"]
    assert errors["stages-1-epochs"] == "must be a positive integer; got '2x'"
    assert "presize (16) must not be smaller than size (24)" in errors["stages-0-presize"]
    assert "label_smoothing must be in (0, 1)" in errors["label_smoothing"]
    assert ">stage 2 lr</a>: lr must be a positive number" in r.text  # the summary names the stage as shown
    # each message sits right after its input, which points at it
    assert re.search(r'name="stages-1-lr"[^>]*aria-invalid="true" aria-describedby="err-stages-1-lr">'
                     r'<span class="error" id="err-stages-1-lr">', r.text)
    assert value_of(r.text, "stages-1-lr") == "fast" and value_of(r.text, "stages-1-epochs") == "2x"
    assert value_of(r.text, "name") == "typed-name" and value_of(r.text, "stages-1-mixup") == "0.2"
    assert re.search(r'name="tta"[^>]*checked', r.text) and 'value="accuracy" selected' in r.text
    assert n_runs(client) == 0

    r = client.post("/runs/new", data=run_form(token, dataset="no-such-data"))
    assert r.status_code == 422 and "unknown dataset" in errors_of(r.text)["dataset"] and n_runs(client) == 0


def test_writes_without_the_csrf_token_are_refused(client):
    run_id = add_run(client)
    csrf(client)  # the session has a token; the forms below just do not send it
    assert client.post("/runs/new", data=run_form("")).status_code == 403
    assert client.post("/runs/new", data=run_form("forged")).status_code == 403
    assert client.post(f"/runs/{run_id}/cancel", data={}).status_code == 403
    assert client.post("/datasets", data={"name": "x", "layout": "csv", "path": "digits"}).status_code == 403
    assert n_runs(client) == 1


def test_submitted_form_stores_a_queued_run_and_opens_its_page(client):
    r = client.post("/runs/new", data=run_form(csrf(client)), follow_redirects=False)
    assert r.status_code == 303 and re.fullmatch(r"/runs/\d+", r.headers["location"])
    with session_scope(engine(client)) as session:
        run = session.exec(select(Run)).scalars().one()
        assert (run.status, run.name, run.spec["stages"][1]["lr"], run.spec["tta"]) == (
            "queued", "typed-name", [1e-4, 1e-3], {"n": 2, "use_max": False})
        assert run.spec["stages"][0]["lr_find_iters"] == 20 and run.spec["stages"][1]["mixup"] == 0.2
    page = client.get(r.headers["location"]).text
    assert "typed-name" in page and "badge-queued" in page and f"Run {run.id} queued." in page


def test_every_preset_is_a_valid_quick_recipe_for_digits(client):
    token = csrf(client)
    for preset in presets("digits", 32):
        recipe = parse_spec(recipe_from_form(preset["form"]))
        assert recipe.arch == "resnet18" and not recipe.pretrained
        assert all(24 <= s.size <= 32 and 32 <= s.presize <= 40 and s.bs == 64 for s in recipe.stages)
    kinds = [parse_spec(recipe_from_form(p["form"])).techniques() for p in presets("digits", 32)]
    assert "normalize:dataset" not in kinds[0] and "progressive resizing" not in kinds[0]
    assert "progressive resizing" in kinds[1] and "mixup" in kinds[2] and "label smoothing" in kinds[3]
    big = parse_spec(recipe_from_form(presets("cassava", 600)[1]["form"]))
    assert [(s.size, s.presize) for s in big.stages] == [(224, 460), (448, 560)] and big.normalize == "imagenet"
    form = presets("digits", 32)[3]["form"]
    data = {"csrf_token": token, **{k: v for k, v in form.items() if k != "stages" and not isinstance(v, bool)},
            **{k: "on" for k, v in form.items() if v is True}}
    for i, stage in enumerate(form["stages"]):
        data.update({f"stages-{i}-{k}": ("on" if v is True else v) for k, v in stage.items() if v is not False})
    assert client.post("/runs/new", data=data, follow_redirects=False).status_code == 303


def test_clone_prefills_the_form(client):
    run_id = add_run(client, "succeeded", name="original", label_smoothing=0.1, precision="bf16")
    page = client.get(f"/runs/{run_id}/clone").text
    assert "Clone of" in page and value_of(page, "name") == "original-clone"
    assert value_of(page, "stages-1-lr") == "0.0001, 0.001" and value_of(page, "stages-1-mixup") == "0.2"
    assert value_of(page, "stages-0-lr") == "find" and value_of(page, "stages-1-size") == "32"
    assert re.search(r'name="stages-0-freeze"[^>]*checked', page)
    assert not re.search(r'name="stages-1-freeze"[^>]*checked', page)
    assert value_of(page, "label_smoothing") == "0.1" and "<option selected>bf16</option>" in page
    assert client.get("/runs/12345/clone").status_code == 404


def test_runs_list_filters_sorts_and_pages(client):
    for i in range(30):
        add_run(client, "succeeded" if i % 3 == 0 else "queued", name=f"run-{i:02d}", accuracy=0.5 + i / 100)
    page = client.get("/runs?limit=10").text
    assert page.count('name="ids"') == 10 and "run-29" in page and "run-19" not in page  # newest first
    assert "Runs <span class=\"muted\">(30)</span>" in page and "Prev" not in page
    following = re.search(r'href="([^"]+)" rel="next">Next', page).group(1).replace("&amp;", "&")
    second = client.get("/runs" + following).text  # a keyset cursor: page 2 starts after run-20
    assert "run-19" in second and "run-29" not in second and "run-10" in second and "run-09" not in second
    back = re.search(r'href="([^"]+)" rel="prev">', second).group(1).replace("&amp;", "&")
    assert re.findall(r">(run-\d\d)</a>", client.get("/runs" + back).text)[:2] == ["run-29", "run-28"]
    assert "run-19" in client.get("/runs?limit=10&offset=10").text  # old offset links still work
    assert client.get("/runs?cursor=not-a-cursor").status_code == 200  # a stale link: the first page
    done = client.get("/runs?status=succeeded").text
    assert done.count('name="ids"') == 10 and "badge-queued" not in done
    assert client.get("/runs?name=run-07").text.count('name="ids"') == 1
    best = client.get("/runs?order=-best_accuracy&limit=3").text
    assert re.findall(r">(run-\d\d)</a>", best) == ["run-27", "run-24", "run-21"]
    assert 'href="?order=best_accuracy&amp;limit=3"' in best  # clicking the sorted column again reverses it
    assert client.get("/runs?order=drop-table").status_code == 200  # unknown order: the default


def test_login_required_when_a_token_is_set(make_client):
    client = make_client(api_token=TOKEN)
    r = client.get("/runs/new", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fruns%2Fnew"
    assert client.get("/workers", follow_redirects=False).status_code == 303
    login = client.get("/login?next=/runs/new")
    assert login.status_code == 200 and 'name="token"' in login.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', login.text)[1]
    wrong = client.post("/login", data={"csrf_token": token, "token": "guess", "next": "/runs/new"})
    assert wrong.status_code == 401 and "not the configured one" in wrong.text
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.post("/login", data={"token": TOKEN, "next": "/"}).status_code == 403  # no CSRF token
    ok = client.post("/login", data={"csrf_token": token, "token": TOKEN, "next": "/runs/new"},
                     follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/runs/new"
    assert client.get("/runs/new").status_code == 200 and "Log out" in client.get("/").text
    evil = client.post("/login", data={"csrf_token": token, "token": TOKEN, "next": "//evil.example"},
                       follow_redirects=False)
    assert evil.headers["location"] == "/"
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/", follow_redirects=False).status_code == 303


def test_register_dataset_form(client, data_root):
    token = csrf(client, "/datasets")
    r = client.post("/datasets", data={"csrf_token": token, "name": "digits-csv", "layout": "csv", "path": "digits",
                                       "csv": "train.csv", "images": "train_images",
                                       "label_map": "label_num_to_disease_map.json"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/datasets/digits-csv"
    page = client.get("/datasets/digits-csv").text
    assert "Dataset digits-csv registered." in page and "registered" in page and "seven" in page
    assert client.get("/datasets/digits-csv/images/0").status_code == 200
    offered = client.get("/runs/new?dataset=digits-csv").text  # offered to the run form, preset and all
    assert '<option value="digits-csv" selected>' in offered and value_of(offered, "name") == "digits-csv-baseline"

    outside = client.post("/datasets", data={"csrf_token": token, "name": "escape", "layout": "folder",
                                             "path": "../.."})
    assert outside.status_code == 422 and "outside the data root" in errors_of(outside.text)["path"]
    assert value_of(outside.text, "name") == "escape" and value_of(outside.text, "path") == "../.."
    again = client.post("/datasets", data={"csrf_token": token, "name": "digits-csv", "layout": "csv", "path": "digits",
                                           "valid_pct": "7"})
    assert again.status_code == 422
    errors = errors_of(again.text)
    assert "already registered" in errors["name"] and "valid_pct" in errors
    with session_scope(engine(client)) as session:
        assert session.exec(select(func.count()).select_from(Dataset)).scalar_one() == 1
