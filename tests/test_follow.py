"""The one event-stream reader (fitboard.follow.events) that `fitboard follow`, `submit --follow` and Run.follow()
share, against a real server: every epoch row once across the server's stream ends, a full server waited out, and
the command's table and exit code."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time

import httpx

from fitboard.app.core.events import ResultEvent
from fitboard.app.store.db import session_scope
from fitboard.app.store.runs import finish_run, record_epoch
from fitboard.follow import events
from fitboard.http import Http
from tests.api_fixtures import *  # noqa: F401,F403  settings
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_api import row, stored_run


def _finish_later(engine, run_id: int, delay: float) -> threading.Thread:
    """A third epoch row and then success, after delay seconds (the reader has reconnected by then)."""
    def finish():
        time.sleep(delay)
        with session_scope(engine) as s:
            record_epoch(s, run_id, row(0, 2, 0.8))
        with session_scope(engine) as s:
            finish_run(s, run_id, ResultEvent(metrics={"valid_loss": 0.5, "accuracy": 0.8, "error_rate": 0.2}),
                       worker="test-worker")
    thread = threading.Thread(target=finish, daemon=True)
    thread.start()
    return thread


def test_reader_waits_out_a_full_server_and_yields_each_row_once_across_stream_ends(settings):
    capped = settings.model_copy(update={"max_streams": 1, "stream_lifetime": 4.0})
    with live_app(capped) as (base, app):
        run_id = stored_run(app.state.engine, "running", epochs=2)
        http, seen, started = Http(base), [], time.monotonic()
        # The one stream slot is taken (until its 4 s lifetime ends): the reader's first try is a 503 with Retry-After.
        with httpx.stream("GET", f"{base}/api/v1/runs/{run_id}/events", timeout=10) as held:
            next(held.iter_lines())
            stream = events(http, run_id)
            first = next(stream)
        finisher = None
        for kind, data in itertools.chain([first], stream):
            seen.append((kind, data))
            if kind == "epoch" and data["epoch"] == 1 and finisher is None:
                finisher = _finish_later(app.state.engine, run_id, 5.0)  # a stream ends meanwhile
        http.close()
    assert time.monotonic() - started >= 5  # the server's Retry-After: 5 was honoured, not hammered
    assert [d["epoch"] for k, d in seen if k == "epoch"] == [0, 1, 2]  # each row once, though streams ended
    assert seen[-1][0] == "status" and seen[-1][1]["status"] == "succeeded"


def test_follow_command_prints_the_table_and_exits_by_the_runs_status(settings):
    with live_app(settings) as (base, app):
        done = stored_run(app.state.engine, "succeeded", epochs=2)
        env = {**os.environ, "FITBOARD_URL": base}
        cli = lambda *a: subprocess.run([sys.executable, "-m", "fitboard.worker.cli", *a], capture_output=True,  # noqa: E731
                                        text=True, env=env, timeout=120)
        followed = cli("follow", str(done))
        missing = cli("follow", "999")
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert lines[0].split() == ["stage", "epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time"]
    assert [line.split()[:2] for line in lines[1:3]] == [["1", "1"], ["1", "2"]]  # shown 1-based
    assert "validation: loss 0.8000  accuracy 0.7000" in followed.stdout and lines[-1] == f"run {done}: succeeded"
    assert missing.returncode == 1 and "run 999" in missing.stderr and "Traceback" not in missing.stderr
