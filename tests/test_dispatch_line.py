"""A queue's line as runs are told it (fitboard.app.services.dispatch.queue_line), on a real migrated SQLite file:
the policy's order, except that messages already in the broker start first."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from fitboard.app.core.settings import Settings
from fitboard.app.services import people
from fitboard.app.services.dispatch import queue_line
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, Worker, utcnow
from fitboard.app.store.runs import create_run
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_engine


def test_runs_already_sent_to_the_broker_come_first_in_the_order_they_were_sent(sqlite_engine, tmp_path):
    with session_scope(sqlite_engine) as s:
        alice, bob = (people.add_person(s, name, "correct horse battery").id for name in ("alice", "bob"))
    ids = {}
    with session_scope(sqlite_engine) as s:
        for person, names in ((alice, ("a1", "a2", "a3")), (bob, ("b1",))):
            for name in names:
                run = create_run(s, tiny_recipe(name=name))
                run.launched_by = person
                ids[name] = run.id
    settings = Settings(home=tmp_path, database_url=str(sqlite_engine.url))
    with session_scope(sqlite_engine) as s:  # by the policy: the oldest, then the shares alternate
        assert [q.run.id for q in queue_line(s, settings, "fitboard").order] == [ids[n] for n in ("a1", "b1", "a2",
                                                                                                  "a3")]
    with session_scope(sqlite_engine) as s:  # a3, then a2, went to the broker: they start first, in that order
        s.exec(update(Run).where(Run.id == ids["a3"]).values(published_at=utcnow() - timedelta(seconds=2)))
        s.exec(update(Run).where(Run.id == ids["a2"]).values(published_at=utcnow() - timedelta(seconds=1)))
    with session_scope(sqlite_engine) as s:
        found = queue_line(s, settings, "fitboard")
    order = [q.run.id for q in found.order]
    assert order == [ids[n] for n in ("a3", "a2", "a1", "b1")]
    assert [found.position(ids[n]) for n in ("a3", "a2")] == [1, 2]
    assert [q.published for q in found.order[:2]] == [True, True] and not any(q.published for q in found.order[2:])


def test_a_run_already_sent_takes_its_projects_quota_in_every_queue(sqlite_engine, tmp_path):
    """capped=1 and A's message is in the broker (not started yet): B, of the same project but at a higher priority,
    and C, in another worker queue, must wait for it; sent too, all three would run at once."""
    with session_scope(sqlite_engine) as s:
        capped = people.add_project(s, "capped").id
        for i, queue in enumerate(("fitboard", "fitboard", "other")):  # idle workers on both queues
            s.add(Worker(name=f"gpu{i}:1", host=f"gpu{i}", pid=1, queue=queue, last_seen=utcnow()))
    with session_scope(sqlite_engine) as s:
        runs = [create_run(s, tiny_recipe(name=name)) for name in ("A", "B", "C")]
        for run in runs:
            run.project_id = capped
        runs[0].published_at, runs[1].priority, runs[2].queue = utcnow(), "high", "other"
        a, b, c = (run.id for run in runs)
    settings = Settings(home=tmp_path, database_url=str(sqlite_engine.url), project_quotas="capped=1")
    with session_scope(sqlite_engine) as s:
        here, there = queue_line(s, settings, "fitboard"), queue_line(s, settings, "other")
        assert [q.run.id for q in here.order] == [a, b] and here.held == {b}
        assert there.held == {c}  # the dispatcher sends no held run
