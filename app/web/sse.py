"""Server-sent events for one run: stored epoch rows, then new rows, progress and the status change.

One poller for the whole process reads every watched run (two queries, plus one per run with new rows) whenever the
database says something was committed (app.web.changes: LISTEN/NOTIFY on PostgreSQL, the WAL file on SQLite), and
at least every BACKSTOP_SECONDS, however many streams are open; each run has one RunFeed, and each stream sends what
its run's feed holds past its own position. At most max_streams streams are
open at once (then 503), and each closes after stream_lifetime seconds: the browser's EventSource (and
`fitboard submit --follow`) reconnects with Last-Event-ID and carries on where it stopped.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from fastapi.sse import ServerSentEvent
from sqlalchemy import func, select
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from fitboard.app.core.status import FINISHED, RunStatus
from fitboard.app.services.serializers import serialize_epoch, serialize_run
from fitboard.app.store.models import EpochRow, Run
from fitboard.app.store.runs import list_epochs
from fitboard.app.web.changes import Signal, signal_for

POLL_SECONDS = 0.1  # how often the feeds look for new rows when the database gives no change signal
BACKSTOP_SECONDS = 1.0  # with a change signal: a look at least this often anyway (a signal lost with a connection)
MIN_GAP_SECONDS = 0.005  # between two looks: a burst of commits costs one look per gap, not one per commit
RETRY_MS = 1000  # how long a client waits before reconnecting
MAX_EVENT_ID = 10**15  # Last-Event-ID is an epoch-row ordinal; anything else is ignored (the stream starts over)


@dataclass
class Snapshot:
    """What changed in one run since the last look: new epoch rows, the progress and the status."""

    rows: list[EpochRow]
    status: str
    progress: dict | None
    run: dict | None  # the full run, only once it finished


def take_snapshots(engine, known: dict[int, int]) -> dict[int, Snapshot]:
    """For each watched run (id -> rows already held): its new epoch rows, status and progress. Two queries for all
    the runs, plus one per run that has new rows or finished, however many streams watch them."""
    with Session(engine) as session:
        ids = list(known)
        states = session.exec(select(Run.id, Run.status, Run.progress).where(Run.id.in_(ids))).all()
        counts = dict(session.exec(select(EpochRow.run_id, func.count()).where(EpochRow.run_id.in_(ids))
                                   .group_by(EpochRow.run_id)).all())
        out = {}
        for run_id, status, progress in states:
            rows = list_epochs(session, run_id, known[run_id]) if counts.get(run_id, 0) > known[run_id] else []
            done = serialize_run(session.get(Run, run_id)) if status in FINISHED else None
            out[run_id] = Snapshot(rows, str(status), progress, done)
        return out


class RunFeed:
    """One run as its streams see it: every epoch row so far, the status, the latest batch progress."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.rows: list[dict] = []
        self.status: str | None = None
        self.batch: dict | None = None
        self.run: dict | None = None  # set once the run finished: no more looks
        self.listeners = 0
        self.changed = asyncio.Event()  # replaced after each look; waiters hold the old one

    def update(self, snap: Snapshot | None) -> None:
        if snap is not None:
            self.rows += [serialize_epoch(r) for r in snap.rows]
            self.status, self.run = snap.status, snap.run
            self.batch = (snap.progress or {}).get("batch")
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()


class StreamHub:
    """The open streams: how many, one feed per watched run, and the one poller that reads them all."""

    def __init__(self, engine, max_streams: int, lifetime: float):
        self.engine, self.max_streams, self.lifetime = engine, max_streams, lifetime
        self.open = 0
        self.feeds: dict[int, RunFeed] = {}
        self.task: asyncio.Task | None = None
        self.signal: Signal | None = None  # made by the poller, in the event loop

    def join(self, run_id: int) -> RunFeed:
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = RunFeed(run_id)
        feed.listeners += 1
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.poll())
        return feed

    def leave(self, feed: RunFeed) -> None:
        feed.listeners -= 1
        if feed.listeners <= 0 and self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]

    async def poll(self) -> None:
        """After each change signal (or backstop timeout), look at every watched run that has not finished; stop
        when nobody watches."""
        loop = asyncio.get_running_loop()
        if self.signal is None or getattr(self.signal, "loop", loop) is not loop:  # a new event loop (tests)
            if self.signal is not None:
                self.signal.close()
            self.signal = signal_for(self.engine)
        wait = BACKSTOP_SECONDS if type(self.signal) is not Signal else POLL_SECONDS
        while True:
            watched = {run_id: len(f.rows) for run_id, f in self.feeds.items() if f.run is None}
            if not watched:
                if not self.feeds:
                    return
            else:
                try:
                    snaps = await run_in_threadpool(take_snapshots, self.engine, watched)
                except Exception:  # the database went away for a moment: the streams wait, the next look retries
                    snaps = None
                for run_id in watched:
                    if (feed := self.feeds.get(run_id)) is not None and snaps is not None:
                        feed.update(snaps.get(run_id))
            await asyncio.sleep(MIN_GAP_SECONDS)
            await self.signal.wait(wait if watched else MIN_GAP_SECONDS * 20)


async def stream_slot(request: Request):
    """Dependency holding one of the max_streams slots while the stream is open; 503 with Retry-After when full."""
    hub: StreamHub = request.app.state.streams
    if hub.open >= hub.max_streams:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{hub.max_streams} event streams are open already",
                            headers={"Retry-After": "5"})
    hub.open += 1
    try:
        yield
    finally:
        hub.open -= 1


def resume_point(last_event_id: str | None) -> int:
    """The epoch-row ordinal a reconnecting client saw last; 0 (from the start) for anything that is not one."""
    value = (last_event_id or "").strip()
    return int(value) if value.isdigit() and len(value) <= 15 and int(value) <= MAX_EVENT_ID else 0


async def run_events(hub: StreamHub, run_id: int, after: int = 0):
    """Yield events until the run has finished and every row was sent, or the stream's lifetime is over."""
    feed, sent = hub.join(run_id), after
    last_status, last_batch = None, None
    deadline = time.monotonic() + hub.lifetime
    try:
        yield ServerSentEvent(retry=RETRY_MS)
        while True:
            changed = feed.changed  # taken before reading, so a poll in between is not missed
            if feed.status is not None:
                for row in feed.rows[sent:]:
                    sent += 1
                    # the id is the row's ordinal: Last-Event-ID resumes after it
                    yield ServerSentEvent(data=row, event="epoch", id=str(sent))
                if feed.batch is not None and feed.batch != last_batch and feed.status == RunStatus.running:
                    last_batch = feed.batch
                    yield ServerSentEvent(data=feed.batch, event="progress")
                if feed.status != last_status:
                    last_status = feed.status
                    yield ServerSentEvent(data=feed.run or {"id": run_id, "status": feed.status}, event="status")
                if feed.run is not None:
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                return  # the client reconnects with Last-Event-ID
            try:
                await asyncio.wait_for(changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                pass
    finally:
        hub.leave(feed)

