"""The runs list shows how long each running run has been running (its started_at to now), counting on in the
browser, and its final duration once it ends; each figure checked against the API's started_at and duration."""
from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import datetime, timedelta

from fitboard.app.core.events import ResultEvent
from fitboard.app.pages.wording import secs
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, utcnow
from fitboard.app.store.runs import finish_run
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_url
from tests.test_api import stored_run
from tests.test_browser_pages import site  # noqa: F401  (the live-server fixture)
from tests.test_e2e_browser import wait_js

STARTED_AGO = 125  # seconds: "2 min 5 s", in the minutes format


def api(base: str, path: str) -> dict:
    return json.load(urllib.request.urlopen(f"{base}{path}", timeout=10))


def running_run(app) -> int:
    """A run claimed by a worker STARTED_AGO seconds ago."""
    run_id = stored_run(app.state.engine, "running", name="still-training")
    with session_scope(app.state.engine) as s:
        s.get(Run, run_id).started_at = utcnow() - timedelta(seconds=STARTED_AGO)
    return run_id


def possible(started_at: str, before: float, after: float) -> set[str]:
    """What the page may show for a run started at started_at when read between the times before and after."""
    start = datetime.fromisoformat(started_at).timestamp()
    return {secs(t - start) for t in range(int(before) - 1, int(after) + 2)}


def shown_elapsed(page_html: str, run_id: int) -> str:
    found = re.search(rf'data-run="{run_id}".*?<span data-elapsed-text>([^<]*)</span> so far', page_html, re.S)
    assert found, f"run {run_id}'s row shows no running time"
    return found[1]


def test_the_list_shows_each_running_runs_time_since_it_started(site):  # noqa: F811  (the imported fixture)
    base, app = site
    run_id, done = running_run(app), stored_run(app.state.engine, "succeeded", name="finished")
    before = time.time()
    page = urllib.request.urlopen(f"{base}/runs", timeout=10).read().decode()
    after = time.time()
    started_at = api(base, f"/api/v1/runs/{run_id}")["started_at"]
    assert shown_elapsed(page, run_id) in possible(started_at, before, after)
    assert shown_elapsed(page, run_id).startswith("2 min")
    assert f'data-run="{done}"' not in page  # a finished run shows its duration, not a clock


def test_the_clock_counts_on_and_the_list_shows_the_duration_once_it_ends(site, browser):  # noqa: F811
    base, app = site
    run_id = running_run(app)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    before = time.time()
    page.goto(f"{base}/runs")
    clock = page.locator(f'.elapsed[data-run="{run_id}"] [data-elapsed-text]')
    first = clock.inner_text()
    wait_js(page, f"document.querySelector('.elapsed[data-run=\"{run_id}\"] [data-elapsed-text]').textContent "
                  f"!== {first!r}", timeout=30)  # it ticks once a second
    ticked, after = clock.inner_text(), time.time()
    started_at = api(base, f"/api/v1/runs/{run_id}")["started_at"]
    assert {first, ticked} <= possible(started_at, before, after)

    with session_scope(app.state.engine) as s:
        finish_run(s, run_id, ResultEvent(metrics={"valid_loss": 0.5, "accuracy": 0.9, "error_rate": 0.1}))
    page.wait_for_selector(f"tr:has(input[value='{run_id}']) .badge-succeeded", timeout=30_000)  # reloaded itself
    duration = api(base, f"/api/v1/runs/{run_id}")["duration"]
    cell = page.locator(f"tr:has(input[value='{run_id}']) td.num.nowrap").inner_text()
    assert duration >= STARTED_AGO and cell == secs(duration)
    assert page.locator(".elapsed").count() == 0
    assert not errors, errors
