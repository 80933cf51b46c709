"""Every page route in one router: the login pages open, the rest behind the login guard."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from fitboard.app.pages import compare, datasets, login, run_form, run_manage, runs, searches, sweeps, workers
from fitboard.app.pages.render import require_login

router = APIRouter(include_in_schema=False)
router.include_router(login.router)
guarded = APIRouter(dependencies=[Depends(require_login)])
# run_form first: /runs/new must match before /runs/{run_id}; run_manage: POST /runs/bulk likewise.
for module in (run_form, run_manage, runs, datasets, workers, compare, sweeps, searches):
    guarded.include_router(module.router)
router.include_router(guarded)
