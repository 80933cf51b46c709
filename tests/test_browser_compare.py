"""The compare page of 100 runs in Debian's chromium, the runs written straight into the store (no training): one
trace per run named after it, hover and legend name the run, a legend click hides that run on every chart, the final
table sorts by a column in the order of the API's values, and no console error (the `page` fixture)."""
from __future__ import annotations

import json
import random
import time
import urllib.request

import pytest
from sqlalchemy import insert

from fitboard.app.core.settings import Settings
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import EpochRow, LRFind, Run, utcnow
from fitboard.app.web.docs import plotly_js, webgl_charts
from tests.browser import table_rows
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403

N, EPOCHS, TOP = 100, 10, 3  # runs, epochs each (two stages), the index of the run that ends highest
ODD_NAME = "a<b>c</b> & d"  # shown as typed, never as markup


def store_runs(engine) -> list[int]:
    """N succeeded runs with distinct final accuracies (run TOP clearly highest), EPOCHS epoch rows each, every 7th
    without a TTA accuracy, and LR-finder curves on the first five."""
    rng = random.Random(5)
    finals = rng.sample(range(400, 950), N)
    finals[TOP] = 990
    with session_scope(engine) as s:
        runs = [Run(name=ODD_NAME if k == 1 else f"run-{k}", dataset="digits", spec={"name": f"run-{k}", "seed": k},
                    status="succeeded", best_accuracy=finals[k] / 1000,
                    tta_accuracy=None if k % 7 == 0 else finals[k] / 1000 + 0.001,
                    result={"images_per_second": 50.0 + k, "best": {"stage": 1, "epoch": k % 5, "value": 0.5}})
                for k in range(N)]
        s.add_all(runs)
        s.flush()
        now = utcnow()
        s.execute(insert(EpochRow), [
            {"run_id": r.id, "stage": e // 5, "epoch": e % 5, "train_loss": 1.0 - e / 20, "valid_loss": 1.1 - e / 20,
             "metrics": {"accuracy": 0.3 + (finals[k] / 1000 - 0.3) * (e + 1) / EPOCHS,
                         "error_rate": 0.7 - (finals[k] / 1000 - 0.3) * (e + 1) / EPOCHS},
             "seconds": 2.0, "created_at": now} for k, r in enumerate(runs) for e in range(EPOCHS)])
        s.execute(insert(LRFind), [
            {"run_id": r.id, "stage": 0, "suggestion": 1e-3, "lrs": [10 ** (-6 + i / 4) for i in range(20)],
             "losses": [2.0 - i / 40 for i in range(20)], "created_at": now} for r in runs[:5]])
        return [r.id for r in runs]


def wait_drawn(page, timeout: float = 90) -> None:
    """Until compare.js has drawn every chart (polled: the CSP refuses wait_for_function's string eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate("document.documentElement.dataset.chartsDrawnMs || null"):
        assert time.monotonic() < deadline, "the compare charts were not drawn"
        page.wait_for_timeout(100)


def visible(page, chart: str) -> dict[str, object]:
    """legendgroup (run id) -> the visible attribute of its traces on a chart (one value per run, all agreeing)."""
    return page.evaluate("""(id) => {
      const out = {};
      document.getElementById(id).data.forEach((t) => {
        const v = t.visible === undefined ? true : t.visible;
        if (t.legendgroup in out && out[t.legendgroup] !== v) out[t.legendgroup] = "mixed";
        else out[t.legendgroup] = v;
      });
      return out; }""", chart)


@pytest.fixture
def hundred(tmp_path, sqlite_url, data_root):
    """(base URL, run ids) of a live server over N stored runs."""
    with live_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)) as (base, app):
        yield base, store_runs(app.state.engine)


def test_compare_of_100_runs_names_toggles_and_sorts_them(hundred, page):
    base, ids = hundred
    joined = ",".join(map(str, ids))
    report = json.load(urllib.request.urlopen(f"{base}/api/v1/compare?ids={joined}", timeout=60))
    names = {r["id"]: f"#{r['id']} {r['name']}" for r in report["runs"]}
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{base}/compare?ids={joined}")
    wait_drawn(page)

    # WebGL works in this headless chromium (software, SwiftShader); the installed plotly.min.js is no strict build,
    # so the page draws SVG rather than let Plotly put "WebGL is not supported" where the charts belong.
    assert page.evaluate("!!document.createElement('canvas').getContext('webgl')")
    assert not webgl_charts(Settings()) and b"(strict" not in plotly_js().read_bytes()[:300]
    assert page.locator(".no-webgl").count() == 0
    traces = page.evaluate("""() => document.getElementById("chart-accuracy").data.map(
        (t) => ({type: t.type, name: t.name, group: t.legendgroup, n: t.x.length, dash: t.line.dash}))""")
    assert len(traces) == N and {t["type"] for t in traces} == {"scatter"} and {t["n"] for t in traces} == {EPOCHS}
    assert [int(t["group"]) for t in traces] == ids
    assert [t["dash"] for t in traces[:21:10]] == ["solid", "dot", "dash"]  # the palette comes round, dotted, dashed
    legend = page.locator("#chart-accuracy .legend .traces .legendtext").all_text_contents()
    assert legend == [names[i] for i in ids] and legend[1] == f"#{ids[1]} {ODD_NAME}"

    # Hover the run that ends highest at its 9th epoch (inside the plot, 17 px above any other run's): its label names
    # that run.
    top = ids[TOP]
    page.locator("#chart-accuracy").scroll_into_view_if_needed()  # below the 100-row table: the mouse must reach it
    x, y = page.evaluate("""(k) => {
      const gd = document.getElementById("chart-accuracy"), t = gd.data[k], L = gd._fullLayout;
      const box = gd.getBoundingClientRect(), e = t.x.length - 2;
      return [box.left + L._size.l + L.xaxis.d2p(t.x[e]), box.top + L._size.t + L.yaxis.d2p(t.y[e])]; }""", TOP)
    page.mouse.move(x - 8, y + 8)  # onto the plot first (Plotly hovers on mousemove within its drag layer)
    page.mouse.move(x, y, steps=3)
    page.wait_for_selector("#chart-accuracy .hoverlayer .hovertext", timeout=15_000)
    hover = page.locator("#chart-accuracy .hoverlayer .hovertext").text_content()
    assert hover.startswith(names[top]) and "epoch 9" in hover and "accuracy 0.9210" in hover, hover

    # A legend click hides the run on every chart (its LR-finder curve and valley too), and only that run.
    page.mouse.move(0, 0)
    page.locator("#chart-accuracy .legend .traces").nth(TOP).locator(".legendtoggle").click()
    deadline = time.monotonic() + 10
    while visible(page, "chart-valid_loss")[str(top)] is True and time.monotonic() < deadline:
        page.wait_for_timeout(100)  # Plotly waits out its double-click delay before a single click counts
    for chart in ("chart-train_loss", "chart-valid_loss", "chart-accuracy", "chart-error_rate", "chart-lr"):
        shown = visible(page, chart)
        assert shown[str(top)] == "legendonly", (chart, shown[str(top)])
        assert all(v is True for g, v in shown.items() if g != str(top)), chart
    assert page.locator("#chart-error_rate .legend, #chart-lr .legend").count() == 0  # one legend for 100 runs
    page.locator("#chart-accuracy .legend .traces").nth(TOP).locator(".legendtoggle").click()  # and back
    deadline = time.monotonic() + 10
    while visible(page, "chart-accuracy")[str(top)] != True and time.monotonic() < deadline:  # noqa: E712
        page.wait_for_timeout(100)
    assert visible(page, "chart-accuracy")[str(top)] is True and visible(page, "chart-lr")[str(top)] is True

    # The final table sorts by a column: numbers as numbers, in the API's order, a missing value last either way.
    table = page.locator("table.compare-table")
    run_ids = lambda: [int(r["Run"].rsplit("#", 1)[1]) for r in table_rows(table)]  # noqa: E731
    assert run_ids() == ids  # as given until a header is clicked
    by_acc = sorted(report["runs"], key=lambda r: -r["accuracy"])
    table.locator("th", has_text="Accuracy").first.locator("button.sort").click()
    assert table.locator("th[aria-sort]").count() == 1
    assert table.locator("th", has_text="Accuracy").first.get_attribute("aria-sort") == "descending"
    assert run_ids() == [r["id"] for r in by_acc] and run_ids()[0] == top
    table.locator("th", has_text="Accuracy").first.locator("button.sort").click()
    assert table.locator("th", has_text="Accuracy").first.get_attribute("aria-sort") == "ascending"
    assert run_ids() == [r["id"] for r in reversed(by_acc)]
    tta = table.locator("th", has_text="TTA accuracy")
    tta.locator("button.sort").click()
    with_tta = sorted((r for r in report["runs"] if r["tta_accuracy"] is not None), key=lambda r: -r["tta_accuracy"])
    without = [r["id"] for r in report["runs"] if r["tta_accuracy"] is None]
    assert tta.get_attribute("aria-sort") == "descending" and len(without) == 15
    order = run_ids()
    assert order[:len(with_tta)] == [r["id"] for r in with_tta] and sorted(order[len(with_tta):]) == without
    assert table.locator("th", has_text="Accuracy").first.get_attribute("aria-sort") is None  # one sorted column

