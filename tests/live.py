"""The web app under a real uvicorn server in a thread, on a free port: for tests that need real HTTP (chunked
bodies, concurrent event streams, the fuzzer)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from fastapi import FastAPI

from fitboard.app.core.settings import Settings
from fitboard.app.web.app import create_app
from tests.served import free_port


@contextmanager
def live_app(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """(base URL, app) while a uvicorn server serves create_app(settings) on 127.0.0.1."""
    app, port = create_app(settings), free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)
