"""Screenshots for the README: the run page of a finished demo run, and a sweep's verdicts (docs/img/*.png).

Starts `fitboard up` under a temporary FITBOARD_HOME, trains the demo recipe and a small sweep on the digits
data, and photographs the pages in Debian's chromium. Takes a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.served import serving  # noqa: E402  (the repository root is on the path above)


def call(url: str, body: dict | None = None) -> dict:
    """GET, or POST a JSON body; the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read())


def wait_finished(url: str, timeout: float = 1800) -> dict:
    """Poll until the run has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = call(url)
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(2)
    raise SystemExit(f"{url} did not finish")


def main() -> None:
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    demo = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    with tempfile.TemporaryDirectory() as home, serving(Path(home)) as served:
        run = call(f"{served.url}/api/v1/runs", demo)
        small = {**demo, "name": "digits-sweep", "tta": None,
                 "stages": [{**s, "epochs": 1} for s in demo["stages"]]}
        sweep = call(f"{served.url}/api/v1/sweeps", {"base": small, "vary": {"stages[1].mixup": [None],
                     "label_smoothing": [None]}, "seeds": [0, 1, 2]})
        wait_finished(f"{served.url}/api/v1/runs/{run['id']}")
        for item in call(f"{served.url}/api/v1/runs?limit=50")["items"]:
            wait_finished(f"{served.url}/api/v1/runs/{item['id']}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{served.url}/runs/{run['id']}")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "run.png"))
            page.goto(f"{served.url}/sweeps/{sweep['id']}")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "sweep.png"))
            browser.close()
    print("wrote", out / "run.png", out / "sweep.png")


if __name__ == "__main__":
    main()
