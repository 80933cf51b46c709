"""The queue page: who waits for what, per worker queue, in the order the fair queue will start the runs."""
from __future__ import annotations

from fastapi import APIRouter, Request

from fitboard.app.pages.render import render
from fitboard.app.services.dispatch import overview
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import SessionDep, SettingsDep

router = APIRouter()


@router.get("/queue")
@needs("read")
def get_queue(request: Request, access: AccessDep, session: SessionDep, settings: SettingsDep):
    """Each worker queue's line: position, run, person, project, priority, estimated start."""
    visible = None if access.principal.site_admin else set(access.projects)
    return render(request, "queue.html", queues=overview(session.get_bind(), settings, visible),
                  mode=settings.fair_share, half_life=settings.fair_share_half_life, quotas=settings.quotas)
