"""The Locust users of bench/load.py (the locustfile): what a team dashboard, a notebook client and scripts do.

Each simulated user lists runs, opens a run page and its epoch table, compares two runs, opens the live run's event
stream and reads it for two seconds, and now and then submits a run and cancels it. Failures are named by status
("HTTP 503 Retry-After") so the driver can count them. Imports nothing of fitboard (Locust's gevent patches this
process).
"""
from __future__ import annotations

import os
import random
import time

from locust import HttpUser, between, task

LIVE_RUN = int(os.environ.get("FITBOARD_BENCH_LIVE_RUN", "1"))
RUN_IDS = int(os.environ.get("FITBOARD_BENCH_RUNS", "300"))


def _check(response, ok=(200,)) -> None:
    """Mark the answer; failures are named by status so the summary can count them."""
    code = response.status_code
    if code in ok:
        response.success()
        return
    label = f"HTTP {code}" + (" Retry-After" if code == 503 and response.headers.get("Retry-After") else "")
    response.failure(label)


class DashboardUser(HttpUser):
    """One person (or script) using fitboard."""

    wait_time = between(0.5, 2.0)

    def _run_id(self) -> int:
        return random.randint(2, RUN_IDS + 1)

    @task(5)
    def runs_list(self):
        with self.client.get("/api/v1/runs?limit=50", name="GET /api/v1/runs?limit=50", catch_response=True) as r:
            _check(r)

    @task(3)
    def run_page_and_epochs(self):
        run_id = self._run_id()
        with self.client.get(f"/runs/{run_id}", name="GET /runs/{id}", catch_response=True) as r:
            _check(r)
        with self.client.get(f"/api/v1/runs/{run_id}/epochs", name="GET /api/v1/runs/{id}/epochs",
                             catch_response=True) as r:
            _check(r)

    @task(1)
    def compare(self):
        a, b = random.sample(range(2, RUN_IDS + 2), 2)
        with self.client.get(f"/api/v1/compare?ids={a},{b}", name="GET /api/v1/compare", catch_response=True) as r:
            _check(r)

    @task(1)
    def event_stream(self):
        """Open the live run's stream, read for up to 2 s (the stored rows, then new ones), close."""
        with self.client.get(f"/api/v1/runs/{LIVE_RUN}/events", name="GET /api/v1/runs/{id}/events (2 s)",
                             stream=True, catch_response=True, timeout=30) as r:
            if r.status_code == 200:
                end = time.monotonic() + 2.0
                for _ in r.iter_lines():
                    if time.monotonic() > end:
                        break
            _check(r)

    @task(1)
    def submit_and_cancel(self):
        if random.random() > 0.2:  # one user in five that picks this task submits: a few runs a second at most
            return
        recipe = {"name": "load", "dataset": "digits", "arch": "squeezenet1_1", "pretrained": False,
                  "normalize": "dataset", "seed": 1, "stages": [{"epochs": 1, "size": 32, "presize": 40, "bs": 32,
                                                                 "lr": 3e-3}]}
        # A script's write, without the page's session cookie: a cookie session's writes need its CSRF header (403)
        self.client.cookies.clear()
        with self.client.post("/api/v1/runs", json=recipe, name="POST /api/v1/runs", catch_response=True) as r:
            _check(r, ok=(201, 202))
            run_id = r.json().get("id") if r.status_code in (201, 202) else None
        if run_id:
            with self.client.post(f"/api/v1/runs/{run_id}/cancel", name="POST /api/v1/runs/{id}/cancel",
                                  catch_response=True) as r:
                _check(r, ok=(200, 409))
