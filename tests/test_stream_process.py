"""`fitboard web` serves event streams from a process of its own (app.web.handoff), on the same port: a real web
process on a real migrated SQLite file, its rows written as a worker writes them, read by a plain HTTP client."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from fitboard.app.core.events import EpochEvent
from fitboard.app.store.db import make_engine, session_scope, upgrade
from fitboard.app.store.runs import claim_run, create_run, record_epoch
from tests.helpers import BEARER, TOKEN, tiny_recipe
from tests.served import serving


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """`fitboard web` with an API token, on a database holding one running run."""
    home = tmp_path_factory.mktemp("streams")
    url = f"sqlite:///{home / 'fitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as s:
        run_id = create_run(s, tiny_recipe(name="live")).id
        claim_run(s, run_id, "writer")
    with serving(home, "web", env={"FITBOARD_DATABASE_URL": url, "FITBOARD_API_TOKEN": TOKEN}) as server:
        server.engine, server.run_id = engine, run_id
        yield server
    engine.dispose()


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def holder_of(port: int, client: socket.socket) -> set[int]:
    """The processes holding the server's end of a client's connection (its socket inode, looked up in /proc)."""
    local = client.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        here, there = fields[1], fields[2]
        if int(here.split(":")[1], 16) == port and int(there.split(":")[1], 16) == local:
            inodes.add(fields[9])
    holders = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    holders.add(int(proc.name))
        except OSError:
            continue
    return holders


def write_row(web, epoch: int) -> float:
    with session_scope(web.engine) as s:
        record_epoch(s, web.run_id, EpochEvent(stage=0, epoch=epoch, train_loss=1.0 + epoch, valid_loss=2.0,
                                               metrics={"accuracy": 0.25 * epoch}, seconds=0.5))
    return time.perf_counter()


def read_event(lines) -> dict:
    """The next `epoch` event's id and data (an event's fields end at a blank line)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif fields.get("event") == "epoch":
            return {"id": int(fields["id"]), **json.loads(fields["data"])}
        else:
            fields = {}
    raise AssertionError("the stream ended")


def test_a_stream_is_served_by_the_stream_process_and_a_page_by_the_web_process(web):
    (stream_pid,) = children(web.proc.pid)
    with httpx.Client(base_url=web.url, headers=BEARER, timeout=10) as client:
        # one keep-alive connection: a list first (the web process), then the run's stream on the same connection
        assert client.get("/api/v1/runs").json()["items"][0]["id"] == web.run_id
        with client.stream("GET", f"/api/v1/runs/{web.run_id}/events") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            sock = r.extensions["network_stream"].get_extra_info("socket")
            assert holder_of(web.port, sock) == {stream_pid}
            lines = r.iter_lines()
            for epoch in range(3):
                wrote = write_row(web, epoch)
                row = read_event(lines)
                # the stored row's values, as the API's epoch table gives them
                assert (row["id"], row["epoch"], row["train_loss"], row["metrics"]["accuracy"]) == (
                    epoch + 1, epoch, 1.0 + epoch, 0.25 * epoch)
                assert time.perf_counter() - wrote < 5
        epochs = client.get(f"/api/v1/runs/{web.run_id}/epochs").json()
        assert [e["epoch"] for e in epochs] == [0, 1, 2]


def test_the_stream_process_applies_the_same_access_rules(web):
    # every request of this shape is handed over (the test above shows whose socket it is): the stream process
    # answers these, through the same access dependency as the web process
    with socket.create_connection(("127.0.0.1", web.port)) as raw:
        raw.sendall(f"GET /api/v1/runs/{web.run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = raw.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 401") and "Bearer" in answer
    wrong = httpx.get(f"{web.url}/api/v1/runs/{web.run_id}/events", timeout=10,
                      headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status_code == 401
    assert httpx.get(f"{web.url}/api/v1/runs/999999/events", headers=BEARER, timeout=10).status_code == 404


def test_without_the_stream_process_the_web_process_serves_streams_itself_and_stops_alone(web):
    (stream_pid,) = children(web.proc.pid)
    os.kill(stream_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while stream_pid in children(web.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # reaped by the web process... or left a zombie, which /proc still lists
        if Path(f"/proc/{stream_pid}/stat").exists() and Path(f"/proc/{stream_pid}/stat").read_text().split()[2] == "Z":
            break
    with httpx.Client(base_url=web.url, headers=BEARER, timeout=10) as client:
        with client.stream("GET", f"/api/v1/runs/{web.run_id}/events") as r:
            assert r.status_code == 200
            sock = r.extensions["network_stream"].get_extra_info("socket")
            assert holder_of(web.port, sock) == {web.proc.pid}
            lines = r.iter_lines()
            assert [read_event(lines)["epoch"] for _ in range(3)] == [0, 1, 2]  # the stored rows first
            write_row(web, 3)
            assert read_event(lines)["epoch"] == 3
    assert "hand-over failed" in web.log()
