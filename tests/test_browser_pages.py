"""The pages in Debian's chromium over a real server and database, with runs stored by hand (no training): list
actions, sweep grouping, the numbers each page shows checked against the API's JSON, no console errors (the `page`
fixture fails a test on any), and no sideways scroll on a phone."""
from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import plotly
import pytest

from fitboard.app.core.settings import Settings
from tests.browser import table_rows
from tests.helpers import finish_by_hand, tiny_recipe
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_api import stored_run

ROOT = Path(__file__).resolve().parent.parent
# Final accuracies of the shared sweep's runs, in the order the API queued them (base seeds 0-2, then the variant's).
ACCURACIES = [0.7125, 0.7450, 0.7010, 0.8020, 0.7795, 0.8340]
SPEED = {"mode": "default", "precision": "fp32", "num_workers": 0,
         "stages": [{"stage": 0, "images_per_second": 1234.56, "data_wait": 0.125, "peak_memory_mb": None, "steps": 8},
                    {"stage": 1, "images_per_second": 987.65, "data_wait": 0.25, "peak_memory_mb": None, "steps": 8}]}


@pytest.fixture
def site(tmp_path, sqlite_url, data_root):
    """(base URL, app) of a live server on this test's database."""
    with live_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)) as served:
        yield served


def get_json(base: str, path: str) -> dict:
    return json.load(urllib.request.urlopen(f"{base}{path}", timeout=30))


def post_json(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=30))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, sqlite_template, data_root):
    """One live server, shared by the read-only tests below, over a sweep (base and label smoothing, 3 seeds each)
    whose 6 runs were finished by hand: 4 epochs over 2 stages, an LR-finder curve, TTA, a confusion matrix, speed."""
    home = tmp_path_factory.mktemp("finished")
    shutil.copyfile(sqlite_template, home / "fitboard.db")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'fitboard.db'}", data_root=data_root)
    with live_app(settings) as (base, app):
        body = {"base": tiny_recipe(name="phone", tta={"n": 2, "use_max": False}),
                "vary": {"label_smoothing": [0.1]}, "seeds": [0, 1, 2]}
        sweep = post_json(base, "/api/v1/sweeps", body)
        runs = [r["id"] for r in sweep["queued"]]
        for run_id, acc in zip(runs, ACCURACIES, strict=True):
            finish_by_hand(app.state.engine, run_id, acc, tta=acc + 0.0137, epochs=4, home=home, lr_find=True,
                           speed=SPEED)
        yield SimpleNamespace(base=base, sweep=sweep["id"], runs=runs)


def shown(text: str, value: float | None, scale: float = 1.0) -> bool:
    """Whether a number on the page is value (times scale) to the precision it is shown with: '71.25%' for 0.7125
    at scale 100, '+3.17 pts' for 0.0317; a missing value must show as a dash."""
    if value is None:
        return text.strip() in ("–", "-", "")
    match = re.search(r"[-+−]?\d+(?:\.(\d+))?", text)
    if not match:
        return False
    number = float(match.group(0).replace("−", "-"))
    return abs(number - value * scale) <= 0.5 * 10 ** -len(match.group(1) or "") + 1e-9


def numbers(text: str) -> list[str]:
    """The numbers in a cell, as shown."""
    return re.findall(r"[-+−]?\d+(?:\.\d+)?", text)


def run_id_of(cell: str) -> int:
    return int(re.search(r"#(\d+)", cell).group(1))


def test_archive_and_delete_from_the_list(site, page):
    base, app = site
    keep, old, gone = (stored_run(app.state.engine, "succeeded", name=n) for n in ("keep-me", "old-one", "gone-one"))
    page.goto(f"{base}/runs")
    page.check(f'input[name="ids"][value="{old}"]')
    page.click("#bulk-actions button[value=archive]")
    page.wait_for_selector(".notice >> text=Archived run")
    names = page.locator("table.runs tbody td:nth-child(2) a:first-child").all_inner_texts()
    assert "old-one" not in names and "keep-me" in names
    page.check("input[name=archived]")  # one click to show archived runs
    page.click(".filters button")
    page.wait_for_selector("text=old-one")
    assert page.locator(f"tr:has(input[value='{old}']) .badge-archived").count() == 1
    page.check(f'input[name="ids"][value="{gone}"]')
    page.click("#bulk-actions button[value=delete]")
    page.wait_for_selector(f".notice >> text=Deleted run {gone}")
    names = page.locator("table.runs tbody td:nth-child(2) a:first-child").all_inner_texts()
    assert "gone-one" not in names and "old-one" in names and "keep-me" in names
    page.goto(f"{base}/runs/{keep}")
    page.click("#run-notes summary")
    page.fill("#run-notes input[name=tags]", "best, digits")
    page.fill("#run-notes textarea", "the one to beat")
    page.click("#run-notes button")
    page.wait_for_selector(".notice >> text=Saved.")
    page.click("#run-notes summary a.tag >> text=best")
    page.wait_for_url(f"{base}/runs?tag=best")
    assert page.locator("table.runs tbody tr").count() == 1


def test_sweep_runs_are_grouped_under_their_sweep_long_names_ellipsised(site, page):
    import json
    import urllib.request

    from tests.helpers import tiny_recipe

    base, app = site
    body = {"base": tiny_recipe(name="grouped"), "vary": {"label_smoothing": [0.1]}, "seeds": [0, 1, 2]}
    request = urllib.request.Request(f"{base}/api/v1/sweeps", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    sweep = json.load(urllib.request.urlopen(request, timeout=30))
    long_name = "a-run-with-a-very-long-name-" + "that-keeps-going-" * 8
    lone = stored_run(app.state.engine, "succeeded", name=long_name)
    page.goto(f"{base}/runs")
    group = page.locator(f"#sweep-group-{sweep['id']}")
    assert group.locator("tr.sweep-head").is_visible() and "grouped" in group.locator("tr.sweep-head").inner_text()
    members = group.locator("tr.member")
    assert members.count() == 6 and not members.first.is_visible()  # folded under the sweep
    group.locator("[data-toggle-group]").click()
    assert members.first.is_visible() and members.count() == 6
    group.locator("[data-pick-group]").check()  # the sweep's box ticks its runs
    assert page.locator("#compare-button").inner_text() == "Compare selected (6)"
    name = page.locator(f"tr:has(input[value='{lone}']) a.run-name")
    assert name.get_attribute("title") == long_name
    assert name.evaluate("el => el.scrollWidth > el.clientWidth && el.getBoundingClientRect().height < 30")
    assert page.locator("th a.sort.active .sort-ind").inner_text() == "▼"  # newest first
    assert page.locator("th a.sort:not(.active) .sort-ind").first.inner_text() == "⇅"


def test_a_preset_with_tta_leaves_its_fields_editable(site, page):
    base, _ = site
    page.goto(f"{base}/runs/new")
    page.select_option("#dataset", "digits")
    page.click('button[data-preset="0"]')  # the baseline: TTA off
    assert page.locator('[name="tta_n"]').is_disabled()
    page.click('button[data-preset="1"]')  # normalize + progressive resizing: TTA on
    assert page.locator("#tta").is_checked() and page.locator('[name="tta_n"]').is_enabled()
    page.fill('[name="tta_n"]', "6")
    assert page.locator('[name="tta_use_max"]').is_enabled()


def test_runs_list_shows_the_accuracies_the_api_gives(finished, page):
    items = get_json(finished.base, "/api/v1/runs?limit=100")["items"]
    page.goto(f"{finished.base}/runs")
    rows = {run_id_of(r["Name"]): r for r in table_rows(page.locator("table.runs")) if "#" in r["Name"]}
    assert sorted(rows) == sorted(finished.runs) == sorted(r["id"] for r in items)
    for item in items:
        row = rows[item["id"]]
        assert item["best_accuracy"] is not None and shown(row["Accuracy"], item["best_accuracy"], 100), (row, item)
        assert shown(row["TTA accuracy"], item["tta_accuracy"], 100), (row, item)


def test_run_page_shows_the_apis_epochs_results_and_speed(finished, page):
    run_id = finished.runs[1]
    run = get_json(finished.base, f"/api/v1/runs/{run_id}")
    epochs = get_json(finished.base, f"/api/v1/runs/{run_id}/epochs")
    page.goto(f"{finished.base}/runs/{run_id}")
    rows = table_rows(page.locator("#epoch-table"))
    assert len(rows) == len(epochs) == 4
    for k, (row, e) in enumerate(zip(rows, epochs, strict=True)):  # cell by cell, under its header
        assert numbers(row["Epoch"])[0] == str(k + 1)
        assert shown(row["train_loss"], e["train_loss"]) and shown(row["valid_loss"], e["valid_loss"]), (row, e)
        assert shown(row["accuracy"], e["metrics"]["accuracy"]), (row, e)
        assert shown(row["error_rate"], e["metrics"]["error_rate"]), (row, e)
        assert shown(row["time"], e["seconds"]), (row, e)
    result = run["result"]
    validation, tta = (page.locator("table.metrics tbody tr").nth(i).locator("td").all_text_contents() for i in (0, 1))
    for cell, value in zip(validation, (result["metrics"]["valid_loss"], result["metrics"]["accuracy"],
                                        result["metrics"]["error_rate"]), strict=True):
        assert shown(cell, value), (validation, result["metrics"])
    assert shown(tta[1], result["tta"]["accuracy"]) and shown(tta[2], result["tta"]["error_rate"]), (tta, result)
    speed = table_rows(page.locator("#speed table.speed-stages"))
    assert len(speed) == len(result["speed"]["stages"]) == 2
    for row, stage in zip(speed, result["speed"]["stages"], strict=True):
        assert shown(row["Images/s"], stage["images_per_second"]), (row, stage)
        assert shown(row["Data wait"], stage["data_wait"], 100) and row["Steps"] == str(stage["steps"]), (row, stage)


def test_compare_table_is_the_apis_compare(finished, page):
    ids = finished.runs[:3]
    report = get_json(finished.base, "/api/v1/compare?ids=" + ",".join(map(str, ids)))
    page.goto(f"{finished.base}/compare?ids=" + ",".join(map(str, ids)))
    rows = {run_id_of(r["Run"]): r for r in table_rows(page.locator("table.compare-table"))}
    assert sorted(rows) == sorted(r["id"] for r in report["runs"]) == sorted(ids)
    for r in report["runs"]:
        row = rows[r["id"]]
        for header, key, scale in (("Accuracy", "accuracy", 100), ("TTA accuracy", "tta_accuracy", 100),
                                   ("Images/s", "images_per_second", 1)):
            value, *delta = numbers(row[header])
            assert shown(value, r[key], scale), (header, row, r)
            if r["id"] == report["baseline"]:
                assert row[header].endswith("baseline")
            else:  # the difference to the baseline, under the value
                assert delta and shown(delta[0], r["diff"][key], scale), (header, row, r["diff"])


def test_sweep_table_is_the_apis_report(finished, page):
    report = get_json(finished.base, f"/api/v1/sweeps/{finished.sweep}")
    page.goto(f"{finished.base}/sweeps/{finished.sweep}")
    rows = table_rows(page.locator("table.sweep-table"))
    assert len(rows) == len(report["variants"]) == 2
    for row, v in zip(rows, report["variants"], strict=True):
        mean, std = numbers(row["Accuracy"])[:2]
        assert shown(mean, v["accuracy"]["mean"], 100) and shown(std, v["accuracy"]["std"], 100), (row, v)
        assert shown(row["TTA accuracy"], v["tta_accuracy"]["mean"], 100), (row, v)
        if v is report["variants"][0]:
            assert v["label"] == "base" and numbers(row["Δ accuracy vs base"]) == []  # no difference to itself
            continue
        diff = v["diff_accuracy"]
        assert diff["n"] == 3 and diff["low"] is not None
        shown_diff = numbers(row["Δ accuracy vs base"])
        expected = (diff["mean"], diff["low"], diff["high"])
        assert all(any(shown(n, x, 100) for n in shown_diff) for x in expected), (shown_diff, diff)


def test_chart_toolbar_draws_its_icons_from_plotlys_own_rules(finished, page):
    """Plotly's layout rules reach the page through the CSSOM (no inline <style>, which the CSP refuses): the
    toolbar's buttons are transparent, borderless and show their icons."""
    page.goto(f"{finished.base}/runs/{finished.runs[0]}")
    chart = page.locator("#chart.js-plotly-plot")
    chart.wait_for()
    chart.hover()
    button = page.locator("#chart .modebar-btn").first
    button.wait_for()
    look = button.evaluate("""(b) => { const s = getComputedStyle(b), icon = b.querySelector('svg path');
      const box = icon.getBoundingClientRect();
      return {border: s.borderTopWidth, background: s.backgroundColor, position: s.position,
              icon: box.width > 4 && box.height > 4, fill: getComputedStyle(icon).fill}; }""")
    assert look == {"border": "0px", "background": "rgba(0, 0, 0, 0)", "position": "relative", "icon": True,
                    "fill": look["fill"]} and look["fill"] not in ("none", "rgba(0, 0, 0, 0)"), look
    rules = page.evaluate("[...document.getElementById('plotly.js-style-global').sheet.cssRules]"
                          ".map((r) => r.selectorText)")
    assert ".js-plotly-plot .plotly .modebar-btn" in rules and ".js-plotly-plot .plotly .main-svg" in rules


def test_base_template_carries_the_style_markers_the_installed_plotly_looks_for():
    """Plotly injects two inline <style> elements unless it finds elements with these ids (its global rules, the
    map CSS): if an upgrade renames them, say so here rather than as a CSP error on every chart page."""
    source = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    markers = set(re.findall(r'getElementById\("([0-9a-f]{64})"\)', source))
    assert '"plotly.js-style-"+e' in source and len(markers) == 1
    base = (ROOT / "templates" / "base.html").read_text()
    assert 'id="plotly.js-style-global"' in base and f'id="{markers.pop()}"' in base
