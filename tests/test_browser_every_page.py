"""Every HTML page the app serves, found from its routes (not a list): no console error, uncaught exception or CSP
violation on a desktop, and no sideways scroll on a phone. A page route whose path parameters this test cannot fill
fails it, so a new page is checked the day it appears."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from fastapi import routing

from tests.browser import PHONE, page_width, watched_page
from tests.site_objects import TIMEOUT, everything, get_json  # noqa: F401  (the module's live server)
from tests.store_fixtures import *  # noqa: F401,F403

NOT_PAGES = ("/api/", "/static/", "/vendor/")  # the API, and files: not pages a person opens
SETTLE_MS = 1200  # charts draw after DOMContentLoaded (deferred scripts), some after a fetch


def get_routes(app) -> list[str]:
    """The path of every GET route of the app outside the API and the static files, as declared."""
    contexts = routing.iter_route_contexts(app.routes) if hasattr(routing, "iter_route_contexts") else app.routes
    paths = {c.path for c in contexts if "GET" in (getattr(c, "methods", None) or ()) and c.path}
    return sorted(p for p in paths if not p.startswith(NOT_PAGES))


def fillers(site) -> dict[str, list]:
    """The real objects each path parameter is filled with: several runs of different kinds for {run_id}."""
    ids = site.ids
    search = get_json(site.base, f"/api/v1/searches/{ids.search}")
    return {"run_id": [ids.runs[0], ids.tracked, ids.queued, search["trials"][0]["run_id"]],
            "sweep_id": [ids.sweep, search["verify"]["sweep_id"]], "search_id": [ids.search],
            "name": [ids.dataset], "k": [0], "project": ["default"]}


# Forms built on a run's recipe: its page offers them for the runs fitboard trained, not for a tracked one.
RECIPE_FORMS = ("/runs/{run_id}/ablate", "/runs/{run_id}/search")


def page_urls(site) -> tuple[list[str], list[str]]:
    """(URLs of every HTML page with its parameters filled, problems: routes this test cannot fill)."""
    fill, urls, problems = fillers(site), [], []
    for path in get_routes(site.app):
        params = re.findall(r"{(\w+)(?::\w+)?}", path)
        missing = [p for p in params if p not in fill]
        if missing:
            problems.append(f"{path}: no real object fills {missing}; add one to tests/site_objects.py and "
                            f"to fillers() in {__name__}")
            continue
        choices = [fill[p] for p in params]
        count = max((len(c) for c in choices), default=1)
        for i in range(count):
            values = {p: c[min(i, len(c) - 1)] for p, c in zip(params, choices, strict=True)}
            if path in RECIPE_FORMS and values.get("run_id") == site.ids.tracked:
                continue  # no such page: a tracked run has no recipe to vary (409, tests/test_tracked_api.py)
            url = re.sub(r"{(\w+)(?::\w+)?}", lambda m, v=values: str(v[m.group(1)]), path)
            if url not in urls:
                urls.append(url)
    html = [u for u in urls if _is_html(site.base + u, problems)]
    return html, problems


def _is_html(url: str, problems: list[str]) -> bool:
    """Whether the URL answers an HTML page; an answer of 500 or 404 for a real object is a problem."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.headers.get_content_type() == "text/html"
    except urllib.error.HTTPError as exc:
        problems.append(f"{url}: {exc.code}")
        return False


@pytest.fixture(scope="module")
def pages(everything):  # noqa: F811
    urls, problems = page_urls(everything)
    assert not problems, "\n".join(problems)
    return urls


def test_the_routes_give_every_page_a_person_opens(everything, pages):  # noqa: F811
    """The discovery itself: the pages of each kind are there, filled with real objects, and no file or API route."""
    ids = everything.ids
    for url in ("/runs", "/runs/new", f"/runs/{ids.runs[0]}", f"/runs/{ids.tracked}", f"/runs/{ids.queued}",
                f"/runs/{ids.runs[0]}/ablate", f"/runs/{ids.runs[0]}/search", f"/sweeps/{ids.sweep}",
                f"/searches/{ids.search}", "/searches", "/sweeps", "/datasets", f"/datasets/{ids.dataset}",
                "/workers", "/queue", "/compare"):
        assert url in pages, (url, pages)
    assert not [u for u in pages if u.endswith((".yaml", ".js", ".json")) or "/images/" in u], pages


def test_no_page_logs_a_console_error_or_csp_violation(everything, browser, pages):  # noqa: F811
    """Every page on a desktop: any console error, uncaught exception or refused inline script/style is listed."""
    found = {}
    page, console = watched_page(browser)
    for url in pages:
        page.goto(everything.base + url)
        page.wait_for_load_state("load")
        page.wait_for_timeout(SETTLE_MS)
        if console.errors:
            found[url], console.errors[:] = list(console.errors), []
    page.close()
    assert not found, found


MENU_INSIDE_BAR = """(() => { const bar = document.querySelector('.topbar');
  if (!bar) return true;
  const box = bar.getBoundingClientRect();
  return [...bar.querySelectorAll('a, button')].every((a) => {
    const r = a.getBoundingClientRect(); return r.right <= box.right && r.bottom <= box.bottom; }); })()"""
CARDS_STICKING_OUT = """[...document.querySelectorAll('.card')].filter((c) => c.scrollWidth > c.clientWidth)
  .map((c) => (c.querySelector('h2') || c).textContent.trim().slice(0, 30))"""


def test_no_page_scrolls_sideways_on_a_phone(everything, browser, pages):  # noqa: F811
    """Every page at 390 x 844 fits the screen: at most 390 px wide, the menu wraps inside its bar, wide tables
    scroll inside their card and charts shrink (the culprits are printed when a page is too wide)."""
    page, console = watched_page(browser, viewport=PHONE)
    wide = {}
    for url in pages:
        page.goto(everything.base + url)
        page.wait_for_load_state("load")
        page.wait_for_timeout(SETTLE_MS // 2)
        width, bar, cards = page_width(page), page.evaluate(MENU_INSIDE_BAR), page.evaluate(CARDS_STICKING_OUT)
        if width > PHONE["width"] or not bar or cards:
            wide[url] = {"width": width, "menu inside its bar": bar, "cards with content sticking out": cards}
    page.close()
    assert not wide and not console.errors, (wide, console.errors)
