"""The REST API under /api/v1: one module per resource, each handler named <method>_<resource>."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from app.web.security import require_api_auth

PREFIX = "/api/v1"


def api_router(tag: str) -> APIRouter:
    """A router for one resource: under /api/v1, tagged, behind the token check."""
    return APIRouter(prefix=PREFIX, tags=[tag], dependencies=[Depends(require_api_auth)])
