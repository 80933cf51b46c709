"""The embedded broker's transport: a stop request ends a worker's wait for a message at once and fetches nothing."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from kombu import Consumer, Producer, Queue

from fitboard.app.core.settings import Settings
from fitboard.app.services.embedded_broker import Transport
from fitboard.app.services.queue import make_celery


@pytest.fixture
def celery(tmp_path):
    """A Celery app on an embedded broker of its own (a SQLite file under tmp_path)."""
    return make_celery(Settings(home=tmp_path, broker_url=None))


def consume(conn, queue: Queue, got: list):
    """A consumer on queue that acknowledges and keeps each message's body in got."""
    def take(body, message):
        got.append(body)
        message.ack()

    return Consumer(conn.default_channel, [queue], callbacks=[take], accept=["json"])


def test_the_embedded_broker_and_an_explicit_sqla_url_use_the_stoppable_transport(tmp_path):
    for url, file in ((None, tmp_path / "broker.sqlite"), (f"sqla+sqlite:///{tmp_path / 'other.sqlite'}",
                                                          tmp_path / "other.sqlite")):
        app = make_celery(Settings(home=tmp_path, broker_url=url))
        assert app.fitboard_embedded
        with app.connection_for_read() as conn:
            assert type(conn.transport) is Transport
            conn.default_channel.queue_declare("q-file")
            assert conn.as_uri() == f"sqlite:///{file}" and file.stat().st_size > 0
    redis = make_celery(Settings(home=tmp_path, broker_url="redis://127.0.0.1:6379/0"))
    assert redis.conf.broker_transport is None and not redis.fitboard_embedded


def test_a_message_is_delivered_as_by_kombus_transport(celery):
    queue = Queue("q-deliver")
    with celery.connection_for_write() as conn:
        Producer(conn.default_channel).publish({"run": 7}, routing_key="q-deliver", declare=[queue],
                                              serializer="json")
    got: list = []
    with celery.connection_for_read() as conn, consume(conn, queue, got):
        conn.drain_events(timeout=10)
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.3)  # the queue is empty now: the wait ends at its timeout
    assert got == [{"run": 7}]


def test_a_stop_request_ends_the_wait_within_a_poll_and_fetches_nothing_after_it(celery):
    queue = Queue("q-stop")
    got: list = []
    with celery.connection_for_read() as conn, consume(conn, queue, got):
        stop = threading.Timer(0.3, conn.transport.stop_waiting)  # as the worker's shutdown signal does
        stop.start()
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=30)
        waited = time.monotonic() - started
        stop.join()
        # kombu's own loop waits out the whole timeout (Celery's: 2 s, twice); this one ends one slice after the
        # request (a wide bound: the machine may be loaded)
        assert 0.25 <= waited < 10, waited
        with celery.connection_for_write() as writer:
            Producer(writer.default_channel).publish({"run": 8}, routing_key="q-stop", declare=[queue],
                                                    serializer="json")
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=5)  # a worker on its way out takes no run
    assert got == []
    with celery.connection_for_read() as conn, consume(conn, queue, got):
        conn.drain_events(timeout=10)  # the message waited for the next worker: nothing lost
    assert got == [{"run": 8}]
