"""API for comparing runs and for ablation sweeps."""
from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response

from app.compare import compare_csv, compare_runs
from app.deps import SessionDep
from app.api import commit_and_enqueue
from app.security import require_api_auth
from app.sweeps import add_seeds, create_sweep, sweep_report
from app.views import run_json

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_auth)])
MAX_COMPARE = 200


def parse_ids(ids: str) -> list[int]:
    """'3,5,8' -> [3, 5, 8], distinct, in the order given; 422 otherwise."""
    try:
        out = list(dict.fromkeys(int(x) for x in ids.split(",") if x.strip()))
    except ValueError:
        raise HTTPException(422, [{"loc": "ids", "msg": "ids must be comma-separated run ids, e.g. 3,5,8"}]) from None
    if not 1 <= len(out) <= MAX_COMPARE:
        raise HTTPException(422, [{"loc": "ids", "msg": f"compare between 1 and {MAX_COMPARE} runs"}])
    return out


@router.get("/compare", tags=["compare"])
def compare_route(session: SessionDep, ids: str = Query(..., description="comma-separated run ids"),
                  baseline: int | None = None, format: Literal["json", "csv"] = "json"):
    """Curves, final table with differences to the baseline, recipe diff, confusion matrices, disagreements."""
    data = compare_runs(session, parse_ids(ids), baseline)
    if format == "csv":
        return Response(compare_csv(data), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="compare.csv"'})
    # Already plain JSON types: json.dumps directly, skipping FastAPI's encoder walk over ~100k values.
    return Response(json.dumps(data), media_type="application/json")


@router.post("/sweeps", status_code=201, tags=["sweeps"])
def create_sweep_route(request: Request, session: SessionDep, base: dict = Body(...), vary: dict = Body(...),
                       seeds: list = Body([0, 1, 2]), mode: Literal["grid", "one_at_a_time"] = Body("one_at_a_time")):
    """Store a sweep and queue one run per variant and seed; 422 names the bad field."""
    sweep, runs = create_sweep(session, base, vary, seeds, mode, request.app.state.settings.data_root)
    commit_and_enqueue(request, session, runs)
    return {**sweep_report(session, sweep.id), "queued": [run_json(r, full=False) for r in runs]}


@router.get("/sweeps/{sweep_id}", tags=["sweeps"])
def get_sweep_route(sweep_id: int, session: SessionDep):
    """Each variant's runs, mean and std of accuracy and TTA accuracy, and its seed-paired difference to base."""
    return sweep_report(session, sweep_id)


@router.post("/sweeps/{sweep_id}/seeds", status_code=201, tags=["sweeps"])
def add_seeds_route(sweep_id: int, request: Request, session: SessionDep, seeds: list = Body(..., embed=True)):
    """Run every variant for more seeds."""
    runs = add_seeds(session, sweep_id, seeds)
    commit_and_enqueue(request, session, runs)
    return {**sweep_report(session, sweep_id), "queued": [run_json(r, full=False) for r in runs]}


