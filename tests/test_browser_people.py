"""A new team in Debian's chromium: three people, two projects; each sees only their projects, every run says who
launched it, the site admin switches projects and reads the audit log."""
from __future__ import annotations

import json
import urllib.request

import pytest

from fitboard.app.core.settings import Settings
from fitboard.app.services import people
from fitboard.app.store.db import make_engine, session_scope
from tests.browser import watched_page
from tests.helpers import tiny_recipe
from tests.live import live_app
from tests.people_world import PASSWORD
from tests.store_fixtures import *  # noqa: F401,F403


@pytest.fixture
def team_site(tmp_path, sqlite_url, data_root):
    """ada (site admin), mia (member of alpha), bo (member of beta) and their tokens, on a live server."""
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        for project in ("alpha", "beta"):
            people.add_project(s, project)
        for name in ("ada", "mia", "bo"):
            people.add_person(s, name, PASSWORD, site_admin=name == "ada")
        people.grant(s, "alpha", "mia", "member")
        people.grant(s, "beta", "bo", "member")
        tokens = {n: people.create_token(s, people.person(s, n))[0] for n in ("mia", "bo")}
    engine.dispose()
    with live_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)) as (base, app):
        yield base, tokens


def launch(base: str, token: str, name: str, project: str) -> dict:
    """A run launched over the API with a person's token."""
    req = urllib.request.Request(f"{base}/api/v1/runs?project={project}", data=json.dumps(tiny_recipe(name=name))
                                 .encode(), headers={"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(req, timeout=30))


def logged_in(browser, base: str, name: str):
    """A page (with its own cookies) logged in as name through the login form."""
    page, console = watched_page(browser)
    page.goto(f"{base}/runs")
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{base}/runs")
    return page, console


def members(page) -> dict[str, str]:
    """The members page's list: person -> the role its select shows."""
    return {row.get_attribute("data-person"): row.locator("select[name=role]").input_value()
            for row in page.locator("tr.member-row").all()}


def test_three_people_two_projects(browser, team_site):
    base, tokens = team_site
    mia_run = launch(base, tokens["mia"], "mia-resnet", "alpha")
    bo_run = launch(base, tokens["bo"], "bo-mixup", "beta")
    assert (mia_run["project"], mia_run["launched_by"]) == ("alpha", "mia")

    mia, mia_console = logged_in(browser, base, "mia")
    assert "mia-resnet" in mia.inner_text("table.runs") and "bo-mixup" not in mia.content()
    assert "by mia" in mia.inner_text("table.runs")
    assert mia.inner_text("header .who") == "mia"
    missing = mia.goto(f"{base}/runs/{bo_run['id']}")
    assert missing.status == 404  # bo's run does not exist, as far as mia can tell
    mia.goto(f"{base}/runs/{mia_run['id']}")
    assert mia.inner_text(".launcher") == "mia"

    bo, bo_console = logged_in(browser, base, "bo")
    assert "bo-mixup" in bo.inner_text("table.runs") and "mia-resnet" not in bo.content()

    ada, ada_console = logged_in(browser, base, "ada")
    assert "mia-resnet" not in ada.content()  # her default project is `default`; the switcher shows the others
    ada.select_option(".project-switcher select", "beta")
    ada.click(".project-switcher button")
    assert "bo-mixup" in ada.inner_text("table.runs")
    ada.click("text=Runs")  # the choice holds while she browses
    assert "bo-mixup" in ada.inner_text("table.runs") and "mia-resnet" not in ada.content()
    ada.goto(f"{base}/audit")
    rows = ada.locator("tr.audit-row").all_inner_texts()
    assert any("mia" in r and "launch" in r and f"run {mia_run['id']}" in r and "alpha" in r for r in rows)
    assert any("bo" in r and "launch" in r and f"run {bo_run['id']}" in r and "beta" in r for r in rows)
    mia.goto(f"{base}/audit")
    assert "only site admins" in mia.content()
    # grants in the browser: the admin opens alpha's members, adds bo as a viewer, makes him a member, removes him
    ada.goto(f"{base}/projects/alpha/members")
    assert ada.locator("tr.member-row .member-name").all_inner_texts() == ["mia"]
    ada.fill("#add-member input[name=person]", "bo")
    ada.select_option("#add-member select[name=role]", "viewer")
    ada.click("#add-member button.primary")
    ada.wait_for_selector("tr.member-row[data-person=bo]")
    assert members(ada) == {"bo": "viewer", "mia": "member"}
    assert ada.inner_text("#notice") == "bo is viewer of alpha."
    bo.goto(f"{base}/runs?project=alpha")  # his very next request sees alpha
    assert "mia-resnet" in bo.inner_text("table.runs")
    ada.select_option("tr.member-row[data-person=bo] select[name=role]", "member")
    ada.click("tr.member-row[data-person=bo] button:has-text('Change')")
    ada.wait_for_selector("#notice:has-text('bo is member of alpha.')")
    assert members(ada) == {"bo": "member", "mia": "member"}
    ada.click("tr.member-row[data-person=bo] button:has-text('Remove')")
    ada.wait_for_selector("#notice:has-text('bo removed from alpha.')")
    assert members(ada) == {"mia": "member"}
    assert bo.goto(f"{base}/runs/{mia_run['id']}").status == 404
    ada.goto(f"{base}/audit")
    grants = [r for r in ada.locator("tr.audit-row").all_inner_texts() if "grant" in r]
    assert [g for g in ("bo as viewer in alpha", "bo as member in alpha", "bo as nobody in alpha")
            if any(g in r for r in grants)] == ["bo as viewer in alpha", "bo as member in alpha",
                                                "bo as nobody in alpha"]
    assert mia.goto(f"{base}/projects/alpha/members").status == 403  # a member is no admin of it
    for page, console in ((mia, mia_console), (bo, bo_console), (ada, ada_console)):
        page.close()
        assert not [e for e in console.errors if "403" not in e and "404" not in e], console.errors
