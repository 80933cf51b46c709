"""Real worker processes for the queue tests: start, wait for, kill; and a Redis check."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fitboard.app.services import runs
from fitboard.app.services.queue import Publisher, make_celery
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.models import Run
from fitboard.app.store.runs import list_epochs
from tests.served import free_port, wait_port
from tests.zygote import Forked, Zygote


def redis_url() -> str:
    """A Redis URL on the local server, or skip (fail under CI=true) when none answers."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not answering on 127.0.0.1:6379 and CI=true requires it")
        pytest.skip("Redis is not answering on 127.0.0.1:6379 (start it with scripts/services.sh)")
    return "redis://127.0.0.1:6379/0"


class PrivateRedis:
    """A Redis server of this test's own on a free port, keeping nothing on disk, that the test can restart."""

    def __init__(self, home: Path):
        if shutil.which("redis-server") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed and CI=true requires it")
            pytest.skip("redis-server is not installed (scripts/services.sh installs and starts Redis)")
        self.home, self.port, self.proc = home, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again) and wait until it answers."""
        log = open(self.home / f"redis-{self.port}.log", "a")
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.home)], stdout=log, stderr=log)
        wait_port(self.port, "private redis-server", timeout=20)

    def stop(self) -> None:
        """Kill it: every message it held is gone (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Workers:
    """Starts fitboard worker processes that share one database, broker, data root and queue."""

    def __init__(self, home: Path, db_url: str, data_root: Path, broker: str | None, **settings):
        self.home, self.db_url = home, db_url
        self.queue = f"test-{uuid.uuid4().hex[:8]}"  # a fresh queue: no message from another test
        self.env = {**os.environ, "FITBOARD_HOME": str(home), "FITBOARD_DATABASE_URL": db_url,
                    "FITBOARD_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1",  # two workers share 2 cores
                    "FITBOARD_HEARTBEAT_INTERVAL": "1",
                    **{f"FITBOARD_{k.upper()}": str(v) for k, v in settings.items()}}
        if broker:
            self.env["FITBOARD_BROKER_URL"] = broker
        else:
            self.env.pop("FITBOARD_BROKER_URL", None)
        self.procs: list[Forked] = []
        self.engine = make_engine(db_url)

    def settings(self):
        """Settings as the workers see them (for enqueueing from the test)."""
        from fitboard.app.core.settings import Settings

        return Settings(home=self.home, database_url=self.db_url, broker_url=self.env.get("FITBOARD_BROKER_URL"),
                        visibility_timeout=int(self.env.get("FITBOARD_VISIBILITY_TIMEOUT", 48 * 3600)))

    def cli(self) -> list[str]:
        """The fitboard command line, as this group's processes run it."""
        return [sys.executable, "-m", "fitboard.worker.cli"]

    def start(self, n: int = 1) -> list[Forked]:
        """Start n workers, forked from this test process's fork server (tests.zygote); each logs to its own file
        under home."""
        started = []
        for _ in range(n):
            log = self.home / f"worker-{len(self.procs)}.log"
            log.write_text("")
            proc = Zygote.spawn(["worker", "--queue", self.queue], self.env, Path.cwd(), log)
            self.procs.append(proc)
            started.append(proc)
        return started

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        self.engine.dispose()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.home.glob("worker-*.log")))

    def submit(self, recipe: dict) -> int:
        """Store and publish a run as the API and CLI do (commit first, then send) to this group's queue."""
        publisher = Publisher(make_celery(self.settings()), queue=self.queue)
        with session_scope(self.engine) as session:
            run, _ = runs.submit(session, publisher, recipe, self.env["FITBOARD_DATA_ROOT"])
            return run.id

    def rows(self, run_id: int) -> list[tuple[int, int]]:
        """The run's epoch table as (stage, epoch) keys, in order."""
        with session_scope(self.engine) as session:
            return [(e.stage, e.epoch) for e in list_epochs(session, run_id)]

    def run(self, run_id: int) -> Run:
        with session_scope(self.engine) as session:
            return session.get(Run, run_id)

    def wait(self, run_id: int, until, timeout: float = 180) -> Run:
        """Poll the run's row until until(run) holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if until(run):
                return run
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} stuck as {self.run(run_id).status}; worker logs:\n{self.logs()[-4000:]}")

    def wait_status(self, run_id: int, *statuses: str, timeout: float = 180) -> Run:
        return self.wait(run_id, lambda r: r.status in statuses, timeout)
