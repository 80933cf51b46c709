"""End to end in a real browser: `fitboard up`, then Debian's chromium (driven by Playwright) launches,
watches and cancels runs on the digits demo data."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from fitboard.app.core.demo_data import write_digits
from tests.browser import PHONE, page_width, watched_page
from tests.conftest import TINY_IMAGES
from tests.served import serving

EPOCH_ROWS = "#epoch-rows tr:not(.stage-sep)"  # stage separator rows mark stage boundaries
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`fitboard up` with the tiny digits as its demo dataset (test_e2e_api checks that up writes the whole one)."""
    home = tmp_path_factory.mktemp("up-browser")
    write_digits(home / "datasets" / "digits", limit=TINY_IMAGES)
    with serving(home) as server:
        yield server


def api(served, path: str) -> dict:
    return json.load(urllib.request.urlopen(f"{served.url}{path}", timeout=10))


def wait_js(page, expression: str, timeout: float) -> None:
    """Until a JS expression is true. Not page.wait_for_function: its polling evaluates strings inside the page,
    which fitboard's Content-Security-Policy (script-src 'self', no eval) refuses, as it should."""
    deadline = time.monotonic() + timeout
    while not _true_now(page, expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {expression}")
        time.sleep(0.2)


def _true_now(page, expression: str) -> bool:
    """The expression's value now; false while the page is reloading itself (the sweep page does as runs finish)."""
    try:
        return page.evaluate(f"(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()")
    except PlaywrightError as exc:
        if "Execution context was destroyed" in str(exc) or "navigat" in str(exc):
            return False
        raise


def launch_from_form(page, served, name: str, preset: int, epochs: list[int]) -> int:
    """Fill the new-run form from a preset, edit the stage epochs, the first stage's LR finder steps (20, not the
    preset's 100: three quarters of the run's time on two shared cores) and the name, queue it; returns the run id."""
    page.goto(f"{served.url}/runs/new")
    page.select_option("#dataset", "digits")
    page.click(f'button[data-preset="{preset}"]')
    for i, n in enumerate(epochs):
        page.fill(f"#f-stages-{i}-epochs", str(n))
    page.fill("#f-stages-0-lr_find_iters", "20")
    page.fill('input[name="name"]', name)
    page.click("button.primary.big")
    page.wait_for_url(f"{served.url}/runs/*")
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_launch_watch_live_rows_and_cancel(browser, served):
    page, console = watched_page(browser)
    page.on("dialog", lambda dialog: dialog.accept())  # the Cancel button asks for confirmation

    run_id = launch_from_form(page, served, "e2e-progressive", preset=1, epochs=[1, 1])
    assert page.locator("h1").inner_text().startswith("e2e-progressive")
    assert page.locator("#notice").inner_text() == f"Run {run_id} queued."
    assert api(served, f"/api/v1/runs/{run_id}")["spec"]["stages"][0]["lr_find_iters"] == 20  # the edited field
    rows_while_running, progress_seen, banner_gone = 0, set(), False
    deadline = time.monotonic() + 420  # two shared CPU cores: a 20-step LR finder and two epochs, with room
    while time.monotonic() < deadline:
        status = api(served, f"/api/v1/runs/{run_id}")["status"]
        if status != "running" and status != "queued":
            break
        if status == "running":
            rows_while_running = max(rows_while_running, page.locator(EPOCH_ROWS).count())
            text, eta = page.locator("#progress-text").inner_text(), page.locator("#progress-eta").inner_text()
            if re.fullmatch(r"stage [12] of 2 · epoch 1 of 1 · batch \d+ of \d+", text) and "for the whole run" in eta:
                progress_seen.add(text.split(" · ")[0])
            banner_gone = banner_gone or page.locator("#notice").is_hidden()
        time.sleep(0.25)
    assert status == "succeeded", api(served, f"/api/v1/runs/{run_id}")
    assert rows_while_running >= 1, "the epoch table should grow live while the run trains"
    assert progress_seen, "the progress line says 'stage s of S · epoch e of E · batch b of B' with a whole-run ETA"
    assert banner_gone, "the 'Run N queued.' banner goes once the run starts"
    page.wait_for_selector("[data-status-badge].badge-succeeded", timeout=30_000)  # the page reloads when done
    assert page.locator(EPOCH_ROWS).count() == 2 and page.locator("#epoch-rows tr.stage-sep").count() == 2
    body = page.locator("main").inner_text()
    assert "accuracy" in body.lower() and "tta" in body.lower()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-page.png"), full_page=True)
    page.set_viewport_size(PHONE)  # a real run's page (speed, top losses, a 10-class confusion matrix) on a phone
    assert page_width(page) <= PHONE["width"], "the run page scrolls sideways on a phone"
    page.screenshot(path=str(ARTIFACTS / "run-page-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 720})
    # Top losses are thumbnails that load (lazily; scrolled into view here), and a confusion cell shows its images.
    first = page.locator("#top-losses img").first
    first.scroll_into_view_if_needed()
    wait_js(page, "document.querySelector('#top-losses img').naturalWidth > 0", timeout=15)
    assert page.locator("#top-losses figure").count() >= 1
    cell = page.locator("table.confusion a.cell-link").first
    n = int(cell.inner_text())
    cell.click()
    page.wait_for_selector("#cell-images")
    assert page.locator("#cell-images figure").count() == min(n, 100)
    wait_js(page, "document.querySelector('#cell-images img').naturalWidth > 0", timeout=15)

    second = launch_from_form(page, served, "e2e-cancel-me", preset=2, epochs=[3, 3, 5])
    page.wait_for_selector("[data-status-badge].badge-running", timeout=120_000)
    page.click("form[action$='/cancel'] button")
    page.wait_for_selector("[data-status-badge].badge-cancelled", timeout=60_000)
    assert api(served, f"/api/v1/runs/{second}")["status"] == "cancelled"
    assert not console.errors, console.errors


def post(served, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{served.url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=30))


FAST_BASE = {"name": "e2e-sweep", "dataset": "digits", "arch": "squeezenet1_1", "pretrained": False,
             "normalize": "dataset", "tta": {"n": 1, "use_max": False},
             "stages": [{"epochs": 1, "size": 32, "presize": 40, "bs": 64, "lr": 3e-3}]}


def test_sweep_two_variants_three_seeds_through_api_and_pages(browser, served):
    sweep = post(served, "/api/v1/sweeps", {"base": FAST_BASE, "vary": {"label_smoothing": [0.1]},
                                             "seeds": [0, 1, 2], "mode": "one_at_a_time"})
    assert [v["label"] for v in sweep["variants"]] == ["base", "label_smoothing=0.1"] and len(sweep["queued"]) == 6
    page, console = watched_page(browser)
    page.goto(f"{served.url}/sweeps/{sweep['id']}")
    deadline = time.monotonic() + 450  # 6 tiny runs (3 seeds: the fewest a sweep takes) on a shared CPU
    while api(served, f"/api/v1/sweeps/{sweep['id']}")["runs_finished"] < 6 and time.monotonic() < deadline:
        time.sleep(1)
    report = api(served, f"/api/v1/sweeps/{sweep['id']}")
    assert report["runs_finished"] == 6
    assert all(r["status"] == "succeeded" for v in report["variants"] for r in v["runs"])
    variant = report["variants"][1]
    assert variant["diff_accuracy"]["n"] == 3 and variant["diff_accuracy"]["low"] is not None
    wait_js(page, "document.querySelector('#sweep-progress').textContent.startsWith('6 of 6')",
            timeout=30)  # the page refreshes itself while runs finish
    verdicts = page.locator("ul.verdicts li").all_inner_texts()
    assert verdicts == [variant["verdict"]] and "over 3 seeds" in verdicts[0]
    assert page.locator("#sweep-chart .trace").count() >= 2  # mean curves (and their bands) are drawn
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sweep-page.png"), full_page=True)

    page.click("text=Compare all 6 runs")
    page.wait_for_url(f"{served.url}/compare?*")
    wait_js(page, "document.getElementById('chart-accuracy').data !== undefined", timeout=30)
    traces = page.evaluate("document.getElementById('chart-accuracy').data"
                           ".filter(t => t.type !== 'line' && t.name).length")
    assert traces == 6  # one trace per run
    page.screenshot(path=str(ARTIFACTS / "compare-page.png"), full_page=True)
    assert not console.errors, console.errors


def test_ablate_action_from_a_run_creates_a_sweep(browser, served):
    # A run without label smoothing (the sweep's base runs), so the toggled variant is "label smoothing 0.1".
    finished = api(served, "/api/v1/runs?status=succeeded&limit=50")["items"]
    base = next(r for r in finished if api(served, f"/api/v1/runs/{r['id']}")["spec"]["label_smoothing"] is None)
    page, console = watched_page(browser)
    page.goto(f"{served.url}/runs/{base['id']}")
    page.click("text=Ablate")
    page.check('input[name="vary:label_smoothing"]')
    page.fill('input[name="seeds"]', "3")
    page.click("#ablate-form button[type=submit]")
    page.wait_for_url(f"{served.url}/sweeps/*")
    sweep_id = int(page.url.rsplit("/", 1)[1])
    report = api(served, f"/api/v1/sweeps/{sweep_id}")
    assert [v["label"] for v in report["variants"]][0] == "base" and len(report["variants"]) == 2
    assert report["runs_total"] == 6 and "label smoothing 0.1" in page.locator("main").inner_text()
    for v in report["variants"]:  # the proof is the sweep; don't spend CI minutes training it
        for r in v["runs"]:
            try:
                post(served, f"/api/v1/runs/{r['id']}/cancel", {})
            except urllib.error.HTTPError as exc:
                assert exc.code == 409  # it finished before the cancel arrived
    assert not console.errors, console.errors


def test_predict_by_file_upload_shows_the_top_classes(browser, served, tmp_path):
    from PIL import Image

    run = api(served, "/api/v1/runs?status=succeeded&limit=1")["items"][0]
    digit = sorted((served.home / "datasets" / "digits" / "train_images").glob("*.jpg"))[0]
    upload = tmp_path / "my digit.png"
    Image.open(digit).convert("RGB").resize((224, 224)).save(upload)
    page, console = watched_page(browser)
    page.goto(f"{served.url}/runs/{run['id']}")
    page.set_input_files("#predict-files", [str(upload), str(upload)])
    assert page.locator("#predict-status").inner_text() == "2 images ready."
    with page.expect_response(lambda r: r.url.endswith("/predict?wait=0")) as posted:
        page.click("#predict-button")
    page.wait_for_selector("#predict-results figure.prediction", timeout=120_000)
    figures = page.locator("#predict-results figure.prediction")
    assert figures.count() == 2
    # Each card shows what the API answered for this very request: the top 5 classes, in order, to a tenth of a %.
    answer = api(served, f"/api/v1/predictions/{posted.value.json()['id']}")
    assert answer["status"] == "done" and len(answer["results"]) == 2
    for k, result in enumerate(answer["results"]):
        shown = [(li.locator(".label").text_content(), li.locator(".num").text_content())
                 for li in figures.nth(k).locator("ol.top-classes li").all()]
        assert shown == [(t["label"], f"{100 * t['probability']:.1f}%") for t in result["top"]]
        assert len(shown) == 5
    assert figures.first.locator("strong.predict-name").inner_text() == "my digit.png"
    assert "Predicted 2 images" in page.locator("#predict-status").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "predict.png"), full_page=True)
    assert not console.errors, console.errors


def test_api_docs_render_and_try_a_call(browser, served):
    """/docs renders the OpenAPI 3.1 document (Swagger UI from the installed fastapi-offline package, under the
    CSP), lists every operation, and "Try it out" calls the server."""
    page, console = watched_page(browser)
    outside = []
    page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(served.url) else None)
    page.goto(f"{served.url}/")
    page.click("text=API")  # the top bar's link
    page.wait_for_selector(".opblock", timeout=30_000)
    assert "Unable to render" not in page.content()
    operations = sum(len(ops) for ops in api(served, "/openapi.json")["paths"].values())
    assert operations >= 30 and page.locator(".opblock").count() == operations  # every operation the app serves
    block = page.locator("#operations-runs-get_runs_api_v1_runs_get")
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"
    assert '"items"' in block.locator(".live-responses-table .microlight").first.inner_text()
    assert not console.errors and not outside, (console.errors, outside)
