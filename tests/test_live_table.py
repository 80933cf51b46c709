"""The run page's epoch table, read cell by cell under its headers, equals the API's epochs: the rows the SSE stream
adds while a real worker trains, and the rows the server renders after the page reloads itself."""
from __future__ import annotations

import json
import urllib.request

import pytest

from fitboard.app.core.settings import Settings
from tests.helpers import tiny_recipe
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_url
from tests.workers import Workers

# Every row the stream appends is copied to sessionStorage as it lands (a reload keeps sessionStorage), with the
# header texts, so the test reads each live row even though the page reloads itself when the run ends.
RECORD_LIVE_ROWS = """(() => {
  const heads = [...document.querySelectorAll('#epoch-table thead th')].map((th) => th.textContent.trim());
  sessionStorage.setItem('liveRows', '[]');
  new MutationObserver((changes) => {
    for (const change of changes) for (const tr of change.addedNodes) {
      if (tr.tagName !== 'TR' || tr.classList.contains('stage-sep')) continue;
      const rows = JSON.parse(sessionStorage.getItem('liveRows'));
      rows.push({ heads, title: tr.title, cells: [...tr.children].map((td) => td.textContent.trim()) });
      sessionStorage.setItem('liveRows', JSON.stringify(rows));
    }
  }).observe(document.getElementById('epoch-rows'), { childList: true });
})()"""

SERVED_ROWS = """[...document.querySelectorAll('#epoch-rows tr:not(.stage-sep)')].map((tr) => ({
  heads: [...document.querySelectorAll('#epoch-table thead th')].map((th) => th.textContent.trim()),
  title: tr.title, cells: [...tr.children].map((td) => td.textContent.trim()) }))"""


def api(base: str, path: str):
    return json.load(urllib.request.urlopen(f"{base}{path}", timeout=10))


def f4(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def expected_cells(n: int, row: dict) -> dict[str, str]:
    """What the table must show under each header for the API's n-th epoch row (1-based over all stages)."""
    m = row["metrics"]
    return {"Epoch": str(n), "train_loss": f4(row["train_loss"]), "valid_loss": f4(row["valid_loss"]),
            "accuracy": f4(m.get("accuracy")), "error_rate": f4(m.get("error_rate")),
            "time": "–" if row["seconds"] is None else f"{row['seconds']:.1f} s"}


def check_rows(shown: list[dict], rows: list[dict]) -> None:
    """Each shown row, header text -> cell text, equals the API's row it names (by its title) and its position."""
    for r in shown:
        cells = dict(zip(r["heads"], r["cells"]))
        cells["Epoch"] = cells.get("Epoch", "").split()[0]  # the best epoch's star follows the number
        n = int(cells["Epoch"])
        api_row = rows[n - 1]
        assert r["title"].split(":")[0] == f"stage {api_row['stage'] + 1} · epoch {api_row['epoch'] + 1}"
        assert cells == expected_cells(n, api_row), (r, api_row)
        assert len(r["cells"]) == len(r["heads"]), r


@pytest.fixture
def site(tmp_path, sqlite_url, data_root):
    """(base URL, workers) of a live web server and a worker group on this test's database (embedded broker)."""
    workers = Workers(tmp_path, sqlite_url, data_root, None)
    try:
        with live_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)) as (base, _):
            yield base, workers
    finally:
        workers.stop()


def test_live_rows_and_reloaded_rows_show_the_apis_values_under_each_header(site, browser):  # noqa: F811
    base, workers = site
    recipe = tiny_recipe(name="live-table")
    recipe["stages"] = [{"epochs": 3, "size": 32, "presize": 40, "bs": 32, "lr": 3e-3},
                        {"epochs": 2, "size": 32, "presize": 40, "bs": 32, "lr": [1e-4, 1e-3]}]
    run_id = workers.submit(recipe)  # queued before any worker runs: every row reaches the page through the stream
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/runs/{run_id}")
    page.evaluate(RECORD_LIVE_ROWS)
    workers.start(1)
    run = workers.wait_status(run_id, "succeeded", "failed")
    assert run.status == "succeeded", run.error
    page.wait_for_selector("[data-status-badge].badge-succeeded", timeout=60_000)  # the page reloads when done
    rows = api(base, f"/api/v1/runs/{run_id}/epochs")
    assert [(r["stage"], r["epoch"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]

    live = json.loads(page.evaluate("sessionStorage.getItem('liveRows')"))
    assert [r["title"] for r in live] == [f"stage {s + 1} · epoch {e + 1}" for s, e in [(0, 0), (0, 1), (0, 2),
                                                                                         (1, 0), (1, 1)]]
    check_rows(live, rows)
    served = page.evaluate(SERVED_ROWS)
    assert len(served) == len(rows)
    check_rows(served, rows)
    assert not errors, errors
