"""`fitboard up` in a subprocess on a free port, for end-to-end tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, timeout: float = 30) -> None:
    """Until something accepts connections on 127.0.0.1:port; AssertionError naming `what` after timeout s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not start")


class Served:
    """A running `fitboard up` (or `fitboard web` alone, with no worker): its URL, environment and log."""

    def __init__(self, home: Path, command: str = "up", env: dict | None = None):
        self.home, self.port, self.command = home, free_port(), command
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FITBOARD_HOME": str(home), "FITBOARD_DATA_ROOT": str(home / "datasets")}
        for key in ("FITBOARD_DATABASE_URL", "FITBOARD_BROKER_URL", "FITBOARD_API_TOKEN"):
            self.env.pop(key, None)
        self.env.update(env or {})
        self.log_path = home / f"{command}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", command, "--port", str(self.port)],
                                     env=self.env, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 120) -> None:
        """Until /healthz answers and (for `up`) the worker has said it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"fitboard {self.command} exited early:\n{self.log()}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2)
                if self.command != "up" or " ready." in self.log():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"fitboard {self.command} not ready in {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def serving(home: Path, command: str = "up", env: dict | None = None) -> Iterator[Served]:
    """`fitboard up` (or `web`) under home, ready; stopped with SIGTERM afterwards, which must exit cleanly."""
    server = Served(home, command, env)
    server.wait_ready()
    yield server
    # `up` turns SIGTERM into a clean exit; `web` is uvicorn alone, which re-raises it after a graceful shutdown.
    assert server.stop() in ((0,) if command == "up" else (0, -signal.SIGTERM)), server.log()
