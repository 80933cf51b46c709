"""Searches: an Optuna study in fitboard's own database, trials as runs, the pruned status everywhere, the API's
bounds, and a whole search with ASHA across two real worker processes through its verify sweep."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from fitboard.app.core.settings import Settings
from fitboard.app.services import search_driver, searches
from fitboard.app.services.queue import Publisher, make_celery
from fitboard.app.store import searches as search_store
from fitboard.app.store.db import alembic_config, make_engine, session_scope, upgrade
from fitboard.app.store.runs import claim_run, mark_pruned
from fitboard.app.store.sweeps import sweep_report
from fitboard.app.web.app import create_app
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_recovery import holder
from tests.workers import Workers

GOOD, GOOD2, BAD = 3e-3, 1e-3, 3.0  # BAD: 1000x the tiny recipe's rate: the net learns nothing in an epoch


def base_recipe(epochs: int = 2) -> dict:
    """The tiny recipe (size 32: squeezenet needs it) for `epochs` epochs."""
    recipe = tiny_recipe(name="srch")
    recipe["stages"] = [{"epochs": epochs, "size": 32, "presize": 40, "bs": 32, "lr": GOOD}]
    return recipe


@pytest.fixture
def settings(tmp_path, sqlite_url, data_root) -> Settings:
    return Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root, max_sweep_runs=12)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def test_a_search_is_an_optuna_study_in_fitboards_database_starting_from_the_base(client, sqlite_url):
    space = {"stages[*].lr": [GOOD, GOOD2, BAD], "stages[0].bs": {"int": [16, 32]}}
    r = client.post("/api/v1/searches", json={"base": base_recipe(), "space": space,
                                              "options": {"max_trials": 5, "max_parallel": 2}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "running" and body["options"]["pruner"] == "asha"
    # Optuna's own tools read the study from the very URL fitboard uses (no special storage options).
    study = optuna.load_study(study_name=body["study_name"], storage=sqlite_url)
    trials = study.get_trials()
    assert len(trials) == 2  # max_parallel trials asked and queued
    assert trials[0].params == {"stages[*].lr": GOOD, "stages[0].bs": 32}  # the base recipe is trial 0
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        runs = search_store.trial_runs(s, body["id"])
        assert [(r.trial_number, r.status) for r in runs] == [(0, "queued"), (1, "queued")]
        assert [r.spec["stages"][0]["lr"] for r in runs] == [trials[0].params["stages[*].lr"],
                                                           trials[1].params["stages[*].lr"]]
        assert runs[1].spec["stages"][0]["bs"] == trials[1].params["stages[0].bs"]
    engine.dispose()
    got = client.get(f"/api/v1/searches/{body['id']}").json()
    assert [t["run_id"] for t in got["trials"]] == [r.id for r in runs]
    assert got["budget"]["grid_size"] == 3 * 17 and got["budget"]["epochs_trained"] == 0
    cancelled = client.post(f"/api/v1/searches/{body['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and {t["status"] for t in cancelled["trials"]} == {"cancelled"}


@pytest.mark.parametrize("change, field", [
    ({"options": {"max_trials": 13}}, "max_trials"),  # FITBOARD_MAX_SWEEP_RUNS is 12 here
    ({"options": {"k": 3, "seeds": 4}}, "seeds"),  # (3 + 1) x 4 verify runs > 12
    ({"options": {"pruner": "sometimes"}}, "pruner"),
    ({"options": {"sampler": "grid"}}, "sampler"),  # a float range has no grid
    ({"space": {"stages[3].lr": [0.1]}}, "space.stages[3].lr"),
    ({"space": {"label_smoothing": {"log": [0, 1]}}}, "space.label_smoothing"),
    # a key that is a path with brackets was dropped from the location ("space.log[0]", "space")
    ({"space": {"stages[*].lr": {"log": [0, 1]}}}, "space.stages[*].lr.log[0]"),
    ({"space": {"stages[0].size": list(range(100))}}, "space.stages[0].size"),
    ({"options": {"first": [{"label_smoothing": 0.9}]}}, "first[0].label_smoothing"),
    ({"options": {"surprise": 1}}, "surprise"),
])
def test_bad_search_input_is_422_naming_the_field_and_stores_nothing(client, change, field):
    body = {"base": base_recipe(), "space": {"label_smoothing": {"float": [0.0, 0.2]}}, "options": {}, **change}
    r = client.post("/api/v1/searches", json=body)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json())
    assert client.get("/api/v1/searches/1").status_code == 404



def test_a_trial_whose_worker_is_killed_resumes_on_the_other_worker_and_the_search_finishes(tmp_path, sqlite_url,
                                                                                            data_root):
    workers = Workers(tmp_path, sqlite_url, data_root, None, worker_lost_after=4)
    try:
        workers.start(2)
        publisher = Publisher(make_celery(workers.settings()), queue=workers.queue)
        options = {"max_trials": 2, "max_parallel": 1, "k": 1, "seeds": 3, "pruner": "none", "sampler": "random",
                   "metric": "valid_loss"}
        with session_scope(workers.engine) as s:
            search = searches.create(s, publisher, base_recipe(epochs=3), {"stages[*].lr": [GOOD, GOOD2]}, options,
                                     data_root, 12, 60)
            first = search_store.trial_runs(s, search.id)[0].id
        # kill -9 the worker training trial 0 once its first epoch's checkpoint is stored and the second epoch runs
        # (the third is the margin that keeps the kill before the run's end)
        victim = holder(workers, workers.wait(first, lambda r: (r.checkpoint or {}).get("epoch", -1) >= 0
                                              and (r.progress or {}).get("batch", {}).get("epoch", -1) >= 1))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        report = _wait_search(workers.engine, search.id, workers)
        assert report["status"] == "done", (report["reason"], report["trials"])
        trial = next(t for t in report["trials"] if t["number"] == 0)
        assert trial["status"] == "succeeded" and trial["epochs"] == 3
        run = workers.run(first)
        assert run.attempt == 2 and int(run.worker.rsplit(":", 1)[1]) != victim.pid  # resumed by the other worker
        assert workers.rows(first) == [(0, e) for e in range(3)]  # every epoch once, none lost to the kill
        study = optuna.load_study(study_name=report["study_name"], storage=sqlite_url)
        assert sorted(study.get_trials()[0].intermediate_values) == [1, 2, 3]  # it kept reporting after resuming
        assert report["verify"] is not None and report["verify"]["runs_finished"] == report["verify"]["runs_total"]
    finally:
        workers.stop()

def test_pruned_is_a_status_every_list_filter_and_model_knows(client, sqlite_url, tmp_path, monkeypatch, capsys):
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        from fitboard.app.store.runs import create_run
        run_id = create_run(s, {**base_recipe(), "name": "pruned-one"}).id
    with session_scope(engine) as s:
        claim_run(s, run_id, "w1")
    with session_scope(engine) as s:
        assert mark_pruned(s, run_id, "w1", {"stage": 0, "epoch": 0, "step": 1, "metric": "accuracy",
                                            "value": 0.1}) == "pruned"
    engine.dispose()
    page = client.get("/api/v1/runs", params={"status": "pruned"}).json()
    assert [r["id"] for r in page["items"]] == [run_id] and page["items"][0]["status"] == "pruned"
    assert client.get(f"/api/v1/runs/{run_id}").json()["result"]["pruned"]["step"] == 1
    html = client.get("/runs", params={"status": "pruned"}).text
    assert "pruned-one" in html and "badge-pruned" in html
    attempts = client.get(f"/api/v1/runs/{run_id}/attempts").json()
    assert attempts[-1]["outcome"] == "pruned"
    # The command line, in this process (the same code `fitboard` runs): the status filter and the run in words.
    monkeypatch.setenv("FITBOARD_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FITBOARD_HOME", str(tmp_path))
    from fitboard.worker.cli import main
    assert main(["runs", "--status", "pruned"]) == 0
    assert "pruned-one" in capsys.readouterr().out
    assert main(["show", str(run_id)]) == 0
    assert "pruned by its search after 1 epochs (accuracy 0.1" in capsys.readouterr().out
    assert "its pruner" in client.get(f"/runs/{run_id}").text


def test_an_old_database_keeps_its_revision_when_optuna_takes_alembic_version(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:  # as a database made before searches: fitboard's revision in alembic_version
        conn.execute(text("ALTER TABLE fitboard_alembic_version RENAME TO alembic_version"))
    upgrade(url)
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert conn.execute(text("SELECT version_num FROM fitboard_alembic_version")).scalar() == head
        assert "alembic_version" not in inspect(conn).get_table_names()
    optuna.create_study(study_name="s", storage=url)  # Optuna stamps its own alembic_version, and reads it back
    assert optuna.load_study(study_name="s", storage=url).study_name == "s"
    upgrade(url)  # fitboard's next start leaves Optuna's tables and version alone
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        assert {"studies", "trials", "alembic_version", "fitboard_alembic_version", "search"} <= names
    engine.dispose()


@pytest.fixture
def served_api(settings):
    """The web app over real HTTP (uvicorn in a thread), for the CLI."""
    import threading

    import uvicorn

    from tests.served import free_port
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_cli_search_starts_a_search_whose_study_optuna_reads(served_api, tmp_path, sqlite_url):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base_recipe()))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"stages[*].lr": [GOOD, GOOD2]}))
    cli = [sys.executable, "-m", "fitboard.worker.cli", "search", str(tmp_path / "base.yaml"), "--space",
           str(tmp_path / "space.yaml"), "--url", served_api]
    started = subprocess.run([*cli, "--trials", "2", "--parallel", "1"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    assert "search 1 started (Optuna study fitboard-search-1)" in started.stdout
    study = optuna.load_study(study_name="fitboard-search-1", storage=sqlite_url)
    assert [t.params for t in study.get_trials()] == [{"stages[*].lr": GOOD}]  # one in parallel: the base first


def _wait_search(engine, search_id: int, workers: Workers, timeout: float = 300) -> dict:
    """Poll the search until it is done, failed or cancelled; its report."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            if search_store.get_search(s, search_id).status in ("done", "failed", "cancelled"):
                return searches.report(s, search_id)
        time.sleep(0.5)
    with session_scope(engine) as s:
        state = searches.report(s, search_id)
    raise AssertionError(f"search stuck: {json.dumps(state['counts'])} {state['status']}\n{workers.logs()[-4000:]}")


def test_asha_across_two_workers_prunes_the_bad_rate_survives_a_failed_trial_and_verifies(tmp_path, sqlite_url,
                                                                                         data_root):
    workers = Workers(tmp_path, sqlite_url, data_root, None)
    workers.env["TORCH_HOME"] = str(tmp_path / "torch")  # no cached weights: a pretrained trial fails at once
    try:
        workers.start(2)
        publisher = Publisher(make_celery(workers.settings()), queue=workers.queue)
        space = {"stages[*].lr": [GOOD, GOOD2, BAD], "pretrained": [False, True]}
        # One trial at a time (on whichever of the two workers is free; the verify sweep then uses both), so the
        # order ASHA sees them in is fixed: the base (GOOD) alone at the first rung, then GOOD2 (better there), then
        # BAD, far behind both and pruned; the pretrained trial fails (no weights offline). With two at a time the
        # base could report after GOOD2 and be pruned for it, which is ASHA doing its job but not a fixed story.
        first = [{"stages[*].lr": GOOD2, "pretrained": False}, {"stages[*].lr": BAD, "pretrained": False},
                 {"stages[*].lr": GOOD, "pretrained": True}]
        # valid_loss: on 240 images two epochs barely move accuracy, but a rate 1000x too high shows in the loss.
        options = {"max_trials": 4, "max_parallel": 1, "k": 2, "seeds": 3, "reduction_factor": 2,
                   "sampler": "random", "first": first, "metric": "valid_loss"}
        with session_scope(workers.engine) as s:
            search = searches.create(s, publisher, base_recipe(), space, options, data_root, 12, 60)
        report = _wait_search(workers.engine, search.id, workers)
        assert report["status"] == "done", (report["reason"], report["trials"])
        by = {t["number"]: t for t in report["trials"]}
        assert [by[n]["status"] for n in range(4)] == ["succeeded", "succeeded", "pruned", "failed"], [
            (t["status"], t["curve"], t["value"]) for t in report["trials"]]
        assert by[2]["params"] == {"stages[*].lr": BAD, "pretrained": False}
        assert by[2]["pruned"]["epoch"] == 1 and by[2]["pruned"]["rung"] == 0 and by[2]["epochs"] == 1
        assert "weights" in by[3]["error"] and by[3]["epochs"] == 0
        assert [by[n]["epochs"] for n in (0, 1)] == [2, 2]
        assert report["budget"]["epochs_trained"] == 5 and report["budget"]["epochs_full_grid"] == 6 * 2
        # Optuna's tools see the same story, from fitboard's database URL.
        study = optuna.load_study(study_name=report["study_name"], storage=sqlite_url)
        states = [t.state.name for t in study.get_trials()]
        assert states == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
        assert [t.value for t in study.get_trials()[:2]] == [by[0]["value"], by[1]["value"]]
        assert sorted(study.get_trials()[2].intermediate_values) == [1]  # steps count epochs trained
        # The verify sweep: the winners and the base on fresh seeds, with verdicts.
        verify = report["verify"]
        assert verify["runs_finished"] == verify["runs_total"] == 6 and 7 not in verify["seeds"]
        with session_scope(workers.engine) as s:
            sweep = sweep_report(s, verify["sweep_id"])
        winner = next(v for v in sweep["variants"] if v.get("trial") == 1)
        assert winner["overrides"] == {"stages[0].lr": GOOD2} and "points" in winner["verdict"]
        mine = verify["winners"][0]
        assert mine["trial"] == 1 and mine["search_value"] == by[1]["value"]
        assert mine["verified"]["mean"] == pytest.approx(winner["accuracy"]["mean"]) and mine["verified"]["n"] == 3
        # The page says what the API says: the verdict on top, the pruned trial's rung, the budget.
        settings = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)
        with TestClient(create_app(settings)) as c:
            api = c.get(f"/api/v1/searches/{search.id}").json()
            html = c.get(f"/searches/{search.id}").text
            assert api["verify"]["winners"][0]["verdict"] == mine["verdict"]
            assert html.index(mine["verdict"]) < html.index('id="search-trials"')  # verdicts at the top
            assert "at epoch 1 (rung 0)" in html and f"{api['budget']['epochs_trained']} epochs trained" in html
            assert f"/runs/{by[0]['run_id']}/search" in c.get(f"/runs/{by[0]['run_id']}").text
            assert "learning rates" in c.get(f"/runs/{by[0]['run_id']}/search").text
    finally:
        workers.stop()


def test_search_form_on_a_run_refuses_bad_yaml_then_starts_the_search_with_the_run_as_base(client, sqlite_url):
    import re

    from fitboard.app.store.runs import create_run
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        run_id = create_run(s, {**base_recipe(), "name": "my-run"}).id
    engine.dispose()
    page = client.get(f"/runs/{run_id}/search").text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)[1]
    form = {"csrf_token": token, "name": "", "space": "stages[*].lr: [0.003, 0.001", "pruner": "asha",
            "sampler": "tpe", "metric": "accuracy", "max_trials": "3", "max_parallel": "1", "k": "2", "seeds": "3"}
    bad = client.post(f"/runs/{run_id}/search", data=form)
    assert bad.status_code == 422 and "space: not valid YAML" in bad.text
    r = client.post(f"/runs/{run_id}/search", data={**form, "space": "stages[*].lr: [0.003, 0.001]"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/searches/1"
    api = client.get("/api/v1/searches/1").json()
    assert api["name"] == "search: my-run" and api["options"]["max_trials"] == 3
    assert api["base"]["name"] == "my-run" and api["base"]["stages"][0]["lr"] == GOOD
    assert [t["params"] for t in api["trials"]] == [{"stages[*].lr": GOOD}]  # the run's own recipe first
    assert "search: my-run" in client.get("/searches").text


def test_on_postgres_the_study_lives_beside_fitboards_tables(postgres_url, tmp_path, data_root):
    engine = make_engine(postgres_url)
    publisher = Publisher(make_celery(Settings(home=tmp_path)), queue="search-pg")
    with session_scope(engine) as s:
        search = searches.create(s, publisher, base_recipe(), {"stages[*].lr": [GOOD, BAD]}, {"max_parallel": 1},
                                 data_root, 12, 60)
    study = optuna.load_study(study_name=search.study_name, storage=postgres_url)
    assert [t.params for t in study.get_trials()] == [{"stages[*].lr": GOOD}]
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
    assert {"studies", "trials", "alembic_version", "fitboard_alembic_version", "search", "run"} <= names
    upgrade(postgres_url)  # fitboard's next start leaves Optuna's tables alone
    with session_scope(engine) as s:
        assert [r.trial_number for r in search_store.trial_runs(s, search.id)] == [0]
    engine.dispose()


def test_a_configuration_asked_again_is_not_trained_again_and_a_base_that_wins_is_said_so(client, sqlite_url, tmp_path):
    from tests.helpers import finish_by_hand
    body = {"base": base_recipe(), "space": {"stages[*].lr": [GOOD]},  # one configuration: every later ask repeats it
            "options": {"max_trials": 3, "max_parallel": 1, "k": 2, "seeds": 3}}
    search = client.post("/api/v1/searches", json=body).json()
    engine = make_engine(sqlite_url)
    finish_by_hand(engine, search["trials"][0]["run_id"], acc=0.8)
    publisher = Publisher(make_celery(Settings(home=tmp_path, database_url=sqlite_url)), queue="dup")
    search_driver.drive(engine, publisher)  # tells trial 0, asks trials 1 and 2 (duplicates), starts the verify sweep
    got = client.get(f"/api/v1/searches/{search['id']}").json()
    assert [(t["status"], t["duplicate_of"], t["value"]) for t in got["trials"]] == [
        ("succeeded", None, 0.8), ("duplicate", 0, 0.8), ("duplicate", 0, 0.8)]
    assert got["budget"]["epochs_trained"] == 2 and got["status"] == "verifying"
    with session_scope(engine) as s:
        assert len(search_store.trial_runs(s, search["id"])) == 1
        sweep = sweep_report(s, got["verify"]["sweep_id"], curves=False)
    assert [v["key"] for v in sweep["variants"]] == ["{}"] and sweep["seeds"] == [8, 9, 10]  # fresh: the base's is 7
    assert got["verify"]["winners"] == []
    assert "The search found nothing better than the base recipe." in client.get(f"/searches/{search['id']}").text
    engine.dispose()
