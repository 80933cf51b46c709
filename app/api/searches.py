"""/api/v1/searches: start a search (Optuna with pruning, then a verify sweep), read it, cancel it."""
from __future__ import annotations

from typing import Annotated

from fastapi import Path

from fitboard.app.api import WRITE_ERRORS, api_router, errors
from fitboard.app.core.bodies import SearchIn
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.services import searches
from fitboard.app.services.serializers import SearchOut
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import PublisherDep, SessionDep, SettingsDep

router = api_router("searches")
SearchId = Annotated[int, Path(ge=1, le=MAX_ID, description="a search's id")]


@router.post("/searches", status_code=201, response_model=SearchOut, responses=WRITE_ERRORS)
@needs("member")
def post_searches(access: AccessDep, session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
                  body: SearchIn):
    """Store a search, create its Optuna study in fitboard's database and queue its first trials. options:
    max_trials (<= FITBOARD_MAX_SWEEP_RUNS), max_parallel (default: live workers), metric, direction, pruner
    (asha | hyperband | median | none), sampler (tpe | random | grid: at most 10,000 configurations), k and seeds
    of the verify sweep; 422 names the bad field (an unknown one too) and stores nothing."""
    base, space, options = body.parts()
    search = searches.create(session, publisher, base, space, options, settings.data_root,
                             settings.max_sweep_runs, settings.worker_lost_after)
    access.note("launch", f"search {search.id}")
    return searches.report(session, search.id)


@router.get("/searches/{search_id}", response_model=SearchOut, responses=errors(404, 422))
@needs("read")
def get_search(search_id: SearchId, session: SessionDep):
    """The trials (status, params, epochs trained, metric, where pruned ones stopped), best, best-so-far, the budget
    used against the full grid, and the verify sweep's verdicts."""
    return searches.report(session, search_id)


@router.post("/searches/{search_id}/cancel", response_model=SearchOut, responses={**errors(404, 422), **WRITE_ERRORS})
@needs("member", audit="cancel")
def post_search_cancel(search_id: SearchId, session: SessionDep, settings: SettingsDep):
    """Stop asking for trials and cancel the queued and running trials (and verify runs)."""
    searches.cancel(session, search_id, settings.worker_lost_after)
    return searches.report(session, search_id)
