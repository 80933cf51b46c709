"""/api/v1/workers: every worker with its host, GPU, last heartbeat and current run."""
from __future__ import annotations

from fitboard.app.api import api_router
from fitboard.app.services import workers
from fitboard.app.services.serializers import WorkerOut, serialize_worker
from fitboard.app.web.access import needs
from fitboard.app.web.deps import SessionDep, SettingsDep

router = api_router("workers")


@router.get("/workers", response_model=list[WorkerOut])
@needs("read")
def get_workers(session: SessionDep, settings: SettingsDep):
    """Workers with their host, GPU, last heartbeat and current run."""
    # states() reads each current run through this request's project scope: another project's run is None there
    return [serialize_worker(s.worker, run_visible=s.run is not None)
            for s in workers.states(session, settings.worker_lost_after)]
