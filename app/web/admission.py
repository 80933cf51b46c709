"""Admission control: at most `limit` requests are inside the app at once, so each one always finds a worker thread
and a pooled database connection (the pool is sized to the limit). The rest wait in the event loop, holding
nothing; one that is not let in within `wait` seconds, or arrives when `backlog` are waiting already, gets 503
with Retry-After. A request leaves when its answer starts: an open event stream or a streamed download holds no
slot (neither holds a database connection while it streams)."""
from __future__ import annotations

import asyncio
import threading

RETRY_AFTER = "1"
RELEASE = "fitboard.admission.release"  # scope key: a route that waits long without the database leaves early
OPEN_PATHS = ("/static/",)  # files from disk: no database, no slot


async def overloaded(send, detail: str = "the server is busy; retry shortly") -> None:
    """503 with Retry-After in the API's error shape (WebGuard adds the security headers)."""
    body = ('{"detail": "%s"}' % detail).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", RETRY_AFTER.encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


def _in_loop(loop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def leave_admission(request) -> None:
    """Give the request's admission slot back now (it goes on waiting for something that is not the database)."""
    release = request.scope.get(RELEASE)
    if release is not None:
        release()


class Admission:
    """ASGI middleware: a bounded number of requests in the app, a bounded wait for the others, then 503."""

    def __init__(self, app, limit: int, wait: float, backlog: int):
        self.app, self.limit, self.wait, self.backlog = app, limit, wait, backlog
        self.slots: asyncio.Semaphore | None = None  # made on first use, in the server's event loop
        self.waiting = 0

    async def _enter(self) -> bool:
        """Take a slot within self.wait seconds; False when none came. Never loses a slot: an acquire that completes
        just as the time runs out is kept (asyncio.wait_for could drop it on Python 3.11, shrinking the limit)."""
        acquire = asyncio.ensure_future(self.slots.acquire())
        try:
            done, _ = await asyncio.wait({acquire}, timeout=self.wait)
        except asyncio.CancelledError:  # the request itself was cancelled: take nothing with it
            if not acquire.cancel() and not acquire.cancelled():
                self.slots.release()
            raise
        if done:
            return True
        acquire.cancel()
        try:
            await acquire
        except asyncio.CancelledError:
            return False
        return True  # it completed before the cancel took effect: the slot is ours

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            return await self.app(scope, receive, send)
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.limit)
        if self.waiting >= self.backlog:
            return await overloaded(send)
        self.waiting += 1
        try:
            if not await self._enter():
                return await overloaded(send)
        finally:
            self.waiting -= 1
        held, lock, loop = [True], threading.Lock(), asyncio.get_running_loop()

        def release() -> None:
            with lock:  # called from the event loop, or from the route's worker thread (leave_admission)
                if not held[0]:
                    return
                held[0] = False
            if _in_loop(loop):
                self.slots.release()
            else:
                loop.call_soon_threadsafe(self.slots.release)  # asyncio objects belong to the loop's thread

        scope[RELEASE] = release

        async def send_and_release(message):
            if message["type"] == "http.response.start":
                release()  # the answer is decided; its body needs neither a thread slot nor a connection
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            release()
