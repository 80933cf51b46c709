"""The search page and form in Debian's chromium, read as values: every chart drawn (no WebGL, no CSP refusal), the
trials' configurations in words to 3 significant digits equal to the API's params, what the base recipe's place in
the search is, the epochs cut on the form, and no "Share chart" to Plotly Cloud on any chart's toolbar."""
from __future__ import annotations

import html
import math
import re

import pytest
from fastapi.testclient import TestClient

from fitboard.app.core.settings import Settings
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.runs import create_run
from fitboard.app.web.app import create_app
from tests.browser import table_rows
from tests.helpers import tiny_recipe
from tests.site_objects import SEARCH_SPACE, everything, get_json  # noqa: F401  (the module's live server)
from tests.store_fixtures import *  # noqa: F401,F403

NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)?")
INSIDE = "Trial 0 is the base recipe: its own values lie in the space."
CLOUD = re.compile(r"share|cloud|chart studio|plotly", re.I)  # what an offline, self-hosted tool never offers


def significant(text: str) -> int:
    """How many significant digits a number is written with: '2.29e-3' -> 3, '0.1' -> 1."""
    mantissa = text.split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_search_page_draws_every_chart_with_the_finished_trials(everything, page):  # noqa: F811
    api = get_json(everything.base, f"/api/v1/searches/{everything.ids.search}")
    done = [t for t in api["trials"] if t["status"] == "succeeded" and t["value"] is not None]
    assert len(done) == 4
    page.goto(f"{everything.base}/searches/{everything.ids.search}")
    params = page.locator("#search-params .js-plotly-plot")
    params.nth(len(SEARCH_SPACE) - 1).wait_for()
    assert params.count() == len(SEARCH_SPACE)  # one chart per searched field
    for k in range(params.count()):  # each draws one point per finished trial, at that trial's metric
        ys = params.nth(k).evaluate("(el) => el.data[0].y")
        assert ys == [t["value"] for t in done]
        assert params.nth(k).locator(".scatterlayer .point").count() == len(done)
    titles = [params.nth(k).locator(".g-xtitle").text_content() for k in range(params.count())]
    assert titles == ["learning rate", "label smoothing"]
    assert page.locator("#search-curves .scatterlayer .trace").count() == len(done)
    assert page.locator("#search-best .scatterlayer .point").count() == len(api["best_so_far"])
    assert "WebGL" not in page.locator("body").inner_text()
    assert page.locator("canvas").count() == 0  # no WebGL trace anywhere


def test_trials_read_in_words_to_three_significant_digits(everything, page):  # noqa: F811
    api = get_json(everything.base, f"/api/v1/searches/{everything.ids.search}")
    page.goto(f"{everything.base}/searches/{everything.ids.search}")
    rows = table_rows(page.locator("#search-trials"))
    assert [int(r["Trial"]) for r in rows] == [t["number"] for t in api["trials"]]
    for row, trial in zip(rows, api["trials"], strict=True):
        words = row["Configuration"]
        lr = trial["params"]["stages[*].lr"]
        shown = re.search(r"\blr (" + NUMBER.pattern + ")", words)
        assert shown, words
        assert significant(shown.group(1)) <= 3 and math.isclose(float(shown.group(1)), lr, rel_tol=5e-3), (words, lr)
        smoothing = trial["params"]["label_smoothing"]
        assert ("no label smoothing" in words) if smoothing is None else (f"label smoothing {smoothing:g}" in words)
        assert "stages[" not in words and "=" not in words, words
    # Trial 0 is the base recipe (lr 3e-3, no smoothing: inside the space), and the page says so.
    assert api["trials"][0]["params"] == {"stages[*].lr": api["base"]["stages"][0]["lr"], "label_smoothing": None}
    assert page.locator("#search-base-note").inner_text() == INSIDE
    winners = table_rows(page.locator("#search-winners"))
    assert winners and all("stages[" not in w["Winner"] and re.match(r"trial \d+: ", w["Winner"]) for w in winners)
    budget = page.locator("#search-budget").inner_text()
    assert "8 epochs trained" in budget and "by 4 trials" in budget, budget  # 4 trials of 2 epochs


@pytest.mark.parametrize("url", ["/runs/{run}", "/compare?ids={run},{other}", "/sweeps/{sweep}",
                                 "/searches/{search}"])
def test_no_chart_toolbar_offers_to_upload_to_plotly_cloud(everything, page, url):  # noqa: F811
    ids = everything.ids
    page.goto(everything.base + url.format(run=ids.runs[0], other=ids.runs[3], sweep=ids.sweep, search=ids.search))
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    chart.hover()
    buttons = chart.locator(".modebar-btn")
    buttons.first.wait_for(state="attached")
    titles = buttons.evaluate_all("(bs) => bs.map((b) => b.getAttribute('data-title'))")
    assert "Download plot as a PNG" in titles, titles
    assert not [t for t in titles if CLOUD.search(t or "")], titles
    assert chart.locator("a[href*='plot.ly'], a[href*='plotly.com'], .modebar-btn--logo").count() == 0


@pytest.fixture
def client(tmp_path, sqlite_url, data_root):
    with TestClient(create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root))) as c:
        yield c


def stored(sqlite_url: str, **recipe) -> int:
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        run_id = create_run(s, tiny_recipe(**recipe)).id
    engine.dispose()
    return run_id


def test_a_base_outside_the_space_is_said_and_trial_0_is_then_not_the_base(client, sqlite_url):
    two = [{"epochs": 3, "size": 32, "presize": 40, "bs": 32, "lr": "find"},
           {"epochs": 2, "size": 32, "presize": 40, "bs": 32, "lr": [1e-4, 1e-3]}]
    run_id = stored(sqlite_url, name="finder", stages=two)
    form = client.get(f"/runs/{run_id}/search").text  # the first preset: learning rates, a log range
    assert ("The base recipe's learning rate in every stage (find, [0.0001, 0.001]) lies outside the space, so no "
            "trial trains the base recipe itself (trial 0 is the sampler's pick)") in html.unescape(form)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', form)[1]
    data = {"csrf_token": token, "name": "", "space": "stages[*].lr: {log: [0.0001, 0.03]}", "pruner": "asha",
            "sampler": "tpe", "metric": "accuracy", "max_trials": "1", "max_parallel": "1", "k": "1", "seeds": "3",
            "epochs-0": "1", "epochs-1": "", "priority": "high"}  # stage 1 cut to 1 epoch, stage 2 kept
    assert 'name="priority"' in form
    r = client.post(f"/runs/{run_id}/search", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    api = client.get(r.headers["location"].replace("/searches/", "/api/v1/searches/")).json()
    trial = client.get(f"/api/v1/runs/{api['trials'][0]['run_id']}").json()
    assert trial["priority"] == "high" and trial["search_id"] == api["id"]
    assert [s["epochs"] for s in api["base"]["stages"]] == [1, 2]
    lr = api["trials"][0]["params"]["stages[*].lr"]
    assert isinstance(lr, float) and 1e-4 <= lr <= 0.03  # the sampler's pick, not the base's "find"
    page = html.unescape(client.get(r.headers["location"]).text)
    assert "lies outside the space, so no trial trains the base recipe itself" in page
    assert "the best 1 configuration and the base recipe train on 3 fresh seeds" in page  # singular, plural
    bad = client.post(f"/runs/{run_id}/search", data={**data, "epochs-0": "0"})
    assert bad.status_code == 422 and "stage 1 epochs: give a whole number from 1 to" in bad.text


def test_search_form_cuts_epochs_and_a_preset_says_whether_the_run_is_trial_0(everything, page):  # noqa: F811
    run = everything.ids.runs[0]  # the tiny recipe: lr 3e-3, no MixUp, no label smoothing
    page.goto(f"{everything.base}/runs/{run}/search")
    note = page.locator("#search-base-note")
    assert note.inner_text() == INSIDE  # learning rates
    page.select_option("#search-preset", "image sizes")  # the run's 32 px lies in it, its presize 40 does not
    assert note.inner_text().startswith("The base recipe's presize (40) lies outside the space")
    page.select_option("#search-preset", "regularisation: MixUp and label smoothing")
    assert note.inner_text() == INSIDE
    assert page.locator("#stage-epochs input").count() == 1
    page.fill("[name=epochs-0]", "1")
    page.fill("[name=max_trials]", "2")
    page.fill("[name=k]", "1")
    page.click("#search-form button[type=submit]")
    page.wait_for_url(re.compile(r"/searches/\d+$"))
    search_id = int(page.url.rsplit("/", 1)[1])
    api = get_json(everything.base, f"/api/v1/searches/{search_id}")
    assert api["base"]["stages"][0]["epochs"] == 1
    assert api["trials"][0]["params"] == {"stages[*].mixup": None, "label_smoothing": None}
    trial0 = get_json(everything.base, f"/api/v1/runs/{api['trials'][0]['run_id']}")
    assert trial0["spec"]["stages"][0]["epochs"] == 1
    assert table_rows(page.locator("#search-trials"))[0]["Configuration"] == "no MixUp, no label smoothing"
