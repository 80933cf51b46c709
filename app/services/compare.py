"""Comparing runs as the API and the pages use it: parse and bound the ids, then read the compare document."""
from __future__ import annotations

from sqlmodel import Session

from app.core.artifacts import ArtifactStore
from app.core.errors import RecipeError
from app.core.schemas import MAX_ID
from app.store.compare import compare_runs

MAX_COMPARE = 200


def parse_ids(ids: str) -> list[int]:
    """'3,5,8' -> [3, 5, 8], distinct, in the order given; RecipeError naming `ids` otherwise."""
    try:
        out = list(dict.fromkeys(int(x) for x in ids.split(",") if x.strip()))
    except ValueError:
        raise RecipeError.one("ids", "ids must be comma-separated run ids, e.g. 3,5,8") from None
    if any(not 1 <= i <= MAX_ID for i in out):
        raise RecipeError.one("ids", f"run ids are between 1 and {MAX_ID}")
    # Two ids or more, as the schema states; a repeat counts once, so "3,3" shows run 3 alone.
    if len(ids.split(",")) < 2 or not 1 <= len(out) <= MAX_COMPARE:
        raise RecipeError.one("ids", f"comparing needs two runs or more, and at most {MAX_COMPARE}; got {len(out)}")
    return out


def compare(session: Session, ids: str, baseline: int | None = None, curves: bool = True,
            files: ArtifactStore | None = None, offset: int = 0) -> dict:
    """Curves, the final table against a baseline, the recipe diff, confusions and disagreements (a page of them from
    offset, read from the artifact store's prediction files); RunNotFound for an unknown id."""
    return compare_runs(session, parse_ids(ids), baseline, curves=curves, files=files, offset=offset)
