"""The workers page: each worker's GPU, last heartbeat and current run; silent ones marked stale."""
from __future__ import annotations

from fastapi import APIRouter, Request

from fitboard.app.pages.render import render
from fitboard.app.services import workers
from fitboard.app.web.access import needs
from fitboard.app.web.deps import SessionDep, SettingsDep

router = APIRouter()


@router.get("/workers")
@needs("read")
def get_workers(request: Request, session: SessionDep, settings: SettingsDep):
    """Workers with their GPU, last heartbeat and current run; silent ones marked stale."""
    return render(request, "workers.html", rows=workers.states(session, settings.worker_lost_after),
                  lost_after=settings.worker_lost_after)
