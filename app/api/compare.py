"""/api/v1/compare: runs side by side, as JSON or as a CSV table."""
from __future__ import annotations

import json
from typing import Literal

from fastapi import Query, Response

from fitboard.app.api import CSV, api_router, errors
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.services.compare import IDS_REGEX, compare
from fitboard.app.services.serializers import CompareOut
from fitboard.app.store.compare import compare_csv
from fitboard.app.web.access import needs
from fitboard.app.web.deps import ArtifactsDep, SessionDep

router = api_router("compare")



# Not validated against CompareOut on the way out: documents of 100 runs hold ~100k values (see the json.dumps below).
@router.get("/compare", response_model=CompareOut,
            responses={200: {"content": CSV, "description": "the final table (CSV with format=csv)"},
                       **errors(404, 422, 503)})
@needs("read")
def get_compare(session: SessionDep, files: ArtifactsDep,
                ids: str = Query(..., description="2 to 200 comma-separated run ids (repeats count once)",
                                 max_length=4000, json_schema_extra={"pattern": IDS_REGEX}),
                baseline: int | None = Query(None, ge=1, le=MAX_ID), format: Literal["json", "csv"] = "json"):
    """Curves, final table with differences to the baseline, recipe diff, confusion matrices, disagreements."""
    data = compare(session, ids, baseline, files=files)
    if format == "csv":
        return Response(compare_csv(data), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="compare.csv"'})
    # Already plain JSON types: json.dumps directly, skipping FastAPI's encoder walk over ~100k values.
    return Response(json.dumps(data), media_type="application/json")
