"""The event streams' change signal: a commit by another process's engine (a worker recording an epoch) wakes the
web's poller on SQLite (the WAL file) and PostgreSQL (LISTEN/NOTIFY); a read does not."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from fitboard.app.core.events import EpochEvent
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.runs import claim_run, create_run, record_epoch
from fitboard.app.web.changes import FileSignal, NotifySignal, signal_for
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403  db_url (sqlite and postgres)

LONG = 60.0  # a bound that only a lost signal reaches


def test_a_commit_elsewhere_wakes_the_signal_and_a_read_does_not(db_url):
    web, worker = make_engine(db_url), make_engine(db_url)
    with session_scope(worker) as s:
        run_id = create_run(s, tiny_recipe()).id
        claim_run(s, run_id, "w")

    async def scenario():
        signal = signal_for(web)
        assert isinstance(signal, NotifySignal if web.dialect.name == "postgresql" else FileSignal)
        with worker.connect() as conn:
            conn.execute(text("SELECT count(*) FROM run")).scalar()  # a read: no signal
        quiet = await signal.wait(0.3)

        async def commit_later():
            await asyncio.sleep(0.05)
            await asyncio.to_thread(record, worker, run_id)

        task = asyncio.create_task(commit_later())
        woke = await signal.wait(LONG)
        await task
        signal.close()
        return quiet, woke

    quiet, woke = asyncio.run(scenario())
    assert (quiet, woke) == (False, True)
    web.dispose()
    worker.dispose()


def record(engine, run_id: int) -> None:
    with session_scope(engine) as s:
        record_epoch(s, run_id, EpochEvent(stage=0, epoch=0, train_loss=1.0, valid_loss=0.9, metrics={"accuracy": 0.5},
                                           seconds=1.0))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):  # noqa: F811  both backends, as store_fixtures' db_url
    return request.getfixturevalue(f"{request.param}_url")
