"""Every page route in one router, behind the access check (app.web.access)."""
from __future__ import annotations

from fastapi import APIRouter

from fitboard.app.pages import (
    account,
    compare,
    datasets,
    login,
    projects,
    queue,
    run_form,
    run_manage,
    runs,
    searches,
    sweeps,
    workers,
)
from fitboard.app.web.access import GUARD

# Every page goes through the access check; each route declares its own rule (login pages: open).
router = APIRouter(include_in_schema=False, dependencies=[GUARD])
# run_form first: /runs/new must match before /runs/{run_id}; run_manage: POST /runs/bulk likewise.
for module in (login, account, projects, run_form, run_manage, runs, datasets, workers, queue, compare, sweeps,
               searches):
    router.include_router(module.router)
