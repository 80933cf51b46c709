"""The run page says every phase of a run's progress in words, with its ETA: as the server renders it, and as
run.js rewrites it live from the stream (the same words)."""
from __future__ import annotations

import html
import re
import urllib.request

import pytest

from fitboard.app.core.settings import Settings
from fitboard.app.store.db import session_scope
from fitboard.app.store.runs import record_progress
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_url
from tests.test_api import stored_run
from tests.test_e2e_browser import wait_js

WHERE = {"stage": 0, "epoch": 0, "elapsed": 4.0, "stage_count": 1, "epoch_count": 3, "smooth_loss": None}
# (progress document, heading, words, ETA), in the order a run goes through them.
PHASES = [
    ({**WHERE, "phase": "presize cache", "batch": 10, "total": 300, "eta": 29.0},
     "Presize cache", "stage 1 of 1 · resizing image 10 of 300 into the presize cache",
     "ETA 29 s for the presize cache"),
    ({**WHERE, "phase": "lr_find", "batch": 40, "total": 100, "eta": 6.2},
     "LR finder", "stage 1 of 1 · LR finder step 40 of 100", "ETA 6 s for the LR finder"),
    ({**WHERE, "phase": "train", "epoch": 1, "batch": 3, "total": 4, "eta": 0.7, "run_eta": 125.0, "smooth_loss": 0.5},
     "Training", "stage 1 of 1 · epoch 2 of 3 · batch 3 of 4", "ETA 2 min 5 s for the whole run"),
    ({**WHERE, "phase": "score", "epoch": 2, "batch": 3, "total": 8, "eta": 5.0, "run_eta": 65.0},
     "Final scoring", "scoring the validation set with the final weights · batch 3 of 8",
     "ETA 1 min 5 s for the whole run"),
    ({**WHERE, "phase": "tta", "epoch": 1, "batch": 2, "total": 5, "eta": 40.0, "run_eta": 40.0},
     "Test-time augmentation", "TTA pass 2 of 5", "ETA 40 s for the whole run"),
    ({**WHERE, "phase": "tta", "epoch": 4, "batch": 5, "total": 5, "eta": 3.0, "run_eta": 3.0},
     "Test-time augmentation", "TTA pass 5 of 5 (unaugmented)", "ETA 3 s for the whole run"),
]


@pytest.fixture
def site(tmp_path, sqlite_url, data_root):
    with live_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)) as served:
        yield served


def shown(page_html: str, element_id: str) -> str:
    """The text of one element of the server-rendered page, whitespace collapsed."""
    inner = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page_html, re.S)[1]
    return " ".join(html.unescape(inner).split())


def set_progress(app, run_id: int, doc: dict) -> None:
    with session_scope(app.state.engine) as s:
        record_progress(s, run_id, {"stages": [], "notes": [], "batch": doc})


def test_the_server_renders_every_phase_in_words(site):
    base, app = site
    run_id = stored_run(app.state.engine, "running")
    for doc, title, words, eta in PHASES:
        set_progress(app, run_id, doc)
        page = urllib.request.urlopen(f"{base}/runs/{run_id}", timeout=10).read().decode()
        assert (shown(page, "progress-phase"), shown(page, "progress-text"), shown(page, "progress-eta")) == (
            title, words, eta)


def test_the_live_page_says_every_phase_as_the_server_does(site, browser):  # noqa: F811
    base, app = site
    run_id = stored_run(app.state.engine, "running")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/runs/{run_id}")
    assert page.locator("#progress-phase").inner_text() == "Starting"
    for doc, title, words, eta in PHASES:
        set_progress(app, run_id, doc)  # the stream sends each new progress document
        wait_js(page, f"document.getElementById('progress-text').textContent === {words!r}", timeout=30)
        assert page.locator("#progress-phase").inner_text() == title
        assert page.locator("#progress-eta").inner_text() == eta
        bar = page.evaluate("(b => [b.value, b.max])(document.getElementById('progress-bar'))")
        assert bar == [doc["batch"], doc["total"]]
    assert not errors, errors
