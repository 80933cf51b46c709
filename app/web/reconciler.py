"""The web process's reconciler thread: queued runs whose message may be gone are sent again, so a fleet whose
workers are all down still gets its runs re-sent the moment a broker answers (workers run the same pass)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fitboard.app.services.recovery import reconcile

log = logging.getLogger(__name__)


class ReconcilerThread(threading.Thread):
    """Runs one reconciler pass every settings.reconcile_interval seconds until stopped."""

    def __init__(self, app: FastAPI):
        super().__init__(name="fitboard-reconciler", daemon=True)
        self.app, self.stopping = app, threading.Event()
        self.holder = f"web:{socket.gethostname()}:{os.getpid()}"

    def run(self) -> None:
        state = self.app.state
        every = state.settings.reconcile_interval
        while not self.stopping.wait(every):
            try:
                reconcile(state.engine, state.publisher, state.settings, self.holder, every=every)
            except Exception:  # the database or broker is down: try again next round
                log.exception("reconciler pass failed")


@asynccontextmanager
async def reconciler_lifespan(app: FastAPI):
    """Start the reconciler with the app; on shutdown stop it and close the event streams' change signal (on
    PostgreSQL a LISTEN connection, which otherwise outlives the app and logs its loss when the database goes)."""
    thread = ReconcilerThread(app)
    if getattr(app.state, "reconciles", True):  # the event-stream process leaves it to the web process
        thread.start()
    try:
        yield
    finally:
        thread.stopping.set()
        streams = getattr(app.state, "streams", None)
        if streams is not None:
            streams.close()
