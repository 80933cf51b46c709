"""The fair queue with real workers: a web app (its own dispatcher and reconciler), real worker processes, a private
Redis, a real migrated SQLite file, people with tokens, the digits data trained for 1 epoch. One setup for the module;
each test leaves the queue empty for the next."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fitboard.app.core.settings import Settings
from fitboard.app.services import people
from fitboard.app.services.queue import Publisher, make_celery
from fitboard.app.store.attempts import list_attempts
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, Worker
from fitboard.app.web.app import create_app
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_template, data_root
from tests.workers import PrivateRedis, Workers

PASSWORD = "correct horse battery"
LIVE = ("queued", "running")


class World:
    """The app's client, each person's bearer headers, the workers and their database."""

    def __init__(self, tmp, sqlite_template, data_root):
        shutil.copyfile(sqlite_template, tmp / "fitboard.db")
        self.redis = PrivateRedis(tmp)
        self.redis.start()
        db = f"sqlite:///{tmp / 'fitboard.db'}"
        knobs = {"project_quotas": "capped=1", "worker_lost_after": 4}
        self.workers = Workers(tmp, db, data_root, self.redis.url, **knobs)
        self.workers.queue = "fitboard"  # the web process's queue; this Redis is the module's own
        self.workers.start(1)
        self.settings = Settings(home=tmp / "web", database_url=db, data_root=data_root, broker_url=self.redis.url,
                                 **knobs)
        self.app = create_app(self.settings)
        self.client = TestClient(self.app)
        self.client.__enter__()
        self.headers = {}
        with session_scope(self.workers.engine) as s:
            people.add_project(s, "capped")
            for name in ("alice", "bob", "root"):
                who = people.add_person(s, name, PASSWORD, site_admin=name == "root")
                for project in ("default", "capped"):
                    people.grant(s, project, name, None if name == "root" else "member")
                token = people.create_token(s, who, "test", "write")[0]
                self.headers[name] = {"Authorization": f"Bearer {token}"}
        self.wait_workers(1)

    def wait_workers(self, n: int, timeout: float = 90) -> None:
        """Until n live workers have heartbeat (a worker dispatches its queue at start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(self.workers.engine) as s:
                alive = {w.name for w in s.exec(select(Worker)).scalars() if w.queue == "fitboard"}
            pids = {p.pid for p in self.workers.procs if p.poll() is None}
            if len({a for a in alive if int(a.rsplit(":", 1)[1]) in pids}) >= n:
                return
            time.sleep(0.2)
        raise AssertionError(f"workers not live:\n{self.workers.logs()[-3000:]}")

    def submit(self, who: str, name: str, project: str = "default", **extra) -> dict:
        r = self.client.post(f"/api/v1/runs?project={project}", json={**tiny_recipe(name=name), **extra},
                             headers=self.headers[who])
        assert r.status_code == 201, r.text
        return r.json()

    def get(self, run_id: int, who: str = "root") -> dict:
        return self.client.get(f"/api/v1/runs/{run_id}", headers=self.headers[who]).json()

    def started(self, run_id: int) -> float | None:
        """When the run's first attempt began (POSIX seconds), or None."""
        with session_scope(self.workers.engine) as s:
            tries = list_attempts(s, run_id)
            return tries[0].started_at.timestamp() if tries else None

    def attempts(self, run_id: int) -> int:
        with session_scope(self.workers.engine) as s:
            return len(list_attempts(s, run_id))

    def settle(self, ids: list[int], cancel: list[int] = (), timeout: float = 120) -> None:
        """Cancel the given runs (queued ones never start), then wait until none of ids is queued or running."""
        for run_id in cancel:
            self.client.post(f"/api/v1/runs/{run_id}/cancel", headers=self.headers["root"])
        for run_id in ids:
            self.workers.wait(run_id, lambda r: r.status not in LIVE, timeout=timeout)

    def close(self):
        """Everything started, stopped (also after a failed start)."""
        if getattr(self, "client", None) is not None:
            self.client.__exit__(None, None, None)
        if getattr(self, "workers", None) is not None:
            self.workers.stop()
        if getattr(self, "redis", None) is not None:
            self.redis.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory, sqlite_template, data_root):
    w = World.__new__(World)
    try:
        w.__init__(tmp_path_factory.mktemp("fair"), sqlite_template, data_root)
        yield w
    finally:
        w.close()


def test_bob_is_told_he_is_next_and_starts_by_third_behind_alices_six(world):
    alice = [world.submit("alice", f"alice-{i}")["id"] for i in range(6)]
    world.workers.wait_status(alice[0], "running", "succeeded", timeout=60)  # the fleet is busy with Alice's work
    bob = world.submit("bob", "bob-1")
    told = bob["queue_position"]  # next, or second behind the one message of Alice's already in the broker
    assert told in (1, 2) and bob["priority"] == "normal" and bob["launched_by"] == "bob"
    line = world.client.get("/api/v1/queue", headers=world.headers["root"]).json()
    assert line[0]["queue"] == "fitboard" and line[0]["workers"] == 1
    order = [e["run_id"] for e in line[0]["runs"]]
    assert order[told - 1] == bob["id"] and line[0]["runs"][told - 1]["person"] == "bob"
    assert all(e["sent"] for e in line[0]["runs"][:told - 1])  # what is ahead of him is already sent
    rest = [i for i in order if i != bob["id"]]
    assert rest == sorted(rest) and set(rest) <= set(alice[1:])  # the others are Alice's, oldest first
    assert world.get(alice[-1])["queue_position"] == len(order)
    world.workers.wait_status(bob["id"], "running", "succeeded", timeout=120)
    world.settle([*alice, bob["id"]], cancel=alice[told + 1:])  # the rest of Alice's never start: quicker
    starts = sorted((t, i) for i in [*alice, bob["id"]] if (t := world.started(i)) is not None)
    order = [i for _, i in starts]
    assert order.index(bob["id"]) == told, order  # he starts where he was told: after the running one and those sent
    assert all(world.attempts(i) <= 1 for i in [*alice, bob["id"]])


def test_high_priority_goes_ahead_of_the_same_persons_normal_runs_and_members_only_lower(world):
    normal = [world.submit("alice", f"normal-{i}")["id"] for i in range(3)]
    world.workers.wait_status(normal[0], "running", "succeeded", timeout=60)
    high = world.submit("alice", "urgent", priority="high")
    assert high["queue_position"] in (1, 2) and high["priority"] == "high"  # behind at most one message sent
    assert high["estimated_start"] is not None  # the running run's ETA (runs of this queue have finished: timed)
    page = world.client.get(f"/runs/{high['id']}", headers=world.headers["alice"]).text
    assert re.search(r'<strong id="queue-position">[12]</strong>', page) and 'id="estimated-start"' in page
    queue_page = world.client.get("/queue", headers=world.headers["alice"]).text
    assert "urgent" in queue_page and 'class="badge priority-high"' in queue_page
    assert world.get(normal[2])["queue_position"] > 1
    # a member lowers their own run's priority, never raises it; nor touches another's; an admin sets any
    patch = f"/api/v1/runs/{normal[2]}"
    raised = world.client.patch(patch, json={"priority": "high"}, headers=world.headers["alice"])
    assert raised.status_code == 403 and "not raise" in raised.json()["detail"]
    assert world.client.patch(patch, json={"priority": "low"}, headers=world.headers["bob"]).status_code == 403
    lowered = world.client.patch(patch, json={"priority": "low"}, headers=world.headers["alice"])
    assert lowered.status_code == 200 and lowered.json()["priority"] == "low"
    assert world.client.patch(patch, json={"priority": "urgent"}, headers=world.headers["root"]).status_code == 422
    world.workers.wait_status(high["id"], "running", "succeeded", timeout=120)
    world.settle([*normal, high["id"]], cancel=[normal[2]])
    assert world.started(normal[2]) is None or world.started(high["id"]) < world.started(normal[2])
    assert world.started(high["id"]) > world.started(normal[0])  # it waited for a free worker, it took no one's


def test_a_project_quota_holds_with_a_worker_to_spare(world):
    world.workers.start(1)
    world.wait_workers(2)
    capped = [world.submit("alice", f"capped-{i}", project="capped")["id"] for i in range(2)]
    free = world.submit("bob", "uncapped")["id"]
    line = world.client.get("/api/v1/queue", headers=world.headers["root"]).json()[0]["runs"]
    held = {e["run_id"]: e["held_by_quota"] for e in line}
    assert held.get(capped[1]) is True and held.get(free) is not True
    world.settle([*capped, free])
    spans = []
    for run_id in capped:
        with session_scope(world.workers.engine) as s:
            (a,) = list_attempts(s, run_id)
            spans.append((a.started_at, a.ended_at))
    assert spans[0][1] <= spans[1][0] or spans[1][1] <= spans[0][0], spans  # never both running at once
    assert world.workers.run(free).status == "succeeded"


# A web process storing four runs of bob's and dispatching them, killed -9 right after the broker took the first
# message, before it marked it sent. It takes the dispatch lease before storing them, so that the workers' idle
# heartbeats cannot dispatch them first; the lease outlives it by its ttl (then the heartbeats dispatch the rest).
DISPATCH_AND_DIE = textwrap.dedent("""
    import os, signal
    from fitboard.app.core.settings import Settings
    from fitboard.app.services import people
    from fitboard.app.services.dispatch import LEASE_TTL, _lease, dispatch
    from fitboard.app.services.queue import Publisher, make_celery
    from fitboard.app.services.runs import store_run
    from fitboard.app.store.db import make_engine, session_scope
    from fitboard.app.store.ownership import scope_session
    from tests.helpers import tiny_recipe

    class DiesAfterSending(Publisher):
        def publish(self, run_id, queue=None):
            super().publish(run_id, queue)
            os.kill(os.getpid(), signal.SIGKILL)

    settings = Settings()
    engine = make_engine(settings.database_url)
    # a live worker's reconciler may hold the lease for its pass: wait for it, as a real dispatcher does
    assert _lease(engine, "dying-web", 3 * LEASE_TTL)  # a holder that died frees it after LEASE_TTL
    with session_scope(engine) as s:
        scope_session(s, 1, people.person(s, "bob").id)
        ids = [store_run(s, tiny_recipe(name=f"k-{i}"), settings.data_root).id for i in range(4)]
    print(*ids, flush=True)
    dispatch(engine, DiesAfterSending(make_celery(settings)), settings=settings, holder="dying-web")
""")


def test_kill_9_mid_dispatch_of_the_dispatcher_and_of_a_worker_loses_nothing_and_starts_nothing_twice(world):
    dying = subprocess.run([sys.executable, "-c", DISPATCH_AND_DIE], env={**world.workers.env},
                           capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert dying.returncode == -signal.SIGKILL, dying.stderr
    ids = [int(i) for i in dying.stdout.split()]
    assert len(ids) == 4 and sum(world.workers.run(i).published_at is None for i in ids) == 4  # sent one, marked none
    # A worker killed -9 right as its run ends (when it dispatches its queue).
    first = world.workers.wait_status(ids[0], "succeeded", "failed", timeout=120)
    victim = next(p for p in world.workers.procs if p.pid == int(first.worker.rsplit(":", 1)[1]))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    world.settle(ids, timeout=180)
    runs = [world.workers.run(i) for i in ids]
    assert [r.status for r in runs] == ["succeeded"] * 4, [(r.id, r.status, r.error) for r in runs]
    # a run the dead worker held is resumed (attempt 2, recorded); none was claimed twice by two live workers
    for r in runs:
        with session_scope(world.workers.engine) as s:
            tries = list_attempts(s, r.id)
        assert len(tries) == r.attempt and all(t.outcome in ("succeeded", "requeued") for t in tries)
        assert sum(t.outcome == "succeeded" for t in tries) == 1
    with session_scope(world.workers.engine) as s:
        waiting = s.exec(select(Run.id).where(Run.status == "queued")).all()
    assert waiting == []
    assert Publisher(make_celery(world.settings)).reachable()
    assert os.environ.get("FITBOARD_BROKER_URL") != world.redis.url  # the module's broker was its own
