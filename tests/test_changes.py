"""The event streams' change signal: a commit by another process's engine (a worker recording an epoch) wakes the
web's poller on SQLite (the WAL file) and PostgreSQL (LISTEN/NOTIFY); a read does not. And end to end: a row that a
separate writer process commits reaches every open stream of its run, through the one feed, on that signal."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import httpx
import pytest
from sqlalchemy import text

from fitboard.app.core.events import EpochEvent
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.runs import claim_run, create_run, record_epoch
from fitboard.app.web import sse
from fitboard.app.web.changes import FileSignal, NotifySignal, signal_for
from tests.helpers import tiny_recipe
from tests.live import live_app
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


WRITER = """
import sys
from fitboard.app.core.events import EpochEvent
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.runs import record_epoch
with session_scope(make_engine(sys.argv[1])) as s:
    record_epoch(s, int(sys.argv[2]), EpochEvent(stage=0, epoch=1, train_loss=0.25, valid_loss=0.5,
                                                  metrics={"accuracy": 0.875}, seconds=2.0))
"""


def read_epochs(url: str, out: list, first: threading.Event) -> None:
    """Every line, and (id, data) of each `epoch` event, until the second; first is set once the stored row came."""
    with httpx.stream("GET", url, timeout=LONG) as r:
        fields = {}
        for line in r.iter_lines():
            out.append(line)
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if fields.get("event") == "epoch":
                out.append((fields["id"], json.loads(fields["data"])))
                first.set()
                if fields["id"] == "2":
                    return
            fields = {}


def test_a_row_committed_by_another_process_reaches_two_open_streams_on_the_signal(db_url, tmp_path, monkeypatch):
    monkeypatch.setattr(sse, "BACKSTOP_SECONDS", LONG)  # no look without a signal while the test runs
    with live_app(Settings(home=tmp_path, database_url=db_url)) as (base, app):
        with session_scope(app.state.engine) as s:
            run_id = create_run(s, tiny_recipe()).id
            claim_run(s, run_id, "w")
            record_epoch(s, run_id, EpochEvent(stage=0, epoch=0, train_loss=0.5, valid_loss=0.75,
                                               metrics={"accuracy": 0.625}, seconds=2.0))
        url = f"{base}/api/v1/runs/{run_id}/events"
        got, firsts = [[], []], [threading.Event(), threading.Event()]
        readers = [threading.Thread(target=read_epochs, args=(url, got[i], firsts[i]), daemon=True) for i in (0, 1)]
        for t in readers:
            t.start()
        assert all(f.wait(LONG) for f in firsts)
        feeds = app.state.streams.feeds
        assert list(feeds) == [run_id] and feeds[run_id].listeners == 2  # one feed, one look, for both streams
        subprocess.run([sys.executable, "-c", WRITER, db_url, str(run_id)], check=True, timeout=LONG)
        for t in readers:
            t.join(LONG / 2)  # the backstop look would come only after LONG: the row came on the writer's signal
        assert not any(t.is_alive() for t in readers)
    epochs = [[e for e in out if isinstance(e, tuple)] for out in got]
    keys = ("stage", "epoch", "train_loss", "valid_loss", "metrics", "seconds")
    assert [[(i, {k: d[k] for k in keys}) for i, d in e] for e in epochs] == [[
        ("1", {"stage": 0, "epoch": 0, "train_loss": 0.5, "valid_loss": 0.75, "metrics": {"accuracy": 0.625},
               "seconds": 2.0}),
        ("2", {"stage": 0, "epoch": 1, "train_loss": 0.25, "valid_loss": 0.5, "metrics": {"accuracy": 0.875},
               "seconds": 2.0})]] * 2
    assert got[0] == got[1]  # the same bytes: each row encoded once, for every stream of its run


def test_a_quiet_stream_sends_pings_and_ends_after_its_lifetime(sqlite_url, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from fitboard.app.web.app import create_app

    monkeypatch.setattr(sse, "PING_SECONDS", 0.3)
    settings = Settings(home=tmp_path, database_url=sqlite_url, stream_lifetime=1.2)
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.engine) as s:
            run_id = create_run(s, tiny_recipe()).id
            claim_run(s, run_id, "w")
        with client.stream("GET", f"/api/v1/runs/{run_id}/events") as r:
            lines = [line for line in r.iter_lines() if line]  # ends by itself: the lifetime is over
    assert lines[:3] == ["retry: 1000", "event: status", f'data: {{"id": {run_id}, "status": "running"}}']
    assert set(lines[3:]) == {": ping"} and 1 <= len(lines[3:]) <= 4  # one per 0.3 s quiet, for 1.2 s


def record(engine, run_id: int) -> None:
    with session_scope(engine) as s:
        record_epoch(s, run_id, EpochEvent(stage=0, epoch=0, train_loss=1.0, valid_loss=0.9, metrics={"accuracy": 0.5},
                                           seconds=1.0))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):  # noqa: F811  both backends, as store_fixtures' db_url
    return request.getfixturevalue(f"{request.param}_url")
