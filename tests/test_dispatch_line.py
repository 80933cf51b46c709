"""A queue's line as runs are told it (fitboard.app.services.dispatch.queue_line), on a real migrated SQLite file:
the policy's order, except that messages already in the broker start first."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from fitboard.app.core.settings import Settings
from fitboard.app.services import people
from fitboard.app.services.dispatch import queue_line
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, utcnow
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
