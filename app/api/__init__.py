"""The REST API under /api/v1: one module per resource, each handler named <method>_<resource>."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from fitboard.app.core.schemas import MAX_ID
from fitboard.app.services.serializers import ErrorOut, ValidationErrorOut
from fitboard.app.web.access import GUARD

PREFIX = "/api/v1"
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="a run's id")]
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="a sweep's id")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]

# What each error status means on this API; every body is ErrorOut ({"detail": "..."}) except 422's.
ERRORS = {
    400: "the Host header names a host this server does not answer to (FITBOARD_ALLOWED_HOSTS)",
    401: "no token (or login), or a wrong, revoked or expired one",
    403: "your role in the project (or your token's scope) does not allow this; a write a browser marked as "
         "cross-site, or a cookie-session write without its X-CSRF-Token header",
    404: "no such thing (or it belongs to a project you cannot see)",
    408: "the request body did not arrive whole within FITBOARD_BODY_TIMEOUT seconds (a model upload: a chunk)",
    409: "the thing's current state does not allow this",
    413: "request body over 1 MB (image uploads: 11 MB of body, 10 MB of images; a tracked run's model: 1 GB)",
    422: "invalid input: every problem, each naming its field",
    429: "too many wrong tokens from this address; retry after Retry-After seconds",
    503: "a service it needs is not there now: too many open event streams (retry after Retry-After seconds), the "
         "artifact store unreachable, or no predictor process running",
}


def errors(*codes: int) -> dict:
    """OpenAPI `responses` for these error statuses, each with the body it is sent with."""
    return {c: {"model": ValidationErrorOut if c == 422 else ErrorOut, "description": ERRORS[c]} for c in codes}


# Every API call can meet the Host check and the token check (and its throttle); writes also the cross-site and
# body-size checks and input validation.
WRITE_ERRORS = errors(403, 408, 413, 422)
CSV = {"text/csv": {"schema": {"type": "string"}}}


def queued_later(model) -> dict:
    """OpenAPI `responses` for 202: stored, but the broker did not take the message(s) yet (see queued_note)."""
    return {202: {"model": model, "description": "stored; the broker was unreachable, so the runs are sent when "
                                                 "it is back (see queued_note)"}}


def stored(body: dict, note: str | None, status_code: int = 201) -> JSONResponse:
    """A write whose runs are stored: status_code once they were published, 202 with the note when the broker
    could not take them yet."""
    if note is None:
        return JSONResponse(body, status_code=status_code)
    return JSONResponse({**body, "queued_note": note}, status_code=202)


def api_router(tag: str) -> APIRouter:
    """A router for one resource: under /api/v1, tagged, behind the access check (app.web.access)."""
    return APIRouter(prefix=PREFIX, tags=[tag], dependencies=[GUARD], responses=errors(400, 401, 403, 404, 429))
