"""Server-sent events for one run: stored epoch rows, then new rows, progress and the status change.

One poller for the whole process reads every watched run (one query, plus one per run with new rows) whenever the
database says something was committed (app.web.changes: LISTEN/NOTIFY on PostgreSQL, the WAL file on SQLite), and
at least every BACKSTOP_SECONDS, however many streams are open; each run has one RunFeed, and each stream sends what
its run's feed holds past its own position. The poller's thread encodes each new row once, as the event's bytes, for
every stream of the run: a stream writes what it has not sent yet in one chunk, with no per-event work in the event
loop (under load the loop and the GIL are what a new row waits for). At most max_streams streams are open at once
(then 503), each sends a comment line after PING_SECONDS without an event, and each closes after stream_lifetime
seconds: the browser's EventSource (and `fitboard submit --follow`) reconnects with Last-Event-ID and carries on
where it stopped.
"""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from fastapi.responses import StreamingResponse
from fastapi.sse import format_sse_event
from sqlalchemy import func, select
from sqlmodel import Session

from fitboard.app.core.jsonsafe import json_safe
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
PING_SECONDS = 15.0  # a comment line after this long without an event, so proxies keep an idle stream open
CHUNK_EVENTS = 256  # the most events in one write: a long run's stored rows go out in a few bounded chunks
PING = b": ping\n\n"


def sse(event: str | None = None, data=None, id: str | None = None, retry: int | None = None) -> bytes:
    """One event in the wire format; data as JSON, a NaN or infinity as null."""
    text = None if data is None else json.dumps(json_safe(data))
    return format_sse_event(data_str=text, event=event, id=id, retry=retry)


# The route's 200 in the OpenAPI document: one item per event (OpenAPI 3.2's itemSchema, as FastAPI writes it)
EVENTS_200 = {"description": "Successful Response", "content": {"text/event-stream": {"itemSchema": {
    "type": "object", "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
                                     "retry": {"type": "integer", "minimum": 0}}}}}}


class EventStream(StreamingResponse):
    """A text/event-stream of ready-made event bytes, never cached or buffered by a proxy."""

    media_type = "text/event-stream"

    def __init__(self, content, status_code: int = 200):
        super().__init__(content, status_code, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@dataclass
class Snapshot:
    """What changed in one run since the last look: its new epoch rows as events, the batch progress and status."""

    events: list[bytes]  # `epoch` events, each with its row's ordinal as id
    status: str
    batch: dict | None
    progress: bytes | None  # the batch as a `progress` event
    run: dict | None  # the full run, only once it finished


def take_snapshots(engine, known: dict[int, int]) -> dict[int, Snapshot]:
    """For each watched run (id -> rows already held): its new epoch rows (encoded), status and progress. One query
    for all the runs, plus one per run that has new rows or finished, however many streams watch them."""
    rows_of = select(func.count()).where(EpochRow.run_id == Run.id).correlate(Run).scalar_subquery()
    with Session(engine) as session:
        states = session.exec(select(Run.id, Run.status, Run.progress, rows_of).where(Run.id.in_(list(known)))).all()
        out = {}
        for run_id, status, progress, count in states:
            held = known[run_id]
            rows = list_epochs(session, run_id, held) if count > held else []
            events = [sse("epoch", serialize_epoch(r), str(held + i)) for i, r in enumerate(rows, 1)]
            done = serialize_run(session.get(Run, run_id)) if status in FINISHED else None
            batch = (progress or {}).get("batch")
            out[run_id] = Snapshot(events, str(status), batch, None if batch is None else sse("progress", batch),
                                   done)
        return out


class RunFeed:
    """One run as its streams see it: every epoch row so far (as event bytes), the status, the latest progress."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.events: list[bytes] = []
        self.status: str | None = None
        self.batch: dict | None = None
        self.progress: bytes | None = None
        self.run: dict | None = None  # set once the run finished: no more looks
        self.listeners = 0
        self.changed = asyncio.Event()  # replaced after each look; waiters hold the old one

    def update(self, snap: Snapshot | None) -> None:
        if snap is not None:
            self.events += snap.events
            self.status, self.run = snap.status, snap.run
            self.batch, self.progress = snap.batch, snap.progress
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
        # The looks run in a thread of their own: never queued behind the routes' threads, never a thread start
        self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fitboard-streams")

    def join(self, run_id: int) -> RunFeed:
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = RunFeed(run_id)
        feed.listeners += 1
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.poll())
        return feed

    def close(self) -> None:
        """At the app's shutdown: the poller stops, the change signal and the reader thread are let go (a new reader
        waits, threadless, should the app start again)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.signal is not None:
            self.signal.close()
            self.signal = None
        self.reader.shutdown(wait=False, cancel_futures=True)
        self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fitboard-streams")

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
            feeds = {run_id: f for run_id, f in self.feeds.items() if f.run is None}
            watched = {run_id: len(f.events) for run_id, f in feeds.items()}
            if not watched:
                if not self.feeds:
                    return
            else:
                try:
                    snaps = await loop.run_in_executor(self.reader, take_snapshots, self.engine, watched)
                except Exception:  # the database went away for a moment: the streams wait, the next look retries
                    snaps = None
                for run_id, feed in feeds.items():
                    # a feed dropped and made anew during the look starts from its own first row, next look
                    if snaps is not None and self.feeds.get(run_id) is feed:
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
    return int(value) if value.isdecimal() and len(value) <= 15 and int(value) <= MAX_EVENT_ID else 0


async def run_events(hub: StreamHub, run_id: int, after: int = 0):
    """Yield event bytes until the run has finished and every row was sent, or the stream's lifetime is over."""
    feed, sent = hub.join(run_id), after
    last_status, last_batch = None, None
    deadline = time.monotonic() + hub.lifetime
    try:
        yield sse(retry=RETRY_MS)
        wrote = time.monotonic()
        while True:
            changed = feed.changed  # taken before reading, so a poll in between is not missed
            out: list[bytes] = []
            if feed.status is not None:
                out += feed.events[sent:]  # the id of each is the row's ordinal: Last-Event-ID resumes after it
                sent = max(sent, len(feed.events))
                if feed.batch is not None and feed.batch != last_batch and feed.status == RunStatus.running:
                    last_batch = feed.batch
                    out.append(feed.progress)
                if feed.status != last_status:
                    last_status = feed.status
                    out.append(sse("status", feed.run or {"id": run_id, "status": feed.status}))
            for start in range(0, len(out), CHUNK_EVENTS):
                yield b"".join(out[start:start + CHUNK_EVENTS])
            now = time.monotonic()
            if out:
                wrote = now
            if feed.run is not None:
                return
            if now >= deadline:
                return  # the client reconnects with Last-Event-ID
            if now - wrote >= PING_SECONDS:
                yield PING
                wrote = now
            try:
                await asyncio.wait_for(changed.wait(), timeout=min(deadline, wrote + PING_SECONDS) - now)
            except asyncio.TimeoutError:
                pass
    finally:
        hub.leave(feed)
