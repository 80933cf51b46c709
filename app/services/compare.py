"""Comparing runs as the API and the pages use it: parse and bound the ids, then read the compare document."""
from __future__ import annotations

import re

from sqlmodel import Session

from fitboard.app.core.artifacts import ArtifactStore
from fitboard.app.core.errors import RecipeError
from fitboard.app.store.compare import compare_runs

MAX_COMPARE = 200
# 2 to MAX_COMPARE ids of 1 to 18 digits without leading zeros (18 digits stay below the largest id the database holds)
IDS_REGEX = r"^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){1,%d}$" % (MAX_COMPARE - 1)


def parse_ids(ids: str) -> list[int]:
    """'3,5,8' -> [3, 5, 8], distinct, in the order given; RecipeError naming `ids` otherwise."""
    if not re.fullmatch(IDS_REGEX, ids):  # exactly what the schema states
        count = len(ids.split(","))
        if re.fullmatch(r"[1-9][0-9]{0,17}(,[1-9][0-9]{0,17})*", ids) and not 2 <= count <= MAX_COMPARE:
            raise RecipeError.one("ids", f"comparing needs two runs or more, and at most {MAX_COMPARE}; got {count}")
        raise RecipeError.one("ids", "ids must be comma-separated run ids without spaces or leading zeros, each at "
                                     "most 18 digits, e.g. 3,5,8")
    return list(dict.fromkeys(int(x) for x in ids.split(",")))  # a repeat counts once: "3,3" shows run 3 alone


def compare(session: Session, ids: str, baseline: int | None = None, curves: bool = True,
            files: ArtifactStore | None = None, offset: int = 0) -> dict:
    """Curves, the final table against a baseline, the recipe diff, confusions and disagreements (a page of them from
    offset, read from the artifact store's prediction files); RunNotFound for an unknown id."""
    return compare_runs(session, parse_ids(ids), baseline, curves=curves, files=files, offset=offset)
