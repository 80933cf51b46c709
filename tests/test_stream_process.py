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


def stream_process(web, timeout: float = 60) -> int:
    """The live stream process: the one child of the web process's one child (the keeper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (keeper,) = children(web.proc.pid)
        found = [pid for pid in children(keeper) if not zombie(pid)]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("no stream process")


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] in "ZX"
    except OSError:
        return True


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
    stream_pid = stream_process(web)
    with httpx.Client(base_url=web.url, headers=BEARER, timeout=10) as client:
        # one keep-alive connection: a list first (the web process), then the run's stream on the same connection
        assert client.get("/api/v1/runs").json()["items"][0]["id"] == web.run_id
        with client.stream("GET", f"/api/v1/runs/{web.run_id}/events") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            sock = r.extensions["network_stream"].get_extra_info("socket")
            assert holder_of(web.port, sock) == {stream_pid}
            lines = r.iter_lines()
            streamed = []
            for epoch in range(3):
                wrote = write_row(web, epoch)
                row = read_event(lines)
                assert (row["id"], row["epoch"], row["train_loss"], row["metrics"]["accuracy"]) == (
                    epoch + 1, epoch, 1.0 + epoch, 0.25 * epoch)
                assert time.perf_counter() - wrote < 5
                streamed.append({k: v for k, v in row.items() if k != "id"})
        # the rows the live table showed are the rows the API's epoch table gives, value for value
        assert client.get(f"/api/v1/runs/{web.run_id}/epochs").json() == streamed


def test_a_request_split_across_reads_is_handed_over_whole(web):
    stream_pid = stream_process(web)
    with socket.create_connection(("127.0.0.1", web.port)) as raw:
        raw.sendall(f"GET /api/v1/runs/{web.run_id}/events HTTP/1.1\r\n".encode())  # the request line alone
        time.sleep(0.3)
        raw.sendall(f"Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        raw.settimeout(10)
        answer = raw.recv(4096).decode()
        while "id: 1\n" not in answer:  # the stored rows follow the headers
            answer += raw.recv(4096).decode()
        assert holder_of(web.port, raw) == {stream_pid}
    assert answer.startswith("HTTP/1.1 200") and "text/event-stream" in answer
    first = read_event(iter(answer.splitlines()))  # the chunked framing's size lines are fields of no event
    assert first.pop("id") == 1
    assert first == httpx.get(f"{web.url}/api/v1/runs/{web.run_id}/epochs", headers=BEARER, timeout=10).json()[0]


def test_the_stream_process_applies_the_same_access_rules(web):
    # every request of this shape is handed over (the test above shows whose socket it is): the stream process
    # answers these, through the same access dependency as the web process
    with socket.create_connection(("127.0.0.1", web.port)) as raw:
        raw.sendall(f"GET /api/v1/runs/{web.run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = raw.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 401") and "Bearer" in answer
    wrong = httpx.get(f"{web.url}/api/v1/runs/{web.run_id}/events", timeout=10,
                      headers={"Authorization": "Bearer " + "x" * 40})
    # the same answers, word for word, as the web process gives for the run itself
    same = httpx.get(f"{web.url}/api/v1/runs/{web.run_id}", timeout=10, headers={"Authorization": "Bearer " + "x" * 40})
    assert (wrong.status_code, wrong.json()) == (401, same.json())
    missing = httpx.get(f"{web.url}/api/v1/runs/999999/events", headers=BEARER, timeout=10)
    assert (missing.status_code, missing.json()) == (
        404, httpx.get(f"{web.url}/api/v1/runs/999999", headers=BEARER, timeout=10).json())


def stream_rows(web, last: int) -> tuple[set[int], list[int]]:
    """Open the run's stream: who holds its socket, and the epochs of the stored rows, then of one new row."""
    with httpx.Client(base_url=web.url, headers=BEARER, timeout=10) as client:
        with client.stream("GET", f"/api/v1/runs/{web.run_id}/events") as r:
            assert r.status_code == 200
            holders = holder_of(web.port, r.extensions["network_stream"].get_extra_info("socket"))
            lines = r.iter_lines()
            epochs = [read_event(lines)["epoch"] for _ in range(last + 1)]  # the stored rows first
            write_row(web, last + 1)
            return holders, epochs + [read_event(lines)["epoch"]]


def test_a_killed_stream_process_is_replaced_and_without_one_the_web_process_serves_streams(web):
    first = stream_process(web)
    os.kill(first, signal.SIGKILL)
    while not zombie(first):
        time.sleep(0.05)
    second = stream_process(web)
    assert second != first
    holders, epochs = stream_rows(web, 2)
    assert holders == {second} and epochs == [0, 1, 2, 3]
    # the keeper gone too: hand-overs fail, and the web process serves the stream itself
    (keeper,) = children(web.proc.pid)
    os.kill(keeper, signal.SIGKILL)
    os.kill(second, signal.SIGKILL)
    while not zombie(keeper):
        time.sleep(0.05)
    holders, epochs = stream_rows(web, 3)
    assert holders == {web.proc.pid} and epochs == [0, 1, 2, 3, 4]
    assert "hand-over failed" in web.log()


def test_stopping_the_web_process_stops_the_stream_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'fitboard.db'}"
    with serving(tmp_path, "web", env={"FITBOARD_DATABASE_URL": url}) as server:
        (keeper,) = children(server.proc.pid)
        streams = stream_process(server)
    deadline = time.monotonic() + 30  # the stream process sees its socket close; the keeper sees it end cleanly
    while not (zombie(keeper) and zombie(streams)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert zombie(keeper) and zombie(streams), "a stream process outlived fitboard web"
