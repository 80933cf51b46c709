"""Load without deadlock: bursts of 200 concurrent reads against a real `fitboard web` process answer 200 or 503 with
Retry-After (never a 500, never a hang), and the server answers a single request right after each burst."""
from __future__ import annotations

import asyncio
from contextlib import contextmanager

import httpx
import pytest
import requests

from fitboard.app.store.db import make_engine, session_scope, upgrade
from fitboard.app.store.models import Run
from tests.helpers import tiny_recipe
from tests.served import Served

RUNS = 60
CONCURRENT = 200
BOUND_SECONDS = 10  # "answers at once" on a loaded shared machine: generous, and far below the old 60 s stalls


def seed_runs(home, n: int) -> None:
    """n succeeded runs with accuracies 0.5 + i/1000, straight into the server's SQLite file (no worker trains them)."""
    url = f"sqlite:///{home / 'fitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        for i in range(n):
            spec = tiny_recipe(name=f"seeded-{i}")
            session.add(Run(name=spec["name"], dataset="digits", spec=spec, status="succeeded",
                            best_accuracy=0.5 + i / 1000, techniques=["normalize"]))
    engine.dispose()


async def burst(url: str, n: int) -> list[httpx.Response]:
    """n GETs of url at once, each on its own connection."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.get(url) for _ in range(n)))


@contextmanager
def web_process(home, env: dict | None = None):
    """A ready `fitboard web` under home (the web process alone: reads need no worker); stopped with SIGTERM."""
    web = Served(home, command="web", env=env)
    try:
        web.wait_ready(timeout=60)
        yield web
    finally:
        web.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("load-home")
    seed_runs(home, RUNS)
    with web_process(home) as web:
        yield web


def test_three_bursts_of_200_concurrent_run_lists_answer_200_or_503_then_a_single_get_answers(server):
    url = f"{server.url}/api/v1/runs?limit=50"
    for _ in range(3):
        answers = asyncio.run(burst(url, CONCURRENT))
        statuses = [r.status_code for r in answers]
        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        for r in answers:
            assert r.headers["x-content-type-options"] == "nosniff" and "default-src" in r.headers[
                "content-security-policy"]
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1 and r.json()["detail"]
            else:  # a full first page, newest first, of the runs stored
                body = r.json()
                assert body["total"] == RUNS and len(body["items"]) == 50
                assert body["items"][0]["name"] == f"seeded-{RUNS - 1}"
        assert statuses.count(200) > 0
        single = requests.get(url, timeout=BOUND_SECONDS)  # raises if the server stalls past the bound
        assert single.status_code == 200 and single.json()["total"] == RUNS
    assert "Traceback" not in server.log() and "QueuePool" not in server.log()


def test_admission_lets_in_at_most_its_limit_answers_503_past_the_wait_and_gives_every_slot_back():
    from fitboard.app.web.admission import Admission

    async def scenario():
        inside = peak = 0
        gate = asyncio.Event()

        async def app(scope, receive, send):
            nonlocal inside, peak
            inside += 1
            peak = max(peak, inside)
            await gate.wait()
            inside -= 1
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        admission, answers = Admission(app, limit=2, wait=0.2, backlog=100), []

        async def call():
            async def send(message):
                if message["type"] == "http.response.start":
                    answers.append((message["status"], dict(message["headers"]).get(b"retry-after")))
            await admission({"type": "http", "path": "/api/v1/runs"}, None, send)

        burst = [asyncio.create_task(call()) for _ in range(5)]
        await asyncio.sleep(0.5)  # a loop timer after the 0.2 s wait: the three left waiting were answered 503
        gate.set()
        await asyncio.gather(*burst)
        first = sorted(answers)
        answers.clear()
        await asyncio.gather(*(call() for _ in range(2)))  # both slots came back: two at once get in again
        return first, sorted(answers), peak

    first, after, peak = asyncio.run(scenario())
    assert first == [(200, None), (200, None), (503, b"1"), (503, b"1"), (503, b"1")]
    assert after == [(200, None), (200, None)] and peak == 2
