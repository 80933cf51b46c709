"""API latency under open event streams, and run-detail throughput: the figures of the hardening issue.

Starts `fitboard web` (from --code, default this checkout, so the same script measures an older checkout too) on a
fresh FITBOARD_HOME with the digits demo data and RUNS queued runs (no worker: they stay queued and their streams stay
open), then measures
  1. GET /api/v1/runs latency (p50/p99 over REQUESTS sequential calls) with no stream open, with STREAMS streams open
     on one run, and with STREAMS streams open on STREAMS different runs;
  2. GET /api/v1/runs/{id} throughput (THREADS keep-alive clients for SECONDS seconds), with and without a token.
Prints figures; it is not a timed test. Usage: python bench/api_hardening.py [--code PATH]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STREAMS, RUNS, REQUESTS, THREADS, SECONDS = 64, 64, 400, 4, 5.0
TOKEN = "bench-token-" + "0123456789abcdef" * 2
RECIPE = {"name": "bench", "dataset": "digits", "arch": "squeezenet1_1", "pretrained": False,
          "stages": [{"epochs": 1, "size": 32, "bs": 32, "lr": 3e-3}]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`fitboard web` from a checkout, in a subprocess."""

    def __init__(self, code: Path, home: Path, token: str | None):
        self.port, self.token = free_port(), token
        env = {**os.environ, "FITBOARD_HOME": str(home), "PYTHONPATH": str(code),
               "FITBOARD_MAX_STREAMS": str(STREAMS + 8)}
        for key in ("FITBOARD_DATABASE_URL", "FITBOARD_BROKER_URL", "FITBOARD_API_TOKEN", "FITBOARD_ALLOWED_HOSTS"):
            env.pop(key, None)
        if token:
            env["FITBOARD_API_TOKEN"] = token
        self.proc = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "web", "--port", str(self.port)],
                                      cwd=code,
                                     env=env, stdout=(home / "web.log").open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError((home / "web.log").read_text())

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def call(self, conn, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        headers = {**self.headers(), **({"Content-Type": "application/json"} if body is not None else {})}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def latency(server: Server, n: int = REQUESTS) -> tuple[float, float]:
    """p50 and p99 of GET /api/v1/runs in milliseconds over n sequential keep-alive calls."""
    conn, times = server.conn(), []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = server.call(conn, "GET", "/api/v1/runs")
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def open_streams(server: Server, run_ids: list[int]) -> tuple[list, threading.Event]:
    """STREAMS event streams spread over run_ids, each read by a thread until stop is set."""
    stop, socks, opened = threading.Event(), [], []

    def reader(run_id: int) -> None:
        conn = server.conn()
        conn.request("GET", f"/api/v1/runs/{run_id}/events", headers=server.headers())
        r = conn.getresponse()
        opened.append(r.status)
        socks.append(conn)
        try:
            while not stop.is_set() and r.readline():
                pass
        except (OSError, AttributeError, ValueError):  # the socket was closed under the reader
            pass

    threads = [threading.Thread(target=reader, args=(run_ids[i % len(run_ids)],), daemon=True)
               for i in range(STREAMS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(opened) < STREAMS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened.count(200) == STREAMS, opened
    time.sleep(1.0)  # let the pollers settle
    return socks, stop


def close_streams(socks: list, stop: threading.Event) -> None:
    stop.set()
    for conn in socks:
        conn.close()
    time.sleep(1.0)


def throughput(server: Server, run_id: int) -> float:
    """GET /api/v1/runs/{id} per second from THREADS keep-alive clients."""
    counts, stop = [0] * THREADS, time.monotonic() + SECONDS

    def client(k: int) -> None:
        conn = server.conn()
        while time.monotonic() < stop:
            status, _ = server.call(conn, "GET", f"/api/v1/runs/{run_id}")
            assert status == 200, status
            counts[k] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / SECONDS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose `fitboard web` is measured")
    code = parser.parse_args().code.resolve()
    sys.path.insert(0, str(code))
    from fitboard.app.core.demo_data import write_digits

    print(f"code: {code}")
    for token in (None, TOKEN):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            write_digits(home / "datasets" / "digits", limit=300)
            server = Server(code, home, token)
            try:
                conn = server.conn()
                ids = [json.loads(server.call(conn, "POST", "/api/v1/runs", {**RECIPE, "name": f"bench-{i}"})[1])["id"]
                       for i in range(RUNS)]
                label = "with a token" if token else "no token"
                p50, p99 = latency(server)
                print(f"[{label}] GET /api/v1/runs, no stream open:          p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
                for spread, run_ids in (("on one run", ids[:1]), (f"on {RUNS} runs", ids)):
                    socks, stop = open_streams(server, run_ids)
                    p50s, p99s = latency(server)
                    close_streams(socks, stop)
                    print(f"[{label}] GET /api/v1/runs, {STREAMS} streams {spread:10s}: p50 {p50s:6.1f} ms  "
                          f"p99 {p99s:6.1f} ms  ({p99s / p99:.1f}x the p99 without streams)")
                print(f"[{label}] GET /api/v1/runs/{{id}}: {throughput(server, ids[0]):7.0f} requests/s "
                      f"({THREADS} keep-alive clients, {SECONDS:.0f} s)")
            finally:
                server.stop()


if __name__ == "__main__":
    main()
