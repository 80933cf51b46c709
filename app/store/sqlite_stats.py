"""Fixed planner statistics for the runs list's indexes on SQLite.

Without statistics SQLite guesses that every index equality narrows to a few rows, so `archived = 0` looks as
selective as `sweep_id = 7` and it may walk half the runs. These rows (sqlite_stat1's format: rows in the index, then
the average rows per value of each leading prefix) describe a large fleet's shape, so plans are the same at a
thousand runs as at a million, and the EXPLAIN test sees what production runs. A later ANALYZE replaces them with
measured ones, which is fine.
"""
from __future__ import annotations

from sqlalchemy import text

from fitboard.app.store.models import LIST_INDEXES

ROWS = 1_000_000
# leading column -> average rows per value: a project holds most runs, archived splits them in two, a status holds a
# sixth, a dataset many runs
PER_VALUE = {"project_id": ROWS, "archived": ROWS // 2, "status": ROWS // 6, "dataset": ROWS // 20, "created_at": 1,
             "finished_at": 1, "name": 1, "best_accuracy": 1, "tta_accuracy": 1, "id": 1}
SINGLE = {"ix_run_status": PER_VALUE["status"], "ix_run_dataset": PER_VALUE["dataset"], "ix_run_created_at": 1,
          "ix_run_sweep_id": 20, "ix_run_search_id": 200}


def _stat(cols: tuple[str, ...]) -> str:
    """stat1's text for an index over cols: each prefix's rows per value (never more than the prefix before)."""
    per, out = ROWS, [str(ROWS)]
    for c in cols:
        per = min(per, PER_VALUE[c])
        out.append(str(per))
    return " ".join(out)


def stat_rows() -> list[tuple[str, str, str]]:
    """(table, index, stat) for the runs list's indexes, run_tag's and the run columns other queries filter on."""
    rows = [("run", name, _stat(cols)) for name, cols in LIST_INDEXES.items()]
    rows += [("run", name, f"{ROWS} {per}") for name, per in SINGLE.items()]
    # (status, queue, ...): a status holds a sixth of the runs, most in one queue; ix_run_line then reads a line in
    # id order without sorting a status's every run
    rows += [("run", name, f"{ROWS} {PER_VALUE['status']} {PER_VALUE['status']} {last}")
             for name, last in (("ix_run_line", 1), ("ix_run_waiting", 1000))]
    rows += [("run_tag", "ix_run_tag_tag", f"{ROWS // 10} {ROWS // 10} {ROWS // 20} 1000 1"),
             ("run_tag", "sqlite_autoindex_run_tag_1", f"{ROWS // 10} 2 1")]
    return rows


def write_sqlite_stats(conn) -> None:
    """Write the rows above (for the indexes that exist) and reload them into this connection's planner."""
    present = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
    conn.execute(text("ANALYZE lease"))  # creates sqlite_stat1 (which CREATE TABLE may not) from a tiny table
    for table, index, stat in stat_rows():
        if index in present:
            conn.execute(text("DELETE FROM sqlite_stat1 WHERE idx = :i"), {"i": index})
            conn.execute(text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (:t, :i, :s)"),
                         {"t": table, "i": index, "s": stat})
    conn.execute(text("ANALYZE sqlite_schema"))  # reloads the statistics; measures nothing
