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
