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
    # FITBOARD_PROJECT_QUOTAS names projects: only those the caller sees are shown, or the page tells others exist
    quotas = {n: c for n, c in settings.quotas.items() if visible is None or n in access.projects.values()}
    return render(request, "queue.html", queues=overview(session.get_bind(), settings, visible),
                  mode=settings.fair_share, half_life=settings.fair_share_half_life, quotas=quotas)
