"""A micro-cache in front of the app for GET /api/v1/runs/{id}, the call dashboards and scripts poll hardest.

A hit is answered by this ASGI layer alone (no routing, sessions or thread-pool hop); a miss reads the run in
a worker thread and caches its JSON for TTL seconds. Writes made through this process (cancel) drop the entry
at once; writes by workers show up within TTL, which is below the 0.5 s between progress updates anyway.
Anything else (other paths, cookie-authenticated browsers, people's tokens, unknown ids) goes to the full app
unchanged: only callers who may see every project (the site token, the zero-config local admin) are served here.
"""
from __future__ import annotations

import json
import re
import time

from starlette.concurrency import run_in_threadpool

from fitboard.app.services.dispatch import run_json
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from fitboard.app.web.security import client_address, token_matches

RUN_PATH = re.compile(r"^/api/v1/runs/([1-9]\d{0,17})$")  # ids up to 18 digits; the app answers the rest
TTL_SECONDS = 0.25
MAX_ENTRIES = 4096


class RunCache:
    """run id -> (expiry, JSON bytes)."""

    def __init__(self, ttl: float = TTL_SECONDS):
        self.ttl, self.entries = ttl, {}

    def get(self, run_id: int) -> bytes | None:
        hit = self.entries.get(run_id)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def put(self, run_id: int, body: bytes) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()  # cheap bound; entries live a quarter second anyway
        self.entries[run_id] = (time.monotonic() + self.ttl, body)

    def invalidate(self, run_id: int) -> None:
        self.entries.pop(run_id, None)


def _load(engine, settings, run_id: int) -> bytes | None:
    """The run's API JSON (a queued run's place in line too), or None when there is no such run."""
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        return None if run is None else json.dumps(run_json(engine, settings, run), default=str).encode()


class RunFastPath:
    """ASGI middleware serving cached run details; everything else passes through."""

    def __init__(self, app, outer):
        self.app, self.outer = app, outer  # outer: the FastAPI app, for its state (settings, engine, cache)

    def _authorized(self, scope) -> bool | None:  # False: not known yet
        """True: serve here (a caller who sees every project: the site token, or the local admin while no person
        exists). None: let the full app decide (people's tokens and sessions, missing or wrong tokens)."""
        state = self.outer.state
        token = state.settings.api_token
        if not token:
            people = state.directory.people_known()  # "nobody has an account" is trusted for a second only
            if people is None:
                return False  # ask the database (in a thread), then decide
            return None if people else True
        if state.auth_throttle.failures and state.auth_throttle.retry_after(client_address(scope)) is not None:
            return None  # a throttled address gets its 429 from the app, right token or not
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        ok = header[:7].lower() == "bearer " and token_matches(header[7:].strip(), token)
        return True if ok else None

    async def __call__(self, scope, receive, send):
        match = RUN_PATH.match(scope.get("path", "")) if scope["type"] == "http" and scope["method"] == "GET" else None
        allowed = None if match is None else self._authorized(scope)
        if allowed is False:
            await run_in_threadpool(self.outer.state.directory.people_now, self.outer.state.engine)
            allowed = self._authorized(scope)
        if not allowed:
            return await self.app(scope, receive, send)
        run_id, cache = int(match.group(1)), self.outer.state.run_cache
        body = cache.get(run_id)
        if body is None:
            body = await run_in_threadpool(_load, self.outer.state.engine, self.outer.state.settings, run_id)
            if body is None:
                return await self.app(scope, receive, send)  # the app's 404
            cache.put(run_id, body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
