"""Keeping every run moving: publish after commit (noting a broker that is down), the reconciler that re-sends
what the broker lost, manual retry, and the worker's own repairs."""
from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlmodel import Session

from fitboard.app.core.settings import Settings
from fitboard.app.services.queue import Publisher
from fitboard.app.store import recovery
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from fitboard.app.store.tracked import fail_silent_tracked

log = logging.getLogger(__name__)
BROKER_DOWN_NOTE = "broker unreachable; it will be sent when the broker is back"


def publish(session: Session, publisher: Publisher, runs: list[tuple[int, str]],
            republished: bool = False) -> str | None:
    """Send committed runs, as (id, queue), to the broker and record which went; None when all did, else the note.

    Stops at the first failure: with the broker down every send would wait out its own retries. Whatever was not
    sent keeps published_at empty, and the reconciler sends it when the broker answers again."""
    sent, note = [], None
    for run_id, queue in runs:
        try:
            publisher.publish(run_id, queue)
        except Exception as exc:  # kombu raises OperationalError, redis ConnectionError, or worse: all mean "not sent"
            log.warning("could not publish run %s: %s", run_id, exc)
            note = BROKER_DOWN_NOTE
            break
        sent.append(run_id)
    recovery.mark_published(session, sent, republished=republished)
    session.commit()
    return note


def publish_committed(session: Session, publisher: Publisher, runs: list[Run]) -> str | None:
    """Commit the stored runs, then dispatch their queues (a worker must never see a run id before its row exists):
    they are sent as free workers can start them, in the fair queue's order; the note says when the broker is down."""
    queues = sorted({r.queue for r in runs})
    session.commit()
    from fitboard.app.services.dispatch import dispatch_stored  # imported here: dispatch sends through publish()
    return dispatch_stored(session.get_bind(), publisher, queues)


def reconcile(engine: Engine, publisher: Publisher, settings: Settings, holder: str, every: float) -> list[int]:
    """One reconciler pass, if this process holds the lease: send again every queued run whose message may be gone,
    and dispatch what free workers can start.
    `every` is how often the caller runs a pass; the lease outlives three of them, so a holder that dies hands
    over within that. Returns the ids sent."""
    with session_scope(engine) as session:
        if not recovery.acquire_lease(session, holder, ttl=3 * every):
            return []
    with session_scope(engine) as session:
        lost = fail_silent_tracked(session, settings.tracked_lost_after)
        if lost:
            log.warning("reconciler: tracked runs %s failed as lost (silent %.0f s)", lost, settings.tracked_lost_after)
    with session_scope(engine) as session:
        due = recovery.due_for_publish(session, settings.republish_after, settings.worker_lost_after)
        if due:
            log.info("reconciler: sending runs %s again", [run_id for run_id, _ in due])
            publish(session, publisher, due, republished=True)
    # Waiting runs go out as workers free up; a dispatch a process never finished (it died) is made up for here.
    from fitboard.app.services.dispatch import dispatch  # imported here: dispatch imports this module
    sent, _ = dispatch(engine, publisher, wait=0.0, settings=settings)
    # Searches move on from the database too: a trial whose worker's own pass never ran (it died) is told here.
    from fitboard.app.services.search_driver import drive  # imported here: search_driver imports this module
    drive(engine, publisher)
    return [run_id for run_id, _ in due] + sent
