"""Debian's chromium under Playwright for the browser tests, a watch on each page's console (errors, uncaught
exceptions, Content-Security-Policy violations), and what the tests read off the pages."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}  # an iPhone 12-15's CSS viewport
# Chromium logs a CSP refusal as a console error already; this listener names the directive and the refused sample
# too, and still reports a violation should the console call it something else (a report-only policy's warning).
CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (e) => console.warn(
  "CSP violation:", e.effectiveDirective, JSON.stringify(e.sample), e.sourceFile + ":" + e.lineNumber));"""


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread while it is open,
# and a later test's asyncio.run() would refuse to start beside it.
@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright; skipped (failed under CI=true) where it is not installed."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing and CI=true requires the browser tests (scripts/ensure_chromium.sh)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium, or run scripts/ensure_chromium.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """Every console error, uncaught exception and CSP violation of one page, across its navigations."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.add_init_script(CSP_LISTENER)
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _message(self, msg) -> None:
        if msg.type == "error" or msg.text.startswith("CSP violation:"):
            where = msg.location.get("url", "") if msg.location else ""
            self.errors.append(f"{msg.type}: {msg.text} ({where})")


def watched_page(browser, **options):
    """A new page with a Console on it: (page, console)."""
    page = browser.new_page(**options)
    page.set_default_timeout(90_000)  # not Playwright's 30 s: the suite shares 2 cores, and a slow page is no bug here
    return page, Console(page)


@pytest.fixture
def page(browser):
    """A page whose console must stay clean: any error, uncaught exception or CSP violation fails the test."""
    page, console = watched_page(browser)
    page.on("dialog", lambda dialog: dialog.accept())  # Delete and Cancel ask for confirmation
    yield page
    page.close()
    assert not console.errors, console.errors


def page_width(page, settle: float = 5.0) -> int:
    """How wide the document is: more than the viewport means the page scrolls sideways. After a resize, charts
    re-lay themselves out on the window's resize event, so the width is read once it settles (at most settle s).
    Polled from here: page.wait_for_function would compile its predicate inside the page, which the CSP refuses."""
    limit, deadline = page.viewport_size["width"], time.monotonic() + settle
    width = page.evaluate("document.documentElement.scrollWidth")
    while width > limit and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        width = page.evaluate("document.documentElement.scrollWidth")
    if width > limit:
        print("wider than the viewport:", page.evaluate(WIDE_JS, limit))
    return width


# The innermost elements reaching past the viewport's right edge (what makes a page scroll sideways).
WIDE_JS = """(limit) => [...document.querySelectorAll("body *")]
  .filter((el) => el.getBoundingClientRect().right > limit + 1 && ![...el.children].some(
    (c) => c.getBoundingClientRect().right > limit + 1))
  .slice(0, 8).map((el) => {
    const path = [];
    for (let n = el; n && n !== document.body; n = n.parentElement) {
      const cls = typeof n.className === "string" ? n.className.split(" ")[0] : "";
      if (n.id || cls) path.unshift(n.id ? `#${n.id}` : `.${cls}`);
    }
    const right = Math.round(el.getBoundingClientRect().right);
    return `${path.slice(-4).join(" > ")} ${el.tagName.toLowerCase()}: right ${right}`;
  })"""


TABLE_JS = """(table) => {
  const name = (th) => {
    const c = th.cloneNode(true);
    c.querySelectorAll(".sort-ind, .sr-only, br ~ *").forEach((n) => n.remove());
    return c.textContent.trim();
  };
  const heads = [...table.querySelectorAll("thead th")].map(name);
  const text = (td) => td.textContent.replace(/\\s+/g, " ").trim();
  return [...table.querySelectorAll("tbody tr")].filter((tr) => tr.querySelectorAll("td").length === heads.length)
    .map((tr) => Object.fromEntries([...tr.children].map((td, i) => [heads[i], text(td)])));
}"""


def table_rows(locator) -> list[dict[str, str]]:
    """A table's body rows as {header: cell text} (rows with one cell per header; hidden rows too)."""
    return locator.evaluate(TABLE_JS)
