"""Server-sent events for one run: stored epoch rows, then new rows, progress and the status change.

One poller per run (a RunFeed) reads the database every POLL_SECONDS while anyone listens, however many streams
are open on that run; each stream sends what the feed holds past its own position. At most max_streams streams are
open at once (then 503), and each closes after stream_lifetime seconds: the browser's EventSource (and
`fitboard submit --follow`) reconnects with Last-Event-ID and carries on where it stopped.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from fastapi.sse import ServerSentEvent
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.core.status import FINISHED, RunStatus
from app.services.serializers import serialize_epoch, serialize_run
from app.store.models import EpochRow, Run
from app.store.runs import list_epochs

POLL_SECONDS = 0.1  # how often a feed looks for new rows: commit-to-client latency is about half this
RETRY_MS = 1000  # how long a client waits before reconnecting
MAX_EVENT_ID = 10**15  # Last-Event-ID is an epoch-row ordinal; anything else is ignored (the stream starts over)


@dataclass
class Snapshot:
    """What changed since the feed's last look: new epoch rows, the progress and the status."""

    rows: list[EpochRow]
    status: str
    progress: dict | None
    run: dict | None  # the full run, only once it finished


def take_snapshot(engine, run_id: int, after: int) -> Snapshot:
    """Epoch rows past the first `after` (rows are only ever appended in (stage, epoch) order), and the run state."""
    with Session(engine) as session:
        rows = list_epochs(session, run_id, after)
        run = session.get(Run, run_id)
        finished = run.status in FINISHED
        return Snapshot(rows, str(run.status), run.progress, serialize_run(run) if finished else None)


class RunFeed:
    """One run as its streams see it: every epoch row so far, the status, the latest batch progress."""

    def __init__(self, hub: "StreamHub", run_id: int):
        self.hub, self.run_id = hub, run_id
        self.rows: list[dict] = []
        self.status: str | None = None
        self.batch: dict | None = None
        self.run: dict | None = None  # set once the run finished: the feed stops polling
        self.listeners = 0
        self.changed = asyncio.Event()  # replaced after each poll; waiters hold the old one
        self.task: asyncio.Task | None = None

    async def poll(self) -> None:
        """Read the run until it finished or nobody listens; wake the streams after each read."""
        try:
            while self.listeners and self.run is None:
                snap = await run_in_threadpool(take_snapshot, self.hub.engine, self.run_id, len(self.rows))
                self.rows += [serialize_epoch(r) for r in snap.rows]
                self.status, self.run = snap.status, snap.run
                self.batch = (snap.progress or {}).get("batch")
                self._wake()
                if self.run is None:
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            if self.hub.feeds.get(self.run_id) is self:
                del self.hub.feeds[self.run_id]
            self._wake()

    def _wake(self) -> None:
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()


class StreamHub:
    """The open streams: how many, and one feed per run being watched."""

    def __init__(self, engine, max_streams: int, lifetime: float):
        self.engine, self.max_streams, self.lifetime = engine, max_streams, lifetime
        self.open = 0
        self.feeds: dict[int, RunFeed] = {}

    def join(self, run_id: int) -> RunFeed:
        feed = self.feeds.get(run_id)
        if feed is None or feed.task is None or feed.task.done():
            feed = self.feeds[run_id] = RunFeed(self, run_id)
        feed.listeners += 1
        if feed.task is None:
            feed.task = asyncio.get_running_loop().create_task(feed.poll())
        return feed

    def leave(self, feed: RunFeed) -> None:
        feed.listeners -= 1  # the poller stops at its next look when this was the last one


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
            if feed.task is not None and feed.task.done() and feed.run is None:
                return  # the poller failed (the database went away?): the client reconnects and tries again
            try:
                await asyncio.wait_for(changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                pass
    finally:
        hub.leave(feed)

