"""The Celery app as the web side sees it: configured from Settings, publishes runs by task name only."""
from __future__ import annotations

import time

from celery import Celery
from sqlalchemy.exc import IntegrityError, OperationalError

from fitboard.app.core.settings import Settings, get_settings
from fitboard.app.store.runs import DEFAULT_QUEUE

TRAIN_TASK = "fitboard.train_run"
SQLA = "sqla+"  # a broker URL for kombu's SQLAlchemy transport, the embedded broker's
# That transport with a wait a stopping worker cuts short; named, not imported: kombu imports it on first connection.
EMBEDDED_TRANSPORT = "fitboard.app.services.embedded_broker:Transport"


def broker_url(settings: Settings) -> str:
    """FITBOARD_BROKER_URL, else the embedded broker: kombu's SQLAlchemy transport on a SQLite file."""
    return settings.broker_url or f"{SQLA}sqlite:///{settings.home / 'broker.sqlite'}"


def make_celery(settings: Settings) -> Celery:
    """A Celery app with fitboard's delivery guarantees: JSON only, late acks, one task at a time."""
    settings.home.mkdir(parents=True, exist_ok=True)
    url, kind = broker_url(settings), None
    transport = {"visibility_timeout": settings.visibility_timeout}
    if url.startswith(SQLA):
        # our subclass of kombu's SQLAlchemy transport: kombu takes a transport's class only by name, not from a URL
        url, kind = url.removeprefix(SQLA), EMBEDDED_TRANSPORT
        if url.startswith("sqlite"):
            transport = {"connect_args": {"timeout": 30}}  # SQLite busy timeout: several workers poll one file
    app = Celery("fitboard", broker=url, set_as_current=False)
    app.fitboard_embedded = kind is not None
    app.fitboard_settings = settings  # the dispatcher's policy settings travel with the publisher
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True, task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1, task_default_queue=DEFAULT_QUEUE,
        broker_transport_options=transport, broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False, worker_send_task_events=False, broker_transport=kind,
    )
    return app


# A publish to a broker that is down must fail fast (the run is stored; the reconciler sends it later), not hang the
# request or the reconciler on kombu's default retries.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}


class Publisher:
    """Sends stored runs to a broker queue (call only after the runs' rows are committed)."""

    def __init__(self, celery: Celery, queue: str = DEFAULT_QUEUE):
        self.celery, self.queue = celery, queue  # queue: where new runs go

    @property
    def settings(self) -> Settings:
        """The settings its Celery app was made with (the environment's for one made elsewhere)."""
        return getattr(self.celery, "fitboard_settings", None) or get_settings()

    def reachable(self) -> bool:
        """Whether the broker answers now (one quick connection; a submit that sent nothing says so)."""
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5, interval_max=0.5)
            return True
        except Exception:  # as for publish: any failure means "not reachable"
            return False

    def publish(self, run_id: int, queue: str | None = None) -> None:
        """Send one run's message (to its own queue when given); raises when the broker does not take it."""
        self.celery.send_task(TRAIN_TASK, args=[run_id], queue=queue or self.queue, retry=True,
                              retry_policy=PUBLISH_RETRY)


def declare_queues(celery: Celery, queues: list[str], tries: int = 5) -> None:
    """Make sure the broker has these queues before a worker consumes them.

    kombu's SQLAlchemy transport (the embedded broker) creates a queue's row on first use, guarded by a lock of its
    own process only: two workers started together on a new queue both insert it, and one dies of the
    IntegrityError (kombu_queue.name). Declared here first, a retry finds the row the other process made. Redis and
    AMQP declare idempotently: nothing to do there."""
    if not getattr(celery, "fitboard_embedded", False):
        return
    for attempt in range(tries):
        try:
            with celery.connection_for_write() as conn:
                for queue in queues:
                    conn.default_channel._new_queue(queue)
            return
        except (IntegrityError, OperationalError):
            if attempt == tries - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
