"""The embedded broker's transport: kombu's SQLAlchemy transport, whose idle wait ends when its worker is told to stop.

Celery's loop for a polling transport asks `drain_events(timeout=2.0)` and checks for a shutdown request only between
calls, and once more after it: an idle worker took about 5 s to stop on SIGTERM or Ctrl-C, two full waits of kombu's
1 s polls. Here a stop request (`stop_waiting`, set from the worker's shutdown signal) ends the wait within a slice,
and the loop's last call fetches nothing, so no run is taken by a worker on its way out.
"""
from __future__ import annotations

import socket
import time
from queue import Empty

from kombu.transport import sqlalchemy

from fitboard.app.core.signal_stop import SignalStop


class Transport(sqlalchemy.Transport):
    """kombu's SQLAlchemy transport with a wait that a stop request cuts short."""

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self.stop = SignalStop()  # set inside a signal handler, which must not take a lock

    def stop_waiting(self) -> None:
        """From now on, return from drain_events at once (signal-safe)."""
        self.stop.set()

    def drain_events(self, connection, timeout=None):
        """kombu's virtual drain loop, its poll sleep a wait that the stop request ends."""
        started = time.monotonic()
        poll = self.polling_interval or 0
        if timeout is not None:
            poll = min(poll, timeout)
        while not self.stop.is_set():
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and time.monotonic() - started >= timeout:
                    break
            self.stop.wait(poll)
        raise socket.timeout()
