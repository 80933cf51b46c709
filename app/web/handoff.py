"""Event streams in a process of their own, on the same port.

Under load the web process's request threads hold the GIL most of the time, and a new epoch row waits for it three
times (the change signal, the look at the database, the stream's write): 130 ms p95 at 200 users. With
FITBOARD_STREAM_PROCESS on, `fitboard web` forks a keeper once its app is built and before any thread starts; the
keeper runs the stream process (and another if one dies). The web process reads each request's first bytes as
usual; when a connection's next request is `GET /api/v1/runs/{id}/events`, it passes the connection itself (its file
descriptor, over a Unix socket) with the bytes read so far to the stream process and forgets it. The stream process
runs the same app (same checks of who may watch the run, same limits) and answers that request, and any later one
on the connection. Where the hand-over cannot happen (the keeper gave up, the socket is full), the web process serves
the stream itself, as without the setting.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import sys
import time

import uvicorn

try:  # uvicorn's faster parser where installed (uvicorn[standard]), else h11, as uvicorn itself chooses
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as HttpProtocol
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as HttpProtocol

log = logging.getLogger(__name__)

# The request line of an event stream (a GET has no body, so nothing is left behind in the web process).
EVENTS_REQUEST = re.compile(rb"GET /api/v1/runs/[0-9]{1,18}/events(\?[^ \r\n]{0,2000})? HTTP/1\.[01]\r\n")
MAX_FIRST_READ = 65536  # the most bytes of a request handed over with its connection (a read is at most this)
MAX_QUICK_DEATHS = 5  # stream processes in a row that die young before the keeper gives up
QUICK_DEATH_SECONDS = 30.0


class HandingOver(HttpProtocol):
    """The web process's HTTP protocol: hands an event-stream request's connection to the stream process."""

    channel: socket.socket | None = None  # this process's end of the stream process's socket

    def data_received(self, data: bytes) -> None:
        if self.channel is not None and self._between_requests() and len(data) <= MAX_FIRST_READ \
                and EVENTS_REQUEST.match(data) and self._hand_over(data):
            return
        super().data_received(data)

    def _between_requests(self) -> bool:
        """No request of this connection is being answered or waiting (httptools queues pipelined ones)."""
        return (self.cycle is None or self.cycle.response_complete) and not getattr(self, "pipeline", None)

    def _hand_over(self, data: bytes) -> bool:
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            socket.send_fds(self.channel, [data], [sock.fileno()])
        except OSError as exc:  # the stream process is gone or behind: serve the stream here
            log.warning("event stream served by the web process: hand-over failed (%s)", exc)
            return False
        self._unset_keepalive_if_required()
        # Closes this process's descriptor only: no shutdown, so the connection stays open in the stream process.
        self.transport.abort()
        return True


class StreamServer(uvicorn.Server):
    """The stream process's server: takes connections from the web process instead of listening."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket):
        super().__init__(config)
        self.channel = channel

    async def startup(self, sockets=None) -> None:
        # uvicorn needs a listener to start: one in the abstract namespace, which no client knows of
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.bind(f"\0fitboard-streams-{os.getpid()}")
        await super().startup(sockets=[idle])
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._take)

    def _take(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.channel, MAX_FIRST_READ, 1)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data and not fds:  # the web process has gone: so does this one
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
            self.should_exit = True
            return
        for fd in fds:
            asyncio.get_running_loop().create_task(self._serve_connection(socket.socket(fileno=fd), data))

    async def _serve_connection(self, sock: socket.socket, first: bytes) -> None:
        sock.setblocking(False)
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: TakenOver(first, config=self.config, server_state=self.server_state,
                              app_state=self.lifespan.state), sock)


class TakenOver(HttpProtocol):
    """The stream process's protocol for a handed-over connection: the bytes the web process read are parsed first,
    as soon as the connection is made and before the event loop reads the socket (a request split across reads
    stays whole)."""

    def __init__(self, first: bytes, **kwargs):
        super().__init__(**kwargs)
        self.first = first

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        first, self.first = self.first, b""
        self.data_received(first)


def fork_stream_process(build_app, config_kwargs: dict) -> socket.socket | None:
    """Fork the stream process's keeper (before the web process starts a thread: nothing but memory is shared); the
    web process's end of their socket, or None where fork is not available."""
    if not hasattr(os, "fork"):
        return None
    web_end, stream_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid:
        stream_end.close()
        web_end.setblocking(False)
        return web_end
    web_end.close()
    try:
        keep_serving(build_app, config_kwargs, stream_end)
    finally:
        os._exit(0)  # never return into the web process's code


def keep_serving(build_app, config_kwargs: dict, channel: socket.socket) -> None:
    """The keeper: runs the stream process, and another when one dies (connections handed over meanwhile wait in
    the socket); stops when one ends cleanly (the web process has gone) or after MAX_QUICK_DEATHS that each lived
    less than QUICK_DEATH_SECONDS, closing the socket: the web process then serves streams itself."""
    quick = 0
    while quick < MAX_QUICK_DEATHS:
        started = time.monotonic()
        child = os.fork()
        if child == 0:
            _serve_streams(build_app, config_kwargs, channel)
        code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        if code == 0:
            return
        quick = quick + 1 if time.monotonic() - started < QUICK_DEATH_SECONDS else 0
        log.warning("the event stream process %d ended (%s): starting another", child, code)
        time.sleep(0.5)
    log.error("the event stream process keeps dying: the web process serves event streams itself")


def _serve_streams(build_app, config_kwargs: dict, channel: socket.socket) -> None:
    code = 0
    try:
        StreamServer(uvicorn.Config(build_app(), **config_kwargs), channel).run()
    except BaseException:  # noqa: BLE001  the child must never return into the keeper's code
        log.exception("the event stream process failed")
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
