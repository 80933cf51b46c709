"""Server-sent events for one run: stored epoch rows, then new rows, progress and the status change."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from fastapi import Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.core.status import FINISHED, RunStatus
from app.services.serializers import serialize_epoch, serialize_run
from app.store.models import EpochRow, Run
from app.store.runs import list_epochs

POLL_SECONDS = 0.1  # how often the stream looks for new rows: commit-to-client latency is about half this
KEEPALIVE_SECONDS = 15.0


@dataclass
class Snapshot:
    """What changed since the client's last event: new epoch rows, the progress and the status."""

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


def sse(data: dict, event: str, event_id: int | None = None) -> str:
    """One server-sent event frame."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def run_events(request: Request, run_id: int, after: int = 0):
    """Yield SSE frames until the run has finished and every row was sent (or the client left)."""
    engine, sent = request.app.state.engine, after
    last_status, last_progress, quiet_since = None, None, time.monotonic()
    yield "retry: 1000\n\n"
    while not await request.is_disconnected():
        snap = await run_in_threadpool(take_snapshot, engine, run_id, sent)
        for row in snap.rows:
            sent += 1
            # the id is the row's ordinal: Last-Event-ID resumes after it
            yield sse(serialize_epoch(row), "epoch", sent)
        batch = (snap.progress or {}).get("batch")
        if batch is not None and batch != last_progress and snap.status == RunStatus.running:
            last_progress = batch
            yield sse(batch, "progress")
        if snap.status != last_status:
            last_status = snap.status
            yield sse(snap.run or {"id": run_id, "status": snap.status}, "status")
        if snap.run is not None:
            return
        if snap.rows or batch is not None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)
