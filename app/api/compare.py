"""/api/v1/compare: runs side by side, as JSON or as a CSV table."""
from __future__ import annotations

import json
from typing import Literal

from fastapi import Query, Response

from app.api import api_router
from app.services.compare import compare
from app.store.compare import compare_csv
from app.web.deps import SessionDep

router = api_router("compare")


@router.get("/compare")
def get_compare(session: SessionDep, ids: str = Query(..., description="comma-separated run ids"),
                baseline: int | None = None, format: Literal["json", "csv"] = "json"):
    """Curves, final table with differences to the baseline, recipe diff, confusion matrices, disagreements."""
    data = compare(session, ids, baseline)
    if format == "csv":
        return Response(compare_csv(data), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="compare.csv"'})
    # Already plain JSON types: json.dumps directly, skipping FastAPI's encoder walk over ~100k values.
    return Response(json.dumps(data), media_type="application/json")
