"""/api/v1/queue: each worker queue's line, in the order the fair queue will start its runs."""
from __future__ import annotations

from fitboard.app.api import api_router
from fitboard.app.services.dispatch import overview
from fitboard.app.services.serializers import QueueOut
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import SessionDep, SettingsDep

router = api_router("queue")


@router.get("/queue", response_model=list[QueueOut])
@needs("read")
def get_queue(access: AccessDep, session: SessionDep, settings: SettingsDep):
    """Every worker queue with a waiting run or a live worker: its workers, and its waiting runs in the order they
    will start (the first 200), each with its person, project, priority and estimated start. Runs of projects the
    caller cannot see hold their place but are not named."""
    visible = None if access.principal.site_admin else set(access.projects)
    return overview(session.get_bind(), settings, visible)
