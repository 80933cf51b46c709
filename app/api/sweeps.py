"""/api/v1/sweeps: start an ablation sweep, read its report, add seeds."""
from __future__ import annotations

from fastapi.responses import JSONResponse

from fitboard.app.api import WRITE_ERRORS, SweepId, api_router, errors, queued_later, stored
from fitboard.app.core.bodies import SeedsIn, SweepIn
from fitboard.app.services import sweeps
from fitboard.app.services.serializers import SweepOut, SweepQueued, serialize_run
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep

router = api_router("sweeps")
QUEUED_LATER = queued_later(SweepQueued)


def _answer(report: dict, queued: list, note: str | None) -> JSONResponse:
    """The sweep report with the runs just queued (201, or 202 with the note)."""
    return stored({**report, "queued": [serialize_run(r, full=False) for r in queued]}, note)


@router.post("/sweeps", status_code=201, response_model=SweepQueued, responses={**WRITE_ERRORS, **QUEUED_LATER})
@needs("member")
def post_sweeps(access: AccessDep, session: SessionDep, settings: SettingsDep, publisher: PublisherDep, body: SweepIn):
    """Store a sweep and queue one run per variant and seed (at most FITBOARD_MAX_SWEEP_RUNS); 422 names the bad
    field and stores nothing; 202 with a queued_note when the broker is unreachable."""
    data = body.model_dump(mode="json", include={"vary"})
    sweep, queued, note = sweeps.create(session, publisher, body.base.model_dump(mode="json"), data["vary"],
                                        body.seeds, body.mode, settings.data_root,
                                        settings.max_sweep_runs, body.priority)
    access.note("launch", f"sweep {sweep.id} ({len(queued)} runs)")
    return _answer(sweeps.report(session, sweep.id), queued, note)


@router.get("/sweeps/{sweep_id}", response_model=SweepOut, responses=errors(404, 422))
@needs("read")
def get_sweep(sweep_id: SweepId, session: SessionDep):
    """Each variant's runs, mean and std of accuracy and TTA accuracy, and its seed-paired difference to base."""
    return sweeps.report(session, sweep_id)


@router.post("/sweeps/{sweep_id}/seeds", status_code=201, response_model=SweepQueued,
             responses={**WRITE_ERRORS, **errors(404), **QUEUED_LATER})
@needs("member", audit="launch")
def post_sweep_seeds(sweep_id: SweepId, session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
                     body: SeedsIn):
    """Run every variant for more seeds (the sweep stays within FITBOARD_MAX_SWEEP_RUNS)."""
    queued, note = sweeps.add_seeds(session, publisher, sweep_id, body.seeds, settings.max_sweep_runs)
    return _answer(sweeps.report(session, sweep_id), queued, note)
