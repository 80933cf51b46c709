"""The pages in Debian's chromium over a real server and database, with runs stored by hand (no training): list
actions, sweep grouping, error images."""
from __future__ import annotations

import pytest

from app.core.settings import Settings
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_api import stored_run
from tests.test_e2e_browser import browser, wait_js  # noqa: F401  (the module-scoped chromium fixture)


@pytest.fixture
def site(tmp_path, sqlite_url, data_root):
    """(base URL, app) of a live server on this test's database."""
    with live_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)) as served:
        yield served


@pytest.fixture
def page(browser):  # noqa: F811
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # Delete asks for confirmation
    yield page
    page.close()
    assert not errors, errors


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
