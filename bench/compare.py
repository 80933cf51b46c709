"""Compare at scale: 100 stored runs of 50 epochs each; server time of the compare page and API, and the
browser's time to draw the 100-run charts (median of 5 loads; target < 1 s).

Prints p50/p95 server time (in-process, from the request entering the app to its last byte leaving) of GET /compare and
GET /api/v1/compare for 10, 50 and 100 runs (target: 100 runs <= 200 ms), then, when Debian's chromium is
installed, loads the 100-run compare page in it and prints the time from navigation to the drawn charts.
Usage: python bench/compare.py [--reps 15]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import compare_drawn_ms  # noqa: E402  (bench/ is on sys.path when run as a script)
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from fitboard.app.core.schemas import parse_spec  # noqa: E402
from fitboard.app.core.settings import Settings  # noqa: E402
from fitboard.app.store.db import make_engine, session_scope, upgrade  # noqa: E402
from fitboard.app.store.models import EpochRow, LRFind, Run, utcnow  # noqa: E402
from fitboard.app.web.app import create_app  # noqa: E402

N_RUNS, N_EPOCHS = 100, 50
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LABELS = ["eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero"]


def spec_for(i: int) -> dict:
    """Recipes that differ in a few fields, as an ablation would."""
    return parse_spec({"name": f"bench-{i}", "dataset": "digits", "arch": "resnet18", "pretrained": False,
                       "normalize": ["imagenet", "dataset", "none"][i % 3], "label_smoothing": 0.1 if i % 2 else None,
                       "seed": i, "tta": {"n": 4}, "keep_best": "accuracy",
                       "stages": [{"epochs": 25, "size": 24, "presize": 32, "lr": "find"},
                                  {"epochs": 25, "size": 32, "presize": 40, "lr": [1e-4, 1e-3],
                                   "mixup": 0.2 if i % 4 else None}]}).model_dump(mode="json")


def store_runs(url: str) -> list[int]:
    """100 succeeded runs with 50 epoch rows and an LR-finder curve each, inserted in bulk."""
    rng = random.Random(0)
    engine = make_engine(url)
    with session_scope(engine) as s:
        runs = []
        for i in range(N_RUNS):
            acc = 0.8 + rng.random() * 0.15
            cm = [[rng.randint(0, 40) if r != c else rng.randint(20, 40) for c in range(10)] for r in range(10)]
            run = Run(name=f"bench-{i}", dataset="digits", spec=spec_for(i), status="succeeded",
                      techniques=["normalize", "progressive resizing"], best_accuracy=acc, tta_accuracy=acc + 0.005,
                      result={"metrics": {"accuracy": acc, "error_rate": 1 - acc, "valid_loss": 0.4},
                              "best": {"stage": 1, "epoch": 20, "metric": "accuracy", "value": acc},
                              "images_per_second": 90 + rng.random() * 20,
                              "confusion": {"labels": LABELS, "matrix": cm}})
            s.add(run)
            runs.append(run)
        s.flush()
        ids, now = [r.id for r in runs], utcnow()
        s.execute(insert(EpochRow), [
            {"run_id": rid, "stage": e // 25, "epoch": e % 25, "train_loss": 2 / (e + 1), "valid_loss": 1.5 / (e + 1),
             "metrics": {"accuracy": 0.5 + e / 120, "error_rate": 0.5 - e / 120}, "seconds": 12.0, "created_at": now}
            for rid in ids for e in range(N_EPOCHS)])
        s.execute(insert(LRFind), [
            {"run_id": rid, "stage": 0, "suggestion": 1e-3, "lrs": [10 ** (-7 + k * 8 / 99) for k in range(100)],
             "losses": [2.3 - k / 80 if k < 80 else 1.3 + (k - 80) / 5 for k in range(100)], "created_at": now}
            for rid in ids])
    engine.dispose()
    return ids


class ServerTimer:
    """ASGI wrapper: milliseconds from a request entering the app to its last body byte leaving it."""

    def __init__(self, app):
        self.app, self.last_ms = app, None

    async def __call__(self, scope, receive, send):
        start = time.perf_counter()

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - start) * 1000

        await self.app(scope, receive, timed_send)


def timed(client: TestClient, timer: ServerTimer, path: str, reps: int) -> tuple[float, float, int]:
    """p50 and p95 server milliseconds of GET path (test-client transfer excluded), and the response size."""
    client.get(path)  # warm
    times, size = [], 0
    for _ in range(reps):
        response = client.get(path)
        times.append(timer.last_ms)
        assert response.status_code == 200, response.text[:300]
        size = len(response.content)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], size


def browser_draw_ms(app, ids: list[int], reps: int = 5) -> float | None:
    """Median over reps of navigation start to every compare chart drawn, in Debian's chromium, for all the runs."""
    if not Path(CHROMIUM).exists():
        return None
    import socket

    import uvicorn
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            url = f"http://127.0.0.1:{port}/compare?ids={','.join(map(str, ids))}"
            page.goto(url)  # warm the caches (plotly.min.js)
            drawn, ready = [], []
            for _ in range(reps):
                page.goto(url)
                drawn.append(compare_drawn_ms(page))
                ready.append(page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
            traces = page.evaluate("document.getElementById('chart-accuracy').data.length")
            browser.close()
        print(f"browser: accuracy chart holds {traces} traces; drawn at (ms) {[round(d) for d in drawn]}; scripts "
              f"parsed (DOMContentLoaded) at {[round(r) for r in ready]}")
        return statistics.median(drawn)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    """Store the runs, time the compare page and API at 10/50/100 runs, then the browser draw."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/compare.db"
        upgrade(url)
        t0 = time.perf_counter()
        ids = store_runs(url)
        print(f"stored {N_RUNS} runs x {N_EPOCHS} epochs in {time.perf_counter() - t0:.1f} s")
        app = create_app(Settings(home=Path(tmp), database_url=url, data_root=Path(tmp) / "data",
                                  allowed_hosts="127.0.0.1,localhost,testserver"))  # TestClient says "testserver"
        results, timer = [], ServerTimer(app)
        with TestClient(timer) as client:
            for n in (10, 50, 100):
                joined = ",".join(map(str, ids[:n]))
                for label, path in (("page", f"/compare?ids={joined}"), ("api", f"/api/v1/compare?ids={joined}")):
                    p50, p95, size = timed(client, timer, path, args.reps)
                    results.append((n, label, p50, p95, size))
                    print(f"{n:>3} runs  {label:<4} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  ({size / 1024:.0f} KiB)",
                          flush=True)
        draw = browser_draw_ms(app, ids)
    print("=== summary ===")
    for n, label, p50, p95, _ in results:
        verdict = f" (target <= 200 ms: {'PASS' if p95 <= 200 else 'FAIL'})" if n == 100 else ""
        print(f"compare {label} with {n} runs: p50 {p50:.1f} ms, p95 {p95:.1f} ms{verdict}")
    print(f"browser draw of the 100-run compare page: {draw:.0f} ms (target < 1000 ms: "
          f"{'PASS' if draw < 1000 else 'FAIL'})" if draw is not None
          else "browser draw: skipped (no /usr/bin/chromium)")


if __name__ == "__main__":
    main()
