"""Run-name search through an index: an FTS5 trigram table on SQLite, a pg_trgm GIN index on PostgreSQL.

Both answer "name contains s" (any case) for s of three characters or more without reading every run. On SQLite the
FTS table mirrors run.name through triggers; a table rebuild in a later migration (Alembic's batch mode copies `run`
and drops the old one) drops those triggers, so db.upgrade() puts them back after every migration.
"""
from __future__ import annotations

from sqlalchemy import text

FTS_TABLE = "run_name_fts"  # and its shadow tables run_name_fts_*
TRGM_INDEX = "ix_run_name_trgm"
MIN_CHARS = 3  # a trigram index cannot narrow a shorter string: those searches read the list's order index instead

SQLITE_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_insert AFTER INSERT ON run BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, name) VALUES (new.id, new.name); END",
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_delete AFTER DELETE ON run BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, name) VALUES ('delete', old.id, old.name); END",
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_rename AFTER UPDATE OF name ON run BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, name) VALUES ('delete', old.id, old.name); "
    f"INSERT INTO {FTS_TABLE}(rowid, name) VALUES (new.id, new.name); END",
)


def ensure_sqlite_triggers(conn) -> None:
    """Create the FTS table's triggers where a table rebuild dropped them (no-op when present or no FTS table)."""
    has_fts = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = :n"), {"n": FTS_TABLE}).first()
    if has_fts:
        for ddl in SQLITE_TRIGGERS:
            conn.execute(text(ddl))


def indexable(needle: str | None) -> bool:
    """Whether the name index can answer this fragment: MIN_CHARS or more, and no NUL (FTS5's query parser ends a
    string there: "unterminated string"; such a fragment is matched by LIKE, which takes it as a bound value)."""
    return bool(needle) and len(needle) >= MIN_CHARS and "\x00" not in needle


def fts_phrase(needle: str) -> str:
    """needle as one FTS5 phrase (a substring match under the trigram tokenizer); quotes doubled."""
    return '"' + needle.replace('"', '""') + '"'


def is_fts_table(name: str) -> bool:
    """Whether a table is the FTS index or one of its shadow tables (not in the models; Alembic must leave them)."""
    return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")
