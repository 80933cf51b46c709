"""A live server over one database holding one of every object a page can show, finished by hand (no training): a
sweep, a search whose trials ran and whose verify sweep is queued, a tracked run, a queued run, and the digits data.
`everything` is the module fixture; `ids` says which real object fills each path parameter of a page route."""
from __future__ import annotations

import json
import shutil
import time
import urllib.request
from types import SimpleNamespace

import pytest

from fitboard.app.core.settings import Settings
from fitboard.app.services import search_driver
from fitboard.app.services.queue import Publisher, make_celery
from tests.helpers import finish_by_hand, tiny_recipe
from tests.live import live_app

# Final accuracies of the search's trials, in trial order; the lr each trial had comes from Optuna.
TRIAL_ACCURACIES = [0.712, 0.781, 0.655, 0.803]
TIMEOUT = 120  # seconds an answer may take: generous, as the suite shares 2 cores with other work
SEARCH_SPACE = {"stages[*].lr": {"log": [1.0e-4, 3.0e-2]}, "label_smoothing": [None, 0.1]}
TRACKED_FACTS = {"arch": "resnet18", "pretrained": False, "loss_func": "CrossEntropyLossFlat", "opt_func": "Adam",
                 "metrics": ["accuracy", "error_rate"], "n_train": 240, "n_valid": 60, "classes": ["0", "1"]}


def get_json(base: str, path: str):
    return json.load(urllib.request.urlopen(f"{base}{path}", timeout=TIMEOUT))


def post_json(base: str, path: str, body: dict):
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=TIMEOUT))


def _search(base: str, app, home) -> int:
    """A 4-trial search whose trials all finished (told to Optuna, so its verify sweep is queued)."""
    recipe = tiny_recipe(name="searched", stages=[{"epochs": 2, "size": 32, "presize": 40, "bs": 32, "lr": 3e-3}])
    body = {"base": recipe, "space": SEARCH_SPACE, "options": {"max_trials": 4, "max_parallel": 4, "k": 2, "seeds": 3}}
    search = post_json(base, "/api/v1/searches", body)
    publisher = Publisher(make_celery(Settings(home=home, database_url=str(app.state.engine.url))), queue="pages")
    deadline = time.monotonic() + 120  # each pass tells Optuna the finished trials and asks for the next
    while (got := get_json(base, f"/api/v1/searches/{search['id']}"))["verify"] is None:
        assert time.monotonic() < deadline, f"the search did not reach its verify sweep: {got['status']}"
        for t in got["trials"]:
            if t["status"] == "queued":
                finish_by_hand(app.state.engine, t["run_id"], TRIAL_ACCURACIES[t["number"]], epochs=2)
        search_driver.drive(app.state.engine, publisher, [search["id"]], wait=10)
    return search["id"]


def _tracked(base: str) -> int:
    """A tracked run (a notebook's) with two epoch rows, finished."""
    run = post_json(base, "/api/v1/tracked", {"name": "notebook-run", "dataset": "digits", "facts": TRACKED_FACTS})
    rows = {"stages": [{"stage": 0, "epochs": 2, "size": 16, "bs": 32, "freeze": True, "lr": 0.002,
                        "schedule": "fit_one_cycle"}],
            "epochs": [{"stage": 0, "epoch": n, "train_loss": 0.9 - n / 10, "valid_loss": 0.8 - n / 10,
                        "metrics": {"accuracy": 0.6 + n / 10, "error_rate": 0.4 - n / 10}, "seconds": 2.0}
                       for n in range(2)]}
    post_json(base, f"/api/v1/tracked/{run['id']}/rows", rows)
    post_json(base, f"/api/v1/tracked/{run['id']}/finish",
              {"status": "succeeded", "metrics": {"accuracy": 0.7, "error_rate": 0.3, "valid_loss": 0.7}})
    return run["id"]


@pytest.fixture(scope="module")
def everything(tmp_path_factory, sqlite_template, data_root):
    """(base, app, ids): a live server over a sweep, a search, a tracked run, a queued run and the digits data."""
    home = tmp_path_factory.mktemp("everything")
    shutil.copyfile(sqlite_template, home / "fitboard.db")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'fitboard.db'}", data_root=data_root,
                        max_sweep_runs=24)
    with live_app(settings) as (base, app):
        sweep = post_json(base, "/api/v1/sweeps", {"base": tiny_recipe(name="swept", tta={"n": 2, "use_max": False}),
                                                   "vary": {"label_smoothing": [0.1]}, "seeds": [0, 1, 2]})
        runs = [r["id"] for r in sweep["queued"]]
        for run_id, acc in zip(runs, (0.71, 0.74, 0.70, 0.80, 0.78, 0.83), strict=True):
            finish_by_hand(app.state.engine, run_id, acc, tta=acc + 0.01, epochs=4, home=home, lr_find=True)
        queued = post_json(base, "/api/v1/runs", tiny_recipe(name="waiting"))["id"]
        ids = SimpleNamespace(runs=runs, sweep=sweep["id"], search=_search(base, app, home), tracked=_tracked(base),
                              queued=queued, dataset="digits")
        yield SimpleNamespace(base=base, app=app, ids=ids)
