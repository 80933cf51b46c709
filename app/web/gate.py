"""Before an admission slot and before any body: who the request is (its headers alone), then its body read whole
within a deadline. A client without credentials, or one trickling its body, never holds a slot, a thread or a
database connection that an authenticated request needs (fitboard.app.web.admission counts only what is inside)."""
from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool

from fitboard.app.web.middleware import TRACKED_MODEL, CutShort, answer, nul_field
from fitboard.app.web.security import UNSAFE, AuthRefused, client_address, identify, reads_database

OPEN_PAGES = ("/login", "/logout")  # page writes anyone may send (their routes are open): log in, log out
CLOSE = {"Connection": "close"}  # a 408's header: the rest of a late body is not read
MAX_READERS = 256  # bodies being read at once before admission; more get 503 (each is at most the body limit)


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length", b"0")
    return b"transfer-encoding" in headers or not length.isdigit() or int(length) > 0


class IdentityGate:
    """ASGI middleware: API calls without valid credentials (a person's token is looked up as the access check does)
    get their 401 (or 429) on their headers; page writes of a browser that has not logged in are sent to the login
    page, before the body is read."""

    def __init__(self, app, outer):
        self.app, self.outer = app, outer  # outer: the FastAPI app, for its state (settings, throttle, secret)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, api = scope["path"], scope["path"].startswith("/api/")
        if api or (scope["method"] in UNSAFE and path not in OPEN_PAGES):
            state, headers, address = self.outer.state, dict(scope["headers"]), client_address(scope)
            try:
                if reads_database(state, headers):  # a person's token: looked up (cached) off the event loop
                    await run_in_threadpool(identify, state, headers, address)
                else:
                    identify(state, headers, address)
            except AuthRefused as refused:
                reply = {**refused.headers, "Connection": "close", "Cache-Control": "no-store"}
                if api or b"authorization" in headers:  # a script's wrong token: its 401, not the login page
                    return await answer(send, refused.status_code, refused.detail, headers=reply)
                target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else "")
                reply["Location"] = "/login?" + urlencode({"next": target})
                return await answer(send, 303, "log in first", headers=reply)
        # After who it is (a caller without credentials gets its 401 first): no name, tag or path holds a NUL;
        # PostgreSQL refuses one outright and SQLite's full-text parser chokes on it.
        with_nul = nul_field(scope.get("query_string", b""))
        if with_nul is not None:
            return await answer(send, 422, [{"loc": f"query.{with_nul}", "msg": "a NUL character is not allowed"}])
        await self.app(scope, receive, send)


class BodyFirst:
    """ASGI middleware: read a request's whole body before it may take an admission slot, within `timeout`
    seconds (408 and the connection closed past it). A streamed model upload is read by its route, but never
    waits more than `timeout` seconds for its next chunk."""

    def __init__(self, app, timeout: float, max_readers: int = MAX_READERS):
        self.app, self.timeout, self.max_readers, self.readers = app, timeout, max_readers, 0

    def _late(self) -> str:
        return f"the request body did not arrive within {self.timeout:g} s"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _has_body(dict(scope["headers"])):
            return await self.app(scope, receive, send)
        if scope["method"] == "PUT" and TRACKED_MODEL.match(scope["path"]):
            return await self._streamed(scope, receive, send)
        if self.readers >= self.max_readers:
            return await answer(send, 503, "the server is busy; retry shortly", headers={"Retry-After": "1"})
        self.readers += 1
        try:
            body = await self._read(receive)
        except TimeoutError:
            return await answer(send, 408, self._late(), headers=CLOSE)
        finally:
            self.readers -= 1
        if body is None:
            return None  # the client left (or a layer outside answered 413): nothing to answer
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: what the server says next (a disconnect)
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive) -> bytes | None:
        """The whole body, or None when the client left; TimeoutError past the deadline."""
        chunks = []
        async with asyncio.timeout(self.timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return b"".join(chunks)

    async def _streamed(self, scope, receive, send):
        """Pass the body through as it comes; a chunk late by `timeout` seconds ends the request with 408."""
        cut = CutShort(send)

        async def timed_receive():
            if cut.refused:
                return {"type": "http.disconnect"}
            try:
                async with asyncio.timeout(self.timeout):
                    return await receive()
            except TimeoutError:
                return await cut.refuse(408, self._late(), headers=CLOSE)

        await cut.run(self.app, scope, timed_receive)
