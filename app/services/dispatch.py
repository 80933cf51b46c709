"""The dispatcher: runs wait in the database, and each worker queue's broker gets only what its free workers can
start (one message each, plus settings.dispatch_buffer more), chosen by the fair-share policy at that moment.

Called after runs are stored (publish_committed), by a worker when it is free (start-up, each run's end, each idle
heartbeat), and by every reconciler pass. published_at stays the truth: a message is marked sent only after the
broker took it, so a dispatcher that dies mid-pass leaves at worst a duplicate message (harmless: the claim is one
conditional UPDATE) or an unmarked run (sent by the next pass). One dispatcher at a time holds the dispatch lease,
so two never fill the same free slots; a pass that finds it taken waits briefly, then leaves it to the holder and
the next reconciler pass.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select
from sqlmodel import Session

from fitboard.app.core.fairshare import decayed_usage, line, start_in
from fitboard.app.core.settings import Settings
from fitboard.app.services.queue import Publisher
from fitboard.app.services.recovery import BROKER_DOWN_NOTE, publish
from fitboard.app.services.serializers import serialize_run
from fitboard.app.store import dispatch as store
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Project, Run, utcnow
from fitboard.app.store.people_models import Person

log = logging.getLogger(__name__)
LEASE_TTL = 10.0  # a dispatcher that dies mid-pass blocks the others this long at most (a pass takes milliseconds)
LEASE_WAIT = 5.0  # how long a dispatch after a write waits for another pass to end
DEFAULT_CHARGE = 300.0  # seconds a started run is expected to use, before any run of its queue has finished
USAGE_HORIZON = 10  # half-lives of attempts read for the usage (older ones weigh under 1/1000)


@dataclass
class Line:
    """One worker queue as the policy orders it: its waiting runs in the order they start (the eligible ones, then
    those a project quota holds), seconds until each should start, and the queue's workers."""

    queue: str
    order: list[store.Queued] = field(default_factory=list)
    held: set[int] = field(default_factory=set)
    start_in: list[float | None] = field(default_factory=list)
    live: int = 0
    idle: int = 0

    def position(self, run_id: int) -> int | None:
        """1 = the next to start; None for a run not in this line."""
        return next((i + 1 for i, q in enumerate(self.order) if q.run.id == run_id), None)


def settings_of(publisher: Publisher) -> Settings:
    """The settings the publisher's Celery app was made with."""
    return publisher.settings


def queue_line(session: Session, settings: Settings, queue: str) -> Line:
    """The queue's line by the policy (fitboard.app.core.fairshare.line), with the fleet's figures."""
    now = utcnow()
    waiting = store.waiting(session, queue)
    horizon = now - timedelta(seconds=USAGE_HORIZON * settings.fair_share_half_life)
    usage = decayed_usage(store.spells(session, horizon), store.seconds(now), settings.fair_share_half_life,
                          settings.fair_share)
    typical = store.typical_length(session, queue)
    quotas = store.project_ids(session, settings.quotas)
    eligible, held = line([q.run for q in waiting], usage, settings.fair_share, store.running_by_project(session),
                          quotas, charge=typical or DEFAULT_CHARGE)
    by_id = {q.run.id: q for q in waiting}
    # Messages already in the broker start first, in the order they were sent, whatever the policy says now (a
    # higher-priority run or a lighter user's that came after them): a place in line counts them.
    sent = sorted((w for w in (*eligible, *held) if by_id[w.id].published), key=lambda w: (by_id[w.id].sent_at, w.id))
    eligible = [*sent, *(w for w in eligible if not by_id[w.id].published)]
    held = [w for w in held if not by_id[w.id].published]
    if quotas:
        eligible, held = _quota_again(eligible, held, quotas, Counter(store.running_by_project(session))
                                      + Counter(store.sent_by_project(session, queue)), len(sent))
    live, busy = store.fleet(session, queue, settings.worker_lost_after)
    idle = len(live) - len(busy)
    free_in = [*store.running_left(session, queue, typical), *([0.0] * idle)][:len(live)]
    starts = start_in(len(eligible), free_in, typical) + [None] * len(held)
    return Line(queue, [by_id[w.id] for w in (*eligible, *held)], {w.id for w in held}, starts, len(live), idle)


def _quota_again(eligible: list, held: list, quotas: dict[int, int], started: Counter, n_sent: int):
    """(eligible, held) once the runs already sent count against their project's quota before any other: the
    policy may have placed an unsent run (a higher priority) ahead of a sent one, and it does not see the runs
    sent to the other queues; neither may start a project past its quota."""
    kept, more = [], []
    for i, w in enumerate(eligible):
        limit = quotas.get(w.project)
        if i >= n_sent and limit is not None and started[w.project] >= limit:
            more.append(w)
            continue
        kept.append(w)
        started[w.project] += 1
    return kept, [*more, *held]


def _choose(session: Session, settings: Settings, queue: str) -> list[int]:
    """The runs to publish now: the first unpublished eligible ones, as many as the idle workers have room for."""
    live, busy = store.fleet(session, queue, settings.worker_lost_after)
    idle = len(live) - len(busy)
    room = idle * (1 + settings.dispatch_buffer) - store.in_broker(session, queue)
    if room <= 0:
        return []
    found = queue_line(session, settings, queue)
    return [q.run.id for q in found.order if not q.published and q.run.id not in found.held][:room]


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


def _lease(engine: Engine, holder: str, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        with session_scope(engine) as session:
            if store.take_lease(session, holder, LEASE_TTL):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def dispatch(engine: Engine, publisher: Publisher, queues: list[str] | None = None, wait: float = LEASE_WAIT,
             settings: Settings | None = None, holder: str | None = None) -> tuple[list[int], str | None]:
    """One dispatch pass over the given queues (default: every queue with a waiting run): (ids sent, the note when
    the broker did not take them). holder: a caller's name for the lease when it already holds it."""
    settings = settings or settings_of(publisher)
    holder = holder or _holder()
    lines.clear()  # runs were stored or freed: this process's next read orders its lines afresh
    if not _lease(engine, holder, wait):
        return [], None  # another pass is running: it, or the next reconciler pass, sends what is due
    sent, note = [], None
    try:
        with session_scope(engine) as session:
            for queue in queues if queues is not None else store.busy_queues(session):
                ids = _choose(session, settings, queue)
                if ids:
                    log.info("dispatch: sending runs %s to queue %s", ids, queue)
                    note = publish(session, publisher, [(i, queue) for i in ids]) or note
                    sent += ids
    finally:
        with session_scope(engine) as session:
            store.release_lease(session, holder)
    return sent, note


def dispatch_stored(engine: Engine, publisher: Publisher, queues: list[str]) -> str | None:
    """After runs were committed: dispatch their queues; the note when the broker is unreachable (said even when no
    worker was free to send to, so a submit tells its caller the broker is down)."""
    sent, note = dispatch(engine, publisher, queues)
    if note is None and not sent and not publisher.reachable():
        note = BROKER_DOWN_NOTE
    return note


def _iso_in(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


class LineCache:
    """Each queue's line as the read paths (lists, a run's JSON) last computed it, for LINE_TTL seconds, or ten times
    as long as it took to order (then ordered afresh in the background, answered meanwhile while under LINE_STALE).

    Ordering a long line costs tens of milliseconds (thousands of waiting runs, the usage of every recent attempt):
    paid on every runs-list page that shows a queued run, it cost every list 100 ms at 100,000 runs. A place in line
    is an estimate that moves as workers claim runs, so a line a second old is as true; a run the cached line does
    not hold (just submitted) and this process's own writes (dispatch, a priority change) compute it afresh. The
    dispatcher itself never reads the cache."""

    def __init__(self):
        self._lines: dict[tuple[str, str], tuple[float, Line, dict[int, int], datetime, float]] = {}
        self._lock = threading.Lock()
        self._refreshing: set[tuple[str, str]] = set()
        self._generation = 0  # each clear: a line ordered before it is not kept

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()
            self._generation += 1

    def get(self, session: Session, settings: Settings, queue: str, run_ids: set[int]):
        """(line, run id -> index, when it was computed), computed again when missing one of run_ids or older than
        LINE_STALE; between LINE_TTL and LINE_STALE old it is answered as it is and ordered afresh in the background
        (ordering a line of MAX_LINE runs takes 0.2-0.4 s at a million runs: no list request waits for it)."""
        key = (str(session.get_bind().url), queue)  # one process may serve several databases (tests, tools)
        with self._lock:
            cached = self._lines.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < max(LINE_STALE, 20 * cached[4]):
            _, found, index, at, took = cached
            capped = len(found.order) >= store.MAX_LINE  # runs past a full line have no place yet: not a miss
            if capped or run_ids <= index.keys():
                # a line that took long to order is kept longer: its refreshes take at most a tenth of a core
                if now - cached[0] >= max(LINE_TTL, 10 * took):
                    self._refresh(session.get_bind(), settings, queue, key)
                return found, index, at
        return self._compute(session, settings, queue, key)

    def _compute(self, session: Session, settings: Settings, queue: str, key: tuple[str, str]):
        now, generation = time.monotonic(), self._generation
        found = queue_line(session, settings, queue)
        index = {q.run.id: i for i, q in enumerate(found.order)}
        at = datetime.now(timezone.utc)
        with self._lock:
            if generation == self._generation:
                self._lines[key] = (now, found, index, at, time.monotonic() - now)
        return found, index, at

    def _refresh(self, engine: Engine, settings: Settings, queue: str, key: tuple[str, str]) -> None:
        """Order the line afresh in a thread of its own (one at a time per line)."""
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run():
            try:
                with session_scope(engine) as session:
                    self._compute(session, settings, queue, key)
            except Exception:  # the next read computes it itself
                log.debug("refreshing the line of queue %s failed", queue, exc_info=True)
            finally:
                with self._lock:
                    self._refreshing.discard(key)
        threading.Thread(target=run, name="fitboard-line", daemon=True).start()


LINE_TTL = 1.0
LINE_STALE = 10.0  # seconds: an older line is ordered afresh before it is answered
lines = LineCache()


def places(engine: Engine, settings: Settings, runs: list[Run]) -> dict[int, dict]:
    """run id -> {queue_position, estimated_start} for each queued run given (an unscoped read: a line holds every
    project's runs); lines come from the cache (LineCache)."""
    queued = [r for r in runs if r.status == "queued" and (r.kind or "queued") == "queued"]
    if not queued:
        return {}
    out = {}
    with session_scope(engine) as session:
        for queue in sorted({r.queue for r in queued}):
            mine = [r for r in queued if r.queue == queue]
            found, index, at = lines.get(session, settings, queue, {r.id for r in mine})
            for r in mine:
                if r.id in index:
                    i = index[r.id]
                    start = found.start_in[i]
                    when = None if start is None else (at + timedelta(seconds=start)).isoformat()
                    out[r.id] = {"queue_position": i + 1, "held_by_quota": r.id in found.held, "estimated_start": when}
    return out


def runs_json(engine: Engine, settings: Settings, runs: list[Run], full: bool = True) -> list[dict]:
    """Runs as the API returns them, each queued one with its queue_position and estimated_start."""
    found = places(engine, settings, runs)
    return [serialize_run(r, full, found.get(r.id)) for r in runs]


def run_json(engine: Engine, settings: Settings, run: Run) -> dict:
    """One run in full, with its place in line while queued."""
    return runs_json(engine, settings, [run])[0]


def overview(engine: Engine, settings: Settings, visible: set[int] | None, limit: int = 200) -> list[dict]:
    """Every queue with a waiting run or a live worker: its workers and its line (the first `limit` runs), each
    run with its person, project, priority and estimated start; runs of projects outside `visible` (None: all) are
    counted but not named, nor is when they were submitted."""
    with session_scope(engine) as session:
        live_queues = {q for w in store.live_worker_queues(session, settings.worker_lost_after) for q in w.split(",")}
        queues = sorted(set(store.busy_queues(session)) | live_queues)
        lines = [queue_line(session, settings, q) for q in queues]
        ids = [q.run.id for found in lines for q in found.order[:limit]]
        rows = {r.id: r for r in session.exec(select(Run.id, Run.name, Run.project_id, Run.launched_by,
                                                     Run.priority, Run.created_at).where(Run.id.in_(ids))).all()}
        projects = dict(session.exec(select(Project.id, Project.name)).all())
        people = dict(session.exec(select(Person.id, Person.name)).all())
    out = []
    for found in lines:
        entries = []
        for i, q in enumerate(found.order[:limit]):
            row = rows.get(q.run.id)
            shown = row is not None and (visible is None or row.project_id in visible)
            entries.append({"position": i + 1, "run_id": q.run.id if shown else None,
                            "name": row.name if shown else None, "priority": q.run.priority,
                            "person": people.get(q.run.person) if shown else None,
                            "project": projects.get(q.run.project) if shown else None,
                            "sent": q.published, "held_by_quota": q.run.id in found.held,
                            "estimated_start": _iso_in(found.start_in[i]),
                            "waiting_since": row.created_at.isoformat() if shown else None})
        out.append({"queue": found.queue, "workers": found.live, "idle_workers": found.idle,
                    "waiting": len(found.order), "runs": entries})
    return out
