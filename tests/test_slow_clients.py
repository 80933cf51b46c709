"""Slow clients against a real `fitboard web` process: sockets that send their headers and then trickle a body hold
nothing an authenticated request needs. Without credentials they get 401 on their headers; the login form (which
needs none) is read before it takes a slot, and dropped with 408 when its body does not arrive in time."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.helpers import BEARER, TOKEN
from tests.served import free_port

SLOW_CLIENTS = 20  # above the 16 admission slots (FITBOARD_MAX_REQUESTS' default)
BODY_TIMEOUT = 4.0


@pytest.fixture
def web(tmp_path):
    """`fitboard web` with a token, in its own process, on a free port."""
    port = free_port()
    env = {**os.environ, "FITBOARD_HOME": str(tmp_path), "FITBOARD_API_TOKEN": TOKEN,
           "FITBOARD_BODY_TIMEOUT": str(BODY_TIMEOUT), "FITBOARD_DATA_ROOT": str(tmp_path / "data")}
    for key in ("FITBOARD_DATABASE_URL", "FITBOARD_BROKER_URL"):
        env.pop(key, None)
    log = (tmp_path / "web.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "web", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "web.log").read_text()
        time.sleep(0.2)
    yield base, port
    proc.terminate()
    proc.wait(timeout=30)


def trickle(port: int, head: str, seconds: float, answers: list) -> None:
    """Send the headers of a 1,000-byte body, then one byte every 0.2 s; record the status line it gets."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds + 10)
    sock.sendall(head.encode())
    end, status = time.monotonic() + seconds, None
    sock.setblocking(False)
    try:
        while time.monotonic() < end and status is None:
            # Read before writing: a server that answered and closed resets the next byte sent, and a send that
            # fails that way says nothing of the answer already waiting here.
            try:
                reply = sock.recv(200)
                status = int(reply.split()[1]) if reply else "closed"
                break
            except BlockingIOError:
                pass
            except OSError:
                status = "reset"
                break
            try:
                sock.sendall(b"a")
            except BlockingIOError:
                pass
            except OSError:
                pass  # the answer (if any) is read at the top of the next turn
            time.sleep(0.2)
    finally:
        answers.append(status)
        sock.close()


def request_head(method: str, path: str, content_type: str, port: int) -> str:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 1000\r\n\r\n")


def test_twenty_slow_unauthenticated_clients_do_not_delay_an_authenticated_get(web):
    base, port = web
    api_answers, login_answers = [], []
    heads = [(request_head("POST", "/api/v1/tracked", "application/json", port), api_answers)] * (SLOW_CLIENTS // 2)
    heads += [(request_head("POST", "/login", "application/x-www-form-urlencoded", port), login_answers)] * (
        SLOW_CLIENTS - SLOW_CLIENTS // 2)
    threads = [threading.Thread(target=trickle, args=(port, head, BODY_TIMEOUT + 3, answers))
               for head, answers in heads]
    for t in threads:
        t.start()
    time.sleep(1.0)  # every slow client has sent its headers and is trickling
    slowest = 0.0
    with httpx.Client(base_url=base, headers=BEARER, timeout=10) as client:
        for _ in range(10):
            for path in ("/api/v1/runs", "/healthz"):
                started = time.monotonic()
                r = client.get(path)
                slowest = max(slowest, time.monotonic() - started)
                assert r.status_code == 200, (path, r.status_code, r.text)
            time.sleep(0.2)
    for t in threads:
        t.join()
    print(f"\n{SLOW_CLIENTS} slow clients: slowest authenticated GET {1000 * slowest:.0f} ms; API sockets got "
          f"{sorted(map(str, api_answers))}; login sockets got {sorted(map(str, login_answers))}")
    assert slowest < 1.0
    assert api_answers == [401] * (SLOW_CLIENTS // 2)  # refused on their headers, while still trickling
    assert login_answers == [408] * (SLOW_CLIENTS - SLOW_CLIENTS // 2)  # dropped when the body was late
